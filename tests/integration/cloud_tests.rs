//! The local cloud (`scripts/testworld.sh start --real-instances`): its instances are real Debian
//! roots booted by systemd, reachable where DescribeInstances says on port 22, with EC2's stop,
//! start, CreateImage and run-from-image semantics; stopping it leaves nothing; and the real
//! `images/web_worker.json` builds against it and its image serves Django through Apache.
//! Root only: skipped outside CI without it, failed with `CI=true`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::build::{self, cleanup};
use crate::support::building::Building;
use crate::support::cli::{imgbuild_env, Scratch};
use crate::support::cloud::{
    create_image, delete_image, find_image, instance_action, launch, launch_with, leftovers,
    login_refused, public_ip, ssh_ok, state_of, CANONICAL, UBUNTU_JAMMY,
};
use crate::support::state::{assert_nothing_left, state, Region};
use crate::support::world::{unique_name, TestWorld};

/// Any EC2 client (here the AWS SDK and OpenSSH, nothing of imgbuild): an instance launched from
/// a source image with a key pair of its own is a booted systemd machine at the address
/// DescribeInstances gives, on port 22, as the image's user with sudo, and only that key logs in;
/// stopping the cloud leaves no machine, mount or process behind.
#[test]
fn cloud_instances_are_real_machines_any_ec2_client_can_log_in_to() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let key = world
        .create_key_pair(dir.path(), "launch")
        .expect("key pair");
    let other = world
        .create_key_pair(dir.path(), "other")
        .expect("key pair");

    let ubuntu = find_image(&world, CANONICAL, UBUNTU_JAMMY);
    let debian = find_image(&world, "136693071363", "debian-12-amd64-*");
    let (id1, ip1) = launch(&world, &ubuntu, "launch");
    let (id2, ip2) = launch(&world, &debian, "launch");
    assert!(ip1.starts_with("127.") && ip1 != "127.0.0.1", "{ip1}");
    assert_ne!(ip1, ip2, "each instance has an address of its own");

    let cmd =
        "cloud-init status --wait; systemctl is-system-running --wait; id -un; sudo -n id -un; \
               ps -o comm= -p 1; hostname";
    let out = ssh_ok(&ip1, "ubuntu", &key, cmd).unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "status: done", "{out}");
    assert!(["running", "degraded"].contains(&lines[1]), "{out}");
    assert_eq!(lines[2..5], ["ubuntu", "root", "systemd"], "{out}");
    assert_eq!(lines[5], format!("ip-{}", ip1.replace('.', "-")), "{out}");
    // `cloud-init status --wait` blocks while first boot is unfinished (the first-boot unit's
    // mark held back for 2 s) and ends with "done" once it is finished.
    let held = "sudo mv /run/localcloud/boot-finished /run/localcloud/held && \
        { (sleep 2; sudo mv /run/localcloud/held /run/localcloud/boot-finished) >/dev/null 2>&1 & } ; \
        cloud-init status; cloud-init status --wait";
    let out =
        ssh_ok(&ip1, "ubuntu", &key, held).unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "status: running", "{out}");
    assert!(
        lines[1].len() >= 2 && lines[1].chars().all(|c| c == '.'),
        "status --wait waited (a dot per half second): {out}"
    );
    assert_eq!(lines[2], "status: done", "{out}");
    let out = ssh_ok(&ip2, "admin", &key, "id -un").expect("Debian's user logs in");
    assert_eq!(out.trim(), "admin");

    assert!(
        login_refused(&ip1, "ubuntu", &other),
        "another key pair's key is refused"
    );
    assert!(
        login_refused(&ip1, "admin", &key),
        "only the image's user has the key"
    );

    instance_action(&world, &id1, "terminate");
    assert_eq!(state_of(&world, &id1), "terminated");
    let instances = world.state_dir().join("cloud/instances");
    assert_eq!(
        leftovers(&instances.join(&id1), std::slice::from_ref(&id1)),
        Vec::<String>::new()
    );
    assert!(!instances.join(&id1).exists());

    // The other instance is still running when the cloud stops, and its EC2 server was killed
    // (kill -9): the stop still finds and removes the machine.
    let server = world
        .pids()
        .into_iter()
        .find(|(name, _)| name == "moto")
        .expect("the EC2 server")
        .1;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -9 {server}");
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &[id1, id2]), Vec::<String>::new());
    assert!(!state_dir.exists());
}

