//! The `amazon-ebs` builder: launch an instance from a source AMI, provision it over SSH, stop
//! it, create an AMI from it, copy and share the AMI. Only its configuration exists so far
//! (`config`).

pub mod config;

pub use config::AmazonEbsConfig;
