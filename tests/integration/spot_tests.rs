//! Spot build instances against moto: `spot_price` makes `RunInstances` request a one-time spot
//! instance (market options), which the ledger and the journal know like any instance, so a
//! finished build, and `imgbuild cleanup` after `kill -9`, leave nothing. moto shows the
//! instance's lifecycle (`spot`); it makes no spot request object for market options (so the
//! request's `spot_tags` cannot be seen), and it cannot show EC2 reclaiming the instance or a
//! price that is too low (it fulfils every request).

use serde_json::json;

use crate::support::build::{ami_from_stdout, build, builder, cleanup, env, template};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::state::{assert_nothing_left, state};

/// (instance id, lifecycle) of every instance, and the tags of every spot request.
type SpotView = (Vec<(String, String)>, Vec<Vec<(String, String)>>);

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
    assert!(
        r.stderr
            .contains("imgbuild requests the first of spot_instance_types (t3.small)"),
        "{}",
        r.stderr
    );
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let after = state(&world);
    assert_nothing_left(&before, &after, &[&ami], "after a spot build");
    let (instances, requests) = spot_view(&world);
    let new: Vec<&(String, String)> = instances
        .iter()
        .filter(|(id, _)| !before["us-east-1"].instances.contains_key(id))
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
            .any(|(id, l)| l == "spot" && !before["us-east-1"].instances.contains_key(id)),
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
