//! Builders: what creates the image. `amazon-ebs` builds AMIs; `null` (as in Packer) runs the
//! provisioners against a machine that already exists and creates nothing.

pub mod amazon;
pub mod fingerprint;
pub mod null;

use amazon::config::AmazonEbsConfig;
use null::NullConfig;

#[derive(Debug)]
pub enum BuilderConfig {
    AmazonEbs(Box<AmazonEbsConfig>),
    /// Packer's `null` builder: provisioners against an existing machine, no cloud.
    Null(Box<NullConfig>),
}

impl BuilderConfig {
    /// Values that must never be shown (credentials, passwords), for the redactor.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            BuilderConfig::AmazonEbs(c) => c.secrets(),
            BuilderConfig::Null(c) => c.secrets(),
        }
    }
}
