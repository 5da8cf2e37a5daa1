//! imgbuild: builds Amazon Machine Images from Packer JSON templates.
pub mod builder;
pub(crate) mod checks;
pub mod communicator;
pub mod post_processor;
pub mod provisioner;
pub mod redact;
pub mod template;