/// Stop and start keep the disk and the address; CreateImage freezes the disk, and an instance
/// launched from the image boots it (a file written before, a unit enabled before and started at
/// boot) with an identity and key of its own; the image's disk goes once the AMI is deregistered
/// and its snapshot deleted.
#[test]
fn cloud_stop_start_and_images_keep_the_disk() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let key = world
        .create_key_pair(dir.path(), "first")
        .expect("key pair");
    let second = world
        .create_key_pair(dir.path(), "second")
        .expect("key pair");
    let ubuntu = find_image(&world, CANONICAL, UBUNTU_JAMMY);
    let (id, ip) = launch(&world, &ubuntu, "first");
    let unit = "[Unit]\nDescription=marker\n[Service]\nType=oneshot\nExecStart=/bin/touch /run/marker-ran\n\
                [Install]\nWantedBy=multi-user.target\n";
    let setup = format!(
        "echo kept | sudo tee /etc/imgbuild-marker >/dev/null && \
         printf '{}' | sudo tee /etc/systemd/system/marker.service >/dev/null && \
         sudo systemctl daemon-reload && sudo systemctl enable marker.service 2>/dev/null && cat /etc/machine-id",
        unit.replace('\n', "\\n")
    );
    let machine_id =
        ssh_ok(&ip, "ubuntu", &key, &setup).unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));

    instance_action(&world, &id, "stop");
    assert_eq!(state_of(&world, &id), "stopped");
    assert_eq!(
        public_ip(&world, &id),
        None,
        "a stopped instance has no public address"
    );
    instance_action(&world, &id, "start");
    assert_eq!(public_ip(&world, &id).as_deref(), Some(ip.as_str()));
    let out = ssh_ok(
        &ip,
        "ubuntu",
        &key,
        "cat /etc/imgbuild-marker; ls /run/marker-ran",
    )
    .expect("after start");
    assert_eq!(out, "kept\n/run/marker-ran\n");

    // A reboot from inside boots the machine again (/run is emptied, enabled units start).
    let _ = ssh_ok(
        &ip,
        "ubuntu",
        &key,
        "sudo touch /run/before-reboot; sudo systemctl reboot",
    );
    let mut rebooted = false;
    for _ in 0..100 {
        let out = ssh_ok(
            &ip,
            "ubuntu",
            &key,
            "ls /run/before-reboot /run/marker-ran 2>/dev/null; true",
        );
        if out.as_deref() == Ok("/run/marker-ran\n") {
            rebooted = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(
        rebooted,
        "the instance came back from an in-guest reboot\n{}",
        world.logs()
    );

    instance_action(&world, &id, "stop");
    let (ami, snapshot) = create_image(&world, &id, "disk-test");
    // The source instance goes on with its own disk and identity.
    instance_action(&world, &id, "start");
    let out = ssh_ok(
        &ip,
        "ubuntu",
        &key,
        "cat /etc/imgbuild-marker /etc/machine-id",
    )
    .expect("restarted");
    assert_eq!(out, format!("kept\n{}\n", machine_id.trim()));
    instance_action(&world, &id, "terminate");
    let (id2, ip2) = launch(&world, &ami, "second");
    assert_ne!(id2, id);
    let out = ssh_ok(
        &ip2,
        "ubuntu",
        &second,
        "cat /etc/imgbuild-marker; ls /run/marker-ran; cat /etc/machine-id; hostname",
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["kept", "/run/marker-ran"], "{out}");
    assert_ne!(lines[2], machine_id.trim(), "a new machine-id");
    assert_eq!(lines[3], format!("ip-{}", ip2.replace('.', "-")));
    assert!(
        login_refused(&ip2, "ubuntu", &key),
        "the first key pair does not log in to the new instance"
    );

    let layer = world.state_dir().join("cloud/images").join(&ami);
    assert!(
        layer.is_dir(),
        "the image's disk is kept while the AMI exists"
    );
    delete_image(&world, &ami, &snapshot);
    assert!(
        layer.is_dir(),
        "kept while an instance launched from it exists"
    );
    let out = ssh_ok(&ip2, "ubuntu", &second, "cat /etc/imgbuild-marker").expect("still works");
    assert_eq!(out, "kept\n");
    instance_action(&world, &id2, "terminate");
    assert!(
        !layer.exists(),
        "deregistered, its snapshot deleted, its last instance gone: the disk is gone"
    );
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &[id, id2]), Vec::<String>::new());
}

