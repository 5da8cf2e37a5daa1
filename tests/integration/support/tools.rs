//! Local tools some tests need besides the world: Ansible (`scripts/testworld.sh install` puts
//! ansible-core in a venv of its own; tests put its `bin` first on PATH), a second sshd that
//! allows forwarding (a bastion), the world's host key fingerprint, and ports that refuse
//! connections ([`closed_port`], [`ClosedPort`]).

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::world::TestWorld;

/// The ansible-core venv's `bin` directory (as `scripts/testworld.sh` installs it).
pub fn ansible_bin() -> PathBuf {
    let is_root = running_as_root();
    if is_root {
        PathBuf::from("/usr/local/lib/imgbuild-testworld/ansible-venv/bin")
    } else {
        let data = std::env::var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".local/share")
            });
        data.join("imgbuild-testworld/ansible-venv/bin")
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// PATH with Ansible first, or `None` after [`super::skip`] when ansible-playbook is missing
/// (a failure with `CI=true`).
pub fn ansible_path() -> Option<String> {
    let bin = ansible_bin();
    if bin.join("ansible-playbook").is_file() {
        return Some(format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ));
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if std::path::Path::new(dir).join("ansible-playbook").is_file() {
            return std::env::var("PATH").ok();
        }
    }
    super::skip(
        "ansible-playbook is not installed (scripts/testworld.sh install puts it in a venv)",
    );
    None
}

/// The world's sshd host key fingerprint, as `ssh-keygen -lf` prints it.
pub fn world_host_key_fingerprint(world: &super::world::TestWorld) -> String {
    let pubkey = world.state_dir().join("ssh_host_ed25519_key.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pubkey)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen -lf {}", pubkey.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("a SHA256 fingerprint in {text:?}"))
        .to_string()
}

/// An sshd of this test's own, from the world's config but on another port and allowing TCP
/// forwarding (the world's forbids it), to act as a bastion. Killed (by its PID) on drop.
pub struct ForwardingSshd {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl ForwardingSshd {
    pub fn start(world: &TestWorld, dir: &Path) -> Option<ForwardingSshd> {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let config = fs::read_to_string(world.state_dir().join("sshd_config")).ok()?;
        // The port is found with `bind(0)` and let go for sshd to bind; a test running in
        // parallel can take it first, and then sshd exits on its bind. Such a loss is retried on
        // a fresh port, a bounded number of times.
        let mut earlier = String::new();
        for attempt in 1..=3 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
                l.local_addr().ok()?.port()
            };
            let mut text: String = config
                .lines()
                .filter(|l| {
                    let k = l.split_whitespace().next().unwrap_or("");
                    !["Port", "PidFile", "AllowTcpForwarding"].contains(&k)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!(
                "Port {port}\nPidFile {}\nAllowTcpForwarding yes\n",
                dir.join("bastion-sshd.pid").display()
            ));
            let cfg = dir.join("bastion_sshd_config");
            fs::write(&cfg, text).ok()?;
            let log = dir.join("bastion-sshd.log");
            let child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).ok()?)
                .spawn()
                .ok()?;
            let mut me = ForwardingSshd { child, port, log };
            // A bound on the wait (it ends as soon as sshd listens), generous for a loaded machine.
            let deadline = Instant::now() + Duration::from_secs(60);
            let exited = loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && pid_listens_on(me.child.id(), port)
                {
                    return Some(me);
                }
                if let Ok(Some(_)) = me.child.try_wait() {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            earlier.push_str(&format!(
                "attempt {attempt} on port {port}: {}\n",
                fs::read_to_string(&me.log).unwrap_or_default()
            ));
            if !exited {
                break;
            }
        }
        eprintln!("bastion sshd did not start:\n{earlier}");
        None
    }
}

impl Drop for ForwardingSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that refuses connections: bound by a socket that never listens. While it
/// is held no other socket can take the port (neither `bind` to port 0 nor an outgoing
/// connection picks a bound port), unlike a port found with `bind(0)` and released, which
/// another test running in parallel can get (its listener would then answer where the test
/// expects "connection refused"). [`ClosedPort::open`] starts listening on it.
pub struct ClosedPort {
    socket: socket2::Socket,
    pub port: u16,
}

impl ClosedPort {
    /// A new closed port (the kernel's choice).
    pub fn new() -> ClosedPort {
        ClosedPort::bind(0, false).expect("bind a closed port")
    }

    /// `port` (one this test had and let go, e.g. a listener it closed), closed again;
    /// `SO_REUSEADDR`, so that its last connections (TIME_WAIT) do not stand in the way.
    pub fn again(port: u16) -> std::io::Result<ClosedPort> {
        ClosedPort::bind(port, true)
    }

    fn bind(port: u16, reuse: bool) -> std::io::Result<ClosedPort> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(reuse)?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        socket.bind(&addr.into())?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
        Ok(ClosedPort { socket, port })
    }

    /// Starts listening: the port answers from now on.
    pub fn open(self) -> std::net::TcpListener {
        self.socket.listen(128).expect("listen on the closed port");
        self.socket.into()
    }
}

/// A port on 127.0.0.1 that refuses connections until this test process exits (its socket is
/// kept open on purpose, one file descriptor per call). See [`ClosedPort`].
pub fn closed_port() -> u16 {
    let p = ClosedPort::new();
    let port = p.port;
    std::mem::forget(p);
    port
}

/// Whether process `pid` itself has a listening TCP socket on 127.0.0.1's `port`. A port picked
/// with `bind(0)` and released for a child to bind can be taken by a test running in parallel
/// first: then the port answers, but not the child.
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 9
            && f[3] == "0A"
            && f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
            && inodes.iter().any(|i| i == f[9])
    })
}
