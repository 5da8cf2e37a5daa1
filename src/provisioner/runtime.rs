//! The seam between the builder and provisioning: once the source instance runs and its SSH
//! address is known, the builder hands over here; this connects (waiting for SSH, saying why it
//! still waits), runs the build's provisioners in order (with their `pause_before`,
//! `max_retries` and `timeout`), runs the `error-cleanup-provisioner` when one fails, and
//! returns. The builder goes on to stop the instance and create the image.
//!
//! * [`shell`]: the remote `shell` provisioner (upload, execute, clean up, reconnect after an
//!   expected disconnect such as a reboot).
//! * [`mod@file`]: the `file` provisioner (uploads and downloads as tar streams).
//! * [`local`]: `shell-local` (runs on this machine) and `breakpoint`.
//! * [`remote`]: the SSH session of the build, reconnected when it was lost, and the streaming of
//!   output lines to the [`Output`].
//!
//! Cancellation (the watch receiver turning `true`) drops whatever runs: the wait for SSH stops,
//! the remote command's channel is closed, a transfer stops, a local process group is killed;
//! `run` then returns [`ProvisionError::Cancelled`] at once.

pub mod ansible;
pub mod ansible_local;
pub mod config_mgmt;
pub mod file;
pub mod hostpin;
pub mod local;
pub mod remote;
pub mod shell;
pub mod staged;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::communicator::ssh::{
    Auth, BastionOptions, Communicator, ConnectOptions, Session, SshConfig, SshError,
};
use crate::duration::go as format_duration;
use crate::provisioner::PreparedProvisioner;
use crate::provisioner::ProvisionerConfig;
use crate::redact::Redactor;
use crate::template::funcs::{Clock, Engine, Phase, Scope};
use crate::timeline::Timeline;
use crate::ui::{Activity, Ui};

use remote::Remote;

/// Where provisioning writes: human lines (the build's prefix is added here) and problems.
/// [`Ui`] is the real one; tests capture lines with their own.
pub trait Output: Send + Sync {
    /// A line of normal output.
    fn say(&self, text: &str);
    /// A line of a command's output (`ui,message` when machine-readable, as Packer writes it);
    /// a plain [`Output::say`] for outputs that do not tell the two apart.
    fn message(&self, text: &str) {
        self.say(text);
    }
    /// A line about a problem (remote stderr lines too).
    fn error(&self, text: &str);
    /// `text` with every secret masked (used for error messages, which leave through other
    /// sinks too).
    fn redact(&self, text: &str) -> String {
        text.to_string()
    }
    /// A spinner with the elapsed time for a wait of `build` (drawn only on a terminal).
    fn spinner(&self, _build: &str, _what: &str) -> Activity {
        Activity::none()
    }
    /// A byte progress bar for a transfer of `build` (drawn only on a terminal).
    fn bytes(&self, _build: &str, _what: &str) -> Activity {
        Activity::none()
    }
}

impl Output for Ui {
    fn say(&self, text: &str) {
        Ui::say(self, text);
    }

    fn message(&self, text: &str) {
        Ui::message(self, text);
    }

