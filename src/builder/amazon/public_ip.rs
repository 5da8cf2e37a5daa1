//! This machine's public address, for the temporary security group's default rule: one HTTP GET
//! of a "what is my IP" URL (`temporary_security_group_source_public_ip_url`, else
//! `IMGBUILD_PUBLIC_IP_URL`, else <https://checkip.amazonaws.com>), answered with the bare
//! address. A tiny HTTP/1.1 client over tokio's `TcpStream`, with TLS from the rustls stack the
//! AWS SDK already links; bounded in time and in the size of the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Packer's default lookup URL.
pub const DEFAULT_URL: &str = "https://checkip.amazonaws.com";
/// The environment variable that overrides [`DEFAULT_URL`] (the test world points it at a local
/// server, so no test asks the internet).
pub const URL_ENV: &str = "IMGBUILD_PUBLIC_IP_URL";
/// The whole lookup (connect, TLS, request, answer) must end within this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of an answer (status line, headers and body) read.
const MAX_ANSWER: usize = 16 * 1024;

/// Why the public address could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Url(String),
    #[error("no answer: {0}")]
    Connect(String),
    #[error("no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    #[error("HTTP status {status} (answer: {body:?})")]
    Status { status: String, body: String },
    #[error("the answer {0:?} is not an IP address")]
    NotAnAddress(String),
}

/// The URL to ask: the template's, else the environment's, else [`DEFAULT_URL`].
pub fn lookup_url(configured: Option<&str>, env: Option<String>) -> String {
    match (configured, env) {
        (Some(u), _) if !u.is_empty() => u.to_string(),
        (_, Some(e)) if !e.trim().is_empty() => e.trim().to_string(),
        _ => DEFAULT_URL.to_string(),
    }
}

/// The address in a lookup service's answer (the bare address, perhaps with surrounding
/// whitespace).
pub fn parse_answer(body: &str) -> Result<IpAddr, LookupError> {
    let t = body.trim();
    t.parse::<IpAddr>()
        .map_err(|_| LookupError::NotAnAddress(shorten(t)))
}

/// The CIDR block of exactly one address: /32 for IPv4, /128 for IPv6.
pub fn single_host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// Asks `url` for this machine's public address.
pub async fn lookup(url: &str) -> Result<IpAddr, LookupError> {
    let body = tokio::time::timeout(TIMEOUT, get(url))
        .await
        .map_err(|_| LookupError::Timeout)??;
    parse_answer(&body)
}

/// The parts of an `http://` or `https://` URL that a GET needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, LookupError> {
    let bad = |why: &str| LookupError::Url(format!("not a usable URL ({why})"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("only http:// and https:// are supported"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(bad("bad port")),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() || host.contains('@') {
        return Err(bad("no host"));
    }
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

/// The body of a GET of `url` (status 200 only).
async fn get(url: &str) -> Result<String, LookupError> {
    let t = parse_url(url)?;
    let tcp = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| LookupError::Connect(e.to_string()))?;
    if !t.tls {
        return exchange(tcp, &t).await;
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LookupError::Connect(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(t.host.clone())
        .map_err(|e| LookupError::Url(format!("not a usable URL ({e})")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| LookupError::Connect(format!("TLS: {e}")))?;
    exchange(tls, &t).await
}

/// One HTTP/1.1 request and its answer, read to the end of the connection (at most
/// [`MAX_ANSWER`] bytes).
async fn exchange(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    t: &Target,
) -> Result<String, LookupError> {
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: imgbuild\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        t.path
    );
    let io = |e: std::io::Error| LookupError::Connect(e.to_string());
    s.write_all(req.as_bytes()).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_ANSWER {
                    raw.truncate(MAX_ANSWER);
                    break;
                }
            }
            // A server that closes TLS without close_notify: what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(io(e)),
        }
    }
    parse_response(&raw)
}

/// The body of a raw HTTP/1.x answer; an error for any status but 200.
fn parse_response(raw: &[u8]) -> Result<String, LookupError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .ok_or_else(|| LookupError::NotAnAddress(shorten(&text)))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status != "200" {
        return Err(LookupError::Status {
            status: if status.is_empty() {
                shorten(status_line)
            } else {
                status
            },
            body: shorten(body.trim()),
        });
    }
    Ok(body)
}

/// A chunked body's data (what can be decoded of it).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// At most 80 characters of an answer, for an error message.
fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_a_bare_address_with_optional_whitespace() {
        assert_eq!(
            parse_answer("198.51.100.7\n").unwrap().to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            single_host_cidr(parse_answer("  198.51.100.7\r\n").unwrap()),
            "198.51.100.7/32"
        );
        assert_eq!(
            single_host_cidr(parse_answer("2001:db8::7\n").unwrap()),
            "2001:db8::7/128"
        );
        assert_eq!(
            parse_answer("<html>blocked</html>")
                .unwrap_err()
                .to_string(),
            "the answer \"<html>blocked</html>\" is not an IP address"
        );
        assert_eq!(
            parse_answer("").unwrap_err().to_string(),
            "the answer \"\" is not an IP address"
        );
        assert!(parse_answer("198.51.100.7/32").is_err());
        assert!(parse_answer("198.51.100.7 10.0.0.1").is_err());
    }

    #[test]
    fn the_template_url_wins_then_the_environment_then_the_default() {
        assert_eq!(
            lookup_url(Some("http://a/"), Some("http://b/".into())),
            "http://a/"
        );
        assert_eq!(lookup_url(None, Some("http://b/".into())), "http://b/");
        assert_eq!(lookup_url(None, Some(" ".into())), DEFAULT_URL);
        assert_eq!(lookup_url(None, None), DEFAULT_URL);
    }

    #[test]
    fn urls_give_scheme_host_port_and_path() {
        let t = parse_url("https://checkip.amazonaws.com").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "checkip.amazonaws.com".into(),
                port: 443,
                path: "/".into()
            }
        );
        let t = parse_url("http://127.0.0.1:8123/ip.txt").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (false, 8123, "/ip.txt"));
        let t = parse_url("http://[::1]:81?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 81, "/?x=1")
        );
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:port/").is_err());
    }

    #[test]
    fn responses_give_the_body_of_a_200_only() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n198.51.100.7\n";
        assert_eq!(parse_response(ok).unwrap(), "198.51.100.7\n");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n198.51.100.7\n\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "198.51.100.7\n");
        let e = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap_err();
        assert_eq!(e.to_string(), "HTTP status 404 (answer: \"nope\")");
        assert!(parse_response(b"garbage").is_err());
    }

    #[tokio::test]
    async fn a_local_server_is_asked_over_http() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n198.51.100.7\n")
                .await
                .unwrap();
            req
        });
        let ip = lookup(&format!("http://127.0.0.1:{port}/ip"))
            .await
            .unwrap();
        assert_eq!(ip.to_string(), "198.51.100.7");
        let req = server.await.unwrap();
        assert!(
            req.starts_with("GET /ip HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_no_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = lookup(&format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, LookupError::Connect(_)), "{e:?}");
    }
}
