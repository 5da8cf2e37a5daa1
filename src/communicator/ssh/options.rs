//! What a connection needs: [`ConnectOptions`] (the lead maps the template's `SshConfig` onto it),
//! authentication ([`Auth`]) with secrets that are zeroized on drop and never printed, and the
//! pure helpers around them (the retry schedule, the type of a private key).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// Packer's `ssh_timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Packer's `ssh_handshake_attempts` default (only authentication failures count).
pub const DEFAULT_HANDSHAKE_ATTEMPTS: u32 = 10;
/// Packer's `ssh_keep_alive_interval` default.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound on one blocking libssh2 call (handshake, authentication, opening a channel) and on
/// a transfer that makes no progress at all.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on one TCP connect attempt (Packer: 15 s).
pub const DEFAULT_TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ciphers offered when `ssh_ciphers` is not set, in order of preference: AES-GCM first, which
/// libssh2 runs through OpenSSL (hardware AES), before its own portable chacha20-poly1305, which
/// costs about twice the CPU per byte; then what libssh2 offers by default.
pub const DEFAULT_CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes256-cbc",
    "aes192-cbc",
    "aes128-cbc",
];

/// A secret string (password, passphrase, private key text): zeroized when dropped, `Debug` prints
/// `[redacted]`, and there is no `Display`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself: only for handing it to libssh2.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to authenticate (Packer: `ssh_private_key_file`, the temporary key pair's key in memory,
/// `ssh_password`, `ssh_agent_auth`).
#[derive(Clone, Debug)]
pub enum Auth {
    /// A private key file (OpenSSH or PEM format).
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    /// A private key held in memory (OpenSSH or PEM text), e.g. a temporary key pair's.
    KeyMemory {
        private_key: Secret,
        passphrase: Option<Secret>,
    },
    Password(Secret),
    /// The keys of an ssh-agent: at `socket`, or `SSH_AUTH_SOCK` when `None`.
    Agent {
        socket: Option<PathBuf>,
    },
}

impl Auth {
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        Auth::KeyFile {
            path: path.into(),
            passphrase: None,
        }
    }

    pub fn key_memory(private_key: impl Into<String>) -> Self {
        Auth::KeyMemory {
            private_key: Secret::new(private_key),
            passphrase: None,
        }
    }

    pub fn password(password: impl Into<String>) -> Self {
        Auth::Password(Secret::new(password))
    }

    /// The agent at `SSH_AUTH_SOCK`.
    pub fn agent() -> Self {
        Auth::Agent { socket: None }
    }
}

/// A jump host (Packer: `ssh_bastion_host`, `_port`, `_username`, `_private_key_file`, ...).
#[derive(Clone, Debug)]
pub struct BastionOptions {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: Auth,
}

/// The retry schedule while waiting for SSH: starts at `initial`, grows by `factor` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrySchedule {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(1500),
            factor: 1.5,
        }
    }
}

impl RetrySchedule {
    pub fn iter(&self) -> Backoff {
        Backoff {
            next: self.initial,
            schedule: *self,
        }
    }
}

/// The successive delays of a [`RetrySchedule`].
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    schedule: RetrySchedule,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next.min(self.schedule.max);
        let factor = if self.schedule.factor.is_finite() && self.schedule.factor >= 1.0 {
            self.schedule.factor
        } else {
            1.0
        };
        self.next = current.mul_f64(factor).min(self.schedule.max);
        Some(current)
    }
}

/// Everything needed to reach and log in to a host. Build it with [`ConnectOptions::new`] and
/// change the public fields.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: Auth,
    /// How long to keep trying (Packer `ssh_timeout`, default 5 min); starts after
    /// `pause_before_connecting`.
    pub timeout: Duration,
    pub retry: RetrySchedule,
    /// How many authentication failures end the wait early (Packer `ssh_handshake_attempts`).
    pub handshake_attempts: u32,
    /// SSH keep-alive interval (Packer `ssh_keep_alive_interval`); zero disables keep-alives.
    pub keepalive_interval: Duration,
    /// Bound on one blocking libssh2 call and on a transfer that makes no progress.
    pub io_timeout: Duration,
    /// Bound on one TCP connect attempt.
    pub tcp_connect_timeout: Duration,
    /// Default for [`crate::communicator::ssh::ExecOptions::pty`] (Packer `ssh_pty`).
    pub pty: bool,
    /// Sleep before the first attempt (Packer `pause_before_connecting`).
    pub pause_before_connecting: Duration,
    pub bastion: Option<BastionOptions>,
    /// Allowed ciphers in order of preference (Packer `ssh_ciphers`); `None`:
    /// `DEFAULT_CIPHERS`.
    pub ciphers: Option<Vec<String>>,
    /// Allowed key exchange algorithms in order of preference (Packer
    /// `ssh_key_exchange_algorithms`); `None`: libssh2's.
    pub kex_algorithms: Option<Vec<String>>,
    /// The host key the target must present (`ssh_host_key_fingerprint`); `None`: any host key
    /// is accepted, as in Packer. Not checked on the bastion.
    pub host_key_fingerprint: Option<super::hostkey::HostKeyFingerprint>,
}

impl ConnectOptions {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        auth: Auth,
    ) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            username: username.into(),
            auth,
            timeout: DEFAULT_TIMEOUT,
            retry: RetrySchedule::default(),
            handshake_attempts: DEFAULT_HANDSHAKE_ATTEMPTS,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            io_timeout: DEFAULT_IO_TIMEOUT,
            tcp_connect_timeout: DEFAULT_TCP_CONNECT_TIMEOUT,
            pty: false,
            pause_before_connecting: Duration::ZERO,
            bastion: None,
            ciphers: None,
            kex_algorithms: None,
            host_key_fingerprint: None,
        }
    }
}

