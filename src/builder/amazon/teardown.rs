//! Undoing what a build created: the ledger's entries, newest first, in dependency order
//! (images before their snapshots, instances terminated and gone before their volumes and their
//! security group), every entry tried even when one fails, within a deadline of its own, and not
//! stopped by the signal that started it (only by `abort`, the second Ctrl-C).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_ec2::Client;

use crate::aws::wait::{self, Polling, Probe, WaitError};
use crate::aws::{Api, ApiError, Aws};
use crate::builder::amazon::waits::{self, Wait};
use crate::cancel::Cancel;
use crate::ledger::{Entry, Ledger, Undo};

use crate::ledger::lock;

/// Teardown's own time limit.
pub const DEADLINE: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("TerminateInstances {id} in {region}: {source}")]
    TerminateInstances {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("DeleteSecurityGroup {id} in {region}: {source}")]
    DeleteSecurityGroup {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("DeleteKeyPair {name} in {region}: {source}")]
    DeleteKeyPair {
        region: String,
        name: String,
        source: ApiError,
    },
    #[error("DeleteVolume {id} in {region}: {source}")]
    DeleteVolume {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("DeregisterImage {id} in {region}: {source}")]
    DeregisterImage {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error("DeleteSnapshot {id} in {region}: {source}")]
    DeleteSnapshot {
        region: String,
        id: String,
        source: ApiError,
    },
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("teardown's deadline passed before {0}")]
    Deadline(String),
    #[error("skipped (second interrupt)")]
    Aborted,
}

/// The order to undo `entries` (given newest first): creation order reversed, then stably
/// grouped so that nothing is removed before what depends on it: images, then instances, then
/// volumes and snapshots, then security groups and key pairs.
pub fn order(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_key(|e| match e.undo {
        Undo::DeregisterImage { .. } => 0,
        Undo::TerminateInstance { .. } => 1,
        Undo::DeleteVolume { .. } | Undo::DeleteSnapshot { .. } => 2,
        Undo::DeleteSecurityGroup { .. } | Undo::DeleteKeyPair { .. } => 3,
    });
    entries
}

/// What teardown left, with why.
pub type Failures = Vec<(Undo, String)>;

/// Undoes the ledger's entries (`success`: keep the product). `protected_snapshots` are snapshot
/// IDs the user named in block device mappings: never deleted along with an image.
pub async fn run(
    aws: &Aws,
    ledger: &Mutex<Ledger>,
    success: bool,
    polling: Polling,
    protected_snapshots: &[String],
    abort: &Cancel,
    say: &(dyn Fn(String) + Sync),
) -> Failures {
    let deadline = Instant::now() + DEADLINE;
    let entries = order(lock(ledger).to_unwind(success));
    let mut failures = Vec::new();
    for e in entries {
        if abort.is_cancelled() {
            failures.push((e.undo.clone(), UndoError::Aborted.to_string()));
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            failures.push((
                e.undo.clone(),
                UndoError::Deadline(e.undo.describe()).to_string(),
            ));
            continue;
        }
        say(format!("Cleaning up: {}", describe_undo(&e.undo)));
        let r = abort
            .run(tokio::time::timeout(
                left,
                undo(
                    aws,
                    &e.undo,
                    polling,
                    deadline,
                    protected_snapshots,
                    abort,
                    say,
                ),
            ))
            .await;
        let r = match r {
            None => Err(UndoError::Aborted),
            Some(Err(_)) => Err(UndoError::Deadline(e.undo.describe())),
            Some(Ok(r)) => r,
        };
        match r {
            Ok(()) => {
                if let Err(err) = lock(ledger).undone(e.id) {
                    say(format!(
                        "warning: could not journal the removal of {}: {err}",
                        e.undo.describe()
                    ));
                }
            }
            Err(err) => {
                say(format!("error removing {}: {err}", e.undo.describe()));
                failures.push((e.undo.clone(), err.to_string()));
            }
        }
    }
    failures
}

fn describe_undo(u: &Undo) -> String {
    match u {
        Undo::TerminateInstance { .. } => format!("terminating {}", u.describe()),
        Undo::DeregisterImage { .. } => format!("deregistering {}", u.describe()),
        _ => format!("deleting {}", u.describe()),
    }
}

