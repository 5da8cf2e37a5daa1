//! Cancellation, the one mechanism every part of a build uses: the orchestrator, the prompts,
//! the builders, the provisioner runtime, the SSH communicator, teardown, cleanup and the
//! post-processors. A [`Canceller`] flips once (Ctrl-C, SIGTERM, a build's deadline) and every
//! [`Cancel`] made from it sees it; a [`Cancel::child`] is cancelled by its own canceller or by
//! its parent's (a build's deadline cancels that build only; Ctrl-C cancels them all).
//!
//! Waits and reads select on [`Cancel::cancelled`] (or use [`Cancel::run`], [`Cancel::sleep`]);
//! calls that create a resource are not interrupted half-way (their result is recorded first).
//! Built on tokio-util's `CancellationToken`, whose receivers cannot cancel: only the
//! [`Canceller`] can.

use tokio_util::sync::CancellationToken;

/// The observing side: tells whether (and waits until) the work is to stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cancel(CancellationToken);

/// The cancelling side: flips every [`Cancel`] made from it (and their children).
#[derive(Debug)]
pub struct Canceller(CancellationToken);

/// A new pair, not cancelled.
pub fn channel() -> (Canceller, Cancel) {
    let token = CancellationToken::new();
    (Canceller(token.clone()), Cancel(token))
}

impl Canceller {
    /// Cancels (once; later calls do nothing).
    pub fn cancel(&self) {
        self.0.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Another observer of this canceller.
    pub fn subscribe(&self) -> Cancel {
        Cancel(self.0.clone())
    }
}

impl Cancel {
    /// An observer that is never cancelled.
    pub fn never() -> Cancel {
        Cancel(CancellationToken::new())
    }

    /// A pair below this one: cancelled by its own canceller, or when this one is.
    pub fn child(&self) -> (Canceller, Cancel) {
        let token = self.0.child_token();
        (Canceller(token.clone()), Cancel(token))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once cancelled (never, if nobody cancels).
    pub async fn cancelled(&self) {
        self.0.cancelled().await
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
    async fn cancelling_interrupts_a_sleep() {
        let (tx, rx) = channel();
        let t = tokio::spawn(async move { rx.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        tx.cancel();
        assert!(!t.await.unwrap());
        assert!(tx.subscribe().is_cancelled());
        assert_eq!(tx.subscribe().run(async { 1 }).await, None);
        assert_eq!(Cancel::never().run(async { 1 }).await, Some(1));
    }

    #[tokio::test]
    async fn a_child_follows_its_parent_but_not_the_other_way() {
        let (parent_tx, parent) = channel();
        let (child_tx, child) = parent.child();
        child_tx.cancel();
        assert!(child.is_cancelled());
        assert!(!parent.is_cancelled());
        let (_keep, second) = parent.child();
        parent_tx.cancel();
        second.cancelled().await;
        assert!(second.is_cancelled());
    }

    #[tokio::test]
    async fn an_uncancelled_canceller_dropped_cancels_nothing() {
        let (tx, rx) = channel();
        drop(tx);
        assert!(!rx.is_cancelled());
        assert!(rx.sleep(Duration::from_millis(1)).await);
    }
}
