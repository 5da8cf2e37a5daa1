//! Packer JSON templates: load, validate, render, inspect.
pub mod decode;
pub mod diag;
pub mod funcs;
pub mod json;
pub mod timefmt;
