//! Reuse when nothing changed (`-skip-unchanged`, `reuse_unchanged`) and the `ami-retention`
//! post-processor, end to end against a test world of each test's own: what the emulator
//! holds before and after each run is the assertion (no instance launched and no image made
//! when reusing; which AMIs and snapshots are gone after pruning).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::build::{ami_from_stdout, builder, env, summary_of, Env};
use crate::support::cli::{Run, Scratch};
use crate::support::state::{history, images_named, state};
use crate::support::world::{unique_name, TestWorld};

const FP_TAG: &str = "imgbuild:fingerprint";

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

/// `imgbuild build -color=false ARGS...` with the world's environment, the journal directory,
/// and `XDG_CONFIG_HOME` of the test's own (where the fingerprint key file goes).
fn build(s: &Scratch, e: &Env, config: &Path, args: &[&str]) -> Run {
    let cfg = config.display().to_string();
    crate::support::build::build(s, e, args, &[("XDG_CONFIG_HOME", cfg.as_str())])
}

/// Every AMI of the account in `region`: id -> tags.
fn image_tags(
    world: &TestWorld,
    region: &'static str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    state(world)[region]
        .images
        .iter()
        .map(|(id, (_, tags, _))| (id.clone(), tags.clone()))
        .collect()
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn reuse_unchanged_inputs_launch_nothing_and_a_one_byte_change_in_an_uploaded_file_rebuilds() {
    let world = world_or_skip!();
    let e = env(&world);
    let config = tempfile::tempdir().expect("config dir");
    // Straight into the sandbox (writable by the SSH user; a directory made here would not be).
    let dest = world
        .sandbox()
        .join(format!("{}.conf", unique_name("reuse")));
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [builder(&world, json!({
            "name": "worker",
            "communicator": "ssh",
            "ssh_host": world.ssh_host(),
            "ssh_port": world.ssh_port(),
            "ssh_username": world.ssh_user(),
            "ssh_timeout": "60s",
            "ami_name": "reuse-test-{{timestamp}}-{{uuid}}"
        }))],
        "provisioners": [
            {"type": "file", "source": "{{template_dir}}/files/app.conf",
             "destination": dest.display().to_string()}
        ],
        "post-processors": [{"type": "manifest", "output": "manifest.json"}]
    });
    let s = Scratch::new()
        .with("t.json", &t.to_string())
        .with("files/app.conf", "port=80\nworkers=4\n");

    // 1. First build: builds and tags the AMI with its fingerprint.
    let r1 = build(&s, &e, config.path(), &["-skip-unchanged", "t.json"]);
    ok(&r1);
    let ami1 = ami_from_stdout(&r1.stdout, "us-east-1");
    assert!(
        r1.stdout.contains("No AMI with fingerprint "),
        "{}",
        r1.stdout
    );
    let tags1 = image_tags(&world, "us-east-1")[&ami1].clone();
    let fp1 = tags1.get(FP_TAG).cloned().expect("fingerprint tag");
    assert_eq!(fp1.len(), 64, "{fp1}");
    assert_eq!(
        std::fs::read_to_string(&dest).expect("uploaded"),
        "port=80\nworkers=4\n"
    );

    // 2. Nothing changed: no instance, no image; the same AMI, and the post-processors run.
    std::fs::remove_file(&dest).expect("rm uploaded");
    let before = state(&world);
    let r2 = build(&s, &e, config.path(), &["-skip-unchanged", "t.json"]);
    ok(&r2);
    let after = state(&world);
    assert_eq!(
        before["us-east-1"].instances, after["us-east-1"].instances,
        "no instance was launched"
    );
    assert_eq!(
        before["us-east-1"].images.keys().collect::<Vec<_>>(),
        after["us-east-1"].images.keys().collect::<Vec<_>>(),
        "no image was made"
    );
    assert_eq!(before, after, "nothing at all changed in the emulator");
    assert!(!dest.exists(), "nothing was provisioned");
    let short = &fp1[..12];
    assert!(
        r2.stdout.contains(&format!(
            "==> worker: reusing {ami1} (fingerprint {short} unchanged since "
        )),
        "{}",
        r2.stdout
    );
    assert_eq!(ami_from_stdout(&r2.stdout, "us-east-1"), ami1);
    // The summary: the AMI once (not once per post-processor), and "reused", not "created".
    let summary = |verb: &str, mark: &str| {
        format!(
            "==> Builds finished. The artifacts of successful builds are:
--> worker: AMIs were {verb}:
us-east-1: {ami1}

==> Build outcomes: 1 succeeded, 0 failed
BUILD | OUTCOME | DURATION | ARTIFACTS
worker | succeeded | <took> | us-east-1:{ami1}{mark}"
        )
    };
    assert_eq!(summary_of(&r1.stdout), summary("created", ""));
    assert_eq!(summary_of(&r2.stdout), summary("reused", " (reused)"));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("manifest.json")).expect("manifest"))
            .expect("json");
    let ids: Vec<&str> = m["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["artifact_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        vec![format!("us-east-1:{ami1}"), format!("us-east-1:{ami1}")]
    );
    // -machine-readable keeps Packer's list: the builder's artifact and the manifest's, each
    // with its records (Packer's `string`) and its line.
    let m = build(
        &s,
        &e,
        config.path(),
        &["-machine-readable", "-skip-unchanged", "t.json"],
    );
    ok(&m);
    let records: Vec<&str> = m
        .stdout
        .lines()
        .filter_map(|l| l.split_once(',').map(|x| x.1))
        .filter(|l| l.starts_with("worker,artifact") || l.contains(",ui,say,--> worker: "))
        .collect();
    let mut want = vec!["worker,artifact-count,2".to_string()];
    for i in 0..2 {
        want.extend([
            format!("worker,artifact,{i},builder-id,mitchellh.amazonebs"),
            format!("worker,artifact,{i},id,us-east-1:{ami1}"),
            format!("worker,artifact,{i},string,AMIs were created:\\nus-east-1: {ami1}\\n"),
            format!("worker,artifact,{i},files-count,0"),
            format!("worker,artifact,{i},end"),
            format!(",ui,say,--> worker: AMIs were reused:\\nus-east-1: {ami1}"),
        ]);
    }
    assert_eq!(records, want, "{}", m.stdout);

    // Without the flag (and without reuse_unchanged), the build runs in full.
    // (Not run here: it would only repeat step 3's assertions at the cost of another build.)

    // 3. One byte of the uploaded file changed: a new build, a new fingerprint.
    std::fs::write(s.path("files/app.conf"), "port=81\nworkers=4\n").expect("edit");
    let r3 = build(&s, &e, config.path(), &["-skip-unchanged", "t.json"]);
    ok(&r3);
    let ami3 = ami_from_stdout(&r3.stdout, "us-east-1");
    assert_ne!(ami3, ami1, "{}", r3.stdout);
    assert!(!r3.stdout.contains("reusing"), "{}", r3.stdout);
    let fp3 = image_tags(&world, "us-east-1")[&ami3][FP_TAG].clone();
    assert_ne!(fp3, fp1);
    assert_eq!(
        std::fs::read_to_string(&dest).expect("uploaded again"),
        "port=81\nworkers=4\n"
    );
    let instances = state(&world)["us-east-1"].instances.len();
    assert_eq!(
        instances,
        before["us-east-1"].instances.len() + 1,
        "the rebuild launched one instance"
    );
}

