//! Non-blocking libssh2 I/O on the thread that owns a session.
//!
//! The rule that keeps a non-blocking libssh2 session sound: when a call returns EAGAIN while a
//! packet is half sent (`block_directions` has OUTBOUND), the *same* call must be repeated until
//! it completes; any other call that sends (a read on another stream sending a window adjust, a
//! keep-alive) would finish that packet on its behalf and the repeated call would then send it a
//! second time. [`drive`] repeats the call itself in that case and only hands control back
//! ([`Step::Idle`]) when nothing is pending outbound, so callers may then try other streams or
//! wait for input.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, ErrorCode};

use super::reason::code;

/// The longest a wait sleeps before looking at cancellation again.
pub const SLICE: Duration = Duration::from_millis(100);

/// Why a driven call stopped without a result.
#[derive(Debug)]
pub enum Stop {
    /// The caller gave up (future dropped, cancelled).
    Abandoned,
    /// No progress within the I/O timeout.
    Stalled,
    /// libssh2 failed (code and message).
    Ssh(ssh2::Error),
}

impl Stop {
    /// The libssh2 code, if any.
    pub fn code(&self) -> Option<i32> {
        match self {
            Stop::Ssh(e) => match e.code() {
                ErrorCode::Session(c) => Some(c),
                ErrorCode::SFTP(_) => None,
            },
            _ => None,
        }
    }

    /// True when the connection itself is gone.
    pub fn is_transport_loss(&self) -> bool {
        self.code().is_some_and(code::is_transport_loss)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Abandoned => f.write_str("cancelled"),
            Stop::Stalled => f.write_str("no progress within the I/O timeout"),
            Stop::Ssh(e) => {
                let c = self.code().unwrap_or(0);
                write!(f, "libssh2 {} {c}: {}", code::name(c), e.message())
            }
        }
    }
}

/// Result of one attempt at a call.
#[derive(Debug)]
pub enum Step<T> {
    Done(T),
    /// It would block waiting for input; nothing is pending outbound.
    Idle,
}

pub fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(code::EAGAIN)
}

/// Turns the `io::Error` of a channel read or write back into the libssh2 error (its code is lost
/// in the conversion ssh2 does; the session still knows it).
pub fn io_to_ssh(sess: &ssh2::Session, e: io::Error) -> ssh2::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        return ssh2::Error::new(ErrorCode::Session(code::EAGAIN), "would block");
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return ssh2::Error::new(ErrorCode::Session(code::TIMEOUT), "timed out");
    }
    match ssh2::Error::last_session_error(sess) {
        Some(err) if !is_eagain(&err) => err,
        _ => ssh2::Error::new(
            ErrorCode::Session(code::SOCKET_RECV),
            "connection lost (no libssh2 error recorded)",
        ),
    }
}

pub fn outbound_pending(sess: &ssh2::Session) -> bool {
    matches!(
        sess.block_directions(),
        BlockDirections::Outbound | BlockDirections::Both
    )
}

/// `poll(2)` on one descriptor; returns the revents (0 on timeout or EINTR).
pub fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc > 0 {
        pfd.revents
    } else {
        0
    }
}

/// `poll(2)` on several descriptors; returns their revents.
pub fn poll_fds(fds: &[(RawFd, libc::c_short)], timeout: Duration) -> Vec<libc::c_short> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: a valid array of pollfd of the given length for the duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc > 0 {
        pfds.iter().map(|p| p.revents).collect()
    } else {
        vec![0; fds.len()]
    }
}

/// Runs `f` once; while it returns EAGAIN with a half-sent packet, waits for the socket to be
/// writable and repeats it (bounded by `deadline` and `stop`).
pub fn drive<T>(
    sess: &ssh2::Session,
    fd: RawFd,
    stop: &dyn Fn() -> bool,
    deadline: Instant,
    mut f: impl FnMut() -> Result<T, ssh2::Error>,
) -> Result<Step<T>, Stop> {
    loop {
        match f() {
            Ok(v) => return Ok(Step::Done(v)),
            Err(e) if is_eagain(&e) => {
                if !outbound_pending(sess) {
                    return Ok(Step::Idle);
                }
                if stop() {
                    return Err(Stop::Abandoned);
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Stalled);
                }
                poll_fd(fd, libc::POLLOUT, SLICE);
            }
            Err(e) => return Err(Stop::Ssh(e)),
        }
    }
}
