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

/// The boot-test instance as RunInstances made it, read while its check runs: (user data,
/// device names of its block device mappings).
fn boot_test_launch(world: &TestWorld) -> (Option<String>, Vec<String>) {
    world.ec2(|c| async move {
        let out = c
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:Name")
                    .values("imgbuild boot test")
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .expect("DescribeInstances");
        let found: Vec<_> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .collect();
        assert_eq!(found.len(), 1, "one running boot-test instance: {found:?}");
        let id = found[0].instance_id().expect("an instance ID").to_string();
        let devices = found[0]
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.device_name().map(str::to_string))
            .collect();
        let attr = c
            .describe_instance_attribute()
            .instance_id(&id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .expect("DescribeInstanceAttribute");
        let user_data = attr.user_data().and_then(|u| u.value()).map(|b64| {
            let bytes = aws_smithy_types::base64::decode(b64).expect("base64 user data");
            String::from_utf8(bytes).expect("UTF-8 user data")
        });
        (user_data, devices)
    })
}

/// The boot test launches the new AMI as the build launched its instance: with the builder's
/// `user_data` and `launch_block_device_mappings` (an image that boots only with them is judged on
/// production's launch), and with a key pair and security group of its own.
#[test]
fn the_boot_test_launches_with_the_builds_user_data_and_block_devices() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let go = world.sandbox().join("boot-launch-checked");
    let user_data = "#!/bin/sh\necho user-data-of-the-build\n";
    let extra = json!({
        "user_data": user_data,
        "launch_block_device_mappings": [
            {"device_name": "/dev/sdf", "volume_size": 2, "delete_on_termination": true}
        ]
    });
    let wait = format!(
        "i=0; while [ ! -e {0} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -e {0}",
        go.display()
    );
    let chain = json!([{
        "type": "boot-test", "inline": ["echo boot-check-waiting", wait], "timeout": "2m"
    }]);
    let s = Scratch::new().with("t.json", &template_in(&world, extra, chain));
    let mut b = Building::start(&s, &e, None);
    b.wait_for("boot-check-waiting");
    let (got_user_data, devices) = boot_test_launch(&world);
    std::fs::write(&go, "").expect("release the check");
    let (code, out, err) = b.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(got_user_data.as_deref(), Some(user_data));
    assert!(devices.contains(&"/dev/sdf".to_string()), "{devices:?}");
    let ami = ami_from_stdout(&out, "us-east-1");
    assert_nothing_left(&before, &state(&world), &[&ami], "after the boot test");
}

/// `scripts/example_records.py summary RECORDS RC 1 2` (example.sh's ending): (exit code, stdout).
fn example_summary(records: &Path, rc: i32) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/example_records.py");
    let out = crate::support::world::run_bounded(
        std::process::Command::new("python3")
            .arg(script)
            .arg("summary")
            .arg(records)
            .args([rc.to_string(), "1".into(), "2".into()]),
        std::time::Duration::from_secs(30),
    )
    .expect("example_records.py runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// scripts/example.sh reads imgbuild's `-machine-readable` records, not its wording: the records
/// of a real build with a passing boot test (its `boot-test` record, the artifact's id, the
/// timeline, the checks' own output) give the example's ending with the AMI and the result; those
/// of a failing one give FAILED with the boot test's reason.
#[test]
fn example_sh_reads_the_boot_test_and_the_ami_from_machine_readable_records() {
    let world = world_or_skip!();
    let e = env(&world);
    let checks = json!([{
        "type": "boot-test", "timeout": "1m",
        "inline": ["echo 'web worker checks passed: celery enabled, django answers'",
                   "echo GET http://127.0.0.1/health/", "echo HTTP/1.1 200 OK",
                   "echo 'Server: Apache'", "echo '{\"status\": \"ok\"}'"]
    }]);
    let extra = json!({"name": "web_worker"});
    let s = Scratch::new().with("t.json", &template_in(&world, extra.clone(), checks));
    let args = ["-machine-readable".to_string(), "t.json".to_string()];
    let (code, out, err) = Building::spawn(s.dir.path(), &args, &e.vars, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains(",web_worker,boot-test,"))
        .unwrap_or_else(|| panic!("a boot-test record:\n{out}"));
    assert!(line.contains(",boot-test,passed,us-east-1,ami-"), "{line}");
    let ami = line.rsplit(',').next().expect("the AMI").to_string();
    let records = s.dir.path().join("passed.records");
    std::fs::write(&records, &out).expect("records");
    let (rc, text) = example_summary(&records, 0);
    assert_eq!(rc, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], format!("==> AMI: {ami} (us-east-1)"), "{text}");
    assert_eq!(
        lines[2],
        format!("    boot test: PASSED ({ami} booted in us-east-1 and its checks passed)"),
        "{text}"
    );
    assert_eq!(
        lines[3], "      web worker checks passed: celery enabled, django answers",
        "{text}"
    );
    assert_eq!(
        lines[4],
        "      the instance answered: HTTP/1.1 200 OK, Server: Apache, {\"status\": \"ok\"}",
        "{text}"
    );
    // What a person sees of the records: the human lines, each AMI listed once.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/example_records.py");
    let shown = crate::support::world::run_bounded(
        std::process::Command::new("sh")
            .args(["-c", "python3 \"$0\" render <\"$1\""])
            .arg(&script)
            .arg(&records),
        std::time::Duration::from_secs(30),
    )
    .expect("render runs");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(": ==> web_worker (boot-test): "), "{shown}");
    assert_eq!(
        shown.matches(&format!(": us-east-1: {ami}\n")).count(),
        1,
        "{shown}"
    );
    let time = text.lines().find(|l| l.contains("instance to first SSH"));
    let time = time.unwrap_or_else(|| panic!("{text}"));
    assert!(
        !time.contains("? s"),
        "every phase is in the records: {time}"
    );

    let failing = json!([{"type": "boot-test", "inline": ["echo broken >&2", "exit 4"]}]);
    let s = Scratch::new().with("t.json", &template_in(&world, extra, failing));
    let (code, out, _) = Building::spawn(s.dir.path(), &args, &e.vars, None).finish();
    assert_eq!(code, 1, "{out}");
    let records = s.dir.path().join("failed.records");
    std::fs::write(&records, &out).expect("records");
    let (rc, text) = example_summary(&records, code);
    assert_eq!(rc, 1, "{text}");
    assert!(
        text.contains("==> FAILED (exit 1): the boot test failed: see its output above"),
        "{text}"
    );
    assert!(text.contains("a check failed:"), "{text}");
    assert!(text.contains("exited with status 4"), "{text}");
    assert!(!text.contains("AMI:"), "{text}");
}