/// Retries `op` while it fails with one of `codes` (a dependency not released yet), with backoff,
/// for at most `limit`.
async fn retry_while<F, Fut>(
    codes: &[&str],
    limit: Duration,
    abort: &Cancel,
    mut op: F,
) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let end = Instant::now() + limit;
    let mut pause = Duration::from_secs(1);
    loop {
        match op().await {
            Err(e) if codes.iter().any(|c| e.code_is(c)) && Instant::now() + pause < end => {
                if !abort.sleep(pause).await {
                    return Err(e);
                }
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            r => return r,
        }
    }
}

/// Undoes one entry. A resource that is already gone counts as undone.
pub async fn undo(
    aws: &Aws,
    u: &Undo,
    polling: Polling,
    deadline: Instant,
    protected_snapshots: &[String],
    abort: &Cancel,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), UndoError> {
    let waits = Waits {
        polling,
        deadline,
        abort,
        say,
    };
    match u {
        Undo::DeleteKeyPair { region, name } => {
            delete_key_pair(&aws.ec2(region), region, name).await
        }
        Undo::DeleteSecurityGroup { region, id } => {
            delete_security_group(&aws.ec2(region), region, id, abort).await
        }
        Undo::TerminateInstance { region, id } => terminate_instance(aws, region, id, &waits).await,
        Undo::DeleteVolume { region, id } => {
            delete_volume(&aws.ec2(region), region, id, abort).await
        }
        Undo::DeregisterImage { region, id } => {
            deregister_image(aws, region, id, protected_snapshots, &waits).await
        }
        Undo::DeleteSnapshot { region, id } => {
            delete_snapshot(&aws.ec2(region), region, id, abort).await
        }
    }
}

/// How an undo that waits polls, until when, what stops it and where it reports.
struct Waits<'a> {
    polling: Polling,
    deadline: Instant,
    abort: &'a Cancel,
    say: &'a (dyn Fn(String) + Sync),
}

impl Waits<'_> {
    /// The schedule of one wait: at most 10 minutes, and not past teardown's deadline.
    fn schedule(&self) -> wait::Schedule {
        self.polling
            .schedule(Duration::from_secs(600))
            .within(self.deadline)
    }

    /// A wait on `what` until `target` (on the shared pollers with the default polling).
    fn wait<'b>(&'b self, aws: &'b Aws, what: String, target: &'static str) -> Wait<'b> {
        Wait {
            what,
            target,
            schedule: self.schedule(),
            cancel: self.abort,
            progress: self.say,
            shared: Some(aws).filter(|_| self.polling.is_default()),
        }
    }
}

/// A call's result where "not found" means the resource is already gone: done.
fn gone<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r.map(|_| ()),
    }
}

async fn delete_key_pair(c: &Client, region: &str, name: &str) -> Result<(), UndoError> {
    gone(c.delete_key_pair().key_name(name).send().await.api()).map_err(|source| {
        UndoError::DeleteKeyPair {
            region: region.to_string(),
            name: name.to_string(),
            source,
        }
    })
}

async fn delete_security_group(
    c: &Client,
    region: &str,
    id: &str,
    abort: &Cancel,
) -> Result<(), UndoError> {
    // The group stays in use for a short while after its instance is gone.
    let r = retry_while(
        &["DependencyViolation"],
        Duration::from_secs(180),
        abort,
        || async { gone(c.delete_security_group().group_id(id).send().await.api()) },
    )
    .await;
    r.map_err(|source| UndoError::DeleteSecurityGroup {
        region: region.to_string(),
        id: id.to_string(),
        source,
    })
}

/// Terminates the instance and waits until it is gone (its volumes and its security group are
/// released only then).
async fn terminate_instance(
    aws: &Aws,
    region: &str,
    id: &str,
    waits: &Waits<'_>,
) -> Result<(), UndoError> {
    let c = &aws.ec2(region);
    let r = c.terminate_instances().instance_ids(id).send().await.api();
    match r {
        Err(e) if e.is_not_found() => return Ok(()),
        Err(source) => {
            return Err(UndoError::TerminateInstances {
                region: region.to_string(),
                id: id.to_string(),
                source,
            })
        }
        Ok(_) => {}
    }
    let w = waits.wait(aws, format!("instance {id} in {region}"), "terminated");
    waits::instance(&w, c, region, id, |i| {
        let state = i.and_then(|i| i.state()).and_then(|s| s.name().cloned());
        Ok(match state {
            None | Some(InstanceStateName::Terminated) => Probe::Done(()),
            Some(s) => Probe::Pending(s.as_str().to_string()),
        })
    })
    .await?;
    Ok(())
}

