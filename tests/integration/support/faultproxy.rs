//! Fault-injecting proxies for the fault tests, on 127.0.0.1 only, each in threads of its own
//! and stopped when dropped.
//!
//! * [`HttpFaultProxy`]: between imgbuild (the AWS SDK) and the EC2 emulator. On a share of the
//!   requests (a seeded xorshift decides, so a run is repeatable) it answers
//!   `RequestLimitExceeded` (HTTP 503 with EC2's XML error body, as EC2 throttles), 500
//!   `InternalError`, 503 `Unavailable`, closes the connection before forwarding, forwards and
//!   then closes the connection instead of answering (the "lost answer": the call took effect
//!   and the caller never heard), or adds latency. One SDK operation (its
//!   `amz-sdk-invocation-id`) gets at most [`FaultConfig::max_per_call`] faults, so the faults
//!   are transient, as the real ones are, and a run is deterministic enough to assert on.
//!
//!   The proxy also stands in for two things EC2 does that moto does not, because a lost
//!   answer depends on them: a create call carrying a `ClientToken` (RunInstances, CopyImage)
//!   is idempotent (a repeat with the same token gets the first answer, and creates nothing),
//!   and an AMI name is unique per region (a repeated CreateImage is refused with
//!   `InvalidAMIName.Duplicate`).
//! * [`TcpProxy`]: plain TCP forwarding (to the test sshd), that can be cut (every live
//!   connection shut down at once) and limit the client-to-server
//!   rate so that an upload takes long enough to be interrupted.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded` (EC2's throttling answer).
    Throttle,
    /// HTTP 500 `InternalError`.
    Internal500,
    /// HTTP 503 `Unavailable`.
    Unavailable503,
    /// The connection is closed before the request is forwarded.
    ResetBefore,
    /// The request is forwarded, and the connection closed instead of answering.
    LostAnswer,
    /// The answer comes [`FaultConfig::latency`] late.
    Latency,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Throttle,
        Fault::Internal500,
        Fault::Unavailable503,
        Fault::ResetBefore,
        Fault::LostAnswer,
        Fault::Latency,
    ];
}

#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// The faults to choose from (uniformly).
    pub faults: Vec<Fault>,
    /// Share of requests that get a fault, in per mille.
    pub per_mille: u64,
    /// At most this many faults for one SDK operation (its retries included).
    pub max_per_call: u32,
    /// The delay of [`Fault::Latency`].
    pub latency: Duration,
    pub seed: u64,
    /// EC2 actions whose first attempt always gets the first of `faults` (to make sure a
    /// lost answer hits RunInstances, say).
    pub always: Vec<&'static str>,
}

impl FaultConfig {
    /// `faults` on `per_mille` of the requests, at most two per SDK operation.
    pub fn new(faults: &[Fault], per_mille: u64, seed: u64) -> FaultConfig {
        FaultConfig {
            faults: faults.to_vec(),
            per_mille,
            max_per_call: 2,
            latency: Duration::from_millis(800),
            seed,
            always: Vec::new(),
        }
    }
}

/// What the proxy did, for assertions and the report.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<Fault, u64>,
    /// Faults injected, by EC2 action (`RunInstances`, ...).
    pub by_action: BTreeMap<String, u64>,
    /// Lost answers of RunInstances (the call took effect; the SDK retries with its token).
    pub lost_run_instances: u64,
    /// Repeats of a create call answered from the first answer (same client token).
    pub replayed: u64,
    /// CreateImage refused as a duplicate name.
    pub duplicate_names: u64,
}

struct State {
    rng: u64,
    per_call: HashMap<String, u32>,
    /// (region, action, client token) -> the first full answer.
    tokens: HashMap<(String, String, String), Vec<u8>>,
    /// (region, AMI name) of CreateImage calls that succeeded.
    names: HashMap<(String, String), String>,
    counts: Counts,
}

/// See the module documentation.
pub struct HttpFaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
}

/// Upper bound on one request's or answer's size.
const MAX_MESSAGE: usize = 64 << 20;
/// How long the proxy waits on a socket.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

