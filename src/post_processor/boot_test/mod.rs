//! The `boot-test` post-processor (imgbuild's own): starts a fresh instance from the AMI the build
//! just made, in the build region, waits for SSH and first boot, runs checks written as a `shell`
//! provisioner's `inline`/`script`/`scripts`, and tears the instance down. A failed check fails
//! the build with the check's output and, with `deregister_on_failure` (default true),
//! deregisters the AMI and deletes its snapshots in every region of the artifact, so that a
//! broken image never reaches the next post-processor of the chain (a stack update).
//!
//! This file is its configuration; [`run`] is the boot test itself, made of the amazon-ebs
//! builder's own steps (network, key pair, security group, launch, first boot, provisioning,
//! teardown) over a ledger and journal of its own.

pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use crate::builder::amazon::config::run::user_data;
use crate::checks::{error_at, flag, opt_string};
use crate::provisioner::shell::ShellConfig;
use crate::template::decode::{Dx, Obj};

/// The checks' default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The boot test's own user data (`user_data` or `user_data_file`).
#[derive(Debug, Clone, PartialEq)]
pub enum UserData {
    Text(String),
    File(PathBuf),
}

/// `boot-test`.
#[derive(Debug, Clone, PartialEq)]
pub struct BootTestConfig {
    /// The checks: a `shell` provisioner's options (`inline`, `script`, `scripts`,
    /// `environment_vars`, `execute_command`, ...).
    pub checks: ShellConfig,
    /// `timeout`: how long the checks may run before they are killed (default 5m).
    pub timeout: Duration,
    /// `instance_type`: default the builder's.
    pub instance_type: Option<String>,
    /// `subnet_id`: default the builder's.
    pub subnet_id: Option<String>,
    /// `ssh_username`: default the builder's.
    pub ssh_username: Option<String>,
    /// `ssh_timeout`: the wait for SSH and for first boot; default the builder's.
    pub ssh_timeout: Option<Duration>,
    /// `security_group_ids`: groups to launch in instead of a temporary one.
    pub security_group_ids: Vec<String>,
    /// `ssh_keypair_name` with `ssh_private_key_file`: a key pair of the account instead of a
    /// temporary one.
    pub ssh_keypair_name: Option<String>,
    pub ssh_private_key_file: Option<String>,
    /// `wait_for_boot`: default the builder's.
    pub wait_for_boot: Option<bool>,
    /// `user_data` / `user_data_file`: what the instance is launched with instead of the
    /// builder's. `None` (unset or empty): the builder's.
    pub user_data: Option<UserData>,
    /// `deregister_on_failure` (default true): a failed check deregisters the AMI and deletes
    /// its snapshots in every region of the artifact.
    pub deregister_on_failure: bool,
}

