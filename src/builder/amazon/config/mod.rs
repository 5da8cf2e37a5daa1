//! The `amazon-ebs` builder's configuration: Packer 1.6.6's option names, defaults and checks
//! (its `Prepare`), plus a few later Packer options and imgbuild extensions.
//!
//! Every option Packer 1.6.6 knows is either decoded here, reported as not supported (an error
//! naming it and saying what to do instead, see [`UNSUPPORTED`]), or accepted with a warning that
//! says why it makes no difference ([`IGNORED`]). Nothing is dropped silently.
//!
//! Differences from Packer 1.6.6, on purpose (each is in the README reference):
//! - `temporary_security_group_source_cidrs` stays unset when not given (Packer: `0.0.0.0/0`);
//!   the builder decides the secure default when it creates the group.
//! - `region` is optional here, as in Packer 1.6.6: when absent, the build uses the AWS
//!   environment (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region).
//! - gp3 `iops`/`throughput` are checked only when given (Packer 1.6.6 wrongly requires both).
//! - `volume_type` is checked against EC2's volume types; `iops` on volume types without
//!   provisioned IOPS and `kms_key_id` on a device without `encrypted: true` are errors (EC2
//!   rejects them at launch).
//! - `ami_name` is checked (length, characters) only when it holds no build-time value; names
//!   with `{{ .SourceAMIName }}` and the like are checked when the build renders them.
//! - KMS key ids also accept multi-region keys (`mrk-...`) and the `aws-cn` partition.
//! - Later Packer options: `metadata_options`, `imds_support`, `skip_create_ami`,
//!   `temporary_security_group_source_public_ip`, `enable_unlimited_credits`,
//!   `placement.tenancy`; imgbuild's own: `build_timeout`,
//!   `temporary_security_group_source_public_ip_url`.
//!
//! The options fall into sections, one file each: [`crate::aws::access`] (credentials,
//! region, API behaviour; shared with `imgbuild cleanup`), [`ami`] (the image to create),
//! [`run`] (the instance to launch), [`network`] (VPC, subnet, security groups, the temporary
//! group's sources), [`block_devices`] (the mappings of the instance and the image) and
//! [`tags`] (tag maps and their block form). Each section takes its keys from the one builder
//! object, so the unknown-key check ([`Obj::finish`]) still sees every key the decoders ask
//! for: the list of known keys cannot drift from the decoders.

pub mod ami;
pub mod block_devices;
pub mod network;
pub mod run;
pub mod spot;
pub mod tags;
#[cfg(test)]
mod testing;

use std::time::Duration;

pub use crate::aws::access::{AccessConfig, AssumeRole, AwsPolling};
pub use ami::{valid_kms_key, AmiConfig, ImdsSupport};
pub use block_devices::{BlockDevice, VOLUME_TYPES};
pub use network::{valid_cidr, SecurityGroupFilter, SubnetFilter, VpcFilter};
pub use run::{MetadataOptions, RunConfig, ShutdownBehavior, SourceAmiFilter, Tenancy};
pub use tags::Tags;

use crate::checks::{deprecated, error_at, flag, opt_string, unsupported_if_set, warning_at};
use crate::communicator::ssh::{Communicator, SshConfig};
use crate::template::decode::{Dx, Obj};
use block_devices::block_devices;
use tags::decode_tags;

