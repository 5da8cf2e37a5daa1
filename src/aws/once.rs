//! Read-only lookups that parallel builds share: the same call (same account, region and
//! request) asked for while another build's is under way, or less than [`FRESH`] after it
//! answered, gets that answer instead of making a call of its own, so that 8 builds of one
//! `source_ami_filter` make one `DescribeImages`, not 8. Failures are not kept: the next build
//! asks again.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an answer serves later lookups.
pub const FRESH: Duration = Duration::from_secs(60);

type Slot<T> = tokio::sync::Mutex<Option<(Instant, T)>>;
type Slots = Mutex<HashMap<(String, String), Arc<dyn Any + Send + Sync>>>;

/// The answer of `call` for `key` in `account`: a fresh kept one, or the one `call` gives
/// (kept when it succeeds). Lookups of one key wait for each other; others do not.
pub async fn lookup<T, E, F, Fut>(account: &str, key: String, call: F) -> Result<T, E>
where
    T: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    let slot: Arc<Slot<T>> = {
        let mut slots = match SLOTS.get_or_init(Default::default).lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let entry = slots
            .entry((account.to_string(), key))
            .or_insert_with(|| Arc::new(Slot::<T>::new(None)));
        match entry.clone().downcast::<Slot<T>>() {
            Ok(s) => s,
            // The same key for another type (not in practice): not shared.
            Err(_) => Arc::new(Slot::new(None)),
        }
    };
    let mut held = slot.lock().await;
    if let Some((at, v)) = held.as_ref() {
        if at.elapsed() < FRESH {
            return Ok(v.clone());
        }
    }
    let v = call().await?;
    *held = Some((Instant::now(), v.clone()));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_and_later_lookups_of_one_key_share_one_call_and_failures_are_not_kept() {
        let calls = AtomicU32::new(0);
        let call = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>(vec!["ami-1".to_string()])
        };
        let acct = "acct-once-test";
        let (a, b, c) = tokio::join!(
            lookup(acct, "us-east-1|f".into(), call),
            lookup(acct, "us-east-1|f".into(), call),
            lookup(acct, "us-east-1|f".into(), call)
        );
        assert_eq!(
            (a.unwrap(), b.unwrap(), c.unwrap().len()),
            (vec!["ami-1".to_string()], vec!["ami-1".to_string()], 1)
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one call for three lookups"
        );
        let _ = lookup(acct, "us-east-1|f".into(), call).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a later lookup while fresh"
        );
        // Another region, another account: calls of their own.
        let _ = lookup(acct, "us-west-2|f".into(), call).await;
        let _ = lookup("acct-other", "us-east-1|f".into(), call).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A failure is handed to its caller only; the next lookup calls again.
        let failed: Result<Vec<String>, String> = lookup(acct, "eu-west-1|f".into(), || async {
            Err("throttled".to_string())
        })
        .await;
        assert_eq!(failed.unwrap_err(), "throttled");
        let _ = lookup(acct, "eu-west-1|f".into(), call).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
