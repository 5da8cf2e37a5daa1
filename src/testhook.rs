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
