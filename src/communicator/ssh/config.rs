//! Communicator options (Packer 1.6.6's `communicator/config.go`), embedded in the builder
//! object: how to reach the instance over SSH, or `"communicator": "none"`.
//!
//! Differences from Packer, on purpose:
//! - `temporary_key_pair_type` defaults to `ed25519` (Packer: `rsa`, which OpenSSH ≥ 8.8 refuses
//!   with SHA-1 signatures, so Packer 1.6.x cannot reach Ubuntu 22.04 and later). EC2 key pairs
//!   are `rsa` or `ed25519` only, so `ecdsa` and `dsa` are errors.
//! - `ssh_port` and `ssh_bastion_port` are checked to be in 1-65535 (0 means the default, 22, as
//!   in Packer).
//! - `ssh_bastion_username` falls back to `ssh_username`.
//! - `winrm` and a few SSH features are not implemented and are reported as errors by name (see
//!   [`UNSUPPORTED`]); `ssh_file_transfer_method` has no effect (a warning).

use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{
    error_at, expand_user, flag, io_reason, is_deferred, num, opt_string, relative_path_help,
    required_nonempty, strings_at, unsupported_if_set, warning_at,
};
use crate::duration::parse as parse_duration;
use crate::template::decode::{Dx, Obj};

/// `communicator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Communicator {
    /// `ssh` (the default).
    Ssh,
    /// `none`: the builder does not connect; provisioners cannot run.
    None,
}

/// `temporary_key_pair_type`: the kind of key pair imgbuild creates for the build when no
/// `ssh_keypair_name`/`ssh_private_key_file` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPairType {
    /// The imgbuild default: accepted by every current OpenSSH. Not usable for Windows.
    Ed25519,
    /// Packer's default; EC2 issues 2048-bit RSA keys.
    Rsa,
}

impl KeyPairType {
    /// The EC2 `KeyType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPairType::Ed25519 => "ed25519",
            KeyPairType::Rsa => "rsa",
        }
    }
}

/// A bastion (jump) host: set when `ssh_bastion_host` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshBastion {
    /// `ssh_bastion_host`.
    pub host: String,
    /// `ssh_bastion_port`; Packer default 22.
    pub port: u16,
    /// `ssh_bastion_username`; imgbuild falls back to `ssh_username` (Packer has no default).
    pub username: String,
    /// `ssh_bastion_password`.
    pub password: Option<String>,
    /// `ssh_bastion_private_key_file` (with `~` expanded); as in Packer, defaults to
    /// `ssh_private_key_file`. Checked to exist and be readable.
    pub private_key_file: Option<PathBuf>,
    /// `ssh_bastion_agent_auth`: authenticate to the bastion with the local SSH agent.
    pub agent_auth: bool,
}

