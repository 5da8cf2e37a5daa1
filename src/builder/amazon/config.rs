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

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{
    deprecated, error_at, flag, is_deferred, local_path_problem, num, one_of, opt_count,
    opt_string, relative_path_help, required_nonempty, strings_at, unsupported_if_set, warning_at,
    Located, Want,
};
use crate::communicator::ssh::{Communicator, SshConfig};
use crate::template::decode::{Dx, Obj};
use crate::template::diag::JsonPath;
use crate::template::funcs::clean_resource_name;
use crate::template::json::{Kind, Node};

/// Tags: key to value. Values may still hold build-time actions (`{{ .SourceAMI }}`), rendered
/// when the build knows them.
pub type Tags = BTreeMap<String, String>;

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

/// Credentials, region and API behaviour (Packer's `AccessConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessConfig {
    /// `access_key`: with `secret_key`; default: the AWS credential chain (environment,
    /// profile, instance role).
    pub access_key: Option<String>,
    /// `secret_key`.
    pub secret_key: Option<String>,
    /// `token`: session token for temporary credentials.
    pub token: Option<String>,
    /// `region`: the build region. When absent (allowed, as in Packer 1.6.6) the build uses
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's region, and fails if none is set.
    pub region: Option<String>,
    /// `profile`: the shared-config profile to use.
    pub profile: Option<String>,
    /// `shared_credentials_file`: path of the credentials file. Default `~/.aws/credentials`.
    pub shared_credentials_file: Option<PathBuf>,
    /// `mfa_code`: MFA token code for a profile or role that requires one.
    pub mfa_code: Option<String>,
    /// `assume_role`: assume this role after obtaining the base credentials.
    pub assume_role: Option<AssumeRole>,
    /// `custom_endpoint_ec2`: EC2 endpoint URL (e.g. a local emulator); a bare host name gets
    /// `https://`.
    pub custom_endpoint_ec2: Option<String>,
    /// `decode_authorization_messages`: decode "encoded authorization failure" messages with
    /// STS. Default false.
    pub decode_authorization_messages: bool,
    /// `max_retries`: maximum attempts of a throttled or failed API call. Default: the SDK's.
    pub max_retries: Option<u32>,
    /// `skip_metadata_api_check`: do not ask the EC2 instance metadata service for
    /// credentials. Default false.
    pub skip_metadata_api_check: bool,
    /// `skip_credential_validation`: do not check the credentials with STS before the build.
    /// Default false.
    pub skip_credential_validation: bool,
    /// `skip_region_validation`: do not check `region` and `ami_regions` against the regions
    /// EC2 lists (for new or private regions). Default false.
    pub skip_region_validation: bool,
    /// `aws_polling`: how often and how long to poll while waiting on EC2. Default: the
    /// `AWS_POLL_DELAY_SECONDS`/`AWS_MAX_ATTEMPTS` environment, else the waiters' defaults.
    pub aws_polling: Option<AwsPolling>,
}

/// `assume_role`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRole {
    /// `role_arn` (required).
    pub role_arn: String,
    /// `duration_seconds`: session length. Default: STS's (1 hour).
    pub duration_seconds: Option<u32>,
    /// `external_id`.
    pub external_id: Option<String>,
    /// `policy`: an IAM policy (JSON) that further restricts the session.
    pub policy: Option<String>,
    /// `policy_arns`: managed policies that further restrict the session.
    pub policy_arns: Vec<String>,
    /// `session_name`. Default: chosen by the build.
    pub session_name: Option<String>,
    /// `tags`: session tags.
    pub tags: Tags,
    /// `transitive_tag_keys`.
    pub transitive_tag_keys: Vec<String>,
}

/// `aws_polling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsPolling {
    /// `delay_seconds`: seconds between polls.
    pub delay_seconds: Option<u32>,
    /// `max_attempts`: polls before giving up.
    pub max_attempts: Option<u32>,
}

/// The image to create (Packer's `AMIConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    /// `ami_name` (required): 3-128 characters of `A-Za-z0-9()[] ./-'@_`. May hold build-time
    /// values (`{{ .SourceAMIName }}`), then it is checked when the build renders it.
    pub ami_name: String,
    /// `ami_description`.
    pub ami_description: Option<String>,
    /// `ami_virtualization_type`: `hvm` (default) or `paravirtual`. CreateImage takes the type
    /// of the source instance, so this only documents it.
    pub ami_virtualization_type: String,
    /// `ami_users`: account ids allowed to launch the AMI.
    pub ami_users: Vec<String>,
    /// `ami_groups`: groups allowed to launch the AMI (`all` makes it public).
    pub ami_groups: Vec<String>,
    /// `ami_product_codes`: product codes to attach.
    pub ami_product_codes: Vec<String>,
    /// `ami_regions`: regions to copy the AMI to, without duplicates and without the build
    /// region (the AMI is already there; when `region` is absent, the builder drops the region
    /// it resolved).
    pub ami_regions: Vec<String>,
    /// `tags` (and the block form `tag`): tags of the AMI (and, unless `snapshot_tags` is given,
    /// not of its snapshots).
    pub tags: Tags,
    /// `ena_support`: enable ENA on the AMI. Default unset: as the source.
    pub ena_support: Option<bool>,
    /// `sriov_support`: enable SR-IOV (`simple`) on the AMI. Default unset: as the source.
    pub sriov_support: Option<bool>,
    /// `force_deregister`: deregister an existing AMI with the same name first. Default false.
    pub force_deregister: bool,
    /// `force_delete_snapshot`: with `force_deregister`, also delete its snapshots. Default
    /// false.
    pub force_delete_snapshot: bool,
    /// `encrypt_boot`: encrypt the AMI's boot volume. Default unset: as the source.
    pub encrypt_boot: Option<bool>,
    /// `kms_key_id`: KMS key for `encrypt_boot` in the build region. Default: the account's
    /// default EBS key.
    pub kms_key_id: Option<String>,
    /// `region_kms_key_ids`: KMS key per copy region (an empty value means that region's
    /// default key). Every region must also be in `ami_regions`, and the other way round.
    pub region_kms_key_ids: BTreeMap<String, String>,
    /// `skip_save_build_region`: do not keep the AMI in the build region (only the copies).
    /// Default false.
    pub skip_save_build_region: bool,
    /// `snapshot_tags` (and the block form `snapshot_tag`): tags of the AMI's snapshots.
    pub snapshot_tags: Tags,
    /// `snapshot_users`: account ids allowed to create volumes from the snapshots.
    pub snapshot_users: Vec<String>,
    /// `snapshot_groups`: groups allowed to create volumes from the snapshots.
    pub snapshot_groups: Vec<String>,
    /// `imds_support` (later Packer): `v2.0` makes instances launched from the AMI require
    /// IMDSv2. Default unset.
    pub imds_support: Option<ImdsSupport>,
}

/// `imds_support`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsSupport {
    /// `v2.0`.
    V2,
}