#[test]
fn a_changed_secret_rebuilds_and_the_secret_is_in_no_tag_or_output() {
    let world = world_or_skip!();
    let e = env(&world);
    let config = tempfile::tempdir().expect("config dir");
    let (s1, s2) = ("hunter2-Pa55w0rd", "hunter3-Pa55w0rd");
    let t = json!({
        "variables": {"project": "imgbuild", "db_password": null},
        "sensitive-variables": ["db_password"],
        "builders": [builder(&world, json!({
            "name": "db", "reuse_unchanged": true,
            "ami_name": "reuse-secret-{{timestamp}}-{{uuid}}"
        }))]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let var = |v: &str| format!("db_password={v}");

    let v1 = var(s1);
    let r1 = build(&s, &e, config.path(), &["-var", &v1, "t.json"]);
    ok(&r1);
    let ami1 = ami_from_stdout(&r1.stdout, "us-east-1");
    // The key file: created, 0600, in the config directory.
    let key = config.path().join("imgbuild/fingerprint.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Same secret: reused (reuse_unchanged in the template, no flag).
    let before = state(&world);
    let r2 = build(&s, &e, config.path(), &["-var", &v1, "t.json"]);
    ok(&r2);
    assert!(
        r2.stdout.contains(&format!("reusing {ami1} ")),
        "{}",
        r2.stdout
    );
    assert_eq!(before, state(&world));

    // Another secret: rebuilt.
    let v2 = var(s2);
    let r3 = build(&s, &e, config.path(), &["-var", &v2, "t.json"]);
    ok(&r3);
    let ami3 = ami_from_stdout(&r3.stdout, "us-east-1");
    assert_ne!(ami3, ami1);
    let tags = image_tags(&world, "us-east-1");
    let (fp1, fp3) = (&tags[&ami1][FP_TAG], &tags[&ami3][FP_TAG]);
    assert_ne!(fp1, fp3);

    // Neither secret, nor its plain SHA-256, anywhere: tags, output, journals.
    let mut haystack = String::new();
    for r in [&r1, &r2, &r3] {
        haystack.push_str(&r.stdout);
        haystack.push_str(&r.stderr);
    }
    for tags in tags.values() {
        for (k, v) in tags {
            haystack.push_str(&format!("{k}={v}\n"));
        }
    }
    for f in crate::support::build::journal_files(e.journal.path()) {
        haystack.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    for secret in [s1, s2] {
        assert!(!haystack.contains(secret), "{secret} leaked");
        assert!(
            !haystack.contains(&hex_sha256(secret)),
            "the plain hash of {secret} leaked"
        );
    }
    assert!(!haystack.contains(std::fs::read_to_string(&key).expect("key").trim()));
}

#[test]
fn ami_retention_keeps_the_newest_the_built_and_the_used_ones_in_every_region_and_dry_run_changes_nothing(
) {
    let world = world_or_skip!();
    let e = env(&world);
    let prefix = "nightly-ret-";
    let h = history(&world, &format!("{prefix}old-"), 5);
    let other = history(&world, "other-image-", 1);
    // Two older copies in us-west-2.
    let west: Vec<String> = world.ec2(|base| {
        let h = h.clone();
        async move {
            let c = aws_sdk_ec2::Client::from_conf(
                base.config()
                    .to_builder()
                    .region(aws_sdk_ec2::config::Region::new("us-west-2"))
                    .build(),
            );
            let mut ids = Vec::new();
            for (i, source) in h.iter().take(2).enumerate() {
                let out = c
                    .copy_image()
                    .source_region("us-east-1")
                    .source_image_id(source)
                    .name(format!("nightly-ret-west-{i}"))
                    .send()
                    .await
                    .expect("CopyImage");
                ids.push(out.image_id().expect("id").to_string());
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            ids
        }
    });
    // h[0] is what a launch template's latest version launches, h[1] what an instance runs.
    let (lt, used_by) = world.ec2(|c| {
        let h = h.clone();
        async move {
            let lt = c
                .create_launch_template()
                .launch_template_name("web-worker-lt")
                .launch_template_data(
                    aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                        .image_id(&h[0])
                        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                        .build(),
                )
                .send()
                .await
                .expect("CreateLaunchTemplate");
            let run = c
                .run_instances()
                .image_id(&h[1])
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .expect("RunInstances");
            (
                lt.launch_template()
                    .and_then(|l| l.launch_template_id())
                    .expect("lt id")
                    .to_string(),
                run.instances()[0].instance_id().expect("id").to_string(),
            )
        }
    });
    let template = |retention: Value, extra: Value| {
        let mut b = builder(
            &world,
            json!({"name": "nightly", "ami_name": "nightly-ret-{{timestamp}}-{{uuid}}"}),
        );
        if let (Some(o), Value::Object(x)) = (b.as_object_mut(), extra) {
            o.extend(x);
        }
        let mut pp = json!({"type": "ami-retention"});
        if let (Some(o), Value::Object(x)) = (pp.as_object_mut(), retention) {
            o.extend(x);
        }
        json!({"variables": {"project": "imgbuild"}, "builders": [b], "post-processors": [pp]})
            .to_string()
    };

    // 1. Dry run: lists, changes nothing.
    let s = Scratch::new().with(
        "t.json",
        &template(json!({"keep_latest": 2, "dry_run": true}), json!({})),
    );
    let config = tempfile::tempdir().expect("config");
    let east_before = images_named(&world, "us-east-1", prefix);
    let r1 = build(&s, &e, config.path(), &["t.json"]);
    ok(&r1);
    let a = ami_from_stdout(&r1.stdout, "us-east-1");
    let mut expected = east_before.clone();
    expected.insert(
        a.clone(),
        images_named(&world, "us-east-1", prefix)[&a].clone(),
    );
    assert_eq!(images_named(&world, "us-east-1", prefix), expected);
    let line = |action: &str, id: &str| {
        r1.stdout
            .lines()
            .any(|l| l.contains(&format!("  {action}  ")) && l.contains(id))
    };
    for id in [&h[3], &h[2]] {
        assert!(line("would deregister", id), "{id}:\n{}", r1.stdout);
    }
    assert!(line("keep", &a) && line("keep", &h[4]), "{}", r1.stdout);
    assert!(
        r1.stdout
            .contains(&format!("in use by launch template {lt} version 1")),
        "{}",
        r1.stdout
    );
    assert!(
        r1.stdout
            .contains(&format!("in use by instance {used_by} (running)")),
        "{}",
        r1.stdout
    );
    assert!(
        r1.stdout
            .contains("dry run: 4 kept, 2 would be deregistered; nothing was changed"),
        "{}",
        r1.stdout
    );

    // 2. For real, with a copy to us-west-2: in each region the newest two (the build's own
    //    among them) and the used ones stay; the rest go with their snapshots; other images
    //    are untouched.
    let s = Scratch::new().with(
        "t.json",
        &template(
            json!({"keep_latest": 2}),
            json!({"ami_regions": ["us-west-2"]}),
        ),
    );
    let east = images_named(&world, "us-east-1", prefix);
    let r2 = build(&s, &e, config.path(), &["t.json"]);
    ok(&r2);
    let b = ami_from_stdout(&r2.stdout, "us-east-1");
    let b_west = ami_from_stdout(&r2.stdout, "us-west-2");
    let east_after: BTreeSet<String> = images_named(&world, "us-east-1", prefix)
        .into_keys()
        .collect();
    assert_eq!(
        east_after,
        BTreeSet::from([b.clone(), a.clone(), h[1].clone(), h[0].clone()]),
        "{}",
        r2.stdout
    );
    let west_after: BTreeSet<String> = images_named(&world, "us-west-2", prefix)
        .into_keys()
        .collect();
    assert_eq!(
        west_after,
        BTreeSet::from([b_west.clone(), west[1].clone()]),
        "{}",
        r2.stdout
    );
    let snapshots: BTreeSet<String> = state(&world)["us-east-1"]
        .snapshots
        .keys()
        .cloned()
        .collect();
    for gone in [&h[4], &h[3], &h[2]] {
        for snap in &east[gone] {
            assert!(
                !snapshots.contains(snap),
                "snapshot {snap} of {gone} is still there"
            );
        }
    }
    for kept in [&h[1], &h[0]] {
        for snap in &east[kept] {
            assert!(
                snapshots.contains(snap),
                "snapshot {snap} of kept {kept} is gone"
            );
        }
    }
    assert!(
        images_named(&world, "us-east-1", "other-image-").contains_key(&other[0]),
        "an image of another name was touched"
    );
    assert!(
        r2.stdout.contains("deregistered") && r2.stdout.contains("4 deregistered"),
        "{}",
        r2.stdout
    );

    // 3. keep_younger_than: everything here is younger than an hour, so nothing goes.
    let s = Scratch::new().with(
        "t.json",
        &template(
            json!({"keep_latest": 1, "keep_younger_than": "1h"}),
            json!({}),
        ),
    );
    let r3 = build(&s, &e, config.path(), &["t.json"]);
    ok(&r3);
    let c = ami_from_stdout(&r3.stdout, "us-east-1");
    let mut want = east_after.clone();
    want.insert(c);
    assert_eq!(
        images_named(&world, "us-east-1", prefix)
            .into_keys()
            .collect::<BTreeSet<_>>(),
        want
    );
    assert!(r3.stdout.contains("younger than 1h0m0s"), "{}", r3.stdout);
    assert!(
        r3.stdout
            .contains(", 0 deregistered, 0 snapshot(s) deleted"),
        "{}",
        r3.stdout
    );
}
