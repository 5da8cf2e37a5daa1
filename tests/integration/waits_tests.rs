//! The waits on EC2 through the delay proxy (`scripts/delayproxy.py`), whose states lag as
//! EC2's do: parallel builds share one poller per region and kind (one Describe call names the
//! IDs of every build), throttling slows the poller instead of failing the builds, and an image
//! that fails ends its wait at once with EC2's reason. Counts and end states only.

use serde_json::{json, Value};

use crate::support::build::{ami_from_stdout, build, builder, env, SOURCE_AMI};
use crate::support::building::Building;
use crate::support::cfn::{create_stack, stack, STACK};
use crate::support::cli::Scratch;
use crate::support::delayproxy::DelayProxy;
use crate::support::state::{assert_nothing_left, state};
use crate::support::world::TestWorld;

/// Short lags: instance start 2 s, stop 2 s, terminate 1 s, AMI 3 s, each + 0-1 s.
const SHORT: &[&str] = &[
    "--start",
    "2",
    "--stop",
    "2",
    "--terminate",
    "1",
    "--ami",
    "3",
    "--copy",
    "3",
    "--jitter",
    "1",
];

/// A template of `n` builders (`w1`..) against the proxy.
fn template(world: &TestWorld, proxy: &DelayProxy, n: usize) -> String {
    let builders: Vec<Value> = (1..=n)
        .map(|i| {
            let mut b = builder(world, json!({"name": format!("w{i}")}));
            b["custom_endpoint_ec2"] = json!(proxy.url());
            b
        })
        .collect();
    json!({"variables": {"project": "imgbuild"}, "builders": builders}).to_string()
}