/// The whole `amazon-ebs` builder object.
#[derive(Debug, Clone, PartialEq)]
pub struct AmazonEbsConfig {
    /// Credentials, region, endpoints, API retries and polling.
    pub access: AccessConfig,
    /// The image to create: name, sharing, encryption, regions, tags.
    pub ami: AmiConfig,
    /// The instance to launch: type, source image, network, tags, user data.
    pub run: RunConfig,
    /// `ami_block_device_mappings`: block devices of the created AMI (beyond the instance's).
    pub ami_block_device_mappings: Vec<BlockDevice>,
    /// `launch_block_device_mappings`: block devices of the build instance (these become the
    /// AMI's snapshots).
    pub launch_block_device_mappings: Vec<BlockDevice>,
    /// `run_volume_tags` (and the block form `run_volume_tag`): tags of the build instance's
    /// volumes.
    pub run_volume_tags: Tags,
    /// `no_ephemeral`: add mappings that hide the instance-store (ephemeral) devices, so they
    /// are not part of the AMI. Default false.
    pub no_ephemeral: bool,
    /// `skip_create_ami` (later Packer): run the build and provisioners but create no AMI.
    /// Default false.
    pub skip_create_ami: bool,
    /// `build_timeout` (imgbuild): deadline for the whole build, from launch to the last region
    /// copy; when it passes the build fails and everything it created is cleaned up. Default
    /// none.
    pub build_timeout: Option<Duration>,
    /// `reuse_unchanged` (imgbuild): when an AMI of this account carries the fingerprint of
    /// everything that determines this build's image (`imgbuild:fingerprint`), launch nothing and
    /// report that AMI (the `-skip-unchanged` flag does the same for every build). Default false.
    pub reuse_unchanged: bool,
    /// `wait_for_boot` (imgbuild): after SSH connects and before the first provisioner, wait
    /// for first boot to finish when the instance has cloud-init (`cloud-init status --wait`,
    /// then the dpkg/apt locks), bounded by `ssh_timeout`. Default true.
    pub wait_for_boot: bool,
    /// The communicator options (`communicator`, `ssh_*`, `temporary_key_pair_*`).
    pub ssh: SshConfig,
    /// `ssh_interface`: which address of the instance to connect to. Default unset: the public
    /// IP when the instance has one, else the private IP.
    pub ssh_interface: Option<SshInterface>,
}

/// `ssh_interface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshInterface {
    PublicIp,
    PrivateIp,
    PublicDns,
    PrivateDns,
}

impl SshInterface {
    pub fn as_str(self) -> &'static str {
        match self {
            SshInterface::PublicIp => "public_ip",
            SshInterface::PrivateIp => "private_ip",
            SshInterface::PublicDns => "public_dns",
            SshInterface::PrivateDns => "private_dns",
        }
    }
}

/// Packer amazon-ebs options imgbuild does not implement, with what to do instead. Each is an
/// error when set to anything but an empty value.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("vault_aws_engine", "read the credentials from Vault before running imgbuild (e.g. `vault read aws/creds/ROLE` into AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN), or use a profile"),
    ("temporary_iam_instance_profile_policy_document", "create the instance profile before the build and name it in iam_instance_profile"),
    ("pause_before_ssm", "imgbuild does not connect through AWS Systems Manager; connect over SSH (ssh_interface, ssh_bastion_host)"),
    ("session_manager_port", "imgbuild does not connect through AWS Systems Manager; connect over SSH (ssh_interface, ssh_bastion_host)"),
    ("ami_org_arns", "share with accounts through ami_users, or add organization launch permissions after the build with `aws ec2 modify-image-attribute`"),
    ("ami_ou_arns", "share with accounts through ami_users, or add organizational-unit launch permissions after the build with `aws ec2 modify-image-attribute`"),
    ("deprecate_at", "set the deprecation time after the build with `aws ec2 enable-image-deprecation`"),
    ("deregistration_protection", "turn it on after the build with `aws ec2 enable-image-deregistration-protection`"),
    ("snapshot_copy_duration_minutes", "time-based copies are not supported; region copies are standard copies"),
    ("fast_launch", "Windows fast launch is not supported (imgbuild builds over SSH)"),
    ("capacity_reservation_preference", "imgbuild launches without a capacity reservation target (EC2 still uses an open reservation that matches the instance type and zone); remove it"),
    ("capacity_reservation_id", "imgbuild launches without a capacity reservation target (EC2 still uses an open reservation that matches the instance type and zone); remove it"),
    ("capacity_reservation_group_arn", "imgbuild launches without a capacity reservation target (EC2 still uses an open reservation that matches the instance type and zone); remove it"),
    ("license_specifications", "license configurations are not supported; associate the AMI with AWS License Manager after the build"),
    ("enable_nitro_enclave", "Nitro Enclaves are not supported on the build instance; remove it"),
    ("skip_ami_run_tags", "not supported; the AMI gets `tags`, the instance gets `run_tags`"),
    ("insecure_skip_tls_verify", "imgbuild always verifies TLS; use an http:// custom_endpoint_ec2 for a local emulator, or add the CA to the system trust store"),
];