async fn delete_volume(
    c: &Client,
    region: &str,
    id: &str,
    abort: &Cancel,
) -> Result<(), UndoError> {
    let r = retry_while(
        &["VolumeInUse", "IncorrectState"],
        Duration::from_secs(120),
        abort,
        || async { gone(c.delete_volume().volume_id(id).send().await.api()) },
    )
    .await;
    r.map_err(|source| UndoError::DeleteVolume {
        region: region.to_string(),
        id: id.to_string(),
        source,
    })
}

/// Deregisters the image, then deletes its snapshots (but not the `protected` ones the user
/// named in block device mappings).
async fn deregister_image(
    aws: &Aws,
    region: &str,
    id: &str,
    protected: &[String],
    waits: &Waits<'_>,
) -> Result<(), UndoError> {
    let c = &aws.ec2(region);
    let Some(snapshots) = image_snapshots(aws, region, id, waits).await? else {
        return Ok(());
    };
    gone(c.deregister_image().image_id(id).send().await.api()).map_err(|source| {
        UndoError::DeregisterImage {
            region: region.to_string(),
            id: id.to_string(),
            source,
        }
    })?;
    for s in snapshots.iter().filter(|s| !protected.contains(s)) {
        delete_snapshot(c, region, s, waits.abort).await?;
    }
    Ok(())
}

/// The snapshots of an image, once it has left `pending` (they exist only then), so that an
/// image undone half-made does not leave them behind; None when the image is gone. On the
/// shared image poller with the default polling (noticed within a tick), else on the schedule.
async fn image_snapshots(
    aws: &Aws,
    region: &str,
    id: &str,
    waits: &Waits<'_>,
) -> Result<Option<Vec<String>>, WaitError> {
    let w = waits.wait(aws, format!("AMI {id} in {region}"), "settled");
    waits::image_until(&w, &aws.ec2(region), region, id, |img| {
        let Some(img) = img else {
            return Ok(Probe::Done(None));
        };
        if img.state().map(|s| s.as_str()) == Some("pending") {
            return Ok(Probe::Pending("pending".into()));
        }
        let snaps: Vec<String> = img
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
            .map(str::to_string)
            .collect();
        Ok(Probe::Done(Some(snaps)))
    })
    .await
}

async fn delete_snapshot(
    c: &Client,
    region: &str,
    id: &str,
    abort: &Cancel,
) -> Result<(), UndoError> {
    let r = retry_while(
        &["InvalidSnapshot.InUse"],
        Duration::from_secs(60),
        abort,
        || async { gone(c.delete_snapshot().snapshot_id(id).send().await.api()) },
    )
    .await;
    r.map_err(|source| UndoError::DeleteSnapshot {
        region: region.to_string(),
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_go_before_their_snapshots_and_instances_before_their_groups() {
        let mut l = Ledger::new(None);
        let r = || "us-east-1".to_string();
        let _ = l.record(
            Undo::DeleteKeyPair {
                region: r(),
                name: "k".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeleteSecurityGroup {
                region: r(),
                id: "sg-1".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::TerminateInstance {
                region: r(),
                id: "i-1".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeleteVolume {
                region: r(),
                id: "vol-1".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeregisterImage {
                region: r(),
                id: "ami-1".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeleteSnapshot {
                region: r(),
                id: "snap-1".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeregisterImage {
                region: "us-west-2".into(),
                id: "ami-2".into(),
            },
            None,
        );
        let _ = l.record(
            Undo::DeleteSnapshot {
                region: "us-west-2".into(),
                id: "snap-2".into(),
            },
            None,
        );
        let got: Vec<String> = order(l.to_unwind(false))
            .iter()
            .map(|e| e.undo.describe())
            .collect();
        assert_eq!(
            got,
            vec![
                "AMI ami-2 in us-west-2",
                "AMI ami-1 in us-east-1",
                "instance i-1 in us-east-1",
                "snapshot snap-2 in us-west-2",
                "snapshot snap-1 in us-east-1",
                "volume vol-1 in us-east-1",
                "security group sg-1 in us-east-1",
                "key pair k in us-east-1",
            ]
        );
    }
}
