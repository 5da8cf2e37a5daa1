//! The remote `shell` provisioner, as Packer 1.6.6 runs it: each script (the `inline` commands
//! become one script after `#!{inline_shebang}`) is uploaded to `remote_path` (mode 0755), run
//! through `execute_command` with `{{.Vars}}`, `{{.Path}}` and `{{.EnvVarFile}}` filled in, and
//! removed (unless `skip_clean`). Starting a script is retried until `start_retry_timeout` while
//! the connection is unavailable, reconnecting with the build's options; a disconnect while it
//! runs is fine with `expect_disconnect` (a reboot), and an error saying so without it.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;

use super::remote::{is_retryable, with_lines, Line};
use super::{Failure, Runtime};
use crate::communicator::ssh::{
    shell_quote, ExecOptions, ExitOutcome, Session, SshError, Stream, UploadSource,
};
use crate::duration::go as format_duration;
use crate::provisioner::shell::{ShellConfig, ShellSource};

/// Packer's exit status for "the connection was lost" (`packersdk.CmdDisconnect`).
pub const CMD_DISCONNECT: i64 = 2300218;
/// Packer's delay between two tries of starting a script.
pub const START_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How many lines of output an error message quotes.
pub const TAIL_LINES: usize = 10;

// ------------------------------------------------------------------ pure logic ---

/// Go's `fmt.Sprintf` for string arguments: `%s`, `%v` and `%q` take the next argument, `%%` is
/// a `%`; a verb without an argument is `%!s(MISSING)` and unused arguments are appended as
/// `%!(EXTRA string=...)`, as Go does.
pub fn go_sprintf(format: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(format.len() + 32);
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'q')) => match args.get(next) {
                Some(a) => {
                    next += 1;
                    if verb == 'q' {
                        out.push_str(&format!("{a:?}"));
                    } else {
                        out.push_str(a);
                    }
                }
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => {
                // Other verbs are not meant for strings; Go prints `%!d(string=...)`.
                match args.get(next) {
                    Some(a) => {
                        next += 1;
                        out.push_str(&format!("%!{other}(string={a})"));
                    }
                    None => out.push_str(&format!("%!{other}(MISSING)")),
                }
            }
            None => out.push_str("%!(NOVERB)"),
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..].iter().map(|a| format!("string={a}")).collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// Packer's escaping of an environment value for the single-quoted default format: each `'`
/// becomes `'"'"'` (close the quote, a double-quoted quote, reopen).
pub fn escape_env_value(value: &str) -> String {
    value.replace('\'', r#"'"'"'"#)
}

/// The variables a script gets: `PACKER_BUILD_NAME` and `PACKER_BUILDER_TYPE`, then the user's
/// (which may override them, as in Packer), sorted by name.
pub fn env_map(
    build_name: &str,
    build_type: &str,
    vars: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("PACKER_BUILD_NAME".to_string(), build_name.to_string());
    m.insert("PACKER_BUILDER_TYPE".to_string(), build_type.to_string());
    for (k, v) in vars {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// `{{.Vars}}`: every variable through `env_var_format` (key, escaped value), in key order.
pub fn flatten_env(format: &str, vars: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        s.push_str(&go_sprintf(format, &[k, &escape_env_value(v)]));
    }
    s
}

/// Where the scripts go: `remote_path`, else `remote_folder/remote_file`, else
/// `remote_folder/script_<rand>.sh`.
pub fn remote_script_path(c: &ShellConfig, rand: u32) -> String {
    if let Some(p) = &c.remote_path {
        return p.clone();
    }
    let file = c
        .remote_file
        .clone()
        .unwrap_or_else(|| format!("script_{rand}.sh"));
    format!("{}/{file}", folder(&c.remote_folder))
}

/// `remote_folder` without a trailing slash (`/` stays `/`... as the empty prefix).
fn folder(f: &str) -> &str {
    f.trim_end_matches('/')
}

/// The script of `inline`: the shebang line, then each command on its own line.
pub fn inline_script(shebang: &str, commands: &[String]) -> String {
    let mut s = format!("#!{shebang}\n");
    for c in commands {
        s.push_str(c);
        s.push('\n');
    }
    s
}

/// CRLF line endings as LF (Packer's `UnixReader`, unless `binary`).
pub fn unix_line_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A random number in 0..9999, like Packer's `rand.Intn(9999)`.
pub fn rand4() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 9999) as u32
}

