//! The amazon-ebs build, step by step in Packer's order: source image, pre-validation, network,
//! key pair, security group, launch, wait, address, provisioning (the seam), stop, forced
//! deregistration, image, encryption, region copies, sharing, tags. Every resource is recorded in
//! the ledger the moment its ID exists; teardown is the caller's (see `teardown`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, CreateVolumePermission,
    CreateVolumePermissionModifications, CreditSpecificationRequest, EbsBlockDevice, Filter,
    HttpTokensState, IamInstanceProfileSpecification, Image, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceMetadataTagsState,
    InstanceNetworkInterfaceSpecification, InstanceStateName, IpPermission, IpRange, Ipv6Range,
    LaunchPermission, LaunchPermissionModifications, PermissionGroup, Placement, ResourceType,
    ShutdownBehavior as Ec2Shutdown, Tag, TagSpecification, Tenancy as Ec2Tenancy, VolumeType,
};
use aws_sdk_ec2::Client;

use super::aws::{Api, ApiError, Aws, AwsError};
use super::config::{AmazonEbsConfig, BlockDevice, ShutdownBehavior, Tenancy};
use super::human_duration;
use super::keys::{self, TempKey};
use super::plan::{self, Addresses, Ingress, TAG_BUILD, TAG_RUN_ID, TAG_TEMPORARY};
use super::reuse::{self, Lookup, ReuseError};
use super::teardown::{self, lock};
use super::wait::{self, Polling, Probe, WaitError};
use crate::builder::fingerprint::{self, Fingerprint, FingerprintError, Inputs, TAG_FINGERPRINT};
use crate::cancel::Cancel;
use crate::communicator::ssh::Communicator;
use crate::interact::{self, Interact};
use crate::ledger::{EntryId, Ledger, Undo};
use crate::provisioner::runtime::{self, ProvisionContext, ProvisionError};
use crate::provisioner::PreparedProvisioner;
use crate::template::funcs::{Engine, Phase, Scope};
use crate::ui::Ui;

/// How long each wait may take unless `aws_polling` says otherwise (Packer: 10 minutes, and 30
/// for images).
const INSTANCE_WAIT: Duration = Duration::from_secs(10 * 60);
const IMAGE_WAIT: Duration = Duration::from_secs(30 * 60);
/// How often the source instance's state is checked while provisioning waits for SSH and runs.
const WATCH_EVERY: Duration = Duration::from_secs(10);

/// Everything one build needs.
pub struct Ctx<'a> {
    pub name: &'a str,
    pub cfg: &'a AmazonEbsConfig,
    pub provisioners: &'a [PreparedProvisioner],
    pub error_cleanup: Option<&'a PreparedProvisioner>,
    pub aws: &'a Aws,
    pub run_id: &'a str,
    pub ledger: &'a Mutex<Ledger>,
    pub ui: &'a Ui,
    pub engine: &'a Engine,
    pub user: &'a BTreeMap<String, String>,
    pub template_dir: &'a str,
    /// `-force`.
    pub force: bool,
    pub polling: Polling,
    pub cancel: Cancel,
    /// `-on-error=ask` and `-debug` (prompts, pauses, the saved key).
    pub interact: &'a Interact,
    /// `-skip-unchanged` or `reuse_unchanged`: what the reuse fingerprint is made of. The
    /// build tags its AMIs with the fingerprint and reuses an AMI that carries it already.
    pub reuse: Option<Inputs<'a>>,
}

/// Packer's builder id of amazon-ebs artifacts (`-machine-readable` `builder-id` records).
pub const BUILDER_ID: &str = "mitchellh.amazonebs";

/// The result: the AMI in each region, and the build's generated data (`SourceAMI`,
/// `BuildRegion`, ...) that post-processors render `{{ build `...` }}` against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    pub amis: BTreeMap<String, String>,
    pub build_data: BTreeMap<String, String>,
    /// The null builder's artifact (Packer's `NullArtifact`): no image at all, id `Null`.
    pub null: bool,
}

impl Artifact {
    /// What the null builder produces (with its build data, for post-processors).
    pub fn null(build_data: BTreeMap<String, String>) -> Artifact {
        Artifact {
            build_data,
            null: true,
            ..Artifact::default()
        }
    }

    /// Packer's builder id of the artifact (`-machine-readable` `builder-id` records).
    pub fn builder_id(&self) -> &'static str {
        if self.null {
            crate::builder::null::BUILDER_ID
        } else {
            BUILDER_ID
        }
    }

    /// Packer's `Id()`: `region:ami` pairs sorted by region, joined by `,` (`Null` for the null
    /// builder).
    pub fn id(&self) -> String {
        if self.null {
            return crate::builder::null::ARTIFACT_ID.to_string();
        }
        let pairs: Vec<String> = self.amis.iter().map(|(r, a)| format!("{r}:{a}")).collect();
        pairs.join(",")
    }

    /// Packer's `String()`: `AMIs were created:\n<region>: <ami>\n...`.
    pub fn describe(&self) -> String {
        if self.null {
            return crate::builder::null::ARTIFACT_STRING.to_string();
        }
        let mut s = String::from("AMIs were created:\n");
        for (r, a) in &self.amis {
            s.push_str(&format!("{r}: {a}\n"));
        }
        s
    }
}

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
    #[error("{0}")]
    Ingress(String),
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
    #[error("provisioning: {0}")]
    Provision(ProvisionError),
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
    #[error("`{option}` is not implemented yet in imgbuild: {instead}")]
    NotYet {
        option: &'static str,
        instead: &'static str,
    },
    #[error(transparent)]
    Fingerprint(FingerprintError),
    #[error(transparent)]
    Reuse(ReuseError),
    #[error("cancelled")]
    Cancelled,
}

/// The `field` (an ID) of `call`'s answer in `region`, or [`BuildError::MissingField`].
#[allow(clippy::result_large_err)] // BuildError's size is the module's (ProvisionError).
fn required(
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
            BuildError::Cancelled | BuildError::Provision(ProvisionError::Cancelled) => true,
            BuildError::Wait(WaitError::Cancelled { .. }) => true,
            BuildError::Several(v) => v.iter().all(BuildError::is_cancelled),
            _ => false,
        }
    }
}

/// An image this build made, with its ledger entries.
#[derive(Debug, Clone)]
struct Made {
    region: String,
    id: String,
    entry: EntryId,
    snapshots: Vec<(String, EntryId)>,
}

fn filters(map: &BTreeMap<String, String>) -> Vec<Filter> {
    map.iter()
        .map(|(k, v)| Filter::builder().name(k).values(v).build())
        .collect()
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn to_tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(rt: ResourceType, map: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(to_tags(map)))
        .build()
}

/// An EC2 block device mapping from a template one (zero values unset, as in Packer).
pub fn block_device(d: &BlockDevice) -> BlockDeviceMapping {
    let b = BlockDeviceMapping::builder().device_name(&d.device_name);
    if d.no_device {
        return b.no_device("").build();
    }
    if let Some(v) = d
        .virtual_name
        .as_deref()
        .filter(|v| v.starts_with("ephemeral"))
    {
        return b.virtual_name(v).build();
    }
    let mut e = EbsBlockDevice::builder().delete_on_termination(d.delete_on_termination);
    if let Some(t) = &d.volume_type {
        e = e.volume_type(VolumeType::from(t.as_str()));
    }
    if let Some(s) = d.volume_size {
        e = e.volume_size(s as i32);
    }
    if let Some(i) = d.iops {
        e = e.iops(i as i32);
    }
    if let Some(t) = d.throughput {
        e = e.throughput(t as i32);
    }
    if let Some(s) = &d.snapshot_id {
        e = e.snapshot_id(s);
    }
    if let Some(enc) = d.encrypted {
        e = e.encrypted(enc);
        if enc {
            if let Some(k) = &d.kms_key_id {
                e = e.kms_key_id(k);
            }
        }
    }
    b.ebs(e.build()).build()
}

/// `no_ephemeral`: hide the instance-store devices Packer hides (`xvdb` .. `xvdy`).
fn no_ephemeral_mappings() -> Vec<BlockDeviceMapping> {
    (0..24u8)
        .map(|i| {
            BlockDeviceMapping::builder()
                .device_name(format!("xvd{}", (b'b' + i) as char))
                .no_device("")
                .build()
        })
        .collect()
}

