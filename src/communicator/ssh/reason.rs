//! Why a connection attempt failed: [`WaitReason`], classified from `io::ErrorKind`, OS error
//! numbers and libssh2 error codes (never from message text), with what to check for each.

use std::fmt;
use std::io;
use std::time::Duration;

use super::options::KeyType;

/// libssh2 error codes (`LIBSSH2_ERROR_*` in libssh2.h) this module tells apart.
pub mod code {
    pub const SOCKET_NONE: i32 = -1;
    pub const BANNER_RECV: i32 = -2;
    pub const BANNER_SEND: i32 = -3;
    pub const INVALID_MAC: i32 = -4;
    pub const KEX_FAILURE: i32 = -5;
    pub const SOCKET_SEND: i32 = -7;
    pub const KEY_EXCHANGE_FAILURE: i32 = -8;
    pub const TIMEOUT: i32 = -9;
    pub const HOSTKEY_INIT: i32 = -10;
    pub const HOSTKEY_SIGN: i32 = -11;
    pub const DECRYPT: i32 = -12;
    pub const SOCKET_DISCONNECT: i32 = -13;
    pub const PROTO: i32 = -14;
    pub const PASSWORD_EXPIRED: i32 = -15;
    pub const FILE: i32 = -16;
    pub const METHOD_NONE: i32 = -17;
    pub const AUTHENTICATION_FAILED: i32 = -18;
    pub const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub const CHANNEL_FAILURE: i32 = -21;
    pub const CHANNEL_REQUEST_DENIED: i32 = -22;
    pub const CHANNEL_CLOSED: i32 = -26;
    pub const CHANNEL_EOF_SENT: i32 = -27;
    pub const SOCKET_TIMEOUT: i32 = -30;
    pub const REQUEST_DENIED: i32 = -32;
    pub const METHOD_NOT_SUPPORTED: i32 = -33;
    pub const PUBLICKEY_PROTOCOL: i32 = -36;
    pub const EAGAIN: i32 = -37;
    pub const AGENT_PROTOCOL: i32 = -42;
    pub const SOCKET_RECV: i32 = -43;
    pub const BAD_SOCKET: i32 = -45;
    pub const KEYFILE_AUTH_FAILED: i32 = -48;
    pub const ALGO_UNSUPPORTED: i32 = -51;

    /// The symbolic name of a libssh2 error code, for messages.
    pub fn name(code: i32) -> &'static str {
        match code {
            SOCKET_NONE => "SOCKET_NONE",
            BANNER_RECV => "BANNER_RECV",
            BANNER_SEND => "BANNER_SEND",
            INVALID_MAC => "INVALID_MAC",
            KEX_FAILURE => "KEX_FAILURE",
            SOCKET_SEND => "SOCKET_SEND",
            KEY_EXCHANGE_FAILURE => "KEY_EXCHANGE_FAILURE",
            TIMEOUT => "TIMEOUT",
            HOSTKEY_INIT => "HOSTKEY_INIT",
            HOSTKEY_SIGN => "HOSTKEY_SIGN",
            DECRYPT => "DECRYPT",
            SOCKET_DISCONNECT => "SOCKET_DISCONNECT",
            PROTO => "PROTO",
            PASSWORD_EXPIRED => "PASSWORD_EXPIRED",
            FILE => "FILE",
            METHOD_NONE => "METHOD_NONE",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            PUBLICKEY_UNVERIFIED => "PUBLICKEY_UNVERIFIED",
            CHANNEL_FAILURE => "CHANNEL_FAILURE",
            CHANNEL_REQUEST_DENIED => "CHANNEL_REQUEST_DENIED",
            CHANNEL_CLOSED => "CHANNEL_CLOSED",
            CHANNEL_EOF_SENT => "CHANNEL_EOF_SENT",
            SOCKET_TIMEOUT => "SOCKET_TIMEOUT",
            REQUEST_DENIED => "REQUEST_DENIED",
            METHOD_NOT_SUPPORTED => "METHOD_NOT_SUPPORTED",
            PUBLICKEY_PROTOCOL => "PUBLICKEY_PROTOCOL",
            EAGAIN => "EAGAIN",
            AGENT_PROTOCOL => "AGENT_PROTOCOL",
            SOCKET_RECV => "SOCKET_RECV",
            BAD_SOCKET => "BAD_SOCKET",
            KEYFILE_AUTH_FAILED => "KEYFILE_AUTH_FAILED",
            ALGO_UNSUPPORTED => "ALGO_UNSUPPORTED",
            _ => "OTHER",
        }
    }

    /// Codes that mean the transport (TCP connection) is gone or unusable.
    pub fn is_transport_loss(code: i32) -> bool {
        matches!(
            code,
            SOCKET_NONE
                | SOCKET_SEND
                | SOCKET_DISCONNECT
                | SOCKET_RECV
                | SOCKET_TIMEOUT
                | TIMEOUT
                | BAD_SOCKET
                | PROTO
                | DECRYPT
                | INVALID_MAC
        )
    }
}

