//! The build's SSH session: connected once before the first provisioner (with a status line
//! whenever the reason for waiting changes), reconnected with the same options when it was lost
//! (after a reboot), and the plumbing that brings lines from the session's thread (command
//! output, connect events, transfer progress) to the [`Output`] while an operation runs.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::Output;
use crate::cancel::{self, Canceller};
use crate::communicator::ssh::{ConnectEvent, ConnectOptions, Session, SshError, WaitReason};
use crate::duration::go as format_duration;
use crate::ui::Status;

/// A line on its way to the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A status line (`==> build: ...`).
    Say(String),
    /// A line of a command's stdout (`    build: ...`).
    Out(String),
    /// A line of a command's stderr.
    Err(String),
}

/// Prints one line with the build's prefix.
pub fn print_line(out: &dyn Output, build: &str, line: &Line) {
    match line {
        Line::Say(t) => out.say(&format!("==> {build}: {t}")),
        Line::Out(t) => out.message(&format!("    {build}: {t}")),
        Line::Err(t) => out.error(&format!("    {build}: {t}")),
    }
}

/// A sender of lines that can be moved to another thread.
pub type Lines = UnboundedSender<Line>;

/// Runs `fut` while printing the lines that arrive on `rx` as they come; prints what is left
/// once it is done. `seen` is called with each line (e.g. to keep the tail of stderr).
pub async fn with_lines<T>(
    out: &dyn Output,
    build: &str,
    rx: &mut UnboundedReceiver<Line>,
    mut seen: impl FnMut(&Line),
    fut: impl Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    let result = loop {
        tokio::select! {
            biased;
            Some(line) = rx.recv() => {
                seen(&line);
                print_line(out, build, &line);
            }
            r = &mut fut => break r,
        }
    };
    while let Ok(line) = rx.try_recv() {
        seen(&line);
        print_line(out, build, &line);
    }
    result
}

/// The key of a wait reason for "did it change?" (durations inside a reason do not count).
fn reason_key(r: &WaitReason) -> String {
    match r {
        WaitReason::TcpTimeout { addr, .. } => format!("tcp-timeout {addr}"),
        WaitReason::Bastion(inner) => format!("bastion {}", reason_key(inner)),
        other => other.to_string(),
    }
}

/// How often an unchanged reason is repeated while the wait goes on.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Turns connect events into status lines: one when the reason changes, a reminder when the
/// same reason lasts, and the connected line.
pub fn connect_reporter(tx: Lines) -> impl Fn(&ConnectEvent) + Send + Sync + 'static {
    connect_reporter_with(tx, None)
}

/// As [`connect_reporter`], also showing the current reason on the wait's spinner.
pub fn connect_reporter_with(
    tx: Lines,
    status: Option<Status>,
) -> impl Fn(&ConnectEvent) + Send + Sync + 'static {
    let last: Mutex<Option<(String, Instant)>> = Mutex::new(None);
    move |ev: &ConnectEvent| match ev {
        ConnectEvent::Attempt { attempt, .. } => {
            if let Some(s) = &status {
                if *attempt == 1 {
                    s.set_message("waiting for SSH: connecting");
                }
            }
        }
        ConnectEvent::Waiting {
            attempt,
            reason,
            elapsed,
            ..
        } => {
            if let Some(s) = &status {
                s.set_message(&format!("waiting for SSH (attempt {attempt}): {reason}"));
            }
            let key = reason_key(reason);
            let mut last = match last.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            let due = match &*last {
                Some((k, at)) => *k != key || at.elapsed() >= REMIND_EVERY,
                None => true,
            };
            if due {
                *last = Some((key, Instant::now()));
                let _ = tx.send(Line::Say(format!(
                    "Still waiting for SSH after {} (attempt {attempt}): {reason}; check: {}",
                    format_duration(Duration::from_secs(elapsed.as_secs())),
                    reason.hint()
                )));
            }
        }
        ConnectEvent::Connected { attempts, elapsed } => {
            let _ = tx.send(Line::Say(format!(
                "Connected to SSH! ({:.1}s, {attempts} attempt{})",
                elapsed.as_secs_f64(),
                if *attempts == 1 { "" } else { "s" }
            )));
        }
    }
}

/// The build's SSH session.
pub struct Remote {
    build: String,
    opts: Option<ConnectOptions>,
    session: Option<Arc<Session>>,
    /// The connection was lost (and not yet replaced).
    lost: bool,
    token: Canceller,
}

impl Remote {
    pub fn new(build: &str) -> Remote {
        Remote {
            build: build.to_string(),
            opts: None,
            session: None,
            lost: false,
            token: cancel::channel().0,
        }
    }

    pub fn set_options(&mut self, opts: ConnectOptions) {
        self.opts = Some(opts);
    }

    /// True when the build has an SSH communicator.
    pub fn enabled(&self) -> bool {
        self.opts.is_some()
    }

    /// Stops a wait for SSH in progress.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// The first connection (bounded by `ssh_timeout`).
    pub async fn connect_first(&mut self, out: &dyn Output) -> Result<(), SshError> {
        out.say(&format!(
            "==> {}: Waiting for SSH to become available...",
            self.build
        ));
        self.connect(out, None).await.map(|_| ())
    }

