//! STUB (replaced by the configs branch).
pub mod amazon;
