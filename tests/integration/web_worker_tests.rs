//! The web worker, end to end against a test world of each test's own: the template
//! `tests/fixtures/web_worker/template.json` has the builder options, provisioner kinds, order,
//! uploads (the real `provisioners/` trees and requirements files) and environment variables of
//! `images/web_worker.json`, but its scripts are sandbox-safe stand-ins that write only under the
//! world's sandbox. It is built by `imgbuild build` with the amazon-ebs builder against moto,
//! provisioned over SSH through `ssh_host`/`ssh_port` on the world's sshd (which accepts the
//! temporary key pair because it exists in the emulator).
//!
//! Assertions: the emulator holds the AMI (rendered name, tags, snapshot tags, launch
//! permissions) in both regions and nothing else the build created; the sandbox holds the
//! uploaded trees and the values of the environment variables. And SIGINT while waiting for
//! SSH, while uploading and while a script runs: exit 1, nothing left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::build::{ami_from_stdout, assert_journal_complete, env, Env, SOURCE_AMI};
use crate::support::building::interrupt_at;
use crate::support::cli::{imgbuild_env, Run, Scratch};
use crate::support::state::{assert_nothing_left, state, REGIONS};
use crate::support::world::TestWorld;

const SOURCE_AMI_NAME: &str = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721";
const SHARED_WITH: &str = "123456789012";
/// Sensitive values with characters a shell would interpret.
const DB_PASSWORD: &str = "pa$$ 'w0rd\" `id` \\x";
const SECRET: &str = "s3cr3t-k3y;$(id)&&|*";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web_worker")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `-var` arguments of the web worker template for `sandbox`.
fn var_args(sandbox: &Path) -> Vec<String> {
    let vars = [
        ("sandbox", sandbox.display().to_string()),
        ("django_db_password", DB_PASSWORD.to_string()),
        ("django_db_host", "db.internal.example".to_string()),
        ("django_secret", SECRET.to_string()),
        ("email_host", "smtp.example.com".to_string()),
        ("email_host_password", "mail-pass-9876".to_string()),
        ("web_domain", "mailape.example.com".to_string()),
    ];
    vars.iter()
        .flat_map(|(k, v)| ["-var".to_string(), format!("{k}={v}")])
        .collect()
}

