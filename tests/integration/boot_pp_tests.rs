//! The `boot-test` post-processor against a world of each test's own: the build's AMI is
//! launched again with the boot test's own key pair and security group, its checks run over SSH
//! on the world's sshd, and everything it made is gone afterwards; a failing check fails the
//! build and deregisters the AMI (and deletes its snapshots); a hanging check is killed at the
//! boot test's `timeout`; `kill -9` during the boot test, then `imgbuild cleanup`, leaves
//! nothing but the delivered AMI.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::boot::{kill_pids, line_of, ssh_world_builder};
use crate::support::build::{ami_from_stdout, cleanup, env};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::state::{assert_nothing_left, state, Region};
use crate::support::world::TestWorld;

/// A template with one SSH build, one provisioner and this chain of post-processors.
fn template_with(world: &TestWorld, chain: Value) -> String {
    template_in(world, json!({}), chain)
}

/// [`template_with`], with `extra` builder options.
fn template_in(world: &TestWorld, extra: Value, chain: Value) -> String {
    json!({
        "variables": {"project": "imgbuild"},
        "builders": [ssh_world_builder(world, extra)],
        "provisioners": [{"type": "shell", "inline": ["echo provisioned"]}],
        "post-processors": [chain]
    })
    .to_string()
}

/// The number of instances in us-east-1.
fn instances(s: &BTreeMap<&str, Region>) -> usize {
    s["us-east-1"].instances.len()
}

/// The AMIs in us-east-1 in `now` that were not in `before`.
fn new_images(before: &BTreeMap<&str, Region>, now: &BTreeMap<&str, Region>) -> Vec<String> {
    now["us-east-1"]
        .images
        .keys()
        .filter(|i| !before["us-east-1"].images.contains_key(*i))
        .cloned()
        .collect()
}

/// A boot test (with these `options`) whose check writes its PID to `pids` (for `kill_pids`),
/// prints `marker`, then sleeps `secs` seconds.
fn hanging_check(pids: &Path, marker: &str, secs: u32, options: Value) -> Value {
    let mut pp = json!({
        "type": "boot-test",
        "inline": [format!("echo $$ >>{}", pids.display()), format!("echo {marker}"), format!("exec sleep {secs}")]
    });
    for (k, v) in options.as_object().expect("options are an object") {
        pp[k] = v.clone();
    }
    json!([pp])
}

#[test]
fn a_passing_boot_test_keeps_the_ami_and_leaves_nothing_else() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let manifest = world.sandbox().join("manifest.json");
    let chain = json!([
        {"type": "boot-test", "inline": ["echo check-ran on {{build `ID`}}", "test \"$CHECK\" = yes"],
         "environment_vars": ["CHECK=yes"], "timeout": "1m"},
        {"type": "manifest", "output": manifest.display().to_string()}
    ]);
    let s = Scratch::new().with("t.json", &template_with(&world, chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let ami = ami_from_stdout(&out, "us-east-1");
    let running = line_of(&out, "Running post-processor: boot-test", 0);
    let check = line_of(&out, "check-ran on i-", running);
    let passed = line_of(&out, "boot test passed:", check);
    line_of(&out, "Running post-processor: manifest", passed);
    assert!(manifest.exists(), "the chain went on to the manifest");
    let after = state(&world);
    // The build's instance and the boot test's, both terminated.
    assert_eq!(
        instances(&after) - instances(&before),
        2,
        "{:?}",
        after["us-east-1"].instances
    );
    assert_nothing_left(&before, &after, &[&ami], "after a passing boot test");
}

#[test]
fn a_failing_check_fails_the_build_and_deregisters_the_ami_and_its_snapshots() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let manifest = world.sandbox().join("manifest.json");
    let chain = json!([
        {"type": "boot-test", "inline": ["echo the-app-is-broken >&2", "exit 3"]},
        {"type": "manifest", "output": manifest.display().to_string()}
    ]);
    // Copied to a second region: both AMIs go.
    let extra = json!({"ami_regions": ["us-west-2"]});
    let s = Scratch::new().with("t.json", &template_in(&world, extra, chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("a check failed:"), "{all}");
    assert!(all.contains("exited with status 3"), "{all}");
    assert!(all.contains("the-app-is-broken"), "{all}");
    assert!(
        all.contains("deregister_on_failure: deregistered ami-"),
        "{all}"
    );
    assert!(
        !manifest.exists(),
        "the chain stopped at the failed boot test"
    );
    assert_nothing_left(&before, &state(&world), &[], "after a failed boot test");
}

#[test]
fn a_hanging_check_is_killed_at_its_timeout() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let pids = world.sandbox().join("hang.pids");
    // 5 s: the check must print its line before the timeout strikes, which on a loaded machine
    // (a remote shell started through sshd) can take more than a second.
    let options = json!({"timeout": "5s", "deregister_on_failure": false});
    let chain = hanging_check(&pids, "check-hangs", 30, options);
    let s = Scratch::new().with("t.json", &template_with(&world, chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    kill_pids(&pids);
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("check-hangs"), "{all}");
    assert!(all.contains("timed out after 5s"), "{all}");
    let after = state(&world);
    let new = new_images(&before, &after);
    assert_eq!(
        new.len(),
        1,
        "deregister_on_failure false keeps the AMI: {new:?}"
    );
    assert_nothing_left(&before, &after, &[new[0].as_str()], "after a hanging check");
}

#[test]
fn kill_9_during_the_boot_test_then_cleanup_leaves_only_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let pids = world.sandbox().join("check.pids");
    let chain = hanging_check(&pids, "boot-check-running", 60, json!({}));
    let s = Scratch::new().with("t.json", &template_with(&world, chain));
    let mut b = Building::start(&s, &e, None);
    b.wait_for("boot-check-running");
    b.kill9();
    kill_pids(&pids);
    let mid = state(&world);
    let new = new_images(&before, &mid);
    assert_eq!(new.len(), 1, "the build delivered its AMI: {new:?}");
    let ami = new[0].clone();
    assert!(
        mid["us-east-1"].instances.values().any(|s| s == "running"),
        "the boot test's instance runs after kill -9: {:?}",
        mid["us-east-1"].instances
    );
    let r = cleanup(&e, &[]);
    assert_eq!(r.code, 0, "cleanup:\n{}\n{}", r.stdout, r.stderr);
    let after = state(&world);
    assert_eq!(instances(&after) - instances(&before), 2);
    assert_nothing_left(&before, &after, &[&ami], "after kill -9 and cleanup");
}