impl BootTestConfig {
    /// Decodes a `boot-test` post-processor whose common keys the caller has taken; what is not
    /// the boot test's own is the checks' (a `shell` provisioner's options).
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> BootTestConfig {
        let o = &mut obj;
        let timeout = o
            .duration(dx, "timeout")
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT);
        let instance_type = opt_string(o, dx, "instance_type");
        let subnet_id = opt_string(o, dx, "subnet_id");
        let ssh_username = opt_string(o, dx, "ssh_username");
        let ssh_timeout = o.duration(dx, "ssh_timeout").filter(|d| !d.is_zero());
        let security_group_ids = o.strings(dx, "security_group_ids").unwrap_or_default();
        let ssh_keypair_name = opt_string(o, dx, "ssh_keypair_name");
        let ssh_private_key_file = opt_string(o, dx, "ssh_private_key_file");
        if ssh_keypair_name.is_some() != ssh_private_key_file.is_some() {
            let key = if ssh_keypair_name.is_some() {
                "ssh_keypair_name"
            } else {
                "ssh_private_key_file"
            };
            error_at(
                o,
                dx,
                key,
                "`boot-test` needs `ssh_keypair_name` and `ssh_private_key_file` together (the key pair to launch with and its private key)",
                Some("set both, or neither for a temporary key pair"),
            );
        }
        let wait_for_boot = flag(o, dx, "wait_for_boot");
        let user_data = match user_data(o, dx) {
            (Some(t), _) => Some(UserData::Text(t)),
            (None, Some(f)) => Some(UserData::File(f)),
            (None, None) => None,
        };
        let deregister_on_failure = flag(o, dx, "deregister_on_failure").unwrap_or(true);
        let checks = ShellConfig::decode(obj, dx);
        BootTestConfig {
            checks,
            timeout,
            instance_type,
            subnet_id,
            ssh_username,
            ssh_timeout,
            security_group_ids,
            ssh_keypair_name,
            ssh_private_key_file,
            wait_for_boot,
            user_data,
            deregister_on_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;
    use crate::provisioner::shell::ShellSource;

    #[test]
    fn options_and_defaults() {
        let (c, d) = decode(
            r#"{"inline": ["systemctl is-active apache2"]}"#,
            BootTestConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(c.deregister_on_failure);
        assert_eq!((c.instance_type, c.wait_for_boot), (None, None));
        assert!(matches!(c.checks.source, ShellSource::Inline(ref l) if l.len() == 1));

        let (c, d) = decode(
            r#"{"inline": ["true"], "timeout": "30s", "instance_type": "t3.small",
                "ssh_timeout": "2m", "deregister_on_failure": false, "wait_for_boot": false,
                "environment_vars": ["A=1"]}"#,
            BootTestConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.ssh_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.instance_type.as_deref(), Some("t3.small"));
        assert!(!c.deregister_on_failure);
        assert_eq!(c.wait_for_boot, Some(false));
        assert_eq!(c.checks.environment_vars, vec![("A".into(), "1".into())]);
    }

    #[test]
    fn the_launch_is_the_builders_with_its_user_data_unless_overridden() {
        use crate::builder::amazon::AmazonEbsConfig;
        let (b, d) = decode(
            r##"{"ami_name": "web-base", "instance_type": "t3.micro", "source_ami": "ami-0123456789abcdef0",
                "ssh_username": "ubuntu", "user_data": "#!/bin/sh\necho hi",
                "launch_block_device_mappings": [{"device_name": "/dev/sdf", "volume_size": 2}]}"##,
            AmazonEbsConfig::decode,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        let boot = |text: &str| {
            let (c, d) = decode(text, BootTestConfig::decode);
            assert!(!d.has_errors(), "{:?}", errors(&d));
            run::boot_config(&b, &c)
        };
        let same = boot(r#"{"inline": ["true"]}"#);
        assert_eq!(same.run.user_data.as_deref(), Some("#!/bin/sh\necho hi"));
        assert_eq!(
            same.launch_block_device_mappings,
            b.launch_block_device_mappings
        );
        assert_eq!(same.launch_block_device_mappings.len(), 1);
        // Empty is unset (as in Packer): the builder's.
        let empty = boot(r#"{"inline": ["true"], "user_data": ""}"#);
        assert_eq!(empty.run.user_data, b.run.user_data);
        let file = boot(r#"{"inline": ["true"], "user_data_file": "/etc/hostname"}"#);
        assert_eq!(file.run.user_data, None);
        assert_eq!(file.run.user_data_file, Some("/etc/hostname".into()));
        let (_, d) = decode(
            r#"{"inline": ["true"], "user_data": "x", "user_data_file": "/etc/hostname"}"#,
            BootTestConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["Only one of user_data or user_data_file can be specified."]
        );
    }

    #[test]
    fn checks_are_required_and_a_key_pair_needs_its_key() {
        let (_, d) = decode("{}", BootTestConfig::decode);
        assert!(!errors(&d).is_empty(), "no checks is an error");
        let (_, d) = decode(
            r#"{"inline": ["true"], "ssh_keypair_name": "k"}"#,
            BootTestConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["`boot-test` needs `ssh_keypair_name` and `ssh_private_key_file` together (the key pair to launch with and its private key)"]
        );
        let (_, d) = decode(
            r#"{"inline": ["true"], "bogus": 1}"#,
            BootTestConfig::decode,
        );
        assert!(!errors(&d).is_empty(), "an unknown key is reported");
    }
}
