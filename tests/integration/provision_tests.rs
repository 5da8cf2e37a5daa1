//! Provisioning (`provisioner::runtime::run`) against the test world's real sshd: the shell
//! provisioner's scripts, environment and quoting, sudo, exit codes and their error text, a
//! simulated reboot (the script kills its own SSH session's server processes), the file
//! provisioner both ways, shell-local, retries, timeouts, cancellation and the wait for SSH.
//!
//! Every test imports its own key pair, works in its own subdirectory of the world's sandbox
//! (`remote_folder` included, so no script lands in the host's /tmp) and prepares its
//! provisioners from a template through the real template pipeline.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgbuild::builder::amazon::config::AmazonEbsConfig;
use imgbuild::builder::BuilderConfig;
use imgbuild::communicator::ssh::SshConfig;
use imgbuild::prepare::{prepare, Selection};
use imgbuild::provisioner::runtime::{
    self as provision, Failure, FnOutput, ProvisionContext, ProvisionError,
};
use imgbuild::provisioner::PreparedProvisioner;
use imgbuild::redact::Redactor;
use imgbuild::template::diag::{Diagnostics, SourceFile};
use imgbuild::template::funcs::{Clock, Engine};
use imgbuild::template::variables::bind;
use imgbuild::template::Template;
use serde_json::{json, Value};

use crate::support::world::{ssh_keygen, unique_name, TestWorld};

const BUILD: &str = "prov-test";

/// A key pair of the test's own, a local scratch directory and a remote directory in the
/// sandbox.
struct Fx {
    world: &'static TestWorld,
    local: tempfile::TempDir,
    key: PathBuf,
    name: String,
    remote: String,
}

impl Fx {
    fn new(world: &'static TestWorld, prefix: &str) -> Fx {
        let local = tempfile::Builder::new()
            .prefix("imgbuild-prov-test.")
            .tempdir()
            .expect("tempdir");
        let name = unique_name(prefix);
        let (key, public) = ssh_keygen(local.path(), &name);
        world
            .import_key_pair(&name, &public)
            .expect("import key pair");
        let remote = world.sandbox().join(&name).display().to_string();
        let fx = Fx {
            world,
            local,
            key,
            name,
            remote,
        };
        fx.sh(&format!("mkdir -p {}", q(&fx.remote)));
        fx
    }

    fn sh(&self, cmd: &str) -> String {
        self.world
            .ssh_exec_ok(&self.key, cmd)
            .unwrap_or_else(|e| panic!("ssh {cmd:?}: {e}\n{}", self.world.logs()))
    }

    fn r(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote)
    }

    fn local(&self, rel: &str) -> PathBuf {
        self.local.path().join(rel)
    }

    /// Writes a local file (parents created) and returns its path as a string.
    fn write_local(&self, rel: &str, text: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.local(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    }

    /// The bytes of a remote file, exactly (hex through od, so nothing is trimmed).
    fn remote_bytes(&self, path: &str) -> Vec<u8> {
        let hex = self.sh(&format!("od -An -v -tx1 {} | tr -d ' \\n'", q(path)));
        let hex = hex.trim();
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    }

    fn remote_text(&self, path: &str) -> String {
        String::from_utf8(self.remote_bytes(path)).expect("utf-8")
    }

    fn template(&self, provisioners: Value, cleanup: Option<Value>) -> Value {
        let mut t = json!({
            "builders": [{
                "type": "amazon-ebs",
                "name": BUILD,
                "region": "us-east-1",
                "source_ami": "ami-12345678",
                "instance_type": "t3.micro",
                "ami_name": "prov-test",
                "ssh_username": self.world.ssh_user(),
                "ssh_private_key_file": self.key.display().to_string(),
                "ssh_timeout": "30s"
            }],
            "provisioners": provisioners
        });
        if let Some(c) = cleanup {
            t["error-cleanup-provisioner"] = c;
        }
        t
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        let _ = self.world.delete_key_pair(&self.name);
    }
}

fn q(s: &str) -> String {
    imgbuild::communicator::ssh::shell_quote(s)
}

/// The template's first build: its SSH options, provisioners and error-cleanup provisioner.
struct Prepared {
    ssh: SshConfig,
    provisioners: Vec<PreparedProvisioner>,
    cleanup: Option<PreparedProvisioner>,
}

fn prepare_template(template: &Value, dir: &Path) -> Prepared {
    let text = serde_json::to_string_pretty(template).expect("json");
    let file = SourceFile::new("provision-test.json", text);
    let mut diags = Diagnostics::default();
    let t = Template::parse(file, dir.display().to_string(), &mut diags).expect("template");
    let clock = Clock::now();
    let engine = Engine::new(clock);
    let vars = bind(&t, &[], &engine, &mut diags);
    let mut prepared = prepare(&t, &vars, &Selection::default(), &engine, clock, &mut diags);
    if diags.has_errors() {
        let text: Vec<String> = diags
            .items
            .iter()
            .map(|d| d.render(&Redactor::default(), false))
            .collect();
        panic!("template problems:\n{}", text.join("\n"));
    }
    let b = prepared.builds.remove(0);
    #[allow(unreachable_patterns)]
    let cfg: AmazonEbsConfig = match b.builder {
        BuilderConfig::AmazonEbs(cfg) => *cfg,
        _ => panic!("not an amazon-ebs build"),
    };
    Prepared {
        ssh: cfg.ssh,
        provisioners: b.provisioners,
        cleanup: b.error_cleanup,
    }
}

/// What a provisioning run printed and returned.
struct Run {
    /// `(is_error, line)`
    lines: Vec<(bool, String)>,
    result: Result<(), ProvisionError>,
    elapsed: Duration,
}

