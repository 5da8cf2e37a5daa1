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

pub mod adapter;
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
pub use steps::{Artifact, BuildError, Ctx};

use std::time::Duration;

/// A duration as Packer prints it: `1 minute 2 seconds`, `3 seconds`, `850 milliseconds`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} milliseconds");
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(unit(h, "hour"));
    }
    if m > 0 {
        parts.push(unit(m, "minute"));
    }
    if s > 0 || parts.is_empty() {
        if h == 0 && m == 0 {
            // Under a minute: tenths, as `1.3 seconds`.
            let tenths = (d.as_millis() / 100) as u64;
            if tenths % 10 != 0 {
                parts.push(format!("{}.{} seconds", tenths / 10, tenths % 10));
            } else {
                parts.push(unit(s, "second"));
            }
        } else {
            parts.push(unit(s, "second"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_packer() {
        assert_eq!(
            human_duration(Duration::from_millis(850)),
            "850 milliseconds"
        );
        assert_eq!(human_duration(Duration::from_millis(1300)), "1.3 seconds");
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(
            human_duration(Duration::from_secs(62)),
            "1 minute 2 seconds"
        );
        assert_eq!(
            human_duration(Duration::from_secs(3600 * 2 + 60)),
            "2 hours 1 minute"
        );
    }
}
