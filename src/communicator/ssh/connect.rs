//! Waiting for SSH: the bounded connect-with-retry loop (runs on the session's own thread, never on
//! a runtime thread), one attempt (TCP, handshake, authentication, optionally through a bastion),
//! and the events that say why it is still waiting.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use zeroize::Zeroizing;

use super::bastion::Bridge;
use super::conn::Conn;
use super::error::{Endpoint, SshError};
use super::hostkey::HostKeyFingerprint;
use super::options::{private_key_type, Auth, BastionOptions, ConnectOptions, DEFAULT_CIPHERS};
use super::pump::SLICE;
use super::reason::{
    classify_auth, classify_handshake, classify_tcp, code, AuthFailure, AuthMethod, WaitReason,
};

/// What the wait for SSH reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectEvent {
    /// Attempt `attempt` (1-based) starts.
    Attempt { attempt: u32, elapsed: Duration },
    /// Attempt `attempt` failed for `reason`; the next one starts in `retry_in`.
    Waiting {
        attempt: u32,
        reason: WaitReason,
        retry_in: Duration,
        elapsed: Duration,
    },
    /// Logged in.
    Connected { attempts: u32, elapsed: Duration },
}

/// Cancellation shared between the async caller and the connecting thread: setting it also shuts
/// down the sockets of the attempt in progress, so a blocked handshake returns at once.
#[derive(Default)]
pub(crate) struct CancelState {
    cancelled: AtomicBool,
    sockets: Mutex<Vec<OwnedFd>>,
}

impl CancelState {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let sockets = match self.sockets.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for fd in sockets {
            // SAFETY: shutdown on a descriptor we own (a dup of the attempt's socket).
            unsafe {
                libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Registers a dup of an attempt's socket; shuts it down at once if already cancelled.
    fn register(&self, fd: OwnedFd) {
        if let Ok(mut s) = self.sockets.lock() {
            s.push(fd);
        }
        if self.is_cancelled() {
            self.cancel();
        }
    }

    fn clear(&self) {
        if let Ok(mut s) = self.sockets.lock() {
            s.clear();
        }
    }

    /// Sleeps `d` in slices, returning early (false) when cancelled.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

pub(crate) enum AttemptError {
    Retry(WaitReason),
    Fatal(SshError),
    Cancelled,
}

pub(crate) fn endpoint_of(opts: &ConnectOptions) -> Endpoint {
    Endpoint {
        user: opts.username.clone(),
        host: opts.host.clone(),
        port: opts.port,
    }
}

/// Waits for SSH until `opts.timeout`: attempts with the retry schedule, counting authentication
/// rejections against `opts.handshake_attempts`, reporting each reason through `on_event`.
pub(crate) fn connect_blocking(
    opts: &ConnectOptions,
    cancel: &CancelState,
    on_event: &(dyn Fn(&ConnectEvent) + Send + Sync),
) -> Result<Conn, SshError> {
    let endpoint = endpoint_of(opts);
    let cancelled = |start: Instant| SshError::ConnectCancelled {
        endpoint: endpoint.clone(),
        waited: start.elapsed(),
    };
    let pause_start = Instant::now();
    if !opts.pause_before_connecting.is_zero() && !cancel.sleep(opts.pause_before_connecting) {
        return Err(cancelled(pause_start));
    }
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut backoff = opts.retry.iter();
    let mut attempts = 0u32;
    let mut auth_failures = 0u32;
    let mut last_reason: Option<WaitReason> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled(start));
        }
        attempts += 1;
        on_event(&ConnectEvent::Attempt {
            attempt: attempts,
            elapsed: start.elapsed(),
        });
        let result = attempt(opts, &endpoint, cancel, deadline);
        cancel.clear();
        let reason = match result {
            Ok(conn) => {
                on_event(&ConnectEvent::Connected {
                    attempts,
                    elapsed: start.elapsed(),
                });
                return Ok(conn);
            }
            Err(AttemptError::Cancelled) => return Err(cancelled(start)),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(_)) if cancel.is_cancelled() => {
                return Err(cancelled(start));
            }
            Err(AttemptError::Retry(reason)) => reason,
        };
        tracing::debug!(%endpoint, attempt = attempts, %reason, "SSH not ready");
        if reason.is_auth() {
            auth_failures += 1;
            if auth_failures >= opts.handshake_attempts.max(1) {
                return Err(SshError::Authenticate {
                    endpoint,
                    failures: auth_failures,
                    reason: Box::new(reason),
                });
            }
        }
        let delay = backoff.next().unwrap_or(opts.retry.max);
        let now = Instant::now();
        if now >= deadline || now + delay >= deadline {
            // An attempt cut short by the deadline says less than the one before it.
            let cut_short = now >= deadline && reason.is_io_timeout();
            let last_reason = match (cut_short, last_reason) {
                (true, Some(previous)) => previous,
                _ => reason,
            };
            return Err(SshError::ConnectTimedOut {
                endpoint,
                waited: start.elapsed(),
                attempts,
                last_reason: Box::new(last_reason),
            });
        }
        on_event(&ConnectEvent::Waiting {
            attempt: attempts,
            reason: reason.clone(),
            retry_in: delay,
            elapsed: start.elapsed(),
        });
        last_reason = Some(reason);
        if !cancel.sleep(delay) {
            return Err(cancelled(start));
        }
    }
}