/// RunInstances' user data, a `#!` script, runs as root once per instance late in first boot,
/// as cloud-init's scripts-user runs it: `cloud-init status --wait` ends after it, a stop and
/// start does not run it again, an instance launched from an image of the instance runs its own
/// user data (and none when it has none), and the user data is readable by root only.
#[test]
fn cloud_user_data_scripts_run_once_per_instance_within_first_boot() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let key = world.create_key_pair(dir.path(), "ud").expect("key pair");
    let ubuntu = find_image(&world, CANONICAL, UBUNTU_JAMMY);
    // The sleep: `cloud-init status --wait` must wait for the script, not find its file by luck.
    let script = "#!/bin/sh\nsleep 1\necho \"$(hostname) $(id -un)\" >>/var/tmp/user-data-ran\n";
    let (id, ip) = launch_with(&world, &ubuntu, "ud", Some(script));
    let host = |ip: &str| format!("ip-{}", ip.replace('.', "-"));
    let read = "cloud-init status --wait >/dev/null && cat /var/tmp/user-data-ran";
    let out = ssh_ok(
        &ip,
        "ubuntu",
        &key,
        &format!("{read} && sudo stat -c %a /etc/localcloud/user-data"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(out, format!("{} root\n600\n", host(&ip)));

    instance_action(&world, &id, "stop");
    instance_action(&world, &id, "start");
    let out = ssh_ok(&ip, "ubuntu", &key, read).expect("after start");
    assert_eq!(out, format!("{} root\n", host(&ip)), "not run again");

    instance_action(&world, &id, "stop");
    let (ami, _snapshot) = create_image(&world, &id, "user-data-test");
    let (id2, ip2) = launch(&world, &ami, "ud");
    let out = ssh_ok(
        &ip2,
        "ubuntu",
        &key,
        &format!("{read} && sudo test ! -e /etc/localcloud/user-data"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(
        out,
        format!("{} root\n", host(&ip)),
        "no user data: none run"
    );
    let (id3, ip3) = launch_with(&world, &ami, "ud", Some(script));
    let out =
        ssh_ok(&ip3, "ubuntu", &key, read).unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(
        out,
        format!("{} root\n{} root\n", host(&ip), host(&ip3)),
        "a new instance runs its own user data"
    );
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &[id, id2, id3]), Vec::<String>::new());
}

/// The boot test launches the new AMI with the build's user data: a script that records the
/// hostname of the instance it ran on, which the check compares with its own (the build
/// instance's record, frozen into the image, would not match).
#[test]
fn cloud_the_boot_test_instance_runs_the_builds_user_data() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let e = cloud_env(&world);
    let before = state(&world);
    let extra = json!({"user_data": "#!/bin/sh\nhostname >/var/tmp/user-data-host\n"});
    let chain = json!([{
        "type": "boot-test", "timeout": "2m",
        "inline": ["echo \"user data ran on $(cat /var/tmp/user-data-host), checked on $(hostname)\"",
                   "test \"$(cat /var/tmp/user-data-host)\" = \"$(hostname)\""]
    }]);
    let s = Scratch::new().with("t.json", &small_template(&world, extra, chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\n{}", world.logs());
    assert!(out.contains("boot test passed:"), "{out}");
    let ids = new_instances(&world, &before);
    assert_eq!(ids.len(), 2, "the build's instance and the boot test's");
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}

/// The real `images/web_worker.json`, unchanged (no ssh_host, no endpoint: AWS_ENDPOINT_URL
/// points the SDK at the cloud), built for real: apt from Debian's archive, pip from PyPI, Apache
/// and the Celery unit; an instance launched from its AMI answers Django's /health/ through
/// Apache and mod_wsgi, with celery.service enabled.
#[test]
fn cloud_real_web_worker_image_serves_django_through_apache() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/web_worker.json");
    let s = Scratch::new();
    let e = build::env(&world);
    let mut vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("AWS_ENDPOINT_URL", world.ec2_endpoint()));
    let template = template.display().to_string();
    let args = [
        "build",
        "-color=false",
        "-var",
        "region=us-east-1",
        "-var",
        "django_db_password=dummy-password",
        "-var",
        "django_db_host=db.example.test",
        "-var",
        "django_secret=dummy-secret",
        "-var",
        "email_host=smtp.example.test",
        "-var",
        "web_domain=mailape.example.test",
        &template,
    ];
    let run = imgbuild_env(s.dir.path(), &args, None, &vars);
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        world.logs()
    );
    assert!(
        run.stdout.contains("Successfully installed"),
        "pip ran for real:\n{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("dummy-password"),
        "secrets never in output"
    );
    let ami = build::ami_from_stdout(&run.stdout, "us-east-1");
    // wait_for_boot for real: the build and the boot test each waited for the local cloud's
    // first boot (its `cloud-init status --wait`) before their first command.
    assert_eq!(
        run.stdout.matches("First boot finished").count(),
        2,
        "{}",
        run.stdout
    );
    // The template's own boot test (first in its one chain) launched an instance from the new
    // AMI and checked it from inside: celery.service enabled, Django's /health/ answered
    // through Apache and mod_wsgi at the instance's own address.
    let boot = run
        .stdout
        .find(&format!("booting {ami} in us-east-1"))
        .unwrap_or_else(|| panic!("the boot test ran on the new AMI:\n{}", run.stdout));
    let checks = &run.stdout[boot..];
    let order = [
        "enabled",
        "HTTP/1.1 200 OK",
        "Server: Apache",
        r#"{"status": "ok"}"#,
        "web worker checks passed: celery.service enabled; Django answered /health/ through Apache and mod_wsgi",
        "post-processor manifest",
    ];
    let mut at = 0;
    for want in order {
        let i = checks[at..]
            .find(want)
            .unwrap_or_else(|| panic!("`{want}` after the earlier checks:\n{checks}"));
        at += i + want.len();
    }
    // The chain went on after the boot test: the AMI is kept and written out.
    let outputs = std::fs::read_to_string(s.path("web-worker-amis.env")).expect("ami-outputs ran");
    assert!(outputs.contains(&ami), "{outputs}");
    assert!(s.path("web-worker-manifest.json").exists(), "manifest ran");
    // Both instances (the build's and the boot test's) are gone.
    let ids: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|l| l.split("Instance ID: ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 2, "{}", run.stdout);
    for id in &ids {
        assert_eq!(state_of(&world, id), "terminated", "{id}");
    }

    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}