/// The communicator options of a builder.
#[derive(Debug, Clone, PartialEq)]
pub struct SshConfig {
    /// `communicator`: `ssh` (default) or `none`. `winrm` is not supported.
    pub communicator: Communicator,
    /// `pause_before_connecting`: wait this long after the instance is reachable before the
    /// first connection attempt that counts (e.g. to let cloud-init restart sshd). Default none.
    pub pause_before_connecting: Option<Duration>,
    /// `ssh_host`: connect to this address instead of the one the builder picks.
    pub ssh_host: Option<String>,
    /// `ssh_port`: default 22.
    pub ssh_port: u16,
    /// `ssh_username`: required with the ssh communicator (empty with `none`).
    pub ssh_username: String,
    /// `ssh_password`: password authentication.
    pub ssh_password: Option<String>,
    /// `ssh_keypair_name`: launch with this existing EC2 key pair (needs `ssh_private_key_file`
    /// or `ssh_agent_auth`); no temporary key pair is created.
    pub ssh_keypair_name: Option<String>,
    /// `ssh_private_key_file` (with `~` expanded): checked to exist, be readable and hold a
    /// PEM or OpenSSH private key when the template is validated. Its content never appears in
    /// a message.
    pub ssh_private_key_file: Option<PathBuf>,
    /// `ssh_agent_auth`: authenticate with the local SSH agent (`SSH_AUTH_SOCK`). Default false.
    pub ssh_agent_auth: bool,
    /// `ssh_pty`: request a pseudo-terminal for commands. Default false.
    pub ssh_pty: bool,
    /// `ssh_timeout` (deprecated alias `ssh_wait_timeout`, which wins when both are set, as in
    /// Packer): how long to wait for SSH to become available. Default 5m.
    pub ssh_timeout: Duration,
    /// `ssh_handshake_attempts`: authentication failures tolerated before giving up. Default 10.
    pub ssh_handshake_attempts: u32,
    /// `ssh_keep_alive_interval`: keep-alive period; `None` when disabled with a negative value
    /// (e.g. `"-1s"`), as Packer documents. Default 5s.
    pub ssh_keep_alive_interval: Option<Duration>,
    /// `ssh_read_write_timeout`: fail a command whose connection is silent this long. Default
    /// none (no timeout).
    pub ssh_read_write_timeout: Option<Duration>,
    /// `ssh_disable_agent_forwarding`: do not forward the local agent. Default false.
    pub ssh_disable_agent_forwarding: bool,
    /// `ssh_clear_authorized_keys`: remove the temporary key from `~/.ssh/authorized_keys` on the
    /// instance after provisioning. Default false.
    pub ssh_clear_authorized_keys: bool,
    /// `ssh_ciphers`: allowed ciphers, in order of preference. Default: the SSH library's.
    pub ssh_ciphers: Option<Vec<String>>,
    /// `ssh_key_exchange_algorithms`: allowed key exchange algorithms, in order of preference.
    /// Default: the SSH library's.
    pub ssh_key_exchange_algorithms: Option<Vec<String>>,
    /// `ssh_bastion_*`: connect through this jump host.
    pub ssh_bastion: Option<SshBastion>,
    /// `ssh_host_key_fingerprint` (imgbuild): the SHA-256 fingerprint (`SHA256:...`, as
    /// `ssh-keygen -lf` prints it) the host key of the target must have; a session with another
    /// host key fails at once. Default none: any host key is accepted, as in Packer.
    pub ssh_host_key_fingerprint: Option<super::hostkey::HostKeyFingerprint>,
    /// `temporary_key_pair_type`: `ed25519` (imgbuild default) or `rsa`.
    pub temporary_key_pair_type: KeyPairType,
    /// `temporary_key_pair_bits`: RSA key size when imgbuild generates the key (2048 or 4096);
    /// has no effect for ed25519. Default: EC2's (2048 for keys EC2 creates).
    pub temporary_key_pair_bits: Option<u32>,
    /// `temporary_key_pair_name`: name of the temporary key pair. Default
    /// `packer_<unique id>`, chosen when the build starts.
    pub temporary_key_pair_name: Option<String>,
}

/// Packer communicator options imgbuild does not implement, with what to do instead.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("ssh_proxy_host", "imgbuild does not connect through a SOCKS proxy; use ssh_bastion_host, or run imgbuild where the instance is reachable"),
    ("ssh_proxy_port", "imgbuild does not connect through a SOCKS proxy; use ssh_bastion_host"),
    ("ssh_proxy_username", "imgbuild does not connect through a SOCKS proxy; use ssh_bastion_host"),
    ("ssh_proxy_password", "imgbuild does not connect through a SOCKS proxy; use ssh_bastion_host"),
    ("ssh_certificate_file", "SSH certificates are not supported; authenticate with ssh_private_key_file, ssh_agent_auth or the temporary key pair"),
    ("ssh_bastion_certificate_file", "SSH certificates are not supported; use ssh_bastion_private_key_file or ssh_bastion_agent_auth"),
    ("ssh_bastion_interactive", "imgbuild never prompts; use ssh_bastion_password, ssh_bastion_private_key_file or ssh_bastion_agent_auth"),
    ("ssh_local_tunnels", "SSH port forwarding is not supported; open the tunnel in a provisioner or outside imgbuild"),
    ("ssh_remote_tunnels", "SSH port forwarding is not supported; open the tunnel in a provisioner or outside imgbuild"),
];

/// WinRM options: accepted with a warning when the communicator is ssh (they make no
/// difference), covered by the one `communicator` error when it is winrm.
pub const WINRM_OPTIONS: &[&str] = &[
    "winrm_username",
    "winrm_password",
    "winrm_host",
    "winrm_no_proxy",
    "winrm_port",
    "winrm_timeout",
    "winrm_use_ssl",
    "winrm_insecure",
    "winrm_use_ntlm",
];