impl HttpFaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str, config: FaultConfig) -> HttpFaultProxy {
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream}: {e}"));
        assert!(up.ip().is_loopback(), "the proxy forwards to loopback only");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State {
            rng: config.seed.max(1),
            per_call: HashMap::new(),
            tokens: HashMap::new(),
            names: HashMap::new(),
            counts: Counts::default(),
        }));
        let config = Arc::new(config);
        {
            let (stop, state) = (stop.clone(), state.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, config) = (state.clone(), config.clone());
                    thread::spawn(move || serve(conn, up, &state, &config));
                }
            });
        }
        HttpFaultProxy { addr, stop, state }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> Counts {
        lock(&self.state).counts.clone()
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// One parsed HTTP/1.1 request.
struct Request {
    head: String,
    /// Header lines (name lower-cased, value).
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form parameters of an EC2 query request.
    fn params(&self) -> HashMap<String, String> {
        let body = String::from_utf8_lossy(&self.body);
        body.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect()
    }

    /// The region of the credential scope (`Credential=AK/DATE/REGION/ec2/aws4_request`).
    fn region(&self) -> String {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(2))
            .unwrap_or("unknown")
            .to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `\r\n\r\n`; `None` on a clean end of the connection.
fn read_head(r: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<(String, String)>)> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + 4);
            let mut lines = head.split("\r\n");
            let first = lines.next()?.to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Some((first, headers));
        }
        if buf.len() > MAX_MESSAGE {
            return None;
        }
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads `n` body bytes (some may be in `buf` already).
fn read_body(r: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    if n > MAX_MESSAGE {
        return None;
    }
    let mut chunk = [0u8; 65536];
    while buf.len() < n {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    Some(buf.drain(..n).collect())
}

fn content_length(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Serves one client connection (keep-alive: request after request).
fn serve(mut client: TcpStream, upstream: SocketAddr, state: &Mutex<State>, config: &FaultConfig) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let _ = client.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let Some((head, headers)) = read_head(&mut client, &mut buf) else {
            return;
        };
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            let _ = client.write_all(
                b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let n = content_length(&headers);
        let Some(body) = read_body(&mut client, &mut buf, n) else {
            return;
        };
        let req = Request {
            head,
            headers,
            body,
        };
        let params = req.params();
        let action = params.get("Action").cloned().unwrap_or_default();
        let region = req.region();
        let fault = decide(state, config, &req, &action);
        let answer: Option<Vec<u8>> = match fault {
            Some(Fault::Throttle) => Some(ec2_error(
                503,
                "Service Unavailable",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            )),
            Some(Fault::Internal500) => Some(ec2_error(
                500,
                "Internal Server Error",
                "InternalError",
                "An internal error has occurred.",
            )),
            Some(Fault::Unavailable503) => Some(ec2_error(
                503,
                "Service Unavailable",
                "Unavailable",
                "The server is overloaded and can't handle the request.",
            )),
            Some(Fault::ResetBefore) => None,
            Some(Fault::Latency) => {
                thread::sleep(config.latency);
                Some(forward_ec2(
                    state, upstream, &req, &params, &action, &region,
                ))
            }
            Some(Fault::LostAnswer) => {
                let _ = forward_ec2(state, upstream, &req, &params, &action, &region);
                if action == "RunInstances" {
                    lock(state).counts.lost_run_instances += 1;
                }
                None
            }
            None => Some(forward_ec2(
                state, upstream, &req, &params, &action, &region,
            )),
        };
        match answer {
            Some(a) => {
                if client.write_all(&a).is_err() {
                    return;
                }
            }
            None => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Whether this request gets a fault, and which.
fn decide(
    state: &Mutex<State>,
    config: &FaultConfig,
    req: &Request,
    action: &str,
) -> Option<Fault> {
    let mut s = lock(state);
    s.counts.requests += 1;
    if config.faults.is_empty() {
        return None;
    }
    let call = req
        .header("amz-sdk-invocation-id")
        .unwrap_or("")
        .to_string();
    let so_far = s.per_call.get(&call).copied().unwrap_or(0);
    let forced = so_far == 0 && config.always.contains(&action);
    let r = xorshift(&mut s.rng);
    if !forced && r % 1000 >= config.per_mille {
        return None;
    }
    if so_far >= config.max_per_call {
        return None;
    }
    let f = if forced {
        config.faults[0]
    } else {
        config.faults[(xorshift(&mut s.rng) % config.faults.len() as u64) as usize]
    };
    s.per_call.insert(call, so_far + 1);
    *s.counts.injected.entry(f).or_default() += 1;
    *s.counts.by_action.entry(action.to_string()).or_default() += 1;
    Some(f)
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// An EC2 error answer (the query protocol's XML).
fn ec2_error(status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>faultproxy</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Forwards with EC2's idempotency (client token) and AMI name uniqueness in front of moto.
fn forward_ec2(
    state: &Mutex<State>,
    upstream: SocketAddr,
    req: &Request,
    params: &HashMap<String, String>,
    action: &str,
    region: &str,
) -> Vec<u8> {
    let token = params
        .get("ClientToken")
        .filter(|t| !t.is_empty() && matches!(action, "RunInstances" | "CopyImage"))
        .map(|t| (region.to_string(), action.to_string(), t.clone()));
    let name = params
        .get("Name")
        .filter(|_| action == "CreateImage")
        .map(|n| (region.to_string(), n.clone()));
    // One create call at a time per token or name, so that a repeat waits for the first.
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = (token.is_some() || name.is_some()).then(|| lock(&SERIAL));
    if let Some(t) = &token {
        let mut s = lock(state);
        if let Some(a) = s.tokens.get(t).cloned() {
            s.counts.replayed += 1;
            return a;
        }
    }
    if let Some(n) = &name {
        let mut s = lock(state);
        if let Some(id) = s.names.get(n).cloned() {
            s.counts.duplicate_names += 1;
            return ec2_error(
                400,
                "Bad Request",
                "InvalidAMIName.Duplicate",
                &format!("AMI name {} is already in use by AMI {id}", n.1),
            );
        }
    }
    let answer = forward(upstream, req);
    let ok = answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200");
    if ok {
        let mut s = lock(state);
        if let Some(t) = token {
            s.tokens.insert(t, answer.clone());
        }
        if let Some(n) = name {
            let text = String::from_utf8_lossy(&answer);
            let id = text
                .split("<imageId>")
                .nth(1)
                .and_then(|r| r.split('<').next())
                .unwrap_or("ami-?")
                .to_string();
            s.names.insert(n, id);
        }
    }
    answer
}

/// One request to the upstream on a connection of its own; its whole answer, re-framed with a
/// Content-Length for the client's keep-alive connection.
fn forward(upstream: SocketAddr, req: &Request) -> Vec<u8> {
    let fail = |why: String| {
        let body = why.into_bytes();
        let mut a = format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(&body);
        a
    };
    let mut up = match TcpStream::connect_timeout(&upstream, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => return fail(format!("faultproxy: connect upstream: {e}")),
    };
    let _ = up.set_read_timeout(Some(IO_TIMEOUT));
    let _ = up.set_write_timeout(Some(IO_TIMEOUT));
    let mut out = format!("{}\r\n", req.head).into_bytes();
    for (k, v) in &req.headers {
        if k == "connection" || k == "keep-alive" {
            continue;
        }
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&req.body);
    if let Err(e) = up.write_all(&out) {
        return fail(format!("faultproxy: write upstream: {e}"));
    }
    let mut raw = Vec::new();
    if let Err(e) = up.read_to_end(&mut raw) {
        if raw.is_empty() {
            return fail(format!("faultproxy: read upstream: {e}"));
        }
    }
    let Some(pos) = find(&raw, b"\r\n\r\n") else {
        return fail("faultproxy: no answer head from upstream".into());
    };
    let head = String::from_utf8_lossy(&raw[..pos]).into_owned();
    let rest = &raw[pos + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap_or("HTTP/1.1 502 Bad Gateway")
        .to_string();
    let status = status.replacen("HTTP/1.0", "HTTP/1.1", 1);
    let mut chunked = false;
    let mut headers = Vec::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let lk = k.trim().to_ascii_lowercase();
        match lk.as_str() {
            "transfer-encoding" => chunked = v.contains("chunked"),
            "connection" | "keep-alive" | "content-length" => {}
            _ => headers.push(l.to_string()),
        }
    }
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    let mut a = format!("{status}\r\n").into_bytes();
    for h in headers {
        a.extend_from_slice(h.as_bytes());
        a.extend_from_slice(b"\r\n");
    }
    a.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    a.extend_from_slice(&body);
    a
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = find(b, b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..pos]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[pos + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
    out
}

// ------------------------------------------------------------------ TCP ---

/// See the module documentation.
pub struct TcpProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    inner: Arc<TcpInner>,
}

struct TcpInner {
    conns: Mutex<Vec<TcpStream>>,
    /// Client-to-server bytes per second (0: no limit).
    rate: AtomicU64,
    /// Client-to-server bytes forwarded.
    up_bytes: AtomicU64,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        assert!(upstream.ip().is_loopback(), "loopback only");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(TcpInner {
            conns: Mutex::new(Vec::new()),
            rate: AtomicU64::new(0),
            up_bytes: AtomicU64::new(0),
        });
        {
            let (stop, inner) = (stop.clone(), inner.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(10))
                    else {
                        continue;
                    };
                    {
                        let mut c = lock(&inner.conns);
                        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                            c.push(a);
                            c.push(b);
                        }
                    }
                    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                        (Ok(c), Ok(s)) => (c, s),
                        _ => continue,
                    };
                    let up = inner.clone();
                    thread::spawn(move || pump(client, server, Some(&up)));
                    thread::spawn(move || pump(s2, c2, None));
                }
            });
        }
        TcpProxy { addr, stop, inner }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Shuts every live connection down (both ways).
    pub fn cut(&self) {
        let conns = std::mem::take(&mut *lock(&self.inner.conns));
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Client-to-server bytes per second (0: no limit).
    pub fn limit_rate(&self, bytes_per_sec: u64) {
        self.inner.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn up_bytes(&self) -> u64 {
        self.inner.up_bytes.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` bytes more than now went client-to-server.
    pub fn wait_up_bytes(&self, at_least: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.up_bytes() >= at_least {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<&TcpInner>) {
    let mut buf = [0u8; 16384];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = count {
            let rate = c.rate.load(Ordering::SeqCst);
            sent += n as u64;
            if rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let el = start.elapsed();
                if due > el {
                    thread::sleep((due - el).min(Duration::from_secs(5)));
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = count {
            c.up_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
