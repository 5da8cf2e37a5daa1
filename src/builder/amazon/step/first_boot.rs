//! Step 8a: the wait for first boot (`wait_for_boot`, on by default): on the build's SSH session,
//! once it is connected and before the first provisioner, when the instance has cloud-init,
//! `cloud-init status --wait`, then until the dpkg/apt locks are free (apt or
//! unattended-upgrades started by first boot), all bounded by `ssh_timeout`. An instance without
//! cloud-init is not waited for. The boot test (`boot-test` post-processor) runs it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;

use crate::communicator::ssh::{ExecOptions, ExitOutcome, Session, SshError, Stream};
use crate::duration::go as format_duration;
use crate::provisioner::runtime::remote::{print_line, with_lines, Line};
use crate::provisioner::runtime::{BeforeProvisioning, Output};

/// The dpkg and apt lock files that apt, dpkg and unattended-upgrades hold while they run.
const LOCKS: &str =
    "/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock";

/// How often the lock check looks again while a lock is held.
const LOCK_POLL_SECS: u64 = 2;

/// The wait for first boot, bounded by `timeout` (the build's `ssh_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct FirstBoot {
    pub timeout: Duration,
}

impl BeforeProvisioning for FirstBoot {
    fn run<'s>(
        &'s self,
        session: Arc<Session>,
        out: &'s dyn Output,
        build: &'s str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 's>> {
        Box::pin(wait(session, out, build, self.timeout))
    }
}