    async fn connect(
        &mut self,
        out: &dyn Output,
        deadline: Option<Instant>,
    ) -> Result<Arc<Session>, SshError> {
        let Some(mut opts) = self.opts.clone() else {
            return Err(SshError::InvalidOptions {
                endpoint: crate::communicator::ssh::Endpoint {
                    user: String::new(),
                    host: String::new(),
                    port: 0,
                },
                message: "this build has no SSH communicator".into(),
            });
        };
        if let Some(d) = deadline {
            opts.timeout = opts
                .timeout
                .min(d.saturating_duration_since(Instant::now()))
                .max(Duration::from_secs(1));
            // Only the first connection waits before connecting.
            opts.pause_before_connecting = Duration::ZERO;
        }
        let (tx, mut rx) = unbounded_channel();
        let spinner = out.spinner(&self.build, "waiting for SSH");
        let report = connect_reporter_with(tx, spinner.is_live().then(|| spinner.status()));
        let connecting = Session::connect(opts, self.token.subscribe(), report);
        let session = with_lines(out, &self.build, &mut rx, |_| {}, connecting).await;
        drop(spinner);
        let session = session?;
        let session = Arc::new(session);
        self.session = Some(session.clone());
        Ok(session)
    }

    /// A live session: the current one, or a new connection when it was lost (bounded by
    /// `deadline` when given, else by `ssh_timeout`).
    pub async fn session(
        &mut self,
        out: &dyn Output,
        deadline: Option<Instant>,
    ) -> Result<Arc<Session>, SshError> {
        if let Some(s) = &self.session {
            if s.is_alive().await {
                return Ok(s.clone());
            }
            self.session = None;
            self.lost = true;
        }
        if std::mem::take(&mut self.lost) {
            out.say(&format!(
                "==> {}: The SSH connection was lost; reconnecting...",
                self.build
            ));
        }
        self.connect(out, deadline).await
    }

    /// Forgets the session (after a disconnect): the next [`Remote::session`] reconnects.
    pub fn drop_session(&mut self) {
        if self.session.take().is_some() {
            self.lost = true;
        }
    }
}

/// True for an SSH error after which trying again (after reconnecting) may work: the
/// connection is gone or a channel could not be opened or started.
pub fn is_retryable(e: &SshError) -> bool {
    matches!(
        e,
        SshError::SessionClosed { .. }
            | SshError::OpenChannel { .. }
            | SshError::StartCommand { .. }
            | SshError::Upload { .. }
    )
}

/// A progress reporter for transfers: a line every `every` at most, saying bytes done (and of
/// how many), sent through `tx`.
pub fn progress_reporter(
    tx: Lines,
    what: String,
    every: Duration,
) -> crate::communicator::ssh::ProgressFn {
    progress_reporter_with(tx, what, every, None)
}

/// As [`progress_reporter`]; with a live progress bar, the bar shows the bytes instead of the
/// lines.
pub fn progress_reporter_with(
    tx: Lines,
    what: String,
    every: Duration,
    bar: Option<Status>,
) -> crate::communicator::ssh::ProgressFn {
    let started = Instant::now();
    let last = Mutex::new(Instant::now());
    Arc::new(move |p: crate::communicator::ssh::TransferProgress| {
        if let Some(b) = &bar {
            b.set_bytes(p.bytes, p.total);
            return;
        }
        let mut last = match last.lock() {
            Ok(l) => l,
            Err(e) => e.into_inner(),
        };
        if last.elapsed() < every {
            return;
        }
        *last = Instant::now();
        let _ = tx.send(Line::Say(progress_line(
            &what,
            p.bytes,
            p.total,
            started.elapsed(),
        )));
    })
}

/// `what: 12.0 MiB of 200.0 MiB (6%), 55.1 MiB/s`
pub fn progress_line(what: &str, bytes: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = if elapsed.as_secs_f64() > 0.0 {
        format!(
            ", {}/s",
            human_bytes((bytes as f64 / elapsed.as_secs_f64()) as u64)
        )
    } else {
        String::new()
    };
    match total {
        Some(t) if t > 0 => format!(
            "{what}: {} of {} ({}%){rate}",
            human_bytes(bytes),
            human_bytes(t),
            bytes.saturating_mul(100) / t
        ),
        _ => format!("{what}: {}{rate}", human_bytes(bytes)),
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `1.2 GiB`
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(200 * 1024 * 1024), "200.0 MiB");
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(
                "big.bin",
                50 * 1024 * 1024,
                Some(200 * 1024 * 1024),
                Duration::from_secs(1)
            ),
            "big.bin: 50.0 MiB of 200.0 MiB (25%), 50.0 MiB/s"
        );
        assert_eq!(
            progress_line("tree", 2048, None, Duration::ZERO),
            "tree: 2.0 KiB"
        );
    }

    #[test]
    fn reporter_speaks_when_the_reason_changes_only() {
        let (tx, mut rx) = unbounded_channel();
        let report = connect_reporter(tx);
        let refused = WaitReason::Refused {
            addr: "127.0.0.1:22".into(),
        };
        let waiting = |attempt, reason: &WaitReason| ConnectEvent::Waiting {
            attempt,
            reason: reason.clone(),
            retry_in: Duration::from_millis(200),
            elapsed: Duration::from_secs(attempt as u64),
        };
        report(&waiting(1, &refused));
        report(&waiting(2, &refused));
        let timeout = WaitReason::TcpTimeout {
            addr: "127.0.0.1:22".into(),
            after: Duration::from_secs(10),
        };
        report(&waiting(3, &timeout));
        let timeout2 = WaitReason::TcpTimeout {
            addr: "127.0.0.1:22".into(),
            after: Duration::from_secs(9),
        };
        report(&waiting(4, &timeout2));
        report(&ConnectEvent::Connected {
            attempts: 5,
            elapsed: Duration::from_millis(4200),
        });
        let mut lines = Vec::new();
        while let Ok(Line::Say(l)) = rx.try_recv() {
            lines.push(l);
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].contains("connection refused by 127.0.0.1:22"),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("check: that sshd is running"),
            "{lines:?}"
        );
        assert!(lines[1].contains("timed out"), "{lines:?}");
        assert_eq!(lines[2], "Connected to SSH! (4.2s, 5 attempts)");
    }
}
