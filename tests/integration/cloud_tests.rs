//! The local cloud (`scripts/testworld.sh start --real-instances`): its instances are real Debian
//! roots booted by systemd, reachable where DescribeInstances says on port 22, with EC2's stop,
//! start, CreateImage and run-from-image semantics; stopping it leaves nothing; and the real
//! `images/web_worker.json` builds against it and its image serves Django through Apache.
//! Root only: skipped outside CI without it, failed with `CI=true`.

use std::path::Path;

use crate::support::build;
use crate::support::cli::{imgbuild_env, Scratch};
use crate::support::cloud::{
    create_image, delete_image, find_image, instance_action, launch, leftovers, login_refused,
    public_ip, ssh_ok, state_of, CANONICAL, UBUNTU_JAMMY,
};
use crate::support::world::TestWorld;

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
        "boot test passed: celery.service enabled; Django answered /health/ through Apache and mod_wsgi",
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