/// The last lines of stderr and stdout of a command.
#[derive(Debug, Default)]
pub struct Tail {
    out: VecDeque<String>,
    err: VecDeque<String>,
}

impl Tail {
    pub fn push(&mut self, line: &Line) {
        let (buf, text) = match line {
            Line::Out(t) => (&mut self.out, t),
            Line::Err(t) => (&mut self.err, t),
            Line::Say(_) => return,
        };
        if buf.len() == TAIL_LINES {
            buf.pop_front();
        }
        buf.push_back(text.clone());
    }

    /// The last lines of stderr, or of stdout when stderr said nothing (with a PTY it is merged).
    pub fn lines(&self) -> Vec<String> {
        let src = if self.err.is_empty() {
            &self.out
        } else {
            &self.err
        };
        src.iter().cloned().collect()
    }
}

/// How a finished command is judged.
pub fn judge(
    outcome: &ExitOutcome,
    valid: &[i64],
    expect_disconnect: bool,
) -> Result<(), Judgement> {
    match outcome {
        ExitOutcome::Exited(code) if valid.contains(&(*code as i64)) => Ok(()),
        ExitOutcome::Exited(code) => Err(Judgement::Status(*code)),
        ExitOutcome::Signaled(sig) => Err(Judgement::Signal(sig.clone())),
        ExitOutcome::Disconnected if expect_disconnect || valid.contains(&CMD_DISCONNECT) => Ok(()),
        ExitOutcome::Disconnected => Err(Judgement::Disconnected),
    }
}

/// Why a command's end is a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    Status(i32),
    Signal(String),
    Disconnected,
}

/// A script's environment ([`env_map`] with the `environment_vars` rendered) and `{{.Vars}}`
/// (each variable through `env_var_format`).
pub(crate) fn script_env(
    rt: &Runtime<'_, '_>,
    environment_vars: &[(String, String)],
    env_var_format: &str,
) -> (BTreeMap<String, String>, String) {
    let vars: Vec<(String, String)> = environment_vars
        .iter()
        .map(|(k, v)| (k.clone(), rt.render_lenient(v)))
        .collect();
    let env = env_map(rt.ctx.build_name, rt.ctx.build_type, &vars);
    let flattened = flatten_env(env_var_format, &env);
    (env, flattened)
}

/// [`judge`]s how `what` (run as `command`) ended; a failure quotes the command and the last
/// lines of its output, redacted.
pub(crate) fn check_outcome(
    rt: &Runtime<'_, '_>,
    outcome: &ExitOutcome,
    valid: &[i64],
    expect_disconnect: bool,
    what: String,
    command: &str,
    tail: &Tail,
) -> Result<(), Failure> {
    let Err(judgement) = judge(outcome, valid, expect_disconnect) else {
        return Ok(());
    };
    let command = rt.redact(command);
    let tail: Vec<String> = tail.lines().iter().map(|l| rt.redact(l)).collect();
    Err(match judgement {
        Judgement::Status(code) => Failure::ExitStatus {
            what,
            command,
            code,
            valid: valid.to_vec(),
            tail,
        },
        Judgement::Signal(signal) => Failure::Signaled {
            what,
            command,
            signal,
            tail,
        },
        Judgement::Disconnected => Failure::Disconnected {
            what,
            command,
            tail,
        },
    })
}

// ------------------------------------------------------------------- running ---

/// One script to run: what it is called in messages and its bytes.
struct Script {
    shown: String,
    bytes: Vec<u8>,
}

