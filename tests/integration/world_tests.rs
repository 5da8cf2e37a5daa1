//! Tests of the test world itself: it must behave like EC2 where imgbuild relies
//! on it (key pairs decide who may log in; the EC2 API answers), and clean up
//! after itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::world::{ssh_keygen, unique_name};

/// The moto default AMI the example template's `source_ami_filter` selects.
const UBUNTU_XENIAL_AMI: &str = "ami-785db401";
const CANONICAL_OWNER: &str = "099720109477";
const UBUNTU_XENIAL_NAME_FILTER: &str = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgbuild-world-test.")
        .tempdir()
        .expect("tempdir")
}

/// (a) A key pair imported into the emulator logs in, as the test user, who
/// has passwordless sudo.
#[test]
fn world_imported_key_logs_in_and_has_sudo() {
    let world = world_or_skip!(shared);
    let dir = tempdir();
    let name = unique_name("world-a");
    let (key, public) = ssh_keygen(dir.path(), &name);
    let id = world.import_key_pair(&name, &public).expect("import");
    assert!(id.starts_with("key-"), "unexpected key pair id {id:?}");

    let out = world
        .ssh_exec_ok(&key, "id -un && sudo -n true && echo sudo-ok")
        .unwrap_or_else(|e| panic!("login with imported key failed: {e}\n{}", world.logs()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec![world.ssh_user(), "sudo-ok"], "output: {out:?}");

    world.delete_key_pair(&name).expect("delete");
}

/// (b) A key that is not in the emulator is refused, while one that is
/// logs in (so the refusal is about the key, not an unreachable sshd).
#[test]
fn world_unknown_key_is_refused() {
    let world = world_or_skip!(shared);
    let dir = tempdir();
    let known = unique_name("world-b-known");
    let (known_key, known_pub) = ssh_keygen(dir.path(), &known);
    let (unknown_key, _) = ssh_keygen(dir.path(), &unique_name("world-b-unknown"));
    world.import_key_pair(&known, &known_pub).expect("import");

    world
        .ssh_exec_ok(&known_key, "true")
        .unwrap_or_else(|e| panic!("control login failed: {e}\n{}", world.logs()));
    let err = world
        .ssh_exec_ok(&unknown_key, "echo should-not-run")
        .expect_err("a key that is not in the emulator must be refused");
    assert!(err.contains("Permission denied"), "unexpected error: {err}");

    world.delete_key_pair(&known).expect("delete");
}

/// (c) After DeleteKeyPair the same key is refused.
#[test]
fn world_deleted_key_is_refused() {
    let world = world_or_skip!(shared);
    let dir = tempdir();
    let name = unique_name("world-c");
    let (key, public) = ssh_keygen(dir.path(), &name);
    world.import_key_pair(&name, &public).expect("import");
    world
        .ssh_exec_ok(&key, "true")
        .unwrap_or_else(|e| panic!("login before delete failed: {e}\n{}", world.logs()));

    world.delete_key_pair(&name).expect("delete");
    let err = world
        .ssh_exec_ok(&key, "echo should-not-run")
        .expect_err("a deleted key pair's key must be refused");
    assert!(err.contains("Permission denied"), "unexpected error: {err}");
}

/// A key pair made by CreateKeyPair (RSA, how Packer and imgbuild make their
/// temporary key pair) logs in with the private key EC2 returned.
#[test]
fn world_created_key_pair_logs_in() {
    let world = world_or_skip!(shared);
    let dir = tempdir();
    let name = unique_name("world-created");
    let pem = world.create_key_pair(dir.path(), &name).expect("create");
    let head = std::fs::read_to_string(&pem).expect("read pem");
    assert!(head.starts_with("-----BEGIN"), "not a PEM key: {head:.40}");
    let out = world
        .ssh_exec_ok(&pem, "id -un")
        .unwrap_or_else(|e| panic!("login with created key failed: {e}\n{}", world.logs()));
    assert_eq!(out.trim(), world.ssh_user());
    world.delete_key_pair(&name).expect("delete");
    assert!(
        world.ssh_exec_ok(&pem, "true").is_err(),
        "deleted key must be refused"
    );
}

/// Only the test user may log in, even with a valid key (no root login).
#[test]
fn world_only_the_test_user_may_log_in() {
    let world = world_or_skip!(shared);
    let dir = tempdir();
    let name = unique_name("world-user");
    let (key, public) = ssh_keygen(dir.path(), &name);
    world.import_key_pair(&name, &public).expect("import");
    world
        .ssh_exec_ok(&key, "true")
        .unwrap_or_else(|e| panic!("control login failed: {e}\n{}", world.logs()));
    let as_root = crate::support::world::run_ok(
        &mut world.ssh_command_as("root", &key, "echo should-not-run"),
        Duration::from_secs(60),
    );
    assert!(as_root.is_err(), "root login must be refused: {as_root:?}");
    world.delete_key_pair(&name).expect("delete");
}

/// (d) The sandbox directory exists and the test user can write there.
#[test]
fn world_sandbox_is_writable_by_the_test_user() {
    let world = world_or_skip!(shared);
    let sandbox = world.sandbox();
    assert!(sandbox.is_dir(), "{} is not a directory", sandbox.display());
    let home = crate::support::world::run_ok(
        std::process::Command::new("getent")
            .arg("passwd")
            .arg(world.ssh_user()),
        Duration::from_secs(10),
    )
    .ok()
    .and_then(|line| line.trim().split(':').nth(5).map(str::to_string));
    if let Some(home) = home {
        assert!(
            sandbox.starts_with(&home),
            "sandbox {} is not in the test user's home {home}",
            sandbox.display()
        );
    }

    let dir = tempdir();
    let name = unique_name("world-d");
    let (key, public) = ssh_keygen(dir.path(), &name);
    world.import_key_pair(&name, &public).expect("import");
    let sub = sandbox.join(&name);
    let script = format!(
        "mkdir '{sub}' && echo written-by-$(id -un) > '{sub}/file.txt' && stat -c %U '{sandbox}'",
        sub = sub.display(),
        sandbox = sandbox.display()
    );
    let owner = world
        .ssh_exec_ok(&key, &script)
        .unwrap_or_else(|e| panic!("writing into the sandbox failed: {e}\n{}", world.logs()));
    assert_eq!(owner.trim(), world.ssh_user(), "sandbox owner");
    let written = std::fs::read_to_string(sub.join("file.txt")).expect("file written over ssh");
    assert_eq!(written.trim(), format!("written-by-{}", world.ssh_user()));
    world.delete_key_pair(&name).expect("delete");
}

/// (e) The EC2 endpoint answers DescribeRegions and DescribeImages, and offers
/// the default AMI the example template's source_ami_filter selects.
#[test]
fn world_ec2_answers_describe_regions_and_images() {
    let world = world_or_skip!(shared);
    let (regions, images) = world.ec2(|client| async move {
        let regions = client
            .describe_regions()
            .send()
            .await
            .expect("DescribeRegions");
        let images = client
            .describe_images()
            .owners(CANONICAL_OWNER)
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("name")
                    .values(UBUNTU_XENIAL_NAME_FILTER)
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("virtualization-type")
                    .values("hvm")
                    .build(),
            )
            .send()
            .await
            .expect("DescribeImages");
        (regions, images)
    });
    let region_names: Vec<&str> = regions
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .collect();
    assert!(
        region_names.contains(&world.region()),
        "regions: {region_names:?}"
    );
    let found: Vec<(&str, &str, &str)> = images
        .images()
        .iter()
        .map(|i| {
            (
                i.image_id().unwrap_or_default(),
                i.owner_id().unwrap_or_default(),
                i.name().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "images: {found:?}");
    assert_eq!(found[0].0, UBUNTU_XENIAL_AMI, "images: {found:?}");
    assert_eq!(found[0].1, CANONICAL_OWNER, "images: {found:?}");
}

fn pid_alive(pid: u32) -> bool {
    // A zombie is as good as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A world of its own: running while held, and dropping it stops exactly the
/// processes it started and removes its state directory and sandbox.
#[test]
fn world_own_world_is_cleaned_up_on_drop() {
    let world = world_or_skip!();
    let pids = world.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["moto", "sshd", "watch"] {
        assert!(names.contains(&expected), "recorded: {pids:?}");
    }
    for (name, pid) in &pids {
        assert!(pid_alive(*pid), "{name} (pid {pid}) is not running");
    }
    let state_dir = world.state_dir().to_path_buf();
    let sandbox = world.sandbox().to_path_buf();
    assert!(state_dir.join("sshd_config").is_file());
    assert!(sandbox.is_dir());

    drop(world);

    // A bound, not a measure: `stop` has already escalated to KILL; a loaded machine may still
    // take a while to reap.
    let gone = wait_until(Duration::from_secs(60), || {
        pids.iter().all(|(_, pid)| !pid_alive(*pid))
    });
    let left: Vec<_> = pids.iter().filter(|(_, pid)| pid_alive(*pid)).collect();
    assert!(gone, "still running after drop: {left:?}");
    assert!(!Path::new(&state_dir).exists(), "state dir left behind");
    assert!(!sandbox.exists(), "sandbox left behind");
}

/// The reference: HashiCorp Packer (1.6.6 here), when installed, builds
/// images/local_example.json end to end against a world of its own. Skipped
/// when `packer` is not on PATH, except in CI (scripts/test.sh installs it).
#[test]
fn world_packer_builds_the_local_example() {
    let version = crate::support::world::run_ok(
        std::process::Command::new("packer").arg("version"),
        Duration::from_secs(30),
    );
    let Ok(version) = version else {
        crate::support::skip(
            "packer (the reference) is not installed; scripts/test.sh installs it",
        );
        return;
    };
    let world = world_or_skip!();
    let cwd = tempdir();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/local_example.json");
    let mut cmd = std::process::Command::new("packer");
    cmd.args(["build", "-color=false"])
        .arg(&template)
        .current_dir(cwd.path())
        .envs(world.env())
        .env("CHECKPOINT_DISABLE", "1");
    let out =
        crate::support::world::run_ok(&mut cmd, Duration::from_secs(300)).unwrap_or_else(|e| {
            panic!(
                "packer build failed ({}): {e}\n{}",
                version.trim(),
                world.logs()
            )
        });
    assert!(out.contains("AMIs were created"), "packer output:\n{out}");

    // The provisioners wrote into the sandbox, as the test user.
    let example = world.sandbox().join("example");
    let hello = std::fs::read_to_string(example.join("hello.txt")).expect("hello.txt");
    assert_eq!(hello.trim(), "hello");
    let motd = std::fs::read_to_string(example.join("motd.txt")).expect("motd.txt");
    let motd_src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioners/example/motd.txt"),
    )
    .expect("motd source");
    assert_eq!(motd, motd_src);
    let whoami = std::fs::read_to_string(example.join("whoami.txt")).expect("whoami.txt");
    assert_eq!(whoami.trim(), world.ssh_user());

    // The manifest names the AMI, which exists in the emulator, tagged, and
    // Packer's temporary resources are gone.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cwd.path().join("packer-manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let artifact = manifest["builds"][0]["artifact_id"]
        .as_str()
        .expect("artifact_id")
        .to_string();
    let ami = artifact
        .strip_prefix("us-east-1:")
        .unwrap_or_else(|| panic!("artifact_id {artifact}"))
        .to_string();
    let (image, key_pairs, instances) = world.ec2(|client| async move {
        let images = client
            .describe_images()
            .image_ids(&ami)
            .send()
            .await
            .expect("DescribeImages");
        let key_pairs = client
            .describe_key_pairs()
            .send()
            .await
            .expect("DescribeKeyPairs");
        let instances = client
            .describe_instances()
            .send()
            .await
            .expect("DescribeInstances");
        (images, key_pairs, instances)
    });
    let image = image.images().first().expect("the AMI exists").clone();
    assert!(image
        .name()
        .unwrap_or_default()
        .starts_with("imgbuild-example-"));
    let source_tag = image
        .tags()
        .iter()
        .find(|t| t.key() == Some("SourceAMI"))
        .and_then(|t| t.value());
    assert_eq!(source_tag, Some(UBUNTU_XENIAL_AMI));
    assert!(
        key_pairs.key_pairs().is_empty(),
        "temporary key pair left: {:?}",
        key_pairs.key_pairs()
    );
    for reservation in instances.reservations() {
        for instance in reservation.instances() {
            let state = instance.state().and_then(|s| s.name()).map(|n| n.as_str());
            assert_eq!(
                state,
                Some("terminated"),
                "instance {:?}",
                instance.instance_id()
            );
        }
    }
}
