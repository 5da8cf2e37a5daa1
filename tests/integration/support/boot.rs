//! First boot in the sandbox world, which has no cloud-init: [`CloudInit`] puts a stand-in
//! `cloud-init` on the PATH of one world's SSH sessions (a `SetEnv PATH=...` line in that world's
//! own sshd_config, reloaded by SIGHUP), whose `status --wait` blocks until the test releases it
//! (a file in the sandbox) or 60 s pass. Only tests with a world of their own use it. Dropping it
//! kills (by PID) every stand-in still waiting. Also: the SSH builder of the sandbox world and
//! the PID files of remote commands a test kills.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::build::builder;
use super::world::TestWorld;

/// The stand-in; `DIR` is replaced by its directory.
const STANDIN: &str = r#"#!/bin/sh
# A stand-in for cloud-init (imgbuild's tests): `status --wait` blocks until DIR/boot-done exists.
dir=DIR
if [ "$1" = status ] && [ "$2" = --wait ]; then
    echo $$ >>"$dir/cloud-init.pids"
    echo "stand-in cloud-init: first boot is running"
    i=0
    while [ ! -e "$dir/boot-done" ]; do
        i=$((i + 1))
        if [ "$i" -gt 600 ]; then echo "stand-in cloud-init: gave up"; exit 1; fi
        sleep 0.1
    done
    echo "status: done"
    exit 0
fi
echo "stand-in cloud-init: $* is not supported" >&2
exit 1
"#;

/// A stand-in `cloud-init` on one world's PATH.
pub struct CloudInit {
    dir: PathBuf,
}

impl CloudInit {
    /// Installs it in `world` (a world of the test's own: its sshd is reconfigured).
    pub fn install(world: &TestWorld) -> CloudInit {
        let dir = world.sandbox().join("standin");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("stand-in dir");
        let script = bin.join("cloud-init");
        std::fs::write(&script, STANDIN.replace("DIR", &dir.display().to_string()))
            .expect("write the stand-in");
        let owner = world.ssh_user().to_string();
        let st = Command::new("chown")
            .args(["-R", &format!("{owner}:"), &dir.display().to_string()])
            .status();
        // Not root: the directory is the test user's own already.
        let _ = st;
        chmod(&dir, 0o777);
        chmod(&bin, 0o755);
        chmod(&script, 0o755);
        let conf = world.state_dir().join("sshd_config");
        let mut text = std::fs::read_to_string(&conf).expect("sshd_config");
        text.push_str(&format!(
            "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n",
            bin.display()
        ));
        std::fs::write(&conf, text).expect("write sshd_config");
        reload_sshd(world);
        CloudInit { dir }
    }

    /// Lets `cloud-init status --wait` end.
    pub fn release(&self) {
        std::fs::write(self.dir.join("boot-done"), "").expect("release the stand-in");
    }

    /// Makes it block again.
    pub fn reset(&self) {
        let _ = std::fs::remove_file(self.dir.join("boot-done"));
    }

    /// Kills every stand-in still waiting (by PID).
    pub fn kill_waiting(&self) {
        kill_pids(&self.dir.join("cloud-init.pids"));
    }
}

impl Drop for CloudInit {
    fn drop(&mut self) {
        self.kill_waiting();
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// SIGHUP to the world's sshd (it re-executes itself with the new configuration, same PID), then
/// waits (bounded) until its log says it listens again.
pub fn reload_sshd(world: &TestWorld) {
    let log = world.state_dir().join("sshd.log");
    let listening = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("Server listening on")
            .count()
    };
    let before = listening();
    let pid = std::fs::read_to_string(world.state_dir().join("sshd.pid")).expect("sshd.pid");
    let st = Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -HUP {}", pid.trim());
    // A bound, not a measure: generous for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while listening() <= before {
        assert!(
            Instant::now() < deadline,
            "sshd did not listen again after SIGHUP; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills (SIGKILL, by PID) the processes whose PIDs are in `file`, one a line.
pub fn kill_pids(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    for pid in text.lines().filter(|l| l.trim().parse::<u32>().is_ok()) {
        let _ = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// An amazon-ebs builder that provisions over SSH on the world's sshd.
pub fn ssh_world_builder(world: &TestWorld, extra: Value) -> Value {
    let mut b = builder(
        world,
        json!({"communicator": "ssh", "ssh_host": world.ssh_host(), "ssh_port": world.ssh_port(),
               "ssh_username": world.ssh_user(), "ssh_timeout": "60s"}),
    );
    if let (Some(obj), Value::Object(extra)) = (b.as_object_mut(), extra) {
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    b
}

/// The index of the first line of `text` containing `marker`, after line `from`.
pub fn line_of(text: &str, marker: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(marker))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no line with `{marker}` after line {from} in:\n{text}"))
}
