//! The local test world every integration test runs against: moto's server mode
//! as the EC2 API, a real OpenSSH sshd as "the instance", and a tiny HTTP server
//! that answers "what is my public IP" (`IMGBUILD_PUBLIC_IP_URL`), all on 127.0.0.1.
//!
//! The world is started and stopped by `scripts/testworld.sh` (the one source of
//! truth for its configuration; see the comments there); this fixture calls it
//! and reads the env file it writes.
//!
//! Two ways to get a world:
//!
//! * [`TestWorld::start`]: a world of the test's own (its own emulator state,
//!   sandbox and ports). `Drop` stops exactly what it started, also when the test
//!   panics. Use it when a test asserts on the emulator's global state (e.g. "no
//!   instance, key pair or security group is left behind").
//! * [`TestWorld::shared`]: one world per test binary run, started on first use,
//!   for tests that only touch resources they name themselves (use
//!   [`unique_name`] for key pair names, a subdirectory of the sandbox for files).
//!   A `static` is never dropped, so its cleanup is the script's watchdog: the
//!   fixture passes `--owner-pid <this process>` and the watchdog stops the world
//!   within about a second after the test process exits, however it exits
//!   (normally, panic=abort, SIGKILL). Every world (shared or not) has that
//!   watchdog as a backstop.
//!
//! When a dependency is missing and cannot be installed (the script exits 3),
//! `start`/`shared` panic if `CI=true` (the test fails) and otherwise print a
//! `skipped: ...` line to stderr and return `None` (the test returns early).
//! Any other failure to start panics: it is a bug, not a missing dependency.

#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};

/// The region the world's env points tools at.
pub const REGION: &str = "us-east-1";
/// The dummy credentials (moto does not check signatures).
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// How long `scripts/testworld.sh start` may take in all, including a first-time
/// install of missing packages (apt, pip).
const START_TIMEOUT: Duration = Duration::from_secs(900);
/// How long `scripts/testworld.sh stop` may take (it escalates to KILL itself).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on one `ssh` command run by [`TestWorld::ssh_exec_ok`].
const SSH_TIMEOUT: Duration = Duration::from_secs(120);
/// The script's exit code for "a dependency is missing and cannot be installed".
const EXIT_MISSING_DEPENDENCY: i32 = 3;

/// A running test world. See the module documentation.
#[derive(Debug)]
pub struct TestWorld {
    state_dir: PathBuf,
    env: Vec<(String, String)>,
    ec2_endpoint: String,
    ssh_host: String,
    ssh_port: u16,
    ssh_user: String,
    sandbox: PathBuf,
    stopped: bool,
}

enum StartError {
    /// A dependency is missing and could not be installed.
    Missing(String),
    /// Anything else.
    Failed(String),
}

impl TestWorld {
    /// Starts a world of this test's own; `None` (after printing `skipped: ...`)
    /// when a dependency is missing outside CI. Panics on any other failure.
    pub fn start() -> Option<TestWorld> {
        match Self::try_start(&[]) {
            Ok(world) => Some(world),
            Err(StartError::Missing(why)) => skip_or_panic(&why),
            Err(StartError::Failed(why)) => panic!("test world failed to start: {why}"),
        }
    }

