//! What runs on the machine running imgbuild: `shell-local` (each script through
//! `execute_command`, output streamed line by line, in a process group of its own that is
//! killed when the provisioner is cancelled or times out: `run_local`, which the `shell-local`
//! post-processor runs its scripts with too) and `breakpoint`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::remote::{print_line, Line};
use super::shell::{check_outcome, inline_script, script_env, Tail};
use super::{Failure, Runtime};
use crate::communicator::ssh::ExitOutcome;
use crate::provisioner::shell::ShellSource;
use crate::provisioner::shell_local::host_os;
use crate::provisioner::{BreakpointConfig, ShellLocalConfig};

/// Kills the process group of a child that is still running when this is dropped (the command
/// was cancelled or timed out).
struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) on the process group `run_local` created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Sends each line of `reader` (without its `\n` or `\r\n`) as `line(text)`.
async fn forward<R: AsyncRead + Unpin>(
    reader: Option<R>,
    tx: UnboundedSender<Line>,
    line: fn(String) -> Line,
) {
    let Some(reader) = reader else { return };
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                let _ = tx.send(line(String::from_utf8_lossy(&buf).into_owned()));
            }
        }
    }
}

/// Why a local command could not be started or waited for.
#[derive(Debug)]
pub(crate) struct LocalError {
    /// `cannot run PROGRAM`, `waiting for PROGRAM`.
    pub what: String,
    pub source: std::io::Error,
}

/// Runs `program` with `args` and `env` on this machine as `shell-local` (the provisioner and
/// the post-processor) runs its scripts: stdin from /dev/null, in a process group of its own,
/// each line of its stdout and stderr given to `on_line` as it comes (`Line::Out`,
/// `Line::Err`). The group is killed when the returned future is dropped before the command
/// ends (cancellation, a timeout).
pub(crate) async fn run_local(
    program: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    mut on_line: impl FnMut(Line),
) -> Result<ExitStatus, LocalError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LocalError {
            what: format!("cannot run {program}"),
            source,
        })?;
    let mut guard = GroupGuard {
        pgid: child.id().map(|p| p as i32),
    };
    let (tx, mut rx) = unbounded_channel();
    let out = forward(child.stdout.take(), tx.clone(), Line::Out);
    let err = forward(child.stderr.take(), tx, Line::Err);
    let lines = async {
        while let Some(line) = rx.recv().await {
            on_line(line);
        }
    };
    let (status, (), (), ()) = tokio::join!(child.wait(), out, err, lines);
    let status = status.map_err(|source| LocalError {
        what: format!("waiting for {program}"),
        source,
    })?;
    guard.pgid = None;
    Ok(status)
}

/// `{{.Vars}}` of `shell-local`'s `execute_command`: each variable through `env_var_format` with
/// a *reference* to its value (`NAME="$NAME"`) instead of the value. The values are in the
/// process's environment already, so a POSIX shell reads the same values, while the command line
/// (`/proc/<pid>/cmdline`, `ps`, which every local user can read) holds no secret. A value quoted
/// in the format (`'%s'`, `"%s"`) is replaced with its quotes.
pub fn vars_as_references(format: &str, env: &BTreeMap<String, String>) -> String {
    const MARK: &str = "\u{1}imgbuild-value\u{1}";
    let mut s = String::new();
    for k in env.keys() {
        let reference = format!("\"${k}\"");
        let line = super::shell::go_sprintf(format, &[k, MARK]);
        let line = line
            .replace(&format!("'{MARK}'"), &reference)
            .replace(&format!("\"{MARK}\""), &reference)
            .replace(MARK, &reference);
        s.push_str(&line);
    }
    s
}

