//! `ssh_host_key_fingerprint` for tools that bring their own OpenSSH (the `ansible`
//! provisioner): one login with `StrictHostKeyChecking=accept-new` into a known-hosts file of the
//! step's own, whose key must have the pinned fingerprint; the tool then runs with that file and
//! `StrictHostKeyChecking=yes`, so it talks to no other host key.

use std::path::Path;
use std::time::Duration;

use super::Failure;
use crate::communicator::ssh::HostKeyFingerprint;

/// How long the pinning login may take.
const PIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the login goes.
pub(crate) struct Target<'a> {
    pub user: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub key: Option<&'a Path>,
    /// The tool's other ssh options as shell text (the bastion's `ProxyCommand`, ...).
    pub extra: &'a str,
}

/// Logs in once, recording the host key in `known_hosts`, and checks it against `want`.
/// Returns the ssh options that pin it for the tool.
pub(crate) async fn pin(
    t: &Target<'_>,
    known_hosts: &Path,
    want: &HostKeyFingerprint,
) -> Result<String, Failure> {
    let kh = known_hosts.display().to_string();
    let key = t
        .key
        .map(|k| format!(" -i {}", sh_quote(&k.display().to_string())))
        .unwrap_or_default();
    let cmd = format!(
        "ssh -o BatchMode=yes -o ConnectTimeout=30 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o ControlMaster=no {}{key} -p {} {} true",
        sh_quote(&kh),
        t.extra,
        t.port,
        sh_quote(&format!("{}@{}", t.user, t.host)),
    );
    let run = tokio::process::Command::new("/bin/sh")
        .args(["-c", &cmd])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(PIN_TIMEOUT, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(source)) => {
            return Err(Failure::Local {
                what: "cannot run ssh to check the host key".into(),
                source,
            })
        }
        Err(_) => {
            return Err(Failure::Other(format!(
                "checking the host key with ssh took longer than {}s",
                PIN_TIMEOUT.as_secs()
            )))
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Failure::Other(format!(
            "ssh could not log in to check the host key against ssh_host_key_fingerprint ({}): {}",
            out.status,
            err.trim()
        )));
    }
    let text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    let seen = fingerprints(&text);
    if seen.iter().any(|(_, f)| f == &want.to_string()) {
        return Ok(format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            sh_quote(&kh)
        ));
    }
    let shown: Vec<String> = seen.iter().map(|(t, f)| format!("{t} {f}")).collect();
    Err(Failure::Other(format!(
        "the host key OpenSSH got from {}:{} ({}) does not have ssh_host_key_fingerprint {want}: Ansible was not started",
        t.host,
        t.port,
        if shown.is_empty() { "none".to_string() } else { shown.join(", ") }
    )))
}

/// `(key type, SHA256:...)` of each line of a known-hosts text.
pub(crate) fn fingerprints(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, kind, b64) = (parts.next()?, parts.next()?, parts.next()?);
            let key = ssh_key::PublicKey::from_openssh(&format!("{kind} {b64}")).ok()?;
            Some((
                kind.to_string(),
                key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            ))
        })
        .collect()
}

pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lines_give_their_fingerprints() {
        let line = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN+PV+esLtw1ARMB1xv624XHCQuMZ9xgcTkW/KHhnjav\n# comment\n";
        let f = fingerprints(line);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "ssh-ed25519");
        assert!(f[0].1.starts_with("SHA256:"), "{f:?}");
        assert!(HostKeyFingerprint::parse(&f[0].1).is_ok());
    }
}