    /// The world shared by all tests of this test binary run (started on first
    /// use, stopped by the watchdog when the process exits).
    pub fn shared() -> Option<&'static TestWorld> {
        static SHARED: OnceLock<Result<TestWorld, String>> = OnceLock::new();
        let world = SHARED.get_or_init(|| match Self::try_start(&[]) {
            Ok(world) => Ok(world),
            Err(StartError::Missing(why)) => {
                panic_if_ci(&why);
                Err(why)
            }
            Err(StartError::Failed(why)) => panic!("shared test world failed to start: {why}"),
        });
        match world {
            Ok(world) => Some(world),
            Err(why) => {
                eprintln!("skipped: test world unavailable (a dependency is missing): {why}");
                None
            }
        }
    }

    /// A world of this test's own whose instances are real Debian roots (the local cloud,
    /// `start --real-instances`; root only: otherwise skipped, or failed with `CI=true`).
    pub fn start_real_instances() -> Option<TestWorld> {
        Self::start_real_instances_with(&[])
    }

    /// [`TestWorld::start_real_instances`] with more `start` options (`--no-security-groups`).
    pub fn start_real_instances_with(extra: &[&str]) -> Option<TestWorld> {
        let mut args = vec!["--real-instances"];
        args.extend_from_slice(extra);
        match Self::try_start(&args) {
            Ok(world) => Some(world),
            Err(StartError::Missing(why)) => skip_or_panic(&why),
            Err(StartError::Failed(why)) => panic!("local cloud failed to start: {why}"),
        }
    }

    fn try_start(extra: &[&str]) -> Result<TestWorld, StartError> {
        let script = script_path();
        let state_dir = std::env::temp_dir().join(unique_name("imgbuild-testworld"));
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg("start")
            .arg(&state_dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .args(extra);
        let out = match run_bounded(&mut cmd, START_TIMEOUT) {
            Ok(out) => out,
            Err(RunError::Spawn(e)) => {
                return Err(StartError::Missing(format!("cannot run bash: {e}")));
            }
            Err(RunError::Other(e)) => {
                // Timed out: stop whatever the script got to start.
                let _ = stop_dir(&state_dir);
                return Err(StartError::Failed(e));
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(EXIT_MISSING_DEPENDENCY) => {
                let _ = stop_dir(&state_dir);
                return Err(StartError::Missing(last_lines(&stderr, 5)));
            }
            _ => {
                let _ = stop_dir(&state_dir);
                return Err(StartError::Failed(format!(
                    "{} start exited with {}:\n{stderr}",
                    script.display(),
                    out.status
                )));
            }
        }
        let mut world = TestWorld {
            state_dir: state_dir.clone(),
            env: Vec::new(),
            ec2_endpoint: String::new(),
            ssh_host: String::new(),
            ssh_port: 0,
            ssh_user: String::new(),
            sandbox: PathBuf::new(),
            stopped: false,
        };
        // From here on `world` owns the running processes: an early return drops
        // it, which stops them.
        let env_text = std::fs::read_to_string(state_dir.join("env"))
            .map_err(|e| StartError::Failed(format!("cannot read the world's env file: {e}")))?;
        // Without AWS_ENDPOINT_URL (the env file has it for use by hand): see [`TestWorld::env`].
        world.env = parse_env(&env_text)
            .into_iter()
            .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
            .collect();
        let get = |key: &str| -> Result<String, StartError> {
            world
                .env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| StartError::Failed(format!("env file lacks {key}:\n{env_text}")))
        };
        let ec2_endpoint = get("IMGBUILD_TEST_EC2_ENDPOINT")?;
        let ssh_host = get("IMGBUILD_TEST_SSH_HOST")?;
        let ssh_port = get("IMGBUILD_TEST_SSH_PORT")?;
        let ssh_user = get("IMGBUILD_TEST_SSH_USER")?;
        let sandbox = get("IMGBUILD_TEST_SANDBOX")?;
        world.ssh_port = ssh_port
            .parse()
            .map_err(|_| StartError::Failed(format!("bad IMGBUILD_TEST_SSH_PORT {ssh_port}")))?;
        world.ec2_endpoint = ec2_endpoint;
        world.ssh_host = ssh_host;
        world.ssh_user = ssh_user;
        world.sandbox = PathBuf::from(sandbox);
        Ok(world)
    }

    /// The EC2 endpoint, e.g. `http://127.0.0.1:PORT` (for `custom_endpoint_ec2`).
    pub fn ec2_endpoint(&self) -> &str {
        &self.ec2_endpoint
    }

    /// Where "the instance" answers SSH: always `127.0.0.1`.
    pub fn ssh_host(&self) -> &str {
        &self.ssh_host
    }

    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The one user sshd lets in (`imgbuild-test` when run as root).
    pub fn ssh_user(&self) -> &str {
        &self.ssh_user
    }

    /// A directory of this world's own in the test user's home, writable by the
    /// test user; templates may write there (and only there). Removed by stop.
    pub fn sandbox(&self) -> &Path {
        &self.sandbox
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// The world's state directory (sshd config, logs, PIDs, env file).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Environment for a child process (`imgbuild`, `packer`): every line of the
    /// env file, i.e. `IMGBUILD_TEST_*` (endpoint, SSH host/port/user, sandbox),
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (dummy), `AWS_DEFAULT_REGION`,
    /// `AWS_REGION`, `AWS_EC2_METADATA_DISABLED`, `IMGBUILD_PUBLIC_IP_URL` (the world's
    /// public-address server on 127.0.0.1). Use as `cmd.envs(world.env())`.
    /// It deliberately does not set `AWS_ENDPOINT_URL*` (the env file has
    /// `AWS_ENDPOINT_URL`, for a world used by hand): a template must reach the
    /// emulator through its own `custom_endpoint_ec2`.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// The address the world's public-address server answers (`IMGBUILD_PUBLIC_IP_URL`
    /// in [`TestWorld::env`] points imgbuild at it, so no build asks the internet).
    pub fn public_ip(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "IMGBUILD_TEST_PUBLIC_IP")
            .map(|(_, v)| v.clone())
            .expect("the env file has IMGBUILD_TEST_PUBLIC_IP")
    }

    /// The processes the script recorded for this world: (name, pid) with name
    /// `moto`, `sshd`, `ipserver` or `watch`.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(self.state_dir.join("pids")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (name, pid) = line.split_once(' ')?;
                Some((name.to_string(), pid.trim().parse().ok()?))
            })
            .collect()
    }

    /// The last lines of sshd's and moto's logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["sshd.log", "moto.log", "ipserver.log"] {
            let text = std::fs::read_to_string(self.state_dir.join(name)).unwrap_or_default();
            s.push_str(&format!(
                "--- {name} (last 40 lines) ---\n{}\n",
                last_lines(&text, 40)
            ));
        }
        s
    }

    /// Stops the world now (Drop does the same, ignoring errors).
    pub fn stop(mut self) -> Result<(), String> {
        self.stopped = true;
        stop_dir(&self.state_dir)
    }

    // ------------------------------------------------------------- EC2 ---

    /// An EC2 client for the emulator (static dummy credentials, `REGION`,
    /// bounded timeouts). For async tests; sync code uses [`TestWorld::ec2`].
    pub async fn ec2_client(&self) -> aws_sdk_ec2::Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.ec2_endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "imgbuild-testworld",
            ))
            .timeout_config(timeouts)
            .load()
            .await;
        aws_sdk_ec2::Client::new(&config)
    }

    /// Runs `f` with an EC2 client on a fresh single-threaded Tokio runtime in a
    /// thread of its own, so it works from sync tests and from inside another
    /// runtime alike. Panics in `f` propagate.
    pub fn ec2<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(aws_sdk_ec2::Client) -> Fut + Send,
        Fut: Future<Output = T>,
        T: Send,
    {
        thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async {
                    let client = self.ec2_client().await;
                    f(client).await
                })
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// ImportKeyPair: `public_key_openssh` is one `ssh-ed25519 AAAA... comment`
    /// line. Returns the key pair ID.
    pub fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<String, String> {
        let blob = aws_sdk_ec2::primitives::Blob::new(public_key_openssh.trim().as_bytes());
        self.ec2(|client| async move {
            let out = client
                .import_key_pair()
                .key_name(name)
                .public_key_material(blob)
                .send()
                .await
                .map_err(|e| format!("ImportKeyPair {name}: {}", sdk_error(&e)))?;
            Ok(out.key_pair_id().unwrap_or_default().to_string())
        })
    }

    /// CreateKeyPair (RSA, as Packer's temporary key pair): writes the private
    /// key to `dir/<name>.pem` (mode 0600) and returns that path.
    pub fn create_key_pair(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let material = self.ec2(|client| async move {
            let out = client
                .create_key_pair()
                .key_name(name)
                .send()
                .await
                .map_err(|e| format!("CreateKeyPair {name}: {}", sdk_error(&e)))?;
            out.key_material()
                .map(str::to_string)
                .ok_or_else(|| format!("CreateKeyPair {name}: no key material"))
        })?;
        let path = dir.join(format!("{name}.pem"));
        write_private_file(&path, material.as_bytes())
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// DeleteKeyPair by name.
    pub fn delete_key_pair(&self, name: &str) -> Result<(), String> {
        self.ec2(|client| async move {
            client
                .delete_key_pair()
                .key_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("DeleteKeyPair {name}: {}", sdk_error(&e)))
        })
    }

    // ------------------------------------------------------------- SSH ---

    /// An `ssh` command to "the instance" as the test user with exactly this
    /// private key (no agent, no config files, no known_hosts, batch mode,
    /// bounded connect timeout). Add more options before running it if needed.
    pub fn ssh_command(&self, private_key: &Path, remote_command: &str) -> Command {
        self.ssh_command_as(&self.ssh_user, private_key, remote_command)
    }

    /// Like [`TestWorld::ssh_command`], logging in as `user` (which sshd should
    /// refuse unless it is [`TestWorld::ssh_user`]).
    pub fn ssh_command_as(&self, user: &str, private_key: &Path, remote_command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "IdentityAgent=none"])
            .args(["-o", "PreferredAuthentications=publickey"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-o", "ConnectionAttempts=1"])
            .args(["-o", "ServerAliveInterval=10"])
            .args(["-o", "ServerAliveCountMax=3"])
            .args(["-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(private_key)
            .arg("-p")
            .arg(self.ssh_port.to_string())
            .arg(format!("{user}@{}", self.ssh_host))
            .arg("--")
            .arg(remote_command);
        cmd
    }

    /// Runs `command` on "the instance" over SSH with `private_key`. `Ok(stdout)`
    /// if it ran and exited 0; `Err` (exit status and stderr) if the login was
    /// refused, the command failed, or it took longer than two minutes.
    pub fn ssh_exec_ok(&self, private_key: &Path, command: &str) -> Result<String, String> {
        run_ok(&mut self.ssh_command(private_key, command), SSH_TIMEOUT)
    }
}

impl Drop for TestWorld {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            if let Err(e) = stop_dir(&self.state_dir) {
                eprintln!("warning: stopping the test world failed: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------- helpers ---

/// `ssh-keygen -t ed25519` a new key pair `dir/name` (no passphrase). Returns
/// the private key's path and the public key line. Panics on failure.
pub fn ssh_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private);
    let out = run_bounded(&mut cmd, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(private.with_extension("pub"))
        .unwrap_or_else(|e| panic!("read {name}.pub: {e}"));
    (private, public.trim().to_string())
}

/// Runs `cmd` for at most `timeout` (killed after that). `Ok(stdout)` if it
/// exited 0, else `Err` with its exit status and stderr.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let out = run_bounded(cmd, timeout).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{:?} exited with {}: {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A name unique to this process and call: `<prefix>-<pid>-<nanos>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testworld.sh")
}

fn panic_if_ci(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test world: a dependency is missing and could not be installed (CI=true, so this fails): {why}");
    }
}

fn skip_or_panic<T>(why: &str) -> Option<T> {
    panic_if_ci(why);
    eprintln!("skipped: test world unavailable (a dependency is missing): {why}");
    None
}

fn stop_dir(state_dir: &Path) -> Result<(), String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script_path()).arg("stop").arg(state_dir);
    let out = run_bounded(&mut cmd, STOP_TIMEOUT).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "stop exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn sdk_error<E: std::error::Error>(e: &E) -> String {
    // Display of SDK errors is terse ("service error"); include the sources.
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started at all.
    Spawn(std::io::Error),
    /// It timed out (and was killed), or waiting for it failed.
    Other(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start: {e}"),
            RunError::Other(e) => f.write_str(e),
        }
    }
}

/// Runs `cmd` (stdin /dev/null, stdout and stderr captured) and waits at most
/// `timeout`; on timeout kills it (it is our child, by its PID) and errs.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut pipe) = pipe {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(RunError::Other(format!("waiting for {cmd:?}: {e}"))),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Other(format!(
                "{cmd:?} did not finish within {timeout:?} (killed)"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The pipes close when the process exits, unless a child of it keeps them
    // open: do not wait for that long.
    let grace = Duration::from_secs(5);
    Ok(Output {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}