#[test]
fn ctrl_c_during_the_boot_test_tears_it_down_and_keeps_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let pids = world.sandbox().join("check.pids");
    let chain = hanging_check(&pids, "boot-check-running", 60, json!({}));
    let s = Scratch::new().with("t.json", &template_with(&world, chain));
    let mut b = Building::start(&s, &e, None);
    b.wait_for("boot-check-running");
    let (code, out, err) = b.interrupt();
    kill_pids(&pids);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let running = line_of(&out, "Running post-processor: boot-test", 0);
    line_of(
        &out,
        "(boot-test): Cleaning up: terminating instance",
        running,
    );
    let after = state(&world);
    let new = new_images(&before, &after);
    assert_eq!(
        new.len(),
        1,
        "an interrupted boot test keeps the AMI: {new:?}"
    );
    assert_nothing_left(
        &before,
        &after,
        &[new[0].as_str()],
        "after Ctrl-C in the boot test",
    );
}

#[test]
fn an_instance_that_never_lets_ssh_in_fails_the_boot_test_at_its_ssh_timeout() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let chain = json!([{
        "type": "boot-test", "ssh_username": "no-such-user", "ssh_timeout": "3s",
        "inline": ["echo never-runs"]
    }]);
    let s = Scratch::new().with("t.json", &template_with(&world, chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("failed: the instance did not let SSH in within ssh_timeout (3s): timed out"),
        "{all}"
    );
    assert!(!all.contains("never-runs\n"), "{all}");
    assert!(
        all.contains("deregister_on_failure: deregistered ami-"),
        "{all}"
    );
    assert_nothing_left(&before, &state(&world), &[], "after SSH never came up");
}

#[test]
fn a_failing_boot_test_of_a_reused_ami_keeps_it() {
    let world = world_or_skip!();
    let e = env(&world);
    let flag = world.sandbox().join("broken");
    let chain = json!([{
        "type": "boot-test", "inline": [format!("test ! -e {}", flag.display())]
    }]);
    let text = template_in(&world, json!({"reuse_unchanged": true}), chain);
    let s = Scratch::new().with("t.json", &text);
    let (code, out, err) = Building::start(&s, &e, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let ami = ami_from_stdout(&out, "us-east-1");
    // The same inputs: the AMI is reused, and now its boot test fails.
    std::fs::write(&flag, "").expect("flag");
    let (code, out, err) = Building::start(&s, &e, None).finish();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("a check failed:"), "{all}");
    assert!(
        all.contains(
            "deregister_on_failure: the AMI was reused from an earlier build, so it is kept"
        ),
        "{all}"
    );
    let after = state(&world);
    assert!(
        after["us-east-1"].images.contains_key(&ami),
        "{ami} is kept"
    );
}