/// Packer options that make no difference to imgbuild (a warning), with the reason.
pub const IGNORED: &[(&str, &str)] = &[(
    "ssh_file_transfer_method",
    "imgbuild streams uploads and downloads as tar over one SSH channel; there is no scp/sftp choice",
)];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);
const DEFAULT_HANDSHAKE_ATTEMPTS: u32 = 10;

impl SshConfig {
    /// Takes the communicator keys from a builder object and checks them the way Packer's
    /// communicator `Prepare` does. Does not call `finish`: the builder does, once.
    pub fn decode(obj: &mut Obj, dx: &mut Dx) -> SshConfig {
        let communicator = decode_communicator(obj, dx);
        let ssh = communicator == Communicator::Ssh;

        let pause_before_connecting = obj
            .duration(dx, "pause_before_connecting")
            .filter(|d| !d.is_zero());
        let ssh_host = opt_string(obj, dx, "ssh_host");
        let ssh_port = port(obj, dx, "ssh_port");
        let ssh_username = if ssh {
            required_nonempty(
                obj,
                dx,
                "ssh_username",
                Some("the user depends on the source AMI: `ec2-user` (Amazon Linux), `ubuntu` (Ubuntu), `admin` (Debian)"),
            )
        } else {
            opt_string(obj, dx, "ssh_username").unwrap_or_default()
        };
        let ssh_password = opt_string(obj, dx, "ssh_password");
        let ssh_keypair_name = opt_string(obj, dx, "ssh_keypair_name");
        let ssh_private_key_file = key_file(obj, dx, "ssh_private_key_file", ssh);
        let ssh_agent_auth = flag(obj, dx, "ssh_agent_auth").unwrap_or(false);
        let ssh_pty = flag(obj, dx, "ssh_pty").unwrap_or(false);

        let timeout = obj.duration(dx, "ssh_timeout").filter(|d| !d.is_zero());
        let wait_timeout = obj
            .duration(dx, "ssh_wait_timeout")
            .filter(|d| !d.is_zero());
        if obj.has("ssh_wait_timeout") {
            let note = if obj.has("ssh_timeout") {
                "it is an old name of `ssh_timeout`; when both are set, `ssh_wait_timeout` wins, as in Packer"
            } else {
                "it is an old name of `ssh_timeout`; rename it"
            };
            warning_at(
                obj,
                dx,
                "ssh_wait_timeout",
                "`ssh_wait_timeout` is deprecated",
                Some(note),
            );
        }
        let ssh_timeout = wait_timeout.or(timeout).unwrap_or(DEFAULT_TIMEOUT);

        let ssh_handshake_attempts = match num(obj, dx, "ssh_handshake_attempts") {
            None | Some(0) => DEFAULT_HANDSHAKE_ATTEMPTS,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                error_at(
                    obj,
                    dx,
                    "ssh_handshake_attempts",
                    format!("`ssh_handshake_attempts` must be between 1 and 1000, found {n}"),
                    None,
                );
                DEFAULT_HANDSHAKE_ATTEMPTS
            }
        };
        let ssh_keep_alive_interval = keep_alive(obj, dx);
        let ssh_read_write_timeout = obj
            .duration(dx, "ssh_read_write_timeout")
            .filter(|d| !d.is_zero());
        let ssh_disable_agent_forwarding =
            flag(obj, dx, "ssh_disable_agent_forwarding").unwrap_or(false);
        let ssh_clear_authorized_keys = flag(obj, dx, "ssh_clear_authorized_keys").unwrap_or(false);
        let ssh_ciphers = algorithms(obj, dx, "ssh_ciphers");
        let ssh_key_exchange_algorithms = algorithms(obj, dx, "ssh_key_exchange_algorithms");

        let ssh_bastion = bastion(obj, dx, ssh, &ssh_username, ssh_private_key_file.as_ref());
        let ssh_host_key_fingerprint = host_key_fingerprint(obj, dx);

        let temporary_key_pair_type = key_pair_type(obj, dx);
        let temporary_key_pair_bits = key_pair_bits(obj, dx, temporary_key_pair_type);
        let temporary_key_pair_name = opt_string(obj, dx, "temporary_key_pair_name");

        for (key, why) in UNSUPPORTED {
            unsupported_if_set(obj, dx, key, why);
        }
        for (key, why) in IGNORED {
            obj.ignored(dx, key, why);
        }

