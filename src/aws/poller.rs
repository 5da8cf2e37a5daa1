//! One shared poller per account, region and resource kind: every wait of the process on an
//! instance (or an image, or a snapshot) of that region registers its ID with the poller, and
//! one `Describe*` call a tick, filtered on all the IDs waited for, serves them all, so that 8
//! parallel builds make no more calls a second than 1. The tick is 1 s (a change is noticed
//! about 0.5 s late on average, never more than a tick and a call). Throttling
//! (`RequestLimitExceeded`) doubles the tick (up to 16 s) and each answer after it halves it
//! again; 5xx answers and lost connections are retried at the next tick; any other error is
//! handed to the waiters, which fail with it. The poller's task runs only while someone
//! waits. The waits themselves (deadline, cancellation, progress) are [`super::wait::until`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::ApiError;

/// The tick of a poller nobody throttles.
pub const TICK: Duration = Duration::from_secs(1);
/// The tick of snapshot pollers: their progress is shown, not waited on.
pub const SNAPSHOT_TICK: Duration = Duration::from_secs(3);
/// The longest tick under throttling.
pub const MAX_TICK: Duration = Duration::from_secs(16);
/// How many of the last pauses a poller keeps.
const KEEP_PAUSES: usize = 16;
/// At most this many IDs in one call (EC2 takes 200 values in a filter).
const BATCH: usize = 200;

/// An answer of a [`Source`]: each resource found, by its ID.
pub type Found<T> = Result<Vec<(String, T)>, ApiError>;
/// The future of one `Describe*` call.
pub type Call<T> = Pin<Box<dyn Future<Output = Found<T>> + Send>>;

/// The `Describe*` call behind a poller: the resources among `ids` that exist (an ID that is
/// not there, not yet or no longer, is simply left out).
pub trait Source<T>: Send + Sync + 'static {
    fn describe(&self, ids: Vec<String>) -> Call<T>;
}

/// What one tick saw of one waited-for resource.
#[derive(Debug, Clone)]
pub struct Seen<T> {
    /// The poller's call number (0: nothing seen yet).
    pub tick: u64,
    /// The resource, or None when the call did not return it.
    pub item: Option<T>,
    /// The call failed with an error that will not pass by retrying.
    pub error: Option<ApiError>,
}

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// EC2 throttles: slow down, retry.
    Throttled,
    /// 5xx, a lost connection, a timeout: retry at the next tick.
    Transient,
    /// Anything else (no permission, a bad request): the waits fail with it.
    Fatal,
}

/// How a failed call is handled.
pub fn failure(e: &ApiError) -> Failure {
    match e.code.as_deref() {
        Some(
            "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "RequestThrottled"
            | "TooManyRequestsException",
        ) => Failure::Throttled,
        Some(
            "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
            | "RequestTimeout"
            | "RequestTimeoutException",
        )
        | None => Failure::Transient,
        Some(_) => Failure::Fatal,
    }
}

/// The tick after `throttled` throttled answers not yet made up for: [`TICK`] doubled each
/// time, at most [`MAX_TICK`] (a fixed `base` replaces [`TICK`]).
pub fn tick_after(base: Duration, throttled: u32) -> Duration {
    base.saturating_mul(1u32 << throttled.min(8))
        .min(MAX_TICK.max(base))
}

struct State<T> {
    /// Waiter token -> (ID, where its observations go).
    waiters: BTreeMap<u64, (String, watch::Sender<Seen<T>>)>,
    next_token: u64,
    task: Option<JoinHandle<()>>,
    calls: u64,
    throttled: u32,
    /// The last pauses between ticks (at most [`KEEP_PAUSES`]), for logs and tests.
    pauses: std::collections::VecDeque<Duration>,
}

/// The shared poller of one region and resource kind.
pub struct Poller<T> {
    kind: &'static str,
    region: String,
    base: Duration,
    source: Box<dyn Source<T>>,
    state: Mutex<State<T>>,
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl<T: Clone + Send + Sync + 'static> Poller<T> {
    /// A poller of `kind` (for logs) in `region` calling `source` every `base`.
    pub fn new(
        kind: &'static str,
        region: &str,
        base: Duration,
        source: impl Source<T>,
    ) -> Arc<Poller<T>> {
        Arc::new(Poller {
            kind,
            region: region.to_string(),
            base,
            source: Box::new(source),
            state: Mutex::new(State {
                waiters: BTreeMap::new(),
                next_token: 0,
                task: None,
                calls: 0,
                throttled: 0,
                pauses: Default::default(),
            }),
        })
    }

