//! The steps of an amazon-ebs build, one file each, in Packer's order: [`source_image`] (and
//! the AMI name check), [`reuse_check`], [`network`], [`key_pair`], [`security_group`],
//! [`launch`] (and the wait for running), [`host`], [`provision`] (after [`first_boot`]), [`stop`], [`deregister`]
//! (`force_deregister`), [`create_image`], [`finish_image`], [`copy`] (regions and encryption),
//! [`share_and_tag`]. Each takes typed inputs and returns a typed output; the EC2 calls go
//! through the [`super::ec2`] seam. [`Env`] is what every step needs (output, cancellation, the
//! ledger, the run's tags); `steps::Ctx::run` calls them in order.

pub mod copy;
pub mod create_image;
pub mod deregister;
pub mod finish_image;
pub mod first_boot;
pub mod host;
pub mod key_pair;
pub mod launch;
pub mod network;
pub mod provision;
pub mod reuse_check;
pub mod security_group;
pub mod share_and_tag;
pub mod source_image;
pub mod stop;

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::config::AmazonEbsConfig;
use super::error::BuildError;
use super::ids::{ImageId, Region, SnapshotId};
use super::plan::{TAG_BUILD, TAG_RUN_ID, TAG_TEMPORARY};
use super::waits::Wait;
use crate::aws::wait::Polling;
use crate::aws::Aws;
use crate::cancel::Cancel;
use crate::interact::{self, Interact};
use crate::ledger::lock;
use crate::ledger::{EntryId, Event, Journal, Ledger, Undo};
use crate::timeline::Timeline;
use crate::ui::Ui;

/// What every step needs: the build's name and configuration, its output, cancellation, the
/// ledger it records into, and the polling settings of its waits.
pub struct Env<'a> {
    pub name: &'a str,
    pub cfg: &'a AmazonEbsConfig,
    pub run_id: &'a str,
    pub ledger: &'a Mutex<Ledger>,
    pub ui: &'a Ui,
    pub polling: Polling,
    pub cancel: &'a Cancel,
    /// `-debug` pauses between steps.
    pub interact: &'a Interact,
    /// Each step marks where its phase begins.
    pub timeline: &'a Timeline,
    /// The build's AWS access, for the shared pollers of its waits (None in unit tests).
    pub aws: Option<&'a Aws>,
}

/// An image this build made, with its ledger entries.
#[derive(Debug, Clone)]
pub struct Made {
    pub region: Region,
    pub id: ImageId,
    pub entry: EntryId,
    pub snapshots: Vec<(SnapshotId, EntryId)>,
}