        SshConfig {
            communicator,
            pause_before_connecting,
            ssh_host,
            ssh_port,
            ssh_username,
            ssh_password,
            ssh_keypair_name,
            ssh_private_key_file,
            ssh_agent_auth,
            ssh_pty,
            ssh_timeout,
            ssh_handshake_attempts,
            ssh_keep_alive_interval,
            ssh_read_write_timeout,
            ssh_disable_agent_forwarding,
            ssh_clear_authorized_keys,
            ssh_ciphers,
            ssh_key_exchange_algorithms,
            ssh_bastion,
            ssh_host_key_fingerprint,
            temporary_key_pair_type,
            temporary_key_pair_bits,
            temporary_key_pair_name,
        }
    }

    /// Values that must never be shown (passwords), for the redactor.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        out.extend(self.ssh_password.as_deref());
        if let Some(b) = &self.ssh_bastion {
            out.extend(b.password.as_deref());
        }
        out
    }
}

fn decode_communicator(obj: &mut Obj, dx: &mut Dx) -> Communicator {
    let value = obj.string(dx, "communicator").unwrap_or_default();
    match value.as_str() {
        "" | "ssh" => {
            for key in WINRM_OPTIONS {
                obj.ignored(
                    dx,
                    key,
                    "it is only used by the winrm communicator; this builder uses ssh",
                );
            }
            Communicator::Ssh
        }
        "none" => Communicator::None,
        "winrm" => {
            error_at(
                obj,
                dx,
                "communicator",
                "the `winrm` communicator is not supported by imgbuild",
                Some("imgbuild connects over SSH only: build Windows images with OpenSSH server enabled in user_data and \"communicator\": \"ssh\", or keep using Packer for WinRM"),
            );
            for key in WINRM_OPTIONS {
                obj.take(key);
            }
            // No cascade of ssh_* errors for a template written for WinRM.
            Communicator::None
        }
        other => {
            error_at(
                obj,
                dx,
                "communicator",
                format!("Communicator type {other} is invalid"),
                Some("use \"ssh\" (the default) or \"none\""),
            );
            Communicator::None
        }
    }
}

/// `ssh_host_key_fingerprint`: `SHA256:<base64>`; anything else is a located error.
fn host_key_fingerprint(obj: &mut Obj, dx: &mut Dx) -> Option<super::hostkey::HostKeyFingerprint> {
    const KEY: &str = "ssh_host_key_fingerprint";
    let raw = opt_string(obj, dx, KEY)?;
    match super::hostkey::HostKeyFingerprint::parse(&raw) {
        Ok(f) => Some(f),
        Err(why) => {
            error_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}`: {why}"),
                Some("e.g. \"SHA256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU\"; leave it out to accept any host key, as Packer does"),
            );
            None
        }
    }
}

/// A port: 0 or absent is the default 22 (Packer's zero value); otherwise 1-65535.
fn port(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> u16 {
    match num(obj, dx, key) {
        None | Some(0) => 22,
        Some(p) => match u16::try_from(p) {
            Ok(p) => p,
            Err(_) => {
                error_at(
                    obj,
                    dx,
                    key,
                    format!("`{key}` must be between 1 and 65535, found {p}"),
                    None,
                );
                22
            }
        },
    }
}

/// `ssh_keep_alive_interval`: a negative duration disables keep-alives; 0 is the default.
fn keep_alive(obj: &mut Obj, dx: &mut Dx) -> Option<Duration> {
    const KEY: &str = "ssh_keep_alive_interval";
    let Some(text) = obj.string(dx, KEY) else {
        return Some(DEFAULT_KEEP_ALIVE);
    };
    let trimmed = text.trim();
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    match parse_duration(body) {
        Ok(_) if negative => None,
        Ok(d) if d.is_zero() => Some(DEFAULT_KEEP_ALIVE),
        Ok(d) => Some(d),
        Err(why) => {
            error_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}`: \"{text}\" is not a duration: {why}"),
                Some(
                    "write it like \"10s\"; a negative value such as \"-1s\" turns keep-alives off",
                ),
            );
            Some(DEFAULT_KEEP_ALIVE)
        }
    }
}