    fn error(&self, text: &str) {
        Ui::error(self, text);
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    fn spinner(&self, build: &str, what: &str) -> Activity {
        Ui::spinner(self, build, what)
    }

    fn bytes(&self, build: &str, what: &str) -> Activity {
        Ui::bytes(self, build, what)
    }
}

/// What a builder runs on the build's SSH session once it is connected and before the first
/// provisioner (amazon-ebs: the wait for first boot, `wait_for_boot`); its error text ends
/// provisioning. Cancelling the run drops the future (closing its remote command's channel).
pub trait BeforeProvisioning: Sync {
    fn run<'s>(
        &'s self,
        session: Arc<Session>,
        out: &'s dyn Output,
        build: &'s str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 's>>;
}

/// Everything provisioning needs from the builder.
pub struct ProvisionContext<'a> {
    pub build_name: &'a str,
    pub build_type: &'a str,
    /// The address to connect to (from `ssh_host` or the instance, per `ssh_interface`).
    pub host: String,
    pub port: u16,
    pub ssh: &'a SshConfig,
    /// The temporary key pair's private key (OpenSSH or PEM text), when imgbuild created one.
    /// Never logged or printed.
    pub private_key: Option<&'a str>,
    pub provisioners: &'a [PreparedProvisioner],
    pub error_cleanup: Option<&'a PreparedProvisioner>,
    /// `{{build `Key`}}` values: ID, Host, Port, User, SourceAMI, BuildRegion, ...
    pub build_data: BTreeMap<String, String>,
    /// Where status lines and the provisioners' output go (the builder's `Ui`).
    pub ui: &'a dyn Output,
    /// The build's timeline: waiting for SSH and each provisioner are phases.
    pub timeline: &'a Timeline,
    /// Run on the session after it connects, before the first provisioner.
    pub before: Option<&'a dyn BeforeProvisioning>,
}

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    NotImplemented(String),
    #[error("cancelled")]
    Cancelled,
    /// Waiting for SSH failed (the error says the last reason and what to check).
    #[error("{0}")]
    Connect(#[source] SshError),
    /// The work before the first provisioner failed (`wait_for_boot`: first boot did not
    /// finish in time).
    #[error("{0}")]
    Before(String),
    /// Nothing to authenticate with.
    #[error("no way to log in over SSH as {user}: set ssh_private_key_file, ssh_password or ssh_agent_auth (or let imgbuild create a temporary key pair)")]
    NoAuth { user: String },
    /// A provisioner failed (after its retries).
    #[error("provisioner {} ({kind}) failed: {failure}", .index + 1)]
    Provisioner {
        /// Position in the template's `provisioners` (0-based).
        index: usize,
        kind: String,
        failure: Box<Failure>,
    },
}

impl ProvisionError {
    /// The failure of the provisioner, when a provisioner failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            ProvisionError::Provisioner { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// What went wrong inside one provisioner.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// `timeout` elapsed; the remote command (or local process) was abandoned.
    #[error("timed out after {} (the provisioner's `timeout`); its command was abandoned", format_duration(*.after))]
    Timeout { after: Duration },
    /// A command ended with an exit status not in `valid_exit_codes`.
    #[error("{what} exited with status {code} (valid exit codes: {})\n  command: {command}{}", join_codes(.valid), tail_text(.tail))]
    ExitStatus {
        what: String,
        command: String,
        code: i32,
        valid: Vec<i64>,
        /// The last lines of stderr (or of the output, when stderr said nothing), masked.
        tail: Vec<String>,
    },
    /// A command was killed by a signal.
    #[error("{what} was killed by signal {signal}\n  command: {command}{}", tail_text(.tail))]
    Signaled {
        what: String,
        command: String,
        signal: String,
        tail: Vec<String>,
    },
    /// The connection dropped while a script ran, and that was not expected.
    #[error("{what} disconnected unexpectedly (the SSH connection was lost before it ended). If you expected your script to disconnect, i.e. from a restart, you can try adding `\"expect_disconnect\": true` or `\"valid_exit_codes\": [0, 2300218]` to the shell provisioner parameters.\n  command: {command}{}", tail_text(.tail))]
    Disconnected {
        what: String,
        command: String,
        tail: Vec<String>,
    },
    /// An SSH operation failed.
    #[error("{what}: {source}")]
    Ssh {
        what: String,
        #[source]
        source: Box<SshError>,
    },
    /// A local file or process operation failed.
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A build-time template value could not be rendered.
    #[error("cannot render {what}: {message}")]
    Template { what: String, message: String },
    /// The provisioner needs SSH but the build has `"communicator": "none"`.
    #[error("the {kind} provisioner needs SSH, but this build has \"communicator\": \"none\"")]
    NoCommunicator { kind: String },
    #[error("{0}")]
    Other(String),
}

