//! imgbuild: builds Amazon Machine Images from Packer JSON templates.
pub mod redact;
pub mod template;
