//! Builds against a test world: the amazon-ebs builder object for the world, the environment of
//! a build ([`Env`]: the world's variables and a journal directory of the test's own), `imgbuild
//! build` and `imgbuild cleanup` runs, and reading their results (AMI lines, journals).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::cli::{imgbuild_env, Run, Scratch};
use super::state::REGIONS;
use super::world::TestWorld;

/// The base image the world's xenial filter finds (moto's Ubuntu 16.04).
pub const SOURCE_AMI: &str = "ami-785db401";
/// Canonical's account, the owner in the source filters.
pub const CANONICAL: &str = "099720109477";
/// The name filter of the world's base image.
const XENIAL: &str = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*";

/// A builder object for the world: `communicator: none`, the xenial filter, a timestamped name
/// and tags with build values; `extra` keys are merged in (null removes a key).
pub fn builder(world: &TestWorld, extra: Value) -> Value {
    let mut b = json!({
        "type": "amazon-ebs",
        "region": "us-east-1",
        "custom_endpoint_ec2": world.ec2_endpoint(),
        "instance_type": "t3.micro",
        "source_ami_filter": {
            "filters": {"name": XENIAL, "virtualization-type": "hvm"},
            "owners": [CANONICAL],
            "most_recent": true
        },
        "communicator": "none",
        // The uuid: tests run in parallel, and two in the same second must not share a name.
        "ami_name": "imgbuild-test-{{timestamp}}-{{uuid}}",
        "ami_description": "built from {{ .SourceAMI }}",
        "tags": {
            "SourceAMI": "{{ .SourceAMI }}",
            "BuildRegion": "{{ .BuildRegion }}",
            "Base": "{{ .SourceAMIName | clean_resource_name }}",
            "Project": "{{user `project`}}"
        },
        "snapshot_tags": {"Kind": "root", "From": "{{ .SourceAMI }}"},
        "run_tags": {"Purpose": "imgbuild test"}
    });
    if let (Some(obj), Value::Object(extra)) = (b.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
    b
}

/// A template with one builder and these provisioners (and the `project` variable).
pub fn template(builder: Value, provisioners: Value) -> String {
    json!({
        "variables": {"project": "imgbuild"},
        "builders": [builder],
        "provisioners": provisioners
    })
    .to_string()
}

/// An SSH builder that cannot get further than provisioning: a port nothing listens on (see
/// [`super::tools::closed_port`]).
pub fn ssh_builder(world: &TestWorld, extra: Value) -> Value {
    // Refuses connections for the whole test run (a port merely freed could be taken).
    let port = super::tools::closed_port();
    let mut b = builder(
        world,
        json!({"communicator": "ssh", "ssh_host": "127.0.0.1", "ssh_port": port,
               "ssh_username": world.ssh_user(), "ssh_timeout": "5s"}),
    );
    if let (Some(obj), Value::Object(extra)) = (b.as_object_mut(), extra) {
        obj.extend(extra);
    }
    b
}

/// What a build runs with: the world's environment plus a journal directory of its own.
pub struct Env {
    pub journal: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

/// A fresh [`Env`] for `world`.
pub fn env(world: &TestWorld) -> Env {
    let journal = tempfile::tempdir().expect("journal dir");
    let mut vars = world.env();
    vars.push((
        "IMGBUILD_JOURNAL_DIR".into(),
        journal.path().display().to_string(),
    ));
    Env { journal, vars }
}

/// `imgbuild build -color=false ARGS` in `s` with `e` (and `extra` variables), bounded.
pub fn build(s: &Scratch, e: &Env, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.extend_from_slice(extra);
    let mut all = vec!["build", "-color=false"];
    all.extend_from_slice(args);
    imgbuild_env(s.dir.path(), &all, None, &vars)
}

/// The journals in `dir` and those archived in `dir/done` (a successful build archives its
/// own), sorted by path.
pub fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("journal dir")
        .chain(std::fs::read_dir(dir.join("done")).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The events of every journal in `dir` and `dir/done` (one list per journal file, in name
/// order).
pub fn journal_events(dir: &Path) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for f in journal_files(dir) {
        let text = std::fs::read_to_string(&f).expect("journal");
        out.push(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("journal line"))
                .collect(),
        );
    }
    out
}

/// Asserts one journal in `dir`, from `started` to `finished` with this `clean` flag.
pub fn assert_journal_complete(dir: &Path, clean: bool) {
    let journals = journal_events(dir);
    assert_eq!(journals.len(), 1, "one journal per build per run");
    let events = &journals[0];
    assert_eq!(
        events.first().and_then(|e| e["event"].as_str()),
        Some("started"),
        "{events:?}"
    );
    let last = events.last().expect("events");
    assert_eq!(last["event"], "finished", "{events:?}");
    assert_eq!(last["clean"], clean, "{events:?}");
}

/// The AMI of the `region: ami-...` line of a build's artifact list.
pub fn ami_from_stdout(stdout: &str, region: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{region}: ")))
        .unwrap_or_else(|| panic!("no `{region}: ami-...` line in:\n{stdout}"))
        .trim()
        .to_string()
}

/// `imgbuild cleanup ARGS` with the world's environment and `e`'s journal directory.
pub fn cleanup(e: &Env, args: &[&str]) -> Run {
    let vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut all = vec!["cleanup", "-color=false"];
    all.extend_from_slice(args);
    let dir = tempfile::tempdir().expect("dir");
    imgbuild_env(dir.path(), &all, None, &vars)
}

/// The journals (`*.jsonl`) directly in `dir`, and those archived in `dir/done`.
pub fn journals(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let list = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (list(dir), list(&dir.join("done")))
}

/// The AMIs a build reported (`region: ami-...` lines).
pub fn amis_of(stdout: &str) -> Vec<String> {
    REGIONS
        .iter()
        .filter(|r| stdout.contains(&format!("\n{r}: ami-")))
        .map(|r| ami_from_stdout(stdout, r))
        .collect()
}

/// The summary at the end of a build's stdout, from `==> Builds finished.` on (the artifacts,
/// then the table of outcomes), for tests that assert it whole: the table's cells joined by
/// ` | ` and its durations (which vary) written `<took>`.
pub fn summary_of(stdout: &str) -> String {
    let start = stdout
        .find("==> Builds finished.")
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let mut in_table = false;
    let mut out = Vec::new();
    for line in stdout[start..].lines() {
        if line.starts_with("==> Build outcomes:") {
            in_table = true;
            out.push(line.to_string());
            continue;
        }
        if !in_table || line.trim().is_empty() {
            out.push(line.to_string());
            continue;
        }
        let mut cells: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if cells.len() == 4 && cells[0] != "BUILD" {
            cells[2] = "<took>";
        }
        out.push(cells.join(" | "));
    }
    out.join("\n")
}