/// Packer options accepted with a warning because they make no difference, with the reason.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "spot_price_auto_product",
        "Packer deprecated it: EC2 picks the spot price of the instance's own product",
    ),
    (
        "windows_password_timeout",
        "imgbuild does not retrieve Windows passwords: it connects over SSH only",
    ),
];

/// Packer options renamed long ago: Packer 1.6.6 rejects them too (`packer fix` rewrites them).
pub const DEPRECATED: &[(&str, &str)] = &[
    ("enhanced_networking", "use \"ena_support\""),
    ("shutdown_behaviour", "use \"shutdown_behavior\""),
    (
        "temporary_security_group_source_cidr",
        "use \"temporary_security_group_source_cidrs\" (a list)",
    ),
    ("ssh_private_ip", "use \"ssh_interface\": \"private_ip\""),
    ("ssh_disable_agent", "use \"ssh_disable_agent_forwarding\""),
    ("ssh_key_path", "use \"ssh_private_key_file\""),
    (
        "ssh_host_port_min",
        "remove it: it belongs to local virtual machine builders",
    ),
    (
        "ssh_host_port_max",
        "remove it: it belongs to local virtual machine builders",
    ),
];

/// Access options the build refuses when it starts (`crate::aws`'s `not_yet`, before anything
/// is created): refused here already, so that `validate` says what the build would say.
fn not_yet(obj: &mut Obj, dx: &mut Dx, access: &AccessConfig) {
    if access.mfa_code.is_some() {
        error_at(
            obj,
            dx,
            "mfa_code",
            "`mfa_code` is not implemented yet in imgbuild",
            Some("get temporary credentials first (e.g. `aws sts get-session-token --token-code ...`) and pass them in the environment or a profile"),
        );
    }
    if access
        .assume_role
        .as_ref()
        .is_some_and(|r| !r.tags.is_empty() || !r.transitive_tag_keys.is_empty())
    {
        error_at(
            obj,
            dx,
            "assume_role",
            "`assume_role.tags` and `assume_role.transitive_tag_keys` are not implemented yet in imgbuild",
            Some("assume the role with session tags before running imgbuild, or use a profile with role_arn"),
        );
    }
}

impl AmazonEbsConfig {
    /// Decodes and checks a builder object whose `type` and `name` the caller has taken, and
    /// reports unknown keys (`finish`).
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AmazonEbsConfig {
        let access = AccessConfig::decode(&mut obj, dx);
        not_yet(&mut obj, dx, &access);
        let ami = AmiConfig::decode(&mut obj, dx, access.region.as_deref());
        let run = RunConfig::decode(&mut obj, dx);
        let ssh = SshConfig::decode(&mut obj, dx);
        let ssh_interface = ssh_interface(&mut obj, dx);

        if ssh.communicator == Communicator::Ssh
            && ssh.ssh_keypair_name.is_some()
            && ssh.ssh_private_key_file.is_none()
            && !ssh.ssh_agent_auth
        {
            error_at(
                &mut obj,
                dx,
                "ssh_keypair_name",
                "ssh_private_key_file must be provided or ssh_agent_auth enabled when ssh_keypair_name is specified.",
                Some("imgbuild needs the private key of that key pair to connect; without ssh_keypair_name it creates a temporary key pair"),
            );
        }

        let ami_block_device_mappings = block_devices(&mut obj, dx, "ami_block_device_mappings");
        let launch_block_device_mappings =
            block_devices(&mut obj, dx, "launch_block_device_mappings");
        let run_volume_tags = decode_tags(&mut obj, dx, "run_volume_tags", "run_volume_tag");
        let no_ephemeral = flag(&mut obj, dx, "no_ephemeral").unwrap_or(false);
        let skip_create_ami = flag(&mut obj, dx, "skip_create_ami").unwrap_or(false);
        let build_timeout = obj.duration(dx, "build_timeout").filter(|d| !d.is_zero());
        let reuse_unchanged = flag(&mut obj, dx, "reuse_unchanged").unwrap_or(false);
        let wait_for_boot = flag(&mut obj, dx, "wait_for_boot").unwrap_or(true);
        if reuse_unchanged && skip_create_ami {
            warning_at(
                &mut obj,
                dx,
                "reuse_unchanged",
                "`reuse_unchanged` has no effect with `skip_create_ami`: there is no AMI to reuse",
                None,
            );
        }

        for (key, why) in UNSUPPORTED {
            unsupported_if_set(&mut obj, dx, key, why);
        }
        for (key, why) in IGNORED {
            obj.ignored(dx, key, why);
        }
        for (key, instead) in DEPRECATED {
            deprecated(&mut obj, dx, key, instead);
        }
        obj.finish(dx);

        AmazonEbsConfig {
            access,
            ami,
            run,
            ami_block_device_mappings,
            launch_block_device_mappings,
            run_volume_tags,
            no_ephemeral,
            skip_create_ami,
            build_timeout,
            reuse_unchanged,
            wait_for_boot,
            ssh,
            ssh_interface,
        }
    }

