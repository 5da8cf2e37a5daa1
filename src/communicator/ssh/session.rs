//! The async facade: a [`Session`] is a handle to one thread that owns the `ssh2::Session` (and
//! its socket) and runs the jobs sent to it one at a time, sending keep-alives while idle and
//! during long operations. No libssh2 call ever runs on a runtime thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use tokio::sync::oneshot;

use super::conn::Conn;
use super::connect::{connect_blocking, endpoint_of, CancelState, ConnectEvent};
use super::error::{Endpoint, SshError};
use super::options::ConnectOptions;

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

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
