//! Remote commands: stdout and stderr delivered line by line as they arrive, and an
//! [`ExitOutcome`] that tells an exit status, an exit signal and a lost connection apart.

use std::sync::atomic::AtomicBool;

use super::conn::Conn;
use super::error::{Libssh2Code, SshError};
use super::pump::{io_to_ssh, Step, Stop};
use super::session::Session;

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal (name without `SIG`, e.g. `TERM`).
    Signaled(String),
    /// The connection dropped before it reported an end (reboot, sshd killed, network loss).
    Disconnected,
}

impl ExitOutcome {
    pub fn success(&self) -> bool {
        *self == ExitOutcome::Exited(0)
    }
}

impl std::fmt::Display for ExitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitOutcome::Exited(code) => write!(f, "exit status {code}"),
            ExitOutcome::Signaled(sig) => write!(f, "killed by signal {sig}"),
            ExitOutcome::Disconnected => f.write_str("connection lost before the command ended"),
        }
    }
}

/// Options of one command.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Request a PTY (`None`: the session's `ssh_pty` default). With a PTY, stderr arrives merged
    /// into stdout.
    pub pty: Option<bool>,
    /// Variables exported for the command (names must be shell identifiers; values are quoted).
    pub env: Vec<(String, String)>,
}

/// The longest line delivered whole; longer lines arrive in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// Splits a byte stream into lines (without `\n` or a trailing `\r`), decoding UTF-8 lossily.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` for every complete line.
    pub fn feed(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&str)) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..pos]);
            self.emit_pending(emit);
            rest = &rest[pos + 1..];
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() >= MAX_LINE {
            let tail = self.pending.split_off(MAX_LINE);
            let head = std::mem::replace(&mut self.pending, tail);
            emit(&String::from_utf8_lossy(&head));
        }
    }

    /// Delivers a last line without a newline, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            self.emit_pending(emit);
        }
    }

    fn emit_pending(&mut self, emit: &mut dyn FnMut(&str)) {
        if self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        emit(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
    }
}

/// `'value'` for a POSIX shell: single quotes, each `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The command line with `env` exported first; `None` if a name is not a shell identifier.
pub fn command_with_env(command: &str, env: &[(String, String)]) -> Option<String> {
    if env.is_empty() {
        return Some(command.to_string());
    }
    let mut s = String::from("export");
    for (name, value) in env {
        if !is_shell_name(name) {
            return None;
        }
        s.push(' ');
        s.push_str(name);
        s.push('=');
        s.push_str(&shell_quote(value));
    }
    s.push_str("; ");
    s.push_str(command);
    Some(s)
}

impl Session {
    /// Runs `command` (through the login shell, as `ssh host command` does) and calls `on_line`
    /// (on the session's thread) with each line of stdout and stderr as it arrives. Returns how
    /// it ended; a lost connection is `Ok(ExitOutcome::Disconnected)` (and the session is then
    /// closed). Dropping the future stops waiting and closes the channel.
    pub async fn exec(
        &self,
        command: &str,
        opts: ExecOptions,
        on_line: impl FnMut(Stream, &str) + Send + 'static,
    ) -> Result<ExitOutcome, SshError> {
        let full =
            command_with_env(command, &opts.env).ok_or_else(|| SshError::InvalidOptions {
                endpoint: self.endpoint().clone(),
                message: "an environment variable name is not a shell identifier".into(),
            })?;
        let pty = opts.pty.unwrap_or(self.pty_default());
        let shown = command.to_string();
        self.call(move |conn, abandon| exec_on(conn, abandon, &full, &shown, pty, on_line))
            .await
    }