    /// Values that must never be shown (credentials, passwords), for the redactor.
    pub fn secrets(&self) -> Vec<&str> {
        let a = &self.access;
        let mut out: Vec<&str> = [&a.access_key, &a.secret_key, &a.token, &a.mfa_code]
            .into_iter()
            .filter_map(|v| v.as_deref())
            .collect();
        out.extend(self.ssh.secrets());
        out
    }
}

fn ssh_interface(obj: &mut Obj, dx: &mut Dx) -> Option<SshInterface> {
    const KEY: &str = "ssh_interface";
    let v = opt_string(obj, dx, KEY)?;
    match v.as_str() {
        "public_ip" => Some(SshInterface::PublicIp),
        "private_ip" => Some(SshInterface::PrivateIp),
        "public_dns" => Some(SshInterface::PublicDns),
        "private_dns" => Some(SshInterface::PrivateDns),
        "session_manager" => {
            error_at(
                obj,
                dx,
                KEY,
                "`ssh_interface` \"session_manager\" is not supported by imgbuild",
                Some("imgbuild connects over SSH directly: use public_ip, private_ip (with ssh_bastion_host if needed), public_dns or private_dns"),
            );
            None
        }
        "ipv6" => {
            error_at(
                obj,
                dx,
                KEY,
                "`ssh_interface` \"ipv6\" is not supported by imgbuild",
                Some("use public_ip, private_ip, public_dns or private_dns, or give the address in ssh_host"),
            );
            None
        }
        other => {
            error_at(
                obj,
                dx,
                KEY,
                format!("Unknown interface type: {other}"),
                Some("use public_ip, private_ip, public_dns or private_dns"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn defaults_are_packers() {
        let (c, d) = ebs("");
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.ami.ami_name, "web-base");
        assert_eq!(c.run.instance_type, "t3.micro");
        assert_eq!(c.run.source_ami.as_deref(), Some("ami-0123456789abcdef0"));
        assert_eq!(c.run.shutdown_behavior, ShutdownBehavior::Stop);
        assert_eq!(c.run.associate_public_ip_address, None);
        assert_eq!(c.ami.ami_virtualization_type, "hvm");
        assert_eq!(c.run.temporary_security_group_source_cidrs, None);
        assert!(!c.run.temporary_security_group_source_public_ip);
        assert_eq!(c.ssh_interface, None);
        assert_eq!(c.access.region, None);
        assert_eq!(c.ami.encrypt_boot, None);
        assert_eq!(c.ami.ena_support, None);
        assert_eq!(c.ami.sriov_support, None);
        assert_eq!(c.run.metadata_options, MetadataOptions::default());
        assert_eq!(c.run.tenancy, None);
        assert!(!c.skip_create_ami && !c.no_ephemeral && !c.run.ebs_optimized);
        assert_eq!(c.build_timeout, None);
        assert!(c.wait_for_boot, "wait_for_boot is on by default");
        assert_eq!(c.access.aws_polling, None);
        assert!(c.ami.ami_regions.is_empty() && c.ami.tags.is_empty());
        assert_eq!(c.ssh.ssh_username, "ubuntu");
    }

    #[test]
    fn a_typical_template_decodes() {
        let c = ok(r#"
            "region": "us-east-1", "access_key": "AKIAEXAMPLE", "secret_key": "s3cr3t",
            "ami_description": "Web {{user `n`}}", "ami_users": ["123456789012"],
            "ami_regions": ["eu-west-1", "us-east-1", "eu-west-1", "us-west-2"],
            "tags": {"Name": "web", "Base": "{{ .SourceAMIName }}", "Count": 3},
            "run_tags": {"Owner": "ci"}, "snapshot_tags": {"k": "v"},
            "subnet_id": "subnet-1", "vpc_id": "vpc-1", "associate_public_ip_address": "true",
            "iam_instance_profile": "builder", "ssh_interface": "private_ip", "ssh_pty": true,
            "ssh_timeout": "10m", "encrypt_boot": "{{user `yes`}}", "kms_key_id": "alias/ami",
            "launch_block_device_mappings": [{"device_name": "/dev/sda1", "volume_size": "40",
                "volume_type": "gp3", "delete_on_termination": true, "encrypted": true}],
            "force_deregister": true, "force_delete_snapshot": true"#);
        assert_eq!(c.access.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.ami.ami_description.as_deref(), Some("Web 7"));
        // De-duplicated, build region dropped.
        assert_eq!(c.ami.ami_regions, vec!["eu-west-1", "us-west-2"]);
        assert_eq!(
            c.ami.tags.get("Base").map(String::as_str),
            Some("{{ .SourceAMIName }}")
        );
        assert_eq!(c.ami.tags.get("Count").map(String::as_str), Some("3"));
        assert_eq!(c.run.associate_public_ip_address, Some(true));
        assert_eq!(c.ssh_interface, Some(SshInterface::PrivateIp));
        assert_eq!(c.ssh.ssh_timeout, Duration::from_secs(600));
        assert_eq!(c.ami.encrypt_boot, Some(true));
        let dev = &c.launch_block_device_mappings[0];
        assert_eq!(dev.device_name, "/dev/sda1");
        assert_eq!(dev.volume_size, Some(40));
        assert_eq!(dev.volume_type.as_deref(), Some("gp3"));
        assert!(dev.delete_on_termination);
        assert_eq!(dev.encrypted, Some(true));
        assert!(c.ami.force_deregister && c.ami.force_delete_snapshot);
        assert_eq!(c.secrets(), vec!["AKIAEXAMPLE", "s3cr3t"]);
    }

    #[test]
    fn required_keys() {
        let (_, d) = raw("{}");
        assert_eq!(
            errors(&d),
            vec![
                "builder `b` is missing the required key `ami_name`",
                "builder `b` is missing the required key `instance_type`",
                "A source_ami or source_ami_filter must be specified",
                "builder `b` is missing the required key `ssh_username`",
            ]
        );
        assert!(all_text(&d).contains("\"owners\""));
    }

    #[test]
    fn empty_required_values_are_errors() {
        let (_, d) = raw(
            r#"{"ami_name": "", "instance_type": "{{user `empty`}}", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert_eq!(
            errors(&d),
            vec![
                "`ami_name` must not be empty",
                "`instance_type` must not be empty"
            ]
        );
    }

    #[test]
    fn region_falls_back_to_the_environment_like_packer() {
        // Packer 1.6.6 validates without a region and takes AWS_REGION at build time.
        let c = ok("");
        assert_eq!(c.access.region, None);
    }

    #[test]
    fn shutdown_tenancy_and_interface_values() {
        assert_eq!(
            errs(r#""shutdown_behavior": "pause""#),
            vec!["shutdown_behavior only accepts 'stop' or 'terminate' values."]
        );
        assert_eq!(
            ok(r#""shutdown_behavior": "terminate""#)
                .run
                .shutdown_behavior,
            ShutdownBehavior::Terminate
        );
        assert_eq!(
            errs(r#""tenancy": "weird""#),
            vec!["Unknown tenancy type weird"]
        );
        assert_eq!(
            ok(r#""placement": {"tenancy": "dedicated"}"#).run.tenancy,
            Some(Tenancy::Dedicated)
        );
        assert_eq!(
            errs(r#""tenancy": "host", "placement": {"tenancy": "host", "host_id": "h-1"}"#),
            vec![
                "`host_id` of `placement` of builder `b` (instance placement) is a Packer option imgbuild does not support",
                "Only one of tenancy or placement.tenancy can be specified.",
            ]
        );
        assert_eq!(
            errs(r#""ssh_interface": "foo""#),
            vec!["Unknown interface type: foo"]
        );
        assert_eq!(
            errs(r#""ssh_interface": "session_manager""#),
            vec!["`ssh_interface` \"session_manager\" is not supported by imgbuild"]
        );
        assert_eq!(
            errs(r#""ssh_interface": "ipv6""#),
            vec!["`ssh_interface` \"ipv6\" is not supported by imgbuild"]
        );
        assert_eq!(
            ok(r#""ssh_interface": "public_dns""#).ssh_interface,
            Some(SshInterface::PublicDns)
        );
    }

    #[test]
    fn keypair_name_needs_a_private_key_or_the_agent() {
        assert_eq!(
            errs(r#""ssh_keypair_name": "kp""#),
            vec!["ssh_private_key_file must be provided or ssh_agent_auth enabled when ssh_keypair_name is specified."]
        );
        let c = ok(r#""ssh_keypair_name": "kp", "ssh_agent_auth": true"#);
        assert_eq!(c.ssh.ssh_keypair_name.as_deref(), Some("kp"));
    }

    #[test]
    fn spot_and_other_unsupported_options_are_named_unless_empty() {
        // Empty values from variables are accepted (on-demand).
        let (_, d) = ebs(
            r#""spot_price": "{{user `empty`}}", "spot_instance_types": [], "enable_t2_unlimited": false, "block_duration_minutes": 0"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert_eq!(
            errs(
                r#""spot_price": "auto", "vault_aws_engine": {"name": "x"}, "deprecate_at": "2030-01-01T00:00:00Z", "fast_launch": {"enable_fast_launch": true}"#
            ),
            vec![
                "`vault_aws_engine` of builder `b` is a Packer option imgbuild does not support",
                "`deprecate_at` of builder `b` is a Packer option imgbuild does not support",
                "`fast_launch` of builder `b` is a Packer option imgbuild does not support",
            ]
        );
        let (c, d) = ebs(r#""spot_price": "auto""#);
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert_eq!(c.run.spot.price, Some(spot::SpotPrice::Auto));
        let (_, d) =
            ebs(r#""spot_price_auto_product": "Linux/UNIX", "windows_password_timeout": "10m""#);
        assert!(!d.has_errors());
        assert_eq!(
            warnings(&d),
            vec![
                "`spot_price_auto_product` of builder `b` has no effect in imgbuild",
                "`windows_password_timeout` of builder `b` has no effect in imgbuild",
            ]
        );
    }

    #[test]
    fn deprecated_keys_say_what_to_use() {
        let (_, d) = ebs(r#""ssh_private_ip": true, "enhanced_networking": true"#);
        assert_eq!(
            errors(&d),
            vec![
                "`enhanced_networking` of builder `b` is a deprecated Packer option",
                "`ssh_private_ip` of builder `b` is a deprecated Packer option",
            ]
        );
        let text = all_text(&d);
        assert!(text.contains("\"ssh_interface\": \"private_ip\""), "{text}");
        assert!(text.contains("\"ena_support\""), "{text}");
    }

    #[test]
    fn access_config() {
        assert_eq!(
            errs(r#""access_key": "AKIA""#),
            vec!["`access_key` and `secret_key` must both be either set or not set."]
        );
        // Empty values from variables mean "use the credential chain".
        assert!(errs(r#""access_key": "{{user `empty`}}", "secret_key": """#).is_empty());
        let c = ok(
            r#""custom_endpoint_ec2": "localhost:5000", "max_retries": "5", "aws_polling": {"delay_seconds": 5, "max_attempts": 0},
            "assume_role": {"role_arn": "arn:aws:iam::123456789012:role/builder", "duration_seconds": 3600},
            "skip_region_validation": true, "profile": "ci", "token": "tok""#,
        );
        assert_eq!(
            c.access.custom_endpoint_ec2.as_deref(),
            Some("https://localhost:5000")
        );
        assert_eq!(c.access.max_retries, Some(5));
        assert_eq!(
            c.access.aws_polling,
            Some(AwsPolling {
                delay_seconds: Some(5),
                max_attempts: None
            })
        );
        let r = c.access.assume_role.as_ref().unwrap();
        assert_eq!(r.duration_seconds, Some(3600));
        assert!(c.access.skip_region_validation);
        assert_eq!(c.secrets(), vec!["tok"]);
        // What the build would refuse when it starts, validate refuses.
        assert_eq!(
            errs(r#""mfa_code": "123456", "assume_role": {"role_arn": "arn:aws:iam::123456789012:role/b", "tags": {"a": "b"}}"#),
            vec![
                "`mfa_code` is not implemented yet in imgbuild",
                "`assume_role.tags` and `assume_role.transitive_tag_keys` are not implemented yet in imgbuild",
            ]
        );
        assert_eq!(
            ok(r#""custom_endpoint_ec2": "http://127.0.0.1:5000""#)
                .access
                .custom_endpoint_ec2
                .as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            errs(r#""assume_role": {"duration_seconds": 60}, "aws_polling": {"delay_seconds": -1}"#),
            vec![
                "`assume_role` of builder `b` (role to assume) is missing the required key `role_arn`",
                "`duration_seconds` must be between 900 and 43200, found 60",
                "`delay_seconds` must be between 0 and 3600, found -1",
            ]
        );
        assert_eq!(
            errs(r#""insecure_skip_tls_verify": true"#),
            vec!["`insecure_skip_tls_verify` of builder `b` is a Packer option imgbuild does not support"]
        );
    }

    #[test]
    fn imgbuild_extensions_and_later_packer_options() {
        let c = ok(
            r#""build_timeout": "2h", "skip_create_ami": true, "no_ephemeral": true, "ena_support": true, "sriov_support": "false""#,
        );
        assert_eq!(c.build_timeout, Some(Duration::from_secs(7200)));
        assert!(c.skip_create_ami && c.no_ephemeral);
        assert_eq!(c.ami.ena_support, Some(true));
        assert_eq!(c.ami.sriov_support, Some(false));
        assert_eq!(
            errs(r#""build_timeout": "soon""#),
            vec!["`build_timeout`: \"soon\" is not a duration: expected a number at \"soon\""]
        );
    }

    #[test]
    fn weak_typing_of_booleans_and_the_empty_string() {
        let c = ok(
            r#""associate_public_ip_address": "{{user `empty`}}", "encrypt_boot": "{{user `yes`}}", "ebs_optimized": 1"#,
        );
        assert_eq!(c.run.associate_public_ip_address, None);
        assert_eq!(c.ami.encrypt_boot, Some(true));
        assert!(c.run.ebs_optimized);
        assert_eq!(
            errs(r#""ebs_optimized": "maybe""#),
            vec!["`ebs_optimized` must be true or false, found \"maybe\""]
        );
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let (_, d) = ebs(r#""ami_regoins": ["eu-west-1"]"#);
        assert_eq!(errors(&d), vec!["unknown key `ami_regoins` in builder `b`"]);
        assert!(all_text(&d).contains("did you mean `ami_regions`?"));
    }

    #[test]
    fn communicator_none_needs_no_username() {
        let (c, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "source_ami": "ami-1", "communicator": "none"}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert_eq!(c.ssh.communicator, Communicator::None);
    }
}
