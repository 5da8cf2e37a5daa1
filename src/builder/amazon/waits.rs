//! The builder's waits on EC2 (instance running/stopped/terminated, image or copy available):
//! what each state means ([`instance_state`], [`image_state`]), and where the answers come
//! from. With imgbuild's default polling the waits share the process's pollers
//! ([`crate::aws::poller`]: one call a second per region and kind serves every build); with
//! `aws_polling` (or `AWS_POLL_DELAY_SECONDS`/`AWS_MAX_ATTEMPTS`) each wait polls on its own
//! fixed schedule. While an image is pending, its snapshots' `Progress` is shown on the
//! spinner and in the 30-s progress lines, with an estimate of the time left, and each quarter
//! reached is said once ("snapshot snap-... 50%, about 20s left").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::operation::describe_images::DescribeImagesInput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesInput;
use aws_sdk_ec2::types::{Image, Instance, InstanceStateName, Snapshot, SnapshotState};

use super::ec2::Ec2;
use crate::aws::poller::{Poller, Watch};
use crate::aws::wait::{self, Probe, Schedule, WaitError};
use crate::aws::{ApiError, Aws};
use crate::cancel::Cancel;

/// One wait: what it waits for, until when, what stops it, where it reports, and the shared
/// pollers when the polling is imgbuild's default (None: a fixed schedule, or no AWS).
pub struct Wait<'a> {
    pub what: String,
    pub target: &'static str,
    pub schedule: Schedule,
    pub cancel: &'a Cancel,
    pub progress: &'a (dyn Fn(String) + Sync),
    pub shared: Option<&'a Aws>,
}