impl Env<'_> {
    /// A progress line of this build (`==> name: msg`).
    pub fn say(&self, msg: impl AsRef<str>) {
        self.ui.say(&format!("==> {}: {}", self.name, msg.as_ref()));
    }

    /// Progress of a wait, as [`Env::say`].
    pub fn progress(&self) -> impl Fn(String) + Sync + '_ {
        move |m| self.say(m)
    }

    /// A wait of this build on `what` until `target`, limited to `limit` unless `aws_polling`
    /// says otherwise; on the shared pollers when the polling is imgbuild's default.
    pub fn wait<'b>(
        &'b self,
        what: String,
        target: &'static str,
        limit: std::time::Duration,
        progress: &'b (dyn Fn(String) + Sync),
    ) -> Wait<'b> {
        Wait {
            what,
            target,
            schedule: self.polling.schedule(limit),
            cancel: self.cancel,
            progress,
            shared: self.aws.filter(|_| self.polling.is_default()),
        }
    }

    /// The tags every resource of this run carries (so that `imgbuild cleanup` finds them).
    pub fn run_tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_RUN_ID.to_string(), self.run_id.to_string()),
            (TAG_BUILD.to_string(), self.name.to_string()),
        ])
    }

    /// The run tags and the mark of a resource that is not (yet) the product: images and
    /// snapshots carry it until the build succeeds, so that `imgbuild cleanup` may remove an
    /// image it finds by its tags alone only when it was never delivered.
    pub fn temporary_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.run_tags();
        t.insert(TAG_TEMPORARY.to_string(), "true".to_string());
        t
    }

    /// `fut`, or [`BuildError::Cancelled`] when the build is cancelled first.
    pub async fn c<F: std::future::Future>(&self, fut: F) -> Result<F::Output, BuildError> {
        self.cancel.run(fut).await.ok_or(BuildError::Cancelled)
    }

    /// [`BuildError::Cancelled`] when the build is cancelled (checked before a create call,
    /// which is not interrupted half-way).
    pub fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// Records a created resource in the ledger (and its journal).
    pub fn record(&self, undo: Undo, intent: Option<u64>) -> Result<EntryId, BuildError> {
        let (id, r) = lock(self.ledger).record(undo, intent);
        r.map_err(BuildError::Journal)?;
        Ok(id)
    }

    /// Journals a create call with a client token before it is sent.
    pub fn intent(
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

    /// Journals that EC2 refused the call of `intent` (it created nothing).
    pub fn refused(&self, intent: u64) -> Result<(), BuildError> {
        lock(self.ledger)
            .refused(intent)
            .map_err(BuildError::Journal)
    }

    /// Test hook (`testhook::pause_at`): holds the build after a create call returned
    /// and before its result is recorded (a kill now loses the ID, as a kill mid-call would).
    /// Not interrupted by Ctrl-C: the result is recorded after the pause in any case.
    pub async fn test_hold(&self, step: &str) {
        if let Some(d) = crate::testhook::pause_at(step) {
            crate::testhook::held(d).await;
        }
    }

    /// Between steps: the test hook's hold, cancellation, and `-debug`'s pause.
    pub async fn pause_point(&self, step: &str) -> Result<(), BuildError> {
        if let Some(d) = crate::testhook::pause_at(step) {
            if self.cancel.run(crate::testhook::held(d)).await.is_none() {
                return Err(BuildError::Cancelled);
            }
        }
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        // -debug: a pause before the next step.
        if !self
            .interact
            .pause(interact::step_after(step), self.cancel)
            .await
        {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// Snapshot IDs named in the template: they belong to the user, never deleted.
    pub fn protected_snapshots(&self) -> Vec<String> {
        protected_snapshots(self.cfg)
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

/// A build's ledger over its new journal, which begins with the `Started` event (who runs it,
/// where, and the user's snapshots that cleanup must never delete). The builder and the boot
/// test each keep one.
pub fn start_ledger(
    journal: Journal,
    run_id: &str,
    build: &str,
    cfg: &AmazonEbsConfig,
) -> std::io::Result<Mutex<Ledger>> {
    let ledger = Mutex::new(Ledger::new(Some(journal)));
    let started = Event::Started {
        run_id: run_id.to_string(),
        build: build.to_string(),
        pid: std::process::id(),
        at: chrono::Utc::now().timestamp(),
        endpoint: cfg.access.custom_endpoint_ec2.clone(),
        protected_snapshots: protected_snapshots(cfg),
    };
    lock(&ledger).note(&started)?;
    Ok(ledger)
}

pub(crate) fn filters(map: &BTreeMap<String, String>) -> Vec<Filter> {
    map.iter()
        .map(|(k, v)| Filter::builder().name(k).values(v).build())
        .collect()
}

pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub(crate) fn to_tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn tag_spec(rt: ResourceType, map: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(to_tags(map)))
        .build()
}

pub(crate) use super::waits::state_reason;

/// What the steps' unit tests share: an [`Env`] over a ledger without a journal, a quiet
/// output, a cancellation that never comes.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The parts an [`Env`] borrows.
    pub struct World {
        pub cfg: AmazonEbsConfig,
        pub ledger: Mutex<Ledger>,
        pub ui: Ui,
        pub cancel: Cancel,
        pub interact: Interact,
        pub timeline: Timeline,
    }

    impl World {
        pub fn new(cfg: AmazonEbsConfig) -> World {
            World {
                cfg,
                ledger: Mutex::new(Ledger::new(None)),
                ui: Ui::new(false, false),
                cancel: Cancel::never(),
                interact: Interact::quiet("b"),
                timeline: Timeline::start(),
            }
        }

        pub fn env(&self) -> Env<'_> {
            Env {
                name: "b",
                cfg: &self.cfg,
                run_id: "run-1",
                ledger: &self.ledger,
                ui: &self.ui,
                polling: Polling::default(),
                cancel: &self.cancel,
                interact: &self.interact,
                timeline: &self.timeline,
                aws: None,
            }
        }

        /// A world whose configuration is the base template plus `extra` (JSON members).
        pub fn with(extra: &str) -> World {
            let base = r#""ami_name": "web", "instance_type": "t3.micro", "source_ami": "ami-src", "ssh_username": "ubuntu""#;
            let text = if extra.is_empty() {
                format!("{{{base}}}")
            } else {
                format!("{{{base}, {extra}}}")
            };
            let (cfg, diags) = crate::checks::testing::decode(&text, AmazonEbsConfig::decode);
            assert!(!diags.has_errors(), "the test template has errors");
            World::new(cfg)
        }

        /// The ledger's records, in order.
        pub fn undos(&self) -> Vec<Undo> {
            lock(&self.ledger)
                .entries()
                .iter()
                .map(|e| e.undo.clone())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Instance, StateReason};

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