/// Waits for first boot on `session`; the error says what it still waited for.
pub async fn wait(
    session: Arc<Session>,
    out: &dyn Output,
    build: &str,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let failed = |what: &str, e: SshError| format!("waiting for first boot ({what}): {e}");
    let (has, _, _) = session
        .exec_collect(
            "command -v cloud-init >/dev/null 2>&1",
            ExecOptions::default(),
        )
        .await
        .map_err(|e| failed("looking for cloud-init", e))?;
    if has != ExitOutcome::Exited(0) {
        tracing::debug!(
            build,
            "no cloud-init on the instance: no wait for first boot"
        );
        return Ok(());
    }
    let say = |t: &str| print_line(out, build, &Line::Say(t.to_string()));
    say("Waiting for cloud-init to finish first boot (cloud-init status --wait)...");
    let cmd = "cloud-init status --wait";
    let outcome = streamed(&session, out, build, cmd, deadline)
        .await
        .map_err(|e| match e {
            None => deadline_error(timeout, cmd),
            Some(e) => failed(cmd, e),
        })?;
    match outcome {
        ExitOutcome::Exited(0) => {}
        ExitOutcome::Exited(2) => say("cloud-init finished with recoverable errors (exit status 2); going on"),
        other => say(&format!(
            "warning: `{cmd}` ended with {other}; going on (see /var/log/cloud-init.log on the instance)"
        )),
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let tries = (left.as_secs() / LOCK_POLL_SECS).max(1);
    let locks = lock_script(tries);
    let what = "the dpkg/apt locks to be free";
    match streamed(&session, out, build, &locks, deadline).await {
        Ok(ExitOutcome::Exited(0)) => {}
        Ok(ExitOutcome::Exited(3)) | Err(None) => return Err(deadline_error(timeout, what)),
        Ok(other) => say(&format!(
            "warning: the check of the dpkg/apt locks ended with {other}; going on"
        )),
        Err(Some(e)) => return Err(failed(what, e)),
    }
    say(&format!(
        "First boot finished ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The error when the deadline passed while waiting for `what`.
pub fn deadline_error(timeout: Duration, what: &str) -> String {
    format!(
        "first boot did not finish within ssh_timeout ({}): still waiting for {what}; raise ssh_timeout, or set \"wait_for_boot\": false to skip this wait",
        format_duration(timeout)
    )
}

/// Runs `command` with its output lines shown under the build's prefix, until `deadline`
/// (`Err(None)`: the deadline passed; the command's channel is closed).
async fn streamed(
    session: &Session,
    out: &dyn Output,
    build: &str,
    command: &str,
    deadline: Instant,
) -> Result<ExitOutcome, Option<SshError>> {
    let (tx, mut rx) = unbounded_channel();
    let exec = session.exec(command, ExecOptions::default(), move |stream, line| {
        let _ = tx.send(match stream {
            Stream::Stdout => Line::Out(line.to_string()),
            Stream::Stderr => Line::Err(line.to_string()),
        });
    });
    let left = deadline.saturating_duration_since(Instant::now());
    let bounded = tokio::time::timeout(left, exec);
    match with_lines(out, build, &mut rx, |_| {}, bounded).await {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// The remote check of the dpkg/apt locks: exit 0 when they are free (or cannot be checked),
/// 3 when still held after `tries` looks. Checked without taking them (fcntl `F_GETLK` in
/// python3, through `sudo -n` when not root), else with `fuser` or `lsof`.
pub fn lock_script(tries: u64) -> String {
    lock_script_for(LOCKS, tries)
}

/// [`lock_script`] for these lock files (space-separated).
fn lock_script_for(locks: &str, tries: u64) -> String {
    format!(
        r#"command -v dpkg >/dev/null 2>&1 || exit 0
locks="{locks}"
S=""
if [ "$(id -u)" != 0 ] && sudo -n true >/dev/null 2>&1; then S="sudo -n"; fi
held() {{
  if command -v python3 >/dev/null 2>&1; then
    $S python3 -c '
import fcntl, os, struct, sys
busy = 0
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        continue
    try:
        r = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        if struct.unpack("hhqqi4x", r)[0] != fcntl.F_UNLCK:
            busy = 1
    finally:
        os.close(fd)
sys.exit(10 if busy else 0)
' $locks 2>/dev/null
    r=$?
    [ "$r" = 10 ] && return 0
    [ "$r" = 0 ] && return 1
  fi
  if command -v fuser >/dev/null 2>&1; then $S fuser $locks >/dev/null 2>&1; return $?; fi
  if command -v lsof >/dev/null 2>&1; then $S lsof $locks >/dev/null 2>&1; return $?; fi
  return 1
}}
i=0
while held; do
  [ "$i" = 0 ] && echo "a dpkg/apt lock is held (apt or unattended-upgrades runs): waiting for it"
  i=$((i + 1))
  [ "$i" -ge {tries} ] && exit 3
  sleep {LOCK_POLL_SECS}
done
exit 0
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_error_names_ssh_timeout_and_the_way_out() {
        let e = deadline_error(Duration::from_secs(90), "cloud-init status --wait");
        assert_eq!(
            e,
            "first boot did not finish within ssh_timeout (1m30s): still waiting for cloud-init status --wait; raise ssh_timeout, or set \"wait_for_boot\": false to skip this wait"
        );
    }

    #[test]
    fn the_lock_check_is_bounded_and_a_valid_shell_script() {
        let s = lock_script(7);
        assert!(s.contains("-ge 7 ]"), "{s}");
        let ok = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .status()
            .map(|st| st.success())
            .unwrap_or(true);
        assert!(ok, "sh -n rejects the lock check");
    }

    /// The check against a real lock: held by another process (python3 `lockf`, as apt holds
    /// its locks), it gives up after its tries (exit 3); free, it passes at once (exit 0).
    #[test]
    fn the_lock_check_sees_a_lock_another_process_holds() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock-frontend");
        std::fs::write(&lock, "").unwrap();
        let holder = Command::new("python3")
            .arg("-c")
            .arg("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.lockf(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)")
            .arg(&lock)
            .stdout(Stdio::piped())
            .spawn();
        // python3 is a test dependency (the test world's moto needs it).
        let mut holder = holder.expect("python3 runs");
        let mut line = String::new();
        let out = holder.stdout.take().unwrap();
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        let script = lock_script_for(&lock.display().to_string(), 2);
        let held = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(held.status.code(), Some(3), "{held:?}");
        assert!(
            String::from_utf8_lossy(&held.stdout).contains("a dpkg/apt lock is held"),
            "{held:?}"
        );
        let free = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(free.status.code(), Some(0), "{free:?}");
    }
}