fn build_in(dir: &Path, e: &Env, args: &[String]) -> Run {
    let mut all = vec!["build".to_string(), "-color=false".to_string()];
    all.extend(args.iter().cloned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    imgbuild_env(dir, &refs, None, &vars)
}

/// Every file under `root` (relative path -> bytes), symlinks as `-> target`.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).expect("link");
                out.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn ami_line(stdout: &str, region: &str) -> String {
    ami_from_stdout(stdout, region)
}

/// Launch permissions of an AMI in a region (user ids).
fn launch_users(world: &TestWorld, region: &'static str, ami: &str) -> Vec<String> {
    let ami = ami.to_string();
    world.ec2(|base| async move {
        let c = aws_sdk_ec2::Client::from_conf(
            base.config()
                .to_builder()
                .region(aws_sdk_ec2::config::Region::new(region))
                .build(),
        );
        let out = c
            .describe_image_attribute()
            .image_id(&ami)
            .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
            .send()
            .await
            .expect("DescribeImageAttribute");
        out.launch_permissions()
            .iter()
            .filter_map(|p| p.user_id().map(str::to_string))
            .collect()
    })
}

#[test]
fn build_web_worker_shaped_end_to_end() {
    let world = world_or_skip!();
    let e = env(&world);
    let s = Scratch::new();
    let sandbox = world.sandbox().to_path_buf();
    let template = fixture_dir().join("template.json");
    let mut args = var_args(&sandbox);
    args.push(template.display().to_string());
    let before = state(&world);
    let started = chrono::Utc::now().timestamp();
    let r = build_in(s.dir.path(), &e, &args);
    let ended = chrono::Utc::now().timestamp();
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);

    // The output: every provisioner ran, in order; secrets never appear.
    let order = [
        "Provisioning with shell script: ",
        "make_aws_directories.sh",
        "requirements.common.txt => ",
        "requirements.production.txt => ",
        "provisioners/ubuntu/ => ",
        "provisioners/apache/ => ",
        "provisioners/django/ => ",
        "Provisioning with shell script: inline (1 command)",
        "install_all_packages.sh",
        "configure_apache.sh",
        "make_mailape_environment_ini.sh",
        "configure_celery.sh",
        "Stopping the source instance",
        "Creating AMI web-worker-",
        "Copying ami-",
        "Build 'web_worker' finished after ",
    ];
    let mut at = 0;
    for what in order {
        match r.stdout[at..].find(what) {
            Some(i) => at += i + what.len(),
            None => panic!("{what:?} (in order) in:\n{}", r.stdout),
        }
    }
    for secret in [DB_PASSWORD, SECRET, "mail-pass-9876"] {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{secret} leaked:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }

    // The emulator: the AMI in both regions, nothing else left.
    let east = ami_line(&r.stdout, "us-east-1");
    let west = ami_line(&r.stdout, "us-west-2");
    let after = state(&world);
    assert_nothing_left(
        &before,
        &after,
        &[&east, &west],
        "after the web worker build",
    );
    let new_instances: Vec<&String> = after["us-east-1"]
        .instances
        .keys()
        .filter(|k| !before["us-east-1"].instances.contains_key(*k))
        .collect();
    assert_eq!(new_instances.len(), 1, "one instance: {new_instances:?}");
    assert_eq!(after["us-east-1"].instances[new_instances[0]], "terminated");
    let mut names = Vec::new();
    for (region, ami) in REGIONS.iter().zip([&east, &west]) {
        let (name, tags, snaps) = after[region]
            .images
            .get(ami.as_str())
            .unwrap_or_else(|| panic!("{ami} in {region}"));
        let stamp: i64 = name
            .strip_prefix("web-worker-")
            .unwrap_or_else(|| panic!("{name}"))
            .parse()
            .unwrap_or_else(|_| panic!("a timestamp in {name}"));
        // Taken during the build (not "within two minutes of its start", which a loaded machine
        // can exceed).
        assert!((started - 5..=ended).contains(&stamp), "{name}");
        names.push(name.clone());
        let want = [
            ("project", "mailape"),
            ("role", "web_worker"),
            ("source_ami", SOURCE_AMI),
            ("source_ami_name", SOURCE_AMI_NAME),
            ("built_by", "imgbuild"),
        ];
        for (k, v) in want {
            assert_eq!(
                tags.get(k).map(String::as_str),
                Some(v),
                "tag {k} of {ami} in {region}: {tags:?}"
            );
        }
        assert!(!snaps.is_empty(), "{ami} in {region} has snapshots");
        for sn in snaps {
            let st = &after[region].snapshots[sn];
            assert_eq!(
                st.get("project").map(String::as_str),
                Some("mailape"),
                "{sn}"
            );
            assert_eq!(
                st.get("source_ami").map(String::as_str),
                Some(SOURCE_AMI),
                "{sn}"
            );
        }
        assert_eq!(
            launch_users(&world, region, ami),
            vec![SHARED_WITH.to_string()],
            "launch permissions of {ami} in {region}"
        );
    }
    assert_eq!(names[0], names[1], "one name in both regions");
    assert_journal_complete(e.journal.path(), true);

    // The machine: the uploaded trees, exactly, and what the scripts made of the variables.
    let m = sandbox.join("mailape");
    for t in ["ubuntu", "apache", "django"] {
        let local = tree(&repo().join("provisioners").join(t));
        assert!(!local.is_empty());
        assert_eq!(tree(&m.join(t)), local, "the {t} tree");
    }
    for f in ["requirements.common.txt", "requirements.production.txt"] {
        assert_eq!(
            std::fs::read(m.join(f)).expect("uploaded"),
            std::fs::read(repo().join("provisioners").join(f)).expect("local"),
            "{f}"
        );
    }
    let packages =
        std::fs::read_to_string(repo().join("provisioners/ubuntu/packages.txt")).expect("packages");
    let want: Vec<&str> = packages
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .collect();
    let got = std::fs::read_to_string(sandbox.join("apt-get-install.txt")).expect("apt list");
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    let ini_path = sandbox.join("etc/mailape/mailape.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("mailape.ini");
    assert!(ini.starts_with("[mod_wsgi]\n"), "{ini}");
    for line in [
        format!("DJANGO_DB_PASSWORD={DB_PASSWORD}"),
        "DJANGO_DB_HOST=db.internal.example".to_string(),
        format!("DJANGO_SECRET_KEY={SECRET}"),
        "EMAIL_HOST=smtp.example.com".to_string(),
        "EMAIL_HOST_PASSWORD=mail-pass-9876".to_string(),
        "DJANGO_ALLOWED_HOSTS=mailape.example.com".to_string(),
    ] {
        assert!(ini.lines().any(|l| l == line), "{line:?} in:\n{ini}");
    }
    assert_eq!(mode(&ini_path), 0o640);
    assert_eq!(
        std::fs::read_link(sandbox.join("etc/apache2/sites-enabled/000-mailape.conf"))
            .expect("site link"),
        m.join("apache/mailape.apache.conf")
    );
    assert_eq!(
        std::fs::read_link(sandbox.join("etc/systemd/system/celery.service")).expect("unit"),
        m.join("ubuntu/celery.service")
    );
    // The shell provisioner removed its scripts from remote_folder (the sandbox).
    let leftovers: Vec<String> = std::fs::read_dir(&sandbox)
        .expect("sandbox")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("script_"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The web worker template with other provisioners (the builder is unchanged), written to
/// `dir/t.json`.
fn variant(dir: &Path, provisioners: Value) -> String {
    let text = std::fs::read_to_string(fixture_dir().join("template.json")).expect("template");
    let mut t: Value = serde_json::from_str(&text).expect("json");
    t["provisioners"] = provisioners;
    if let Some(obj) = t.as_object_mut() {
        obj.remove("post-processors");
    }
    let p = dir.join("t.json");
    std::fs::write(&p, t.to_string()).expect("write");
    p.display().to_string()
}

#[test]
fn build_web_worker_sigint_while_waiting_for_ssh_uploading_or_running_a_script_leaves_nothing() {
    let world = world_or_skip!();
    let sandbox = world.sandbox().to_path_buf();
    let s = Scratch::new();
    // A 1 GiB sparse file: reading it costs nothing, sending it takes a few seconds.
    let big = s.path("big.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(1 << 30))
        .expect("big file");
    let closed_port = crate::support::tools::closed_port();
    let remote_big = sandbox.join("big.bin");
    let cases: Vec<(&str, Value, Vec<String>, &str, Duration)> = vec![
        (
            "waiting for SSH (a port that never opens)",
            json!([{"type": "shell", "inline": ["true"], "remote_folder": sandbox.display().to_string()}]),
            vec!["-var".into(), format!("ssh_port={closed_port}")],
            "Waiting for SSH to become available...",
            Duration::from_secs(1),
        ),
        (
            "uploading a 1 GiB file",
            json!([{"type": "file", "source": big.display().to_string(), "destination": remote_big.display().to_string()}]),
            vec![],
            "Uploading ",
            Duration::from_millis(200),
        ),
        (
            "running a script",
            json!([{"type": "shell", "remote_folder": sandbox.display().to_string(),
                    "inline": ["echo script is sleeping", "sleep 1200"]}]),
            vec![],
            "web_worker: script is sleeping",
            Duration::from_millis(200),
        ),
    ];
    for (what, provisioners, extra, marker, delay) in cases {
        let e = env(&world);
        let template = variant(s.dir.path(), provisioners);
        let mut args = var_args(&sandbox);
        args.extend(extra);
        args.push(template);
        let before = state(&world);
        let (code, out, err) = interrupt_at(s.dir.path(), &e.vars, &args, marker, delay);
        assert_eq!(code, 1, "{what}: stdout:\n{out}\nstderr:\n{err}");
        assert!(
            err.contains("==> Interrupt received: cancelling the builds"),
            "{what}: {err}"
        );
        assert!(
            err.contains("--> web_worker: cancelled (interrupted)"),
            "{what}: {err}"
        );
        assert!(
            out.contains("Cleaning up: terminating instance i-"),
            "{what}: {out}"
        );
        let after = state(&world);
        assert_nothing_left(&before, &after, &[], &format!("after SIGINT {what}"));
        assert_eq!(
            after["us-east-1"].instances.len(),
            before["us-east-1"].instances.len() + 1,
            "{what}: one instance was launched (and terminated)"
        );
        assert_journal_complete(e.journal.path(), true);
        if what.starts_with("uploading") {
            // Interrupted in the middle: the file never arrived whole.
            let size = std::fs::metadata(&remote_big).map(|m| m.len()).unwrap_or(0);
            assert!(
                size < 1 << 30,
                "{what}: the whole file arrived ({size} bytes)"
            );
            assert!(!out.contains("Uploaded 1 file"), "{what}: {out}");
            let _ = std::fs::remove_file(&remote_big);
        }
    }
}
