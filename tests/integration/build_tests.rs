//! `imgbuild build` end to end against a test world of each test's own (moto as EC2): what the
//! emulator holds afterwards is the assertion. Templates use `"communicator": "none"` for the
//! full path and SSH templates for the failure path (provisioning is another issue's seam).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use serde_json::{json, Value};

use crate::support::build::{
    ami_from_stdout, assert_journal_complete, build, builder, env, journal_events, ssh_builder,
    template, CANONICAL, SOURCE_AMI,
};
use crate::support::building::interrupt;
use crate::support::cli::Scratch;
use crate::support::state::{assert_nothing_left, state};

#[test]
fn build_none_creates_a_tagged_timestamped_ami_and_leaves_nothing_else() {
    let world = world_or_skip!();
    let e = env(&world);
    let mut t: Value =
        serde_json::from_str(&template(builder(&world, json!({})), json!([]))).expect("json");
    t["post-processors"] = json!(["manifest"]);
    let s = Scratch::new().with("t.json", &t.to_string());
    let before = state(&world);
    let started = chrono::Utc::now().timestamp();
    let r = build(&s, &e, &["t.json"], &[]);
    let ended = chrono::Utc::now().timestamp();
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("\n==> Builds finished. The artifacts of successful builds are:\n--> amazon-ebs: AMIs were created:\nus-east-1: ami-"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Build 'amazon-ebs' finished after "),
        "{}",
        r.stdout
    );
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let after = state(&world);
    assert_nothing_left(&before, &after, &[&ami], "after a successful build");

    let (name, tags, snaps) = after["us-east-1"]
        .images
        .get(&ami)
        .expect("the AMI exists")
        .clone();
    let stamp: i64 = name
        .strip_prefix("imgbuild-test-")
        .and_then(|rest| rest.split('-').next())
        .expect("name prefix")
        .parse()
        .expect("a timestamp");
    // Taken during the build: between its start and its end (not "within a minute of the
    // start", which a loaded machine can exceed).
    assert!(
        (started - 5..=ended).contains(&stamp),
        "{name} vs {started}..={ended}"
    );
    assert_eq!(tags.get("SourceAMI").map(String::as_str), Some(SOURCE_AMI));
    assert_eq!(
        tags.get("BuildRegion").map(String::as_str),
        Some("us-east-1")
    );
    assert_eq!(tags.get("Project").map(String::as_str), Some("imgbuild"));
    assert_eq!(
        tags.get("Base").map(String::as_str),
        Some("ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721")
    );
    assert_eq!(
        tags.get("imgbuild:build").map(String::as_str),
        Some("amazon-ebs")
    );
    let run_id = tags.get("imgbuild:run-id").expect("run id tag").clone();
    assert!(!snaps.is_empty(), "the AMI has snapshots");
    for sn in &snaps {
        let st = &after["us-east-1"].snapshots[sn];
        assert_eq!(
            st.get("imgbuild:run-id"),
            Some(&run_id),
            "snapshot {sn}: {st:?}"
        );
        assert_eq!(st.get("Kind").map(String::as_str), Some("root"));
        assert_eq!(st.get("From").map(String::as_str), Some(SOURCE_AMI));
    }
    // The one new instance ran with the run tags and is terminated.
    let new: Vec<&String> = after["us-east-1"]
        .instances
        .keys()
        .filter(|k| !before["us-east-1"].instances.contains_key(*k))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_journal_complete(e.journal.path(), true);
}

