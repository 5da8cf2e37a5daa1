//! The amazon-ebs build's error: one variant per failed operation, naming the call, the region
//! and the resource IDs.

use std::path::PathBuf;

use super::public_ip::LookupError;
use super::reuse::ReuseError;
use crate::aws::wait::WaitError;
use crate::aws::{ApiError, AwsError};
use crate::builder::fingerprint::FingerprintError;
use crate::provisioner::runtime::ProvisionError;

/// Why an amazon-ebs build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Polling(String),
    #[error("DescribeImages in {region} ({what}): {source}")]
    DescribeImages {
        region: String,
        what: String,
        source: ApiError,
    },
    #[error("source AMI {id} was not found in {region} (or is not visible to this account)")]
    SourceAmiNotFound { region: String, id: String },
    #[error("{0}")]
    SourceAmiFilter(String),
    #[error("AMI Name: '{name}' is used by an existing AMI in {region}: {ids}; use -force (or \"force_deregister\": true) to replace it")]
    AmiNameTaken {
        name: String,
        region: String,
        ids: String,
    },
    #[error("{0}")]
    AmiName(String),
    #[error("rendering {what}: {message}")]
    Render { what: String, message: String },
    #[error("DescribeSubnets in {region}: {source}")]
    DescribeSubnets { region: String, source: ApiError },
    #[error("DescribeVpcs in {region}: {source}")]
    DescribeVpcs { region: String, source: ApiError },
    #[error("DescribeSecurityGroups in {region}: {source}")]
    DescribeSecurityGroups { region: String, source: ApiError },
    #[error("{what} in {region}: {message}")]
    Network {
        region: String,
        what: &'static str,
        message: String,
    },
    #[error("looking up this machine's public address at {url} (for the temporary security group in {region}): {problem}; nothing was created. Instead: set \"temporary_security_group_source_cidrs\" to the address(es) imgbuild connects from (e.g. [\"203.0.113.7/32\"]), connect through \"ssh_bastion_host\", or give \"security_group_id(s)\"")]
    PublicIp {
        url: String,
        region: String,
        problem: LookupError,
    },
    #[error("generating the temporary {kind} key: {message}")]
    KeyGen { kind: &'static str, message: String },
    #[error("reading user_data_file {}: {source}", path.display())]
    UserDataFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ImportKeyPair {name} in {region}: {source}")]
    ImportKeyPair {
        region: String,
        name: String,
        source: ApiError,
    },
    #[error("CreateSecurityGroup in {region}: {source}")]
    CreateSecurityGroup { region: String, source: ApiError },
    #[error("AuthorizeSecurityGroupIngress {id} in {region}: {source}")]
    AuthorizeSecurityGroupIngress {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("RunInstances in {region} (source AMI {ami}, {instance_type}): {source}")]
    RunInstances {
        region: String,
        ami: String,
        instance_type: String,
        source: ApiError,
    },
    #[error("RunInstances in {region} (source AMI {ami}): EC2 refused every one of spot_instance_types: {each}; list more types, another subnet or availability zone, or a higher spot_price")]
    SpotTypesRefused {
        region: String,
        ami: String,
        each: String,
    },
    #[error("DescribeInstances {id} in {region}: {source}")]
    DescribeInstances {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("{call} in {region} returned no {field}")]
    MissingField {
        call: &'static str,
        field: &'static str,
        region: String,
    },
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("instance {id} in {region} has no {interface} address to connect to (its addresses: {addresses}); set ssh_interface or ssh_host")]
    NoAddress {
        region: String,
        id: String,
        interface: String,
        addresses: String,
    },
    /// Boxed: the provisioning error is large, and every step returns this type.
    #[error("provisioning: {0}")]
    Provision(Box<ProvisionError>),
    /// The source instance went away while provisioning waited for SSH or ran (a spot
    /// instance reclaimed, an AMI that does not boot, someone terminating it).
    #[error("the source instance {id} in {region} is {state} ({reason}); provisioning stopped (a reclaimed spot instance, an image that does not boot, or someone terminated it)")]
    InstanceGone {
        region: String,
        id: String,
        state: String,
        reason: String,
    },
    #[error("StopInstances {id} in {region}: {source}")]
    StopInstances {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("ModifyInstanceAttribute {id} in {region} ({what}): {source}")]
    ModifyInstanceAttribute {
        region: String,
        id: String,
        what: &'static str,
        source: ApiError,
    },
    #[error("DeregisterImage {id} in {region} (force_deregister): {source}")]
    DeregisterImage {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("DeleteSnapshot {id} in {region} (force_delete_snapshot): {source}")]
    DeleteSnapshot {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("CreateImage from instance {instance} in {region}: {source}")]
    CreateImage {
        region: String,
        instance: String,
        source: ApiError,
    },
    #[error("CopyImage {image} from {source_region} to {region}: {source}")]
    CopyImage {
        region: String,
        source_region: String,
        image: String,
        source: ApiError,
    },
    #[error("ModifyImageAttribute {id} in {region} ({what}): {source}")]
    ModifyImageAttribute {
        region: String,
        id: String,
        what: &'static str,
        source: ApiError,
    },
    #[error("ModifySnapshotAttribute {id} in {region}: {source}")]
    ModifySnapshotAttribute {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("CreateTags on {ids} in {region}: {source}")]
    CreateTags {
        region: String,
        ids: String,
        source: ApiError,
    },
    #[error("DeleteTags on {ids} in {region}: {source}")]
    DeleteTags {
        region: String,
        ids: String,
        source: ApiError,
    },
    #[error("removing the intermediate {what}: {message}")]
    Intermediate { what: String, message: String },
    #[error("writing the journal: {0}")]
    Journal(std::io::Error),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<BuildError>),
    #[error(transparent)]
    Fingerprint(FingerprintError),
    #[error(transparent)]
    Reuse(ReuseError),
    #[error("cancelled")]
    Cancelled,
}

/// The `field` (an ID) of `call`'s answer in `region`, or [`BuildError::MissingField`].
pub fn required(
    value: Option<&str>,
    call: &'static str,
    field: &'static str,
    region: &str,
) -> Result<String, BuildError> {
    value.map(str::to_string).ok_or(BuildError::MissingField {
        call,
        field,
        region: region.to_string(),
    })
}

impl BuildError {
    pub fn is_cancelled(&self) -> bool {
        match self {
            BuildError::Cancelled => true,
            BuildError::Provision(e) if matches!(**e, ProvisionError::Cancelled) => true,
            BuildError::Wait(WaitError::Cancelled { .. }) => true,
            BuildError::Several(v) => v.iter().all(BuildError::is_cancelled),
            _ => false,
        }
    }
}
