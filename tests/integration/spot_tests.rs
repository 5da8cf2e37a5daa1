//! Spot build instances against moto: `spot_price` makes `RunInstances` request a one-time spot
//! instance (market options), which the ledger and the journal know like any instance, so a
//! finished build, and `imgbuild cleanup` after `kill -9`, leave nothing. moto shows the
//! instance's lifecycle (`spot`); it makes no spot request object for market options (so the
//! request's `spot_tags` cannot be seen), and it cannot show EC2 reclaiming the instance or a
//! price that is too low (it fulfils every request): the delay proxy (`--refuse TYPE=CODE`)
//! answers RunInstances of chosen types with EC2's capacity and price errors instead, for the
//! tests of `spot_instance_types` tried in order.

use serde_json::json;

use crate::support::build::{ami_from_stdout, build, builder, cleanup, env, template};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::delayproxy::DelayProxy;
use crate::support::state::{assert_nothing_left, state};

/// (instance id, lifecycle, instance type) of every instance, and the tags of every spot request.
type SpotView = (Vec<(String, String, String)>, Vec<Vec<(String, String)>>);

/// The new instances of the build (ids) with their lifecycle and the spot requests' tags.
fn spot_view(world: &crate::support::world::TestWorld) -> SpotView {
    world.ec2(|c| async move {
        let mut instances = Vec::new();
        let out = c
            .describe_instances()
            .send()
            .await
            .expect("DescribeInstances");
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            instances.push((
                i.instance_id().unwrap_or_default().to_string(),
                i.instance_lifecycle()
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default(),
                i.instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
            ));
        }
        let reqs = c
            .describe_spot_instance_requests()
            .send()
            .await
            .map(|o| {
                o.spot_instance_requests()
                    .iter()
                    .map(|r| {
                        r.tags()
                            .iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_string(),
                                    t.value().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        (instances, reqs)
    })
}

#[test]
fn spot_price_builds_on_a_spot_instance_and_leaves_nothing() {
    let world = world_or_skip!();
    let e = env(&world);
    let b = builder(
        &world,
        json!({"instance_type": null, "spot_price": "auto", "spot_instance_types": ["t3.small", "t3.micro"],
               "spot_tags": {"Purpose": "spot-test"}}),
    );
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Launching a source spot instance (t3.small) from ami-"),
        "{}",
        r.stdout
    );
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let after = state(&world);
    assert_nothing_left(&before, &after, &[&ami], "after a spot build");
    let (instances, requests) = spot_view(&world);
    let new: Vec<&(String, String, String)> = instances
        .iter()
        .filter(|(id, ..)| !before["us-east-1"].instances.contains_key(id))
        .collect();
    assert_eq!(new.len(), 1, "{instances:?}");
    assert_eq!(new[0].1, "spot", "the instance is a spot instance");
    // moto makes no spot request object for RunInstances' market options (EC2 does, and
    // closes it when the instance terminates): nothing is left of one either.
    assert!(requests.is_empty(), "{requests:?}");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE"
)]
fn a_spot_build_killed_after_launch_is_removed_by_cleanup() {
    let world = world_or_skip!();
    let e = env(&world);
    let b = builder(&world, json!({"spot_price": "0.05"}));
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let before = state(&world);
    let mut building = Building::start_with(&s, &e.vars, Some("launch:60"));
    building.wait_for("test hook: pausing");
    building.kill9();
    let (instances, _) = spot_view(&world);
    assert!(
        instances
            .iter()
            .any(|(id, l, _)| l == "spot" && !before["us-east-1"].instances.contains_key(id)),
        "a spot instance exists after the kill: {instances:?}"
    );
    let r = cleanup(&e, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_nothing_left(
        &before,
        &state(&world),
        &[],
        "after cleanup of a killed spot build",
    );
}

#[test]
fn spot_options_that_ec2_would_refuse_are_validate_errors() {
    let t = r#"{"builders": [{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "u", "ami_name": "a-{{timestamp}}",
     "spot_price": "0.05", "block_duration_minutes": 60, "fleet_tags": {"a": "b"}}]}"#;
    let r = Scratch::new()
        .with("t.json", t)
        .run(&["validate", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("error: EC2 no longer offers spot blocks (defined-duration spot instances): it would refuse the request"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("warning: fleet_tags make no difference"),
        "{}",
        r.stderr
    );
}

/// No lags: the proxy only refuses the chosen types.
const NO_LAG: &[&str] = &[
    "--start",
    "0",
    "--stop",
    "0",
    "--terminate",
    "0",
    "--ami",
    "0",
    "--copy",
    "0",
    "--jitter",
    "0",
];

/// A spot template of `types` against `proxy`.
fn spot_template(
    world: &crate::support::world::TestWorld,
    proxy: &DelayProxy,
    types: &[&str],
) -> String {
    let mut b = builder(
        world,
        json!({"instance_type": null, "spot_price": "auto", "spot_instance_types": types}),
    );
    b["custom_endpoint_ec2"] = json!(proxy.url());
    template(b, json!([]))
}

/// The instance types of the RunInstances calls in order, repeats (the SDK's retries of EC2's
/// 5xx answers) folded.
fn attempts(proxy: &DelayProxy) -> Vec<String> {
    let mut t: Vec<String> = proxy.run_instances().into_iter().map(|c| c.0).collect();
    t.dedup();
    t
}

#[test]
fn spot_instance_types_are_tried_in_order_while_ec2_refuses_them() {
    let world = world_or_skip!();
    let mut args = NO_LAG.to_vec();
    args.extend([
        "--refuse",
        "t3.small=InsufficientInstanceCapacity",
        "--refuse",
        "t3.medium=SpotMaxPriceTooLow",
    ]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with(
        "t.json",
        &spot_template(&world, &proxy, &["t3.small", "t3.medium", "t3.micro"]),
    );
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(attempts(&proxy), ["t3.small", "t3.medium", "t3.micro"]);
    let calls = proxy.run_instances();
    let ok: Vec<&(String, u64)> = calls.iter().filter(|c| c.1 == 200).collect();
    assert_eq!(ok.len(), 1, "{calls:?}");
    assert_eq!(ok[0].0, "t3.micro", "{calls:?}");
    for (line, next) in [
        (
            "t3.small refused (InsufficientInstanceCapacity: ",
            "t3.medium",
        ),
        ("t3.medium refused (SpotMaxPriceTooLow: ", "t3.micro"),
    ] {
        let said: Vec<&str> = r.stdout.lines().filter(|l| l.contains(line)).collect();
        assert_eq!(said.len(), 1, "{}", r.stdout);
        assert!(
            said[0].ends_with(&format!("trying {next}...")),
            "{}",
            said[0]
        );
    }
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let (instances, _) = spot_view(&world);
    let new: Vec<&(String, String, String)> = instances
        .iter()
        .filter(|(id, ..)| !before["us-east-1"].instances.contains_key(id))
        .collect();
    assert_eq!(new.len(), 1, "{instances:?}");
    assert_eq!((new[0].1.as_str(), new[0].2.as_str()), ("spot", "t3.micro"));
    assert_nothing_left(
        &before,
        &state(&world),
        &[&ami],
        "after a spot build that fell back twice",
    );
}

#[test]
fn every_spot_instance_type_refused_fails_naming_each_and_leaves_nothing() {
    let world = world_or_skip!();
    let mut args = NO_LAG.to_vec();
    args.extend([
        "--refuse",
        "t3.small=Unsupported",
        "--refuse",
        "t3.micro=InsufficientInstanceCapacity",
    ]);
    let proxy = DelayProxy::start(&world, &args);
    let e = env(&world);
    let s = Scratch::new().with(
        "t.json",
        &spot_template(&world, &proxy, &["t3.small", "t3.micro"]),
    );
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_ne!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(attempts(&proxy), ["t3.small", "t3.micro"]);
    assert!(proxy.run_instances().iter().all(|c| c.1 != 200));
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("EC2 refused every one of spot_instance_types: t3.small: Unsupported: Your requested instance type (t3.small) is not supported")
            && out.contains("; t3.micro: InsufficientInstanceCapacity: We currently do not have sufficient t3.micro capacity"),
        "{out}"
    );
    assert_nothing_left(
        &before,
        &state(&world),
        &[],
        "after a spot build whose every type was refused",
    );
}