#[test]
fn parallel_builds_share_one_poller_that_names_every_id() {
    let world = world_or_skip!();
    // Instances take 8 s to start and to stop (SHORT's 2 s could pass between two builds'
    // launches on a loaded machine), so the three builds' waits overlap and share calls.
    let mut args = SHORT.to_vec();
    args.extend(["--start", "8", "--stop", "8"]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with("t.json", &template(&world, &proxy, 3));
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let amis: Vec<String> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("us-east-1: "))
        .filter(|a| a.starts_with("ami-"))
        .map(str::to_string)
        .collect();
    assert_eq!(amis.len(), 3, "{}", r.stdout);
    let instances = proxy.calls("DescribeInstances");
    let most = instances.iter().map(|c| c.0).max().unwrap_or(0);
    assert!(
        most >= 2,
        "no DescribeInstances call named more than one build's instance: {instances:?}"
    );
    // Every instance wait (running, stopped, terminated) of the three builds was noticed.
    let events = proxy.events();
    let kinds = |ev: &str| {
        let mut k: Vec<String> = events
            .iter()
            .filter(|e| e["ev"] == ev)
            .map(|e| {
                format!(
                    "{} {}",
                    e["kind"].as_str().unwrap_or("?"),
                    e["id"].as_str().unwrap_or("?")
                )
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds("noticed"), kinds("change"), "every change noticed");
    // One source AMI lookup (the filter's DescribeImages) served the three builds.
    let lookups = events
        .iter()
        .filter(|e| e["ev"] == "call" && e["action"] == "DescribeImages")
        .filter(|e| {
            e["filters"]
                .as_array()
                .is_some_and(|f| f.iter().any(|n| n == "virtualization-type"))
        })
        .count();
    assert_eq!(lookups, 1, "source AMI lookups of three builds");
    assert_eq!(
        kinds("change").len(),
        3 * 3 + 3,
        "3 x (run, stop, terminate) + 3 AMIs"
    );
    let kept: Vec<&str> = amis.iter().map(String::as_str).collect();
    assert_nothing_left(&before, &state(&world), &kept, "three parallel builds");
}

#[test]
fn throttling_slows_the_shared_poller_instead_of_failing_the_build() {
    let world = world_or_skip!();
    let mut args = SHORT.to_vec();
    args.extend(["--throttle", "8"]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with("t.json", &template(&world, &proxy, 1));
    let log = s.path("imgbuild.log");
    let log_s = log.display().to_string();
    let r = build(
        &s,
        &e,
        &["t.json"],
        &[
            ("IMGBUILD_LOG", "imgbuild=debug"),
            ("IMGBUILD_LOG_PATH", &log_s),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let throttled: usize = ["DescribeInstances", "DescribeImages", "DescribeSnapshots"]
        .iter()
        .map(|a| proxy.calls(a).iter().filter(|c| c.1 == 503).count())
        .sum();
    assert_eq!(throttled, 8, "the proxy throttled 8 calls");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("the shared poller slows down"),
        "no slow-down in the log:\n{text}"
    );
}

#[test]
fn a_failed_image_ends_its_wait_at_once_with_ec2s_reason() {
    let world = world_or_skip!();
    let mut args = SHORT.to_vec();
    args.push("--fail-images");
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with("t.json", &template(&world, &proxy, 1));
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("went to state failed while waiting for it to be available")
            && out.contains("Client.SnapshotCreationFailed: the snapshot of /dev/sda1 failed"),
        "{out}"
    );
    // The wait ended at the first answer that showed `failed`: no DescribeImages call of the
    // wait after it (teardown's own look at the image is one call).
    let evs = proxy.events();
    let failed_at = evs
        .iter()
        .find(|e| e["ev"] == "noticed" && e["kind"] == "ami")
        .and_then(|e| e["t"].as_f64())
        .expect("the failure was noticed");
    let after = evs
        .iter()
        .filter(|e| e["ev"] == "call" && e["action"] == "DescribeImages")
        .filter(|e| e["t"].as_f64().unwrap_or(0.0) > failed_at)
        .count();
    assert!(after <= 3, "{after} DescribeImages calls after the failure");
    assert_nothing_left(&before, &state(&world), &[], "failed image");
}

#[test]
fn teardown_waits_for_a_pending_image_on_the_shared_poller() {
    let world = world_or_skip!();
    // The AMI stays pending 6-7 s: the interrupt comes while the build waits for it.
    let mut args = SHORT.to_vec();
    args.extend(["--ami", "6"]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with("t.json", &template(&world, &proxy, 1));
    let before = state(&world);
    let mut b = Building::start(&s, &e, None);
    b.wait_for("Waiting for AMI");
    b.sigint();
    let (code, out, err) = b.finish();
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Cleaning up: deregistering AMI"),
        "{out}\n{err}"
    );
    let evs = proxy.events();
    let created = evs
        .iter()
        .position(|e| e["ev"] == "change" && e["kind"] == "ami")
        .expect("CreateImage went through the proxy");
    // After CreateImage, every look at the image (the build's wait, then teardown's wait for
    // it to settle before it is deregistered) was a shared poller's filter call, and teardown
    // saw the image leave `pending`.
    let looks: Vec<&Value> = evs[created..]
        .iter()
        .filter(|e| e["ev"] == "call" && e["action"] == "DescribeImages")
        .collect();
    assert!(looks.len() >= 2, "{looks:?}");
    assert!(
        looks.iter().all(|e| e["listed"] == 0 && e["ids"] != 0),
        "a DescribeImages call of its own after CreateImage: {looks:?}"
    );
    assert!(
        evs.iter()
            .any(|e| e["ev"] == "noticed" && e["kind"] == "ami"),
        "teardown never saw the AMI settle"
    );
    assert_nothing_left(&before, &state(&world), &[], "interrupted AMI wait");
}

#[test]
fn a_stack_update_is_waited_for_on_the_shared_stack_poller_which_rides_out_throttling() {
    let world = world_or_skip!();
    create_stack(&world, SOURCE_AMI);
    // The update takes 3-4 s; the first 6 DescribeStacks after it are throttled (more than
    // the SDK's own 3 attempts of one call absorb).
    let mut args = SHORT.to_vec();
    args.extend(["--stack", "3", "--throttle-stacks", "6"]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let mut t: Value = serde_json::from_str(&template(&world, &proxy, 1)).expect("template");
    t["post-processors"] = json!([{"type": "cloudformation-update", "stack_name": STACK,
        "parameter": "WorkerAMI", "custom_endpoint_cloudformation": proxy.url()}]);
    let s = Scratch::new().with("t.json", &t.to_string());
    let log = s.path("imgbuild.log");
    let log_s = log.display().to_string();
    let r = build(
        &s,
        &e,
        &["t.json"],
        &[
            ("IMGBUILD_LOG", "imgbuild=debug"),
            ("IMGBUILD_LOG_PATH", &log_s),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let (status, params) = stack(&world);
    assert_eq!(
        (status.as_str(), params["WorkerAMI"].as_str()),
        ("UPDATE_COMPLETE", ami.as_str())
    );
    let calls = proxy.calls("DescribeStacks");
    assert_eq!(calls.iter().filter(|c| c.1 == 400).count(), 6, "{calls:?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("the shared poller slows down") && l.contains("stack")),
        "no slow-down of the stack poller in the log:\n{text}"
    );
    // The wait saw the update in progress and then its end.
    assert!(
        proxy
            .events()
            .iter()
            .any(|e| e["ev"] == "noticed" && e["kind"] == "stack"),
        "the end of the update was never seen"
    );
    assert!(
        r.stdout
            .contains("Stack web_worker (us-east-1) is UPDATE_COMPLETE after"),
        "{}",
        r.stdout
    );
}