/// The instance to launch (Packer's `RunConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// `instance_type` (required).
    pub instance_type: String,
    /// `source_ami`: the image to start from. With `source_ami_filter` as well, both apply.
    pub source_ami: Option<String>,
    /// `source_ami_filter`: find the source image (needs `owners` when `source_ami` is absent).
    pub source_ami_filter: Option<SourceAmiFilter>,
    /// `associate_public_ip_address`: default unset: the subnet's setting.
    pub associate_public_ip_address: Option<bool>,
    /// `availability_zone`.
    pub availability_zone: Option<String>,
    /// `disable_stop_instance`: do not stop the instance before creating the image (a
    /// provisioner must stop it). Default false.
    pub disable_stop_instance: bool,
    /// `ebs_optimized`. Default false.
    pub ebs_optimized: bool,
    /// `enable_t2_unlimited` (t2 types) or `enable_unlimited_credits` (later Packer; t2, t3,
    /// t3a, t4g): launch with unlimited CPU credits. Default false.
    pub enable_unlimited_credits: bool,
    /// `iam_instance_profile`: instance profile name for the build instance.
    pub iam_instance_profile: Option<String>,
    /// `skip_profile_validation`: do not check that `iam_instance_profile` exists. Default
    /// false.
    pub skip_profile_validation: bool,
    /// `shutdown_behavior`: what a shutdown from inside the instance does. Default `stop`.
    pub shutdown_behavior: ShutdownBehavior,
    /// `security_group_id` / `security_group_ids` (one of them): existing groups for the
    /// instance; then no temporary group is created.
    pub security_group_ids: Vec<String>,
    /// `security_group_filter`: find existing groups.
    pub security_group_filter: Option<SecurityGroupFilter>,
    /// `run_tags` (and the block form `run_tag`): tags of the build instance. The builder adds
    /// `Name: Packer Builder` when no `Name` is given, as Packer does.
    pub run_tags: Tags,
    /// `subnet_id`.
    pub subnet_id: Option<String>,
    /// `subnet_filter`: find the subnet (used when `subnet_id` is absent).
    pub subnet_filter: Option<SubnetFilter>,
    /// `vpc_id`.
    pub vpc_id: Option<String>,
    /// `vpc_filter`: find the VPC (used when `vpc_id` is absent).
    pub vpc_filter: Option<VpcFilter>,
    /// `tenancy` (or `placement.tenancy`): default unset: the VPC's.
    pub tenancy: Option<Tenancy>,
    /// `temporary_security_group_source_cidrs`: who may reach the communicator port through
    /// the temporary security group. Unset by default: **imgbuild does not default to
    /// `0.0.0.0/0` as Packer does**; the builder decides the secure default.
    pub temporary_security_group_source_cidrs: Option<Vec<String>>,
    /// `temporary_security_group_source_public_ip` (later Packer): allow only this machine's
    /// public IP (looked up at build time). Default false.
    pub temporary_security_group_source_public_ip: bool,
    /// `temporary_security_group_source_public_ip_url` (imgbuild): where to look the public IP
    /// up. Default `https://checkip.amazonaws.com`.
    pub temporary_security_group_source_public_ip_url: Option<String>,
    /// `user_data`: user data for the instance.
    pub user_data: Option<String>,
    /// `user_data_file`: read the user data from this file (checked to exist).
    pub user_data_file: Option<PathBuf>,
    /// `metadata_options` (later Packer): the instance metadata service of the build instance.
    pub metadata_options: MetadataOptions,
}

/// `shutdown_behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownBehavior {
    Stop,
    Terminate,
}

/// `tenancy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenancy {
    Default,
    Dedicated,
    Host,
}

impl Tenancy {
    pub fn as_str(self) -> &'static str {
        match self {
            Tenancy::Default => "default",
            Tenancy::Dedicated => "dedicated",
            Tenancy::Host => "host",
        }
    }
}

/// `source_ami_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAmiFilter {
    /// `filters`: DescribeImages filters (name to value).
    pub filters: BTreeMap<String, String>,
    /// `owners`: account ids or aliases (`amazon`, `self`, `aws-marketplace`) that own the image.
    pub owners: Vec<String>,
    /// `most_recent`: take the newest match instead of failing on several. Default false.
    pub most_recent: bool,
}

/// `subnet_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFilter {
    /// `filters`: DescribeSubnets filters.
    pub filters: BTreeMap<String, String>,
    /// `most_free`: the matching subnet with the most free addresses. Default false.
    pub most_free: bool,
    /// `random`: a random matching subnet. Default false.
    pub random: bool,
}

/// `vpc_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcFilter {
    /// `filters`: DescribeVpcs filters.
    pub filters: BTreeMap<String, String>,
}

/// `security_group_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupFilter {
    /// `filters`: DescribeSecurityGroups filters.
    pub filters: BTreeMap<String, String>,
}

/// `metadata_options`. Every field unset means "not sent": EC2's defaults apply (endpoint
/// enabled, tokens optional unless the source AMI requires IMDSv2, hop limit 1, tags disabled),
/// which are also the values Packer documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `http_endpoint`: `enabled` or `disabled`.
    pub http_endpoint: Option<String>,
    /// `http_tokens`: `optional` or `required` (IMDSv2 only).
    pub http_tokens: Option<String>,
    /// `http_put_response_hop_limit`: 1-64.
    pub http_put_response_hop_limit: Option<u32>,
    /// `instance_metadata_tags`: `enabled` or `disabled`.
    pub instance_metadata_tags: Option<String>,
}

/// One entry of `ami_block_device_mappings` / `launch_block_device_mappings`. Zero values are
/// unset, as in Packer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// `device_name` (required), e.g. `/dev/xvda`.
    pub device_name: String,
    /// `delete_on_termination`. Default false.
    pub delete_on_termination: bool,
    /// `encrypted`. Default unset: as the snapshot or the account default.
    pub encrypted: Option<bool>,
    /// `iops`: provisioned IOPS (io1, io2, gp3).
    pub iops: Option<u32>,
    /// `no_device`: suppress this device of the source image. Default false.
    pub no_device: bool,
    /// `snapshot_id`: create the volume from this snapshot.
    pub snapshot_id: Option<String>,
    /// `throughput`: MiB/s, gp3 only (125-1000).
    pub throughput: Option<u32>,
    /// `virtual_name`: an instance-store device (`ephemeral0` ...).
    pub virtual_name: Option<String>,
    /// `volume_type`: standard, io1, io2, gp2, gp3, sc1 or st1. Default unset: EC2's.
    pub volume_type: Option<String>,
    /// `volume_size`: GiB. Default unset: the snapshot's size.
    pub volume_size: Option<u32>,
    /// `kms_key_id`: KMS key for an encrypted volume (needs `encrypted: true`).
    pub kms_key_id: Option<String>,
}

/// Packer amazon-ebs options imgbuild does not implement, with what to do instead. Each is an
/// error when set to anything but an empty value.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("spot_price", "imgbuild launches on-demand instances only; remove it (an empty value is accepted)"),
    ("spot_instance_types", "imgbuild launches on-demand instances only; set instance_type instead"),
    ("spot_tags", "imgbuild launches on-demand instances only; use run_tags"),
    ("spot_tag", "imgbuild launches on-demand instances only; use run_tags"),
    ("spot_allocation_strategy", "imgbuild launches on-demand instances only; remove it"),
    ("block_duration_minutes", "spot blocks do not exist any more and imgbuild launches on-demand instances only; remove it"),
    ("fleet_tags", "fleets are only used for spot instances, which imgbuild does not request; use run_tags"),
    ("fleet_tag", "fleets are only used for spot instances, which imgbuild does not request; use run_tags"),
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
    ("spot_price_auto_product", "Packer deprecated it, and it only applies to spot instances, which imgbuild does not request"),
    ("windows_password_timeout", "imgbuild does not retrieve Windows passwords: it connects over SSH only"),
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

/// EC2 volume types.
pub const VOLUME_TYPES: &[&str] = &["standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"];

const AMI_NAME_CHARS: &str = "ami_name should only contain alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)";

