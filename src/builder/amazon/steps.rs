//! The amazon-ebs build as a script: [`Ctx::run`] calls one step of [`super::step`] after the
//! other, in Packer's order (source image, reuse check, names and pre-validation, network, key
//! pair, security group, launch, connect and provision, stop, image, copies, sharing and tags),
//! passing each step's typed result to the next. Every resource is recorded in the ledger the
//! moment its ID exists; teardown is the caller's (see `teardown`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_ec2::types::Image;
use aws_sdk_ec2::Client;

use super::build_data::{BuildData, Connection};
use super::config::AmazonEbsConfig;
use super::error::BuildError;
use super::ids::InstanceId;
use super::keys::TempKey;
use super::plan::{self, Ingress};
use super::public_ip;
use super::step::copy::{self, encrypt_in_place, remove_now};
use super::step::create_image::create_image;
use super::step::finish_image::finish_image;
use super::step::first_boot::FirstBoot;
use super::step::launch::{launch, Launch};
use super::step::share_and_tag::{share_and_tag, Tags};
use super::step::source_image::Existing;
use super::step::{self, Env, Made};
use crate::artifact::Artifact;
use crate::aws::wait::Polling;
use crate::aws::Aws;
use crate::builder::fingerprint::{Fingerprint, Inputs, TAG_FINGERPRINT};
use crate::cancel::Cancel;
use crate::communicator::ssh::Communicator;
use crate::interact::Interact;
use crate::ledger::lock;
use crate::ledger::Ledger;
use crate::provisioner::runtime::{BeforeProvisioning, ProvisionContext};
use crate::provisioner::PreparedProvisioner;
use crate::template::funcs::{Engine, Phase, Scope};
use crate::timeline::Timeline;
use crate::ui::Ui;

pub use super::step::launch::block_device;
pub use super::step::network::Net;
pub use super::step::protected_snapshots;

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
    /// Where the build's time goes (each step marks its phase).
    pub timeline: &'a Timeline,
    /// `-skip-unchanged` or `reuse_unchanged`: what the reuse fingerprint is made of. The
    /// build tags its AMIs with the fingerprint and reuses an AMI that carries it already.
    pub reuse: Option<Inputs<'a>>,
}

/// Packer's builder id of amazon-ebs artifacts (`-machine-readable` `builder-id` records).
pub const BUILDER_ID: &str = crate::artifact::AMAZON_EBS_BUILDER_ID;

/// What the build decides before it creates anything: names, the existing images that hold
/// the AMI name, the temporary group's rule, user data, the instance's and volumes' tags.
struct Plan {
    ami_name: String,
    ami_description: Option<String>,
    /// `-force` or `force_deregister`.
    force: bool,
    existing: Existing,
    /// The temporary security group's rule (`None`: the template names its groups).
    ingress: Option<Ingress>,
    user_data: Option<Vec<u8>>,
    run_tags: BTreeMap<String, String>,
    volume_tags: BTreeMap<String, String>,
    spot_tags: BTreeMap<String, String>,
}

