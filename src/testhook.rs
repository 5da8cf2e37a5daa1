//! Test hooks: places where the integration tests hold a build so that they can interrupt it
//! there. They exist only in a binary built with the `test-hooks` cargo feature (what
//! `scripts/test.sh` builds); without it each function here is a no-op, and the release binary
//! holds no trace of them (`strings target/release/imgbuild | grep IMGBUILD_TEST_` finds nothing).

use std::time::Duration;

/// How long to hold the build at `step` (`IMGBUILD_TEST_PAUSE=<step>:<seconds>`), if at all.
#[cfg(feature = "test-hooks")]
pub fn pause_at(step: &str) -> Option<Duration> {
    let v = std::env::var("IMGBUILD_TEST_PAUSE").ok()?;
    let (at, secs) = v.split_once(':')?;
    (at == step).then_some(())?;
    let d = Duration::from_secs_f64(secs.parse().ok()?);
    // On stdout, where the tests watch a build's progress.
    println!("test hook: pausing {}s after {step}", d.as_secs_f64());
    Some(d)
}

/// Without the `test-hooks` feature: never.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pause_at(_step: &str) -> Option<Duration> {
    None
}

/// Holds the build `d` (what [`pause_at`] returned), or less: until the file named by
/// `IMGBUILD_TEST_PAUSE_RELEASE` exists, so that a test ends a long hold on an event of its own
/// (having read what it needed) instead of after a fixed time.
#[cfg(feature = "test-hooks")]
pub async fn held(d: Duration) {
    let Some(file) = std::env::var_os("IMGBUILD_TEST_PAUSE_RELEASE") else {
        tokio::time::sleep(d).await;
        return;
    };
    let end = tokio::time::Instant::now() + d;
    while !std::path::Path::new(&file).exists() {
        let now = tokio::time::Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(50))).await;
    }
}

/// Without the `test-hooks` feature: [`pause_at`] never holds; a plain sleep.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub async fn held(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Holds a lock of the manifest or `ami-outputs` file a while
/// (`IMGBUILD_TEST_LOCK_HOLD_MS=<ms>`, at most 10 s), so that concurrent writers must wait.
#[cfg(feature = "test-hooks")]
pub fn hold_lock() {
    if let Some(ms) = std::env::var("IMGBUILD_TEST_LOCK_HOLD_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms.min(10_000)));
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn hold_lock() {}

/// Holds a wait whose spinner text contains `<text>` (`IMGBUILD_TEST_HOLD_WAIT=<text>:<file>`)
/// until `<file>` exists, with its spinner shown: a terminal test creates the file once it has
/// seen the spinner, so the spinner is drawn for certain however short the wait (bounded at
/// 600 s).
#[cfg(feature = "test-hooks")]
pub async fn hold_wait(spinner_text: &str) {
    let Ok(v) = std::env::var("IMGBUILD_TEST_HOLD_WAIT") else {
        return;
    };
    let Some((text, file)) = v.split_once(':') else {
        return;
    };
    if !spinner_text.contains(text) {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !std::path::Path::new(file).exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub async fn hold_wait(_spinner_text: &str) {}