pub(crate) async fn shell_local(
    rt: &mut Runtime<'_, '_>,
    c: &ShellLocalConfig,
) -> Result<(), Failure> {
    if !c.runs_on_this_host() {
        rt.say(&format!(
            "Skipping shell-local due to runtime OS ({} is not in only_on: {})",
            host_os(),
            c.only_on.join(", ")
        ));
        return Ok(());
    }
    let ctx = rt.ctx;
    let (env, _) = script_env(rt, &c.environment_vars, &c.env_var_format);
    // Values reach the script through its environment, never its command line.
    let flattened = vars_as_references(&c.env_var_format, &env);

    // The inline script lives in a temporary file for as long as this provisioner runs.
    let mut _inline_file = None;
    let scripts: Vec<String> = match &c.source {
        ShellSource::Inline(commands) => {
            let commands: Vec<String> = commands.iter().map(|l| rt.render_lenient(l)).collect();
            let text = inline_script(&c.inline_shebang, &commands);
            let ext = c.script_extension();
            let mut b = tempfile::Builder::new();
            b.prefix("imgbuild-shell-local.").suffix(&ext);
            let local = |source| Failure::Local {
                what: "cannot write the inline script to a temporary file".into(),
                source,
            };
            let mut f = b.tempfile().map_err(local)?;
            f.write_all(text.as_bytes()).map_err(local)?;
            f.flush().map_err(local)?;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(local)?;
            // Close the writer so the file can be executed (ETXTBSY otherwise).
            let path = f.into_temp_path();
            let shown = path.display().to_string();
            _inline_file = Some(path);
            vec![shown]
        }
        ShellSource::Scripts(paths) => paths
            .iter()
            .map(|p| rt.render_lenient(&p.display().to_string()))
            .collect(),
    };

    for script in scripts {
        let mut fields = BTreeMap::new();
        fields.insert("Vars".to_string(), flattened.clone());
        fields.insert("Script".to_string(), script.clone());
        fields.insert("Command".to_string(), script.clone());
        fields.insert("EnvVarFile".to_string(), String::new());
        let mut argv = Vec::new();
        for a in &c.execute_command {
            argv.push(
                rt.render(a, Some(&fields))
                    .map_err(|message| Failure::Template {
                        what: "execute_command".into(),
                        message,
                    })?,
            );
        }
        rt.say(&format!("Running local shell script: {script}"));
        let Some((program, args)) = argv.split_first() else {
            return Err(Failure::Other("execute_command is empty".into()));
        };
        let mut tail = Tail::default();
        let status = run_local(program, args, &env, |l| {
            tail.push(&l);
            print_line(ctx.ui, ctx.build_name, &l);
        })
        .await
        .map_err(|LocalError { what, source }| Failure::Local { what, source })?;
        use std::os::unix::process::ExitStatusExt;
        let outcome = match (status.code(), status.signal()) {
            (Some(code), _) => ExitOutcome::Exited(code),
            (None, Some(sig)) => ExitOutcome::Signaled(signal_name(sig)),
            (None, None) => ExitOutcome::Signaled("unknown".into()),
        };
        let mut checked = check_outcome(
            rt,
            &outcome,
            &c.valid_exit_codes,
            false,
            format!("local script {script}"),
            &argv.join(" "),
            &tail,
        );
        if let Err(Failure::ExitStatus {
            code: 126, tail, ..
        }) = &mut checked
        {
            tail.push(format!(
                "(exit status 126: is {script} executable? chmod +x it, or run it through an interpreter in execute_command)"
            ));
        }
        checked?;
    }
    Ok(())
}

/// `KILL` for 9, as the SSH protocol names signals; the number for others.
fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        other => return other.to_string(),
    }
    .to_string()
}

/// What the breakpoint does.
#[derive(Debug, PartialEq, Eq)]
pub enum BreakpointAction {
    /// `disable`: say so and go on.
    Disabled(String),
    /// No terminal on stdin (a pipeline): say so and go on.
    NoTerminal(String),
    /// Say this, then wait for Enter.
    Wait(String),
}

/// Packer's messages, and what to do when no terminal is attached.
pub fn breakpoint_action(c: &BreakpointConfig, terminal: bool) -> BreakpointAction {
    let note = c.note.as_deref().filter(|n| !n.is_empty());
    if c.disable {
        return BreakpointAction::Disabled(match note {
            Some(n) => format!("Breakpoint provisioner with note \"{n}\" disabled; continuing..."),
            None => "Breakpoint provisioner disabled; continuing...".to_string(),
        });
    }
    let pausing = match note {
        Some(n) => format!("Pausing at breakpoint provisioner with note \"{n}\"."),
        None => "Pausing at breakpoint provisioner.".to_string(),
    };
    if !terminal {
        return BreakpointAction::NoTerminal(format!(
            "{pausing} No terminal is attached (standard input is not a terminal), so not waiting; continuing..."
        ));
    }
    BreakpointAction::Wait(format!("{pausing} Press enter to continue."))
}