fn state_reason(i: &Instance) -> String {
    i.state_reason()
        .map(|r| match (r.code(), r.message()) {
            // EC2 often repeats the code in the message: `Client.X: Client.X: ...` says it once.
            (Some(c), Some(m)) if !m.starts_with(c) => format!("{c}: {m}"),
            (_, Some(m)) => m.to_string(),
            (Some(c), None) => c.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "EC2 gave no reason".to_string())
}

impl Ctx<'_> {
    fn say(&self, msg: impl AsRef<str>) {
        self.ui.say(&format!("==> {}: {}", self.name, msg.as_ref()));
    }

    fn progress(&self) -> impl Fn(String) + Sync + '_ {
        move |m| self.say(m)
    }

    fn run_tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_RUN_ID.to_string(), self.run_id.to_string()),
            (TAG_BUILD.to_string(), self.name.to_string()),
        ])
    }

    async fn c<F: std::future::Future>(&self, fut: F) -> Result<F::Output, BuildError> {
        self.cancel.run(fut).await.ok_or(BuildError::Cancelled)
    }

    fn record(&self, undo: Undo, intent: Option<u64>) -> Result<EntryId, BuildError> {
        let (id, r) = lock(self.ledger).record(undo, intent);
        r.map_err(BuildError::Journal)?;
        Ok(id)
    }

    fn intent(
        &self,
        call: &str,
        region: &str,
        token: &str,
        name: Option<&str>,
    ) -> Result<u64, BuildError> {
        lock(self.ledger)
            .intent(call, region, token, name)
            .map_err(BuildError::Journal)
    }

    /// The run tags and the mark of a resource that is not (yet) the product: images and
    /// snapshots carry it until the build succeeds, so that `imgbuild cleanup` may remove an
    /// image it finds by its tags alone only when it was never delivered.
    fn temporary_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.run_tags();
        t.insert(TAG_TEMPORARY.to_string(), "true".to_string());
        t
    }

    /// Test hook (`testhook::pause_at`): holds the build after a create call returned
    /// and before its result is recorded (a kill now loses the ID, as a kill mid-call would).
    /// Not interrupted by Ctrl-C: the result is recorded after the pause in any case.
    async fn test_hold(&self, step: &str) {
        if let Some(d) = crate::testhook::pause_at(step) {
            tokio::time::sleep(d).await;
        }
    }

    fn render(
        &self,
        what: &str,
        src: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<String, BuildError> {
        let scope = Scope {
            phase: Phase::Build,
            user: self.user,
            template_dir: self.template_dir,
            build_name: Some(self.name),
            build_type: Some("amazon-ebs"),
            build: Some(data),
            fields: Some(data),
        };
        self.engine
            .render(src, &scope)
            .map_err(|e| BuildError::Render {
                what: what.to_string(),
                message: e.message,
            })
    }

    fn render_tags(
        &self,
        what: &str,
        tags: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BuildError> {
        let render = |src: &str| {
            self.render(what, src, data).map_err(|e| match e {
                BuildError::Render { message, .. } => message,
                other => other.to_string(),
            })
        };
        plan::render_tags(tags, render).map_err(|(key, message)| BuildError::Render {
            what: format!("{what} {key:?}"),
            message,
        })
    }

    async fn pause_point(&self, step: &str) -> Result<(), BuildError> {
        if let Some(d) = crate::testhook::pause_at(step) {
            if !self.cancel.sleep(d).await {
                return Err(BuildError::Cancelled);
            }
        }
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        // -debug: a pause before the next step.
        if !self
            .interact
            .pause(interact::step_after(step), &self.cancel)
            .await
        {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// The whole build. On error, what was created is in the ledger for the caller to undo.
    pub async fn run(&self) -> Result<Artifact, BuildError> {
        let cfg = self.cfg;
        let region = self.aws.region.clone();
        let ec2 = self.aws.ec2(&region);
        let copy_regions: Vec<String> = cfg
            .ami
            .ami_regions
            .iter()
            .filter(|r| **r != region)
            .cloned()
            .collect();
        for (on, key) in [
            (
                cfg.access.decode_authorization_messages,
                "decode_authorization_messages",
            ),
            (
                cfg.access.skip_metadata_api_check,
                "skip_metadata_api_check",
            ),
        ] {
            if on {
                self.ui.error(&format!(
                    "==> {}: warning: `{key}` has no effect yet in imgbuild",
                    self.name
                ));
            }
        }
        if cfg.run.temporary_security_group_source_public_ip {
            return Err(BuildError::NotYet {
                option: "temporary_security_group_source_public_ip",
                instead: "put your public address in temporary_security_group_source_cidrs (e.g. [\"203.0.113.7/32\"])",
            });
        }

        // Source image and the build data it gives.
        self.say(match &cfg.run.source_ami {
            Some(id) => format!("Prevalidating source AMI {id} in {region}..."),
            None => format!("Finding the source AMI in {region}..."),
        });
        let source = self.source_image(&ec2, &region).await?;
        if !matches!(source.image_id(), Some(id) if !id.is_empty()) {
            return Err(BuildError::MissingField {
                call: "DescribeImages",
                field: "ImageId",
                region: region.clone(),
            });
        }
        let mut data = plan::source_fields(&source, &region);
        data.insert("PackerRunUUID".into(), self.run_id.to_string());
        data.insert(
            "ConnType".into(),
            match cfg.ssh.communicator {
                Communicator::Ssh => "ssh".into(),
                Communicator::None => "none".into(),
            },
        );
        let source_id = data["SourceAMI"].clone();
        self.say(format!(
            "Source AMI: {source_id} ({})",
            source.name().unwrap_or("no name")
        ));

        // Reuse when nothing changed: an AMI with this build's fingerprint is the artifact.
        let fingerprint = self.fingerprint(&source_id)?;
        if let Some(fp) = &fingerprint {
            if let Some(a) = self.reusable(fp, &region, &copy_regions, &data).await? {
                return Ok(a);
            }
        }

        // Names rendered now that build values are known; then pre-validation, before anything
        // is created.
        let ami_name = self.render("ami_name", &cfg.ami.ami_name, &data)?;
        if !cfg.skip_create_ami {
            plan::check_ami_name(&ami_name).map_err(BuildError::AmiName)?;
        }
        let ami_description = cfg
            .ami
            .ami_description
            .as_deref()
            .map(|d| self.render("ami_description", d, &data))
            .transpose()?;
        let force = self.force || cfg.ami.force_deregister;
        let existing = self
            .prevalidate(&ami_name, &region, &copy_regions, force)
            .await?;
        let ingress = if cfg.run.security_group_ids.is_empty()
            && cfg.run.security_group_filter.is_none()
        {
            let i = plan::ingress(cfg).map_err(BuildError::Ingress)?;
            if let Ingress::Cidrs(c) = &i {
                if c.iter().any(|c| plan::is_open_world(c)) {
                    self.ui.error(&format!(
                        "==> {}: WARNING: the temporary security group lets the whole internet ({}) reach port {}",
                        self.name,
                        c.join(", "),
                        cfg.ssh.ssh_port
                    ));
                }
            }
            Some(i)
        } else {
            None
        };
        let user_data = match (&cfg.run.user_data, &cfg.run.user_data_file) {
            (Some(u), _) => Some(u.clone().into_bytes()),
            (None, Some(p)) => {
                Some(std::fs::read(p).map_err(|source| BuildError::UserDataFile {
                    path: p.clone(),
                    source,
                })?)
            }
            (None, None) => None,
        };
        let run_tags = {
            let mut t = self.render_tags("run_tags", &cfg.run.run_tags, &data)?;
            t.entry("Name".into())
                .or_insert_with(|| "Packer Builder".into());
            t.extend(self.run_tags());
            t
        };
        let mut volume_tags = self.render_tags("run_volume_tags", &cfg.run_volume_tags, &data)?;
        volume_tags.extend(self.run_tags());
        let net = self.network(&ec2, &region).await?;
        self.pause_point("source").await?;

        // Key pair.
        let (key_name, temp_key) = self.key_pair(&ec2, &region).await?;
        if let Some(k) = &temp_key {
            data.insert("SSHPublicKey".into(), k.public_openssh.clone());
            self.interact.save_key(k.private_openssh());
        }
        self.pause_point("key_pair").await?;

        // Security group.
        let groups = match ingress {
            Some(i) => vec![self.security_group(&ec2, &region, &net, i).await?],
            None => self.existing_groups(&ec2, &region, &net).await?,
        };
        self.pause_point("security_group").await?;

        // Launch and wait.
        let instance = self
            .launch(
                &ec2,
                &region,
                &source_id,
                key_name.as_deref(),
                &groups,
                &net,
                user_data,
                &run_tags,
                &volume_tags,
            )
            .await?;
        let instance_id = required(
            instance.instance_id(),
            "DescribeInstances",
            "InstanceId",
            &region,
        )?;
        self.pause_point("launch").await?;

        // Connect and provision.
        let host = self.host(&ec2, &region, &instance).await?;
        data.insert("ID".into(), instance_id.clone());
        data.insert("Host".into(), host.clone());
        data.insert("Port".into(), cfg.ssh.ssh_port.to_string());
        data.insert("User".into(), cfg.ssh.ssh_username.clone());
        if cfg.ssh.communicator == Communicator::Ssh {
            self.say(format!(
                "Provisioning over SSH at {host}:{}",
                cfg.ssh.ssh_port
            ));
        }
        let pctx = ProvisionContext {
            build_name: self.name,
            build_type: "amazon-ebs",
            host: host.clone(),
            port: cfg.ssh.ssh_port,
            ssh: &cfg.ssh,
            private_key: temp_key.as_ref().map(TempKey::private_openssh),
            provisioners: self.provisioners,
            error_cleanup: self.error_cleanup,
            build_data: data.clone(),
            ui: self.ui,
        };
        let provisioned = loop {
            // The instance is watched meanwhile: a terminated one never answers SSH.
            let r = self
                .c(async {
                    tokio::select! {
                        r = runtime::run(&pctx, &self.cancel) => Ok(r),
                        gone = self.watch_instance(&ec2, &region, &instance_id),
                            if cfg.ssh.communicator == Communicator::Ssh => Err(gone),
                    }
                })
                .await??;
            // -on-error=ask: the person may run provisioning again on the same instance.
            match &r {
                Err(e) if self.interact.asks() && !matches!(e, ProvisionError::Cancelled) => {
                    let error = self.ui.redactor.redact(&e.to_string());
                    let choice = self
                        .interact
                        .on_failure("provisioning", &error, true, &self.cancel)
                        .await;
                    if choice != interact::Choice::Retry {
                        break r;
                    }
                }
                _ => break r,
            }
        };
        drop(temp_key);
        match provisioned {
            Ok(()) => {}
            Err(ProvisionError::Cancelled) => return Err(BuildError::Cancelled),
            Err(e) => return Err(BuildError::Provision(e)),
        }
        self.pause_point("provision").await?;

        // Stop.
        self.stop(&ec2, &region, &instance_id).await?;
        self.pause_point("stop").await?;
        self.modify_instance(&ec2, &region, &instance_id).await?;

        if cfg.skip_create_ami {
            self.say("skip_create_ami: no AMI is created");
            return Ok(Artifact {
                build_data: data,
                ..Artifact::default()
            });
        }
        if force {
            self.force_deregister(&existing).await?;
        }

        // The image. An image that is not the product in the build region (re-encrypted, or not
        // kept there) gets a temporary name: EC2 refuses two images of one name in a region.
        let intermediate = cfg.ami.encrypt_boot == Some(true)
            || (cfg.ami.skip_save_build_region && !copy_regions.is_empty());
        let first_name = if intermediate {
            format!("imgbuild-intermediate-{}", uuid::Uuid::now_v7().simple())
        } else {
            ami_name.clone()
        };
        let mut made = self
            .create_image(
                &ec2,
                &region,
                &instance_id,
                &first_name,
                ami_description.as_deref(),
            )
            .await?;
        if cfg.ami.encrypt_boot == Some(true) {
            made = self
                .encrypt_in_place(made, &ami_name, ami_description.as_deref())
                .await?;
        }
        let mut copies = Vec::new();
        if !copy_regions.is_empty() {
            self.say(format!(
                "Copying {} to {}...",
                made.id,
                copy_regions.join(", ")
            ));
            let results = futures_util::future::join_all(
                copy_regions
                    .iter()
                    .map(|r| self.copy_to(&made, r, &ami_name, ami_description.as_deref())),
            )
            .await;
            let mut errors = Vec::new();
            for r in results {
                match r {
                    Ok(m) => copies.push(m),
                    Err(e) => errors.push(e),
                }
            }
            if !errors.is_empty() {
                return Err(if errors.len() == 1 {
                    errors.remove(0)
                } else {
                    BuildError::Several(errors)
                });
            }
        }
        let mut product: Vec<Made> = Vec::new();
        if cfg.ami.skip_save_build_region && !copies.is_empty() {
            self.remove_now(&made, "AMI in the build region (skip_save_build_region)")
                .await?;
        } else {
            product.push(made);
        }
        product.extend(copies);

        // Sharing and tags, in every region.
        let ami_tags = {
            let mut t = self.render_tags("tags", &cfg.ami.tags, &data)?;
            t.extend(self.run_tags());
            if let Some(fp) = &fingerprint {
                t.insert(TAG_FINGERPRINT.to_string(), fp.0.clone());
            }
            t
        };
        let snapshot_tags = {
            let mut t = self.render_tags("snapshot_tags", &cfg.ami.snapshot_tags, &data)?;
            t.extend(self.run_tags());
            t
        };
        for m in &product {
            self.share_and_tag(m, &ami_tags, &snapshot_tags).await?;
        }

        // Success: the AMIs and their snapshots are the product.
        let mut artifact = Artifact {
            build_data: data,
            ..Artifact::default()
        };
        {
            let mut l = lock(self.ledger);
            for m in &product {
                l.keep(m.entry).map_err(BuildError::Journal)?;
                for (_, e) in &m.snapshots {
                    l.keep(*e).map_err(BuildError::Journal)?;
                }
                artifact.amis.insert(m.region.clone(), m.id.clone());
            }
        }
        Ok(artifact)
    }

    /// The reuse fingerprint, when reuse is on (and there will be an AMI to reuse). Reading
    /// the files may take a while: it runs where blocking is allowed.
    #[allow(clippy::result_large_err)] // BuildError's size is the module's (ProvisionError).
    fn fingerprint(&self, source_id: &str) -> Result<Option<Fingerprint>, BuildError> {
        let Some(inputs) = &self.reuse else {
            return Ok(None);
        };
        if self.cfg.skip_create_ami {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let r = tokio::task::block_in_place(|| {
            fingerprint::compute(inputs, source_id, fingerprint::SecretKey::load)
        });
        match r {
            Ok(fp) => {
                self.say(format!(
                    "Fingerprint of the image's inputs: {} (computed in {})",
                    fp.short(),
                    human_duration(started.elapsed())
                ));
                Ok(Some(fp))
            }
            Err(e @ FingerprintError::Generated { .. }) => {
                self.say(format!("reuse is off for this build: {e}"));
                Ok(None)
            }
            Err(e) => Err(BuildError::Fingerprint(e)),
        }
    }

    /// The AMIs that carry `fp` in every region this build delivers to, as the build's
    /// artifact; `None` (and why, on the output) when the build has to run.
    #[allow(clippy::result_large_err)] // BuildError's size is the module's (ProvisionError).
    async fn reusable(
        &self,
        fp: &Fingerprint,
        region: &str,
        copy_regions: &[String],
        data: &BTreeMap<String, String>,
    ) -> Result<Option<Artifact>, BuildError> {
        if self.force {
            self.say(format!(
                "-force: building again, whether or not an AMI with fingerprint {} exists",
                fp.short()
            ));
            return Ok(None);
        }
        let mut regions: Vec<String> = Vec::new();
        if !self.cfg.ami.skip_save_build_region || copy_regions.is_empty() {
            regions.push(region.to_string());
        }
        regions.extend(copy_regions.iter().cloned());
        let found = reuse::lookup(self.aws, &regions, &fp.0, &self.cancel)
            .await
            .map_err(|e| match e {
                ReuseError::Cancelled => BuildError::Cancelled,
                e => BuildError::Reuse(e),
            })?;
        match found {
            Lookup::Missing(missing) => {
                self.say(format!(
                    "No AMI with fingerprint {} in {}: building",
                    fp.short(),
                    missing.join(", ")
                ));
                Ok(None)
            }
            Lookup::All(found) => {
                let first = found
                    .get(region)
                    .or_else(|| found.values().next())
                    .cloned()
                    .ok_or(BuildError::MissingField {
                        call: "DescribeImages",
                        field: "ImageId",
                        region: region.to_string(),
                    })?;
                let ids = if found.len() == 1 {
                    first.id.clone()
                } else {
                    found
                        .iter()
                        .map(|(r, f)| format!("{r}: {}", f.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.say(format!(
                    "reusing {ids} (fingerprint {} unchanged since {}): nothing is launched; the post-processors run on it",
                    fp.short(),
                    first.created
                ));
                Ok(Some(Artifact {
                    amis: found.into_iter().map(|(r, f)| (r, f.id)).collect(),
                    build_data: data.clone(),
                    null: false,
                }))
            }
        }
    }

    async fn describe_images(
        &self,
        ec2: &Client,
        region: &str,
        what: &str,
        req: aws_sdk_ec2::operation::describe_images::builders::DescribeImagesFluentBuilder,
    ) -> Result<Vec<Image>, BuildError> {
        let _ = ec2;
        let out = self
            .c(req.send())
            .await?
            .api()
            .map_err(|source| BuildError::DescribeImages {
                region: region.to_string(),
                what: what.to_string(),
                source,
            })?;
        Ok(out.images().to_vec())
    }

    async fn source_image(&self, ec2: &Client, region: &str) -> Result<Image, BuildError> {
        let run = &self.cfg.run;
        let f = run.source_ami_filter.as_ref();
        let mut req = ec2.describe_images();
        if let Some(id) = &run.source_ami {
            req = req.image_ids(id);
        }
        if let Some(f) = f {
            req = req.set_filters(Some(filters(&f.filters)));
            if !f.owners.is_empty() {
                req = req.set_owners(Some(f.owners.clone()));
            }
        }
        let what = match &run.source_ami {
            Some(id) => format!("source AMI {id}"),
            None => "source_ami_filter".to_string(),
        };
        let images = match self.describe_images(ec2, region, &what, req).await {
            Err(BuildError::DescribeImages { source, .. })
                if source.is_not_found() && run.source_ami.is_some() =>
            {
                Vec::new()
            }
            r => r?,
        };
        if images.is_empty() {
            if let Some(id) = &run.source_ami {
                return Err(BuildError::SourceAmiNotFound {
                    region: region.to_string(),
                    id: id.clone(),
                });
            }
        }
        plan::choose_source(&images, f, region)
            .cloned()
            .map_err(BuildError::SourceAmiFilter)
    }

    /// The AMI name must be free in every region the AMI goes to; returns the images that hold it
    /// (to deregister when forced).
    async fn prevalidate(
        &self,
        name: &str,
        region: &str,
        copy_regions: &[String],
        force: bool,
    ) -> Result<Vec<(String, Vec<Image>)>, BuildError> {
        let cfg = self.cfg;
        if cfg.skip_create_ami {
            return Ok(Vec::new());
        }
        self.say(format!("Prevalidating AMI Name: {name}"));
        let mut regions: Vec<&str> = Vec::new();
        if !cfg.ami.skip_save_build_region {
            regions.push(region);
        }
        regions.extend(copy_regions.iter().map(String::as_str));
        let mut found = Vec::new();
        for r in regions {
            let ec2 = self.aws.ec2(r);
            let req = ec2
                .describe_images()
                .owners("self")
                .filters(filter("name", name));
            let images = self.describe_images(&ec2, r, "AMI name check", req).await?;
            let images: Vec<Image> = images
                .into_iter()
                .filter(|i| i.name() == Some(name))
                .collect();
            if images.is_empty() {
                continue;
            }
            if !force {
                return Err(BuildError::AmiNameTaken {
                    name: name.to_string(),
                    region: r.to_string(),
                    ids: images
                        .iter()
                        .filter_map(|i| i.image_id())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            found.push((r.to_string(), images));
        }
        Ok(found)
    }

    async fn network(&self, ec2: &Client, region: &str) -> Result<Net, BuildError> {
        let run = &self.cfg.run;
        let subnets_err = |source| BuildError::DescribeSubnets {
            region: region.to_string(),
            source,
        };
        let mut net = Net {
            vpc_id: run.vpc_id.clone(),
            subnet_id: run.subnet_id.clone(),
            az: run.availability_zone.clone(),
        };
        if net.vpc_id.is_none() {
            if let Some(f) = &run.vpc_filter {
                let out = self
                    .c(ec2
                        .describe_vpcs()
                        .set_filters(Some(filters(&f.filters)))
                        .send())
                    .await?
                    .api()
                    .map_err(|source| BuildError::DescribeVpcs {
                        region: region.to_string(),
                        source,
                    })?;
                match out.vpcs() {
                    [one] => net.vpc_id = one.vpc_id().map(str::to_string),
                    [] => {
                        return Err(BuildError::Network {
                            region: region.to_string(),
                            what: "vpc_filter",
                            message: "no VPC matches the filter".into(),
                        })
                    }
                    many => {
                        return Err(BuildError::Network {
                            region: region.to_string(),
                            what: "vpc_filter",
                            message: format!(
                                "{} VPCs match the filter ({}); exactly one must",
                                many.len(),
                                many.iter()
                                    .filter_map(|v| v.vpc_id())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        })
                    }
                }
            }
        }
        if let Some(id) = &net.subnet_id {
            let out = self
                .c(ec2.describe_subnets().subnet_ids(id).send())
                .await?
                .api()
                .map_err(subnets_err)?;
            let s = out.subnets().first().ok_or(BuildError::Network {
                region: region.to_string(),
                what: "subnet_id",
                message: format!("subnet {id} not found"),
            })?;
            net.vpc_id = s.vpc_id().map(str::to_string);
            net.az = s.availability_zone().map(str::to_string);
        } else if run.subnet_filter.is_some() || net.vpc_id.is_some() {
            let mut fs = run
                .subnet_filter
                .as_ref()
                .map(|f| filters(&f.filters))
                .unwrap_or_default();
            if let Some(v) = &net.vpc_id {
                fs.push(filter("vpc-id", v));
            }
            if let Some(az) = &net.az {
                fs.push(filter("availability-zone", az));
            }
            let out = self
                .c(ec2.describe_subnets().set_filters(Some(fs)).send())
                .await?
                .api()
                .map_err(subnets_err)?;
            let subnets = out.subnets();
            let random = run.subnet_filter.as_ref().is_some_and(|f| f.random);
            let chosen = if subnets.is_empty() {
                return Err(BuildError::Network {
                    region: region.to_string(),
                    what: "subnet_filter",
                    message: "no subnet matches".into(),
                });
            } else if random {
                &subnets[(uuid::Uuid::new_v4().as_u128() % subnets.len() as u128) as usize]
            } else {
                // most_free, and the choice when only a VPC is given.
                subnets
                    .iter()
                    .max_by_key(|s| s.available_ip_address_count().unwrap_or(0))
                    .unwrap_or(&subnets[0])
            };
            net.subnet_id = chosen.subnet_id().map(str::to_string);
            net.vpc_id = chosen.vpc_id().map(str::to_string);
            net.az = chosen.availability_zone().map(str::to_string);
        }
        if net.vpc_id.is_none() {
            let out = self
                .c(ec2
                    .describe_vpcs()
                    .filters(filter("isDefault", "true"))
                    .send())
                .await?
                .api()
                .map_err(|source| BuildError::DescribeVpcs {
                    region: region.to_string(),
                    source,
                })?;
            net.vpc_id = out
                .vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .map(str::to_string);
        }
        Ok(net)
    }

    async fn vpc_cidrs(
        &self,
        ec2: &Client,
        region: &str,
        vpc: &str,
    ) -> Result<Vec<String>, BuildError> {
        let out = self
            .c(ec2.describe_vpcs().vpc_ids(vpc).send())
            .await?
            .api()
            .map_err(|source| BuildError::DescribeVpcs {
                region: region.to_string(),
                source,
            })?;
        let mut cidrs = Vec::new();
        for v in out.vpcs() {
            if let Some(c) = v.cidr_block() {
                cidrs.push(c.to_string());
            }
            for a in v.cidr_block_association_set() {
                if let Some(c) = a.cidr_block() {
                    if !cidrs.iter().any(|x| x == c) {
                        cidrs.push(c.to_string());
                    }
                }
            }
            for a in v.ipv6_cidr_block_association_set() {
                if let Some(c) = a.ipv6_cidr_block() {
                    cidrs.push(c.to_string());
                }
            }
        }
        if cidrs.is_empty() {
            return Err(BuildError::MissingField {
                call: "DescribeVpcs",
                field: "CidrBlock",
                region: region.to_string(),
            });
        }
        Ok(cidrs)
    }

    /// The key pair to launch with and, when imgbuild made it, its private key.
    async fn key_pair(
        &self,
        ec2: &Client,
        region: &str,
    ) -> Result<(Option<String>, Option<TempKey>), BuildError> {
        let ssh = &self.cfg.ssh;
        if ssh.communicator == Communicator::None {
            return Ok((None, None));
        }
        if let Some(name) = &ssh.ssh_keypair_name {
            self.say(format!("Using the existing key pair {name}"));
            return Ok((Some(name.clone()), None));
        }
        if ssh.ssh_private_key_file.is_some() || ssh.ssh_agent_auth {
            // The image already trusts the user's key (Packer launches without a key pair).
            return Ok((None, None));
        }
        let name = ssh
            .temporary_key_pair_name
            .clone()
            .unwrap_or_else(|| format!("packer_{}", uuid::Uuid::now_v7()));
        let kind = ssh.temporary_key_pair_type;
        self.say(format!(
            "Creating a temporary {} key pair locally and importing it: {name}",
            kind.as_str()
        ));
        let key = tokio::task::spawn_blocking({
            let bits = ssh.temporary_key_pair_bits;
            let name = name.clone();
            move || keys::generate(kind, bits, &name)
        })
        .await
        .map_err(|e| BuildError::KeyGen {
            kind: kind.as_str(),
            message: e.to_string(),
        })?
        .map_err(|message| BuildError::KeyGen {
            kind: kind.as_str(),
            message,
        })?;
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let imported = ec2
            .import_key_pair()
            .key_name(&name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                key.public_openssh.as_bytes(),
            ))
            .tag_specifications(tag_spec(ResourceType::KeyPair, &self.run_tags()))
            .send()
            .await
            .api();
        match imported {
            Ok(_) => {}
            // The SDK retried a call whose answer was lost, and the first try had imported it:
            // a name of this run's own (generated, or tagged with this run) is this run's.
            Err(e)
                if e.code_is("InvalidKeyPair.Duplicate")
                    && (ssh.temporary_key_pair_name.is_none()
                        || self.key_pair_is_ours(ec2, &name).await) =>
            {
                tracing::debug!(name = %name, "ImportKeyPair: adopted after a lost answer");
            }
            Err(source) => {
                return Err(BuildError::ImportKeyPair {
                    region: region.to_string(),
                    name: name.clone(),
                    source,
                })
            }
        }
        self.record(
            Undo::DeleteKeyPair {
                region: region.to_string(),
                name: name.clone(),
            },
            None,
        )?;
        Ok((Some(name), Some(key)))
    }

    async fn security_group(
        &self,
        ec2: &Client,
        region: &str,
        net: &Net,
        ingress: Ingress,
    ) -> Result<String, BuildError> {
        let name = format!("packer_{}", uuid::Uuid::now_v7());
        let cidrs = match &ingress {
            Ingress::Nothing => Vec::new(),
            Ingress::Cidrs(c) => c.clone(),
            Ingress::Vpc => match &net.vpc_id {
                Some(v) => self.vpc_cidrs(ec2, region, v).await?,
                None => return Err(BuildError::Network { region: region.to_string(), what: "temporary security group", message: "no VPC to take the allowed CIDR blocks from; set temporary_security_group_source_cidrs".into() }),
            },
        };
        self.say(format!(
            "Creating a temporary security group {name}{}",
            if cidrs.is_empty() {
                " with no inbound rule (communicator none)".to_string()
            } else {
                format!(
                    " allowing port {} from {}",
                    self.cfg.ssh.ssh_port,
                    cidrs.join(", ")
                )
            }
        ));
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let out = ec2
            .create_security_group()
            .group_name(&name)
            .description(format!(
                "Temporary group for imgbuild build {} (run {})",
                self.name, self.run_id
            ))
            .set_vpc_id(net.vpc_id.clone())
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &self.run_tags()))
            .send()
            .await
            .api();
        let id = match out {
            Ok(out) => required(out.group_id(), "CreateSecurityGroup", "GroupId", region)?,
            // A retry after a lost answer: the name is this run's own (a fresh UUID).
            Err(e) if e.code_is("InvalidGroup.Duplicate") => self
                .group_by_name(ec2, &name, net.vpc_id.as_deref())
                .await
                .ok_or(BuildError::CreateSecurityGroup {
                    region: region.to_string(),
                    source: e,
                })?,
            Err(source) => {
                return Err(BuildError::CreateSecurityGroup {
                    region: region.to_string(),
                    source,
                })
            }
        };
        self.record(
            Undo::DeleteSecurityGroup {
                region: region.to_string(),
                id: id.clone(),
            },
            None,
        )?;
        if !cidrs.is_empty() {
            let port = i32::from(self.cfg.ssh.ssh_port);
            let mut perm = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port);
            for c in &cidrs {
                if c.contains(':') {
                    perm = perm.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
                } else {
                    perm = perm.ip_ranges(IpRange::builder().cidr_ip(c).build());
                }
            }
            match ec2
                .authorize_security_group_ingress()
                .group_id(&id)
                .ip_permissions(perm.build())
                .send()
                .await
                .api()
            {
                // A retry after a lost answer: the first try added the rule.
                Err(e) if !e.code_is("InvalidPermission.Duplicate") => {
                    return Err(BuildError::AuthorizeSecurityGroupIngress {
                        region: region.to_string(),
                        id: id.clone(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(id)
    }

    async fn existing_groups(
        &self,
        ec2: &Client,
        region: &str,
        net: &Net,
    ) -> Result<Vec<String>, BuildError> {
        let run = &self.cfg.run;
        if !run.security_group_ids.is_empty() {
            return Ok(run.security_group_ids.clone());
        }
        let Some(f) = &run.security_group_filter else {
            return Ok(Vec::new());
        };
        let mut fs = filters(&f.filters);
        if let Some(v) = &net.vpc_id {
            fs.push(filter("vpc-id", v));
        }
        let out = self
            .c(ec2.describe_security_groups().set_filters(Some(fs)).send())
            .await?
            .api()
            .map_err(|source| BuildError::DescribeSecurityGroups {
                region: region.to_string(),
                source,
            })?;
        let ids: Vec<String> = out
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Err(BuildError::Network {
                region: region.to_string(),
                what: "security_group_filter",
                message: "no security group matches".into(),
            });
        }
        Ok(ids)
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        ec2: &Client,
        region: &str,
        ami: &str,
        key_name: Option<&str>,
        groups: &[String],
        net: &Net,
        user_data: Option<Vec<u8>>,
        run_tags: &BTreeMap<String, String>,
        volume_tags: &BTreeMap<String, String>,
    ) -> Result<Instance, BuildError> {
        let cfg = self.cfg;
        let run = &cfg.run;
        let token = uuid::Uuid::new_v4().to_string();
        let mut req = ec2
            .run_instances()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::from(
                run.instance_type.as_str(),
            ))
            .min_count(1)
            .max_count(1)
            .client_token(&token)
            .set_key_name(key_name.map(str::to_string))
            .instance_initiated_shutdown_behavior(match run.shutdown_behavior {
                ShutdownBehavior::Stop => Ec2Shutdown::Stop,
                ShutdownBehavior::Terminate => Ec2Shutdown::Terminate,
            })
            .tag_specifications(tag_spec(ResourceType::Instance, run_tags))
            .tag_specifications(tag_spec(ResourceType::Volume, volume_tags));
        if run.ebs_optimized {
            req = req.ebs_optimized(true);
        }
        if let Some(u) = user_data {
            req = req.user_data(aws_smithy_types::base64::encode(u));
        }
        if let Some(p) = &run.iam_instance_profile {
            let spec = if p.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(p).build()
            } else {
                IamInstanceProfileSpecification::builder().name(p).build()
            };
            req = req.iam_instance_profile(spec);
        }
        let mut mappings: Vec<BlockDeviceMapping> = cfg
            .launch_block_device_mappings
            .iter()
            .map(block_device)
            .collect();
        if cfg.no_ephemeral {
            mappings.extend(no_ephemeral_mappings());
        }
        if !mappings.is_empty() {
            req = req.set_block_device_mappings(Some(mappings));
        }
        if net.az.is_some() || run.tenancy.is_some() {
            let mut p = Placement::builder().set_availability_zone(if net.subnet_id.is_none() {
                net.az.clone()
            } else {
                None
            });
            if let Some(t) = run.tenancy {
                p = p.tenancy(match t {
                    Tenancy::Default => Ec2Tenancy::Default,
                    Tenancy::Dedicated => Ec2Tenancy::Dedicated,
                    Tenancy::Host => Ec2Tenancy::Host,
                });
            }
            req = req.placement(p.build());
        }
        if run.enable_unlimited_credits {
            req = req.credit_specification(
                CreditSpecificationRequest::builder()
                    .cpu_credits("unlimited")
                    .build(),
            );
        }
        let m = &run.metadata_options;
        if m.http_endpoint.is_some()
            || m.http_tokens.is_some()
            || m.http_put_response_hop_limit.is_some()
            || m.instance_metadata_tags.is_some()
        {
            req = req.metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .set_http_endpoint(
                        m.http_endpoint
                            .as_deref()
                            .map(InstanceMetadataEndpointState::from),
                    )
                    .set_http_tokens(m.http_tokens.as_deref().map(HttpTokensState::from))
                    .set_http_put_response_hop_limit(
                        m.http_put_response_hop_limit.map(|h| h as i32),
                    )
                    .set_instance_metadata_tags(
                        m.instance_metadata_tags
                            .as_deref()
                            .map(InstanceMetadataTagsState::from),
                    )
                    .build(),
            );
        }
        if let Some(public) = run.associate_public_ip_address {
            let ni = InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .associate_public_ip_address(public)
                .delete_on_termination(true)
                .set_subnet_id(net.subnet_id.clone())
                .set_groups(Some(groups.to_vec()))
                .build();
            req = req.network_interfaces(ni);
        } else {
            req = req
                .set_subnet_id(net.subnet_id.clone())
                .set_security_group_ids(Some(groups.to_vec()));
        }
        self.say(format!(
            "Launching a source instance ({}) from {ami}...",
            run.instance_type
        ));
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let intent = self.intent("RunInstances", region, &token, None)?;
        let sent = req.send().await.api();
        self.test_hold("sent_run_instances").await;
        let out = match sent {
            Ok(o) => o,
            Err(source) => {
                // The call may have created the instance even though its answer was lost: look
                // it up by its client token, so that teardown finds it.
                if let Ok(found) = ec2
                    .describe_instances()
                    .filters(filter("client-token", &token))
                    .send()
                    .await
                {
                    for i in found.reservations().iter().flat_map(|r| r.instances()) {
                        if let Some(id) = i.instance_id() {
                            self.record(
                                Undo::TerminateInstance {
                                    region: region.to_string(),
                                    id: id.to_string(),
                                },
                                Some(intent),
                            )?;
                        }
                    }
                }
                return Err(BuildError::RunInstances {
                    region: region.to_string(),
                    ami: ami.to_string(),
                    instance_type: run.instance_type.clone(),
                    source,
                });
            }
        };
        let id = required(
            out.instances().first().and_then(|i| i.instance_id()),
            "RunInstances",
            "InstanceId",
            region,
        )?;
        self.record(
            Undo::TerminateInstance {
                region: region.to_string(),
                id: id.clone(),
            },
            Some(intent),
        )?;
        self.say(format!("Instance ID: {id}"));
        self.say(format!("Waiting for instance ({id}) to become ready..."));
        let schedule = self.polling.schedule(INSTANCE_WAIT);
        let what = format!("instance {id} in {region}");
        let progress = self.progress();
        let instance = wait::until(&what, "running", &schedule, &self.cancel, &progress, || {
            self.probe_instance(
                ec2,
                &id,
                InstanceStateName::Running,
                &[InstanceStateName::Pending],
            )
        })
        .await?;
        // Volumes that outlive the instance (delete_on_termination false) are the build's too.
        for m in instance.block_device_mappings() {
            if let Some(e) = m.ebs() {
                if e.delete_on_termination() == Some(false) {
                    if let Some(v) = e.volume_id() {
                        self.record(
                            Undo::DeleteVolume {
                                region: region.to_string(),
                                id: v.to_string(),
                            },
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(instance)
    }

    /// The key pair `name` carries this run's tag.
    async fn key_pair_is_ours(&self, ec2: &Client, name: &str) -> bool {
        let Ok(out) = ec2.describe_key_pairs().key_names(name).send().await else {
            return false;
        };
        out.key_pairs().iter().any(|k| {
            k.tags()
                .iter()
                .any(|t| t.key() == Some(TAG_RUN_ID) && t.value() == Some(self.run_id))
        })
    }

    /// The ID of the security group `name` (in `vpc`), if exactly one exists.
    async fn group_by_name(&self, ec2: &Client, name: &str, vpc: Option<&str>) -> Option<String> {
        let mut req = ec2
            .describe_security_groups()
            .filters(filter("group-name", name));
        if let Some(v) = vpc {
            req = req.filters(filter("vpc-id", v));
        }
        let out = req.send().await.ok()?;
        match out.security_groups() {
            [g] => g.group_id().map(str::to_string),
            _ => None,
        }
    }

    /// The ID of this account's image `name` tagged with this run, if exactly one exists.
    async fn image_of_this_run(&self, ec2: &Client, name: &str) -> Option<String> {
        let out = ec2
            .describe_images()
            .owners("self")
            .filters(filter("name", name))
            .filters(filter(&format!("tag:{TAG_RUN_ID}"), self.run_id))
            .send()
            .await
            .ok()?;
        match out.images() {
            [i] => i.image_id().map(str::to_string),
            _ => None,
        }
    }

    /// Resolves (with the error to report) only when the instance is shutting down or
    /// terminated; polls every [`WATCH_EVERY`] (a failed poll is skipped, not fatal).
    async fn watch_instance(&self, ec2: &Client, region: &str, id: &str) -> BuildError {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Ok(out) = ec2.describe_instances().instance_ids(id).send().await else {
                continue;
            };
            let Some(i) = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id))
            else {
                continue;
            };
            if let Some(state @ (InstanceStateName::ShuttingDown | InstanceStateName::Terminated)) =
                i.state().and_then(|s| s.name())
            {
                return BuildError::InstanceGone {
                    region: region.to_string(),
                    id: id.to_string(),
                    state: state.as_str().to_string(),
                    reason: state_reason(i),
                };
            }
        }
    }

    async fn probe_instance(
        &self,
        ec2: &Client,
        id: &str,
        target: InstanceStateName,
        pending: &[InstanceStateName],
    ) -> Result<Probe<Instance>, ApiError> {
        let out = match ec2.describe_instances().instance_ids(id).send().await.api() {
            Err(e) if e.is_not_found() => return Ok(Probe::Pending("not visible yet".into())),
            r => r?,
        };
        let Some(i) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
        else {
            return Ok(Probe::Pending("not visible yet".into()));
        };
        let state = i
            .state()
            .and_then(|s| s.name())
            .cloned()
            .ok_or_else(|| ApiError::msg("DescribeInstances returned no instance state"))?;
        Ok(if state == target {
            Probe::Done(i.clone())
        } else if pending.contains(&state) {
            Probe::Pending(state.as_str().to_string())
        } else {
            Probe::Failed {
                state: state.as_str().to_string(),
                reason: state_reason(i),
            }
        })
    }

    async fn host(
        &self,
        ec2: &Client,
        region: &str,
        instance: &Instance,
    ) -> Result<String, BuildError> {
        let cfg = self.cfg;
        let id = instance.instance_id().unwrap_or_default().to_string();
        let addrs = |i: &Instance| Addresses {
            public_ip: i.public_ip_address().map(str::to_string),
            private_ip: i.private_ip_address().map(str::to_string),
            public_dns: i.public_dns_name().map(str::to_string),
            private_dns: i.private_dns_name().map(str::to_string),
            in_vpc: i.vpc_id().is_some_and(|v| !v.is_empty()),
        };
        let mut current = addrs(instance);
        // As Packer: up to 3 looks, 1 s apart, before falling back to the private address.
        for attempt in 1..=3 {
            if let Some(h) = plan::select_host(
                cfg.ssh.ssh_host.as_deref(),
                cfg.ssh_interface,
                &current,
                attempt == 3,
            ) {
                return Ok(h);
            }
            if attempt == 3 {
                break;
            }
            if !self.cancel.sleep(Duration::from_secs(1)).await {
                return Err(BuildError::Cancelled);
            }
            let out = self
                .c(ec2.describe_instances().instance_ids(&id).send())
                .await?
                .api()
                .map_err(|source| BuildError::DescribeInstances {
                    region: region.to_string(),
                    id: id.clone(),
                    source,
                })?;
            if let Some(i) = out.reservations().iter().flat_map(|r| r.instances()).next() {
                current = addrs(i);
            }
        }
        if cfg.ssh.communicator == Communicator::None {
            // Nothing connects: the address is only build data.
            return Ok(current.private_ip.clone().unwrap_or_default());
        }
        Err(BuildError::NoAddress {
            region: region.to_string(),
            id,
            interface: cfg
                .ssh_interface
                .map_or("public".to_string(), |i| i.as_str().to_string()),
            addresses: format!("{current:?}"),
        })
    }

    async fn stop(&self, ec2: &Client, region: &str, id: &str) -> Result<(), BuildError> {
        if self.cfg.run.disable_stop_instance {
            self.say("disable_stop_instance: waiting for the provisioners' shutdown to stop the instance...");
        } else {
            self.say("Stopping the source instance...");
            if self.cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            ec2.stop_instances()
                .instance_ids(id)
                .send()
                .await
                .api()
                .map_err(|source| BuildError::StopInstances {
                    region: region.to_string(),
                    id: id.to_string(),
                    source,
                })?;
            self.say("Waiting for the instance to stop...");
        }
        let schedule = self.polling.schedule(INSTANCE_WAIT);
        let what = format!("instance {id} in {region}");
        let progress = self.progress();
        let pending = [
            InstanceStateName::Running,
            InstanceStateName::Stopping,
            InstanceStateName::Pending,
        ];
        wait::until(&what, "stopped", &schedule, &self.cancel, &progress, || {
            self.probe_instance(ec2, id, InstanceStateName::Stopped, &pending)
        })
        .await?;
        Ok(())
    }

    async fn modify_instance(
        &self,
        ec2: &Client,
        region: &str,
        id: &str,
    ) -> Result<(), BuildError> {
        let ami = &self.cfg.ami;
        let err = |what, source| BuildError::ModifyInstanceAttribute {
            region: region.to_string(),
            id: id.to_string(),
            what,
            source,
        };
        if let Some(ena) = ami.ena_support {
            self.say(format!("Setting ENA support to {ena}"));
            ec2.modify_instance_attribute()
                .instance_id(id)
                .ena_support(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(ena)
                        .build(),
                )
                .send()
                .await
                .api()
                .map_err(|s| err("ena_support", s))?;
        }
        if ami.sriov_support == Some(true) {
            self.say("Setting SR-IOV support (simple)");
            ec2.modify_instance_attribute()
                .instance_id(id)
                .sriov_net_support(AttributeValue::builder().value("simple").build())
                .send()
                .await
                .api()
                .map_err(|s| err("sriov_support", s))?;
        }
        Ok(())
    }

    async fn force_deregister(&self, existing: &[(String, Vec<Image>)]) -> Result<(), BuildError> {
        for (region, images) in existing {
            let ec2 = self.aws.ec2(region);
            for img in images {
                let Some(id) = img.image_id() else { continue };
                self.say(format!(
                    "Deregistering the existing AMI {id} in {region} (force_deregister)"
                ));
                match ec2.deregister_image().image_id(id).send().await.api() {
                    Err(e) if !e.is_not_found() => {
                        return Err(BuildError::DeregisterImage {
                            region: region.clone(),
                            id: id.to_string(),
                            source: e,
                        })
                    }
                    _ => {}
                }
                if self.cfg.ami.force_delete_snapshot {
                    for s in img
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                    {
                        self.say(format!("Deleting its snapshot {s} (force_delete_snapshot)"));
                        match ec2.delete_snapshot().snapshot_id(s).send().await.api() {
                            Err(e) if !e.is_not_found() => {
                                return Err(BuildError::DeleteSnapshot {
                                    region: region.clone(),
                                    id: s.to_string(),
                                    source: e,
                                })
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn create_image(
        &self,
        ec2: &Client,
        region: &str,
        instance: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Made, BuildError> {
        self.say(format!("Creating AMI {name} from instance {instance}"));
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let mappings: Vec<BlockDeviceMapping> = self
            .cfg
            .ami_block_device_mappings
            .iter()
            .map(block_device)
            .collect();
        let out = ec2
            .create_image()
            .instance_id(instance)
            .name(name)
            .set_description(description.map(str::to_string))
            .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
            .tag_specifications(tag_spec(ResourceType::Image, &self.temporary_tags()))
            .send()
            .await
            .api();
        let id = match out {
            Ok(out) => required(out.image_id(), "CreateImage", "ImageId", region)?,
            // The SDK retried a call whose answer was lost: the image of that name carrying
            // this run's tag is the one the first try made (any other is refused, as before).
            Err(e) if e.code_is("InvalidAMIName.Duplicate") => self
                .image_of_this_run(ec2, name)
                .await
                .ok_or(BuildError::CreateImage {
                    region: region.to_string(),
                    instance: instance.to_string(),
                    source: e,
                })?,
            Err(source) => {
                return Err(BuildError::CreateImage {
                    region: region.to_string(),
                    instance: instance.to_string(),
                    source,
                })
            }
        };
        let entry = self.record(
            Undo::DeregisterImage {
                region: region.to_string(),
                id: id.clone(),
            },
            None,
        )?;
        self.say(format!("AMI: {id}"));
        self.pause_point("create_image").await?;
        self.finish_image(region, id, entry).await
    }

    /// Waits for an image to be available and records its snapshots.
    async fn finish_image(
        &self,
        region: &str,
        id: String,
        entry: EntryId,
    ) -> Result<Made, BuildError> {
        self.say(format!(
            "Waiting for AMI {id} in {region} to become ready..."
        ));
        let ec2 = self.aws.ec2(region);
        let schedule = self.polling.schedule(IMAGE_WAIT);
        let what = format!("AMI {id} in {region}");
        let progress = self.progress();
        let image = wait::until(
            &what,
            "available",
            &schedule,
            &self.cancel,
            &progress,
            || async {
                let out = match ec2.describe_images().image_ids(&id).send().await.api() {
                    Err(e) if e.is_not_found() => {
                        return Ok(Probe::Pending("not visible yet".into()))
                    }
                    r => r?,
                };
                let Some(img) = out
                    .images()
                    .iter()
                    .find(|i| i.image_id() == Some(id.as_str()))
                else {
                    return Ok(Probe::Pending("not visible yet".into()));
                };
                let state = img
                    .state()
                    .map(|s| s.as_str().to_string())
                    .ok_or_else(|| ApiError::msg("DescribeImages returned no image state"))?;
                Ok(match state.as_str() {
                    "available" => Probe::Done(img.clone()),
                    "pending" => Probe::Pending(state),
                    _ => Probe::Failed {
                        reason: img
                            .state_reason()
                            .and_then(|r| r.message().or(r.code()))
                            .unwrap_or("EC2 gave no reason")
                            .to_string(),
                        state,
                    },
                })
            },
        )
        .await?;
        let mut snapshots = Vec::new();
        for s in image
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
        {
            if self.protected_snapshots().iter().any(|p| p == s) {
                continue;
            }
            let e = self.record(
                Undo::DeleteSnapshot {
                    region: region.to_string(),
                    id: s.to_string(),
                },
                None,
            )?;
            snapshots.push((s.to_string(), e));
        }
        // The run-id tag on the snapshots at once (CreateImage could tag them itself, but not
        // every EC2 implementation supports it), so that `imgbuild cleanup` finds them.
        if !snapshots.is_empty() {
            let ids: Vec<String> = snapshots.iter().map(|(s, _)| s.clone()).collect();
            ec2.create_tags()
                .set_resources(Some(ids.clone()))
                .set_tags(Some(to_tags(&self.temporary_tags())))
                .send()
                .await
                .api()
                .map_err(|source| BuildError::CreateTags {
                    region: region.to_string(),
                    ids: ids.join(", "),
                    source,
                })?;
        }
        Ok(Made {
            region: region.to_string(),
            id,
            entry,
            snapshots,
        })
    }

    /// Snapshot IDs named in the template: they belong to the user, never deleted.
    pub fn protected_snapshots(&self) -> Vec<String> {
        protected_snapshots(self.cfg)
    }

    async fn copy_image(
        &self,
        from: &Made,
        region: &str,
        name: &str,
        description: Option<&str>,
        kms: Option<&str>,
        encrypted: bool,
    ) -> Result<Made, BuildError> {
        let ec2 = self.aws.ec2(region);
        let token = uuid::Uuid::new_v4().to_string();
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let intent = self.intent("CopyImage", region, &token, Some(name))?;
        let mut req = ec2
            .copy_image()
            .source_image_id(&from.id)
            .source_region(&from.region)
            .name(name)
            .set_description(description.map(str::to_string))
            .client_token(&token);
        if encrypted {
            req = req
                .encrypted(true)
                .set_kms_key_id(kms.filter(|k| !k.is_empty()).map(str::to_string));
        }
        let sent = req.send().await.api();
        self.test_hold("sent_copy_image").await;
        let out = sent.map_err(|source| BuildError::CopyImage {
            region: region.to_string(),
            source_region: from.region.clone(),
            image: from.id.clone(),
            source,
        })?;
        let id = required(out.image_id(), "CopyImage", "ImageId", region)?;
        let entry = self.record(
            Undo::DeregisterImage {
                region: region.to_string(),
                id: id.clone(),
            },
            Some(intent),
        )?;
        // Tag the copy at once so that it is found even if the process dies now.
        let _ = ec2
            .create_tags()
            .resources(&id)
            .set_tags(Some(to_tags(&self.temporary_tags())))
            .send()
            .await;
        self.say(format!("Copy of {} in {region}: {id}", from.id));
        self.pause_point("copy").await?;
        self.finish_image(region, id, entry).await
    }

    async fn copy_to(
        &self,
        from: &Made,
        region: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Made, BuildError> {
        let ami = &self.cfg.ami;
        let encrypted = ami.encrypt_boot == Some(true);
        // Each region's own key (a build-region key is not valid elsewhere); none: its default.
        let kms = ami.region_kms_key_ids.get(region).map(String::as_str);
        self.copy_image(from, region, name, description, kms, encrypted)
            .await
    }

    /// `encrypt_boot`: the unencrypted image is copied encrypted in the build region, and the
    /// intermediate one removed.
    async fn encrypt_in_place(
        &self,
        made: Made,
        name: &str,
        description: Option<&str>,
    ) -> Result<Made, BuildError> {
        self.say(format!(
            "Encrypting: copying {} with encrypted boot volumes",
            made.id
        ));
        let region = made.region.clone();
        let enc = self
            .copy_image(
                &made,
                &region,
                name,
                description,
                self.cfg.ami.kms_key_id.as_deref(),
                true,
            )
            .await?;
        self.remove_now(&made, "unencrypted intermediate AMI")
            .await?;
        Ok(enc)
    }

    /// Removes an image (and its snapshots) of this build now, marking it undone.
    async fn remove_now(&self, m: &Made, what: &str) -> Result<(), BuildError> {
        self.say(format!("Removing the {what} {} in {}", m.id, m.region));
        let progress = self.progress();
        let undo = Undo::DeregisterImage {
            region: m.region.clone(),
            id: m.id.clone(),
        };
        teardown::undo(
            self.aws,
            &undo,
            self.polling,
            std::time::Instant::now() + teardown::DEADLINE,
            &self.protected_snapshots(),
            &self.cancel,
            &progress,
        )
        .await
        .map_err(|e| BuildError::Intermediate {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let mut l = lock(self.ledger);
        l.undone(m.entry).map_err(BuildError::Journal)?;
        for (_, e) in &m.snapshots {
            l.undone(*e).map_err(BuildError::Journal)?;
        }
        Ok(())
    }

    async fn share_and_tag(
        &self,
        m: &Made,
        ami_tags: &BTreeMap<String, String>,
        snapshot_tags: &BTreeMap<String, String>,
    ) -> Result<(), BuildError> {
        let ami = &self.cfg.ami;
        let ec2 = self.aws.ec2(&m.region);
        let region = m.region.as_str();
        let img_err = |what, source| BuildError::ModifyImageAttribute {
            region: region.to_string(),
            id: m.id.clone(),
            what,
            source,
        };
        if !ami.ami_users.is_empty() || !ami.ami_groups.is_empty() {
            self.say(format!(
                "Setting launch permissions of {} in {region}",
                m.id
            ));
            let mut add = LaunchPermissionModifications::builder();
            for u in &ami.ami_users {
                add = add.add(LaunchPermission::builder().user_id(u).build());
            }
            for g in &ami.ami_groups {
                add = add.add(
                    LaunchPermission::builder()
                        .group(PermissionGroup::from(g.as_str()))
                        .build(),
                );
            }
            self.c(ec2
                .modify_image_attribute()
                .image_id(&m.id)
                .launch_permission(add.build())
                .send())
                .await?
                .api()
                .map_err(|s| img_err("launch permissions", s))?;
        }
        if !ami.ami_product_codes.is_empty() {
            self.c(ec2
                .modify_image_attribute()
                .image_id(&m.id)
                .set_product_codes(Some(ami.ami_product_codes.clone()))
                .send())
                .await?
                .api()
                .map_err(|s| img_err("product codes", s))?;
        }
        if ami.imds_support.is_some() {
            self.c(ec2
                .modify_image_attribute()
                .image_id(&m.id)
                .imds_support(AttributeValue::builder().value("v2.0").build())
                .send())
                .await?
                .api()
                .map_err(|s| img_err("imds_support", s))?;
        }
        if !ami.snapshot_users.is_empty() || !ami.snapshot_groups.is_empty() {
            for (s, _) in &m.snapshots {
                let mut add = CreateVolumePermissionModifications::builder();
                for u in &ami.snapshot_users {
                    add = add.add(CreateVolumePermission::builder().user_id(u).build());
                }
                for g in &ami.snapshot_groups {
                    add = add.add(
                        CreateVolumePermission::builder()
                            .group(PermissionGroup::from(g.as_str()))
                            .build(),
                    );
                }
                self.c(ec2
                    .modify_snapshot_attribute()
                    .snapshot_id(s)
                    .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                    .create_volume_permission(add.build())
                    .send())
                    .await?
                    .api()
                    .map_err(|source| BuildError::ModifySnapshotAttribute {
                        region: region.to_string(),
                        id: s.clone(),
                        source,
                    })?;
            }
        }
        self.say(format!("Adding tags to AMI ({}) in {region}...", m.id));
        self.c(ec2
            .create_tags()
            .resources(&m.id)
            .set_tags(Some(to_tags(ami_tags)))
            .send())
            .await?
            .api()
            .map_err(|source| BuildError::CreateTags {
                region: region.to_string(),
                ids: m.id.clone(),
                source,
            })?;
        let snaps: Vec<String> = m.snapshots.iter().map(|(s, _)| s.clone()).collect();
        if !snaps.is_empty() {
            self.c(ec2
                .create_tags()
                .set_resources(Some(snaps.clone()))
                .set_tags(Some(to_tags(snapshot_tags)))
                .send())
                .await?
                .api()
                .map_err(|source| BuildError::CreateTags {
                    region: region.to_string(),
                    ids: snaps.join(", "),
                    source,
                })?;
        }
        // The product: no longer temporary.
        let mut ids = vec![m.id.clone()];
        ids.extend(snaps);
        self.c(ec2
            .delete_tags()
            .set_resources(Some(ids.clone()))
            .tags(Tag::builder().key(TAG_TEMPORARY).build())
            .send())
            .await?
            .api()
            .map_err(|source| BuildError::DeleteTags {
                region: region.to_string(),
                ids: ids.join(", "),
                source,
            })?;
        Ok(())
    }
}

/// Snapshot IDs named in a template's block device mappings: the user's, never deleted.
pub fn protected_snapshots(cfg: &AmazonEbsConfig) -> Vec<String> {
    cfg.ami_block_device_mappings
        .iter()
        .chain(&cfg.launch_block_device_mappings)
        .filter_map(|d| d.snapshot_id.clone())
        .collect()
}

/// Where the instance goes.
#[derive(Debug, Clone, Default)]
pub struct Net {
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub az: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::StateReason;

    fn with_reason(code: Option<&str>, message: Option<&str>) -> Instance {
        Instance::builder()
            .state_reason(
                StateReason::builder()
                    .set_code(code.map(str::to_string))
                    .set_message(message.map(str::to_string))
                    .build(),
            )
            .build()
    }

    #[test]
    fn state_reason_says_the_code_once() {
        let moto = with_reason(
            Some("Client.UserInitiatedShutdown"),
            Some("Client.UserInitiatedShutdown: User initiated shutdown"),
        );
        assert_eq!(
            state_reason(&moto),
            "Client.UserInitiatedShutdown: User initiated shutdown"
        );
        let spot = with_reason(
            Some("Server.SpotInstanceTermination"),
            Some("Spot instance termination"),
        );
        assert_eq!(
            state_reason(&spot),
            "Server.SpotInstanceTermination: Spot instance termination"
        );
        assert_eq!(state_reason(&with_reason(None, None)), "EC2 gave no reason");
    }
}
