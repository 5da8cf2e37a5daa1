//! The async facade: a [`Session`] is a handle to one thread that owns the `ssh2::Session` (and
//! its socket) and runs the jobs sent to it one at a time, sending keep-alives while idle and
//! during long operations. No libssh2 call ever runs on a runtime thread.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use tokio::sync::oneshot;

use super::bastion::Bridge;
use super::connect::{connect_blocking, endpoint_of, CancelState, ConnectEvent};
use super::error::{Endpoint, SshError};
use super::options::ConnectOptions;
use super::pump::{self, poll_fd, Step, Stop, SLICE};

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

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
    fn idle(&mut self) {
        if self.dead.is_some() {
            return;
        }
        let never = AtomicBool::new(false);
        let _ = self.keepalive_if_due(&never);
        self.reap();
    }

    /// Says goodbye (bounded) when the handle is dropped.
    fn shutdown(&mut self) {
        if self.dead.is_none() {
            self.sess.set_timeout(1_000);
            self.sess.set_blocking(true);
            let _ = self.sess.disconnect(None, "imgbuild: session closed", None);
        }
    }
}

/// An SSH session: cheap to share behind an `Arc`; operations on it run one at a time on its own
/// thread. Dropping the last handle closes the connection.
pub struct Session {
    endpoint: Endpoint,
    pty: bool,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Sets the abandon flag when the future awaiting a job is dropped before it finished.
struct AbandonOnDrop(Arc<AtomicBool>, bool);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Cancels the connecting thread when the `connect` future goes away; harmless once connected.
struct CancelOnDrop(Arc<CancelState>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Session {
    /// Waits for SSH (see [`ConnectOptions`]) and logs in. `on_event` is called (from the
    /// connecting thread) at each attempt and with each reason for waiting. `cancel` stops the
    /// wait at once (the call returns [`SshError::ConnectCancelled`]).
    pub async fn connect(
        opts: ConnectOptions,
        cancel: Cancel,
        on_event: impl Fn(&ConnectEvent) + Send + Sync + 'static,
    ) -> Result<Session, SshError> {
        let endpoint = endpoint_of(&opts);
        let pty = opts.pty;
        let state = Arc::new(CancelState::default());
        let (result_tx, result_rx) = oneshot::channel::<Result<(), SshError>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread_state = state.clone();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name(format!("ssh {}:{}", opts.host, opts.port))
            .spawn(move || {
                let on_event: &(dyn Fn(&ConnectEvent) + Send + Sync) = &on_event;
                match connect_blocking(&opts, &thread_state, on_event) {
                    Ok(conn) => {
                        if result_tx.send(Ok(())).is_ok() {
                            run_worker(conn, jobs_rx);
                        } else {
                            let mut conn = conn;
                            conn.shutdown();
                        }
                    }
                    Err(e) => {
                        let _ = result_tx.send(Err(e));
                    }
                }
            });
        if let Err(source) = spawned {
            return Err(SshError::SpawnWorker { endpoint, source });
        }
        // If this future is dropped (not cancelled through the token), stop the thread too.
        let _stop_on_drop = CancelOnDrop(state.clone());
        tokio::select! {
            result = result_rx => match result {
                Ok(Ok(())) => Ok(Session { endpoint, pty, jobs: jobs_tx }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(SshError::SessionClosed {
                    endpoint,
                    reason: Some("the connecting thread ended without a result".into()),
                }),
            },
            _ = cancel.cancelled() => {
                state.cancel();
                Err(SshError::ConnectCancelled { endpoint, waited: started.elapsed() })
            }
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The session's default for a PTY (`ssh_pty`).
    pub fn pty_default(&self) -> bool {
        self.pty
    }

    /// Runs `f` on the session's thread. If the returned future is dropped before the job ends,
    /// the job sees its abandon flag and stops at its next wait (within ~100 ms).
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn, &AtomicBool) -> Result<T, SshError> + Send + 'static,
    ) -> Result<T, SshError> {
        let abandon = Arc::new(AtomicBool::new(false));
        let mut guard = AbandonOnDrop(abandon.clone(), true);
        let (tx, rx) = oneshot::channel();
        let endpoint = self.endpoint.clone();
        let job: Job = Box::new(move |conn: &mut Conn| {
            let result = match &conn.dead {
                Some(reason) => Err(SshError::SessionClosed {
                    endpoint: conn.endpoint.clone(),
                    reason: Some(reason.clone()),
                }),
                None => f(conn, &abandon),
            };
            let _ = tx.send(result);
        });
        let closed = || SshError::SessionClosed {
            endpoint: endpoint.clone(),
            reason: Some("the session's thread has ended".into()),
        };
        self.jobs.send(job).map_err(|_| closed())?;
        let result = rx.await.map_err(|_| closed());
        guard.1 = false;
        result?
    }

    /// True until the connection is known to be gone.
    pub async fn is_alive(&self) -> bool {
        self.call(|conn, _| Ok(conn.dead.is_none()))
            .await
            .unwrap_or(false)
    }
}

fn run_worker(mut conn: Conn, jobs: mpsc::Receiver<Job>) {
    loop {
        let wait = if conn.keepalive.is_zero() {
            Duration::from_secs(1)
        } else {
            conn.keepalive.min(Duration::from_secs(1))
        };
        match jobs.recv_timeout(wait) {
            Ok(job) => job(&mut conn),
            Err(mpsc::RecvTimeoutError::Timeout) => conn.idle(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    conn.shutdown();
}
