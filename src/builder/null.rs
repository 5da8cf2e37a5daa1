//! The `null` builder (Packer's): no cloud at all. It connects to an existing machine over SSH
//! (`ssh_host`, `ssh_username`, one of `ssh_private_key_file`, `ssh_password`,
//! `ssh_agent_auth`, and every other communicator option) and runs the template's provisioners
//! there, so provisioning can be rehearsed against any machine one can reach. With
//! `"communicator": "none"` only `shell-local` and `breakpoint` can run.
//!
//! Its artifact is Packer's `NullArtifact`: builder id `fnoeding.null`, id `Null`, the text
//! "Did not export anything. This is the null builder". Nothing is created, so there is no
//! ledger and no journal.
//!
//! Checks are Packer 1.6.6's (`builder/null/config.go`), as located errors: a host, a user and
//! exactly one authentication method are required unless the communicator is `none`.
//! Communicator options that only mean something for a machine the builder creates
//! (`ssh_keypair_name`, `temporary_key_pair_*`, `ssh_clear_authorized_keys`) are accepted with a
//! warning that they have no effect, where Packer ignores them silently.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Artifact, Aws, Builder, Env, RunError, SetupError};
use crate::cancel::Cancel;
use crate::checks::error_at;
use crate::checks::warning_at;
use crate::communicator::ssh::{Communicator, SshConfig};
use crate::interact::Interact;
use crate::ledger::Undo;
use crate::provisioner::runtime::{self, ProvisionContext, ProvisionError};
use crate::provisioner::PreparedProvisioner;
use crate::template::decode::{Dx, Obj};
use crate::ui::Ui;

/// Packer's `NullArtifact.Id()`.
pub const ARTIFACT_ID: &str = crate::artifact::NULL_ARTIFACT_ID;

/// Communicator options that make no difference to the null builder: it creates no machine,
/// so there is no key pair to launch with or to remove from it.
const NO_EFFECT: &[(&str, &str)] = &[
    (
        "ssh_keypair_name",
        "the null builder launches nothing; give the key in ssh_private_key_file",
    ),
    (
        "temporary_key_pair_type",
        "the null builder creates no temporary key pair",
    ),
    (
        "temporary_key_pair_bits",
        "the null builder creates no temporary key pair",
    ),
    (
        "temporary_key_pair_name",
        "the null builder creates no temporary key pair",
    ),
    (
        "ssh_clear_authorized_keys",
        "the null builder adds no key to the machine, so it removes none",
    ),
];

/// The options of the null builder before it used the communicator's (Packer 0.x).
const OLD_NAMES: &[(&str, &str)] = &[("host", "ssh_host"), ("port", "ssh_port")];

/// The typed configuration of a `null` builder: its communicator options.
#[derive(Debug, Clone, PartialEq)]
pub struct NullConfig {
    pub ssh: SshConfig,
}

impl NullConfig {
    /// Decodes and checks a builder object whose `type` and `name` the caller has taken, and
    /// reports unknown keys (`finish`).
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> NullConfig {
        let ssh = SshConfig::decode(&mut obj, dx);
        if ssh.communicator == Communicator::Ssh {
            if ssh.ssh_host.is_none() {
                let what = obj.what.clone();
                let (head, path) = (obj.head(), obj.path.clone());
                let d = dx.error(
                    head,
                    &path,
                    format!("{what} is missing the required key `ssh_host`"),
                );
                d.notes.push(
                    "help: the null builder connects to a machine that already exists: give its address in \"ssh_host\" (and \"ssh_port\" when it is not 22), or use \"communicator\": \"none\" to run only shell-local provisioners".into(),
                );
            }
            let methods: Vec<&'static str> = [
                ("ssh_private_key_file", ssh.ssh_private_key_file.is_some()),
                ("ssh_password", ssh.ssh_password.is_some()),
                ("ssh_agent_auth", ssh.ssh_agent_auth),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            match methods.as_slice() {
                [] => {
                    let what = obj.what.clone();
                    let (head, path) = (obj.head(), obj.path.clone());
                    let d = dx.error(
                        head,
                        &path,
                        format!("{what} has no way to log in: one authentication method must be specified"),
                    );
                    d.notes.push("help: set one of \"ssh_private_key_file\", \"ssh_password\" or \"ssh_agent_auth\": true (the null builder creates no temporary key pair)".into());
                }
                [_] => {}
                [first, rest @ ..] => {
                    for key in rest {
                        error_at(
                            &mut obj,
                            dx,
                            key,
                            format!("only one of ssh_agent_auth, ssh_password and ssh_private_key_file may be specified; `{first}` is set too"),
                            Some("keep the one the machine accepts"),
                        );
                    }
                }
            }
        }
        for (key, new) in OLD_NAMES {
            if obj.has(key) {
                let what = obj.what.clone();
                error_at(
                    &mut obj,
                    dx,
                    key,
                    format!("`{key}` of {what} is an old name of `{new}`"),
                    Some(&format!(
                        "rename it to `{new}` (Packer 1.6.6 rejects it too)"
                    )),
                );
            }
        }
        for (key, why) in NO_EFFECT {
            if obj.has(key) {
                let what = obj.what.clone();
                warning_at(
                    &mut obj,
                    dx,
                    key,
                    format!("`{key}` of {what} has no effect"),
                    Some(why),
                );
            }
        }
        obj.finish(dx);
        NullConfig { ssh }
    }