fn join_codes(codes: &[i64]) -> String {
    codes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n  last lines of output:");
    for l in tail {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

impl std::fmt::Debug for ProvisionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionContext")
            .field("build_name", &self.build_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("private_key", &self.private_key.map(|_| "<sensitive>"))
            .finish_non_exhaustive()
    }
}

/// Packer's delay between two tries of a provisioner (`max_retries`).
pub const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Connects and runs the provisioners. Cancelling `cancel` stops everything at once.
pub async fn run(ctx: &ProvisionContext<'_>, cancel: &Cancel) -> Result<(), ProvisionError> {
    if cancel.is_cancelled() {
        return Err(ProvisionError::Cancelled);
    }
    let mut rt = Runtime::new(ctx);
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(ProvisionError::Cancelled),
        r = rt.run_all() => r,
    };
    if matches!(result, Err(ProvisionError::Cancelled)) {
        rt.remote.cancel();
        ctx.ui
            .say(&format!("==> {}: Provisioning cancelled", ctx.build_name));
    }
    result
}

/// A provisioner's phase in the timeline: `provisioner 2 shell` (its place in the template's
/// list, from 1, as error messages number it, and its type), with its `name` when it has one
/// (`provisioner 2 shell (install)`), or the error-cleanup-provisioner's label.
pub fn phase_name(p: &PreparedProvisioner, label: Option<&str>) -> String {
    let name = p
        .definition
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.trim().is_empty());
    match (label, name) {
        (Some(l), _) => l.to_string(),
        (None, Some(n)) => format!("provisioner {} {} ({n})", p.index + 1, p.kind),
        (None, None) => format!("provisioner {} {}", p.index + 1, p.kind),
    }
}

/// Maps the communicator options (plus the builder's host, port and temporary key) onto the
/// connection options.
pub fn connect_options(ctx: &ProvisionContext<'_>) -> Result<ConnectOptions, ProvisionError> {
    let ssh = ctx.ssh;
    let auth = if let Some(path) = &ssh.ssh_private_key_file {
        Auth::key_file(path)
    } else if let Some(key) = ctx.private_key {
        Auth::key_memory(key)
    } else if ssh.ssh_agent_auth {
        Auth::agent()
    } else if let Some(pw) = &ssh.ssh_password {
        Auth::password(pw.clone())
    } else {
        return Err(ProvisionError::NoAuth {
            user: ssh.ssh_username.clone(),
        });
    };
    let mut o = ConnectOptions::new(ctx.host.clone(), ctx.port, ssh.ssh_username.clone(), auth);
    o.timeout = ssh.ssh_timeout;
    o.handshake_attempts = ssh.ssh_handshake_attempts.max(1);
    o.keepalive_interval = ssh.ssh_keep_alive_interval.unwrap_or(Duration::ZERO);
    if let Some(rw) = ssh.ssh_read_write_timeout {
        o.io_timeout = rw;
    }
    o.pty = ssh.ssh_pty;
    o.pause_before_connecting = ssh.pause_before_connecting.unwrap_or(Duration::ZERO);
    o.ciphers = ssh.ssh_ciphers.clone();
    o.kex_algorithms = ssh.ssh_key_exchange_algorithms.clone();
    o.host_key_fingerprint = ssh.ssh_host_key_fingerprint.clone();
    if let Some(b) = &ssh.ssh_bastion {
        let bastion_auth = if let Some(path) = &b.private_key_file {
            Auth::key_file(path)
        } else if b.agent_auth {
            Auth::agent()
        } else if let Some(pw) = &b.password {
            Auth::password(pw.clone())
        } else {
            o.auth.clone()
        };
        o.bastion = Some(BastionOptions {
            host: b.host.clone(),
            port: b.port,
            username: b.username.clone(),
            auth: bastion_auth,
        });
    }
    Ok(o)
}

/// The state of one provisioning run.
pub(crate) struct Runtime<'c, 'a> {
    pub ctx: &'c ProvisionContext<'a>,
    pub engine: Engine,
    pub remote: Remote,
}

impl<'c, 'a> Runtime<'c, 'a> {
    fn new(ctx: &'c ProvisionContext<'a>) -> Self {
        Runtime {
            ctx,
            engine: Engine::new(Clock::now()),
            remote: Remote::new(ctx.build_name),
        }
    }

