//! What a build asks of the person at the terminal: `-on-error=ask` (clean up, abort, or retry
//! provisioning) and `-debug` (a pause before each step, and the temporary private key kept in
//! `ec2_<build>.pem` in the current directory, as Packer does).
//!
//! A prompt needs a terminal on stdin and stdout. Without one, `ask` cleans up and `-debug`
//! does not pause; both say so. Prompts of concurrent builds are asked one at a time, and
//! Ctrl-C (or the build's deadline) ends a prompt as "clean up".

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::cancel::Cancel;
use crate::ui::Ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Tear down everything the build created (default)
    Cleanup,
    /// Leave everything in place for debugging
    Abort,
    /// Ask on a terminal; clean up when there is none
    Ask,
}

/// What the person chose after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Remove what the build created (the default).
    Cleanup,
    /// Leave everything in place.
    Abort,
    /// Run the failed step again.
    Retry,
}

/// Parses an answer to the failure prompt (`c`, `a`, `r` or the words); `None` for anything
/// else.
pub fn parse_choice(answer: &str, retry: bool) -> Option<Choice> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "c" | "cleanup" | "clean" => Some(Choice::Cleanup),
        "a" | "abort" => Some(Choice::Abort),
        "r" | "retry" if retry => Some(Choice::Retry),
        _ => None,
    }
}

/// The lines typed on stdin, read by one thread for the whole run (a read blocked on a terminal
/// cannot be cancelled; the thread is never joined).
fn stdin_lines() -> &'static tokio::sync::Mutex<UnboundedReceiver<String>> {
    static LINES: OnceLock<tokio::sync::Mutex<UnboundedReceiver<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = unbounded_channel();
        let _ = std::thread::Builder::new()
            .name("imgbuild-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                loop {
                    let mut line = String::new();
                    match stdin.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        tokio::sync::Mutex::new(rx)
    })
}

/// True when a person can answer: stdin and stdout are terminals.
pub fn terminal_attached() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// A build's dealings with the person at the terminal.
pub struct Interact {
    build: String,
    pub on_error: OnError,
    pub debug: bool,
    /// Prompts can be answered (see [`terminal_attached`]).
    pub terminal: bool,
    ui: Ui,
    /// The choice made at a failure inside the build, so that it is not asked again.
    chosen: Mutex<Option<Choice>>,
    /// `-debug`: the key file [`Interact::save_key`] wrote, removed by
    /// [`Interact::remove_saved_key`] once the build's resources are torn down.
    saved_key: Mutex<Option<PathBuf>>,
}

impl Interact {
    pub fn new(build: &str, on_error: OnError, debug: bool, terminal: bool, ui: &Ui) -> Interact {
        Interact {
            build: build.to_string(),
            on_error,
            debug,
            terminal,
            ui: ui.clone(),
            chosen: Mutex::new(None),
            saved_key: Mutex::new(None),
        }
    }

