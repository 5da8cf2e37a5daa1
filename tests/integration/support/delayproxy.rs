//! The delay proxy (`scripts/delayproxy.py`) in front of the world's EC2 emulator, for the
//! wait tests: states lag as EC2's do, and every call, change and noticed change is logged.
//! Stopped (by its PID) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::world::TestWorld;

pub struct DelayProxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl DelayProxy {
    /// A proxy in front of `world`'s emulator with these extra arguments (`--start 2`, ...).
    pub fn start(world: &TestWorld, args: &[&str]) -> DelayProxy {
        let dir = tempfile::tempdir().expect("proxy dir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/delayproxy.py");
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(script)
            .args(["--upstream", world.ec2_endpoint()])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(dir.path().join("log.jsonl"))
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 scripts/delayproxy.py");
        let mut p = DelayProxy {
            child,
            port: 0,
            dir,
        };
        // A bound on the start, not a measure: generous for a loaded machine (2 cores, load 14).
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end && matches!(p.child.try_wait(), Ok(None)) {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                p.port = port;
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the delay proxy did not start within 120 s (or exited early)");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The events logged so far.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("log.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The calls logged so far of `action`: (IDs named, HTTP status).
    pub fn calls(&self, action: &str) -> Vec<(u64, u64)> {
        self.events()
            .iter()
            .filter(|e| e["ev"] == "call" && e["action"] == action)
            .map(|e| {
                (
                    e["ids"].as_u64().unwrap_or(0),
                    e["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The RunInstances calls logged so far: (instance type, HTTP status), in order.
    pub fn run_instances(&self) -> Vec<(String, u64)> {
        self.events()
            .iter()
            .filter(|e| e["ev"] == "call" && e["action"] == "RunInstances")
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