impl AmazonEbsConfig {
    /// Decodes and checks a builder object whose `type` and `name` the caller has taken, and
    /// reports unknown keys (`finish`).
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AmazonEbsConfig {
        let access = AccessConfig::decode(&mut obj, dx);
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

impl AccessConfig {
    fn decode(obj: &mut Obj, dx: &mut Dx) -> AccessConfig {
        let access_key = opt_string(obj, dx, "access_key");
        let secret_key = opt_string(obj, dx, "secret_key");
        if access_key.is_some() != secret_key.is_some() {
            let key = if access_key.is_some() {
                "access_key"
            } else {
                "secret_key"
            };
            error_at(
                obj,
                dx,
                key,
                "`access_key` and `secret_key` must both be either set or not set.",
                None,
            );
        }
        let token = opt_string(obj, dx, "token");
        let region = opt_string(obj, dx, "region");
        let profile = opt_string(obj, dx, "profile");
        let shared_credentials_file =
            opt_string(obj, dx, "shared_credentials_file").map(|p| crate::checks::expand_user(&p));
        let mfa_code = opt_string(obj, dx, "mfa_code");
        let assume_role = assume_role(obj, dx);
        let custom_endpoint_ec2 = opt_string(obj, dx, "custom_endpoint_ec2").map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        let decode_authorization_messages =
            flag(obj, dx, "decode_authorization_messages").unwrap_or(false);
        let max_retries = opt_count(obj, dx, "max_retries", 1000);
        let skip_metadata_api_check = flag(obj, dx, "skip_metadata_api_check").unwrap_or(false);
        let skip_credential_validation =
            flag(obj, dx, "skip_credential_validation").unwrap_or(false);
        let skip_region_validation = flag(obj, dx, "skip_region_validation").unwrap_or(false);
        let aws_polling = obj
            .object(dx, "aws_polling", "polling of EC2 waiters")
            .map(|mut o| {
                let p = AwsPolling {
                    delay_seconds: opt_count(&mut o, dx, "delay_seconds", 3600),
                    max_attempts: opt_count(&mut o, dx, "max_attempts", 100_000),
                };
                o.finish(dx);
                p
            });
        AccessConfig {
            access_key,
            secret_key,
            token,
            region,
            profile,
            shared_credentials_file,
            mfa_code,
            assume_role,
            custom_endpoint_ec2,
            decode_authorization_messages,
            max_retries,
            skip_metadata_api_check,
            skip_credential_validation,
            skip_region_validation,
            aws_polling,
        }
    }
}

fn assume_role(obj: &mut Obj, dx: &mut Dx) -> Option<AssumeRole> {
    let mut o = obj.object(dx, "assume_role", "role to assume")?;
    let role_arn = required_nonempty(&mut o, dx, "role_arn", None);
    let duration_seconds = match num(&mut o, dx, "duration_seconds") {
        None | Some(0) => None,
        Some(s) if (900..=43200).contains(&s) => Some(s as u32),
        Some(s) => {
            error_at(
                &mut o,
                dx,
                "duration_seconds",
                format!("`duration_seconds` must be between 900 and 43200, found {s}"),
                None,
            );
            None
        }
    };
    let r = AssumeRole {
        role_arn,
        duration_seconds,
        external_id: opt_string(&mut o, dx, "external_id"),
        policy: opt_string(&mut o, dx, "policy"),
        policy_arns: o.strings(dx, "policy_arns").unwrap_or_default(),
        session_name: opt_string(&mut o, dx, "session_name"),
        tags: o.string_map(dx, "tags").unwrap_or_default(),
        transitive_tag_keys: o.strings(dx, "transitive_tag_keys").unwrap_or_default(),
    };
    o.finish(dx);
    Some(r)
}

impl AmiConfig {
    fn decode(obj: &mut Obj, dx: &mut Dx, build_region: Option<&str>) -> AmiConfig {
        let ami_name = required_nonempty(obj, dx, "ami_name", None);
        check_ami_name(obj, dx, &ami_name);
        let ami_description = opt_string(obj, dx, "ami_description");
        let ami_virtualization_type =
            one_of(obj, dx, "ami_virtualization_type", &["hvm", "paravirtual"])
                .unwrap_or_else(|| "hvm".to_string());
        let ami_users = obj.strings(dx, "ami_users").unwrap_or_default();
        let ami_groups = obj.strings(dx, "ami_groups").unwrap_or_default();
        let ami_product_codes = obj.strings(dx, "ami_product_codes").unwrap_or_default();
        let tags = decode_tags(obj, dx, "tags", "tag");
        let ena_support = flag(obj, dx, "ena_support");
        let sriov_support = flag(obj, dx, "sriov_support");
        let force_deregister = flag(obj, dx, "force_deregister").unwrap_or(false);
        let force_delete_snapshot = flag(obj, dx, "force_delete_snapshot").unwrap_or(false);
        let encrypt_boot = flag(obj, dx, "encrypt_boot");
        let kms_key_id = opt_string(obj, dx, "kms_key_id");
        let region_kms_key_ids = obj.string_map(dx, "region_kms_key_ids").unwrap_or_default();
        let skip_save_build_region = flag(obj, dx, "skip_save_build_region").unwrap_or(false);
        let snapshot_tags = decode_tags(obj, dx, "snapshot_tags", "snapshot_tag");
        let snapshot_users = obj.strings(dx, "snapshot_users").unwrap_or_default();
        let snapshot_groups = obj.strings(dx, "snapshot_groups").unwrap_or_default();
        let imds_support = one_of(obj, dx, "imds_support", &["v2.0"]).map(|_| ImdsSupport::V2);

        // Packer's order of checks (AMIConfig.Prepare).
        let listed_regions = strings_at(obj, dx, "ami_regions").unwrap_or_default();
        for region in region_kms_key_ids.keys() {
            if !listed_regions.iter().any(|r| &r.value == region) {
                error_at(
                    obj,
                    dx,
                    "region_kms_key_ids",
                    format!("Region {region} is in region_kms_key_ids but not in ami_regions"),
                    Some("add the region to ami_regions, or remove its key"),
                );
            }
        }
        let ami_regions = ami_regions(dx, listed_regions, &region_kms_key_ids, build_region);

        let encrypting = encrypt_boot == Some(true);
        if !ami_users.is_empty() {
            if kms_key_id.is_none() && encrypting {
                error_at(
                    obj,
                    dx,
                    "ami_users",
                    "Cannot share AMI encrypted with default KMS key",
                    Some("set kms_key_id to a customer managed key the other accounts may use"),
                );
            }
            if region_kms_key_ids.values().any(String::is_empty) {
                error_at(
                    obj,
                    dx,
                    "ami_users",
                    "Cannot share AMI encrypted with default KMS key for other regions",
                    Some("give every region in region_kms_key_ids a customer managed key"),
                );
            }
        }
        let mut kms_keys: Vec<(&'static str, &str)> = Vec::new();
        if let Some(k) = &kms_key_id {
            kms_keys.push(("kms_key_id", k));
        }
        for k in region_kms_key_ids.values().filter(|k| !k.is_empty()) {
            kms_keys.push(("region_kms_key_ids", k));
        }
        if !kms_keys.is_empty() && !encrypting {
            let key = kms_keys[0].0;
            error_at(
                obj,
                dx,
                key,
                "If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true.",
                Some("add \"encrypt_boot\": true"),
            );
        }
        for (key, k) in &kms_keys {
            if !is_deferred(k) && !valid_kms_key(k) {
                error_at(
                    obj,
                    dx,
                    key,
                    format!("\"{k}\" is not a valid KMS Key Id."),
                    Some("use a key id, a multi-region key id (mrk-...), alias/NAME, or the key's or alias's ARN"),
                );
            }
        }
        if !snapshot_users.is_empty()
            && kms_key_id.is_none()
            && region_kms_key_ids.is_empty()
            && encrypting
        {
            error_at(
                obj,
                dx,
                "snapshot_users",
                "Cannot share snapshot encrypted with default KMS key",
                Some("set kms_key_id (and region_kms_key_ids) to customer managed keys the other accounts may use"),
            );
        }

        AmiConfig {
            ami_name,
            ami_description,
            ami_virtualization_type,
            ami_users,
            ami_groups,
            ami_product_codes,
            ami_regions,
            tags,
            ena_support,
            sriov_support,
            force_deregister,
            force_delete_snapshot,
            encrypt_boot,
            kms_key_id,
            region_kms_key_ids,
            skip_save_build_region,
            snapshot_tags,
            snapshot_users,
            snapshot_groups,
            imds_support,
        }
    }
}

/// Length and characters of a name without build-time values (Packer checks after rendering).
fn check_ami_name(obj: &mut Obj, dx: &mut Dx, name: &str) {
    if name.is_empty() || is_deferred(name) {
        return;
    }
    let len = name.len();
    if !(3..=128).contains(&len) {
        error_at(
            obj,
            dx,
            "ami_name",
            "ami_name must be between 3 and 128 characters long",
            Some(&format!("it is {len} characters long")),
        );
    }
    let cleaned = clean_resource_name(name);
    if cleaned != name {
        let bad: String = name
            .chars()
            .zip(cleaned.chars())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a)
            .fold(String::new(), |mut acc, c| {
                if !acc.contains(c) {
                    acc.push(c);
                }
                acc
            });
        error_at(
            obj,
            dx,
            "ami_name",
            format!("{AMI_NAME_CHARS}; found {}", quote_chars(&bad)),
            Some("pipe the name through the `clean_resource_name` template filter to replace the others with `-`, e.g. \"web {{isotime | clean_resource_name}}\""),
        );
    }
}

fn quote_chars(chars: &str) -> String {
    chars
        .chars()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ami_regions`: duplicates dropped; regions missing from a non-empty `region_kms_key_ids`
/// reported; the build region dropped (the AMI is already there), as Packer does.
fn ami_regions(
    dx: &mut Dx,
    listed: Vec<Located<String>>,
    region_kms_key_ids: &BTreeMap<String, String>,
    build_region: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in listed {
        let region = item.value;
        if region.is_empty() || seen.contains(&region) {
            continue;
        }
        seen.push(region.clone());
        if !region_kms_key_ids.is_empty() && !region_kms_key_ids.contains_key(&region) {
            let d = dx.error(
                item.span,
                &item.path,
                format!("Region {region} is in ami_regions but not in region_kms_key_ids"),
            );
            d.notes.push(
                "help: when region_kms_key_ids is set, it needs a key (or \"\" for the region's default key) for every region in ami_regions".into(),
            );
        }
        if Some(region.as_str()) != build_region {
            out.push(region);
        }
    }
    out
}

/// A KMS key id, alias or ARN, as Packer's `ValidateKmsKey`, plus multi-region keys and the
/// `aws-cn` partition.
pub fn valid_kms_key(k: &str) -> bool {
    fn key_id(s: &str) -> bool {
        let s = s.strip_prefix("mrk-").unwrap_or(s);
        !s.is_empty() && s.chars().all(|c| matches!(c, 'a'..='f' | '0'..='9' | '-'))
    }
    fn alias(s: &str) -> bool {
        s.strip_prefix("alias/").is_some_and(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c))
        })
    }
    fn region(s: &str) -> bool {
        // [a-z]{2}-(gov-)?[a-z]+-\d
        let parts: Vec<&str> = s.split('-').collect();
        let lower = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
        let (first, rest) = match parts.split_first() {
            Some(v) => v,
            None => return false,
        };
        let (last, middle) = match rest.split_last() {
            Some(v) => v,
            None => return false,
        };
        let middle_ok = match middle {
            [m] => lower(m),
            ["gov", m] => lower(m),
            _ => false,
        };
        first.len() == 2
            && lower(first)
            && middle_ok
            && last.len() == 1
            && last.chars().all(|c| c.is_ascii_digit())
    }
    if key_id(k) || alias(k) {
        return true;
    }
    let parts: Vec<&str> = k.splitn(6, ':').collect();
    let [arn, partition, service, reg, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && ["aws", "aws-us-gov", "aws-cn"].contains(partition)
        && *service == "kms"
        && (reg.is_empty() || region(reg))
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (resource.strip_prefix("key/").is_some_and(key_id) || alias(resource))
}

impl RunConfig {
    fn decode(obj: &mut Obj, dx: &mut Dx) -> RunConfig {
        let instance_type = required_nonempty(
            obj,
            dx,
            "instance_type",
            Some("e.g. \"instance_type\": \"t3.micro\""),
        );
        let source_ami = opt_string(obj, dx, "source_ami");
        let source_ami_filter = source_ami_filter(obj, dx);
        if source_ami.is_none() {
            match &source_ami_filter {
                None => {
                    let (span, path) = (obj.head(), obj.path.clone());
                    let d = dx.error(
                        span,
                        &path,
                        "A source_ami or source_ami_filter must be specified",
                    );
                    d.notes.push(
                        "help: e.g. \"source_ami_filter\": {\"filters\": {\"name\": \"ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*\"}, \"owners\": [\"099720109477\"], \"most_recent\": true}".into(),
                    );
                }
                Some(f) if f.owners.is_empty() => {
                    error_at(
                        obj,
                        dx,
                        "source_ami_filter",
                        "For security reasons, your source AMI filter must declare an owner.",
                        Some("add \"owners\": the account ids or aliases (\"amazon\", \"self\") that publish the image"),
                    );
                }
                Some(_) => {}
            }
        }

        let associate_public_ip_address = flag(obj, dx, "associate_public_ip_address");
        let availability_zone = opt_string(obj, dx, "availability_zone");
        let disable_stop_instance = flag(obj, dx, "disable_stop_instance").unwrap_or(false);
        let ebs_optimized = flag(obj, dx, "ebs_optimized").unwrap_or(false);
        let enable_unlimited_credits = unlimited_credits(obj, dx, &instance_type);
        let iam_instance_profile = opt_string(obj, dx, "iam_instance_profile");
        let skip_profile_validation = flag(obj, dx, "skip_profile_validation").unwrap_or(false);
        let shutdown_behavior = match opt_string(obj, dx, "shutdown_behavior").as_deref() {
            None | Some("stop") => ShutdownBehavior::Stop,
            Some("terminate") => ShutdownBehavior::Terminate,
            Some(_) => {
                error_at(
                    obj,
                    dx,
                    "shutdown_behavior",
                    "shutdown_behavior only accepts 'stop' or 'terminate' values.",
                    None,
                );
                ShutdownBehavior::Stop
            }
        };
        let security_group_ids = security_groups(obj, dx);
        // As Packer: a filter without filters is no filter.
        let security_group_filter =
            filters(obj, dx, "security_group_filter", "security group filter").and_then(
                |(filters, o)| {
                    o.finish(dx);
                    (!filters.is_empty()).then_some(SecurityGroupFilter { filters })
                },
            );
        let run_tags = decode_tags(obj, dx, "run_tags", "run_tag");
        let subnet_id = opt_string(obj, dx, "subnet_id");
        let subnet_filter =
            filters(obj, dx, "subnet_filter", "subnet filter").and_then(|(filters, mut o)| {
                let f = SubnetFilter {
                    filters,
                    most_free: flag(&mut o, dx, "most_free").unwrap_or(false),
                    random: flag(&mut o, dx, "random").unwrap_or(false),
                };
                o.finish(dx);
                (!f.filters.is_empty()).then_some(f)
            });
        let vpc_id = opt_string(obj, dx, "vpc_id");
        let vpc_filter = filters(obj, dx, "vpc_filter", "VPC filter").and_then(|(filters, o)| {
            o.finish(dx);
            (!filters.is_empty()).then_some(VpcFilter { filters })
        });
        let tenancy = tenancy(obj, dx);

        let cidrs = source_cidrs(obj, dx);
        let public_ip = flag(obj, dx, "temporary_security_group_source_public_ip").unwrap_or(false);
        let public_ip_url = opt_string(obj, dx, "temporary_security_group_source_public_ip_url");
        if cidrs.is_some() && public_ip {
            error_at(
                obj,
                dx,
                "temporary_security_group_source_public_ip",
                "Only one of temporary_security_group_source_cidrs or temporary_security_group_source_public_ip can be specified.",
                None,
            );
        }
        if let Some(url) = &public_ip_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                error_at(
                    obj,
                    dx,
                    "temporary_security_group_source_public_ip_url",
                    format!("`temporary_security_group_source_public_ip_url` must be an http:// or https:// URL, found \"{url}\""),
                    None,
                );
            } else if !public_ip {
                warning_at(
                    obj,
                    dx,
                    "temporary_security_group_source_public_ip_url",
                    "`temporary_security_group_source_public_ip_url` has no effect without \"temporary_security_group_source_public_ip\": true",
                    None,
                );
            }
        }
        if !security_group_ids.is_empty() || security_group_filter.is_some() {
            for key in [
                "temporary_security_group_source_cidrs",
                "temporary_security_group_source_public_ip",
            ] {
                if obj.has(key) {
                    warning_at(
                        obj,
                        dx,
                        key,
                        format!("`{key}` has no effect when security groups are given"),
                        Some("the temporary security group is only created when security_group_id(s) and security_group_filter are absent"),
                    );
                }
            }
        }

        let user_data = opt_string(obj, dx, "user_data");
        let user_data_file = opt_string(obj, dx, "user_data_file").map(PathBuf::from);
        if user_data.is_some() && user_data_file.is_some() {
            error_at(
                obj,
                dx,
                "user_data_file",
                "Only one of user_data or user_data_file can be specified.",
                None,
            );
        } else if let Some(p) = &user_data_file {
            let deferred = p.to_str().is_some_and(is_deferred);
            if let Some(why) = (!deferred)
                .then(|| local_path_problem(p, Want::File))
                .flatten()
            {
                let msg = if why == "no such file or directory" {
                    format!("user_data_file not found: {}", p.display())
                } else {
                    format!("user_data_file is invalid: {}: {why}", p.display())
                };
                let help = relative_path_help(p);
                error_at(obj, dx, "user_data_file", msg, Some(&help));
            }
        }
        let metadata_options = metadata_options(obj, dx);

        RunConfig {
            instance_type,
            source_ami,
            source_ami_filter,
            associate_public_ip_address,
            availability_zone,
            disable_stop_instance,
            ebs_optimized,
            enable_unlimited_credits,
            iam_instance_profile,
            skip_profile_validation,
            shutdown_behavior,
            security_group_ids,
            security_group_filter,
            run_tags,
            subnet_id,
            subnet_filter,
            vpc_id,
            vpc_filter,
            tenancy,
            temporary_security_group_source_cidrs: cidrs,
            temporary_security_group_source_public_ip: public_ip,
            temporary_security_group_source_public_ip_url: public_ip_url,
            user_data,
            user_data_file,
            metadata_options,
        }
    }
}

fn source_ami_filter(obj: &mut Obj, dx: &mut Dx) -> Option<SourceAmiFilter> {
    let (filters, mut o) = filters(obj, dx, "source_ami_filter", "source AMI filter")?;
    let owners: Vec<String> = o
        .strings(dx, "owners")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let most_recent = flag(&mut o, dx, "most_recent").unwrap_or(false);
    o.finish(dx);
    // Packer: a filter with neither filters nor owners is no filter.
    (!filters.is_empty() || !owners.is_empty()).then_some(SourceAmiFilter {
        filters,
        owners,
        most_recent,
    })
}

/// A filter object: its `filters` map and the object, for the caller's other keys and
/// `finish`.
fn filters<'n>(
    obj: &mut Obj<'n>,
    dx: &mut Dx,
    key: &'static str,
    what: &str,
) -> Option<(BTreeMap<String, String>, Obj<'n>)> {
    let mut o = obj.object(dx, key, what)?;
    let filters = o.string_map(dx, "filters").unwrap_or_default();
    Some((filters, o))
}

fn unlimited_credits(obj: &mut Obj, dx: &mut Dx, instance_type: &str) -> bool {
    let t2 = flag(obj, dx, "enable_t2_unlimited").unwrap_or(false);
    let any = flag(obj, dx, "enable_unlimited_credits").unwrap_or(false);
    let family = instance_type.split('.').next().unwrap_or("");
    let known = !instance_type.is_empty() && !is_deferred(instance_type);
    if t2 && known && family != "t2" {
        error_at(
            obj,
            dx,
            "enable_t2_unlimited",
            format!("Error: T2 Unlimited enabled with a non-T2 Instance Type: {instance_type}"),
            Some("use \"enable_unlimited_credits\" for other burstable types (t3, t3a, t4g)"),
        );
    }
    if any && known && !["t2", "t3", "t3a", "t4g"].contains(&family) {
        error_at(
            obj,
            dx,
            "enable_unlimited_credits",
            format!("unlimited credits need a burstable instance type (t2, t3, t3a, t4g), found {instance_type}"),
            None,
        );
    }
    t2 || any
}

fn security_groups(obj: &mut Obj, dx: &mut Dx) -> Vec<String> {
    let one = opt_string(obj, dx, "security_group_id");
    let many: Vec<String> = obj
        .strings(dx, "security_group_ids")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    match (one, many.is_empty()) {
        (Some(_), false) => {
            error_at(
                obj,
                dx,
                "security_group_ids",
                "Only one of security_group_id or security_group_ids can be specified.",
                Some("put every group in security_group_ids"),
            );
            many
        }
        (Some(id), true) => vec![id],
        (None, _) => many,
    }
}

fn tenancy(obj: &mut Obj, dx: &mut Dx) -> Option<Tenancy> {
    fn parse(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> (bool, Option<Tenancy>) {
        let Some(v) = opt_string(obj, dx, key) else {
            return (false, None);
        };
        let t = match v.as_str() {
            "default" => Some(Tenancy::Default),
            "dedicated" => Some(Tenancy::Dedicated),
            "host" => Some(Tenancy::Host),
            other => {
                error_at(
                    obj,
                    dx,
                    key,
                    format!("Unknown tenancy type {other}"),
                    Some("use default, dedicated or host"),
                );
                None
            }
        };
        (true, t)
    }
    let (top_set, top) = parse(obj, dx, "tenancy");
    let Some(mut p) = obj.object(dx, "placement", "instance placement") else {
        return top;
    };
    let (inner_set, inner) = parse(&mut p, dx, "tenancy");
    for key in ["host_id", "host_resource_group_arn"] {
        unsupported_if_set(
            &mut p,
            dx,
            key,
            "dedicated host placement is not supported; use \"tenancy\": \"host\" to let EC2 place the instance on a host with auto-placement",
        );
    }
    if top_set && inner_set {
        error_at(
            &mut p,
            dx,
            "tenancy",
            "Only one of tenancy or placement.tenancy can be specified.",
            None,
        );
    }
    p.finish(dx);
    top.or(inner)
}

fn source_cidrs(obj: &mut Obj, dx: &mut Dx) -> Option<Vec<String>> {
    const KEY: &str = "temporary_security_group_source_cidrs";
    let items = strings_at(obj, dx, KEY)?;
    let mut out = Vec::new();
    for item in items {
        if item.value.is_empty() {
            continue;
        }
        if !is_deferred(&item.value) && !valid_cidr(&item.value) {
            let d = dx.error(
                item.span,
                &item.path,
                format!(
                    "Error parsing CIDR in {KEY}: invalid CIDR address: {}",
                    item.value
                ),
            );
            d.notes.push(
                "help: write an address with a prefix length, e.g. \"203.0.113.7/32\"".into(),
            );
        }
        out.push(item.value);
    }
    (!out.is_empty()).then_some(out)
}

/// An IPv4 or IPv6 CIDR block (`address/prefix`).
pub fn valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    !len.is_empty()
        && len.chars().all(|c| c.is_ascii_digit())
        && len.parse::<u8>().is_ok_and(|l| l <= max)
}

fn metadata_options(obj: &mut Obj, dx: &mut Dx) -> MetadataOptions {
    let Some(mut o) = obj.object(dx, "metadata_options", "instance metadata options") else {
        return MetadataOptions::default();
    };
    let http_put_response_hop_limit = match num(&mut o, dx, "http_put_response_hop_limit") {
        None | Some(0) => None,
        Some(n) if (1..=64).contains(&n) => Some(n as u32),
        Some(n) => {
            error_at(
                &mut o,
                dx,
                "http_put_response_hop_limit",
                format!("`http_put_response_hop_limit` must be between 1 and 64, found {n}"),
                None,
            );
            None
        }
    };
    let m = MetadataOptions {
        http_endpoint: one_of(&mut o, dx, "http_endpoint", &["enabled", "disabled"]),
        http_tokens: one_of(&mut o, dx, "http_tokens", &["optional", "required"]),
        http_put_response_hop_limit,
        instance_metadata_tags: one_of(
            &mut o,
            dx,
            "instance_metadata_tags",
            &["enabled", "disabled"],
        ),
    };
    o.finish(dx);
    m
}

/// A tag map and its repeatable block form (`tag: [{key, value}, ...]`), merged (the blocks
/// win on equal keys).
fn decode_tags(obj: &mut Obj, dx: &mut Dx, map_key: &'static str, block_key: &'static str) -> Tags {
    let mut out = obj.string_map(dx, map_key).unwrap_or_default();
    let Some((node, path)) = obj.take(block_key) else {
        return out;
    };
    let items: Vec<(&Node, JsonPath)> = match &node.kind {
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, path.index(i)))
            .collect(),
        Kind::Object(_) => vec![(node, path.clone())],
        _ => {
            let d = dx.error(
                node.span,
                &path,
                format!(
                    "`{block_key}` must be a list of {{\"key\": ..., \"value\": ...}} objects, found {}",
                    node.type_name()
                ),
            );
            d.notes.push(format!(
                "help: or write the tags as an object in `{map_key}`"
            ));
            return out;
        }
    };
    let what = format!("`{block_key}` of {}", obj.what);
    for (n, p) in items {
        let Some(mut o) = Obj::new(n, p, what.clone(), dx) else {
            continue;
        };
        let key = required_nonempty(&mut o, dx, "key", None);
        let value = o.string(dx, "value").unwrap_or_default();
        o.finish(dx);
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

fn block_devices(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Vec<BlockDevice> {
    let Some(items) = obj.array(dx, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (node, path)) in items.into_iter().enumerate() {
        let what = format!("`{key}`[{i}] of {}", obj.what);
        let Some(mut o) = Obj::new(node, path, what, dx) else {
            continue;
        };
        out.push(block_device(&mut o, dx));
        o.finish(dx);
    }
    out
}

fn block_device(o: &mut Obj, dx: &mut Dx) -> BlockDevice {
    let device_name = opt_string(o, dx, "device_name");
    if device_name.is_none() {
        error_at(
            o,
            dx,
            "device_name",
            "The `device_name` must be specified for every device in the block device mapping.",
            Some("e.g. \"device_name\": \"/dev/xvda\" (the root device name of the source AMI for the root volume)"),
        );
    }
    let volume_type = one_of(o, dx, "volume_type", VOLUME_TYPES);
    let size = |o: &mut Obj, dx: &mut Dx, key: &'static str| opt_count(o, dx, key, 1_000_000);
    let d = BlockDevice {
        device_name: device_name.unwrap_or_default(),
        delete_on_termination: flag(o, dx, "delete_on_termination").unwrap_or(false),
        encrypted: flag(o, dx, "encrypted"),
        iops: size(o, dx, "iops"),
        no_device: flag(o, dx, "no_device").unwrap_or(false),
        snapshot_id: opt_string(o, dx, "snapshot_id"),
        throughput: size(o, dx, "throughput"),
        virtual_name: opt_string(o, dx, "virtual_name"),
        volume_type,
        volume_size: size(o, dx, "volume_size"),
        kms_key_id: opt_string(o, dx, "kms_key_id"),
    };
    let dev = d.device_name.as_str();
    let iops = d.iops.unwrap_or(0);
    match d.volume_type.as_deref() {
        Some(t @ ("io1" | "io2")) => {
            // As Packer 1.6.6: checked when the size is known.
            if let Some(size) = d.volume_size {
                let ratio = if t == "io1" { 50 } else { 500 };
                if iops / size > ratio {
                    error_at(
                        o,
                        dx,
                        "iops",
                        format!("{dev}: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is {ratio}:1 for {t} volumes"),
                        None,
                    );
                }
                if !(100..=64000).contains(&iops) {
                    error_at(
                        o,
                        dx,
                        "iops",
                        format!("IOPS must be between 100 and 64000 for device {dev}"),
                        None,
                    );
                }
            }
        }
        Some("gp3") => {
            if let Some(t) = d.throughput {
                if !(125..=1000).contains(&t) {
                    error_at(
                        o,
                        dx,
                        "throughput",
                        format!("Throughput must be between 125 and 1000 for device {dev}"),
                        None,
                    );
                }
            }
            if d.iops.is_some() && !(3000..=16000).contains(&iops) {
                error_at(
                    o,
                    dx,
                    "iops",
                    format!("IOPS must be between 3000 and 16000 for device {dev}"),
                    None,
                );
            }
        }
        other => {
            if d.throughput.is_some() {
                error_at(
                    o,
                    dx,
                    "throughput",
                    format!("Throughput is not available for device {dev}"),
                    Some("throughput can only be set on gp3 volumes"),
                );
            }
            if d.iops.is_some() && other.is_some() {
                error_at(
                    o,
                    dx,
                    "iops",
                    format!("IOPS is not available for device {dev}"),
                    Some("provisioned IOPS can only be set on io1, io2 and gp3 volumes"),
                );
            }
        }
    }
    if d.kms_key_id.is_some() && d.encrypted != Some(true) {
        error_at(
            o,
            dx,
            "kms_key_id",
            format!(
                "The device {dev}, must also have `encrypted: true` when setting a kms_key_id."
            ),
            None,
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;
    use crate::template::diag::Diagnostics;

    const BASE: &str = r#""ami_name": "web-base", "instance_type": "t3.micro", "source_ami": "ami-0123456789abcdef0", "ssh_username": "ubuntu""#;

    /// Decodes a builder made of BASE plus `extra` (JSON members, may be empty).
    fn ebs(extra: &str) -> (AmazonEbsConfig, Diagnostics) {
        let text = if extra.is_empty() {
            format!("{{{BASE}}}")
        } else {
            format!("{{{BASE}, {extra}}}")
        };
        decode(&text, AmazonEbsConfig::decode)
    }

    fn raw(text: &str) -> (AmazonEbsConfig, Diagnostics) {
        decode(text, AmazonEbsConfig::decode)
    }

    fn ok(extra: &str) -> AmazonEbsConfig {
        let (c, d) = ebs(extra);
        assert!(!d.has_errors(), "unexpected errors: {:?}", errors(&d));
        c
    }

    fn errs(extra: &str) -> Vec<String> {
        errors(&ebs(extra).1)
    }

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
    fn ami_name_rules() {
        let (_, d) = raw(
            r#"{"ami_name": "ab", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["ami_name must be between 3 and 128 characters long"]
        );
        let long = "a".repeat(129);
        let (_, d) = raw(&format!(
            r#"{{"ami_name": "{long}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}}"#
        ));
        assert_eq!(
            errors(&d),
            vec!["ami_name must be between 3 and 128 characters long"]
        );
        let (_, d) = raw(
            r#"{"ami_name": "web*{x}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert_eq!(
            errors(&d),
            vec![format!("{AMI_NAME_CHARS}; found '*', '{{', '}}'")]
        );
        assert!(all_text(&d).contains("clean_resource_name"));
        // Build-time values: checked when the build renders the name.
        let (c, d) = raw(
            r#"{"ami_name": "web {{ .SourceAMIName }}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert_eq!(c.ami.ami_name, "web {{ .SourceAMIName }}");
        // Template functions are rendered before the check.
        let (c, d) = raw(
            r#"{"ami_name": "web {{timestamp}} {{ `a:b` | clean_resource_name }}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert!(c.ami.ami_name.ends_with(" a-b"), "{}", c.ami.ami_name);
    }

    #[test]
    fn source_ami_filter_rules() {
        let (c, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u",
            "source_ami_filter": {"filters": {"name": "ubuntu/*", "virtualization-type": "hvm"}, "owners": "099720109477", "most_recent": "true"}}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        let f = c.run.source_ami_filter.unwrap();
        assert_eq!(f.owners, vec!["099720109477"]);
        assert!(f.most_recent);
        assert_eq!(f.filters.get("name").map(String::as_str), Some("ubuntu/*"));

        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u",
            "source_ami_filter": {"filters": {"name": "x"}}}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["For security reasons, your source AMI filter must declare an owner."]
        );
        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u", "source_ami_filter": {}}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["A source_ami or source_ami_filter must be specified"]
        );
        // Both: accepted, as in Packer (DescribeImages gets the id and the filters).
        let c = ok(r#""source_ami_filter": {"filters": {"name": "x"}}"#);
        assert!(c.run.source_ami.is_some() && c.run.source_ami_filter.is_some());
        // Unknown keys inside are reported.
        let errs = errs(r#""source_ami_filter": {"owners": ["self"], "most_recnt": true}"#);
        assert_eq!(
            errs,
            vec!["unknown key `most_recnt` in `source_ami_filter` of builder `b` (source AMI filter)"]
        );
    }

    #[test]
    fn kms_and_encryption_rules() {
        assert_eq!(
            errs(r#""kms_key_id": "alias/x""#),
            vec!["If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true."]
        );
        assert_eq!(
            errs(r#""encrypt_boot": true, "kms_key_id": "k!""#),
            vec!["\"k!\" is not a valid KMS Key Id."]
        );
        assert_eq!(
            errs(
                r#""encrypt_boot": true, "region_kms_key_ids": {"us-east-2": "alias/x"}, "ami_regions": ["eu-west-1"]"#
            ),
            vec![
                "Region us-east-2 is in region_kms_key_ids but not in ami_regions",
                "Region eu-west-1 is in ami_regions but not in region_kms_key_ids",
            ]
        );
        let c = ok(
            r#""encrypt_boot": true, "region_kms_key_ids": {"us-east-2": "alias/x", "eu-west-1": ""}, "ami_regions": ["us-east-2", "eu-west-1"]"#,
        );
        assert_eq!(c.ami.region_kms_key_ids.len(), 2);
        assert_eq!(
            errs(r#""encrypt_boot": true, "ami_users": ["123456789012"]"#),
            vec!["Cannot share AMI encrypted with default KMS key"]
        );
        assert_eq!(
            errs(
                r#""encrypt_boot": true, "kms_key_id": "alias/a", "ami_users": ["123456789012"], "region_kms_key_ids": {"eu-west-1": ""}, "ami_regions": ["eu-west-1"]"#
            ),
            vec!["Cannot share AMI encrypted with default KMS key for other regions"]
        );
        assert_eq!(
            errs(r#""encrypt_boot": true, "snapshot_users": ["123456789012"]"#),
            vec!["Cannot share snapshot encrypted with default KMS key"]
        );
        assert!(errs(r#""encrypt_boot": false, "ami_users": ["123456789012"]"#).is_empty());
    }

    #[test]
    fn kms_key_formats() {
        for good in [
            "12345678-1234-1234-1234-123456789012",
            "alias/my/key_1",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
            "arn:aws:kms:us-east-1:123456789012:alias/x",
            "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/abcd",
            "arn:aws-cn:kms:cn-north-1:123456789012:key/abcd",
        ] {
            assert!(valid_kms_key(good), "{good}");
        }
        for bad in [
            "",
            "k",
            "alias/",
            "alias/a b",
            "arn:aws:kms:us-east-1:1234:key/abcd",
            "arn:aws:s3:us-east-1:123456789012:key/abcd",
            "arn:aws:kms:useast1:123456789012:key/abcd",
            "arn:aws:kms:us-east-1:123456789012:key/xyz",
        ] {
            assert!(!valid_kms_key(bad), "{bad}");
        }
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
    fn security_groups_merge_but_not_both_keys() {
        assert_eq!(
            ok(r#""security_group_id": "sg-1""#).run.security_group_ids,
            vec!["sg-1"]
        );
        assert_eq!(
            ok(r#""security_group_ids": ["sg-1", "sg-2"]"#)
                .run
                .security_group_ids,
            vec!["sg-1", "sg-2"]
        );
        assert_eq!(
            errs(r#""security_group_id": "sg-1", "security_group_ids": ["sg-2"]"#),
            vec!["Only one of security_group_id or security_group_ids can be specified."]
        );
    }

    #[test]
    fn temporary_security_group_options() {
        let c =
            ok(r#""temporary_security_group_source_cidrs": ["203.0.113.7/32", "2001:db8::/48"]"#);
        assert_eq!(
            c.run.temporary_security_group_source_cidrs,
            Some(vec![
                "203.0.113.7/32".to_string(),
                "2001:db8::/48".to_string()
            ])
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_cidrs": ["nope", "10.0.0.0/33", "10.0.0.1"]"#),
            vec![
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: nope",
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: 10.0.0.0/33",
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: 10.0.0.1",
            ]
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_cidrs": "10.0.0.0/8", "temporary_security_group_source_public_ip": true"#),
            vec!["Only one of temporary_security_group_source_cidrs or temporary_security_group_source_public_ip can be specified."]
        );
        let c = ok(
            r#""temporary_security_group_source_public_ip": true, "temporary_security_group_source_public_ip_url": "https://ip.example/""#,
        );
        assert!(c.run.temporary_security_group_source_public_ip);
        assert_eq!(
            c.run
                .temporary_security_group_source_public_ip_url
                .as_deref(),
            Some("https://ip.example/")
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_public_ip": true, "temporary_security_group_source_public_ip_url": "ip.example""#),
            vec!["`temporary_security_group_source_public_ip_url` must be an http:// or https:// URL, found \"ip.example\""]
        );
        let (_, d) = ebs(
            r#""security_group_id": "sg-1", "temporary_security_group_source_cidrs": ["10.0.0.0/8"]"#,
        );
        assert_eq!(
            warnings(&d),
            vec!["`temporary_security_group_source_cidrs` has no effect when security groups are given"]
        );
    }

    #[test]
    fn block_device_rules_as_packer() {
        let bd = |m: &str| format!(r#""launch_block_device_mappings": [{m}]"#);
        assert_eq!(
            errs(&bd(r#"{"volume_type": "gp2"}"#)),
            vec![
                "The `device_name` must be specified for every device in the block device mapping."
            ]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "gp9"}"#)),
            vec!["`volume_type` must be one of `standard`, `io1`, `io2`, `gp2`, `gp3`, `sc1`, `st1`, found \"gp9\""]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 10000, "volume_size": 10}"#)),
            vec!["/dev/sda1: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is 50:1 for io1 volumes"]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "io2", "iops": 10000, "volume_size": 10}"#)),
            vec!["/dev/sda1: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is 500:1 for io2 volumes"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 10, "volume_size": 10}"#
            )),
            vec!["IOPS must be between 100 and 64000 for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "io2", "iops": 100000, "volume_size": 1000}"#
            )),
            vec!["IOPS must be between 100 and 64000 for device /dev/sda1"]
        );
        // Without a size Packer 1.6.6 does not check io1/io2 IOPS.
        assert!(errs(&bd(
            r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 100000}"#
        ))
        .is_empty());
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp3", "throughput": 2000, "iops": 20000}"#
            )),
            vec![
                "Throughput must be between 125 and 1000 for device /dev/sda1",
                "IOPS must be between 3000 and 16000 for device /dev/sda1",
            ]
        );
        // gp3 without iops/throughput: EC2's baseline (Packer 1.6.6 wrongly demands both).
        let c = ok(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "gp3"}"#));
        assert_eq!(c.launch_block_device_mappings[0].iops, None);
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp2", "throughput": 200}"#
            )),
            vec!["Throughput is not available for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp2", "iops": 300}"#
            )),
            vec!["IOPS is not available for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "kms_key_id": "alias/x"}"#
            )),
            vec![
                "The device /dev/sda1, must also have `encrypted: true` when setting a kms_key_id."
            ]
        );
        let c = ok(
            r#""ami_block_device_mappings": [{"device_name": "/dev/sdb", "no_device": true}, {"device_name": "/dev/sdc", "virtual_name": "ephemeral0", "volume_size": 0}]"#,
        );
        assert!(c.ami_block_device_mappings[0].no_device);
        assert_eq!(
            c.ami_block_device_mappings[1].virtual_name.as_deref(),
            Some("ephemeral0")
        );
        assert_eq!(c.ami_block_device_mappings[1].volume_size, None);
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_size": 10, "volum_type": "gp2"}"#
            )),
            vec!["unknown key `volum_type` in `launch_block_device_mappings`[0] of builder `b`"]
        );
    }

    #[test]
    fn user_data_rules() {
        assert_eq!(
            errs(r#""user_data": "x", "user_data_file": "/nonexistent""#),
            vec!["Only one of user_data or user_data_file can be specified."]
        );
        assert_eq!(
            errs(r#""user_data_file": "/nonexistent/ud.sh""#),
            vec!["user_data_file not found: /nonexistent/ud.sh"]
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ud.sh");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let c = ok(&format!(
            r#""user_data_file": {}"#,
            js(f.display().to_string())
        ));
        assert_eq!(c.run.user_data_file.as_deref(), Some(f.as_path()));
        assert!(all_text(&ebs(r#""user_data_file": "rel/ud.sh""#).1).contains("current directory"));
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
                "`spot_price` of builder `b` is a Packer option imgbuild does not support",
                "`vault_aws_engine` of builder `b` is a Packer option imgbuild does not support",
                "`deprecate_at` of builder `b` is a Packer option imgbuild does not support",
                "`fast_launch` of builder `b` is a Packer option imgbuild does not support",
            ]
        );
        let (_, d) = ebs(r#""spot_price": "auto""#);
        assert!(all_text(&d).contains("on-demand"));
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
    fn unlimited_credits_rules() {
        assert_eq!(
            errs(r#""enable_t2_unlimited": true"#),
            vec!["Error: T2 Unlimited enabled with a non-T2 Instance Type: t3.micro"]
        );
        assert!(
            ok(r#""enable_unlimited_credits": true"#)
                .run
                .enable_unlimited_credits
        );
        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "m5.large", "source_ami": "ami-1", "ssh_username": "u", "enable_unlimited_credits": true}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["unlimited credits need a burstable instance type (t2, t3, t3a, t4g), found m5.large"]
        );
    }

    #[test]
    fn tag_blocks_merge_into_maps() {
        let c = ok(
            r#""tags": {"a": "1", "b": "2"}, "tag": [{"key": "b", "value": "two"}, {"key": "c", "value": "{{user `n`}}"}],
            "run_tag": {"key": "r", "value": "x"}, "snapshot_tag": [{"key": "s"}], "run_volume_tag": [{"key": "v", "value": "w"}]"#,
        );
        assert_eq!(
            c.ami
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            vec!["a=1", "b=two", "c=7"]
        );
        assert_eq!(c.run.run_tags.get("r").map(String::as_str), Some("x"));
        assert_eq!(c.ami.snapshot_tags.get("s").map(String::as_str), Some(""));
        assert_eq!(c.run_volume_tags.get("v").map(String::as_str), Some("w"));
        assert_eq!(
            errs(r#""tag": [{"value": "x"}]"#),
            vec!["`tag` of builder `b` is missing the required key `key`"]
        );
        assert_eq!(
            errs(r#""tag": "x""#),
            vec!["`tag` must be a list of {\"key\": ..., \"value\": ...} objects, found a string"]
        );
    }

    #[test]
    fn metadata_options_and_imds_support() {
        let c = ok(
            r#""metadata_options": {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 2, "instance_metadata_tags": "disabled"}, "imds_support": "v2.0""#,
        );
        let m = &c.run.metadata_options;
        assert_eq!(m.http_tokens.as_deref(), Some("required"));
        assert_eq!(m.http_put_response_hop_limit, Some(2));
        assert_eq!(c.ami.imds_support, Some(ImdsSupport::V2));
        assert_eq!(
            errs(
                r#""metadata_options": {"http_endpoint": "on", "http_tokens": "always", "http_put_response_hop_limit": 65}, "imds_support": "v1""#
            ),
            vec![
                "`imds_support` must be one of `v2.0`, found \"v1\"",
                "`http_put_response_hop_limit` must be between 1 and 64, found 65",
                "`http_endpoint` must be one of `enabled`, `disabled`, found \"on\"",
                "`http_tokens` must be one of `optional`, `required`, found \"always\"",
            ]
        );
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
            "assume_role": {"role_arn": "arn:aws:iam::123456789012:role/builder", "duration_seconds": 3600, "tags": {"a": "b"}},
            "skip_region_validation": true, "profile": "ci", "token": "tok", "mfa_code": "123456""#,
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
        assert_eq!(c.secrets(), vec!["tok", "123456"]);
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
    fn filters_and_network() {
        let c = ok(
            r#""subnet_filter": {"filters": {"tag:Name": "build"}, "most_free": true}, "vpc_filter": {"filters": {"isDefault": "true"}},
            "security_group_filter": {"filters": {"tag:Class": "packer"}}, "availability_zone": "us-east-1a""#,
        );
        let s = c.run.subnet_filter.unwrap();
        assert!(s.most_free && !s.random);
        assert_eq!(c.run.vpc_filter.unwrap().filters.len(), 1);
        assert!(c.run.security_group_filter.is_some());
        assert_eq!(c.run.availability_zone.as_deref(), Some("us-east-1a"));
        // A filter without filters is no filter, as in Packer.
        assert_eq!(
            ok(r#""subnet_filter": {"random": true}"#).run.subnet_filter,
            None
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
