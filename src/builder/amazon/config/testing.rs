//! Decoding a whole `amazon-ebs` builder object, for the unit tests of the config files.

pub(super) use crate::checks::testing::*;
pub(super) use crate::template::diag::Diagnostics;

use super::AmazonEbsConfig;

pub(super) const BASE: &str = r#""ami_name": "web-base", "instance_type": "t3.micro", "source_ami": "ami-0123456789abcdef0", "ssh_username": "ubuntu""#;

/// Decodes a builder made of BASE plus `extra` (JSON members, may be empty).
pub(super) fn ebs(extra: &str) -> (AmazonEbsConfig, Diagnostics) {
    let text = if extra.is_empty() {
        format!("{{{BASE}}}")
    } else {
        format!("{{{BASE}, {extra}}}")
    };
    decode(&text, AmazonEbsConfig::decode)
}

pub(super) fn raw(text: &str) -> (AmazonEbsConfig, Diagnostics) {
    decode(text, AmazonEbsConfig::decode)
}

pub(super) fn ok(extra: &str) -> AmazonEbsConfig {
    let (c, d) = ebs(extra);
    assert!(!d.has_errors(), "unexpected errors: {:?}", errors(&d));
    c
}

pub(super) fn errs(extra: &str) -> Vec<String> {
    errors(&ebs(extra).1)
}