/// The scripts to run, in order: the inline commands (rendered) as one script, or each script
/// file read (with Unix line endings unless `binary`).
async fn load_scripts(rt: &Runtime<'_, '_>, c: &ShellConfig) -> Result<Vec<Script>, Failure> {
    let mut scripts = Vec::new();
    match &c.source {
        ShellSource::Inline(commands) => {
            let commands: Vec<String> = commands.iter().map(|l| rt.render_lenient(l)).collect();
            let text = inline_script(&c.inline_shebang, &commands);
            scripts.push(Script {
                shown: format!(
                    "inline ({} command{})",
                    commands.len(),
                    if commands.len() == 1 { "" } else { "s" }
                ),
                bytes: text.into_bytes(),
            });
        }
        ShellSource::Scripts(paths) => {
            for p in paths {
                let path = rt.render_lenient(&p.display().to_string());
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| Failure::Local {
                        what: format!("cannot read the script {path}"),
                        source,
                    })?;
                let bytes = if c.binary {
                    bytes
                } else {
                    unix_line_endings(&bytes)
                };
                scripts.push(Script { shown: path, bytes });
            }
        }
    }
    Ok(scripts)
}

/// `use_env_var_file`: uploads the environment variables (`flattened`, one `export` a line) to
/// a file of its own in `remote_folder`, retried until `start_retry_timeout`; returns its path.
async fn upload_env_var_file(
    rt: &mut Runtime<'_, '_>,
    c: &ShellConfig,
    flattened: &str,
) -> Result<String, Failure> {
    let path = format!(
        "{}/varfile_{}.sh",
        folder(&rt.render_lenient(&c.remote_folder)),
        rand4()
    );
    let deadline = Instant::now() + c.start_retry_timeout;
    let content = flattened.as_bytes().to_vec();
    let target = path.clone();
    retrying(
        rt,
        deadline,
        "uploading the environment variable file",
        move |s| {
            let content = content.clone();
            let target = target.clone();
            async move {
                s.upload_file(UploadSource::Bytes(content), &target, 0o600, None)
                    .await
                    .map(|_| ())
            }
        },
    )
    .await?;
    Ok(path)
}

/// Runs the `shell` provisioner: each script uploaded and run with `execute_command` (retried,
/// reconnecting, until `start_retry_timeout`), its exit checked, its files removed unless
/// `skip_clean`.
pub(crate) async fn run(rt: &mut Runtime<'_, '_>, c: &ShellConfig) -> Result<(), Failure> {
    if !rt.remote.enabled() {
        return Err(Failure::NoCommunicator {
            kind: "shell".into(),
        });
    }
    let ctx = rt.ctx;
    let remote_path = rt.render_lenient(&remote_script_path(c, rand4()));
    let (_, flattened) = script_env(rt, &c.environment_vars, &c.env_var_format);

    let scripts = load_scripts(rt, c).await?;
    let env_var_file = if c.use_env_var_file {
        upload_env_var_file(rt, c, &flattened).await?
    } else {
        String::new()
    };

    let mut fields = BTreeMap::new();
    fields.insert("Vars".to_string(), flattened.clone());
    fields.insert("Path".to_string(), remote_path.clone());
    fields.insert("EnvVarFile".to_string(), env_var_file.clone());
    let command = rt
        .render(&c.execute_command, Some(&fields))
        .map_err(|message| Failure::Template {
            what: "execute_command".into(),
            message,
        })?;

    for script in scripts {
        rt.say(&format!("Provisioning with shell script: {}", script.shown));
        let deadline = Instant::now() + c.start_retry_timeout;
        let what = format!("script {}", script.shown);
        let bytes = Arc::new(script.bytes);
        let ran = {
            let remote_path = remote_path.clone();
            let command = command.clone();
            let out = ctx.ui;
            let build = ctx.build_name;
            retrying(rt, deadline, &format!("starting {what}"), move |s| {
                let bytes = bytes.clone();
                let remote_path = remote_path.clone();
                let command = command.clone();
                async move {
                    // Owner only: a script can hold secrets (inline commands rendered with
                    // variables). `chmod +x` in execute_command keeps it unreadable to others.
                    s.upload_file(
                        UploadSource::Bytes(bytes.as_ref().clone()),
                        &remote_path,
                        0o700,
                        None,
                    )
                    .await?;
                    let (tx, mut rx) = unbounded_channel();
                    let exec = s.exec(&command, ExecOptions::default(), move |stream, line| {
                        let _ = tx.send(match stream {
                            Stream::Stdout => Line::Out(line.to_string()),
                            Stream::Stderr => Line::Err(line.to_string()),
                        });
                    });
                    let mut tail = Tail::default();
                    let outcome = with_lines(out, build, &mut rx, |l| tail.push(l), exec).await?;
                    Ok((outcome, tail))
                }
            })
            .await
        };
        let (outcome, tail) = match ran {
            Ok(v) => v,
            Err(e) => {
                if !c.skip_clean {
                    clean_after_failure(rt, &[&remote_path, &env_var_file]).await;
                }
                return Err(e);
            }
        };
        if outcome == ExitOutcome::Disconnected {
            rt.remote.drop_session();
        }
        if let Err(e) = check_outcome(
            rt,
            &outcome,
            &c.valid_exit_codes,
            c.expect_disconnect,
            what,
            &command,
            &tail,
        ) {
            if !c.skip_clean {
                clean_after_failure(rt, &[&remote_path, &env_var_file]).await;
            }
            return Err(e);
        }
        if outcome == ExitOutcome::Disconnected {
            rt.say("The script disconnected (expected); going on");
        }
        if !c.skip_clean {
            remove_remote(rt, &remote_path, c.start_retry_timeout).await?;
        }
    }
    if !c.skip_clean && !env_var_file.is_empty() {
        remove_remote(rt, &env_var_file, c.start_retry_timeout).await?;
    }
    if let Some(d) = c.pause_after {
        rt.say(&format!(
            "Pausing {} after this provisioner...",
            format_duration(d)
        ));
        tokio::time::sleep(d).await;
    }
    Ok(())
}