/// A small template for the local cloud: the web worker's source image filter and user, one
/// provisioner, `extra` merged into the builder, and this chain of post-processors.
pub(crate) fn small_template(world: &TestWorld, extra: Value, chain: Value) -> String {
    let mut b = json!({
        "type": "amazon-ebs",
        "name": "small",
        "region": world.region(),
        "instance_type": "t3.micro",
        "source_ami_filter": {"filters": {"name": UBUNTU_JAMMY}, "owners": [CANONICAL], "most_recent": true},
        "ssh_username": "ubuntu",
        "ssh_timeout": "5m",
        "ami_name": "small-{{timestamp}}"
    });
    if let (Some(b), Value::Object(x)) = (b.as_object_mut(), extra) {
        b.extend(x);
    }
    json!({
        "builders": [b],
        "provisioners": [{"type": "shell", "inline": ["echo provisioned on $(hostname)"]}],
        "post-processors": [chain]
    })
    .to_string()
}

/// The build environment for the local cloud: the world's, a journal of the test's own, and
/// `AWS_ENDPOINT_URL` (the template names no endpoint, as on AWS).
pub(crate) fn cloud_env(world: &TestWorld) -> build::Env {
    let mut e = build::env(world);
    e.vars
        .push(("AWS_ENDPOINT_URL".into(), world.ec2_endpoint().to_string()));
    e
}