/// The algorithm of a private key, for messages ("rejected ... with an ed25519 key").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Rsa,
    Ecdsa,
    Dsa,
    /// Encrypted PKCS#8 or a format not recognised.
    Unknown,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Dsa => "dsa",
            KeyType::Unknown => "unknown-type",
        })
    }
}

/// The type of the private key in `text` (OpenSSH `openssh-key-v1`, PEM PKCS#1/SEC1/DSA, or
/// unencrypted PKCS#8), read from its structure, never from a file name.
pub fn private_key_type(text: &str) -> KeyType {
    let Some((label, body)) = pem_block(text) else {
        return KeyType::Unknown;
    };
    match label {
        "RSA PRIVATE KEY" => KeyType::Rsa,
        "EC PRIVATE KEY" => KeyType::Ecdsa,
        "DSA PRIVATE KEY" => KeyType::Dsa,
        "OPENSSH PRIVATE KEY" => base64_decode(&body)
            .and_then(|bytes| openssh_key_type(&bytes))
            .unwrap_or(KeyType::Unknown),
        "PRIVATE KEY" => base64_decode(&body)
            .map(|der| pkcs8_key_type(&der))
            .unwrap_or(KeyType::Unknown),
        _ => KeyType::Unknown,
    }
}

/// The label and the base64 body of the first PEM block in `text`.
fn pem_block(text: &str) -> Option<(&str, String)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_and_end = &rest[label_end + 5..];
    let end = body_and_end.find("-----END ")?;
    let body: String = body_and_end[..end]
        .lines()
        .filter(|l| !l.contains(':')) // PEM headers such as Proc-Type
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    Some((label, body))
}

fn take_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let s = rest.get(4..4usize.checked_add(len)?)?;
    *rest = &rest[4 + len..];
    Some(s)
}

fn openssh_key_type(bytes: &[u8]) -> Option<KeyType> {
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let _cipher = take_string(&mut rest)?;
    let _kdf = take_string(&mut rest)?;
    let _kdf_options = take_string(&mut rest)?;
    // A u32 key count, then the first public key blob, whose first string is its type.
    rest = rest.get(4..)?;
    let mut public_blob = take_string(&mut rest)?;
    let name = take_string(&mut public_blob)?;
    Some(match name {
        b"ssh-ed25519" => KeyType::Ed25519,
        b"ssh-rsa" => KeyType::Rsa,
        b"ssh-dss" => KeyType::Dsa,
        n if n.starts_with(b"ecdsa-sha2-") => KeyType::Ecdsa,
        _ => KeyType::Unknown,
    })
}

fn pkcs8_key_type(der: &[u8]) -> KeyType {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
    ];
    const EC: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    const DSA: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01];
    let head = &der[..der.len().min(64)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    if has(RSA) {
        KeyType::Rsa
    } else if has(EC) {
        KeyType::Ecdsa
    } else if has(ED25519) {
        KeyType::Ed25519
    } else if has(DSA) {
        KeyType::Dsa
    } else {
        KeyType::Unknown
    }
}

/// Standard base64 (with or without padding); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in bytes {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_short_grows_and_caps() {
        let delays: Vec<u64> = RetrySchedule::default()
            .iter()
            .take(8)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![200, 300, 450, 675, 1012, 1500, 1500, 1500]);
    }

    #[test]
    fn backoff_with_a_bad_factor_stays_constant() {
        let schedule = RetrySchedule {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: f64::NAN,
        };
        let delays: Vec<Duration> = schedule.iter().take(3).collect();
        assert_eq!(delays, vec![Duration::from_millis(100); 3]);
    }

    #[test]
    fn backoff_initial_above_max_is_capped() {
        let schedule = RetrySchedule {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(2),
            factor: 2.0,
        };
        assert_eq!(schedule.iter().next(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("a$b"), None);
    }

    // A throwaway ed25519 key made with `ssh-keygen -t ed25519 -N ''` for this test only.
    const ED25519_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAwfs1Ucll7JuJOyBd3r3Ct9/fa9CSkMZayzg4cTaq5xgAAAJhMxR4GTMUe
BgAAAAtzc2gtZWQyNTUxOQAAACAwfs1Ucll7JuJOyBd3r3Ct9/fa9CSkMZayzg4cTaq5xg
AAAEBR3js94ggVD/nlUoDmMIw75PuwJKEprlmWXMQR9EaMtjB+zVRyWXsm4k7IF3evcK33
99r0JKQxlrLODhxNqrnGAAAAEHRlc3RAZXhhbXBsZS5jb20BAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn key_type_of_openssh_ed25519() {
        assert_eq!(private_key_type(ED25519_KEY), KeyType::Ed25519);
    }

    #[test]
    fn key_type_of_pem_labels() {
        let pem = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        assert_eq!(private_key_type(&pem("RSA PRIVATE KEY")), KeyType::Rsa);
        assert_eq!(private_key_type(&pem("EC PRIVATE KEY")), KeyType::Ecdsa);
        assert_eq!(
            private_key_type(&pem("ENCRYPTED PRIVATE KEY")),
            KeyType::Unknown
        );
        assert_eq!(private_key_type("not a key"), KeyType::Unknown);
    }

    #[test]
    fn key_type_of_pkcs8_by_oid() {
        // PKCS#8 header of an ed25519 key (RFC 8410 example prefix).
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        assert_eq!(private_key_type(ed), KeyType::Ed25519);
    }

    #[test]
    fn secrets_do_not_print() {
        let auth = Auth::key_memory("-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETBODY\n");
        let printed = format!("{auth:?}");
        assert!(!printed.contains("SECRETBODY"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }
}