/// One attempt: TCP (directly or through the bastion), handshake, authentication.
fn attempt(
    opts: &ConnectOptions,
    endpoint: &Endpoint,
    cancel: &CancelState,
    deadline: Instant,
) -> Result<Conn, AttemptError> {
    let io_timeout = opts.io_timeout.min(remaining(deadline)).max(SLICE);
    let user_timeout = tcp_user_timeout(opts);
    let (sess, fd, bridge) = match &opts.bastion {
        None => {
            let tcp = tcp_connect(
                &opts.host,
                opts.port,
                cancel,
                deadline,
                opts.tcp_connect_timeout,
                user_timeout,
            )?;
            let (sess, fd) = login_over(tcp, endpoint, io_timeout, cancel, opts)?;
            (sess, fd, None)
        }
        Some(b) => {
            let (sess, fd, bridge) = via_bastion(
                b,
                opts,
                endpoint,
                cancel,
                deadline,
                io_timeout,
                user_timeout,
            )?;
            (sess, fd, Some(bridge))
        }
    };
    configure_keepalive(&sess, opts.keepalive_interval);
    sess.set_timeout(millis(opts.io_timeout));
    sess.set_blocking(false);
    Ok(Conn::new(sess, fd, endpoint.clone(), opts, bridge))
}

/// The session of an attempt through the bastion: TCP to the bastion, its handshake and login,
/// a forwarded channel to the target bridged to a local socket, and the target's handshake and
/// login over that socket. The bridge keeps the hop alive as long as the session.
fn via_bastion(
    b: &BastionOptions,
    opts: &ConnectOptions,
    endpoint: &Endpoint,
    cancel: &CancelState,
    deadline: Instant,
    io_timeout: Duration,
    user_timeout: Duration,
) -> Result<(ssh2::Session, RawFd, Bridge), AttemptError> {
    let in_bastion = |e: AttemptError| match e {
        AttemptError::Retry(r) => AttemptError::Retry(WaitReason::Bastion(Box::new(r))),
        other => other,
    };
    let bastion_endpoint = Endpoint {
        user: b.username.clone(),
        host: b.host.clone(),
        port: b.port,
    };
    let tcp = tcp_connect(
        &b.host,
        b.port,
        cancel,
        deadline,
        opts.tcp_connect_timeout,
        user_timeout,
    )
    .map_err(in_bastion)?;
    let bastion_fd = tcp.as_raw_fd();
    if let Ok(dup) = tcp.try_clone() {
        cancel.register(OwnedFd::from(dup));
    }
    let bastion = establish(
        tcp,
        &b.username,
        &b.auth,
        &bastion_endpoint,
        io_timeout,
        cancel,
        opts,
        None,
    )
    .map_err(in_bastion)?;
    configure_keepalive(&bastion, opts.keepalive_interval);
    let channel = bastion
        .channel_direct_tcpip(&opts.host, opts.port, None)
        .map_err(|e| {
            if cancel.is_cancelled() {
                return AttemptError::Cancelled;
            }
            AttemptError::Retry(WaitReason::Forward {
                target: format!("{}:{}", opts.host, opts.port),
                code: session_code(&e),
                message: e.message().to_string(),
            })
        })?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| {
        AttemptError::Retry(WaitReason::Network {
            addr: "local socket pair".into(),
            message: e.to_string(),
        })
    })?;
    let bridge = Bridge::start(
        bastion,
        bastion_fd,
        channel,
        theirs,
        opts.keepalive_interval,
    )
    .map_err(|e| {
        AttemptError::Fatal(SshError::SpawnWorker {
            endpoint: endpoint.clone(),
            source: e,
        })
    })?;
    let (sess, fd) = login_over(ours, endpoint, io_timeout, cancel, opts)?;
    Ok((sess, fd, bridge))
}