/// `ssh_ciphers` / `ssh_key_exchange_algorithms`: names, none empty.
fn algorithms(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<Vec<String>> {
    let items = strings_at(obj, dx, key)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.value.trim().is_empty() {
            dx.error(
                item.span,
                &item.path,
                format!("`{key}` has an empty algorithm name"),
            );
        } else {
            out.push(item.value);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A private key file: `~` expanded; must exist, be a readable file and hold a private key
/// (PEM or OpenSSH format). The file's content never goes into a message. `check` is false
/// when the communicator is not ssh (Packer does not check then).
fn key_file(obj: &mut Obj, dx: &mut Dx, key: &'static str, check: bool) -> Option<PathBuf> {
    let raw = opt_string(obj, dx, key)?;
    let path = expand_user(&raw);
    if check && !is_deferred(&raw) {
        if let Some(why) = private_key_problem(&path) {
            let help = relative_path_help(&path);
            error_at(
                obj,
                dx,
                key,
                format!("{key} is invalid: {}: {why}", path.display()),
                Some(&help),
            );
        }
    }
    Some(path)
}

/// Why a file cannot be used as an SSH private key, or None.
pub(crate) fn private_key_problem(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    const MAX: u64 = 1 << 20;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(io_reason(&e)),
    };
    if meta.is_dir() {
        return Some("it is a directory, not a file".into());
    }
    if meta.len() > MAX {
        return Some("it is too large to be a private key".into());
    }
    let mut bytes = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(MAX).read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) => return Some(io_reason(&e)),
    }
    let has_key = bytes
        .windows(b"PRIVATE KEY-----".len())
        .any(|w| w == b"PRIVATE KEY-----");
    (!has_key).then(|| {
        "no private key found in it (expected a PEM or OpenSSH private key, \"-----BEGIN ... PRIVATE KEY-----\")".into()
    })
}

fn bastion(
    obj: &mut Obj,
    dx: &mut Dx,
    ssh: bool,
    ssh_username: &str,
    ssh_private_key_file: Option<&PathBuf>,
) -> Option<SshBastion> {
    let host = opt_string(obj, dx, "ssh_bastion_host");
    let port = port(obj, dx, "ssh_bastion_port");
    let username = opt_string(obj, dx, "ssh_bastion_username");
    let password = opt_string(obj, dx, "ssh_bastion_password");
    let agent_auth = flag(obj, dx, "ssh_bastion_agent_auth").unwrap_or(false);
    let own_key = key_file(
        obj,
        dx,
        "ssh_bastion_private_key_file",
        ssh && host.is_some(),
    );
    let Some(host) = host else {
        for key in [
            "ssh_bastion_port",
            "ssh_bastion_username",
            "ssh_bastion_password",
            "ssh_bastion_agent_auth",
            "ssh_bastion_private_key_file",
        ] {
            if obj.has(key) {
                warning_at(
                    obj,
                    dx,
                    key,
                    format!("`{key}` has no effect without `ssh_bastion_host`"),
                    None,
                );
            }
        }
        return None;
    };
    let private_key_file = own_key.or_else(|| ssh_private_key_file.cloned());
    if ssh && !agent_auth && password.is_none() && private_key_file.is_none() {
        error_at(
            obj,
            dx,
            "ssh_bastion_host",
            "ssh_bastion_password or ssh_bastion_private_key_file must be specified",
            Some("or set \"ssh_bastion_agent_auth\": true to use the local SSH agent"),
        );
    }
    Some(SshBastion {
        host,
        port,
        username: username.unwrap_or_else(|| ssh_username.to_string()),
        password,
        private_key_file,
        agent_auth,
    })
}

fn key_pair_type(obj: &mut Obj, dx: &mut Dx) -> KeyPairType {
    const KEY: &str = "temporary_key_pair_type";
    match opt_string(obj, dx, KEY).as_deref() {
        None | Some("ed25519") => KeyPairType::Ed25519,
        Some("rsa") => KeyPairType::Rsa,
        Some(other @ ("dsa" | "ecdsa")) => {
            error_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}` \"{other}\" is not possible: EC2 key pairs are rsa or ed25519"),
                Some(
                    "remove it to get ed25519 (the default), or use \"rsa\" for Windows instances",
                ),
            );
            KeyPairType::Ed25519
        }
        Some(other) => {
            error_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}` must be `ed25519` or `rsa`, found \"{other}\""),
                None,
            );
            KeyPairType::Ed25519
        }
    }
}