/// Why an instance is in its state, as EC2 says it.
pub fn state_reason(i: &Instance) -> String {
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

/// The instance (None: not visible) against `target`: done, pending while in `pending`,
/// failed in any other state (with EC2's reason).
pub fn instance_state(
    i: Option<&Instance>,
    target: &InstanceStateName,
    pending: &[InstanceStateName],
) -> Result<Probe<Instance>, ApiError> {
    let Some(i) = i else {
        return Ok(Probe::Pending("not visible yet".into()));
    };
    let state = i
        .state()
        .and_then(|s| s.name())
        .cloned()
        .ok_or_else(|| ApiError::msg("DescribeInstances returned no instance state"))?;
    Ok(if &state == target {
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

/// The image (None: not visible): done when available, pending while pending, failed in any
/// other state (with EC2's reason).
pub fn image_state(img: Option<&Image>) -> Result<Probe<Image>, ApiError> {
    let Some(img) = img else {
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
}

/// Waits on the instance `id` in `region` until `judge` says done or failed.
pub async fn instance<R>(
    w: &Wait<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &str,
    judge: impl Fn(Option<&Instance>) -> Result<Probe<R>, ApiError> + Sync,
) -> Result<R, WaitError> {
    if let Some(aws) = w.shared {
        return shared(w, aws.instance_poller(region), id, &judge).await;
    }
    let judge = &judge;
    wait::until(
        &w.what,
        w.target,
        &w.schedule,
        w.cancel,
        w.progress,
        || async move {
            let req = DescribeInstancesInput::builder().instance_ids(id);
            let out = match ec2.describe_instances(req).await {
                Err(e) if e.is_not_found() => return judge(None),
                r => r?,
            };
            let i = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id));
            judge(i)
        },
    )
    .await
}

/// Waits for the image `id` in `region` to be available, showing its snapshots' progress.
pub async fn image(
    w: &Wait<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &str,
) -> Result<Image, WaitError> {
    if let Some(aws) = w.shared {
        let snaps = Mutex::new(Snaps {
            start: Instant::now(),
            poller: aws.snapshot_poller(region),
            watches: Vec::new(),
            said: HashMap::new(),
            off: false,
            done: Vec::new(),
        });
        let judge = |img: Option<&Image>| {
            let p = image_state(img)?;
            let (Probe::Pending(state), Some(img)) = (&p, img) else {
                return Ok(p);
            };
            let mut s = match snaps.lock() {
                Ok(s) => s,
                Err(e) => e.into_inner(),
            };
            Ok(match s.look(img, w.progress) {
                Some(text) => Probe::Pending(format!("{state}; {text}")),
                None => p,
            })
        };
        return shared(w, aws.image_poller(region), id, &judge).await;
    }
    image_until(w, ec2, region, id, image_state).await
}

/// Waits on the image `id` in `region` (None: not visible, or gone) until `judge` says done
/// or failed: on the shared image poller with the default polling, else on the schedule.
pub async fn image_until<R>(
    w: &Wait<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &str,
    judge: impl Fn(Option<&Image>) -> Result<Probe<R>, ApiError> + Sync,
) -> Result<R, WaitError> {
    if let Some(aws) = w.shared {
        return shared(w, aws.image_poller(region), id, &judge).await;
    }
    let judge = &judge;
    wait::until(
        &w.what,
        w.target,
        &w.schedule,
        w.cancel,
        w.progress,
        || async move {
            let req = DescribeImagesInput::builder().image_ids(id);
            let out = match ec2.describe_images(req).await {
                Err(e) if e.is_not_found() => return judge(None),
                r => r?,
            };
            judge(out.images().iter().find(|i| i.image_id() == Some(id)))
        },
    )
    .await
}

/// [`wait::until`] on the answers of a shared poller (which sets the pace).
async fn shared<T, R>(
    w: &Wait<'_>,
    poller: Arc<Poller<T>>,
    id: &str,
    judge: &(impl Fn(Option<&T>) -> Result<Probe<R>, ApiError> + Sync),
) -> Result<R, WaitError>
where
    T: Clone + Send + Sync + 'static,
{
    wait::until_polled(
        &w.what,
        w.target,
        &w.schedule,
        w.cancel,
        w.progress,
        poller.watch(id),
        |item: Option<T>| std::future::ready(judge(item.as_ref())),
    )
    .await
}

/// The snapshots of a pending image, watched for their progress.
struct Snaps {
    start: Instant,
    poller: Arc<Poller<Snapshot>>,
    watches: Vec<(String, Watch<Snapshot>)>,
    /// The last quarter said of each snapshot.
    said: HashMap<String, u8>,
    /// DescribeSnapshots failed for good (not allowed, say): no progress is shown.
    off: bool,
    /// The snapshots seen `completed`: no longer polled (the image may stay pending a while).
    done: Vec<String>,
}

impl Snaps {
    /// The progress text of the image's snapshots (watching new ones); says each quarter.
    fn look(&mut self, img: &Image, say: &(dyn Fn(String) + Sync)) -> Option<String> {
        if let Some(e) = self.watches.iter().find_map(|(_, w)| w.failed()) {
            // Progress is for display: a policy without ec2:DescribeSnapshots does not fail
            // the wait, it only hides the progress.
            tracing::debug!(error = %e, "no snapshot progress");
            self.off = true;
            self.watches.clear();
        }
        if self.off {
            return None;
        }
        for s in img
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
        {
            if !self.watches.iter().any(|(id, _)| id == s) && !self.done.iter().any(|d| d == s) {
                self.watches.push((s.to_string(), self.poller.watch(s)));
            }
        }
        // A completed snapshot's watch ends (its poll would add nothing).
        let (completed, watching): (Vec<_>, Vec<_>) = std::mem::take(&mut self.watches)
            .into_iter()
            .partition(|(_, w)| {
                w.latest().and_then(|s| s.state().cloned()) == Some(SnapshotState::Completed)
            });
        self.watches = watching;
        self.done.extend(completed.into_iter().map(|(id, _)| id));
        let elapsed = self.start.elapsed();
        let mut parts: Vec<String> = self
            .done
            .iter()
            .map(|id| progress_text(id, 100, elapsed))
            .collect();
        for (id, w) in &self.watches {
            let Some(pct) = w.latest().and_then(|s| percent(s.progress())) else {
                continue;
            };
            let text = progress_text(id, pct, elapsed);
            let quarter = pct / 25;
            if quarter > 0 && quarter < 4 && self.said.get(id) != Some(&quarter) {
                self.said.insert(id.clone(), quarter);
                say(text.clone());
            }
            parts.push(text);
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// `"63%"` -> 63.
fn percent(p: Option<&str>) -> Option<u8> {
    p?.trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .map(|v| v.min(100))
}

/// "snapshot snap-1 63%, about 12s left": the time left extrapolated from the progress made
/// since the wait began.
pub fn progress_text(id: &str, pct: u8, elapsed: Duration) -> String {
    if pct == 0 || pct >= 100 {
        return format!("snapshot {id} {pct}%");
    }
    let left = elapsed.mul_f64(f64::from(100 - pct) / f64::from(pct));
    let left = Duration::from_secs(left.as_secs().max(1));
    format!(
        "snapshot {id} {pct}%, about {} left",
        crate::duration::human(left)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{ImageState, InstanceState, StateReason};

    fn inst(state: InstanceStateName) -> Instance {
        Instance::builder()
            .instance_id("i-1")
            .state(InstanceState::builder().name(state).build())
            .build()
    }

    #[test]
    fn states_are_judged_against_the_target() {
        let pending = [InstanceStateName::Pending];
        let t = InstanceStateName::Running;
        assert!(matches!(
            instance_state(Some(&inst(InstanceStateName::Running)), &t, &pending),
            Ok(Probe::Done(_))
        ));
        assert!(matches!(
            instance_state(None, &t, &pending),
            Ok(Probe::Pending(s)) if s == "not visible yet"
        ));
        assert!(matches!(
            instance_state(Some(&inst(InstanceStateName::Terminated)), &t, &pending),
            Ok(Probe::Failed { state, .. }) if state == "terminated"
        ));
        let failed = Image::builder()
            .image_id("ami-1")
            .state(ImageState::Failed)
            .state_reason(
                StateReason::builder()
                    .code("Client.SnapshotFailed")
                    .message("the snapshot failed")
                    .build(),
            )
            .build();
        match image_state(Some(&failed)) {
            Ok(Probe::Failed { state, reason }) => {
                assert_eq!(
                    (state.as_str(), reason.as_str()),
                    ("failed", "the snapshot failed")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// Snapshots as EC2 would describe them: snap-1 completed, the others 40% pending.
    struct SnapSource;

    impl crate::aws::poller::Source<Snapshot> for SnapSource {
        fn describe(&self, ids: Vec<String>) -> crate::aws::poller::Call<Snapshot> {
            Box::pin(async move {
                Ok(ids
                    .into_iter()
                    .map(|id| {
                        let done = id == "snap-1";
                        let s = Snapshot::builder()
                            .snapshot_id(&id)
                            .state(if done {
                                SnapshotState::Completed
                            } else {
                                SnapshotState::Pending
                            })
                            .progress(if done { "100%" } else { "40%" })
                            .build();
                        (id, s)
                    })
                    .collect())
            })
        }
    }

    #[tokio::test]
    async fn a_completed_snapshot_is_no_longer_polled() {
        use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice};
        let poller = Poller::new("snapshot", "r", Duration::from_millis(5), SnapSource);
        let mut snaps = Snaps {
            start: Instant::now(),
            poller: poller.clone(),
            watches: Vec::new(),
            said: HashMap::new(),
            off: false,
            done: Vec::new(),
        };
        let dev = |s: &str| {
            BlockDeviceMapping::builder()
                .ebs(EbsBlockDevice::builder().snapshot_id(s).build())
                .build()
        };
        let img = Image::builder()
            .image_id("ami-1")
            .block_device_mappings(dev("snap-1"))
            .block_device_mappings(dev("snap-2"))
            .build();
        let said = Mutex::new(Vec::new());
        let say = |m: String| said.lock().unwrap().push(m);
        assert_eq!(snaps.look(&img, &say), None, "nothing seen yet");
        let mut text = None;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if snaps.watches.iter().all(|(_, w)| w.latest().is_some()) {
                text = snaps.look(&img, &say);
                break;
            }
        }
        let text = text.expect("both snapshots seen");
        assert!(
            text.starts_with("snapshot snap-1 100%, snapshot snap-2 40%"),
            "{text}"
        );
        let watched: Vec<&str> = snaps.watches.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(watched, ["snap-2"]);
        assert_eq!(snaps.done, ["snap-1"]);
        // Looking again does not watch the completed one anew.
        let _ = snaps.look(&img, &say);
        assert_eq!(snaps.watches.len(), 1);
        assert_eq!(
            said.lock().unwrap().len(),
            1,
            "the 25% quarter of snap-2, once"
        );
    }

    #[test]
    fn progress_says_the_percentage_and_estimates_the_rest() {
        assert_eq!(percent(Some("63%")), Some(63));
        assert_eq!(percent(Some("")), None);
        assert_eq!(
            progress_text("snap-1", 25, Duration::from_secs(10)),
            format!(
                "snapshot snap-1 25%, about {} left",
                crate::duration::human(Duration::from_secs(30))
            )
        );
        assert_eq!(
            progress_text("snap-1", 0, Duration::from_secs(10)),
            "snapshot snap-1 0%"
        );
    }
}
