//! Issue 7 end to end: three nights of `scripts/nightly.sh` (the CI job of the README's
//! "Nightly pipeline") against a test world of the test's own: moto as EC2 and CloudFormation,
//! the world's sshd as the instance.
//!
//! The template is generated here: a sandbox-safe web worker (SSH to the world's sshd, one
//! uploaded file, a sensitive variable, `reuse_unchanged`) with the post-processor chain of
//! `images/nightly_example.json` (manifest; ami-outputs -> cloudformation-update ->
//! ami-retention), adapted only where the test world needs it: outputs in the test's scratch
//! directory, the emulator's CloudFormation endpoint, and `keep_latest: 2` without
//! `keep_younger_than` (everything in a test is younger than 336h, so nothing would go).
//!
//! Before the first night: the `web_worker` stack (tests/fixtures/cfn/web_worker.yaml, on the
//! public source AMI) and two older AMIs with the template's name prefix, as an account that
//! has been baking web workers for a while has.
//!
//! - Night 1 builds, points the stack's `WorkerAMI` at the new AMI (other parameters kept), and
//!   prunes the oldest seeded AMI (three match, two are kept).
//! - Night 2, nothing changed: reuses night 1's AMI, launches nothing, the stack update is "no
//!   updates are to be performed", nothing is pruned: the emulator is exactly as before.
//! - Night 3, one byte of the uploaded file changed: builds again, the stack moves to the new
//!   AMI, the remaining seeded AMI is deregistered with its snapshots, and night 1's AMI (the one
//!   the stack ran before) is kept as one of the newest two (README: "the one it ran before is
//!   among the newest N").
//!
//! Each night's output is printed to stderr (visible with `--nocapture`) so that a run can be
//! captured.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::build::{ami_from_stdout, builder, env, Env, SOURCE_AMI};
use crate::support::cfn::{create_stack, launch_template_image, stack, INSTANCE_PROFILE, STACK};
use crate::support::cli::{imgbuild_bin, Run, Scratch};
use crate::support::state::{assert_nothing_left, history, images_named, state, Region};
use crate::support::world::{run_bounded, unique_name, TestWorld};