    /// Starts watching `id`; the poller's task starts when it is not running.
    pub fn watch(self: &Arc<Self>, id: &str) -> Watch<T> {
        let (tx, rx) = watch::channel(Seen {
            tick: 0,
            item: None,
            error: None,
        });
        let mut st = lock(&self.state);
        let token = st.next_token;
        st.next_token += 1;
        st.waiters.insert(token, (id.to_string(), tx));
        if st.task.as_ref().is_none_or(|t| t.is_finished()) {
            let me = self.clone();
            st.task = Some(tokio::spawn(async move { me.run().await }));
        }
        Watch {
            poller: self.clone(),
            token,
            rx,
        }
    }

    /// The calls made so far and the current tick (for tests and logs).
    pub fn stats(&self) -> (u64, Duration) {
        let st = lock(&self.state);
        (st.calls, tick_after(self.base, st.throttled))
    }

    /// The distinct IDs waited for, or None (and the task ends) when nobody waits.
    fn ids(&self) -> Option<Vec<String>> {
        let mut st = lock(&self.state);
        if st.waiters.is_empty() {
            st.task = None;
            return None;
        }
        let ids: BTreeSet<&String> = st.waiters.values().map(|(id, _)| id).collect();
        Some(ids.into_iter().cloned().collect())
    }