#[test]
fn build_ssh_fails_at_provisioning_and_leaves_nothing() {
    let world = world_or_skip!();
    let e = env(&world);
    let s = Scratch::new().with(
        "t.json",
        &template(
            ssh_builder(&world, json!({})),
            json!([{"type": "shell", "inline": ["true"]}]),
        ),
    );
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    // It got as far as provisioning: a key pair, a security group and an instance existed.
    assert!(
        r.stdout
            .contains("Creating a temporary ed25519 key pair locally and importing it: packer_"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("allowing port"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Cleaning up: terminating instance i-"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("--> amazon-ebs: provisioning: "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with(
            "error: 1 of 1 build(s) failed (amazon-ebs); everything they created was removed\n"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("PRIVATE KEY") && !r.stderr.contains("PRIVATE KEY"));
    let after = state(&world);
    assert_nothing_left(&before, &after, &[], "after a failed provisioning");
    let new = after["us-east-1"].instances.len() - before["us-east-1"].instances.len();
    assert_eq!(new, 1, "one instance was launched");
    assert_journal_complete(e.journal.path(), true);

    // -on-error=abort leaves it all, says so, and exits 3 with the journal path.
    let e2 = env(&world);
    let r = build(&s, &e2, &["-on-error=abort", "t.json"], &[]);
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("resources were left behind:"),
        "{}",
        r.stderr
    );
    for what in [
        "instance i-",
        "security group sg-",
        "key pair packer_",
        "journal: ",
    ] {
        assert!(r.stderr.contains(what), "{what} in:\n{}", r.stderr);
    }
    assert_journal_complete(e2.journal.path(), false);
}

#[test]
fn build_filter_matching_nothing_or_an_open_port_is_refused_before_anything_is_created() {
    let world = world_or_skip!();
    let e = env(&world);
    let before = state(&world);
    let b = builder(
        &world,
        json!({"source_ami_filter": {"filters": {"name": "no-such-image-*"}, "owners": [CANONICAL]}}),
    );
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("--> amazon-ebs: source_ami_filter matched no image in us-east-1 (filters: name=no-such-image-*, owners=099720109477)\n"),
        "{}",
        r.stderr
    );
    // Several without most_recent: listed.
    let b = builder(
        &world,
        json!({"source_ami_filter": {"filters": {"name": "ubuntu/images/*"}, "owners": [CANONICAL]}}),
    );
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("images in us-east-1 (filters: name=ubuntu/images/*, owners=099720109477) and most_recent is not set:\n  ami-"), "{}", r.stderr);
    // SSH to the public address with no CIDRs: only this machine's address would be allowed;
    // when it cannot be found, refused, not opened to the world.
    let b = ssh_builder(&world, json!({"ssh_host": null}));
    let mut b = b;
    b.as_object_mut().expect("object").remove("ssh_host");
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let url = format!(
        "http://127.0.0.1:{}/ip",
        crate::support::tools::closed_port()
    );
    let r = build(&s, &e, &["t.json"], &[("IMGBUILD_PUBLIC_IP_URL", &url)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "looking up this machine's public address at {url} (for the temporary security group in us-east-1): no answer"
        )),
        "{}",
        r.stderr
    );
    let after = state(&world);
    assert_eq!(before, after, "nothing was created at all");
}

#[test]
fn build_taken_ami_name_fails_before_launch_unless_forced() {
    let world = world_or_skip!();
    let e = env(&world);
    let b = builder(
        &world,
        json!({"ami_name": "imgbuild-fixed-name", "force_delete_snapshot": true}),
    );
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = ami_from_stdout(&r.stdout, "us-east-1");
    let before = state(&world);
    let first_snaps = before["us-east-1"].images[&first].2.clone();

    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!(
        "AMI Name: 'imgbuild-fixed-name' is used by an existing AMI in us-east-1: {first}; use -force (or \"force_deregister\": true) to replace it"
    )), "{}", r.stderr);
    assert_eq!(state(&world), before, "nothing was launched");

    let r = build(&s, &e, &["-force", "t.json"], &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let second = ami_from_stdout(&r.stdout, "us-east-1");
    assert_ne!(first, second);
    let after = state(&world);
    assert!(
        !after["us-east-1"].images.contains_key(&first),
        "the old AMI is deregistered"
    );
    for sn in &first_snaps {
        assert!(
            !after["us-east-1"].snapshots.contains_key(sn),
            "old snapshot {sn} deleted"
        );
    }
    assert_eq!(after["us-east-1"].images[&second].0, "imgbuild-fixed-name");
}