impl Run {
    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(e, l)| format!("{}{l}", if *e { "E " } else { "" }))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|(_, l)| l == line)
    }

    fn ok(&self) {
        if let Err(e) = &self.result {
            panic!("provisioning failed: {e}\n--- output ---\n{}", self.text());
        }
    }

    fn err(&self) -> &ProvisionError {
        match &self.result {
            Ok(()) => panic!("provisioning succeeded\n--- output ---\n{}", self.text()),
            Err(e) => e,
        }
    }
}

/// Options of one run besides the template.
#[derive(Default)]
struct Opts {
    port: Option<u16>,
    secrets: Vec<String>,
    /// Cancel the run when the output has this line (not after a fixed time: a loaded machine
    /// may not have started the script by then).
    cancel_on: Option<String>,
    build_data: Vec<(&'static str, String)>,
    /// `(line, path)`: when the output has `line`, create the file `path` (which the remote
    /// script of [`reboot_script`] waits for).
    touch_on: Option<(String, String)>,
}

async fn run_with(fx: &Fx, template: Value, opts: Opts) -> Run {
    let p = prepare_template(&template, fx.local.path());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let mut redactor = Redactor::default();
    for s in &opts.secrets {
        redactor.add(s);
    }
    let touch_on = opts.touch_on.clone();
    let (tx, rx) = imgbuild::cancel::channel();
    let cancel_on = opts.cancel_on.clone();
    let out = FnOutput {
        redactor,
        sink: move |is_err: bool, line: &str| {
            sink_lines
                .lock()
                .expect("lines")
                .push((is_err, line.to_string()));
            if let Some((want, path)) = &touch_on {
                if line == want {
                    std::fs::write(path, "").expect("create the flag file");
                }
            }
            if cancel_on.as_deref() == Some(line) {
                tx.cancel();
            }
        },
    };
    let mut build_data = std::collections::BTreeMap::new();
    build_data.insert("ID".to_string(), "i-0123456789abcdef0".to_string());
    for (k, v) in opts.build_data {
        build_data.insert(k.to_string(), v);
    }
    let ctx = ProvisionContext {
        build_name: BUILD,
        build_type: "amazon-ebs",
        host: fx.world.ssh_host().to_string(),
        port: opts.port.unwrap_or(fx.world.ssh_port()),
        ssh: &p.ssh,
        private_key: None,
        provisioners: &p.provisioners,
        error_cleanup: p.cleanup.as_ref(),
        build_data,
        ui: &out,
        timeline: &imgbuild::timeline::Timeline::start(),
        before: None,
    };
    let started = Instant::now();
    // Bounded: no test provisioning run takes minutes, even on a loaded machine.
    let result = tokio::time::timeout(Duration::from_secs(300), provision::run(&ctx, &rx))
        .await
        .expect("provisioning finished within 300 s");
    let elapsed = started.elapsed();
    let lines = lines.lock().expect("lines").clone();
    Run {
        lines,
        result,
        elapsed,
    }
}

async fn run(fx: &Fx, template: Value) -> Run {
    run_with(fx, template, Opts::default()).await
}

/// A value with every character a shell would otherwise interpret.
const NASTY: &str = "it's \"quoted\" $HOME ${PATH} `id` $(id) \\back\\ * ? ; | & > <\nsecond line\ttab  two spaces '' end'";

// ------------------------------------------------------------------- shell ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_env_values_reach_inline_script_and_scripts_unchanged() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-env");
    let out = fx.r("out");
    fx.sh(&format!("mkdir -p {}", q(&out)));
    let dump = |tag: &str| {
        format!(
            "printf '%s' \"$NASTY\" > \"$OUT/{tag}.nasty\"; printf '%s' \"$PACKER_BUILD_NAME\" > \"$OUT/{tag}.name\"; printf '%s' \"$PACKER_BUILDER_TYPE\" > \"$OUT/{tag}.type\"; printf '%s' \"$EMPTY\" > \"$OUT/{tag}.empty\"; printf '%s' \"$ID\" > \"$OUT/{tag}.id\"; echo \"hello from {tag}\"; echo \"warning from {tag}\" >&2"
        )
    };
    let s1 = fx.write_local(
        "s1.sh",
        &format!("#!/bin/sh\nset -e\n{}\n", dump("s1")),
        0o644,
    );
    let s2 = fx.write_local(
        "s2.sh",
        &format!("#!/bin/sh\r\nset -e\r\n{}\r\n", dump("s2")),
        0o644,
    );
    let s3 = fx.write_local(
        "s3.sh",
        &format!("#!/bin/sh\nset -e\n{}\n", dump("s3")),
        0o644,
    );
    let env = json!([
        format!("NASTY={NASTY}"),
        format!("OUT={out}"),
        "EMPTY=",
        "ID={{build `ID`}}"
    ]);
    let folder = fx.r("scripts");
    fx.sh(&format!("mkdir -p {}", q(&folder)));
    let template = fx.template(
        json!([
            {"type": "shell", "inline": [dump("inline")], "environment_vars": env, "remote_folder": folder},
            {"type": "shell", "script": s1, "environment_vars": env, "remote_folder": folder},
            {"type": "shell", "scripts": [s2, s3], "environment_vars": env, "remote_folder": folder}
        ]),
        None,
    );
    let r = run(&fx, template).await;
    r.ok();
    for tag in ["inline", "s1", "s2", "s3"] {
        assert_eq!(
            fx.remote_text(&format!("{out}/{tag}.nasty")),
            NASTY,
            "{tag}"
        );
        assert_eq!(fx.remote_text(&format!("{out}/{tag}.name")), BUILD, "{tag}");
        assert_eq!(
            fx.remote_text(&format!("{out}/{tag}.type")),
            "amazon-ebs",
            "{tag}"
        );
        assert_eq!(fx.remote_text(&format!("{out}/{tag}.empty")), "", "{tag}");
        assert_eq!(
            fx.remote_text(&format!("{out}/{tag}.id")),
            "i-0123456789abcdef0",
            "{tag}"
        );
        assert!(
            r.has_line(&format!("    {BUILD}: hello from {tag}")),
            "{tag}\n{}",
            r.text()
        );
        assert!(
            r.lines
                .iter()
                .any(|(e, l)| *e && l == &format!("    {BUILD}: warning from {tag}")),
            "stderr line of {tag} as an error line\n{}",
            r.text()
        );
    }
    assert!(
        r.has_line(&format!(
            "==> {BUILD}: Provisioning with shell script: {s1}"
        )),
        "{}",
        r.text()
    );
    // The scripts were removed (not skip_clean) and none went to /tmp.
    assert_eq!(fx.sh(&format!("ls -A {}", q(&folder))).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_sudo_forms_and_env_var_file() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-sudo");
    let out = fx.r("out");
    fx.sh(&format!("mkdir -p {}", q(&out)));
    let folder = fx.r("scripts");
    fx.sh(&format!("mkdir -p {}", q(&folder)));
    let env = json!([format!("NASTY={NASTY}"), format!("OUT={out}")]);
    let template = fx.template(
        json!([
            {
                "type": "shell",
                "inline": ["id -u > \"$OUT/e.uid\"", "printf '%s' \"$NASTY\" > \"$OUT/e.nasty\""],
                "environment_vars": env,
                "remote_folder": folder,
                "execute_command": "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh -eu '{{ .Path }}'"
            },
            {
                "type": "shell",
                "inline": [
                    "id -u > \"$OUT/f.uid\"",
                    "printf '%s' \"$NASTY\" > \"$OUT/f.nasty\"",
                    "stat -c %a \"$1\" > \"$OUT/f.varfile_mode\"",
                    "echo \"$1\" > \"$OUT/f.varfile_path\""
                ],
                "environment_vars": env,
                "remote_folder": folder,
                "use_env_var_file": true,
                "execute_command": "chmod +x {{.Path}}; sudo sh -c '. {{.EnvVarFile}} && {{.Path}} {{.EnvVarFile}}'"
            }
        ]),
        None,
    );
    let r = run(&fx, template).await;
    r.ok();
    assert_eq!(fx.remote_text(&format!("{out}/e.uid")), "0\n");
    assert_eq!(fx.remote_text(&format!("{out}/e.nasty")), NASTY);
    assert_eq!(fx.remote_text(&format!("{out}/f.uid")), "0\n");
    assert_eq!(fx.remote_text(&format!("{out}/f.nasty")), NASTY);
    assert_eq!(fx.remote_text(&format!("{out}/f.varfile_mode")), "600\n");
    let varfile = fx.remote_text(&format!("{out}/f.varfile_path"));
    assert!(
        varfile.starts_with(&format!("{folder}/varfile_")),
        "{varfile}"
    );
    // The env var file and the scripts were cleaned up.
    assert_eq!(fx.sh(&format!("ls -A {}", q(&folder))).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_exit_codes_error_text_and_error_cleanup() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-exit");
    let folder = fx.remote.clone();
    let marker = fx.r("cleanup-ran");
    let template = fx.template(
        json!([
            {"type": "shell", "inline": ["echo three", "exit 3"], "valid_exit_codes": [0, 3], "remote_folder": folder},
            {"type": "shell", "inline": [
                "echo to-stdout",
                "echo 'password=hunter2-secret' >&2",
                "echo boom-1 >&2",
                "echo boom-2 >&2",
                "exit 7"
            ], "environment_vars": ["TOKEN=hunter2-secret"], "remote_folder": folder},
            {"type": "shell", "inline": [format!("touch {}", q(&fx.r("never")))], "remote_folder": folder}
        ]),
        Some(json!({"type": "shell", "inline": [format!("touch {}", q(&marker))], "remote_folder": folder})),
    );
    let r = run_with(
        &fx,
        template,
        Opts {
            secrets: vec!["hunter2-secret".into()],
            ..Opts::default()
        },
    )
    .await;
    let e = r.err();
    match e {
        ProvisionError::Provisioner {
            index,
            kind,
            failure,
        } => {
            assert_eq!(*index, 1);
            assert_eq!(kind, "shell");
            match failure.as_ref() {
                Failure::ExitStatus {
                    code, tail, valid, ..
                } => {
                    assert_eq!(*code, 7);
                    assert_eq!(valid, &vec![0]);
                    assert_eq!(tail.last().map(String::as_str), Some("boom-2"));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(text.starts_with("provisioner 2 (shell) failed: script inline (5 commands) exited with status 7 (valid exit codes: 0)"), "{text}");
    assert!(text.contains("command: chmod +x "), "{text}");
    assert!(text.contains("boom-1\n    boom-2"), "{text}");
    assert!(
        !text.contains("hunter2-secret"),
        "secret in the error: {text}"
    );
    assert!(text.contains("<sensitive>"), "{text}");
    assert!(!r.text().contains("hunter2-secret"), "{}", r.text());
    assert!(r.has_line(&format!("    {BUILD}: three")), "{}", r.text());
    // The error-cleanup provisioner ran; the provisioner after the failure did not.
    fx.sh(&format!("test -f {}", q(&marker)));
    assert_eq!(
        fx.sh(&format!(
            "test -e {} && echo yes || echo no",
            q(&fx.r("never"))
        ))
        .trim(),
        "no"
    );
    assert!(r.has_line(&format!(
        "==> {BUILD}: Provisioning step had errors: Running the cleanup provisioner, if present..."
    )));
}

/// A script that "reboots" the instance: it kills the server-side processes of its own SSH
/// session (never the world's main sshd, whose PID it is given), so the connection drops the
/// way it does when a machine goes down.
/// A "reboot": kills the sshd processes of this session (not the world's main sshd). It says
/// `going down` first and waits (at most a minute) until the file `seen` exists, which the test
/// creates when that line has reached it: a kill right after the echo could lose the line.
fn reboot_script(main_sshd: u32, seen: &str) -> String {
    let seen = q(seen);
    format!(
        r#"MAIN={main_sshd}
pid=$$
victims=
while [ "$pid" -gt 1 ]; do
  [ "$pid" = "$MAIN" ] && break
  case "$(cat /proc/$pid/comm)" in sshd*) victims="$victims $pid";; esac
  pid=$(sed 's/^.*) //' /proc/$pid/stat | cut -d' ' -f2)
done
[ -n "$victims" ] || {{ echo 'no sshd session process found' >&2; exit 9; }}
echo "going down"
i=0
while [ ! -e {seen} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
sudo -n kill -9 $victims
sleep 2
"#
    )
}

fn main_sshd_pid(world: &TestWorld) -> u32 {
    world
        .pids()
        .into_iter()
        .find(|(n, _)| n == "sshd")
        .map(|(_, p)| p)
        .expect("the world's sshd pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_expect_disconnect_reconnects_and_goes_on() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-reboot");
    let folder = fx.remote.clone();
    let after = fx.r("after-reboot");
    let seen = fx.r("going-down-seen");
    let template = fx.template(
        json!([
            {"type": "shell", "inline": [reboot_script(main_sshd_pid(world), &seen)], "expect_disconnect": true,
             "start_retry_timeout": "30s", "remote_folder": folder},
            {"type": "shell", "inline": [format!("echo ran > {}", q(&after)), "echo next provisioner ran"], "remote_folder": folder}
        ]),
        None,
    );
    let touch_on = Some((format!("    {BUILD}: going down"), seen));
    let r = run_with(
        &fx,
        template,
        Opts {
            touch_on,
            ..Opts::default()
        },
    )
    .await;
    r.ok();
    assert_eq!(fx.remote_text(&after), "ran\n");
    assert!(
        r.has_line(&format!("    {BUILD}: going down")),
        "{}",
        r.text()
    );
    assert!(
        r.has_line(&format!(
            "==> {BUILD}: The script disconnected (expected); going on"
        )),
        "{}",
        r.text()
    );
    assert!(
        r.has_line(&format!(
            "==> {BUILD}: The SSH connection was lost; reconnecting..."
        )),
        "{}",
        r.text()
    );
    assert!(r.has_line(&format!("    {BUILD}: next provisioner ran")));
    // The script was removed after the reconnection.
    assert_eq!(
        fx.sh(&format!(
            "ls -A {} | grep -c '^script_' || true",
            q(&folder)
        ))
        .trim(),
        "0"
    );
    eprintln!(
        "prov: reboot + reconnect + next provisioner: {:?}",
        r.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_unexpected_disconnect_says_to_use_expect_disconnect() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-drop");
    let seen = fx.r("going-down-seen");
    let template = fx.template(
        json!([
            {"type": "shell", "inline": [reboot_script(main_sshd_pid(world), &seen)], "remote_folder": fx.remote}
        ]),
        None,
    );
    let touch_on = Some((format!("    {BUILD}: going down"), seen));
    let r = run_with(
        &fx,
        template,
        Opts {
            touch_on,
            ..Opts::default()
        },
    )
    .await;
    let e = r.err();
    assert!(
        matches!(e.failure(), Some(Failure::Disconnected { .. })),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("disconnected unexpectedly"), "{text}");
    assert!(text.contains("\"expect_disconnect\": true"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_max_retries_and_pause_before() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-retry");
    let once = fx.r("once");
    let template = fx.template(
        json!([
            {"type": "shell", "pause_before": "1s", "max_retries": 2, "remote_folder": fx.remote, "inline": [
                format!("if [ -f {0} ]; then echo second try; else touch {0}; echo first try fails >&2; exit 1; fi", q(&once))
            ]}
        ]),
        None,
    );
    let r = run(&fx, template).await;
    r.ok();
    assert!(
        r.has_line(&format!(
            "==> {BUILD}: Pausing 1s before the next provisioner..."
        )),
        "{}",
        r.text()
    );
    let retry = r
        .lines
        .iter()
        .find(|(_, l)| l.contains("Provisioner failed with"))
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| panic!("no retry line\n{}", r.text()));
    assert!(
        retry.starts_with(&format!("==> {BUILD}: Provisioner failed with \"provisioner 1 (shell) failed: script inline (1 command) exited with status 1")),
        "{retry}"
    );
    assert!(retry.ends_with(", retrying with 2 trie(s) left"), "{retry}");
    assert!(
        r.has_line(&format!("    {BUILD}: second try")),
        "{}",
        r.text()
    );
    // The retry came after the failure was reported (pause 1 s, retry delay 2 s between them).
    let at = |needle: &str| {
        r.lines
            .iter()
            .position(|(_, l)| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line\n{}", r.text()))
    };
    assert!(
        at("Provisioner failed with") < at("second try"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_timeout_abandons_the_command_and_fails() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-timeout");
    let marker = fx.r("cleanup-after-timeout");
    let template = fx.template(
        json!([
            {"type": "shell", "timeout": "2s", "remote_folder": fx.remote, "inline": ["echo sleeping", "sleep 900"]}
        ]),
        Some(json!({"type": "shell", "inline": [format!("touch {}", q(&marker))], "remote_folder": fx.remote})),
    );
    let r = run(&fx, template).await;
    let e = r.err();
    assert!(
        matches!(e.failure(), Some(Failure::Timeout { after }) if *after == Duration::from_secs(2)),
        "{e:?}"
    );
    assert!(e.to_string().contains("timed out after 2s"), "{e}");
    // The command sleeps longer than a provisioning run may take here (300 s): that the run
    // ended at all shows the command was abandoned.
    // The session is still usable after the abandoned command: the cleanup provisioner ran.
    fx.sh(&format!("test -f {}", q(&marker)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_cancel_stops_a_running_script_at_once() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-cancel");
    let template = fx.template(
        json!([{"type": "shell", "remote_folder": fx.remote, "inline": ["echo sleeping", "sleep 900"]}]),
        None,
    );
    let r = run_with(
        &fx,
        template,
        Opts {
            cancel_on: Some(format!("    {BUILD}: sleeping")),
            ..Opts::default()
        },
    )
    .await;
    assert!(
        matches!(r.err(), ProvisionError::Cancelled),
        "{:?}",
        r.err()
    );
    assert!(
        r.has_line(&format!("    {BUILD}: sleeping")),
        "{}",
        r.text()
    );
    // The script sleeps longer than a provisioning run may take here (300 s): that the run
    // ended at all shows the cancel stopped it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_wait_for_ssh_says_why_and_times_out() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-wait");
    // A port nothing listens on (bound, then released).
    let port = crate::support::tools::closed_port();
    let mut template = fx.template(json!([]), None);
    template["builders"][0]["ssh_timeout"] = json!("2s");
    let r = run_with(
        &fx,
        template,
        Opts {
            port: Some(port),
            ..Opts::default()
        },
    )
    .await;
    assert!(
        matches!(r.err(), ProvisionError::Connect(_)),
        "{:?}",
        r.err()
    );
    assert!(r.has_line(&format!(
        "==> {BUILD}: Waiting for SSH to become available..."
    )));
    let waiting: Vec<&String> = r
        .lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.contains("Still waiting for SSH"))
        .collect();
    assert_eq!(waiting.len(), 1, "one line per reason\n{}", r.text());
    assert!(waiting[0].contains("connection refused"), "{}", waiting[0]);
    assert!(
        r.err().to_string().contains("timed out after"),
        "{}",
        r.err()
    );
}

// -------------------------------------------------------------------- file ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_file_trailing_slash_rule_content_and_download() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-file");
    let tree = fx.local("tree");
    fx.write_local("tree/a.txt", "a\n", 0o644);
    fx.write_local("tree/sub/run.sh", "#!/bin/sh\necho hi\n", 0o755);
    let single = fx.write_local("single.conf", "single\n", 0o640);
    let big = fx.local("big.bin");
    std::fs::write(&big, vec![7u8; 9 * 1024 * 1024]).expect("big file");
    for d in ["with", "contents", "files"] {
        fx.sh(&format!("mkdir -p {}", q(&fx.r(d))));
    }
    let template = fx.template(
        json!([
            {"type": "file", "source": tree.display().to_string(), "destination": fx.r("with")},
            {"type": "file", "source": format!("{}/", tree.display()), "destination": fx.r("contents")},
            {"type": "file", "source": single, "destination": fx.r("files/")},
            {"type": "file", "source": single, "destination": fx.r("files/renamed.conf")},
            {"type": "file", "content": "id={{build `ID`}}\n", "destination": fx.r("files/content.txt")},
            {"type": "file", "source": big.display().to_string(), "destination": fx.r("big.bin")},
            {"type": "file", "direction": "download", "source": fx.r("with/tree/sub/run.sh"),
             "destination": fx.local("down/").display().to_string()},
            {"type": "file", "direction": "download", "source": fx.r("contents/"),
             "destination": fx.local("down-tree").display().to_string()}
        ]),
        None,
    );
    let r = run(&fx, template).await;
    r.ok();
    let listing = |dir: &str| -> Vec<String> {
        fx.sh(&format!(
            "cd {} && find . -mindepth 1 -printf '%y %m %P\\n' | LC_ALL=C sort",
            q(dir)
        ))
        .lines()
        .map(str::to_string)
        .collect()
    };
    assert_eq!(
        listing(&fx.r("with")),
        vec![
            "d 755 tree",
            "d 755 tree/sub",
            "f 644 tree/a.txt",
            "f 755 tree/sub/run.sh"
        ]
    );
    assert_eq!(
        listing(&fx.r("contents")),
        vec!["d 755 sub", "f 644 a.txt", "f 755 sub/run.sh"]
    );
    assert_eq!(
        listing(&fx.r("files")),
        vec![
            "f 640 renamed.conf",
            "f 640 single.conf",
            "f 644 content.txt"
        ]
    );
    assert_eq!(
        fx.remote_text(&fx.r("files/content.txt")),
        "id=i-0123456789abcdef0\n"
    );
    assert_eq!(
        fx.sh(&format!("stat -c %s {}", q(&fx.r("big.bin")))).trim(),
        (9 * 1024 * 1024).to_string()
    );
    assert!(
        r.lines
            .iter()
            .any(|(_, l)| l.starts_with(&format!("==> {BUILD}: Uploaded 9.0 MiB in "))),
        "{}",
        r.text()
    );
    assert_eq!(
        std::fs::read_to_string(fx.local("down/run.sh")).expect("downloaded file"),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(fx.local("down-tree/sub/run.sh")).expect("downloaded tree"),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(fx.local("down-tree/a.txt")).expect("downloaded tree"),
        "a\n"
    );
    assert!(
        r.has_line(&format!(
            "==> {BUILD}: Uploading {} => {}",
            tree.display(),
            fx.r("with")
        )),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_file_missing_remote_destination_and_missing_source_are_clear() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-file-missing");
    fx.write_local("tree/a.txt", "a\n", 0o644);
    let missing_dir = fx.r("no/such/dir");
    let template = fx.template(
        json!([{"type": "file", "source": fx.local("tree").display().to_string(), "destination": missing_dir}]),
        None,
    );
    let r = run(&fx, template).await;
    let text = r.err().to_string();
    assert!(
        text.starts_with("provisioner 1 (file) failed: uploading the directory"),
        "{text}"
    );
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains(&missing_dir), "{text}");

    let gone = fx.local("generated-later.txt").display().to_string();
    let template = fx.template(
        json!([{"type": "file", "source": gone, "destination": fx.r("x"), "generated": true}]),
        None,
    );
    let r = run(&fx, template).await;
    let text = r.err().to_string();
    assert!(text.contains(&format!("cannot upload {gone}")), "{text}");
    assert!(text.contains("generated"), "{text}");

    let template = fx.template(
        json!([{"type": "file", "direction": "download", "source": fx.r("nope.txt"),
                "destination": fx.local("d/").display().to_string()}]),
        None,
    );
    let r = run(&fx, template).await;
    let text = r.err().to_string();
    assert!(text.contains("no such file or directory"), "{text}");
}

// -------------------------------------------------------------- shell-local ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_local_output_env_and_exit_codes() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-local");
    let out = fx.local("nasty.out").display().to_string();
    let script = fx.write_local(
        "local.sh",
        "#!/bin/sh\necho \"local script for $PACKER_BUILD_NAME\"\nexit 4\n",
        0o755,
    );
    let template = fx.template(
        json!([
            {"type": "shell-local", "inline": [
                "echo \"local $PACKER_BUILDER_TYPE\"",
                format!("printf '%s' \"$NASTY\" > {}", q(&out)),
                "echo to-stderr >&2"
            ], "environment_vars": [format!("NASTY={NASTY}")]},
            {"type": "shell-local", "script": script, "valid_exit_codes": [4]},
            {"type": "shell-local", "only_on": ["windows"], "inline": ["exit 1"]},
            {"type": "breakpoint", "disable": true, "note": "not now"},
            {"type": "shell-local", "inline": ["echo failing >&2", "exit 5"]}
        ]),
        None,
    );
    let r = run(&fx, template).await;
    assert!(
        r.has_line(&format!("    {BUILD}: local amazon-ebs")),
        "{}",
        r.text()
    );
    assert!(
        r.lines
            .iter()
            .any(|(e, l)| *e && l == &format!("    {BUILD}: to-stderr")),
        "{}",
        r.text()
    );
    assert_eq!(std::fs::read_to_string(&out).expect("written"), NASTY);
    assert!(r.has_line(&format!("    {BUILD}: local script for {BUILD}")));
    assert!(
        r.has_line(&format!(
        "==> {BUILD}: Skipping shell-local due to runtime OS (linux is not in only_on: windows)"
    )),
        "{}",
        r.text()
    );
    assert!(r.has_line(&format!(
        "==> {BUILD}: Breakpoint provisioner with note \"not now\" disabled; continuing..."
    )));
    let e = r.err();
    assert!(
        matches!(e.failure(), Some(Failure::ExitStatus { code: 5, .. })),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("provisioner 5 (shell-local) failed: local script "),
        "{text}"
    );
    assert!(text.contains("failing"), "{text}");
}

/// A local process still running when `timeout` strikes is killed with its whole group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_shell_local_timeout_kills_the_process_group() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-local-timeout");
    let pidfile = fx.local("sleep.pid").display().to_string();
    // 3 s: on a loaded machine starting the shell and its `sleep` can take a good part of a
    // second, and the pid file must be written before the timeout strikes. The `sleep` lasts
    // far longer than the wait below, so only the group kill can end it in time.
    let template = fx.template(
        json!([{"type": "shell-local", "timeout": "3s", "inline": [
            format!("sleep 600 & echo $! > {}", q(&pidfile)),
            "echo started",
            "wait"
        ]}]),
        None,
    );
    let r = run(&fx, template).await;
    assert!(
        matches!(r.err().failure(), Some(Failure::Timeout { .. })),
        "{:?}",
        r.err()
    );
    assert!(r.has_line(&format!("    {BUILD}: started")), "{}", r.text());
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let stat = format!("/proc/{}/stat", pid.trim());
    // A bound on the wait, not a measure: it ends as soon as the process is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    // Gone, or a zombie waiting for a reaper: either way no longer running.
    let dead = || match std::fs::read_to_string(&stat) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    };
    while !dead() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = !dead();
    if alive {
        // Not left running for ten minutes after a failure: the `sleep` this test started.
        if let Ok(p) = pid.trim().parse::<i32>() {
            // SAFETY: kill(2) on a process this test's script started.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
    }
    assert!(!alive, "the background sleep {} still runs", pid.trim());
}

/// Through the binary (a null build) with stdin from /dev/null, so that the test does not depend
/// on its own stdin (a terminal when run by hand, where the breakpoint would wait for Enter).
#[test]
fn prov_breakpoint_without_a_terminal_goes_on() {
    let world = world_or_skip!(shared);
    let fx = crate::support::null::NullFx::new(world, "prov-break");
    let t = json!({
        "builders": [fx.builder(json!({"name": "bp"}))],
        "provisioners": [
            {"type": "breakpoint", "note": "look"},
            {"type": "shell", "remote_folder": fx.remote, "inline": ["echo after the breakpoint"]}
        ]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let paused = r
        .stdout
        .lines()
        .position(|l| {
            l.contains("Pausing at breakpoint provisioner with note \"look\".")
                && l.contains("No terminal is attached")
        })
        .unwrap_or_else(|| panic!("the breakpoint's line in:\n{}", r.stdout));
    let after = r
        .stdout
        .lines()
        .position(|l| l.ends_with("bp: after the breakpoint"))
        .unwrap_or_else(|| panic!("the next provisioner's line in:\n{}", r.stdout));
    assert!(paused < after, "{}", r.stdout);
}

// ------------------------------------------------------ web-worker-shaped run ---

/// The web worker template's provisioning (same kinds, order, uploads and environment
/// variables; the real `provisioners/` trees), with scripts that write only in the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_web_worker_shaped_sequence_runs_end_to_end() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-webworker");
    let root = fx.r("mailape");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners");
    let p = |rel: &str| repo.join(rel).display().to_string();
    let make_dirs = fx.write_local(
        "make_aws_directories.sh",
        &format!(
            "#!/usr/bin/env bash\nset -euo pipefail\nmkdir -p {0}/ubuntu {0}/apache {0}/django {0}/etc {0}/log\n",
            q(&root)
        ),
        0o755,
    );
    let step = |name: &str| {
        fx.write_local(
            &format!("{name}.sh"),
            &format!(
                "#!/usr/bin/env bash\nset -euo pipefail\n: \"${{WEB_DOMAIN:?}}\" \"${{DJANGO_DB_PASSWORD:?}}\"\nprintf '%s\\n' \"$DJANGO_DB_HOST\" \"$WEB_DOMAIN\" > {root}/etc/{name}.env\nls {root}/django > {root}/log/{name}.ls\necho \"{name} done\"\n",
                root = q(&root)
            ),
            0o755,
        )
    };
    let scripts = [
        step("install_all_packages"),
        step("configure_apache"),
        step("make_mailape_environment_ini"),
        step("configure_celery"),
    ];
    let template = fx.template(
        json!([
            {"type": "shell", "script": make_dirs, "remote_folder": fx.remote},
            {"type": "file", "source": p("requirements.common.txt"), "destination": format!("{root}/requirements.common.txt")},
            {"type": "file", "source": p("requirements.production.txt"), "destination": format!("{root}/requirements.production.txt")},
            {"type": "file", "source": format!("{}/", p("ubuntu")), "destination": format!("{root}/ubuntu")},
            {"type": "file", "source": format!("{}/", p("apache")), "destination": format!("{root}/apache")},
            {"type": "file", "source": format!("{}/", p("django")), "destination": format!("{root}/django")},
            {"type": "shell", "inline": [format!("find {}/django -name '*.pyc' -delete", q(&root))], "remote_folder": fx.remote},
            {"type": "shell", "scripts": scripts, "remote_folder": fx.remote, "environment_vars": [
                "DJANGO_DB_HOST=db.internal",
                "DJANGO_DB_PASSWORD=p@ss 'w\"rd $x",
                "DJANGO_SECRET=s3cr3t-value",
                "EMAIL_HOST=smtp.example.com",
                "EMAIL_HOST_PASSWORD=",
                "WEB_DOMAIN=example.com"
            ]}
        ]),
        None,
    );
    let r = run_with(
        &fx,
        template,
        Opts {
            secrets: vec!["s3cr3t-value".into()],
            ..Opts::default()
        },
    )
    .await;
    r.ok();
    assert_eq!(
        fx.remote_text(&format!("{root}/etc/configure_celery.env")),
        "db.internal\nexample.com\n"
    );
    assert_eq!(
        fx.remote_text(&format!("{root}/requirements.common.txt")),
        std::fs::read_to_string(repo.join("requirements.common.txt")).expect("local")
    );
    let ls = fx.remote_text(&format!("{root}/log/configure_celery.ls"));
    assert!(ls.contains("manage.py") && ls.contains("config"), "{ls}");
    assert!(r.has_line(&format!("    {BUILD}: configure_celery done")));
    let local_files = walk_count(&repo.join("django"));
    let remote_files: usize = fx
        .sh(&format!("find {}/django -type f | wc -l", q(&root)))
        .trim()
        .parse()
        .expect("count");
    assert_eq!(remote_files, local_files);
    eprintln!(
        "prov: web-worker-shaped provisioning (8 provisioners, connect included): {:?}",
        r.elapsed
    );
}

fn walk_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let t = e.file_type().expect("type");
        if t.is_dir() {
            n += walk_count(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

// ------------------------------------------------- reconnect through an outage ---

/// A TCP forwarder on 127.0.0.1 to the world's sshd that can be taken down (its port then
/// refuses connections, as a rebooting machine's does) and brought back on the same port.
struct Outage {
    port: u16,
    /// Connections accepted (and forwarded) so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
    /// Set by the forwarder's thread once its listener is closed (the port refuses).
    closed: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outage {
    fn start(target: std::net::SocketAddr) -> Outage {
        use std::net::TcpListener;
        use std::sync::atomic::{AtomicBool, Ordering};
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, s, n, c) = (down.clone(), stop.clone(), accepted.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            use crate::support::tools::ClosedPort;
            let mut listener = Some(first);
            // While down the port stays bound without listening (refused, and nobody else's to
            // take: another test could otherwise get it and answer in our place).
            let mut reserved: Option<ClosedPort> = None;
            while !s.load(Ordering::SeqCst) {
                if d.load(Ordering::SeqCst) {
                    if listener.take().is_some() {
                        reserved = ClosedPort::again(port).ok();
                    }
                    c.store(true, Ordering::SeqCst);
                } else if listener.is_none() {
                    c.store(false, Ordering::SeqCst);
                    listener = match reserved.take() {
                        Some(r) => Some(r.open()),
                        None => TcpListener::bind(("127.0.0.1", port)).ok(),
                    };
                }
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking");
                match l.accept() {
                    Ok((client, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        client.set_nonblocking(false).expect("blocking");
                        if let Ok(server) = std::net::TcpStream::connect(target) {
                            forward(client, server);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Outage {
            port,
            accepted,
            down,
            closed,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections it has accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes the port down (returning once it refuses connections: the forwarder's thread may
    /// wait for a core a while on a loaded machine) or brings it back.
    fn set_down(&self, down: bool) {
        use std::sync::atomic::Ordering;
        self.down.store(down, Ordering::SeqCst);
        if down {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.closed.load(Ordering::SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "the forwarder never closed its port"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn forward(a: std::net::TcpStream, b: std::net::TcpStream) {
    let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    };
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    pipe(a, b);
    pipe(b2, a2);
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A "reboot" during which the port refuses connections: provisioning waits (saying why),
/// reconnects as soon as the port answers again, and goes on. When the outage outlasts
/// `start_retry_timeout`, it fails saying so.
///
/// The short outage ends when the build has said it waits on a refused connection (not after a
/// fixed 3 s: on a loaded machine noticing the lost connection can take longer than that, and
/// the first reconnect would then find the port open and never wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prov_reboot_outage_waits_within_start_retry_timeout() {
    let world = world_or_skip!(shared);
    let fx = Fx::new(world, "prov-outage");
    let target: std::net::SocketAddr = format!("{}:{}", world.ssh_host(), world.ssh_port())
        .parse()
        .expect("addr");
    let seen = fx.r("going-down-seen");
    let reboot = reboot_script(main_sshd_pid(world), &seen);
    let after = fx.r("after-outage");
    // `None`: until the build says it waits on a refused connection.
    for (outage, start_retry_timeout) in [(None, "60s"), (Some(Duration::from_secs(60)), "4s")] {
        // The script waits for this file until the test has seen its `going down` line.
        let _ = std::fs::remove_file(&seen);
        let proxy = Arc::new(Outage::start(target));
        let template = fx.template(
            json!([
                {"type": "shell", "inline": [reboot.clone()], "expect_disconnect": true,
                 "start_retry_timeout": start_retry_timeout, "remote_folder": fx.remote},
                {"type": "shell", "inline": [format!("echo ok > {}", q(&after))], "remote_folder": fx.remote}
            ]),
            None,
        );
        let p = prepare_template(&template, fx.local.path());
        let lines = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
        // The proxy's connection count when the port answered again, and when the build said
        // it was connected again.
        let up_at = Arc::new(Mutex::new(None::<usize>));
        let connected_at = Arc::new(Mutex::new(None::<usize>));
        let sink_connected = connected_at.clone();
        let (sink_lines, sink_proxy, sink_up) = (lines.clone(), proxy.clone(), up_at.clone());
        let sink_seen = seen.clone();
        let went_down = std::sync::atomic::AtomicBool::new(false);
        let coming_back = std::sync::atomic::AtomicBool::new(false);
        let out = FnOutput {
            redactor: Redactor::default(),
            sink: move |_: bool, line: &str| {
                use std::sync::atomic::Ordering;
                let back_after = |after: Duration| {
                    if coming_back.swap(true, Ordering::SeqCst) {
                        return;
                    }
                    let (proxy, up) = (sink_proxy.clone(), sink_up.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(after);
                        // Down, so nothing is accepted between the count and coming back.
                        *up.lock().expect("up") = Some(proxy.accepted());
                        proxy.set_down(false);
                    });
                };
                if line.ends_with(": going down") {
                    sink_proxy.set_down(true);
                    went_down.store(true, Ordering::SeqCst);
                    std::fs::write(&sink_seen, "").expect("create the flag file");
                    if let Some(outage) = outage {
                        back_after(outage);
                    }
                }
                if outage.is_none()
                    && went_down.load(Ordering::SeqCst)
                    && line.contains("Still waiting for SSH")
                    && line.contains("connection refused")
                {
                    back_after(Duration::ZERO);
                }
                if line.contains("Connected to SSH!") && sink_up.lock().expect("up").is_some() {
                    *sink_connected.lock().expect("connected") = Some(sink_proxy.accepted());
                }
                sink_lines
                    .lock()
                    .expect("lines")
                    .push((Instant::now(), line.to_string()));
            },
        };
        let mut build_data = std::collections::BTreeMap::new();
        build_data.insert("ID".to_string(), "i-1".to_string());
        let ctx = ProvisionContext {
            build_name: BUILD,
            build_type: "amazon-ebs",
            host: "127.0.0.1".into(),
            port: proxy.port,
            ssh: &p.ssh,
            private_key: None,
            provisioners: &p.provisioners,
            error_cleanup: None,
            build_data,
            ui: &out,
            timeline: &imgbuild::timeline::Timeline::start(),
            before: None,
        };
        let rx = imgbuild::cancel::Cancel::never();
        let result = tokio::time::timeout(Duration::from_secs(90), provision::run(&ctx, &rx))
            .await
            .expect("bounded");
        let lines = lines.lock().expect("lines").clone();
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        let text = text.join("\n");
        let waiting = text
            .lines()
            .position(|l| l.contains("Still waiting for SSH") && l.contains("connection refused"));
        let lost = text
            .lines()
            .position(|l| l.ends_with("The SSH connection was lost; reconnecting..."));
        assert!(
            matches!((lost, waiting), (Some(a), Some(b)) if a < b),
            "lost, then waiting with the reason\n{text}"
        );
        if outage.is_none() {
            if let Err(e) = &result {
                panic!("{e}\n{text}");
            }
            assert_eq!(fx.remote_text(&after), "ok\n");
            // Connected again as soon as the port answered: the first connection after the
            // outage logs in, not some later one after more waiting. More connections only when
            // a login failed (a handshake timing out on a loaded machine), which the build then
            // reports with its reason: not a fixed count of such failures.
            let up = up_at.lock().expect("up").expect("came back");
            let connected = connected_at
                .lock()
                .expect("connected")
                .expect("connected again");
            let attempts = connected - up;
            let failed_login = text
                .lines()
                .skip(waiting.unwrap_or(0))
                .any(|l| l.contains("Still waiting for SSH") && !l.contains("connection refused"));
            assert!(
                attempts == 1 || (attempts > 1 && failed_login),
                "{attempts} connections after the outage, and no failed login reported\n{text}"
            );
        } else {
            let e = result.expect_err("the outage outlasts start_retry_timeout");
            let msg = e.to_string();
            assert!(msg.starts_with("provisioner 1 (shell) failed: removing the script: cannot reach the instance: timed out after"), "{msg}");
            assert!(msg.contains("connection refused"), "{msg}");
        }
        proxy.set_down(false);
    }
}