    /// Removes the `-debug` key file, if one was saved (as Packer does when it cleans up the key
    /// pair): called after teardown, so the key works as long as the instance exists. Kept when
    /// the build's resources are left in place (`-on-error=abort`).
    pub fn remove_saved_key(&self) {
        let path = match self.saved_key.lock() {
            Ok(mut p) => p.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(path) = path {
            match std::fs::remove_file(&path) {
                Ok(()) => self.say(&format!("-debug: removed {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.ui.error(&format!(
                    "==> {}: -debug: cannot remove the temporary private key {}: {e}",
                    self.build,
                    path.display()
                )),
            }
        }
    }

    /// The `-debug` key file, if one was saved and not removed.
    pub fn saved_key(&self) -> Option<PathBuf> {
        match self.saved_key.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// An `Interact` that never asks or pauses (`-on-error=cleanup`, no `-debug`).
    pub fn quiet(build: &str) -> Interact {
        Interact::new(build, OnError::Cleanup, false, false, &Ui::default())
    }

    fn say(&self, text: &str) {
        self.ui.say(&format!("==> {}: {text}", self.build));
    }

    /// The choice made at a failure inside the build, if any.
    pub fn chosen(&self) -> Option<Choice> {
        *self.chosen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, c: Choice) {
        *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    /// True when a failure inside the build is to be asked about (`-on-error=ask` on a
    /// terminal).
    pub fn asks(&self) -> bool {
        self.on_error == OnError::Ask && self.terminal
    }

    /// Asks what to do after `what` failed with `error`; `retry` offers to run it again. Without
    /// a terminal, or when cancelled while asking: clean up. Remembers the answer.
    pub async fn on_failure(
        &self,
        what: &str,
        error: &str,
        retry: bool,
        cancel: &Cancel,
    ) -> Choice {
        if !self.terminal {
            self.say("-on-error=ask: no terminal is attached to ask on, so the build cleans up (as -on-error=cleanup)");
            self.remember(Choice::Cleanup);
            return Choice::Cleanup;
        }
        let question = if retry {
            format!("[c] Clean up and exit, [a] abort without cleanup, or [r] retry {what} (every provisioner runs again)?")
        } else {
            "[c] Clean up and exit, or [a] abort without cleanup?".to_string()
        };
        let choice = loop {
            let answer = self
                .prompt(&[&format!("{what} failed: {error}"), &question], cancel)
                .await;
            let Some(answer) = answer else {
                break Choice::Cleanup;
            };
            match parse_choice(&answer, retry) {
                Some(c) => break c,
                None => self.say(&format!("Not an answer: {:?}", answer.trim())),
            }
        };
        self.say(match choice {
            Choice::Cleanup => "Cleaning up (chosen at the prompt)",
            Choice::Abort => "Aborting without cleanup (chosen at the prompt)",
            Choice::Retry => "Retrying (chosen at the prompt)",
        });
        if choice != Choice::Retry {
            self.remember(choice);
        }
        choice
    }

    /// Runs `attempt` (`what`: "provisioning") and, under `-on-error=ask` on a terminal, asks
    /// after each failure that is not a cancellation whether to run it again, clean up or abort
    /// (the answer is remembered for the end of the build). The one retry loop of every builder.
    pub async fn retrying<T, E, F>(
        &self,
        what: &str,
        cancel: &Cancel,
        is_cancelled: impl Fn(&E) -> bool,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        loop {
            let r = attempt().await;
            match &r {
                Err(e) if self.asks() && !is_cancelled(e) => {
                    let error = self.ui.redactor.redact(&e.to_string());
                    if self.on_failure(what, &error, true, cancel).await != Choice::Retry {
                        return r;
                    }
                }
                _ => return r,
            }
        }
    }

    /// `-debug` on a terminal: waits for Enter before `next` runs. False when cancelled.
    pub async fn pause(&self, next: &str, cancel: &Cancel) -> bool {
        if !(self.debug && self.terminal) {
            return !cancel.is_cancelled();
        }
        let text = format!("Pausing before {next}. Press Enter to continue.");
        self.prompt(&[&text], cancel).await.is_some()
    }

    /// Shows `lines` and waits for one line of input (one prompt at a time across builds);
    /// `None` when cancelled or stdin is closed.
    async fn prompt(&self, lines: &[&str], cancel: &Cancel) -> Option<String> {
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = cancel.run(ONE_AT_A_TIME.lock()).await?;
        let mut input = cancel.run(stdin_lines().lock()).await?;
        // Lines typed before the question are not answers to it.
        while input.try_recv().is_ok() {}
        let _hold = self.ui.hold();
        for l in lines {
            self.say(l);
        }
        cancel.run(input.recv()).await.flatten()
    }

    /// `-debug`: writes the temporary private key to `ec2_<build>.pem` in the current directory
    /// (mode 0600) and says where. A failure to write it is a warning.
    pub fn save_key(&self, private_key: &str) -> Option<PathBuf> {
        if !self.debug {
            return None;
        }
        let name = debug_key_name(&self.build);
        let path = std::env::current_dir()
            .map(|d| d.join(&name))
            .unwrap_or_else(|_| PathBuf::from(&name));
        match write_private(&path, private_key) {
            Ok(()) => {
                match self.saved_key.lock() {
                    Ok(mut p) => *p = Some(path.clone()),
                    Err(poisoned) => *poisoned.into_inner() = Some(path.clone()),
                }
                self.say(&format!(
                    "-debug: the temporary private key is saved in {} (mode 0600; log in with ssh -i {})",
                    path.display(),
                    path.display()
                ));
                Some(path)
            }
            Err(e) => {
                self.ui.error(&format!(
                    "==> {}: -debug: cannot save the temporary private key to {}: {e}",
                    self.build,
                    path.display()
                ));
                None
            }
        }
    }
}

/// What comes after a step of the amazon-ebs build (for the `-debug` pause message).
pub fn step_after(step: &str) -> &'static str {
    match step {
        "start" => "step 'source' (find the source AMI and check the names)",
        "source" => "step 'key_pair' (the temporary key pair)",
        "key_pair" => "step 'security_group' (the temporary security group)",
        "security_group" => "step 'launch' (the source instance)",
        "launch" => "step 'provision' (connect and run the provisioners)",
        "provision" => "step 'stop' (stop the instance)",
        "stop" => "step 'create_image' (create the AMI)",
        "create_image" => "waiting for the AMI to be available",
        "copy" => "waiting for the copy to be available",
        "teardown" => "the cleanup (removing what the build created)",
        _ => "the next step",
    }
}

/// Packer's name of the debug key: `ec2_<build>.pem` (characters unsafe in a file name become
/// `_`).
pub fn debug_key_name(build: &str) -> String {
    let clean: String = build
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("ec2_{clean}.pem")
}

/// Writes `text` to `path` readable by its owner only, also when the file existed with other
/// permissions.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        // A symlink planted at the name would send the key elsewhere.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_terminal_a_failure_is_not_retried() {
        let i = Interact::new("web", OnError::Ask, false, false, &Ui::default());
        let mut attempts = 0;
        let r: Result<(), String> = i
            .retrying(
                "provisioning",
                &Cancel::never(),
                |_| false,
                || {
                    attempts += 1;
                    async { Err("boom".to_string()) }
                },
            )
            .await;
        assert_eq!(r, Err("boom".to_string()));
        assert_eq!(attempts, 1);
        let ok: Result<u8, String> = i
            .retrying(
                "provisioning",
                &Cancel::never(),
                |_| false,
                || async { Ok(7) },
            )
            .await;
        assert_eq!(ok, Ok(7));
    }