/// Logs in over `stream` (direct, or the bastion's bridge), its duplicate registered with the
/// attempt's cancel so that a cancel closes it under a blocked handshake; the session and the
/// stream's fd.
fn login_over<S: AsFd + AsRawFd + 'static>(
    stream: S,
    endpoint: &Endpoint,
    io_timeout: Duration,
    cancel: &CancelState,
    opts: &ConnectOptions,
) -> Result<(ssh2::Session, RawFd), AttemptError> {
    let fd = stream.as_raw_fd();
    if let Ok(dup) = stream.as_fd().try_clone_to_owned() {
        cancel.register(dup);
    }
    let sess = establish(
        stream,
        &opts.username,
        &opts.auth,
        endpoint,
        io_timeout,
        cancel,
        opts,
        opts.host_key_fingerprint.as_ref(),
    )?;
    Ok((sess, fd))
}

/// Keep-alives without a reply: an idle session reads nothing, so replies would only pile up
/// unread; a dead peer is detected by the kernel instead (the keep-alive's bytes are never
/// acknowledged, and TCP_USER_TIMEOUT fails the socket).
fn configure_keepalive(sess: &ssh2::Session, interval: Duration) {
    if !interval.is_zero() {
        sess.set_keepalive(false, interval.as_secs().max(1) as u32);
    }
}

/// Kernel bound on unacknowledged data: with keep-alives flowing, a dead peer is noticed after
/// this long even while a command prints nothing.
fn tcp_user_timeout(opts: &ConnectOptions) -> Duration {
    if opts.keepalive_interval.is_zero() {
        opts.io_timeout
    } else {
        (opts.keepalive_interval * 3).max(Duration::from_secs(15))
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

pub(crate) fn session_code(e: &ssh2::Error) -> i32 {
    match e.code() {
        ssh2::ErrorCode::Session(c) => c,
        ssh2::ErrorCode::SFTP(c) => c,
    }
}

/// TCP connect to every address of `host` in turn, non-blocking in slices so that cancellation
/// is seen within [`SLICE`].
fn tcp_connect(
    host: &str,
    port: u16,
    cancel: &CancelState,
    deadline: Instant,
    per_attempt: Duration,
    user_timeout: Duration,
) -> Result<TcpStream, AttemptError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            AttemptError::Retry(WaitReason::Resolve {
                host: host.to_string(),
                message: e.to_string(),
            })
        })?
        .collect();
    let mut last = WaitReason::Resolve {
        host: host.to_string(),
        message: "no addresses".to_string(),
    };
    for addr in addrs {
        let limit = per_attempt.min(remaining(deadline)).max(SLICE);
        match connect_one(addr, limit, cancel) {
            Ok(sock) => {
                let _ = sock.set_tcp_nodelay(true);
                let _ = sock.set_keepalive(true);
                let _ = sock.set_tcp_user_timeout(Some(user_timeout));
                return Ok(sock.into());
            }
            Err(AttemptError::Retry(reason)) => last = reason,
            Err(other) => return Err(other),
        }
    }
    Err(AttemptError::Retry(last))
}

fn connect_one(
    addr: SocketAddr,
    limit: Duration,
    cancel: &CancelState,
) -> Result<Socket, AttemptError> {
    let started = Instant::now();
    let shown = addr.to_string();
    let fail = |e: std::io::Error| AttemptError::Retry(classify_tcp(&shown, &e, started.elapsed()));
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    sock.set_nonblocking(true).map_err(fail)?;
    match sock.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            loop {
                if cancel.is_cancelled() {
                    return Err(AttemptError::Cancelled);
                }
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(AttemptError::Retry(WaitReason::TcpTimeout {
                        addr: shown.clone(),
                        after: started.elapsed(),
                    }));
                }
                let revents = super::pump::poll_fd(
                    sock.as_raw_fd(),
                    libc::POLLOUT,
                    left.min(Duration::from_millis(50)),
                );
                if revents != 0 {
                    break;
                }
            }
            if let Some(e) = sock.take_error().map_err(fail)? {
                return Err(fail(e));
            }
            sock.peer_addr().map_err(fail)?;
        }
        Err(e) => return Err(fail(e)),
    }
    sock.set_nonblocking(false).map_err(fail)?;
    Ok(sock)
}