/// `rm -f path`, retried (reconnecting) until `timeout`: after a reboot the instance takes a
/// while to come back.
/// How long the removal of a failed script's files may take (the connection may be gone).
const CLEAN_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// After a script failed: removes its file and the environment variable file (which can hold
/// secrets) from the instance, best effort and briefly; the instance may be an existing machine
/// (the null builder) that outlives the build. Failures are logged, not reported: the script's
/// failure is the error.
async fn clean_after_failure(rt: &mut Runtime<'_, '_>, paths: &[&str]) {
    let paths: Vec<String> = paths
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| shell_quote(p))
        .collect();
    if paths.is_empty() {
        return;
    }
    let command = format!("rm -f {}", paths.join(" "));
    let deadline = Instant::now() + CLEAN_AFTER_FAILURE;
    let attempt = retrying(rt, deadline, "removing the failed script", move |s| {
        let cmd = command.clone();
        async move { s.exec_collect(&cmd, ExecOptions::default()).await }
    });
    match tokio::time::timeout(CLEAN_AFTER_FAILURE, attempt).await {
        Ok(Ok((ExitOutcome::Exited(0), _, _))) => {}
        other => tracing::debug!(
            ok = matches!(other, Ok(Ok(_))),
            "the failed script's files may be left on the instance"
        ),
    }
}

async fn remove_remote(
    rt: &mut Runtime<'_, '_>,
    path: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let command = format!("rm -f {}", shell_quote(path));
    loop {
        let cmd = command.clone();
        let (outcome, _, stderr) = retrying(rt, deadline, "removing the script", move |s| {
            let cmd = cmd.clone();
            async move { s.exec_collect(&cmd, ExecOptions::default()).await }
        })
        .await?;
        match outcome {
            ExitOutcome::Exited(0) => return Ok(()),
            ExitOutcome::Disconnected if Instant::now() + START_RETRY_DELAY < deadline => {
                rt.remote.drop_session();
                tokio::time::sleep(START_RETRY_DELAY).await;
            }
            other => {
                return Err(Failure::Other(format!(
                    "Error removing temporary script at {path}: {other}{}",
                    if stderr.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", stderr.trim())
                    }
                )))
            }
        }
    }
}