    #[test]
    fn answers() {
        assert_eq!(parse_choice("c\n", true), Some(Choice::Cleanup));
        assert_eq!(parse_choice(" A ", false), Some(Choice::Abort));
        assert_eq!(parse_choice("r", true), Some(Choice::Retry));
        assert_eq!(parse_choice("retry", false), None);
        assert_eq!(parse_choice("", true), None);
        assert_eq!(parse_choice("x", true), None);
    }

    #[test]
    fn debug_key_names_are_packers() {
        assert_eq!(debug_key_name("amazon-ebs"), "ec2_amazon-ebs.pem");
        assert_eq!(debug_key_name("web worker/1"), "ec2_web_worker_1.pem");
    }

    #[test]
    fn private_files_are_0600_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, "KEY").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "KEY");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn without_a_terminal_ask_cleans_up_and_debug_does_not_pause() {
        let i = Interact::new("web", OnError::Ask, true, false, &Ui::default());
        assert!(!i.asks());
        let c = i
            .on_failure("provisioning", "boom", true, &Cancel::never())
            .await;
        assert_eq!(c, Choice::Cleanup);
        assert_eq!(i.chosen(), Some(Choice::Cleanup));
        assert!(i.pause("launch", &Cancel::never()).await);
        let (tx, rx) = crate::cancel::channel();
        tx.cancel();
        assert!(!i.pause("launch", &rx).await);
    }
}