    /// Values that must never be shown (passwords), for the redactor.
    pub fn secrets(&self) -> Vec<&str> {
        self.ssh.secrets()
    }
}

/// One null build: the connection to an existing machine and the provisioners to run there.
pub struct NullBuild<'a> {
    pub name: &'a str,
    pub cfg: &'a NullConfig,
    pub provisioners: &'a [PreparedProvisioner],
    pub error_cleanup: Option<&'a PreparedProvisioner>,
    pub run_id: &'a str,
    pub ui: &'a Ui,
    /// `-on-error=ask`: a failed provisioning run may be run again.
    pub interact: &'a Interact,
    pub timeline: &'a crate::timeline::Timeline,
}

impl<'a> NullBuild<'a> {
    pub fn new(cfg: &'a NullConfig, env: &Env<'a>) -> NullBuild<'a> {
        NullBuild {
            name: env.name,
            cfg,
            provisioners: env.provisioners,
            error_cleanup: env.error_cleanup,
            run_id: env.run_id,
            ui: env.ui,
            interact: env.interact,
            timeline: env.timeline,
        }
    }

    /// `{{build `Key`}}` values: `ID` is Packer's `Null`; `Host`, `Port`, `User` the
    /// connection's.
    pub fn build_data(&self) -> BTreeMap<String, String> {
        let ssh = &self.cfg.ssh;
        let mut data = BTreeMap::new();
        data.insert("ID".into(), ARTIFACT_ID.into());
        data.insert("PackerRunUUID".into(), self.run_id.into());
        let conn = match ssh.communicator {
            Communicator::Ssh => "ssh",
            Communicator::None => "none",
        };
        data.insert("ConnType".into(), conn.into());
        if ssh.communicator == Communicator::Ssh {
            data.insert("Host".into(), ssh.ssh_host.clone().unwrap_or_default());
            data.insert("Port".into(), ssh.ssh_port.to_string());
            data.insert("User".into(), ssh.ssh_username.clone());
        }
        data
    }

    /// Connects (unless `communicator: none`) and runs the provisioners once.
    pub async fn provision(&self, cancel: &Cancel) -> Result<(), ProvisionError> {
        let ssh = &self.cfg.ssh;
        let host = ssh.ssh_host.clone().unwrap_or_default();
        if ssh.communicator == Communicator::Ssh {
            self.ui.say(&format!(
                "==> {}: Provisioning over SSH at {host}:{} (null builder: an existing machine)",
                self.name, ssh.ssh_port
            ));
        }
        let ctx = ProvisionContext {
            build_name: self.name,
            build_type: "null",
            host,
            port: ssh.ssh_port,
            ssh,
            private_key: None,
            provisioners: self.provisioners,
            error_cleanup: self.error_cleanup,
            build_data: self.build_data(),
            ui: self.ui,
            timeline: self.timeline,
            before: None,
        };
        runtime::run(&ctx, cancel).await
    }
}