/// Runs `op` on a live session, reconnecting and trying again while the connection is
/// unavailable, until `deadline`.
pub(crate) async fn retrying<T, F, Fut>(
    rt: &mut Runtime<'_, '_>,
    deadline: Instant,
    what: &str,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut(Arc<Session>) -> Fut,
    Fut: Future<Output = Result<T, SshError>>,
{
    let ctx = rt.ctx;
    loop {
        let session = rt
            .remote
            .session(ctx.ui, Some(deadline))
            .await
            .map_err(|source| Failure::Ssh {
                what: format!("{what}: cannot reach the instance"),
                source: Box::new(source),
            })?;
        match op(session).await {
            Ok(v) => return Ok(v),
            Err(e) if is_retryable(&e) && Instant::now() + START_RETRY_DELAY < deadline => {
                if matches!(e, SshError::SessionClosed { .. }) {
                    rt.remote.drop_session();
                }
                rt.say(&rt.redact(&format!(
                    "{what}: {e}; retrying (start_retry_timeout, {} left)",
                    format_duration(Duration::from_secs(
                        deadline.saturating_duration_since(Instant::now()).as_secs()
                    ))
                )));
                tokio::time::sleep(START_RETRY_DELAY).await;
            }
            Err(source) => {
                return Err(Failure::Ssh {
                    what: what.to_string(),
                    source: Box::new(source),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioner::shell::{
        DEFAULT_ENV_VAR_FORMAT, DEFAULT_ENV_VAR_FORMAT_ENV_FILE, DEFAULT_EXECUTE_COMMAND,
    };
    use crate::template::funcs::{Clock, Engine, Phase, Scope};

    fn config() -> ShellConfig {
        ShellConfig {
            source: ShellSource::Inline(vec!["true".into()]),
            environment_vars: vec![],
            env_var_format: DEFAULT_ENV_VAR_FORMAT.into(),
            use_env_var_file: false,
            execute_command: DEFAULT_EXECUTE_COMMAND.into(),
            inline_shebang: "/bin/sh -e".into(),
            remote_folder: "/tmp".into(),
            remote_file: None,
            remote_path: None,
            skip_clean: false,
            start_retry_timeout: Duration::from_secs(300),
            expect_disconnect: false,
            valid_exit_codes: vec![0],
            pause_after: None,
            binary: false,
        }
    }

    #[test]
    fn sprintf_like_go() {
        assert_eq!(go_sprintf("%s='%s' ", &["A", "b"]), "A='b' ");
        assert_eq!(go_sprintf("export %s=%v\n", &["A", "b"]), "export A=b\n");
        assert_eq!(go_sprintf("100%% %s", &["x"]), "100% x");
        assert_eq!(go_sprintf("%s", &["A", "b"]), "A%!(EXTRA string=b)");
        assert_eq!(go_sprintf("%s %s %s", &["A", "b"]), "A b %!s(MISSING)");
        assert_eq!(
            go_sprintf("%s=%q", &["A", "say \"hi\""]),
            r#"A="say \"hi\"""#
        );
    }

    #[test]
    fn env_is_sorted_quoted_and_has_packers_two() {
        let vars = vec![
            ("ZED".to_string(), "last".to_string()),
            ("A_QUOTE".to_string(), "it's \"x\" $HOME `id`".to_string()),
            ("NL".to_string(), "one\ntwo".to_string()),
        ];
        let m = env_map("web", "amazon-ebs", &vars);
        assert_eq!(
            flatten_env(DEFAULT_ENV_VAR_FORMAT, &m),
            "A_QUOTE='it'\"'\"'s \"x\" $HOME `id`' NL='one\ntwo' PACKER_BUILDER_TYPE='amazon-ebs' PACKER_BUILD_NAME='web' ZED='last' "
        );
        assert_eq!(
            flatten_env(DEFAULT_ENV_VAR_FORMAT_ENV_FILE, &env_map("b", "t", &[])),
            "export PACKER_BUILDER_TYPE='t'\nexport PACKER_BUILD_NAME='b'\n"
        );
        // The user may override Packer's variables, as in Packer.
        let m = env_map(
            "web",
            "amazon-ebs",
            &[("PACKER_BUILD_NAME".into(), "x".into())],
        );
        assert_eq!(m["PACKER_BUILD_NAME"], "x");
    }

    /// The quoted form, read back by a real shell, gives every value unchanged.
    #[test]
    fn a_real_shell_reads_the_values_back_unchanged() {
        let nasty = "a 'single' \"double\" $HOME ${X} `id` \\ back\nnew line\ttab ; | & * ?";
        let m = env_map("b", "t", &[("V".to_string(), nasty.to_string())]);
        let vars = flatten_env(DEFAULT_ENV_VAR_FORMAT, &m);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{vars} sh -c 'printf %s \"$V\"'"))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }

    #[test]
    fn remote_path_choice() {
        let mut c = config();
        assert_eq!(remote_script_path(&c, 42), "/tmp/script_42.sh");
        c.remote_folder = "/var/tmp/".into();
        assert_eq!(remote_script_path(&c, 7), "/var/tmp/script_7.sh");
        c.remote_file = Some("setup.sh".into());
        assert_eq!(remote_script_path(&c, 7), "/var/tmp/setup.sh");
        c.remote_path = Some("/opt/run.sh".into());
        assert_eq!(remote_script_path(&c, 7), "/opt/run.sh");
        assert!(rand4() < 9999);
    }

    #[test]
    fn execute_command_renders_vars_path_and_env_var_file() {
        let engine = Engine::new(Clock::now());
        let user = BTreeMap::new();
        let build: BTreeMap<String, String> = [("ID".to_string(), "i-0abc".to_string())].into();
        let mut fields = BTreeMap::new();
        fields.insert("Vars".to_string(), "A='1' ".to_string());
        fields.insert("Path".to_string(), "/tmp/script_1.sh".to_string());
        fields.insert("EnvVarFile".to_string(), "/tmp/varfile_2.sh".to_string());
        let scope = Scope {
            phase: Phase::Build,
            user: &user,
            template_dir: "",
            build_name: Some("b"),
            build_type: Some("amazon-ebs"),
            build: Some(&build),
            fields: Some(&fields),
        };
        let r = |s: &str| engine.render(s, &scope).expect("render");
        assert_eq!(
            r(DEFAULT_EXECUTE_COMMAND),
            "chmod +x /tmp/script_1.sh; A='1'  /tmp/script_1.sh"
        );
        assert_eq!(
            r("{{ .Vars }} sudo -E sh -eux '{{ .Path }}'"),
            "A='1'  sudo -E sh -eux '/tmp/script_1.sh'"
        );
        assert_eq!(
            r("chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}} {{build `ID`}}"),
            "chmod +x /tmp/script_1.sh; . /tmp/varfile_2.sh && /tmp/script_1.sh i-0abc"
        );
    }

    #[test]
    fn inline_scripts_and_line_endings() {
        assert_eq!(
            inline_script("/bin/sh -e", &["echo a".into(), "echo b".into()]),
            "#!/bin/sh -e\necho a\necho b\n"
        );
        assert_eq!(unix_line_endings(b"a\r\nb\rc\r\n"), b"a\nb\rc\n");
    }

    #[test]
    fn judging_exit_codes_and_disconnects() {
        assert_eq!(judge(&ExitOutcome::Exited(0), &[0], false), Ok(()));
        assert_eq!(judge(&ExitOutcome::Exited(3), &[0, 3], false), Ok(()));
        assert_eq!(
            judge(&ExitOutcome::Exited(1), &[0], false),
            Err(Judgement::Status(1))
        );
        assert_eq!(
            judge(&ExitOutcome::Disconnected, &[0], false),
            Err(Judgement::Disconnected)
        );
        assert_eq!(judge(&ExitOutcome::Disconnected, &[0], true), Ok(()));
        assert_eq!(
            judge(&ExitOutcome::Disconnected, &[0, CMD_DISCONNECT], false),
            Ok(())
        );
        assert_eq!(
            judge(&ExitOutcome::Signaled("KILL".into()), &[0], true),
            Err(Judgement::Signal("KILL".into()))
        );
    }

    #[test]
    fn tail_prefers_stderr_and_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..15 {
            t.push(&Line::Out(format!("out {i}")));
        }
        assert_eq!(t.lines().len(), TAIL_LINES);
        assert_eq!(t.lines()[0], "out 5");
        t.push(&Line::Err("err".into()));
        assert_eq!(t.lines(), vec!["err".to_string()]);
    }
}
