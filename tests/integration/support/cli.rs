//! The imgbuild binary as a user runs it: [`Run`] (exit code and output of one run), the binary
//! under test, and [`Scratch`] (a temporary directory holding the template).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// How long one run of the binary may take before it is killed and the test fails. It only
/// stops a hanging test (no test asserts on how long a run took); a test that must show that
/// something was cut short makes it last longer than this instead (e.g. a one-hour pause).
pub const RUN_BOUND: Duration = Duration::from_secs(600);

/// The imgbuild binary under test: cargo's, or `IMGBUILD_TEST_BIN` (a copy taken right after the
/// build, when several worktrees share one target directory and another build may replace
/// cargo's while the tests run).
pub fn imgbuild_bin() -> String {
    std::env::var("IMGBUILD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_imgbuild").to_string())
}

/// Runs the imgbuild binary in `dir` with `args` (and optional stdin), with a clean environment
/// apart from PATH and HOME, and never a terminal, so output is plain.
pub fn imgbuild_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    imgbuild_env(dir, args, stdin, &[])
}

/// As [`imgbuild_in`], with extra environment variables. Bounded by [`RUN_BOUND`].
pub fn imgbuild_env(dir: &Path, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(imgbuild_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(envs.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the imgbuild binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("stdin is written");
    }
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for imgbuild") {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, by its PID.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "imgbuild {args:?} did not exit within {RUN_BOUND:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status
            .code()
            .expect("imgbuild exits, not killed by a signal"),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A temporary directory holding `t.json` (and other files), so messages name `t.json`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn with(self, name: &str, text: &str) -> Scratch {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(p, text).expect("write file");
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        imgbuild_in(self.dir.path(), args, None)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
