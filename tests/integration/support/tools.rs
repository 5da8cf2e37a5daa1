//! Local tools some tests need besides the world: Ansible (`scripts/testworld.sh install` puts
//! ansible-core in a venv of its own; tests put its `bin` first on PATH).

use std::path::PathBuf;

/// The ansible-core venv's `bin` directory (as `scripts/testworld.sh` installs it).
pub fn ansible_bin() -> PathBuf {
    let is_root = running_as_root();
    if is_root {
        PathBuf::from("/usr/local/lib/imgbuild-testworld/ansible-venv/bin")
    } else {
        let data = std::env::var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".local/share")
            });
        data.join("imgbuild-testworld/ansible-venv/bin")
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// PATH with Ansible first, or `None` after [`super::skip`] when ansible-playbook is missing
/// (a failure with `CI=true`).
pub fn ansible_path() -> Option<String> {
    let bin = ansible_bin();
    if bin.join("ansible-playbook").is_file() {
        return Some(format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ));
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if std::path::Path::new(dir).join("ansible-playbook").is_file() {
            return std::env::var("PATH").ok();
        }
    }
    super::skip(
        "ansible-playbook is not installed (scripts/testworld.sh install puts it in a venv)",
    );
    None
}

/// The world's sshd host key fingerprint, as `ssh-keygen -lf` prints it.
pub fn world_host_key_fingerprint(world: &super::world::TestWorld) -> String {
    let pubkey = world.state_dir().join("ssh_host_ed25519_key.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pubkey)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen -lf {}", pubkey.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("a SHA256 fingerprint in {text:?}"))
        .to_string()
}
