//! Deadline-based waits on EC2: with the default polling on the answers of a shared poller
//! ([`until_polled`]: one a second), else the first poll at once, then short intervals growing
//! by half up to 15 s (Packer polls every 15 s from the start), until a limit; a failed state
//! ends the wait at once with the reason EC2 gives. `aws_polling` and `AWS_POLL_DELAY_SECONDS`/`AWS_MAX_ATTEMPTS`
//! (the option wins over the environment, field by field, as in Packer) turn this into a fixed
//! delay and a limit of delay × attempts.

use std::future::Future;
use std::time::{Duration, Instant};

use super::access::AwsPolling;
use super::error::ApiError;
use crate::cancel::Cancel;

/// The first interval after the first poll.
pub const INITIAL: Duration = Duration::from_secs(1);
/// The longest interval between polls.
pub const CAP: Duration = Duration::from_secs(15);
/// Packer's delay when only the number of attempts is given.
const ATTEMPTS_ONLY_DELAY: Duration = Duration::from_secs(2);
/// How often a long wait says that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// How to poll and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Interval after the first poll.
    pub initial: Duration,
    /// Longest interval (equal to `initial` for a fixed delay).
    pub cap: Duration,
    /// Give up after this long.
    pub limit: Duration,
    /// Where the limit comes from, for the timeout message.
    pub origin: &'static str,
}

/// The polling settings of a build: `aws_polling` merged with the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Polling {
    pub delay: Option<Duration>,
    pub attempts: Option<u32>,
    /// True when any of it came from the environment (for messages).
    pub from_env: bool,
}

impl Polling {
    /// `aws_polling` wins over `AWS_POLL_DELAY_SECONDS`/`AWS_MAX_ATTEMPTS`, field by field.
    /// Zero means unset. A malformed variable is an error naming it.
    pub fn resolve(
        option: Option<AwsPolling>,
        env_delay: Option<&str>,
        env_attempts: Option<&str>,
    ) -> Result<Polling, String> {
        fn parse(name: &str, v: Option<&str>) -> Result<Option<u32>, String> {
            match v.map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => s.parse::<u32>().map(Some).map_err(|_| {
                    format!(
                        "{name} must be a whole number of {}, found {s:?}",
                        if name.contains("DELAY") {
                            "seconds"
                        } else {
                            "attempts"
                        }
                    )
                }),
            }
        }
        let env_d = parse("AWS_POLL_DELAY_SECONDS", env_delay)?.filter(|v| *v > 0);
        let env_a = parse("AWS_MAX_ATTEMPTS", env_attempts)?.filter(|v| *v > 0);
        let opt_d = option.and_then(|p| p.delay_seconds).filter(|v| *v > 0);
        let opt_a = option.and_then(|p| p.max_attempts).filter(|v| *v > 0);
        Ok(Polling {
            delay: opt_d.or(env_d).map(|s| Duration::from_secs(s.into())),
            attempts: opt_a.or(env_a),
            from_env: (opt_d.is_none() && env_d.is_some()) || (opt_a.is_none() && env_a.is_some()),
        })
    }

    /// No `aws_polling` and no environment: the waits use the shared pollers
    /// ([`super::poller`]) instead of a schedule of their own.
    pub fn is_default(&self) -> bool {
        self.delay.is_none() && self.attempts.is_none()
    }

    /// The schedule of one wait whose default limit is `default_limit`.
    pub fn schedule(&self, default_limit: Duration) -> Schedule {
        let origin = if self.from_env {
            "aws_polling / AWS_POLL_DELAY_SECONDS, AWS_MAX_ATTEMPTS"
        } else {
            "aws_polling"
        };
        match (self.delay, self.attempts) {
            (None, None) => Schedule {
                initial: INITIAL,
                cap: CAP,
                limit: default_limit,
                origin: "imgbuild's default for this wait; set aws_polling to change it",
            },
            (Some(d), None) => Schedule {
                initial: d,
                cap: d,
                limit: default_limit.max(d),
                origin,
            },
            (d, Some(n)) => {
                let d = d.unwrap_or(ATTEMPTS_ONLY_DELAY);
                Schedule {
                    initial: d,
                    cap: d,
                    limit: d * n,
                    origin,
                }
            }
        }
    }
}