/// The authentication method that was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    PublicKey(KeyType),
    Password,
    Agent,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::PublicKey(t) => write!(f, "{t} key"),
            AuthMethod::Password => f.write_str("password"),
            AuthMethod::Agent => f.write_str("ssh-agent keys"),
        }
    }
}

/// Why the last connection attempt failed (reported while waiting and carried by the timeout
/// error).
#[derive(Clone, Debug, PartialEq)]
pub enum WaitReason {
    /// The host name did not resolve.
    Resolve { host: String, message: String },
    /// TCP connection refused: nothing listens on the port (yet).
    Refused { addr: String },
    /// TCP connect did not complete in time: packets dropped (security group, firewall, route).
    TcpTimeout { addr: String, after: Duration },
    /// Network or host unreachable, or another TCP error.
    Network { addr: String, message: String },
    /// TCP connected, but the SSH handshake failed (banner, key exchange, connection dropped).
    Handshake { code: i32, message: String },
    /// No common host key algorithm, or the host key signature did not verify.
    HostKey { code: i32, message: String },
    /// The server rejected this user with this method.
    AuthRejected {
        user: String,
        method: AuthMethod,
        /// What the server offers for this user (`publickey,password`), when it said so.
        offered: Option<String>,
    },
    /// The bastion connected but would not open a channel to the target.
    Forward {
        target: String,
        code: i32,
        message: String,
    },
    /// A reason about the bastion, not the target.
    Bastion(Box<WaitReason>),
}

impl WaitReason {
    /// True for a rejected login (counted against the handshake attempts).
    pub fn is_auth(&self) -> bool {
        match self {
            WaitReason::AuthRejected { .. } => true,
            WaitReason::Bastion(inner) => inner.is_auth(),
            _ => false,
        }
    }

    /// True for a handshake that hit the I/O timeout (possibly on the bastion).
    pub fn is_io_timeout(&self) -> bool {
        match self {
            WaitReason::Handshake { code: c, .. } => *c == code::TIMEOUT,
            WaitReason::Bastion(inner) => inner.is_io_timeout(),
            _ => false,
        }
    }

    /// What to check, in a few words.
    pub fn hint(&self) -> String {
        match self {
            WaitReason::Resolve { .. } => "the host name (ssh_host) and DNS".to_string(),
            WaitReason::Refused { .. } => {
                "that sshd is running and listening on this port (ssh_port); the instance may still be booting".to_string()
            }
            WaitReason::TcpTimeout { .. } => {
                "the security group allows the port from this machine, the subnet's route table and network ACL, and that the address (ssh_interface) is reachable from here".to_string()
            }
            WaitReason::Network { .. } => {
                "the route to the host and the address chosen (ssh_interface)".to_string()
            }
            WaitReason::Handshake { .. } => {
                "that sshd is healthy (not still starting, not overloaded: MaxStartups) and that nothing between here and the host closes the connection".to_string()
            }
            WaitReason::HostKey { .. } => {
                "the server's host key types versus what libssh2 supports (ssh-ed25519, rsa-sha2, ecdsa)".to_string()
            }
            WaitReason::AuthRejected { user, method, offered } => {
                let mut s = format!(
                    "ssh_username ({user}) is right for this image (ec2-user, ubuntu, admin, ...), and the server accepts a {method}"
                );
                if let AuthMethod::PublicKey(t) = method {
                    s.push_str(&format!(
                        " (the key pair's public key is installed; sshd's PubkeyAcceptedAlgorithms allows {t})"
                    ));
                }
                if let Some(offered) = offered {
                    s.push_str(&format!("; the server offers: {offered}"));
                }
                s
            }
            WaitReason::Forward { .. } => {
                "that the bastion allows TCP forwarding (AllowTcpForwarding) and can reach the target host and port".to_string()
            }
            WaitReason::Bastion(inner) => format!("on the bastion: {}", inner.hint()),
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Resolve { host, message } => {
                write!(f, "cannot resolve host {host}: {message}")
            }
            WaitReason::Refused { addr } => write!(f, "connection refused by {addr}"),
            WaitReason::TcpTimeout { addr, after } => {
                write!(f, "TCP connect to {addr} timed out after {after:.1?}")
            }
            WaitReason::Network { addr, message } => {
                write!(f, "cannot connect to {addr}: {message}")
            }
            WaitReason::Handshake { code: c, message } => write!(
                f,
                "SSH handshake failed (libssh2 {} {c}): {message}",
                code::name(*c)
            ),
            WaitReason::HostKey { code: c, message } => write!(
                f,
                "host key negotiation failed (libssh2 {} {c}): {message}",
                code::name(*c)
            ),
            WaitReason::AuthRejected {
                user,
                method,
                offered,
            } => {
                write!(f, "authentication rejected for user {user} with {method}")?;
                if let Some(offered) = offered {
                    write!(f, " (server offers: {offered})")?;
                }
                Ok(())
            }
            WaitReason::Forward {
                target,
                code: c,
                message,
            } => write!(
                f,
                "the bastion cannot open a channel to {target} (libssh2 {} {c}): {message}",
                code::name(*c)
            ),
            WaitReason::Bastion(inner) => write!(f, "bastion: {inner}"),
        }
    }
}