    /// `==> build: text`
    pub fn say(&self, text: &str) {
        self.ctx
            .ui
            .say(&format!("==> {}: {text}", self.ctx.build_name));
    }

    pub fn redact(&self, text: &str) -> String {
        self.ctx.ui.redact(text)
    }

    /// Renders what was deferred at prepare time (`{{build `Key`}}`, `{{.Field}}`) in `src`.
    pub fn render(
        &self,
        src: &str,
        fields: Option<&BTreeMap<String, String>>,
    ) -> Result<String, String> {
        if !src.contains("{{") {
            return Ok(src.to_string());
        }
        let user = BTreeMap::new();
        let scope = Scope {
            phase: Phase::Build,
            user: &user,
            template_dir: "",
            build_name: Some(self.ctx.build_name),
            build_type: Some(self.ctx.build_type),
            build: Some(&self.ctx.build_data),
            fields,
        };
        self.engine.render(src, &scope).map_err(|e| e.message)
    }

    /// Renders a value that may hold build data; text that is not a valid action (e.g. a
    /// script's own `{{.Names}}` after an escape) is kept as it is.
    pub fn render_lenient(&self, src: &str) -> String {
        match self.render(src, None) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "kept a value with braces verbatim");
                src.to_string()
            }
        }
    }

    async fn run_all(&mut self) -> Result<(), ProvisionError> {
        let ctx = self.ctx;
        if ctx.ssh.communicator == Communicator::Ssh {
            ctx.timeline.mark("SSH");
            let opts = connect_options(ctx)?;
            self.remote.set_options(opts);
            self.remote
                .connect_first(ctx.ui)
                .await
                .map_err(ProvisionError::Connect)?;
            if let Some(before) = ctx.before {
                ctx.timeline.mark("first boot");
                let session = self
                    .remote
                    .session(ctx.ui, None)
                    .await
                    .map_err(ProvisionError::Connect)?;
                before
                    .run(session, ctx.ui, ctx.build_name)
                    .await
                    .map_err(ProvisionError::Before)?;
            }
        }
        for p in ctx.provisioners {
            if let Err(e) = self.run_one(p, None).await {
                if matches!(e, ProvisionError::Cancelled) {
                    return Err(e);
                }
                if let Some(cleanup) = ctx.error_cleanup {
                    self.say("Provisioning step had errors: Running the cleanup provisioner, if present...");
                    let label = format!("error-cleanup-provisioner ({})", cleanup.kind);
                    if let Err(ce) = self.run_one(cleanup, Some(&label)).await {
                        if matches!(ce, ProvisionError::Cancelled) {
                            return Err(ce);
                        }
                        self.ctx.ui.error(&self.redact(&format!(
                            "==> {}: the error-cleanup-provisioner failed too: {ce}",
                            ctx.build_name
                        )));
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// One provisioner with its `pause_before`, `max_retries` and `timeout`.
    async fn run_one(
        &mut self,
        p: &PreparedProvisioner,
        label: Option<&str>,
    ) -> Result<(), ProvisionError> {
        self.ctx.timeline.mark(phase_name(p, label));
        if let Some(d) = p.pause_before {
            self.say(&pause_message(d));
            tokio::time::sleep(d).await;
        }
        let mut tries_left = p.max_retries;
        loop {
            let result = match p.timeout {
                Some(t) => match tokio::time::timeout(t, self.dispatch(p)).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::Timeout { after: t }),
                },
                None => self.dispatch(p).await,
            };
            let failure = match result {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            if let Failure::Ssh { source, .. } = &failure {
                if matches!(
                    **source,
                    SshError::ConnectCancelled { .. } | SshError::Cancelled { .. }
                ) {
                    return Err(ProvisionError::Cancelled);
                }
            }
            let err = ProvisionError::Provisioner {
                index: p.index,
                kind: label.map_or_else(|| p.kind.clone(), str::to_string),
                failure: Box::new(failure),
            };
            if tries_left == 0 {
                return Err(err);
            }
            let text = self.redact(&err.to_string());
            self.say(&retry_message(&text, tries_left));
            tries_left -= 1;
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    async fn dispatch(&mut self, p: &PreparedProvisioner) -> Result<(), Failure> {
        match &p.config {
            ProvisionerConfig::Shell(c) => shell::run(self, c).await,
            ProvisionerConfig::File(c) => file::run(self, c).await,
            ProvisionerConfig::ShellLocal(c) => local::shell_local(self, c).await,
            ProvisionerConfig::Breakpoint(c) => local::breakpoint(self, c).await,
            ProvisionerConfig::Ansible(c) => ansible::run(self, c).await,
            ProvisionerConfig::AnsibleLocal(c) => ansible_local::run(self, c).await,
            ProvisionerConfig::Puppet(c) => config_mgmt::puppet(self, c).await,
            ProvisionerConfig::Chef(c) => config_mgmt::chef(self, c).await,
            ProvisionerConfig::Salt(c) => config_mgmt::salt(self, c).await,
        }
    }
}

/// Packer's message before a provisioner with `pause_before`.
pub fn pause_message(d: Duration) -> String {
    format!(
        "Pausing {} before the next provisioner...",
        format_duration(d)
    )
}

/// Packer's message before another try (`max_retries`): the error quoted as Go's `%q` does.
pub fn retry_message(error: &str, tries_left: u32) -> String {
    format!("Provisioner failed with {error:?}, retrying with {tries_left} trie(s) left")
}

/// An [`Output`] over a [`Redactor`] and a closure, for callers that collect lines.
pub struct FnOutput<F: Fn(bool, &str) + Send + Sync> {
    pub redactor: Redactor,
    /// Called with `(is_error, masked line)`.
    pub sink: F,
}

impl<F: Fn(bool, &str) + Send + Sync> Output for FnOutput<F> {
    fn say(&self, text: &str) {
        (self.sink)(false, &self.redactor.redact(text));
    }

    fn error(&self, text: &str) {
        (self.sink)(true, &self.redactor.redact(text));
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::decode;

    fn ssh(text: &str) -> SshConfig {
        let (c, d) = decode(text, |mut o, dx| {
            let c = SshConfig::decode(&mut o, dx);
            o.finish(dx);
            c
        });
        assert!(!d.has_errors(), "{d:?}");
        c
    }

    fn ctx<'a>(ssh: &'a SshConfig, key: Option<&'a str>, out: &'a Ui) -> ProvisionContext<'a> {
        ProvisionContext {
            build_name: "b",
            build_type: "amazon-ebs",
            host: "10.0.0.5".into(),
            port: 2222,
            ssh,
            private_key: key,
            provisioners: &[],
            error_cleanup: None,
            build_data: BTreeMap::new(),
            ui: out,
            timeline: Box::leak(Box::new(Timeline::start())),
            before: None,
        }
    }

    /// The builder runs provisioning inside spawned tasks: the future must be `Send`.
    #[test]
    fn the_run_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let c = ssh(r#"{"ssh_username": "u"}"#);
        let ui = Ui::default();
        let context = ctx(&c, None, &ui);
        let cancel = Cancel::never();
        let fut = run(&context, &cancel);
        is_send(&fut);
    }

    #[test]
    fn ssh_options_map_onto_connect_options() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(
            &key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let ui = Ui::default();
        let c = ssh(&format!(
            r#"{{"ssh_username": "ubuntu", "ssh_private_key_file": "{}", "ssh_timeout": "42s",
                "ssh_handshake_attempts": 3, "ssh_keep_alive_interval": "-1s", "ssh_pty": true,
                "pause_before_connecting": "2s", "ssh_read_write_timeout": "7s",
                "ssh_ciphers": ["aes128-ctr"], "ssh_key_exchange_algorithms": ["curve25519-sha256"],
                "ssh_bastion_host": "jump", "ssh_bastion_password": "hunter22"}}"#,
            key.display()
        ));
        let o = connect_options(&ctx(&c, Some("TEMPKEY"), &ui)).unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.username.as_str()),
            ("10.0.0.5", 2222, "ubuntu")
        );
        // The key file wins over the temporary key.
        assert!(matches!(&o.auth, Auth::KeyFile { path, .. } if *path == key));
        assert_eq!(o.timeout, Duration::from_secs(42));
        assert_eq!(o.handshake_attempts, 3);
        assert_eq!(o.keepalive_interval, Duration::ZERO);
        assert!(o.pty);
        assert_eq!(o.pause_before_connecting, Duration::from_secs(2));
        assert_eq!(o.io_timeout, Duration::from_secs(7));
        assert_eq!(o.ciphers, Some(vec!["aes128-ctr".to_string()]));
        assert_eq!(
            o.kex_algorithms,
            Some(vec!["curve25519-sha256".to_string()])
        );
        let b = o.bastion.expect("bastion");
        assert_eq!(
            (b.host.as_str(), b.port, b.username.as_str()),
            ("jump", 22, "ubuntu")
        );
        // The bastion's own key file defaults to ssh_private_key_file, as in Packer.
        assert!(matches!(b.auth, Auth::KeyFile { .. }), "{:?}", b.auth);

        let c = ssh(r#"{"ssh_username": "ec2-user"}"#);
        let o = connect_options(&ctx(&c, Some("TEMPKEY"), &ui)).unwrap();
        assert!(matches!(o.auth, Auth::KeyMemory { .. }));
        assert_eq!(o.keepalive_interval, Duration::from_secs(5));
        assert_eq!(o.timeout, Duration::from_secs(300));
        assert_eq!((o.ciphers, o.kex_algorithms), (None, None));
        let c = ssh(r#"{"ssh_username": "u", "ssh_agent_auth": true}"#);
        let o = connect_options(&ctx(&c, None, &ui)).unwrap();
        assert!(matches!(o.auth, Auth::Agent { socket: None }));
        let c = ssh(r#"{"ssh_username": "u", "ssh_password": "pw-1234"}"#);
        let o = connect_options(&ctx(&c, None, &ui)).unwrap();
        assert!(matches!(o.auth, Auth::Password(_)));
        let c = ssh(r#"{"ssh_username": "u"}"#);
        let e = connect_options(&ctx(&c, None, &ui)).unwrap_err();
        assert!(
            e.to_string().starts_with("no way to log in over SSH as u"),
            "{e}"
        );
    }

    #[test]
    fn packers_pause_and_retry_messages() {
        assert_eq!(
            pause_message(Duration::from_secs(10)),
            "Pausing 10s before the next provisioner..."
        );
        assert_eq!(
            pause_message(Duration::from_secs(90)),
            "Pausing 1m30s before the next provisioner..."
        );
        assert_eq!(
            retry_message("script exited with \"3\"", 2),
            r#"Provisioner failed with "script exited with \"3\"", retrying with 2 trie(s) left"#
        );
    }

    #[test]
    fn exit_status_error_names_command_code_and_tail() {
        let e = ProvisionError::Provisioner {
            index: 2,
            kind: "shell".into(),
            failure: Box::new(Failure::ExitStatus {
                what: "script setup.sh".into(),
                command: "chmod +x /tmp/s.sh; /tmp/s.sh".into(),
                code: 3,
                valid: vec![0, 7],
                tail: vec!["oops".into(), "bad".into()],
            }),
        };
        assert_eq!(
            e.to_string(),
            "provisioner 3 (shell) failed: script setup.sh exited with status 3 (valid exit codes: 0, 7)\n  command: chmod +x /tmp/s.sh; /tmp/s.sh\n  last lines of output:\n    oops\n    bad"
        );
    }

    #[test]
    fn unexpected_disconnect_says_to_use_expect_disconnect() {
        let f = Failure::Disconnected {
            what: "script reboot.sh".into(),
            command: "/tmp/x.sh".into(),
            tail: vec![],
        };
        let text = f.to_string();
        assert!(text.contains("\"expect_disconnect\": true"), "{text}");
        assert!(text.contains("2300218"), "{text}");
    }
}
