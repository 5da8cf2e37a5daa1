//! The `amazon-ebs` builder: launch an instance from a source AMI, provision it over SSH (through
//! [`crate::provisioner::runtime`]), stop it, create an AMI from it, copy and share the AMI, and
//! record every resource it creates in the build's [`crate::ledger::Ledger`] so that teardown
//! removes whatever is not the product.
//!
//! - [`config`]: the typed template options;
//! - [`aws`]: credentials, region, endpoints, retries; EC2 clients per region;
//! - [`plan`]: pure decisions (source image choice, SSH address, security group rule);
//! - [`keys`]: the temporary key, generated locally;
//! - [`wait`]: deadline-based polling;
//! - [`steps`]: the build, in Packer's order;
//! - [`reuse`]: finding an AMI that already carries the build's fingerprint;
//! - [`teardown`]: undoing the ledger;
//! - [`sweep`]: finding what earlier runs left (by run-id tag, client token, name), for
//!   `imgbuild cleanup`.

pub mod aws;
pub mod config;
pub mod keys;
pub mod plan;
pub mod reuse;
pub mod steps;
pub mod sweep;
pub mod teardown;
pub mod wait;

pub use config::AmazonEbsConfig;
pub use steps::{BuildError, Ctx};