const PREFIX: &str = "nightly-web-worker-";
const FP_TAG: &str = "imgbuild:fingerprint";
const SECRET: &str = "nightly-db-Pa55w0rd-7f3a91";
const FINGERPRINT_KEY: &str = "ci-secret-0123456789abcdef0123456789abcdef";
/// The longest one night may take (a build here takes a few seconds idle; a bound on a hanging
/// test sized for a loaded machine, as the other runs' RUN_BOUND, not a measure).
const NIGHT_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The post-processors of `images/nightly_example.json`, adapted to the test world.
fn post_processors(world: &TestWorld, out: &Path) -> Value {
    let p = repo().join("images/nightly_example.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let example: Value = serde_json::from_str(&text).expect("nightly_example.json is JSON");
    let mut pps = example["post-processors"].clone();
    let abs = |name: &Value| {
        Value::from(
            out.join(name.as_str().expect("a path"))
                .display()
                .to_string(),
        )
    };

    // The manifest first, then the chain.
    let manifest = &mut pps[0];
    assert_eq!(manifest["type"], "manifest", "{text}");
    manifest["output"] = abs(&manifest["output"]);
    let chain = pps[1]
        .as_array_mut()
        .expect("the example's second entry is a chain");
    let types: Vec<&str> = chain
        .iter()
        .map(|p| p["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        ["ami-outputs", "cloudformation-update", "ami-retention"],
        "the example's chain changed: adapt this test"
    );
    chain[0]["json_output"] = abs(&chain[0]["json_output"]);
    chain[0]["env_output"] = abs(&chain[0]["env_output"]);
    assert_eq!(chain[1]["parameter"], "WorkerAMI");
    chain[1]["custom_endpoint_cloudformation"] = json!(world.ec2_endpoint());
    chain[1]["timeout"] = json!("1m");
    let retention = chain[2].as_object_mut().expect("object");
    retention.remove("keep_younger_than");
    retention.insert("keep_latest".into(), json!(2));
    pps
}

/// The template: the world's sshd as the instance, one uploaded file (`files/motd.txt`) that
/// lands at `dest` in the sandbox, a script that reads it and the secret's presence.
fn template(world: &TestWorld, out: &Path, dest: &Path) -> String {
    let sandbox = world.sandbox().display().to_string();
    json!({
        "description": "imgbuild's nightly integration test: images/nightly_example.json's chain on a sandbox-safe web worker",
        "variables": {"project": "imgbuild", "stack_name": STACK, "db_password": null},
        "sensitive-variables": ["db_password"],
        "builders": [builder(world, json!({
            "name": "web_worker",
            "communicator": "ssh",
            "ssh_host": world.ssh_host(),
            "ssh_port": world.ssh_port(),
            "ssh_username": world.ssh_user(),
            "ssh_timeout": "60s",
            // Unique even when two nights share a second (`{{timestamp}}` has one-second
            // resolution); ami-retention still finds them by the prefix before the first `{{`.
            "ami_name": format!("{PREFIX}{{{{timestamp}}}}-{{{{uuid}}}}"),
            "reuse_unchanged": true
        }))],
        "provisioners": [
            {"type": "file", "source": "{{template_dir}}/files/motd.txt",
             "destination": dest.display().to_string()},
            {"type": "shell", "remote_folder": sandbox,
             "environment_vars": ["DB_PASSWORD={{user `db_password`}}"],
             "inline": [
                 format!("cat '{}'", dest.display()),
                 "test -n \"$DB_PASSWORD\" && echo 'database password is set'"
             ]}
        ],
        "post-processors": post_processors(world, out)
    })
    .to_string()
}

/// One night: `bash scripts/nightly.sh -var-file=<secrets>` as CI runs it (a clean
/// environment: PATH, HOME, the world's, and the job's variables), bounded in time.
fn night(n: u32, s: &Scratch, e: &Env, config: &Path) -> Run {
    night_with(n, s, e, config, &[])
}

/// [`night`] with more `imgbuild build` flags for the script to pass on.
fn night_with(n: u32, s: &Scratch, e: &Env, config: &Path, flags: &[&str]) -> Run {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/nightly.sh"))
        .args(flags)
        .arg(format!("-var-file={}", s.path("secrets.json").display()))
        .current_dir(s.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(e.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("IMGBUILD", imgbuild_bin())
        .env("NIGHTLY_TEMPLATE", s.path("t.json"))
        .env("IMGBUILD_FINGERPRINT_KEY", FINGERPRINT_KEY)
        .env("XDG_CONFIG_HOME", config);
    let started = Instant::now();
    let out = run_bounded(&mut cmd, NIGHT_TIMEOUT).unwrap_or_else(|e| panic!("night {n}: {e}"));
    let run = Run {
        code: out
            .status
            .code()
            .expect("nightly.sh exits, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "===== night {n}: scripts/nightly.sh exited {} after {:.1} s =====\n--- stdout ---\n{}--- stderr ---\n{}===== end of night {n} =====",
        run.code,
        started.elapsed().as_secs_f64(),
        run.stdout,
        run.stderr
    );
    run
}

fn ok(n: u32, r: &Run) {
    assert_eq!(
        r.code, 0,
        "night {n}:\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    has(&r.stdout, "nightly: done: AMI built or reused; the post-processors (IDs, stack update, pruning) succeeded\n");
}

fn has(hay: &str, needle: &str) {
    assert!(hay.contains(needle), "{needle:?} not in:\n{hay}");
}

/// A row of the retention table: `action` for `ami` with `reason`.
fn row(stdout: &str, action: &str, ami: &str, reason: &str) -> bool {
    stdout.lines().any(|l| {
        l.contains(&format!("  {action}  ")) && l.contains(ami) && l.trim_end().ends_with(reason)
    })
}

/// The AMI IDs of `ami-outputs`' JSON file.
fn amis_json(s: &Scratch) -> String {
    std::fs::read_to_string(s.path("out/web-worker-amis.json")).expect("web-worker-amis.json")
}

/// The AMIs of `st` in us-east-1 whose name starts with `prefix`.
fn named(st: &BTreeMap<&str, Region>, prefix: &str) -> BTreeSet<String> {
    st["us-east-1"]
        .images
        .iter()
        .filter(|(_, (name, _, _))| name.starts_with(prefix))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The stack's parameters after an update to `ami`: the AMI, the others as before.
fn assert_stack_on(world: &TestWorld, ami: &str, night: u32) {
    let (status, params) = stack(world);
    assert_eq!(status, "UPDATE_COMPLETE", "night {night}");
    assert_eq!(params["WorkerAMI"], ami, "night {night}");
    assert_eq!(params["InstanceProfile"], INSTANCE_PROFILE, "night {night}");
    assert_eq!(params["InstanceType"], "t2.micro", "night {night}");
    assert_eq!(params.len(), 3, "night {night}: {params:?}");
    assert_eq!(launch_template_image(world), ami, "night {night}");
}

#[test]
fn nightly_three_nights_build_reuse_rebuild_and_prune() {
    let world = world_or_skip!();
    let e = env(&world);
    let config = tempfile::tempdir().expect("config dir");
    // Straight into the sandbox (writable by the SSH user; a directory made here would not be).
    let dest = world
        .sandbox()
        .join(format!("{}-motd.txt", unique_name("nightly")));
    let s = Scratch::new()
        .with("files/motd.txt", "web worker, night build 1\n")
        .with("secrets.json", &json!({"db_password": SECRET}).to_string())
        .with("out/.keep", "");
    let t = template(&world, &s.path("out"), &dest);
    let s = s.with("t.json", &t);

    // The account before the first night: the stack on the public base image, and two AMIs of
    // earlier nights (a little more than a second apart: EC2 dates have one-second resolution).
    create_stack(&world, SOURCE_AMI);
    let seeded = history(&world, &format!("{PREFIX}seed-"), 2);
    let seeded_snaps = images_named(&world, "us-east-1", PREFIX);
    for id in &seeded {
        assert!(!seeded_snaps[id].is_empty(), "{id} has snapshots");
    }
    let initial = state(&world);

    // ---- Night 1: builds, updates the stack, prunes the oldest seeded AMI.
    let r1 = night(1, &s, &e, config.path());
    ok(1, &r1);
    has(&r1.stdout, "==> web_worker: No AMI with fingerprint ");
    let ami1 = ami_from_stdout(&r1.stdout, "us-east-1");
    assert!(!r1.stdout.contains("reusing"), "{}", r1.stdout);
    assert_stack_on(&world, &ami1, 1);
    has(&r1.stdout, &format!(
        "==> web_worker (cloudformation-update): Updating stack web_worker (us-east-1, CREATE_COMPLETE): WorkerAMI={ami1}, keeping InstanceProfile, InstanceType\n"
    ));
    has(
        &r1.stdout,
        "==> web_worker (cloudformation-update): Stack web_worker (us-east-1) is UPDATE_COMPLETE after ",
    );
    assert_eq!(
        std::fs::read_to_string(&dest).expect("uploaded"),
        "web worker, night build 1\n"
    );
    has(&amis_json(&s), &ami1);
    // One look at the emulator after night 1 (each look lists ~1100 snapshots per region).
    let after1 = state(&world);
    assert_eq!(
        named(&after1, PREFIX),
        BTreeSet::from([seeded[1].clone(), ami1.clone()]),
        "{}",
        r1.stdout
    );
    assert!(
        row(
            &r1.stdout,
            "deregistered",
            &seeded[0],
            "not among the newest 2"
        ),
        "{}",
        r1.stdout
    );
    assert!(
        row(&r1.stdout, "keep", &ami1, "the build's artifact"),
        "{}",
        r1.stdout
    );
    has(
        &r1.stdout,
        "==> web_worker (ami-retention): 2 kept, 1 deregistered, 1 snapshot(s) deleted\n",
    );
    let snaps = &after1["us-east-1"].snapshots;
    for snap in &seeded_snaps[&seeded[0]] {
        assert!(
            !snaps.contains_key(snap),
            "night 1: snapshot {snap} of {} is still there",
            seeded[0]
        );
    }
    let fp1 = after1["us-east-1"].images[&ami1].1[FP_TAG].clone();
    assert_eq!(fp1.len(), 64, "{fp1}");
    let instances1 = after1["us-east-1"].instances.len();
    assert_eq!(
        instances1,
        initial["us-east-1"].instances.len() + 1,
        "night 1 launched one instance"
    );

    // ---- Night 2: nothing changed: reused, nothing launched, no stack update, nothing pruned.
    std::fs::remove_file(&dest).expect("rm uploaded");
    let before2 = after1;
    let r2 = night(2, &s, &e, config.path());
    ok(2, &r2);
    assert_eq!(before2, state(&world), "night 2 changed nothing in EC2");
    assert!(!dest.exists(), "night 2 provisioned nothing");
    has(
        &r2.stdout,
        &format!(
            "==> web_worker: reusing {ami1} (fingerprint {} unchanged since ",
            &fp1[..12]
        ),
    );
    assert_eq!(ami_from_stdout(&r2.stdout, "us-east-1"), ami1);
    has(&r2.stdout, &format!(
        "==> web_worker (cloudformation-update): Stack web_worker (us-east-1) already uses {ami1} as WorkerAMI: no updates are to be performed\n"
    ));
    assert!(!r2.stdout.contains("UPDATE_IN_PROGRESS"), "{}", r2.stdout);
    assert_stack_on(&world, &ami1, 2);
    has(
        &r2.stdout,
        "==> web_worker (ami-retention): 2 kept, 0 deregistered, 0 snapshot(s) deleted\n",
    );
    has(&amis_json(&s), &ami1);

    // ---- Night 3: one byte of the uploaded file changed (1 -> 3): rebuilt, stack moved, pruned.
    std::fs::write(s.path("files/motd.txt"), "web worker, night build 3\n").expect("edit");
    let r3 = night(3, &s, &e, config.path());
    ok(3, &r3);
    let ami3 = ami_from_stdout(&r3.stdout, "us-east-1");
    assert_ne!(ami3, ami1);
    has(&r3.stdout, "==> web_worker: No AMI with fingerprint ");
    assert!(!r3.stdout.contains("reusing"), "{}", r3.stdout);
    assert_stack_on(&world, &ami3, 3);
    has(&r3.stdout, &format!(
        "==> web_worker (cloudformation-update): Updating stack web_worker (us-east-1, UPDATE_COMPLETE): WorkerAMI={ami3}, keeping InstanceProfile, InstanceType\n"
    ));
    assert_eq!(
        std::fs::read_to_string(&dest).expect("uploaded again"),
        "web worker, night build 3\n"
    );
    has(&amis_json(&s), &ami3);
    let after3 = state(&world);
    let fp3 = after3["us-east-1"].images[&ami3].1[FP_TAG].clone();
    assert_ne!(fp3, fp1);
    assert_eq!(
        named(&after3, PREFIX),
        BTreeSet::from([ami1.clone(), ami3.clone()]),
        "{}",
        r3.stdout
    );
    assert!(
        row(
            &r3.stdout,
            "deregistered",
            &seeded[1],
            "not among the newest 2"
        ),
        "{}",
        r3.stdout
    );
    // The AMI the stack ran before: kept, as one of the newest two, with its snapshots.
    assert!(
        row(&r3.stdout, "keep", &ami1, "among the newest 2"),
        "{}",
        r3.stdout
    );
    assert!(
        row(&r3.stdout, "keep", &ami3, "the build's artifact"),
        "{}",
        r3.stdout
    );
    has(
        &r3.stdout,
        "==> web_worker (ami-retention): 2 kept, 1 deregistered, 1 snapshot(s) deleted\n",
    );
    for snap in &seeded_snaps[&seeded[1]] {
        assert!(
            !after3["us-east-1"].snapshots.contains_key(snap),
            "night 3: snapshot {snap} of {} is still there",
            seeded[1]
        );
    }
    for snap in &after3["us-east-1"].images[&ami1].2 {
        assert!(
            after3["us-east-1"].snapshots.contains_key(snap),
            "snapshot {snap} of kept {ami1} is gone"
        );
    }
    assert_eq!(
        after3["us-east-1"].instances.len(),
        instances1 + 1,
        "night 3 launched one instance"
    );

    // Leaks: over the three nights, nothing was added but the two AMIs (and their snapshots);
    // every instance the nights launched is terminated; no key pair, group or volume is left.
    assert_nothing_left(&initial, &after3, &[&ami1, &ami3], "after three nights");
    // One journal per build per run (night 2's too, though it launched nothing), all clean.
    let journals: Vec<PathBuf> = crate::support::build::journal_files(e.journal.path());
    assert_eq!(journals.len(), 3, "{journals:?}");
    for p in &journals {
        let text = std::fs::read_to_string(p).expect("journal");
        let last: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("json");
        assert_eq!(last["event"], "finished", "{}: {text}", p.display());
        assert_eq!(last["clean"], true, "{}: {text}", p.display());
    }

    // The secret: in no output, tag or journal; the CI key was used (no key file was made).
    let mut haystack = String::new();
    for r in [&r1, &r2, &r3] {
        haystack.push_str(&r.stdout);
        haystack.push_str(&r.stderr);
    }
    for (_, tags, _) in after3["us-east-1"].images.values() {
        for (k, v) in tags {
            haystack.push_str(&format!("{k}={v}\n"));
        }
    }
    for f in crate::support::build::journal_files(e.journal.path()) {
        haystack.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    for dir in ["out"] {
        for f in std::fs::read_dir(s.path(dir)).expect("outputs").flatten() {
            haystack.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
        }
    }
    assert!(!haystack.contains(SECRET), "the secret leaked");
    assert!(
        !haystack.contains(FINGERPRINT_KEY),
        "the fingerprint key leaked"
    );
    assert!(
        !config.path().join("imgbuild/fingerprint.key").exists(),
        "IMGBUILD_FINGERPRINT_KEY was not used"
    );
    assert!(
        !haystack.contains("IMGBUILD_FINGERPRINT_KEY is not set"),
        "nightly.sh warned about the key"
    );
}

/// Regression: `scripts/nightly.sh` exited 3 ("page someone if cleanup could not finish") also
/// when its `imgbuild cleanup` had removed everything the failed build left behind. It now exits
/// 1 then (a failed build, nothing left: what 1 means everywhere else), and 3 only when
/// something is still there.
#[test]
fn nightly_sh_exits_1_not_3_when_its_cleanup_removed_what_the_failed_build_left() {
    let world = world_or_skip!();
    let e = env(&world);
    let config = tempfile::tempdir().expect("config dir");
    let dest = world
        .sandbox()
        .join(format!("{}-motd.txt", unique_name("nightly-broken")));
    let s = Scratch::new()
        .with("files/motd.txt", "web worker, broken commit\n")
        .with("secrets.json", &json!({"db_password": SECRET}).to_string())
        .with("out/.keep", "");
    // A commit that breaks the image: its last script fails.
    let mut t: Value =
        serde_json::from_str(&template(&world, &s.path("out"), &dest)).expect("json");
    t["provisioners"]
        .as_array_mut()
        .expect("provisioners")
        .push(
            json!({"type": "shell", "remote_folder": world.sandbox().display().to_string(),
                     "inline": ["echo 'broken commit' >&2", "exit 7"]}),
        );
    let s = s.with("t.json", &t.to_string());
    create_stack(&world, SOURCE_AMI);
    let before = state(&world);

    // -on-error=abort (passed through by the script) leaves the instance, key pair and group
    // behind: imgbuild exits 3 and the script's cleanup removes them.
    let r = night_with(1, &s, &e, config.path(), &["-on-error=abort"]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    has(&r.stderr, "resources were left behind:");
    has(
        &r.stderr,
        "nightly: resources were left behind (exit 3): running imgbuild cleanup\n",
    );
    has(
        &r.stderr,
        "nightly: cleanup removed everything; the build still failed (exit 1)\n",
    );
    let after = state(&world);
    assert_nothing_left(&before, &after, &[], "after nightly.sh's cleanup");
    assert_eq!(
        after["us-east-1"].instances.len(),
        before["us-east-1"].instances.len() + 1,
        "the build launched one instance"
    );
    // Nothing was handed on: the stack is as it was created, no AMI with the prefix exists.
    let (status, params) = stack(&world);
    assert_eq!(
        (status.as_str(), params["WorkerAMI"].as_str()),
        ("CREATE_COMPLETE", SOURCE_AMI)
    );
    assert!(images_named(&world, "us-east-1", PREFIX).is_empty());
    assert!(!s.path("out/web-worker-amis.json").exists());
}