#[test]
fn build_ami_regions_copies_and_tags_in_every_region() {
    let world = world_or_skip!();
    let e = env(&world);
    let b = builder(
        &world,
        json!({"ami_regions": ["us-west-2"], "ami_users": ["123456789012"], "snapshot_users": ["123456789012"]}),
    );
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let before = state(&world);
    let r = build(&s, &e, &["-machine-readable", "t.json"], &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let id_line = r
        .stdout
        .lines()
        .find(|l| l.contains(",amazon-ebs,artifact,0,id,"))
        .unwrap_or_else(|| panic!("no artifact id record in:\n{}", r.stdout));
    let id = id_line.rsplit(",id,").next().unwrap_or_default();
    let pairs: BTreeMap<&str, &str> = id
        .split("%!(PACKER_COMMA)")
        .filter_map(|p| p.split_once(':'))
        .collect();
    let east = pairs
        .get("us-east-1")
        .expect("us-east-1 in the artifact id")
        .to_string();
    let west = pairs
        .get("us-west-2")
        .expect("us-west-2 in the artifact id")
        .to_string();
    let after = state(&world);
    assert_nothing_left(&before, &after, &[&east, &west], "after a copy");
    for (region, ami) in [("us-east-1", &east), ("us-west-2", &west)] {
        let (name, tags, snaps) = &after[region].images[ami];
        assert!(name.starts_with("imgbuild-test-"), "{name}");
        assert_eq!(
            tags.get("SourceAMI").map(String::as_str),
            Some(SOURCE_AMI),
            "{region}"
        );
        assert_eq!(
            tags.get("BuildRegion").map(String::as_str),
            Some("us-east-1"),
            "{region}"
        );
        assert!(tags.contains_key("imgbuild:run-id"), "{region}");
        assert!(!snaps.is_empty(), "{region}");
        for sn in snaps {
            assert_eq!(
                after[region].snapshots[sn].get("Kind").map(String::as_str),
                Some("root"),
                "{region} {sn}"
            );
        }
    }
    assert_eq!(
        after["us-east-1"].images[&east].0,
        after["us-west-2"].images[&west].0
    );
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn build_sigint_in_each_phase_tears_everything_down() {
    let world = world_or_skip!();
    let b = ssh_builder(&world, json!({}));
    let ssh = Scratch::new().with(
        "t.json",
        &template(b, json!([{"type": "shell", "inline": ["true"]}])),
    );
    let b = builder(&world, json!({"ami_regions": ["us-west-2"]}));
    let none = Scratch::new().with("t.json", &template(b, json!([])));
    for (s, point) in [
        (&ssh, "key_pair"),
        (&ssh, "launch"),
        (&none, "stop"),
        (&none, "create_image"),
        (&none, "copy"),
    ] {
        let e = env(&world);
        let before = state(&world);
        // Held far longer than the build may take in all: that it exits at all shows the
        // interrupt cut the pause short.
        let (code, out, err) =
            interrupt(s, &e, &format!("{point}:3600"), "test hook: pausing", false);
        assert_eq!(code, 1, "{point}: stdout:\n{out}\nstderr:\n{err}");
        assert!(
            err.contains("==> Interrupt received: cancelling the builds"),
            "{point}: {err}"
        );
        assert!(
            err.contains("--> amazon-ebs: cancelled (interrupted)"),
            "{point}: {err}"
        );
        assert!(out.contains("Cleaning up: "), "{point}: {out}");
        assert_nothing_left(
            &before,
            &state(&world),
            &[],
            &format!("after SIGINT at {point}"),
        );
        assert_journal_complete(e.journal.path(), true);
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn build_second_sigint_skips_teardown_and_lists_what_is_left() {
    let world = world_or_skip!();
    let b = ssh_builder(&world, json!({}));
    let s = Scratch::new().with(
        "t.json",
        &template(b, json!([{"type": "shell", "inline": ["true"]}])),
    );
    let e = env(&world);
    // The build fails at provisioning, then holds before teardown: the first SIGINT cancels
    // (nothing left to cancel), the second skips teardown.
    let (code, out, err) = interrupt(&s, &e, "teardown:90", "test hook: pausing", true);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("==> Second interrupt: skipping the cleanup."),
        "{err}"
    );
    assert!(err.contains("resources were left behind:"), "{err}");
    let journal = journal_events(e.journal.path()).remove(0);
    let created: Vec<String> = journal
        .iter()
        .filter(|ev| ev["event"] == "created")
        .map(|ev| {
            ev["id"]
                .as_str()
                .or(ev["name"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(created.len(), 3, "{journal:?}");
    for id in &created {
        assert!(err.contains(id.as_str()), "{id} listed in:\n{err}");
    }
    assert_eq!(
        journal.last().map(|ev| ev["clean"].clone()),
        Some(json!(false))
    );
    // They do exist in the emulator.
    let after = state(&world);
    let running = after["us-east-1"]
        .instances
        .values()
        .filter(|s| s.as_str() != "terminated")
        .count();
    assert_eq!(running, 1);
    world.ec2(|c| async move {
        let sgs = c
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values("packer_*")
                    .build(),
            )
            .send()
            .await
            .expect("DescribeSecurityGroups");
        assert_eq!(sgs.security_groups().len(), 1);
    });
}