/// What is left of these instances while the cloud still runs: their mounts, cgroups and
/// machine processes (the world's own server processes are not counted).
fn machines_left(world: &TestWorld, ids: &[String]) -> Vec<String> {
    leftovers(world.state_dir(), ids)
        .into_iter()
        .filter(|l| !l.starts_with("process ") || l.contains("lc-") || l.contains("nspawn"))
        .collect()
}

/// The instances in the world's region that `before` did not have.
pub(crate) fn new_instances(world: &TestWorld, before: &BTreeMap<&str, Region>) -> Vec<String> {
    let r = world.region().to_string();
    let now = state(world);
    let (b, a) = (&before[r.as_str()].instances, &now[r.as_str()].instances);
    a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
}

/// A boot test whose check fails on the instance booted from the new AMI (a unit that is not
/// enabled) fails the build, and deregister_on_failure deregisters the AMI and deletes its
/// snapshot: nothing of the build or the boot test is left, in EC2 or on this machine.
#[test]
fn cloud_a_failing_boot_test_deregisters_the_ami_and_deletes_its_snapshots() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let e = cloud_env(&world);
    let before = state(&world);
    let chain = json!([
        {"type": "boot-test", "timeout": "2m", "inline": ["systemctl is-enabled no-such-unit.service"]},
        {"type": "manifest", "output": "manifest.json"}
    ]);
    let s = Scratch::new().with("t.json", &small_template(&world, json!({}), chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}\n{}", world.logs());
    assert_eq!(out.matches("First boot finished").count(), 2, "{all}");
    assert!(all.contains("a check failed:"), "{all}");
    assert!(
        all.contains("deregister_on_failure: deregistered ami-"),
        "{all}"
    );
    assert!(!s.path("manifest.json").exists(), "the chain stopped");
    let ids = new_instances(&world, &before);
    assert_eq!(ids.len(), 2, "the build's instance and the boot test's");
    assert_nothing_left(&before, &state(&world), &[], "after a failed boot test");
    assert_eq!(
        machines_left(&world, &ids),
        Vec::<String>::new(),
        "no machine or mount of either instance"
    );
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}

/// `kill -9` of imgbuild while the boot test's check runs on its instance, then `imgbuild
/// cleanup`: the boot test's instance, key pair and group are gone, its machine stopped and
/// unmounted; only the delivered AMI is left.
#[test]
fn cloud_kill_9_during_the_boot_test_then_cleanup_leaves_nothing() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let e = cloud_env(&world);
    let before = state(&world);
    let chain = json!([{
        "type": "boot-test", "timeout": "15m",
        "inline": ["echo boot-check-running", "exec sleep 900"]
    }]);
    let s = Scratch::new().with("t.json", &small_template(&world, json!({}), chain));
    let mut b = Building::start(&s, &e, None);
    b.wait_for("boot-check-running");
    b.kill9();
    let region = world.region().to_string();
    let mid = state(&world);
    let new: Vec<&String> = mid[region.as_str()]
        .images
        .keys()
        .filter(|i| !before[region.as_str()].images.contains_key(*i))
        .collect();
    assert_eq!(new.len(), 1, "the build delivered its AMI: {new:?}");
    let ami = new[0].clone();
    let ids = new_instances(&world, &before);
    let running: Vec<&String> = ids
        .iter()
        .filter(|id| mid[region.as_str()].instances[*id] == "running")
        .collect();
    assert_eq!(running.len(), 1, "the boot test's instance runs: {ids:?}");
    let r = cleanup(&e, &[]);
    assert_eq!(r.code, 0, "cleanup:\n{}\n{}", r.stdout, r.stderr);
    assert_nothing_left(
        &before,
        &state(&world),
        &[&ami],
        "after kill -9 and cleanup",
    );
    assert_eq!(
        machines_left(&world, &ids),
        Vec::<String>::new(),
        "no machine or mount of either instance"
    );
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}