/// Classifies a failed TCP connect by its `io::ErrorKind` and OS error number.
pub fn classify_tcp(addr: &str, err: &io::Error, after: Duration) -> WaitReason {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => WaitReason::Refused {
            addr: addr.to_string(),
        },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => WaitReason::TcpTimeout {
            addr: addr.to_string(),
            after,
        },
        _ if err.raw_os_error() == Some(libc::ETIMEDOUT) => WaitReason::TcpTimeout {
            addr: addr.to_string(),
            after,
        },
        _ => WaitReason::Network {
            addr: addr.to_string(),
            message: err.to_string(),
        },
    }
}

/// Classifies a failed SSH handshake by its libssh2 error code.
pub fn classify_handshake(code: i32, message: &str) -> WaitReason {
    match code {
        code::HOSTKEY_INIT | code::HOSTKEY_SIGN => WaitReason::HostKey {
            code,
            message: message.to_string(),
        },
        _ => WaitReason::Handshake {
            code,
            message: message.to_string(),
        },
    }
}

/// What an authentication error code means.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The server said no (counts against the handshake attempts).
    Rejected,
    /// The key could not be loaded (missing, unreadable, bad passphrase, unsupported format):
    /// retrying cannot help.
    KeyUnusable,
    /// The connection failed during authentication: retry like a handshake failure.
    Transport,
}

pub fn classify_auth(code: i32) -> AuthFailure {
    match code {
        code::AUTHENTICATION_FAILED
        | code::PUBLICKEY_UNVERIFIED
        | code::METHOD_NONE
        | code::PASSWORD_EXPIRED
        | code::METHOD_NOT_SUPPORTED
        | code::AGENT_PROTOCOL
        | code::PUBLICKEY_PROTOCOL => AuthFailure::Rejected,
        code::FILE | code::KEYFILE_AUTH_FAILED => AuthFailure::KeyUnusable,
        _ => AuthFailure::Transport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_errors_by_kind() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify_tcp("127.0.0.1:22", &refused, Duration::ZERO),
            WaitReason::Refused { .. }
        ));
        let timed_out = io::Error::from_raw_os_error(libc::ETIMEDOUT);
        assert!(matches!(
            classify_tcp("10.0.0.1:22", &timed_out, Duration::from_secs(10)),
            WaitReason::TcpTimeout { .. }
        ));
        let unreachable = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert!(matches!(
            classify_tcp("10.0.0.1:22", &unreachable, Duration::ZERO),
            WaitReason::Network { .. }
        ));
    }

    #[test]
    fn handshake_codes() {
        assert!(matches!(
            classify_handshake(code::HOSTKEY_SIGN, "x"),
            WaitReason::HostKey { code: -11, .. }
        ));
        let banner = classify_handshake(code::BANNER_RECV, "Failed getting banner");
        assert!(matches!(banner, WaitReason::Handshake { code: -2, .. }));
        assert!(banner.to_string().contains("BANNER_RECV -2"), "{banner}");
    }

    #[test]
    fn auth_codes() {
        assert_eq!(
            classify_auth(code::PUBLICKEY_UNVERIFIED),
            AuthFailure::Rejected
        );
        assert_eq!(
            classify_auth(code::AUTHENTICATION_FAILED),
            AuthFailure::Rejected
        );
        assert_eq!(classify_auth(code::FILE), AuthFailure::KeyUnusable);
        assert_eq!(
            classify_auth(code::SOCKET_DISCONNECT),
            AuthFailure::Transport
        );
    }

    #[test]
    fn auth_reason_names_user_key_type_and_what_to_check() {
        let reason = WaitReason::AuthRejected {
            user: "ubuntu".into(),
            method: AuthMethod::PublicKey(KeyType::Ed25519),
            offered: Some("publickey".into()),
        };
        assert!(reason.is_auth());
        assert_eq!(
            reason.to_string(),
            "authentication rejected for user ubuntu with ed25519 key (server offers: publickey)"
        );
        assert!(reason.hint().contains("ssh_username (ubuntu)"));
        let via_bastion = WaitReason::Bastion(Box::new(reason));
        assert!(via_bastion.is_auth());
        assert!(via_bastion.to_string().starts_with("bastion: "));
    }

    #[test]
    fn hints_name_the_usual_suspects() {
        let timeout = WaitReason::TcpTimeout {
            addr: "a".into(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.hint().contains("security group"));
        let refused = WaitReason::Refused { addr: "a".into() };
        assert!(refused.hint().contains("sshd is running"));
        assert!(code::is_transport_loss(code::SOCKET_DISCONNECT));
        assert!(!code::is_transport_loss(code::EAGAIN));
    }
}
