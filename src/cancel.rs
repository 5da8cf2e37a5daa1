//! Cancellation of a running build: a watch channel that flips to `true` once (Ctrl-C, SIGTERM,
//! a build timeout). Builders select on [`Cancel::cancelled`] around every wait and read call;
//! calls that create a resource are not interrupted half-way (their result is recorded first).

use tokio::sync::watch;

/// The receiving side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<bool>);

/// The sending side.
#[derive(Debug)]
pub struct Canceller(watch::Sender<bool>);

/// A new pair, not cancelled.
pub fn channel() -> (Canceller, Cancel) {
    let (tx, rx) = watch::channel(false);
    (Canceller(tx), Cancel(rx))
}

impl Canceller {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    pub fn subscribe(&self) -> Cancel {
        Cancel(self.0.subscribe())
    }
}

impl Cancel {
    /// A receiver that is never cancelled.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever without leaking memory per call in a loop that matters.
        std::mem::forget(tx);
        Cancel(rx)
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled (never, if the sender is gone without cancelling).
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The raw receiver (for the provisioning seam).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }

    /// Runs `fut` unless cancelled first; `None` when cancelled.
    pub async fn run<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        if self.is_cancelled() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.cancelled() => None,
            v = fut => Some(v),
        }
    }

    /// Sleeps `d` unless cancelled first; false when cancelled.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        self.run(tokio::time::sleep(d)).await.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn cancelling_interrupts_a_sleep_at_once() {
        let (tx, rx) = channel();
        let t = tokio::spawn(async move {
            let start = std::time::Instant::now();
            let slept = rx.sleep(Duration::from_secs(30)).await;
            (slept, start.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.cancel();
        let (slept, took) = t.await.unwrap();
        assert!(!slept);
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(tx.subscribe().is_cancelled());
        assert_eq!(tx.subscribe().run(async { 1 }).await, None);
        assert_eq!(Cancel::never().run(async { 1 }).await, Some(1));
    }
}