/// A unit that holds dpkg's lock for 15 minutes from boot, as apt or unattended-upgrades does
/// on a fresh Ubuntu instance: a first boot that stays unfinished until the test ends it.
const SLOW_FIRST_BOOT_UNIT: &str = "[Unit]
Description=apt at first boot (the test's stand-in for unattended-upgrades)
[Service]
ExecStart=/usr/bin/python3 -c \"import fcntl, time; f = open('/var/lib/dpkg/lock-frontend', 'w'); fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(900)\"
[Install]
WantedBy=multi-user.target
";

/// An AMI whose instances' first boot is slow: the source image plus [`SLOW_FIRST_BOOT_UNIT`]
/// enabled; returns (AMI, snapshot).
fn slow_first_boot_image(world: &TestWorld) -> (String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let key = world.create_key_pair(dir.path(), "prep").expect("key pair");
    let source = find_image(world, CANONICAL, UBUNTU_JAMMY);
    let (id, ip) = launch(world, &source, "prep");
    let octal: String = SLOW_FIRST_BOOT_UNIT
        .bytes()
        .map(|b| format!("\\{b:03o}"))
        .collect();
    let install = format!(
        "printf '{octal}' | sudo tee /etc/systemd/system/first-boot-apt.service >/dev/null && \
         sudo systemctl enable first-boot-apt.service 2>&1"
    );
    ssh_ok(&ip, "ubuntu", &key, &install).unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    instance_action(world, &id, "stop");
    let image = create_image(world, &id, &unique_name("slow-first-boot"));
    instance_action(world, &id, "terminate");
    world.delete_key_pair("prep").expect("delete key pair");
    image
}

/// Ctrl-C while the build waits for first boot (dpkg's lock held by the image's first-boot
/// apt): the build stops waiting, terminates its instance and removes its key pair and group;
/// no AMI is made and no machine or mount is left.
#[test]
fn cloud_ctrl_c_during_the_first_boot_wait_cleans_up() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let (ami, snap) = slow_first_boot_image(&world);
    let e = cloud_env(&world);
    let before = state(&world);
    let extra = json!({"source_ami": ami, "source_ami_filter": null});
    let mut t: Value =
        serde_json::from_str(&small_template(&world, extra, json!([]))).expect("json");
    t["builders"][0]
        .as_object_mut()
        .expect("builder")
        .remove("source_ami_filter");
    t.as_object_mut()
        .expect("template")
        .remove("post-processors");
    let s = Scratch::new().with("t.json", &t.to_string());
    let mut b = Building::start(&s, &e, None);
    b.wait_for("a dpkg/apt lock is held (apt or unattended-upgrades runs): waiting for it");
    let (code, out, err) = b.interrupt();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        !out.contains("provisioned on"),
        "no provisioner ran:\n{all}"
    );
    assert!(!out.contains("First boot finished"), "{all}");
    let ids = new_instances(&world, &before);
    assert_eq!(ids.len(), 1, "the build's instance: {ids:?}");
    assert_nothing_left(
        &before,
        &state(&world),
        &[],
        "after Ctrl-C in the first boot wait",
    );
    assert_eq!(machines_left(&world, &ids), Vec::<String>::new());
    delete_image(&world, &ami, &snap);
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}