    /// Runs `command` and collects its output: `(outcome, stdout, stderr)`.
    pub async fn exec_collect(
        &self,
        command: &str,
        opts: ExecOptions,
    ) -> Result<(ExitOutcome, String, String), SshError> {
        let out = std::sync::Arc::new(std::sync::Mutex::new((String::new(), String::new())));
        let sink = out.clone();
        let outcome = self
            .exec(command, opts, move |stream, line| {
                if let Ok(mut o) = sink.lock() {
                    let buf = match stream {
                        Stream::Stdout => &mut o.0,
                        Stream::Stderr => &mut o.1,
                    };
                    buf.push_str(line);
                    buf.push('\n');
                }
            })
            .await?;
        let (stdout, stderr) = match out.lock() {
            Ok(o) => o.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Ok((outcome, stdout, stderr))
    }
}

/// Opens a session channel and starts `command` on it.
pub(crate) fn start_command(
    conn: &mut Conn,
    abandon: &AtomicBool,
    command: &str,
    shown: &str,
    pty: bool,
) -> Result<ssh2::Channel, SshError> {
    let sess = conn.sess.clone();
    let mut channel = match conn.complete(abandon, || sess.channel_session()) {
        Ok(c) => c,
        Err(stop) => {
            conn.note(&stop);
            return Err(stop_error(conn, stop, "opening a channel", |c, m| {
                SshError::OpenChannel {
                    endpoint: conn.endpoint.clone(),
                    code: Libssh2Code(c),
                    message: m,
                }
            }));
        }
    };
    let mut started = Ok(());
    if pty {
        started = conn.complete(abandon, || channel.request_pty("xterm", None, None));
    }
    if started.is_ok() {
        started = conn.complete(abandon, || channel.exec(command));
    }
    if let Err(stop) = started {
        conn.note(&stop);
        let err = stop_error(conn, stop, "starting a command", |c, m| {
            SshError::StartCommand {
                endpoint: conn.endpoint.clone(),
                command: shown.to_string(),
                code: Libssh2Code(c),
                message: m,
            }
        });
        conn.release(channel);
        return Err(err);
    }
    Ok(channel)
}

/// The error for a [`Stop`]: cancelled, session lost, or `make(code, message)`.
pub(crate) fn stop_error(
    conn: &Conn,
    stop: Stop,
    operation: &'static str,
    make: impl FnOnce(i32, String) -> SshError,
) -> SshError {
    match stop {
        Stop::Abandoned => SshError::Cancelled {
            endpoint: conn.endpoint.clone(),
            operation,
        },
        Stop::Stalled => make(
            super::reason::code::TIMEOUT,
            format!("no answer within {:?} (io timeout)", conn.io_timeout),
        ),
        ref s @ Stop::Ssh(ref e) => {
            if s.is_transport_loss() {
                SshError::SessionClosed {
                    endpoint: conn.endpoint.clone(),
                    reason: Some(s.to_string()),
                }
            } else {
                make(s.code().unwrap_or(0), e.message().to_string())
            }
        }
    }
}

fn exec_on(
    conn: &mut Conn,
    abandon: &AtomicBool,
    command: &str,
    shown: &str,
    pty: bool,
    mut on_line: impl FnMut(Stream, &str),
) -> Result<ExitOutcome, SshError> {
    let mut channel = start_command(conn, abandon, command, shown, pty)?;
    let mut out = LineSplitter::default();
    let mut err = LineSplitter::default();
    let result = pump_output(
        conn,
        abandon,
        &mut channel,
        &mut out,
        &mut err,
        &mut on_line,
    );
    out.finish(&mut |l| on_line(Stream::Stdout, l));
    err.finish(&mut |l| on_line(Stream::Stderr, l));
    let outcome = match result {
        Ok(()) => finish(conn, abandon, &mut channel),
        Err(stop) => Err(stop),
    };
    let outcome = match outcome {
        Ok(o) => Ok(o),
        Err(stop) if stop.is_transport_loss() => {
            conn.note(&stop);
            tracing::debug!(endpoint = %conn.endpoint, %stop, command = shown, "connection lost during command");
            Ok(ExitOutcome::Disconnected)
        }
        Err(stop) => Err(stop_error(conn, stop, "running a command", |c, m| {
            SshError::StartCommand {
                endpoint: conn.endpoint.clone(),
                command: shown.to_string(),
                code: Libssh2Code(c),
                message: m,
            }
        })),
    };
    conn.release(channel);
    outcome
}

/// Reads stdout and stderr until the remote end sends EOF, delivering lines as they come.
fn pump_output(
    conn: &mut Conn,
    abandon: &AtomicBool,
    channel: &mut ssh2::Channel,
    out: &mut LineSplitter,
    err: &mut LineSplitter,
    on_line: &mut impl FnMut(Stream, &str),
) -> Result<(), Stop> {
    let mut buf = vec![0u8; 32 * 1024];
    let sess = conn.sess.clone();
    // Waiting for output has no deadline (a command may be silent for long); a dead peer is
    // detected by keep-alives and TCP_USER_TIMEOUT.
    let far = || std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
    loop {
        let mut progress = false;
        let mut stdout = channel.stream(0);
        if let Step::Done(n) = conn.drive(abandon, far(), || {
            std::io::Read::read(&mut stdout, &mut buf).map_err(|e| io_to_ssh(&sess, e))
        })? {
            if n > 0 {
                out.feed(&buf[..n], &mut |l| on_line(Stream::Stdout, l));
                progress = true;
            }
        }
        let mut stderr = channel.stderr();
        if let Step::Done(n) = conn.drive(abandon, far(), || {
            std::io::Read::read(&mut stderr, &mut buf).map_err(|e| io_to_ssh(&sess, e))
        })? {
            if n > 0 {
                err.feed(&buf[..n], &mut |l| on_line(Stream::Stderr, l));
                progress = true;
            }
        }
        if channel.eof() {
            return Ok(());
        }
        if !progress {
            conn.wait_channel(abandon, channel, false)?;
        }
    }
}

/// After EOF: waits for the channel to close and reads how the command ended.
pub(crate) fn finish(
    conn: &mut Conn,
    abandon: &AtomicBool,
    channel: &mut ssh2::Channel,
) -> Result<ExitOutcome, Stop> {
    conn.complete(abandon, || channel.wait_close())?;
    if let Ok(signal) = channel.exit_signal() {
        if let Some(name) = signal.exit_signal {
            return Ok(ExitOutcome::Signaled(name));
        }
    }
    let status = channel.exit_status().map_err(Stop::Ssh)?;
    Ok(ExitOutcome::Exited(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l| lines.push(l.to_string()));
        }
        s.finish(&mut |l| lines.push(l.to_string()));
        lines
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        assert_eq!(
            split(&[b"a\nb", b"c\r\n", b"\n", b"last"]),
            vec!["a", "bc", "", "last"]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(split(&[b"caf\xc3\xa9 \xff\n"]), vec!["café \u{fffd}"]);
    }

    #[test]
    fn utf8_split_between_chunks_survives() {
        assert_eq!(split(&[b"caf\xc3", b"\xa9\n"]), vec!["café"]);
    }

    #[test]
    fn very_long_lines_arrive_in_pieces() {
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = split(&[&long, b"\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1].len(), 10);
    }

    #[test]
    fn quoting_and_env() {
        assert_eq!(shell_quote("it's $HOME"), r#"'it'\''s $HOME'"#);
        assert_eq!(
            command_with_env("echo $A", &[("A".into(), "x y".into())]).as_deref(),
            Some("export A='x y'; echo $A")
        );
        assert_eq!(command_with_env("true", &[("1A".into(), "x".into())]), None);
        assert_eq!(command_with_env("true", &[]).as_deref(), Some("true"));
    }
}