impl Schedule {
    /// The interval after poll number `n` (1-based): `initial`, then × 1.5 up to `cap`.
    pub fn interval(&self, n: u32) -> Duration {
        let mut d = self.initial;
        for _ in 1..n {
            d = d.mul_f64(1.5);
            if d >= self.cap {
                return self.cap;
            }
        }
        d.min(self.cap)
    }

    /// This schedule with no pause between polls: for a probe that waits for the next answer
    /// of a shared poller ([`super::poller::Watch::next`]), which sets the pace.
    pub fn paced_by_poller(mut self) -> Schedule {
        self.initial = Duration::ZERO;
        self.cap = Duration::ZERO;
        self
    }

    /// This schedule with a limit no later than `deadline` (for teardown's own deadline).
    pub fn within(mut self, deadline: Instant) -> Schedule {
        self.limit = self
            .limit
            .min(deadline.saturating_duration_since(Instant::now()));
        self
    }
}

/// What one poll found.
#[derive(Debug)]
pub enum Probe<T> {
    /// The target state: done.
    Done(T),
    /// Not yet; the current state, for progress and timeout messages.
    Pending(String),
    /// A state that will never reach the target (with EC2's reason).
    Failed { state: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {} waiting for {what} to be {target} (last state: {last}); the limit is {origin}", crate::duration::human(*.limit))]
    Timeout {
        what: String,
        target: String,
        last: String,
        limit: Duration,
        origin: &'static str,
    },
    #[error("{what} went to state {state} while waiting for it to be {target}: {reason}")]
    Failed {
        what: String,
        target: String,
        state: String,
        reason: String,
    },
    #[error("checking {what}: {source}")]
    Describe { what: String, source: ApiError },
    #[error("cancelled while waiting for {what} to be {target}")]
    Cancelled { what: String, target: String },
}

/// Polls `probe` on `schedule` until it is done, fails, the limit passes or `cancel` fires.
/// `progress` is told every 30 s that the wait goes on. On a terminal, the build's spinner
/// shows the wait, its last state and the elapsed time (see [`crate::ui::current_spinner`]).
pub async fn until<T, F, Fut>(
    what: &str,
    target: &str,
    schedule: &Schedule,
    cancel: &Cancel,
    progress: &(dyn Fn(String) + Sync),
    mut probe: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, ApiError>>,
{
    let start = Instant::now();
    let deadline = start + schedule.limit;
    let mut last = "unknown".to_string();
    let mut next_progress = start + PROGRESS_EVERY;
    let cancelled = || WaitError::Cancelled {
        what: what.to_string(),
        target: target.to_string(),
    };
    let label = format!("waiting for {what} to be {target}");
    let spinner = crate::ui::current_spinner(&label);
    cancel
        .run(crate::testhook::hold_wait(&label))
        .await
        .ok_or_else(cancelled)?;
    for n in 1u32.. {
        let r = cancel.run(probe()).await.ok_or_else(cancelled)?;
        match r.map_err(|source| WaitError::Describe {
            what: what.to_string(),
            source,
        })? {
            Probe::Done(v) => return Ok(v),
            Probe::Failed { state, reason } => {
                return Err(WaitError::Failed {
                    what: what.to_string(),
                    target: target.to_string(),
                    state,
                    reason,
                })
            }
            Probe::Pending(state) => {
                tracing::debug!(%what, %target, %state, poll = n, "still waiting");
                spinner.set_message(&format!(
                    "waiting for {what} to be {target} (state {state})"
                ));
                last = state;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_progress {
            progress(format!(
                "still waiting for {what} to be {target} (state {last}, {} so far)",
                crate::duration::human(now - start)
            ));
            next_progress = now + PROGRESS_EVERY;
        }
        let pause = schedule.interval(n).min(deadline - now);
        if !cancel.sleep(pause).await {
            return Err(cancelled());
        }
    }
    Err(WaitError::Timeout {
        what: what.to_string(),
        target: target.to_string(),
        last,
        limit: schedule.limit,
        origin: schedule.origin,
    })
}

/// [`until`] on the answers of a shared poller (`watch`, which sets the pace: one answer a
/// tick), each judged by `judge` (which may make calls of its own); `schedule` gives the limit.
pub async fn until_polled<T, R, J, JF>(
    what: &str,
    target: &str,
    schedule: &Schedule,
    cancel: &Cancel,
    progress: &(dyn Fn(String) + Sync),
    watch: super::poller::Watch<T>,
    judge: J,
) -> Result<R, WaitError>
where
    T: Clone + Send + Sync + 'static,
    J: Fn(Option<T>) -> JF + Sync,
    JF: Future<Output = Result<Probe<R>, ApiError>>,
{
    let watch = tokio::sync::Mutex::new(watch);
    let deadline = tokio::time::Instant::now() + schedule.limit;
    let paced = schedule.paced_by_poller();
    let (watch, judge) = (&watch, &judge);
    until(what, target, &paced, cancel, progress, || async move {
        let next = async { watch.lock().await.next().await };
        let Ok(seen) = tokio::time::timeout_at(deadline, next).await else {
            return Ok(Probe::Pending("no answer yet".into()));
        };
        if let Some(e) = seen.error {
            return Err(e);
        }
        judge(seen.item).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn default_schedule_starts_short_and_backs_off_to_15s() {
        let s = Polling::default().schedule(Duration::from_secs(600));
        let got: Vec<Duration> = (1..=9).map(|n| s.interval(n)).collect();
        assert_eq!(
            got,
            vec![
                secs(1.0),
                secs(1.5),
                secs(2.25),
                secs(3.375),
                secs(5.0625),
                secs(7.59375),
                secs(11.390625),
                secs(15.0),
                secs(15.0)
            ]
        );
        assert_eq!(s.limit, Duration::from_secs(600));
        assert!(s.origin.contains("default"));
    }

    #[test]
    fn option_wins_over_environment_field_by_field() {
        let p = Polling::resolve(
            Some(AwsPolling {
                delay_seconds: Some(5),
                max_attempts: None,
            }),
            Some("7"),
            Some("4"),
        )
        .unwrap();
        assert_eq!(p.delay, Some(Duration::from_secs(5)));
        assert_eq!(p.attempts, Some(4));
        assert!(p.from_env);
        let s = p.schedule(Duration::from_secs(600));
        assert_eq!(
            (s.initial, s.cap, s.limit),
            (secs(5.0), secs(5.0), secs(20.0))
        );
        assert!(s.origin.contains("AWS_MAX_ATTEMPTS"));
        // Attempts only: Packer's 2 s delay.
        let s = Polling::resolve(None, None, Some("3"))
            .unwrap()
            .schedule(Duration::from_secs(600));
        assert_eq!((s.initial, s.limit), (secs(2.0), secs(6.0)));
        // Delay only: the wait's default limit.
        let s = Polling::resolve(None, Some("10"), None)
            .unwrap()
            .schedule(Duration::from_secs(600));
        assert_eq!((s.interval(5), s.limit), (secs(10.0), secs(600.0)));
        assert_eq!(
            Polling::resolve(None, Some("soon"), None).unwrap_err(),
            "AWS_POLL_DELAY_SECONDS must be a whole number of seconds, found \"soon\""
        );
        assert_eq!(
            Polling::resolve(None, Some(" "), Some("0")).unwrap(),
            Polling::default()
        );
    }

    #[tokio::test]
    async fn polls_at_once_then_until_done() {
        let n = AtomicU32::new(0);
        let s = Schedule {
            initial: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            limit: Duration::from_secs(5),
            origin: "test",
        };
        let v = until(
            "instance i-1 in r",
            "running",
            &s,
            &Cancel::never(),
            &|_| {},
            || async {
                let k = n.fetch_add(1, Ordering::SeqCst);
                Ok(if k < 3 {
                    Probe::Pending("pending".into())
                } else {
                    Probe::Done(k)
                })
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn a_failed_state_ends_the_wait_with_the_reason_and_a_timeout_names_everything() {
        let s = Schedule {
            initial: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            limit: Duration::from_millis(30),
            origin: "aws_polling",
        };
        let e = until::<(), _, _>(
            "instance i-1 in us-east-1",
            "running",
            &s,
            &Cancel::never(),
            &|_| {},
            || async {
                Ok(Probe::Failed {
                    state: "terminated".into(),
                    reason: "Server.SpotInstanceTermination: gone".into(),
                })
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "instance i-1 in us-east-1 went to state terminated while waiting for it to be running: Server.SpotInstanceTermination: gone");
        let e = until::<(), _, _>(
            "AMI ami-1 in us-east-1",
            "available",
            &s,
            &Cancel::never(),
            &|_| {},
            || async { Ok(Probe::Pending("pending".into())) },
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("timed out after"), "{text}");
        assert!(text.contains("waiting for AMI ami-1 in us-east-1 to be available (last state: pending); the limit is aws_polling"), "{text}");
    }
}