/// Nothing is created, so there is nothing to prepare, undo, journal or leave behind.
impl Builder for NullBuild<'_> {
    fn build_timeout(&self) -> Option<Duration> {
        None
    }

    async fn prepare(&mut self, _cancel: &Cancel) -> Result<(), SetupError> {
        Ok(())
    }

    /// Provisions (again, as often as the person asks under `-on-error=ask`); the artifact is
    /// Packer's `NullArtifact`, with the build data for post-processors.
    async fn run(&self, cancel: &Cancel) -> Result<Artifact, RunError> {
        let is_cancelled = |e: &ProvisionError| matches!(e, ProvisionError::Cancelled);
        let provisioned = self
            .interact
            .retrying("provisioning", cancel, is_cancelled, || {
                self.provision(cancel)
            })
            .await;
        match provisioned {
            Ok(()) => Ok(Artifact::null(self.build_data())),
            Err(ProvisionError::Cancelled) => Err(RunError::Cancelled),
            Err(e) => Err(RunError::Failed(Box::new(e))),
        }
    }

    fn creates_resources(&self) -> bool {
        false
    }

    async fn teardown(&self, _success: bool, _abort: &Cancel) -> Vec<(Undo, String)> {
        Vec::new()
    }

    fn remaining(&self, _success: bool) -> Vec<Undo> {
        Vec::new()
    }

    fn finish(&self, _clean: bool, _succeeded: bool) {}

    fn journal(&self) -> Option<&Path> {
        None
    }

    fn aws(&self) -> Option<&Aws> {
        None
    }

    fn ami_name(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{all_text, decode, errors, js, warnings};

    fn key_file(dir: &std::path::Path) -> String {
        let p = dir.join("id");
        std::fs::write(
            &p,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        js(p.display().to_string())
    }

    #[test]
    fn a_host_a_user_and_a_key_are_enough() {
        let dir = tempfile::tempdir().unwrap();
        let (c, d) = decode(
            &format!(
                r#"{{"ssh_host": "10.1.2.3", "ssh_port": 2222, "ssh_username": "ubuntu",
                    "ssh_private_key_file": {}, "ssh_timeout": "20s", "ssh_pty": true}}"#,
                key_file(dir.path())
            ),
            NullConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.ssh.ssh_host.as_deref(), Some("10.1.2.3"));
        assert_eq!(c.ssh.ssh_port, 2222);
        assert_eq!(c.ssh.ssh_username, "ubuntu");
        assert!(c.ssh.ssh_pty);
        assert_eq!(c.ssh.ssh_timeout, std::time::Duration::from_secs(20));
    }

    #[test]
    fn packers_checks_are_located_errors() {
        let (_, d) = decode(r#"{"ssh_username": "u"}"#, NullConfig::decode);
        assert_eq!(
            errors(&d),
            vec![
                "builder `b` is missing the required key `ssh_host`",
                "builder `b` has no way to log in: one authentication method must be specified",
            ]
        );
        let e = d.errors().next().unwrap();
        assert_eq!(e.path.as_ref().unwrap().to_string(), "builders[0]");
        assert!(e.span.is_some());

        // No user either: the communicator's own error.
        let (_, d) = decode(
            r#"{"ssh_host": "h", "ssh_password": "pw"}"#,
            NullConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["builder `b` is missing the required key `ssh_username`"]
        );

        // Two methods: an error at the second one.
        let (_, d) = decode(
            r#"{"ssh_host": "h", "ssh_username": "u", "ssh_password": "pw", "ssh_agent_auth": true}"#,
            NullConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["only one of ssh_agent_auth, ssh_password and ssh_private_key_file may be specified; `ssh_password` is set too"]
        );
        assert_eq!(
            d.errors()
                .next()
                .unwrap()
                .path
                .as_ref()
                .unwrap()
                .to_string(),
            "builders[0].ssh_agent_auth"
        );
    }

    #[test]
    fn communicator_none_needs_nothing_and_unknown_keys_are_errors() {
        let (c, d) = decode(r#"{"communicator": "none"}"#, NullConfig::decode);
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.ssh.communicator, Communicator::None);
        // Packer 0.x's `host` is not an option any more: its new name is suggested.
        let (_, d) = decode(
            r#"{"host": "h", "ssh_host": "h", "ssh_username": "u", "ssh_password": "p"}"#,
            NullConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["`host` of builder `b` is an old name of `ssh_host`"]
        );
        assert!(
            all_text(&d).contains("rename it to `ssh_host`"),
            "{}",
            all_text(&d)
        );
    }

    #[test]
    fn options_for_created_machines_warn() {
        let (_, d) = decode(
            r#"{"ssh_host": "h", "ssh_username": "u", "ssh_password": "p",
                "temporary_key_pair_type": "rsa", "ssh_clear_authorized_keys": true}"#,
            NullConfig::decode,
        );
        assert!(errors(&d).is_empty(), "{d:?}");
        assert_eq!(
            warnings(&d),
            vec![
                "`temporary_key_pair_type` of builder `b` has no effect",
                "`ssh_clear_authorized_keys` of builder `b` has no effect",
            ]
        );
    }

    #[test]
    fn build_data_is_packers() {
        let (cfg, d) = decode(
            r#"{"ssh_host": "h", "ssh_port": 2200, "ssh_username": "u", "ssh_password": "p"}"#,
            NullConfig::decode,
        );
        assert!(!d.has_errors());
        assert_eq!(cfg.secrets(), vec!["p"]);
        let ui = Ui::default();
        let interact = Interact::quiet("n");
        let b = NullBuild {
            name: "n",
            cfg: &cfg,
            provisioners: &[],
            error_cleanup: None,
            run_id: "run-1",
            ui: &ui,
            interact: &interact,
            timeline: &crate::timeline::Timeline::start(),
        };
        let data = b.build_data();
        let get = |k: &str| data.get(k).map(String::as_str);
        assert_eq!(get("ID"), Some("Null"));
        assert_eq!(get("Host"), Some("h"));
        assert_eq!(get("Port"), Some("2200"));
        assert_eq!(get("User"), Some("u"));
        assert_eq!(get("ConnType"), Some("ssh"));
        assert_eq!(get("PackerRunUUID"), Some("run-1"));
    }

    #[tokio::test]
    async fn through_the_builder_trait_it_creates_nothing_and_yields_packers_null_artifact() {
        let (cfg, d) = decode(r#"{"communicator": "none"}"#, NullConfig::decode);
        assert!(!d.has_errors());
        let config = crate::builder::BuilderConfig::Null(Box::new(cfg));
        let (ui, interact) = (Ui::default(), Interact::quiet("n"));
        let engine = crate::template::funcs::Engine::new(crate::template::funcs::Clock::now());
        let (user, sensitive) = (BTreeMap::new(), std::collections::BTreeSet::new());
        let definition = serde_json::json!({"type": "null"});
        let env = Env {
            name: "n",
            kind: "null",
            definition: &definition,
            provisioners: &[],
            error_cleanup: None,
            run_id: "run-1",
            ui: &ui,
            engine: &engine,
            interact: &interact,
            user: &user,
            sensitive: &sensitive,
            template_dir: ".",
            force: false,
            skip_unchanged: false,
            timeline: &crate::timeline::Timeline::start(),
        };
        let mut b = config.builder(env);
        let cancel = Cancel::never();
        b.prepare(&cancel).await.unwrap();
        let a = b.run(&cancel).await.unwrap();
        assert!(a.null);
        assert_eq!(a.id(), "Null");
        assert_eq!(
            a.build_data.get("ConnType").map(String::as_str),
            Some("none")
        );
        assert!(!b.creates_resources());
        assert!(b.teardown(false, &cancel).await.is_empty());
        assert!(b.remaining(false).is_empty());
        assert!(b.journal().is_none() && b.aws().is_none() && b.ami_name().is_none());
        assert_eq!(b.build_timeout(), None);

        // Cancelled before it starts: a cancellation, not a failure.
        let (tx, cancelled) = crate::cancel::channel();
        tx.cancel();
        assert!(matches!(b.run(&cancelled).await, Err(RunError::Cancelled)));
    }
}