/// SSH handshake and authentication over a connected stream (blocking, bounded by
/// `set_timeout`; cancellation shuts the socket down underneath).
#[allow(clippy::too_many_arguments)]
fn establish<S: AsRawFd + 'static>(
    stream: S,
    user: &str,
    auth: &Auth,
    endpoint: &Endpoint,
    io_timeout: Duration,
    cancel: &CancelState,
    prefs: &ConnectOptions,
    expected_host_key: Option<&HostKeyFingerprint>,
) -> Result<ssh2::Session, AttemptError> {
    let retry_or_cancel = |reason: WaitReason| {
        if cancel.is_cancelled() {
            AttemptError::Cancelled
        } else {
            AttemptError::Retry(reason)
        }
    };
    let mut sess = ssh2::Session::new().map_err(|e| {
        retry_or_cancel(WaitReason::Handshake {
            code: session_code(&e),
            message: e.message().to_string(),
        })
    })?;
    sess.set_timeout(millis(io_timeout));
    set_algorithms(&sess, prefs).map_err(|message| {
        AttemptError::Fatal(SshError::InvalidOptions {
            endpoint: endpoint.clone(),
            message,
        })
    })?;
    sess.set_tcp_stream(stream);
    let started = Instant::now();
    sess.handshake()
        .map_err(|e| retry_or_cancel(classify_handshake(session_code(&e), e.message())))?;
    let handshake = started.elapsed();
    if let Some(expected) = expected_host_key {
        check_host_key(&sess, expected, endpoint)?;
    }
    // The "none" method: tells what the server offers for this user.
    let offered = match sess.auth_methods(user) {
        Ok(methods) => Some(methods.to_string()),
        Err(e) => {
            let c = session_code(&e);
            if code::is_transport_loss(c) {
                return Err(retry_or_cancel(classify_handshake(c, e.message())));
            }
            None
        }
    };
    let none_auth = started.elapsed() - handshake;
    if sess.authenticated() {
        return Ok(sess);
    }
    let LoginTry {
        method,
        result,
        key_path,
    } = try_login(&sess, user, auth, endpoint, cancel)?;
    let rejected = |method: AuthMethod| {
        retry_or_cancel(WaitReason::AuthRejected {
            user: user.to_string(),
            method,
            offered: offered.clone(),
        })
    };
    // Where an attempt's time goes (`IMGBUILD_LOG=imgbuild=debug`): a slow authentication is
    // usually the server's key lookup (an AuthorizedKeysCommand, a directory service).
    tracing::debug!(
        %endpoint,
        handshake_ms = handshake.as_millis() as u64,
        none_auth_ms = none_auth.as_millis() as u64,
        auth_ms = (started.elapsed() - handshake - none_auth).as_millis() as u64,
        ok = result.is_ok(),
        "SSH handshake and authentication"
    );
    match result {
        Ok(()) if sess.authenticated() => Ok(sess),
        Ok(()) => Err(rejected(method)),
        Err(e) => {
            let c = session_code(&e);
            match classify_auth(c) {
                AuthFailure::Rejected => Err(rejected(method)),
                AuthFailure::KeyUnusable if matches!(method, AuthMethod::PublicKey(_)) => {
                    Err(key_error(
                        endpoint,
                        key_path,
                        format!(
                            "libssh2 {} {c}: {} (is it a supported, unencrypted key or is the passphrase right?)",
                            code::name(c),
                            e.message()
                        ),
                    ))
                }
                AuthFailure::KeyUnusable => Err(rejected(method)),
                AuthFailure::Transport => {
                    Err(retry_or_cancel(classify_handshake(c, e.message())))
                }
            }
        }
    }
}

/// What one login attempt tried and what libssh2 answered.
struct LoginTry {
    method: AuthMethod,
    result: Result<(), ssh2::Error>,
    /// The key file, when the method was one.
    key_path: Option<PathBuf>,
}