pub(crate) async fn breakpoint(
    rt: &mut Runtime<'_, '_>,
    c: &BreakpointConfig,
) -> Result<(), Failure> {
    match breakpoint_action(c, std::io::stdin().is_terminal()) {
        BreakpointAction::Disabled(m) | BreakpointAction::NoTerminal(m) => {
            rt.say(&m);
            Ok(())
        }
        BreakpointAction::Wait(m) => {
            rt.say(&m);
            // A detached thread: a read of stdin cannot be interrupted, and the runtime must not
            // wait for it on shutdown (Ctrl-C while paused).
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("breakpoint".into())
                .spawn(move || {
                    let mut line = String::new();
                    let r = std::io::stdin().read_line(&mut line);
                    let _ = tx.send(r);
                })
                .map_err(|source| Failure::Local {
                    what: "cannot wait for Enter".into(),
                    source,
                })?;
            match rx.await {
                Ok(Ok(_)) | Err(_) => Ok(()),
                Ok(Err(source)) => Err(Failure::Local {
                    what: "cannot read standard input".into(),
                    source,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_are_references_in_every_usual_format() {
        let env: BTreeMap<String, String> = [
            ("A".to_string(), "1".to_string()),
            ("PW".to_string(), "it's".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(vars_as_references("%s='%s' ", &env), r#"A="$A" PW="$PW" "#);
        assert_eq!(vars_as_references("%s=%s ", &env), r#"A="$A" PW="$PW" "#);
        assert_eq!(
            vars_as_references("export %s=\"%s\"\n", &env),
            "export A=\"$A\"\nexport PW=\"$PW\"\n"
        );
    }

    /// The script gets every value unchanged through the environment, and the shell's command
    /// line (what `ps` shows every local user) holds none of them.
    #[test]
    fn a_real_shell_reads_the_values_and_its_command_line_has_none() {
        let nasty = "pa$$ 'w0rd\" `id` \\x ; | & * ?\nline two";
        let env: BTreeMap<String, String> = [("SECRET_V".to_string(), nasty.to_string())]
            .into_iter()
            .collect();
        let vars = vars_as_references("%s='%s' ", &env);
        let command = format!("{vars} sh -c 'printf %s \"$SECRET_V\"; printf \"\\n--\\n\"; tr \"\\0\" \" \" < /proc/$PPID/cmdline'");
        assert!(!command.contains("w0rd"), "{command}");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .envs(&env)
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let (value, cmdline) = text.split_once("\n--\n").expect("two parts");
        assert_eq!(value, nasty);
        assert!(cmdline.contains("SECRET_V=\"$SECRET_V\""), "{cmdline}");
        assert!(!cmdline.contains("w0rd"), "{cmdline}");
    }

    #[test]
    fn signal_names_as_ssh_names_them() {
        assert_eq!(signal_name(libc::SIGKILL), "KILL");
        assert_eq!(signal_name(libc::SIGTERM), "TERM");
        assert_eq!(signal_name(64), "64");
    }

    #[test]
    fn breakpoint_messages() {
        let c = |disable, note: Option<&str>| BreakpointConfig {
            disable,
            note: note.map(str::to_string),
        };
        assert_eq!(
            breakpoint_action(&c(true, Some("look")), true),
            BreakpointAction::Disabled(
                "Breakpoint provisioner with note \"look\" disabled; continuing...".into()
            )
        );
        assert_eq!(
            breakpoint_action(&c(true, None), false),
            BreakpointAction::Disabled("Breakpoint provisioner disabled; continuing...".into())
        );
        assert_eq!(
            breakpoint_action(&c(false, None), true),
            BreakpointAction::Wait(
                "Pausing at breakpoint provisioner. Press enter to continue.".into()
            )
        );
        match breakpoint_action(&c(false, Some("n")), false) {
            BreakpointAction::NoTerminal(m) => {
                assert!(
                    m.starts_with("Pausing at breakpoint provisioner with note \"n\"."),
                    "{m}"
                );
                assert!(m.contains("No terminal is attached"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }
}