impl Ctx<'_> {
    /// What the steps share of this build.
    fn env(&self) -> Env<'_> {
        Env {
            name: self.name,
            cfg: self.cfg,
            run_id: self.run_id,
            ledger: self.ledger,
            ui: self.ui,
            polling: self.polling,
            cancel: &self.cancel,
            interact: self.interact,
            timeline: self.timeline,
            aws: Some(self.aws),
        }
    }

    /// The whole build. On error, what was created is in the ledger for the caller to undo.
    pub async fn run(&self) -> Result<Artifact, BuildError> {
        let env = self.env();
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
        self.unsupported()?;

        env.timeline.mark("source image");
        let mut data = self.source(&env, &ec2, &region).await?;
        let source_id = data.source.ami.clone();
        let fingerprint =
            step::reuse_check::fingerprint(&env, self.reuse.as_ref(), source_id.as_str())?;
        if let Some(fp) = &fingerprint {
            let found =
                step::reuse_check::reusable(&env, self.aws, self.force, fp, &region, &copy_regions)
                    .await?;
            if let Some(amis) = found {
                return Ok(Artifact {
                    amis,
                    build_data: data.to_map(),
                    null: false,
                    reused: true,
                });
            }
        }
        let mut plan = self.plan(&env, &region, &copy_regions, &data).await?;
        let net = step::network::network(&env, &ec2, &region).await?;
        env.pause_point("source").await?;

        env.timeline.mark("key pair and group");
        let key = step::key_pair::key_pair(&env, &ec2, &region).await?;
        if let Some(k) = &key.temp {
            data.ssh_public_key = Some(k.public_openssh.clone());
            self.interact.save_key(k.private_openssh());
        }
        env.pause_point("key_pair").await?;

        let ingress = plan.ingress.take();
        let groups =
            step::security_group::security_groups(&env, &ec2, &region, &net, ingress).await?;
        env.pause_point("security_group").await?;

        let l = Launch {
            ami: &source_id,
            key_name: key.name.as_ref(),
            groups: &groups,
            net: &net,
            user_data: plan.user_data.take(),
            run_tags: &plan.run_tags,
            volume_tags: &plan.volume_tags,
            spot_tags: &plan.spot_tags,
        };
        env.timeline.mark("launch");
        let launched = launch(&env, &ec2, &region, l).await?;
        env.pause_point("launch").await?;

        let host = step::host::host(&env, &ec2, &region, &launched.id, &launched.instance).await?;
        self.provision(&env, &ec2, &region, &launched.id, host, key.temp, &mut data)
            .await?;
        env.pause_point("provision").await?;

        env.timeline.mark("stop");
        step::stop::stop(&env, &ec2, &region, &launched.id).await?;
        env.pause_point("stop").await?;
        step::stop::modify_instance(&env, &ec2, &region, &launched.id).await?;

        if cfg.skip_create_ami {
            env.say("skip_create_ami: no AMI is created");
            return Ok(Artifact {
                build_data: data.to_map(),
                ..Artifact::default()
            });
        }
        env.timeline.mark("create image");
        if plan.force {
            step::deregister::force_deregister(&env, self.aws, &plan.existing).await?;
        }
        let product = self
            .images(&env, &ec2, &region, &copy_regions, &plan, &launched.id)
            .await?;
        self.deliver(&env, product, &data, fingerprint.as_ref())
            .await
    }

    /// Options imgbuild does not implement: a warning for those without effect, an error for
    /// those whose absence would change the build.
    fn unsupported(&self) -> Result<(), BuildError> {
        let cfg = self.cfg;
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
        Ok(())
    }

    /// Step 1: the source image, and the build data it gives.
    async fn source(
        &self,
        env: &Env<'_>,
        ec2: &Client,
        region: &str,
    ) -> Result<BuildData, BuildError> {
        env.say(match &self.cfg.run.source_ami {
            Some(id) => format!("Prevalidating source AMI {id} in {region}..."),
            None => format!("Finding the source AMI in {region}..."),
        });
        let source: Image = step::source_image::source_image(env, ec2, region).await?;
        if !matches!(source.image_id(), Some(id) if !id.is_empty()) {
            return Err(BuildError::MissingField {
                call: "DescribeImages",
                field: "ImageId",
                region: region.to_string(),
            });
        }
        let data = BuildData::new(&source, region, self.run_id, self.cfg.ssh.communicator);
        env.say(format!(
            "Source AMI: {} ({})",
            data.source.ami,
            source.name().unwrap_or("no name")
        ));
        Ok(data)
    }

    /// Names rendered now that build values are known; then pre-validation, before anything
    /// is created.
    async fn plan(
        &self,
        env: &Env<'_>,
        region: &str,
        copy_regions: &[String],
        data: &BuildData,
    ) -> Result<Plan, BuildError> {
        let cfg = self.cfg;
        let map = data.to_map();
        let ami_name = self.render("ami_name", &cfg.ami.ami_name, &map)?;
        if !cfg.skip_create_ami {
            plan::check_ami_name(&ami_name).map_err(BuildError::AmiName)?;
        }
        let ami_description = cfg
            .ami
            .ami_description
            .as_deref()
            .map(|d| self.render("ami_description", d, &map))
            .transpose()?;
        let force = self.force || cfg.ami.force_deregister;
        let existing =
            step::source_image::prevalidate(env, self.aws, &ami_name, region, copy_regions, force)
                .await?;
        let ingress = self.ingress(env, region).await?;
        let user_data = step::launch::user_data(&cfg.run)?;
        let mut run_tags = self.render_tags("run_tags", &cfg.run.run_tags, &map)?;
        run_tags
            .entry("Name".into())
            .or_insert_with(|| "Packer Builder".into());
        run_tags.extend(env.run_tags());
        let mut volume_tags = self.render_tags("run_volume_tags", &cfg.run_volume_tags, &map)?;
        volume_tags.extend(env.run_tags());
        let mut spot_tags = self.render_tags("spot_tags", &cfg.run.spot.tags, &map)?;
        spot_tags.extend(env.run_tags());
        Ok(Plan {
            ami_name,
            ami_description,
            force,
            existing,
            ingress,
            user_data,
            run_tags,
            volume_tags,
            spot_tags,
        })
    }

    /// The temporary security group's rule, when the template names no group (a warning when
    /// it lets the whole internet in); this machine's public address is looked up here, before
    /// anything is created.
    async fn ingress(&self, env: &Env<'_>, region: &str) -> Result<Option<Ingress>, BuildError> {
        let cfg = self.cfg;
        let Some(i) = plan::ingress(cfg) else {
            return Ok(None);
        };
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
        if i != Ingress::PublicIp {
            return Ok(Some(i));
        }
        let url_env = std::env::var(public_ip::URL_ENV).ok();
        step::security_group::public_address(env, region, url_env)
            .await
            .map(Some)
    }

    /// Step 8: connect and provision on `host`; the temporary key is dropped (zeroized) when
    /// provisioning ends.
    #[allow(clippy::too_many_arguments)]
    async fn provision(
        &self,
        env: &Env<'_>,
        ec2: &Client,
        region: &str,
        id: &InstanceId,
        host: String,
        temp_key: Option<TempKey>,
        data: &mut BuildData,
    ) -> Result<(), BuildError> {
        let cfg = self.cfg;
        data.connection = Some(Connection {
            instance: id.clone(),
            host: host.clone(),
            port: cfg.ssh.ssh_port,
            user: cfg.ssh.ssh_username.clone(),
        });
        if cfg.ssh.communicator == Communicator::Ssh {
            env.say(format!(
                "Provisioning over SSH at {host}:{}",
                cfg.ssh.ssh_port
            ));
        }
        let first_boot = FirstBoot {
            timeout: cfg.ssh.ssh_timeout,
        };
        let pctx = ProvisionContext {
            build_name: self.name,
            build_type: "amazon-ebs",
            host,
            port: cfg.ssh.ssh_port,
            ssh: &cfg.ssh,
            private_key: temp_key.as_ref().map(TempKey::private_openssh),
            provisioners: self.provisioners,
            error_cleanup: self.error_cleanup,
            build_data: data.to_map(),
            ui: self.ui,
            timeline: self.timeline,
            before: cfg
                .wait_for_boot
                .then_some(&first_boot as &dyn BeforeProvisioning),
        };
        let r = step::provision::provision(env, ec2, region, id, &pctx).await;
        drop(pctx);
        drop(temp_key);
        r
    }

    /// Steps 11-13: the image from the instance, its encrypted copy, the region copies; the
    /// images that are the product (the build region's unless `skip_save_build_region`).
    async fn images(
        &self,
        env: &Env<'_>,
        ec2: &Client,
        region: &str,
        copy_regions: &[String],
        plan: &Plan,
        instance: &InstanceId,
    ) -> Result<Vec<Made>, BuildError> {
        let ami = &self.cfg.ami;
        let description = plan.ami_description.as_deref();
        // An image that is not the product in the build region (re-encrypted, or not kept
        // there) gets a temporary name: EC2 refuses two images of one name in a region.
        let intermediate = ami.encrypt_boot == Some(true)
            || (ami.skip_save_build_region && !copy_regions.is_empty());
        let first_name = if intermediate {
            format!("imgbuild-intermediate-{}", uuid::Uuid::now_v7().simple())
        } else {
            plan.ami_name.clone()
        };
        let created = create_image(env, ec2, region, instance, &first_name, description).await?;
        env.pause_point("create_image").await?;
        env.timeline.mark("wait available");
        let mut made = finish_image(env, ec2, region, created.id, created.entry).await?;
        if ami.encrypt_boot == Some(true) {
            env.timeline.mark("encrypted copy");
            made = encrypt_in_place(env, self.aws, made, &plan.ami_name, description).await?;
        }
        let mut copies = Vec::new();
        if !copy_regions.is_empty() {
            env.timeline.mark("region copies");
            copies = copy::copy_to_regions(
                env,
                self.aws,
                &made,
                copy_regions,
                &plan.ami_name,
                description,
            )
            .await?;
        }
        let mut product: Vec<Made> = Vec::new();
        if ami.skip_save_build_region && !copies.is_empty() {
            remove_now(
                env,
                self.aws,
                &made,
                "AMI in the build region (skip_save_build_region)",
            )
            .await?;
        } else {
            product.push(made);
        }
        product.extend(copies);
        Ok(product)
    }

    /// Step 14: sharing and tags in every region; then the product is kept (not undone).
    async fn deliver(
        &self,
        env: &Env<'_>,
        product: Vec<Made>,
        data: &BuildData,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Artifact, BuildError> {
        env.timeline.mark("tags and sharing");
        let cfg = self.cfg;
        let map = data.to_map();
        let mut ami_tags = self.render_tags("tags", &cfg.ami.tags, &map)?;
        ami_tags.extend(env.run_tags());
        if let Some(fp) = fingerprint {
            ami_tags.insert(TAG_FINGERPRINT.to_string(), fp.0.clone());
        }
        let mut snapshot_tags = self.render_tags("snapshot_tags", &cfg.ami.snapshot_tags, &map)?;
        snapshot_tags.extend(env.run_tags());
        for m in &product {
            let tags = Tags {
                ami: &ami_tags,
                snapshot: &snapshot_tags,
            };
            share_and_tag(env, self.aws, m, tags).await?;
        }
        // Success: the AMIs and their snapshots are the product.
        let mut artifact = Artifact {
            build_data: map,
            ..Artifact::default()
        };
        let mut l = lock(self.ledger);
        for m in &product {
            l.keep(m.entry).map_err(BuildError::Journal)?;
            for (_, e) in &m.snapshots {
                l.keep(*e).map_err(BuildError::Journal)?;
            }
            artifact.amis.insert(m.region.to_string(), m.id.to_string());
        }
        Ok(artifact)
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

    /// Snapshot IDs named in the template: they belong to the user, never deleted.
    pub fn protected_snapshots(&self) -> Vec<String> {
        protected_snapshots(self.cfg)
    }
}
