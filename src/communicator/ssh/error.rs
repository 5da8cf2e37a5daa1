//! The SSH communicator's error: one variant per failed operation, carrying the endpoint
//! (`user@host:port`) and the paths involved. No variant ever holds key material, passwords or
//! passphrases.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::reason::{code, WaitReason};

/// `user@host:port`, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// A libssh2 error code with its symbolic name, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Libssh2Code(pub i32);

impl fmt::Display for Libssh2Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libssh2 {} {}", code::name(self.0), self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "timed out after {waited:.1?} waiting for SSH on {endpoint} ({attempts} attempts); \
         last reason: {last_reason}; check: {}",
        last_reason.hint()
    )]
    ConnectTimedOut {
        endpoint: Endpoint,
        waited: Duration,
        attempts: u32,
        last_reason: Box<WaitReason>,
    },

    #[error(
        "SSH authentication to {endpoint} failed {failures} times (ssh_handshake_attempts); \
         last reason: {reason}; check: {}",
        reason.hint()
    )]
    Authenticate {
        endpoint: Endpoint,
        failures: u32,
        reason: Box<WaitReason>,
    },

    #[error(
        "the host key of {endpoint} does not match ssh_host_key_fingerprint: expected {}, got {}; \
         the server is not the instance this build launched, or its host key changed (check the fingerprint with `ssh-keygen -lf` on the key, or in the instance's console output)",
        .fingerprints.0, .fingerprints.1
    )]
    HostKeyMismatch {
        endpoint: Endpoint,
        /// (expected, got); boxed to keep the error small.
        fingerprints: Box<(String, String)>,
    },

    #[error("cannot use the private key {}for {endpoint}: {message}", key_label(.path))]
    LoadKey {
        endpoint: Endpoint,
        /// `None` for a key held in memory.
        path: Option<PathBuf>,
        message: String,
    },

    #[error("cannot use the ssh-agent for {endpoint}: {message} (is ssh-agent running and SSH_AUTH_SOCK set?)")]
    UseAgent { endpoint: Endpoint, message: String },

    #[error("waiting for SSH on {endpoint} was cancelled after {waited:.1?}")]
    ConnectCancelled {
        endpoint: Endpoint,
        waited: Duration,
    },

    #[error("cannot start the SSH worker thread for {endpoint}: {source}")]
    SpawnWorker {
        endpoint: Endpoint,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid SSH options for {endpoint}: {message}")]
    InvalidOptions { endpoint: Endpoint, message: String },

    #[error("the SSH session to {endpoint} is closed{}", reason_suffix(.reason))]
    SessionClosed {
        endpoint: Endpoint,
        reason: Option<String>,
    },

    #[error("{operation} on {endpoint} was cancelled")]
    Cancelled {
        endpoint: Endpoint,
        operation: &'static str,
    },

    #[error("cannot open an SSH channel on {endpoint} ({code}): {message}")]
    OpenChannel {
        endpoint: Endpoint,
        code: Libssh2Code,
        message: String,
    },

    #[error("cannot start command {command:?} on {endpoint} ({code}): {message}")]
    StartCommand {
        endpoint: Endpoint,
        command: String,
        code: Libssh2Code,
        message: String,
    },

    #[error("cannot read {}: {source}", .path.display())]
    ReadLocal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}: {source}", .path.display())]
    WriteLocal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("upload source {} is not a directory", .path.display())]
    UploadSourceNotADirectory { path: PathBuf },

    #[error("cannot upload to {endpoint}: the destination directory {remote:?} does not exist (create it first, e.g. with a shell provisioner)")]
    UploadDestinationMissing { endpoint: Endpoint, remote: String },

    #[error("upload of {} to {endpoint}:{} failed: {message}", .paths.0, .paths.1)]
    Upload {
        endpoint: Endpoint,
        /// (local, remote) as shown; boxed to keep the error small.
        paths: Box<(String, String)>,
        message: String,
    },

    #[error("cannot download {endpoint}:{remote}: no such file or directory")]
    DownloadSourceMissing { endpoint: Endpoint, remote: String },

    #[error("download of {endpoint}:{} to {} failed: {message}", .paths.0, .paths.1.display())]
    Download {
        endpoint: Endpoint,
        /// (remote, local); boxed to keep the error small.
        paths: Box<(String, PathBuf)>,
        message: String,
    },
}

fn key_label(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{} ", p.display()),
        None => "(in memory) ".to_string(),
    }
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) => format!(": {r}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::communicator::ssh::reason::WaitReason;

    fn endpoint() -> Endpoint {
        Endpoint {
            user: "ec2-user".into(),
            host: "10.0.0.5".into(),
            port: 22,
        }
    }

    #[test]
    fn timeout_message_has_reason_and_what_to_check() {
        let e = SshError::ConnectTimedOut {
            endpoint: endpoint(),
            waited: Duration::from_secs(300),
            attempts: 201,
            last_reason: Box::new(WaitReason::TcpTimeout {
                addr: "10.0.0.5:22".into(),
                after: Duration::from_secs(10),
            }),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("timed out after 300.0s waiting for SSH on ec2-user@10.0.0.5:22 (201 attempts); last reason: TCP connect to 10.0.0.5:22 timed out"),
            "{text}"
        );
        assert!(text.contains("check: the security group"), "{text}");
    }

    #[test]
    fn load_key_names_the_file_or_memory() {
        let e = SshError::LoadKey {
            endpoint: endpoint(),
            path: None,
            message: "unsupported format".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot use the private key (in memory) for ec2-user@10.0.0.5:22: unsupported format"
        );
    }
}
