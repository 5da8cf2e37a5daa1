//! A running `imgbuild build` the test watches and interrupts: [`Building`] (spawn, wait for a
//! progress line, SIGINT, `kill -9`, a bounded wait for the exit) and the SIGINT helpers built on
//! it. Every wait is bounded ([`MARKER_TIMEOUT`], [`RUN_TIMEOUT`]); these bounds only stop a
//! hanging test, no test asserts on how long anything took.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::build::Env;
use super::cli::{imgbuild_bin, Scratch};

/// How long a build may take to reach its pause point. Only a bound on a hanging test, sized for
/// a loaded machine (2 cores at load 14 run a build ten times slower than idle).
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a build or a cleanup may take in all (as [`super::cli::RUN_BOUND`]). Tests that must
/// show that something was cut short make it last longer than this (a 20-minute `sleep`, an
/// hour-long pause).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// A running `imgbuild build`, its stdout lines as they come. Dropping it kills it (by its PID)
/// if it still runs.
pub struct Building {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Stderr so far (the reader thread appends as it reads).
    stderr_so_far: Arc<Mutex<String>>,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Building {
    pub fn start(s: &Scratch, e: &Env, pause: Option<&str>) -> Building {
        Building::start_with(s, &e.vars, pause)
    }

    /// [`Building::start`] with these environment variables (besides `PATH` and `HOME`).
    pub fn start_with(s: &Scratch, vars: &[(String, String)], pause: Option<&str>) -> Building {
        Building::spawn(s.dir.path(), &["t.json".to_string()], vars, pause)
    }

    /// `imgbuild build -color=false ARGS` in `dir` with these environment variables (besides
    /// `PATH` and `HOME`) and the test pause hook, if any.
    pub fn spawn(
        dir: &std::path::Path,
        args: &[String],
        vars: &[(String, String)],
        pause: Option<&str>,
    ) -> Building {
        let mut cmd = Command::new(imgbuild_bin());
        cmd.args(["build", "-color=false"])
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = pause {
            cmd.env("IMGBUILD_TEST_PAUSE", p);
        }
        let mut child = cmd.spawn().expect("imgbuild starts");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let out = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let stderr_so_far: Arc<Mutex<String>> = Arc::default();
        let so_far = stderr_so_far.clone();
        let err = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = so_far.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Building {
            child,
            lines,
            stderr_so_far,
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits (bounded) for a stdout line containing `marker`; that line.
    pub fn wait_for(&mut self, marker: &str) -> String {
        self.wait_for_n(marker, 1)
    }

    /// Waits (bounded, [`MARKER_TIMEOUT`] in all) until `count` stdout lines containing
    /// `marker` have come; the last of them.
    pub fn wait_for_n(&mut self, marker: &str, count: usize) -> String {
        let deadline = Instant::now() + MARKER_TIMEOUT;
        let mut seen = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(marker) => {
                    seen += 1;
                    if seen == count {
                        return l;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let (out, err) = self.output();
                    let times = if count > 1 {
                        format!(" ({count}x)")
                    } else {
                        String::new()
                    };
                    panic!("`{marker}`{times} never appeared.\nstdout:\n{out}\nstderr:\n{err}");
                }
            }
        }
    }

    /// Waits (bounded, [`MARKER_TIMEOUT`]) until stderr contains `marker`.
    pub fn wait_for_stderr(&mut self, marker: &str) {
        let deadline = Instant::now() + MARKER_TIMEOUT;
        loop {
            let seen = self
                .stderr_so_far
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(marker);
            if seen {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (out, err) = self.output();
                panic!("`{marker}` never appeared on stderr.\nstdout:\n{out}\nstderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&mut self) -> (String, String) {
        let out = self.out.take().map(|h| h.join().unwrap_or_default());
        let err = self.err.take().map(|h| h.join().unwrap_or_default());
        (out.unwrap_or_default(), err.unwrap_or_default())
    }

    /// `kill -9` (our own child, by its PID), and reaps it.
    pub fn kill9(mut self) -> (String, String) {
        self.child.kill().expect("SIGKILL to the build");
        let st = self.child.wait().expect("wait");
        assert!(st.code().is_none(), "killed by a signal, not exited: {st}");
        self.output()
    }

    /// SIGINT (by its PID) and waits (bounded) for it to exit; its exit code and output.
    pub fn interrupt(self) -> (i32, String, String) {
        self.sigint();
        self.finish()
    }

    /// Sends SIGINT (by its PID) and returns at once.
    pub fn sigint(&self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -INT {pid}");
    }

    /// Waits (bounded) for it to exit by itself.
    pub fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (out, err) = self.output();
                panic!("imgbuild build did not exit within {RUN_TIMEOUT:?}.\nstdout:\n{out}\nstderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (out, err) = self.output();
        (status.code().expect("an exit code"), out, err)
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `imgbuild build -color=false t.json` in `s` held at `pause` (`IMGBUILD_TEST_PAUSE`,
/// e.g. `launch:3600`), waits for a stdout line containing `marker`, sends SIGINT (`twice`: a
/// second one once the build has said it received the first) and waits for it to exit; its exit
/// code, stdout and stderr.
///
/// A pause longer than [`RUN_TIMEOUT`] makes "the interrupt cut the pause short" part of the
/// result: a build that slept through it would not exit in time and the test would fail.
pub fn interrupt(
    s: &Scratch,
    e: &Env,
    pause: &str,
    marker: &str,
    twice: bool,
) -> (i32, String, String) {
    let mut b = Building::start(s, e, Some(pause));
    b.wait_for(marker);
    b.sigint();
    if twice {
        // Not after a fixed delay: two SIGINTs that arrive before the build's signal task runs
        // count as one (tokio coalesces them), and on a loaded machine that task can wait
        // longer than any fixed delay.
        b.wait_for_stderr("==> Interrupt received");
        b.sigint();
    }
    b.finish()
}

/// Runs `imgbuild build -color=false ARGS` in `dir`, waits for a stdout line containing
/// `marker`, waits `delay`, sends SIGINT to that child (by its PID) and waits for it to exit;
/// its exit code, stdout and stderr. Everything is bounded ([`MARKER_TIMEOUT`],
/// [`RUN_TIMEOUT`]; past them the child is killed and the test fails).
pub fn interrupt_at(
    dir: &Path,
    env: &[(String, String)],
    args: &[String],
    marker: &str,
    delay: Duration,
) -> (i32, String, String) {
    let mut b = Building::spawn(dir, args, env, None);
    b.wait_for(marker);
    std::thread::sleep(delay);
    b.interrupt()
}
