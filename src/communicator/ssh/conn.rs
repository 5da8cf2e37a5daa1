//! The connection as its owning thread sees it: the `ssh2::Session`, its socket, keep-alives
//! and the channels waiting to be freed. Below both `connect` (which makes one) and `session`
//! (whose worker thread runs jobs on it).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::bastion::Bridge;
use super::error::Endpoint;
use super::options::ConnectOptions;
use super::pump::{self, poll_fd, Step, Stop, SLICE};

/// The connection as the owning thread sees it.
pub(crate) struct Conn {
    pub sess: ssh2::Session,
    pub fd: RawFd,
    pub endpoint: Endpoint,
    pub keepalive: Duration,
    pub last_keepalive: Instant,
    pub io_timeout: Duration,
    /// Set once the connection is known to be gone; every later job fails with it.
    pub dead: Option<String>,
    /// Keeps the bastion hop alive as long as this connection.
    /// Channels closed on our side, waiting for the server's close.
    closing: Vec<ssh2::Channel>,
    _bridge: Option<Bridge>,
}

impl Conn {
    pub(crate) fn new(
        sess: ssh2::Session,
        fd: RawFd,
        endpoint: Endpoint,
        opts: &ConnectOptions,
        bridge: Option<Bridge>,
    ) -> Conn {
        Conn {
            sess,
            fd,
            endpoint,
            keepalive: opts.keepalive_interval,
            last_keepalive: Instant::now(),
            io_timeout: opts.io_timeout,
            dead: None,
            closing: Vec::new(),
            _bridge: bridge,
        }
    }

    pub fn deadline(&self) -> Instant {
        Instant::now() + self.io_timeout
    }

    /// One attempt at `f` (see [`pump::drive`]).
    pub fn drive<T>(
        &self,
        abandon: &AtomicBool,
        deadline: Instant,
        f: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<Step<T>, Stop> {
        let stop = || abandon.load(Ordering::Relaxed);
        pump::drive(&self.sess, self.fd, &stop, deadline, f)
    }

    /// `f` until it completes (request/response calls), bounded by the I/O timeout.
    pub fn complete<T>(
        &mut self,
        abandon: &AtomicBool,
        mut f: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, Stop> {
        let deadline = self.deadline();
        loop {
            match self.drive(abandon, deadline, &mut f)? {
                Step::Done(v) => return Ok(v),
                Step::Idle => {
                    if Instant::now() >= deadline {
                        return Err(Stop::Stalled);
                    }
                    self.wait_input(abandon)?;
                }
            }
        }
    }

    /// Like [`Conn::wait_input`], but returns at once when `channel` already has data buffered
    /// in libssh2 (a read of one stream processes every pending packet, so data of the other
    /// stream may be waiting) or, when `writing`, when its send window has reopened (a window
    /// adjust processed by such a read). The socket alone would not tell.
    pub fn wait_channel(
        &mut self,
        abandon: &AtomicBool,
        channel: &ssh2::Channel,
        writing: bool,
    ) -> Result<(), Stop> {
        if abandon.load(Ordering::Relaxed) {
            return Err(Stop::Abandoned);
        }
        if channel.read_window().available > 0 || (writing && channel.write_window().remaining > 0)
        {
            return Ok(());
        }
        self.wait_input(abandon)
    }

    /// Nothing to do until input arrives: sends a keep-alive if due, then waits for the socket
    /// to be readable for at most [`SLICE`]. Only call it when nothing is pending outbound.
    pub fn wait_input(&mut self, abandon: &AtomicBool) -> Result<(), Stop> {
        if abandon.load(Ordering::Relaxed) {
            return Err(Stop::Abandoned);
        }
        self.keepalive_if_due(abandon)?;
        self.reap();
        let mut slice = SLICE;
        if !self.keepalive.is_zero() {
            slice = slice.min(
                self.keepalive
                    .saturating_sub(self.last_keepalive.elapsed())
                    .max(Duration::from_millis(1)),
            );
        }
        poll_fd(self.fd, libc::POLLIN, slice);
        Ok(())
    }

    fn keepalive_if_due(&mut self, abandon: &AtomicBool) -> Result<(), Stop> {
        if self.keepalive.is_zero() || self.last_keepalive.elapsed() < self.keepalive {
            return Ok(());
        }
        let deadline = self.deadline();
        let sess = self.sess.clone();
        match self.drive(abandon, deadline, || sess.keepalive_send()) {
            Ok(_) => {
                self.last_keepalive = Instant::now();
                Ok(())
            }
            Err(stop) if stop.is_transport_loss() => {
                self.dead = Some(format!("keep-alive failed: {stop}"));
                Err(stop)
            }
            Err(Stop::Abandoned) => Err(Stop::Abandoned),
            Err(stop) => {
                tracing::debug!(endpoint = %self.endpoint, %stop, "keep-alive not sent");
                self.last_keepalive = Instant::now();
                Ok(())
            }
        }
    }

    /// Closes and frees a channel without waiting for the server: a channel whose command still
    /// runs (an abandoned exec) is closed on our side and kept until the server closes it too,
    /// then freed (checked at every wait and while idle).
    pub fn release(&mut self, mut channel: ssh2::Channel) {
        if self.dead.is_some() {
            // Nothing can be sent: freeing fails fast and frees.
            drop(channel);
            return;
        }
        let never = AtomicBool::new(false);
        let deadline = self.deadline();
        match self.drive(&never, deadline, || channel.close()) {
            Ok(Step::Idle) => self.closing.push(channel),
            Ok(Step::Done(())) => drop(channel),
            Err(stop) => {
                self.note(&stop);
                drop(channel);
            }
        }
    }

    /// Frees the channels the server has closed since [`Conn::release`].
    fn reap(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let never = AtomicBool::new(false);
        let deadline = self.deadline();
        let mut still = Vec::new();
        for mut channel in std::mem::take(&mut self.closing) {
            match self.drive(&never, deadline, || channel.close()) {
                Ok(Step::Idle) if self.dead.is_none() => still.push(channel),
                Ok(_) => drop(channel),
                Err(stop) => {
                    self.note(&stop);
                    drop(channel);
                }
            }
        }
        self.closing = still;
    }

    /// Records that the connection is gone when `stop` says so.
    pub fn note(&mut self, stop: &Stop) {
        if stop.is_transport_loss() && self.dead.is_none() {
            self.dead = Some(stop.to_string());
        }
    }

    /// Idle: keep-alive if due.
    pub(super) fn idle(&mut self) {
        if self.dead.is_some() {
            return;
        }
        let never = AtomicBool::new(false);
        let _ = self.keepalive_if_due(&never);
        self.reap();
    }

    /// Says goodbye (bounded) when the handle is dropped.
    pub(super) fn shutdown(&mut self) {
        if self.dead.is_none() {
            self.sess.set_timeout(1_000);
            self.sess.set_blocking(true);
            let _ = self.sess.disconnect(None, "imgbuild: session closed", None);
        }
    }
}