fn key_pair_bits(obj: &mut Obj, dx: &mut Dx, kind: KeyPairType) -> Option<u32> {
    const KEY: &str = "temporary_key_pair_bits";
    let bits = num(obj, dx, KEY).filter(|b| *b != 0)?;
    match kind {
        KeyPairType::Ed25519 => {
            warning_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}` has no effect on ed25519 keys, which have a fixed size"),
                None,
            );
            None
        }
        KeyPairType::Rsa if bits == 2048 || bits == 4096 => Some(bits as u32),
        KeyPairType::Rsa => {
            error_at(
                obj,
                dx,
                KEY,
                format!("`{KEY}` must be 2048 or 4096 for rsa keys, found {bits}"),
                Some("EC2 accepts RSA key pairs of 2048 or 4096 bits here; smaller keys are refused by current OpenSSH servers"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn ssh(text: &str) -> (SshConfig, crate::template::diag::Diagnostics) {
        decode(text, |mut o, dx| {
            let c = SshConfig::decode(&mut o, dx);
            o.finish(dx);
            c
        })
    }

    fn key_file_in(dir: &tempfile::TempDir) -> PathBuf {
        let p = dir.path().join("id_ed25519");
        std::fs::write(
            &p,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA-secret-material\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        p
    }

    #[test]
    fn defaults_are_packers_except_the_key_type() {
        let (c, d) = ssh(r#"{"ssh_username": "ubuntu"}"#);
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.communicator, Communicator::Ssh);
        assert_eq!(c.ssh_port, 22);
        assert_eq!(c.ssh_username, "ubuntu");
        assert_eq!(c.ssh_timeout, Duration::from_secs(300));
        assert_eq!(c.ssh_handshake_attempts, 10);
        assert_eq!(c.ssh_keep_alive_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.ssh_read_write_timeout, None);
        assert_eq!(c.temporary_key_pair_type, KeyPairType::Ed25519);
        assert_eq!(c.temporary_key_pair_bits, None);
        assert_eq!(c.ssh_bastion, None);
        assert!(!c.ssh_pty && !c.ssh_agent_auth && !c.ssh_clear_authorized_keys);
        assert_eq!(c.pause_before_connecting, None);
    }

    #[test]
    fn weak_typing_and_zero_values_mean_default() {
        let (c, d) = ssh(
            r#"{"ssh_username": "u", "ssh_port": "2222", "ssh_pty": "{{user `yes`}}",
                "ssh_handshake_attempts": 0, "ssh_timeout": "0s", "ssh_keep_alive_interval": "-1s",
                "ssh_read_write_timeout": "30s", "pause_before_connecting": "10s",
                "ssh_ciphers": "aes128-ctr", "temporary_key_pair_type": "rsa",
                "temporary_key_pair_bits": "4096"}"#,
        );
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.ssh_port, 2222);
        assert!(c.ssh_pty);
        assert_eq!(c.ssh_handshake_attempts, 10);
        assert_eq!(c.ssh_timeout, Duration::from_secs(300));
        assert_eq!(c.ssh_keep_alive_interval, None);
        assert_eq!(c.ssh_read_write_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.pause_before_connecting, Some(Duration::from_secs(10)));
        assert_eq!(c.ssh_ciphers, Some(vec!["aes128-ctr".to_string()]));
        assert_eq!(c.temporary_key_pair_type, KeyPairType::Rsa);
        assert_eq!(c.temporary_key_pair_bits, Some(4096));
    }

    #[test]
    fn username_is_required_for_ssh_only() {
        let (_, d) = ssh(r#"{}"#);
        assert_eq!(
            errors(&d),
            vec!["builder `b` is missing the required key `ssh_username`"]
        );
        assert!(all_text(&d).contains("ec2-user"));
        let (_, d) = ssh(r#"{"ssh_username": "{{user `empty`}}"}"#);
        assert_eq!(errors(&d), vec!["`ssh_username` must not be empty"]);
        let (c, d) = ssh(r#"{"communicator": "none"}"#);
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.communicator, Communicator::None);
    }

    #[test]
    fn winrm_is_one_error_and_other_values_are_invalid() {
        let (_, d) = ssh(
            r#"{"communicator": "winrm", "winrm_username": "Administrator", "winrm_use_ssl": true}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["the `winrm` communicator is not supported by imgbuild"]
        );
        let (_, d) = ssh(r#"{"communicator": "telnet"}"#);
        assert_eq!(errors(&d), vec!["Communicator type telnet is invalid"]);
        // winrm_* keys with ssh make no difference: a warning each.
        let (_, d) = ssh(r#"{"ssh_username": "u", "winrm_timeout": "5m"}"#);
        assert!(!d.has_errors());
        assert_eq!(
            warnings(&d),
            vec!["`winrm_timeout` of builder `b` has no effect in imgbuild"]
        );
    }

    #[test]
    fn ssh_wait_timeout_is_a_deprecated_alias_that_wins() {
        let (c, d) = ssh(r#"{"ssh_username": "u", "ssh_wait_timeout": "7m"}"#);
        assert_eq!(c.ssh_timeout, Duration::from_secs(420));
        assert_eq!(warnings(&d), vec!["`ssh_wait_timeout` is deprecated"]);
        let (c, _) = ssh(r#"{"ssh_username": "u", "ssh_timeout": "1m", "ssh_wait_timeout": "2m"}"#);
        assert_eq!(c.ssh_timeout, Duration::from_secs(120));
    }

    #[test]
    fn ports_are_checked() {
        let (_, d) = ssh(r#"{"ssh_username": "u", "ssh_port": 70000}"#);
        assert_eq!(
            errors(&d),
            vec!["`ssh_port` must be between 1 and 65535, found 70000"]
        );
        let (c, d) = ssh(r#"{"ssh_username": "u", "ssh_port": 0}"#);
        assert!(!d.has_errors());
        assert_eq!(c.ssh_port, 22);
        let (_, d) = ssh(
            r#"{"ssh_username": "u", "ssh_bastion_host": "b", "ssh_bastion_password": "p", "ssh_bastion_port": -1}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["`ssh_bastion_port` must be between 1 and 65535, found -1"]
        );
    }

    #[test]
    fn private_key_file_must_exist_and_hold_a_key_without_leaking_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = key_file_in(&dir);
        let (c, d) = ssh(&format!(
            r#"{{"ssh_username": "u", "ssh_private_key_file": {}}}"#,
            js(good.display().to_string())
        ));
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.ssh_private_key_file.as_deref(), Some(good.as_path()));

        let missing = dir.path().join("nope");
        let (_, d) = ssh(&format!(
            r#"{{"ssh_username": "u", "ssh_private_key_file": {}}}"#,
            js(missing.display().to_string())
        ));
        assert_eq!(
            errors(&d),
            vec![format!(
                "ssh_private_key_file is invalid: {}: no such file or directory",
                missing.display()
            )]
        );

        let not_a_key = dir.path().join("notes.txt");
        std::fs::write(&not_a_key, "hunter2-secret").unwrap();
        let (_, d) = ssh(&format!(
            r#"{{"ssh_username": "u", "ssh_private_key_file": {}}}"#,
            js(not_a_key.display().to_string())
        ));
        let text = all_text(&d);
        assert!(text.contains("no private key found"), "{text}");
        assert!(!text.contains("hunter2"), "content leaked: {text}");

        let (_, d) = ssh(&format!(
            r#"{{"ssh_username": "u", "ssh_private_key_file": {}}}"#,
            js(dir.path().display().to_string())
        ));
        assert!(all_text(&d).contains("it is a directory"));

        // Not checked without the ssh communicator (as in Packer).
        let (_, d) = ssh(&format!(
            r#"{{"communicator": "none", "ssh_private_key_file": {}}}"#,
            js(missing.display().to_string())
        ));
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn bastion_rules() {
        let (_, d) = ssh(r#"{"ssh_username": "u", "ssh_bastion_host": "jump"}"#);
        assert_eq!(
            errors(&d),
            vec!["ssh_bastion_password or ssh_bastion_private_key_file must be specified"]
        );
        let (c, d) = ssh(
            r#"{"ssh_username": "u", "ssh_bastion_host": "jump", "ssh_bastion_agent_auth": true}"#,
        );
        assert!(!d.has_errors(), "{d:?}");
        let b = c.ssh_bastion.unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.username.as_str()),
            ("jump", 22, "u")
        );

        // The bastion key defaults to ssh_private_key_file, as in Packer.
        let dir = tempfile::tempdir().unwrap();
        let key = key_file_in(&dir);
        let (c, d) = ssh(&format!(
            r#"{{"ssh_username": "u", "ssh_private_key_file": {}, "ssh_bastion_host": "jump", "ssh_bastion_username": "jumper"}}"#,
            js(key.display().to_string())
        ));
        assert!(!d.has_errors(), "{d:?}");
        let b = c.ssh_bastion.unwrap();
        assert_eq!(b.private_key_file.as_deref(), Some(key.as_path()));
        assert_eq!(b.username, "jumper");

        let (_, d) = ssh(
            r#"{"ssh_username": "u", "ssh_bastion_host": "jump", "ssh_bastion_private_key_file": "/nonexistent/k"}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["ssh_bastion_private_key_file is invalid: /nonexistent/k: no such file or directory"]
        );

        let (c, d) = ssh(r#"{"ssh_username": "u", "ssh_bastion_username": "x"}"#);
        assert_eq!(c.ssh_bastion, None);
        assert_eq!(
            warnings(&d),
            vec!["`ssh_bastion_username` has no effect without `ssh_bastion_host`"]
        );
    }

    #[test]
    fn key_pair_type_and_bits() {
        for (t, msg) in [
            ("dsa", "`temporary_key_pair_type` \"dsa\" is not possible: EC2 key pairs are rsa or ed25519"),
            ("ecdsa", "`temporary_key_pair_type` \"ecdsa\" is not possible: EC2 key pairs are rsa or ed25519"),
            ("foo", "`temporary_key_pair_type` must be `ed25519` or `rsa`, found \"foo\""),
        ] {
            let (_, d) = ssh(&format!(
                r#"{{"ssh_username": "u", "temporary_key_pair_type": "{t}"}}"#
            ));
            assert_eq!(errors(&d), vec![msg]);
        }
        let (_, d) = ssh(
            r#"{"ssh_username": "u", "temporary_key_pair_type": "rsa", "temporary_key_pair_bits": 1024}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["`temporary_key_pair_bits` must be 2048 or 4096 for rsa keys, found 1024"]
        );
        let (c, d) = ssh(
            r#"{"ssh_username": "u", "temporary_key_pair_bits": 4096, "temporary_key_pair_name": "mine"}"#,
        );
        assert!(!d.has_errors());
        assert_eq!(c.temporary_key_pair_bits, None);
        assert_eq!(c.temporary_key_pair_name.as_deref(), Some("mine"));
        assert_eq!(
            warnings(&d),
            vec![
                "`temporary_key_pair_bits` has no effect on ed25519 keys, which have a fixed size"
            ]
        );
    }

    #[test]
    fn unsupported_and_ignored_options_are_named() {
        let (_, d) = ssh(
            r#"{"ssh_username": "u", "ssh_proxy_host": "p", "ssh_local_tunnels": ["8080:localhost:80"],
                "ssh_bastion_interactive": false, "ssh_file_transfer_method": "sftp",
                "ssh_certificate_file": "c"}"#,
        );
        assert_eq!(
            errors(&d),
            vec![
                "`ssh_proxy_host` of builder `b` is a Packer option imgbuild does not support",
                "`ssh_certificate_file` of builder `b` is a Packer option imgbuild does not support",
                "`ssh_local_tunnels` of builder `b` is a Packer option imgbuild does not support",
            ]
        );
        assert_eq!(
            warnings(&d),
            vec!["`ssh_file_transfer_method` of builder `b` has no effect in imgbuild"]
        );
        assert!(all_text(&d).contains("tar over one SSH channel"));
    }

    #[test]
    fn bad_durations_are_reported() {
        let (_, d) = ssh(
            r#"{"ssh_username": "u", "ssh_timeout": "2x", "ssh_keep_alive_interval": "often"}"#,
        );
        assert_eq!(
            errors(&d),
            vec![
                "`ssh_timeout`: \"2x\" is not a duration: unknown unit \"x\"",
                "`ssh_keep_alive_interval`: \"often\" is not a duration: expected a number at \"often\"",
            ]
        );
    }

    #[test]
    fn secrets_lists_passwords() {
        let (c, _) = ssh(
            r#"{"ssh_username": "u", "ssh_password": "pw1", "ssh_bastion_host": "j", "ssh_bastion_password": "pw2"}"#,
        );
        assert_eq!(c.secrets(), vec!["pw1", "pw2"]);
    }
}