/// Tries the configured authentication once (key file, key in memory, password or agent). A key
/// that cannot be read, or an agent that cannot be used, is fatal; the server's answer is the
/// caller's to judge.
fn try_login(
    sess: &ssh2::Session,
    user: &str,
    auth: &Auth,
    endpoint: &Endpoint,
    cancel: &CancelState,
) -> Result<LoginTry, AttemptError> {
    let (method, result, key_path) = match auth {
        Auth::KeyFile { path, passphrase } => {
            let text = std::fs::read(path)
                .map(|bytes| Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()))
                .map_err(|e| key_error(endpoint, Some(path.clone()), e.to_string()))?;
            let key_type = private_key_type(&text);
            drop(text);
            let result = sess.userauth_pubkey_file(
                user,
                None,
                path,
                passphrase.as_ref().map(|p| p.expose()),
            );
            (AuthMethod::PublicKey(key_type), result, Some(path.clone()))
        }
        Auth::KeyMemory {
            private_key,
            passphrase,
        } => {
            let key_type = private_key_type(private_key.expose());
            let result = sess.userauth_pubkey_memory(
                user,
                None,
                private_key.expose(),
                passphrase.as_ref().map(|p| p.expose()),
            );
            (AuthMethod::PublicKey(key_type), result, None)
        }
        Auth::Password(password) => (
            AuthMethod::Password,
            sess.userauth_password(user, password.expose()),
            None,
        ),
        Auth::Agent { socket } => match agent_auth(sess, user, socket.as_deref()) {
            Ok(result) => (AuthMethod::Agent, result, None),
            Err(e) => {
                if cancel.is_cancelled() {
                    return Err(AttemptError::Cancelled);
                }
                let c = session_code(&e);
                if code::is_transport_loss(c) {
                    return Err(AttemptError::Retry(classify_handshake(c, e.message())));
                }
                return Err(AttemptError::Fatal(SshError::UseAgent {
                    endpoint: endpoint.clone(),
                    message: format!("libssh2 {} {c}: {}", code::name(c), e.message()),
                }));
            }
        },
    };
    Ok(LoginTry {
        method,
        result,
        key_path,
    })
}

/// A private key that cannot be loaded or used: fatal (retrying would read the same key).
fn key_error(endpoint: &Endpoint, path: Option<PathBuf>, message: String) -> AttemptError {
    AttemptError::Fatal(SshError::LoadKey {
        endpoint: endpoint.clone(),
        path,
        message,
    })
}

/// Compares the session's host key with `ssh_host_key_fingerprint`. A mismatch is fatal: retrying
/// would only meet the same key (or let an impostor have another go).
fn check_host_key(
    sess: &ssh2::Session,
    expected: &HostKeyFingerprint,
    endpoint: &Endpoint,
) -> Result<(), AttemptError> {
    let got = sess
        .host_key_hash(ssh2::HashType::Sha256)
        .and_then(HostKeyFingerprint::from_digest);
    match got {
        Some(got) if &got == expected => Ok(()),
        got => Err(AttemptError::Fatal(SshError::HostKeyMismatch {
            endpoint: endpoint.clone(),
            fingerprints: Box::new((
                expected.to_string(),
                got.map(|g| g.to_string())
                    .unwrap_or_else(|| "no host key (the SSH library gave no SHA-256 hash)".into()),
            )),
        })),
    }
}

/// The cipher and key exchange preferences (`ssh_ciphers`, `ssh_key_exchange_algorithms`), set
/// before the handshake. Names libssh2 does not know are dropped; a list of which it knows none
/// is an error that lists what it supports.
fn set_algorithms(sess: &ssh2::Session, opts: &ConnectOptions) -> Result<(), String> {
    use ssh2::MethodType;
    let ciphers = match &opts.ciphers {
        Some(c) => c.join(","),
        None => DEFAULT_CIPHERS.join(","),
    };
    let mut wanted = vec![
        (MethodType::CryptCs, "ssh_ciphers", ciphers.clone()),
        (MethodType::CryptSc, "ssh_ciphers", ciphers),
    ];
    if let Some(k) = &opts.kex_algorithms {
        wanted.push((MethodType::Kex, "ssh_key_exchange_algorithms", k.join(",")));
    }
    for (kind, key, list) in wanted {
        if sess.method_pref(kind, &list).is_err() {
            let known = sess.supported_algs(kind).unwrap_or_default().join(", ");
            return Err(format!(
                "{key}: imgbuild's SSH library supports none of {list} (it supports: {known})"
            ));
        }
    }
    Ok(())
}

/// Tries every key of the agent. The outer `Err` is about the agent itself (cannot connect or
/// list keys); the inner result is the server's answer.
fn agent_auth(
    sess: &ssh2::Session,
    user: &str,
    socket: Option<&std::path::Path>,
) -> Result<Result<(), ssh2::Error>, ssh2::Error> {
    let mut agent = sess.agent()?;
    if let Some(path) = socket {
        agent.set_identity_path(path)?;
    }
    agent.connect()?;
    agent.list_identities()?;
    let identities = agent.identities()?;
    let mut result = Err(ssh2::Error::new(
        ssh2::ErrorCode::Session(code::AUTHENTICATION_FAILED),
        "the agent has no keys",
    ));
    for identity in &identities {
        result = agent.userauth(user, identity);
        if result.is_ok() {
            break;
        }
    }
    let _ = agent.disconnect();
    Ok(result)
}