    async fn run(self: Arc<Self>) {
        loop {
            let Some(ids) = self.ids() else { return };
            let started = tokio::time::Instant::now();
            let mut found: HashMap<String, T> = HashMap::new();
            let mut failed = None;
            for chunk in ids.chunks(BATCH) {
                match self.source.describe(chunk.to_vec()).await {
                    Ok(items) => found.extend(items),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let pause = self.settle(&ids, found, failed);
            tokio::time::sleep_until(started + pause).await;
        }
    }

    /// Hands one tick's answer to the waiters of the `asked` IDs (one that came while the call
    /// was under way waits for the next: its ID was not asked for); the pause before the next
    /// tick.
    fn settle(
        &self,
        asked: &[String],
        mut found: HashMap<String, T>,
        failed: Option<ApiError>,
    ) -> Duration {
        let mut st = lock(&self.state);
        st.calls += 1;
        let tick = st.calls;
        match failed.as_ref().map(failure) {
            None => {
                st.throttled = st.throttled.saturating_sub(1);
                for (id, tx) in st.waiters.values() {
                    if asked.binary_search(id).is_err() {
                        continue;
                    }
                    let item = found.get(id).cloned();
                    tx.send_replace(Seen {
                        tick,
                        item,
                        error: None,
                    });
                }
                found.clear();
            }
            Some(Failure::Throttled) => {
                st.throttled = (st.throttled + 1).min(8);
                tracing::debug!(kind = self.kind, region = %self.region, tick = ?tick_after(self.base, st.throttled), "throttled: the shared poller slows down");
            }
            Some(Failure::Transient) => {
                tracing::debug!(kind = self.kind, region = %self.region, error = ?failed, "describe failed; retried at the next tick");
            }
            Some(Failure::Fatal) => {
                for (_, tx) in st
                    .waiters
                    .values()
                    .filter(|(id, _)| asked.binary_search(id).is_ok())
                {
                    tx.send_replace(Seen {
                        tick,
                        item: None,
                        error: failed.clone(),
                    });
                }
            }
        }
        let pause = tick_after(self.base, st.throttled);
        if st.pauses.len() == KEEP_PAUSES {
            st.pauses.pop_front();
        }
        st.pauses.push_back(pause);
        pause
    }
}

/// One wait's registration with a poller; dropping it ends the registration.
pub struct Watch<T> {
    poller: Arc<Poller<T>>,
    token: u64,
    rx: watch::Receiver<Seen<T>>,
}

impl<T: Clone> Watch<T> {
    /// The resource as the last tick saw it (without waiting).
    pub fn latest(&self) -> Option<T> {
        self.rx.borrow().item.clone()
    }

    /// The error that the last tick handed over, if any.
    pub fn failed(&self) -> Option<ApiError> {
        self.rx.borrow().error.clone()
    }

    /// The next tick's observation of the resource.
    pub async fn next(&mut self) -> Seen<T> {
        if self.rx.changed().await.is_err() {
            return Seen {
                tick: 0,
                item: None,
                error: Some(ApiError::msg("the shared poller stopped")),
            };
        }
        self.rx.borrow_and_update().clone()
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        lock(&self.poller.state).waiters.remove(&self.token);
    }
}

/// The process's pollers, by account (access key and endpoint), region and kind.
type Registry =
    Mutex<HashMap<(String, String, &'static str), Arc<dyn std::any::Any + Send + Sync>>>;

/// The shared poller of `kind` for `account` in `region`, made by `make` the first time.
pub fn shared<T: Clone + Send + Sync + 'static>(
    account: &str,
    region: &str,
    kind: &'static str,
    make: impl FnOnce() -> Arc<Poller<T>>,
) -> Arc<Poller<T>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let mut reg = lock(REGISTRY.get_or_init(Default::default));
    let key = (account.to_string(), region.to_string(), kind);
    if let Some(p) = reg
        .get(&key)
        .and_then(|p| p.clone().downcast::<Poller<T>>().ok())
    {
        return p;
    }
    let p = make();
    reg.insert(key, p.clone());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Answers from a script; records the IDs of every call.
    #[derive(Clone, Default)]
    struct Script {
        calls: Arc<Mutex<Vec<Vec<String>>>>,
        /// Errors for the first calls, in order.
        errors: Arc<Mutex<Vec<ApiError>>>,
        /// The call from which on the resources are "ready".
        ready_from: Arc<AtomicU32>,
    }

    impl Source<String> for Script {
        fn describe(&self, ids: Vec<String>) -> Call<String> {
            let n = {
                let mut c = lock(&self.calls);
                c.push(ids.clone());
                c.len() as u32
            };
            let err = {
                let mut e = lock(&self.errors);
                (!e.is_empty()).then(|| e.remove(0))
            };
            let ready = n >= self.ready_from.load(Ordering::SeqCst);
            Box::pin(async move {
                if let Some(e) = err {
                    return Err(e);
                }
                Ok(ids
                    .into_iter()
                    .map(|id| {
                        let s = if ready { "ready" } else { "pending" };
                        (id, s.to_string())
                    })
                    .collect())
            })
        }
    }

    fn code(c: &str) -> ApiError {
        ApiError {
            code: Some(c.into()),
            message: "scripted".into(),
        }
    }

    async fn until_ready(w: &mut Watch<String>) -> Seen<String> {
        for _ in 0..50 {
            let s = w.next().await;
            if s.error.is_some() || s.item.as_deref() == Some("ready") {
                return s;
            }
        }
        panic!("never ready");
    }

    #[test]
    fn failures_are_sorted_and_throttling_doubles_the_tick() {
        assert_eq!(failure(&code("RequestLimitExceeded")), Failure::Throttled);
        assert_eq!(failure(&code("InternalError")), Failure::Transient);
        assert_eq!(
            failure(&ApiError::msg("connection reset")),
            Failure::Transient
        );
        assert_eq!(failure(&code("UnauthorizedOperation")), Failure::Fatal);
        let t: Vec<u64> = (0..7).map(|n| tick_after(TICK, n).as_secs()).collect();
        assert_eq!(t, vec![1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(
            tick_after(Duration::from_secs(30), 3),
            Duration::from_secs(30)
        );
    }

    const MS: Duration = Duration::from_millis(5);

    #[tokio::test]
    async fn one_call_a_tick_serves_every_waiter_with_the_ids_batched() {
        let s = Script::default();
        s.ready_from.store(3, Ordering::SeqCst);
        let p = Poller::new("instance", "r", MS, s.clone());
        let mut a = p.watch("i-1");
        let mut b = p.watch("i-2");
        let mut c = p.watch("i-1");
        let (ra, rb, rc) = tokio::join!(
            until_ready(&mut a),
            until_ready(&mut b),
            until_ready(&mut c)
        );
        assert_eq!((ra.tick, rb.tick, rc.tick), (3, 3, 3));
        let calls = lock(&s.calls).clone();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls
            .iter()
            .all(|c| c == &vec!["i-1".to_string(), "i-2".to_string()]));
        drop((a, b, c));
        // Nobody waits: the task ends after its pause, and the next watch starts it again.
        for _ in 0..200 {
            if lock(&p.state).task.is_none() {
                break;
            }
            tokio::time::sleep(MS).await;
        }
        assert!(lock(&p.state).task.is_none(), "the task ended");
        assert_eq!(lock(&s.calls).len(), 3);
        let mut d = p.watch("i-3");
        assert_eq!(d.next().await.item.as_deref(), Some("ready"));
        assert_eq!(lock(&s.calls).last().unwrap(), &vec!["i-3".to_string()]);
    }

    #[tokio::test]
    async fn throttling_slows_the_poller_and_other_faults_are_retried() {
        let s = Script::default();
        *lock(&s.errors) = vec![
            code("RequestLimitExceeded"),
            code("RequestLimitExceeded"),
            code("InternalError"),
            ApiError::msg("connection reset by peer"),
        ];
        let p = Poller::new("image", "r", MS, s.clone());
        let mut w = p.watch("ami-1");
        let seen = until_ready(&mut w).await;
        assert!(seen.error.is_none());
        assert_eq!(seen.tick, 5, "four failed calls, then the answer");
        // Doubled after each throttled call, kept after the retried ones, halved by an answer.
        let pauses: Vec<u32> = lock(&p.state)
            .pauses
            .iter()
            .map(|d| (d.as_millis() / 5) as u32)
            .collect();
        assert_eq!(pauses, vec![2, 4, 4, 4, 2]);
        assert_eq!(p.stats().1, MS * 2);
    }

    #[tokio::test]
    async fn a_waiter_that_comes_during_a_call_is_answered_by_the_next_one() {
        let s = Script::default();
        let p = Poller::new("instance", "r", MS, s.clone());
        let mut a = p.watch("i-1");
        let mut b = p.watch("i-2");
        // As if i-2 had come while the call for i-1 alone was under way.
        let pause = p.settle(&["i-1".to_string()], HashMap::new(), None);
        assert_eq!(pause, MS);
        assert!(a.rx.has_changed().unwrap());
        assert!(!b.rx.has_changed().unwrap(), "i-2 was not asked for");
        let seen = a.next().await;
        assert!(seen.item.is_none(), "i-1 was asked for and not found");
        assert_eq!(b.next().await.item.as_deref(), Some("ready"));
    }

    #[tokio::test]
    async fn a_fatal_error_reaches_every_waiter() {
        let s = Script::default();
        *lock(&s.errors) = vec![code("UnauthorizedOperation")];
        let p = Poller::new("snapshot", "r", MS, s.clone());
        let mut a = p.watch("snap-1");
        let mut b = p.watch("snap-2");
        let (ra, rb) = tokio::join!(a.next(), b.next());
        assert_eq!(
            ra.error.unwrap().code.as_deref(),
            Some("UnauthorizedOperation")
        );
        assert!(rb.error.is_some());
    }

    #[test]
    fn the_registry_gives_one_poller_per_account_region_and_kind() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let made = AtomicU32::new(0);
            let mk = || {
                made.fetch_add(1, Ordering::SeqCst);
                Poller::new("instance", "r", TICK, Script::default())
            };
            let a = shared::<String>("acct-test", "r1", "instance", mk);
            let b = shared::<String>("acct-test", "r1", "instance", || unreachable!());
            assert!(Arc::ptr_eq(&a, &b));
            let _c = shared::<String>("acct-test", "r2", "instance", || {
                made.fetch_add(1, Ordering::SeqCst);
                Poller::new("instance", "r2", TICK, Script::default())
            });
            assert_eq!(made.load(Ordering::SeqCst), 2);
        });
    }
}
