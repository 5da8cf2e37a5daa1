//! The bastion hop: a `direct-tcpip` channel on the bastion's session, bridged by a thread of its
//! own to one end of a local socket pair; the target's session runs over the other end (libssh2
//! needs a socket). Nothing listens on a port: no other local process can use the tunnel.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pump::{drive, io_to_ssh, poll_fds, Step, Stop, SLICE};

/// The running bridge; dropping it stops the thread and closes the bastion session.
pub(crate) struct Bridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    pub fn start(
        sess: ssh2::Session,
        sess_fd: RawFd,
        channel: ssh2::Channel,
        sock: UnixStream,
        keepalive: Duration,
    ) -> std::io::Result<Bridge> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        sock.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("ssh bastion bridge".into())
            .spawn(move || {
                if let Err(stop) = run(&sess, sess_fd, channel, &sock, &thread_stop, keepalive) {
                    tracing::debug!(%stop, "bastion bridge ended");
                }
                sess.set_timeout(1_000);
                sess.set_blocking(true);
                let _ = sess.disconnect(None, "imgbuild: tunnel closed", None);
            })?;
        Ok(Bridge {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The thread notices within one poll slice; do not wait for it here (this may run on the
        // session's thread while the tunnel is already gone).
        drop(self.thread.take());
    }
}

fn run(
    sess: &ssh2::Session,
    sess_fd: RawFd,
    mut channel: ssh2::Channel,
    sock: &UnixStream,
    stop: &AtomicBool,
    keepalive: Duration,
) -> Result<(), Stop> {
    sess.set_blocking(false);
    let stopped = || stop.load(Ordering::Relaxed);
    // A bridge waits for data indefinitely; only a dead transport or `stop` end it.
    let far = || Instant::now() + Duration::from_secs(3600);
    let mut to_sock: Vec<u8> = Vec::new();
    let mut to_sock_at = 0usize;
    let mut to_chan: Vec<u8> = Vec::new();
    let mut to_chan_at = 0usize;
    let mut chan_eof = false;
    let mut sock_eof = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_keepalive = Instant::now();
    let mut sock_ref = sock;
    loop {
        if stopped() {
            return Err(Stop::Abandoned);
        }
        let mut progress = false;
        // Local socket -> channel.
        if to_chan_at < to_chan.len() {
            match drive(sess, sess_fd, &stopped, far(), || {
                channel
                    .write(&to_chan[to_chan_at..])
                    .map_err(|e| io_to_ssh(sess, e))
            })? {
                Step::Done(n) => {
                    to_chan_at += n;
                    progress = true;
                }
                Step::Idle => {}
            }
        } else if !sock_eof {
            match sock_ref.read(&mut buf) {
                Ok(0) => sock_eof = true,
                Ok(n) => {
                    to_chan.clear();
                    to_chan.extend_from_slice(&buf[..n]);
                    to_chan_at = 0;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => sock_eof = true,
            }
        }
        if sock_eof && to_chan_at >= to_chan.len() {
            // The target session is gone: nothing more to carry.
            let _ = drive(sess, sess_fd, &stopped, far(), || channel.send_eof());
            return Ok(());
        }
        // Channel -> local socket.
        if to_sock_at < to_sock.len() {
            match sock_ref.write(&to_sock[to_sock_at..]) {
                Ok(n) => {
                    to_sock_at += n;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(()),
            }
        } else if !chan_eof {
            match drive(sess, sess_fd, &stopped, far(), || {
                channel.read(&mut buf).map_err(|e| io_to_ssh(sess, e))
            })? {
                Step::Done(0) => {
                    chan_eof = true;
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                }
                Step::Done(n) => {
                    to_sock.clear();
                    to_sock.extend_from_slice(&buf[..n]);
                    to_sock_at = 0;
                    progress = true;
                }
                Step::Idle => {}
            }
        }
        if chan_eof && to_sock_at >= to_sock.len() && channel.eof() {
            return Ok(());
        }
        if !keepalive.is_zero() && last_keepalive.elapsed() >= keepalive {
            let _ = drive(sess, sess_fd, &stopped, far(), || sess.keepalive_send())?;
            last_keepalive = Instant::now();
        }
        if !progress {
            let mut sock_events: libc::c_short = 0;
            if to_chan_at >= to_chan.len() && !sock_eof {
                sock_events |= libc::POLLIN;
            }
            if to_sock_at < to_sock.len() {
                sock_events |= libc::POLLOUT;
            }
            poll_fds(
                &[(sess_fd, libc::POLLIN), (sock.as_raw_fd(), sock_events)],
                SLICE,
            );
        }
    }
}
