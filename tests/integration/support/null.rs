//! The `null` builder's fixture: [`NullFx`] (a key pair the world's sshd accepts, a scratch
//! directory and a directory of the test's own in the shared world's sandbox).

use std::path::PathBuf;

use serde_json::{json, Value};

use super::cli::{imgbuild_env, Run, Scratch};
use super::world::{ssh_keygen, unique_name, TestWorld};

/// A key pair imported into the emulator (so sshd accepts it), a scratch directory holding the
/// template, and a directory of the test's own in the sandbox.
pub struct NullFx {
    pub world: &'static TestWorld,
    pub scratch: Scratch,
    pub key: PathBuf,
    pub name: String,
    pub remote: String,
}

impl NullFx {
    pub fn new(world: &'static TestWorld, prefix: &str) -> NullFx {
        let scratch = Scratch::new();
        let name = unique_name(prefix);
        let (key, public) = ssh_keygen(scratch.dir.path(), &name);
        world
            .import_key_pair(&name, &public)
            .expect("import key pair");
        let remote = world.sandbox().join(&name).display().to_string();
        let fx = NullFx {
            world,
            scratch,
            key,
            name,
            remote,
        };
        fx.sh(&format!("mkdir -p {}", q(&fx.remote)));
        fx
    }

    /// Runs a command on "the machine" (the world's sshd) as the test user.
    pub fn sh(&self, cmd: &str) -> String {
        self.world
            .ssh_exec_ok(&self.key, cmd)
            .unwrap_or_else(|e| panic!("ssh {cmd:?}: {e}\n{}", self.world.logs()))
    }

    /// A path in the test's sandbox directory.
    pub fn r(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote)
    }

    pub fn local(&self, rel: &str) -> PathBuf {
        self.scratch.dir.path().join(rel)
    }

    pub fn write_local(&self, rel: &str, text: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.local(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    }

    /// The null builder for the world's sshd with this key; `extra` keys merged in (null
    /// removes one).
    pub fn builder(&self, extra: Value) -> Value {
        let mut b = json!({
            "type": "null",
            "ssh_host": self.world.ssh_host(),
            "ssh_port": self.world.ssh_port(),
            "ssh_username": self.world.ssh_user(),
            "ssh_private_key_file": self.key.display().to_string(),
            "ssh_timeout": "30s"
        });
        merge(&mut b, extra);
        b
    }

    /// Writes `t.json` and runs `imgbuild build -color=false ARGS t.json` (bounded by the
    /// template's own timeouts).
    pub fn build(&self, template: &Value, args: &[&str]) -> Run {
        std::fs::write(self.local("t.json"), template.to_string()).expect("write t.json");
        let mut all = vec!["build", "-color=false"];
        all.extend_from_slice(args);
        all.push("t.json");
        let env = self.world.env();
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        imgbuild_env(self.scratch.dir.path(), &all, None, &vars)
    }
}

impl Drop for NullFx {
    fn drop(&mut self) {
        let _ = self.world.delete_key_pair(&self.name);
    }
}

/// Merges `extra`'s keys into the object `base` (a null value removes the key).
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(obj), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
}

/// `s` quoted for a POSIX shell (imgbuild's own quoting).
pub fn q(s: &str) -> String {
    imgbuild::communicator::ssh::shell_quote(s)
}
