//! `imgbuild build` end to end against a test world of each test's own (moto as EC2): what the
//! emulator holds afterwards is the assertion. Templates use `"communicator": "none"` for the
//! full path and SSH templates for the failure path (provisioning is another issue's seam).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use serde_json::{json, Value};

use crate::cli_tests::{imgbuild_env, Run, Scratch};
use crate::world::TestWorld;

pub(crate) const SOURCE_AMI: &str = "ami-785db401";
const CANONICAL: &str = "099720109477";
const XENIAL: &str = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*";
pub(crate) const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

macro_rules! world_or_skip {
    () => {
        match TestWorld::start() {
            Some(w) => w,
            None => return,
        }
    };
}

/// A builder object for the world: `communicator: none`, the xenial filter, a timestamped name
/// and tags with build values; `extra` keys are merged in (null removes a key).
pub(crate) fn builder(world: &TestWorld, extra: Value) -> Value {
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

pub(crate) fn template(builder: Value, provisioners: Value) -> String {
    json!({
        "variables": {"project": "imgbuild"},
        "builders": [builder],
        "provisioners": provisioners
    })
    .to_string()
}

/// An SSH builder that cannot get further than provisioning: a port nothing listens on.
pub(crate) fn ssh_builder(world: &TestWorld, extra: Value) -> Value {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
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

pub(crate) struct Env {
    pub journal: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

pub(crate) fn env(world: &TestWorld) -> Env {
    let journal = tempfile::tempdir().expect("journal dir");
    let mut vars = world.env();
    vars.push((
        "IMGBUILD_JOURNAL_DIR".into(),
        journal.path().display().to_string(),
    ));
    Env { journal, vars }
}

pub(crate) fn build(s: &Scratch, e: &Env, args: &[&str], extra: &[(&str, &str)]) -> Run {
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

/// An AMI: name, tags, snapshot ids.
pub(crate) type AmiInfo = (String, BTreeMap<String, String>, Vec<String>);

/// What the emulator holds in one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Region {
    /// id -> (name, tags, snapshot ids)
    pub images: BTreeMap<String, AmiInfo>,
    /// id -> state
    pub instances: BTreeMap<String, String>,
    pub key_pairs: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    /// id -> tags
    pub snapshots: BTreeMap<String, BTreeMap<String, String>>,
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(crate) fn state(world: &TestWorld) -> BTreeMap<&'static str, Region> {
    world.ec2(|base| async move {
        let conf = base.config().to_builder();
        let mut out = BTreeMap::new();
        for r in REGIONS {
            let c = aws_sdk_ec2::Client::from_conf(
                conf.clone()
                    .region(aws_sdk_ec2::config::Region::new(r))
                    .build(),
            );
            let mut reg = Region::default();
            for i in c
                .describe_images()
                .owners("self")
                .send()
                .await
                .expect("DescribeImages")
                .images()
            {
                reg.images.insert(
                    i.image_id().unwrap_or_default().to_string(),
                    (
                        i.name().unwrap_or_default().to_string(),
                        tags_of(i.tags()),
                        i.block_device_mappings()
                            .iter()
                            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                            .map(str::to_string)
                            .collect(),
                    ),
                );
            }
            for res in c
                .describe_instances()
                .send()
                .await
                .expect("DescribeInstances")
                .reservations()
            {
                for i in res.instances() {
                    reg.instances.insert(
                        i.instance_id().unwrap_or_default().to_string(),
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                    );
                }
            }
            for k in c
                .describe_key_pairs()
                .send()
                .await
                .expect("DescribeKeyPairs")
                .key_pairs()
            {
                reg.key_pairs
                    .insert(k.key_name().unwrap_or_default().to_string());
            }
            for g in c
                .describe_security_groups()
                .send()
                .await
                .expect("DescribeSecurityGroups")
                .security_groups()
            {
                reg.groups
                    .insert(g.group_id().unwrap_or_default().to_string());
            }
            for v in c
                .describe_volumes()
                .send()
                .await
                .expect("DescribeVolumes")
                .volumes()
            {
                reg.volumes
                    .insert(v.volume_id().unwrap_or_default().to_string());
            }
            // ~1100 default snapshots: all of them, to compare before and after.
            for s in c
                .describe_snapshots()
                .owner_ids("self")
                .send()
                .await
                .expect("DescribeSnapshots")
                .snapshots()
            {
                reg.snapshots.insert(
                    s.snapshot_id().unwrap_or_default().to_string(),
                    tags_of(s.tags()),
                );
            }
            out.insert(r, reg);
        }
        out
    })
}

/// Asserts that, between `before` and `after`, nothing was added except `kept` AMIs (and their
/// snapshots), and that every new instance is terminated.
pub(crate) fn assert_nothing_left(
    before: &BTreeMap<&str, Region>,
    after: &BTreeMap<&str, Region>,
    kept: &[&str],
    context: &str,
) {
    for r in REGIONS {
        let (b, a) = (&before[r], &after[r]);
        let new_images: Vec<&String> = a
            .images
            .keys()
            .filter(|k| !b.images.contains_key(*k))
            .collect();
        let unexpected: Vec<&&String> = new_images
            .iter()
            .filter(|i| !kept.contains(&i.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{context}: AMIs left in {r}: {unexpected:?}"
        );
        let kept_snaps: BTreeSet<&String> =
            new_images.iter().flat_map(|i| &a.images[*i].2).collect();
        let new_snaps: Vec<&String> = a
            .snapshots
            .keys()
            .filter(|k| !b.snapshots.contains_key(*k) && !kept_snaps.contains(k))
            .collect();
        assert!(
            new_snaps.is_empty(),
            "{context}: snapshots left in {r}: {new_snaps:?}"
        );
        for (id, st) in &a.instances {
            if !b.instances.contains_key(id) {
                assert_eq!(st, "terminated", "{context}: instance {id} in {r}");
            }
        }
        assert_eq!(a.key_pairs, b.key_pairs, "{context}: key pairs in {r}");
        assert_eq!(a.groups, b.groups, "{context}: security groups in {r}");
        assert_eq!(a.volumes, b.volumes, "{context}: volumes in {r}");
    }
}

/// The journals in `dir` and those archived in `dir/done` (a successful build archives its
/// own), sorted by path.
pub(crate) fn journal_files(dir: &Path) -> Vec<PathBuf> {
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

pub(crate) fn journal_events(dir: &Path) -> Vec<Vec<Value>> {
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

pub(crate) fn assert_journal_complete(dir: &Path, clean: bool) {
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

pub(crate) fn ami_from_stdout(stdout: &str, region: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{region}: ")))
        .unwrap_or_else(|| panic!("no `{region}: ami-...` line in:\n{stdout}"))
        .trim()
        .to_string()
}

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
    assert!(
        (started - 5..=started + 60).contains(&stamp),
        "{name} vs {started}"
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
    // SSH to the public address with no CIDRs: refused, not opened to the world.
    let b = ssh_builder(&world, json!({"ssh_host": null}));
    let mut b = b;
    b.as_object_mut().expect("object").remove("ssh_host");
    let s = Scratch::new().with("t.json", &template(b, json!([])));
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("imgbuild does not open 0.0.0.0/0 unless told to"),
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

/// Starts a build, waits for `marker` on its stdout, sends SIGINT (`twice`: a second one 300 ms
/// later) and returns its exit code, output and how long it took to exit after the signal.
pub(crate) fn interrupt(
    s: &Scratch,
    e: &Env,
    pause: &str,
    marker: &str,
    twice: bool,
) -> (i32, String, String, Duration) {
    let mut b = crate::cleanup_tests::Building::start(s, e, Some(pause));
    b.wait_for(marker);
    let t = Instant::now();
    b.sigint();
    if twice {
        std::thread::sleep(Duration::from_millis(300));
        b.sigint();
    }
    let (code, out, err) = b.finish();
    (code, out, err, t.elapsed())
}

#[test]
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
        let (code, out, err, took) =
            interrupt(s, &e, &format!("{point}:90"), "test hook: pausing", false);
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
        assert!(
            took < Duration::from_secs(30),
            "{point}: took {took:?} to stop"
        );
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
    let (code, out, err, _) = interrupt(&s, &e, "teardown:90", "test hook: pausing", true);
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
