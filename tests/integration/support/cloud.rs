//! The local cloud (`scripts/testworld.sh start --real-instances`, scripts/localcloud/): a world
//! whose EC2 instances are real Debian roots booted by systemd-nspawn, each on a loopback address
//! of its own with sshd on port 22. What the cloud tests do with it as any EC2 client would:
//! launch from an image with a key pair, read the address DescribeInstances gives, log in on 22;
//! and what they check afterwards: nothing of a stopped cloud is left (mounts, processes).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use super::world::{run_bounded, TestWorld};

/// Canonical's account, as the web worker's `source_ami_filter` has it.
pub const CANONICAL: &str = "099720109477";
/// The web worker's Ubuntu 22.04 name filter.
pub const UBUNTU_JAMMY: &str = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*";
/// How long an instance may take from launch to a working SSH login.
const LOGIN_BOUND: Duration = Duration::from_secs(120);
/// Upper bound on one command run over SSH.
const COMMAND_BOUND: Duration = Duration::from_secs(300);

fn sdk<E: std::error::Error>(what: &str, e: E) -> String {
    let mut s = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The newest image owned by `owner` whose name matches `name` (DescribeImages with filters).
pub fn find_image(world: &TestWorld, owner: &str, name: &str) -> String {
    world.ec2(|c| async move {
        let out = c
            .describe_images()
            .owners(owner)
            .filters(Filter::builder().name("name").values(name).build())
            .filters(
                Filter::builder()
                    .name("root-device-type")
                    .values("ebs")
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DescribeImages", e)));
        let mut images = out.images().to_vec();
        images.sort_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        images
            .last()
            .and_then(|i| i.image_id())
            .unwrap_or_else(|| panic!("no image {owner}/{name}"))
            .to_string()
    })
}

/// RunInstances of one instance of `image` with `key_name`; returns (instance ID, the public
/// address DescribeInstances reports).
pub fn launch(world: &TestWorld, image: &str, key_name: &str) -> (String, String) {
    launch_with(world, image, key_name, None)
}

/// [`launch`] with this user data. The instance is in a group that lets SSH in from this
/// machine's address (the world's public address: the cloud enforces groups), made once.
pub fn launch_with(
    world: &TestWorld,
    image: &str,
    key_name: &str,
    user_data: Option<&str>,
) -> (String, String) {
    let me = format!("{}/32", world.public_ip());
    let id = world.ec2(|c| async move {
        let group = ssh_group(&c, &me).await;
        let out = c
            .run_instances()
            .security_group_ids(group)
            .set_user_data(user_data.map(|u| aws_smithy_types::base64::encode(u.as_bytes())))
            .image_id(image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .key_name(key_name)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("RunInstances", e)));
        out.instances()[0]
            .instance_id()
            .expect("an instance ID")
            .to_string()
    });
    let ip = public_ip(world, &id).expect("a running instance has a public address");
    (id, ip)
}

/// The group `ssh-from-this-machine` (SSH from `cidr`), made if it is not there yet.
async fn ssh_group(c: &aws_sdk_ec2::Client, cidr: &str) -> String {
    const NAME: &str = "ssh-from-this-machine";
    let found = c
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(NAME)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", sdk("DescribeSecurityGroups", e)));
    if let Some(id) = found.security_groups().first().and_then(|g| g.group_id()) {
        return id.to_string();
    }
    let id = c
        .create_security_group()
        .group_name(NAME)
        .description("SSH from this machine")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", sdk("CreateSecurityGroup", e)))
        .group_id()
        .expect("a group ID")
        .to_string();
    c.authorize_security_group_ingress()
        .group_id(&id)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip(cidr)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", sdk("AuthorizeSecurityGroupIngress", e)));
    id
}

/// The instance's public address (None when it has none, e.g. stopped).
pub fn public_ip(world: &TestWorld, id: &str) -> Option<String> {
    world.ec2(|c| async move {
        let out = c
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DescribeInstances", e)));
        let inst = &out.reservations()[0].instances()[0];
        inst.public_ip_address().map(str::to_string)
    })
}

/// The instance's state name (`running`, `stopped`, ...).
pub fn state_of(world: &TestWorld, id: &str) -> String {
    world.ec2(|c| async move {
        let out = c
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DescribeInstances", e)));
        let inst = &out.reservations()[0].instances()[0];
        inst.state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    })
}

/// StopInstances, StartInstances or TerminateInstances of one instance (`action`: "stop",
/// "start", "terminate").
pub fn instance_action(world: &TestWorld, id: &str, action: &str) {
    world.ec2(|c| async move {
        let r = match action {
            "stop" => c
                .stop_instances()
                .instance_ids(id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(action, e)),
            "start" => c
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(action, e)),
            "terminate" => c
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(action, e)),
            other => Err(format!("unknown action {other}")),
        };
        r.unwrap_or_else(|e| panic!("{e}"))
    })
}

/// CreateImage of the instance; returns (AMI ID, its snapshot ID).
pub fn create_image(world: &TestWorld, id: &str, name: &str) -> (String, String) {
    world.ec2(|c| async move {
        let ami = c
            .create_image()
            .instance_id(id)
            .name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("CreateImage", e)))
            .image_id()
            .expect("an AMI ID")
            .to_string();
        let out = c
            .describe_images()
            .image_ids(&ami)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DescribeImages", e)));
        let snap = out.images()[0].block_device_mappings()[0]
            .ebs()
            .and_then(|e| e.snapshot_id())
            .expect("a snapshot")
            .to_string();
        (ami, snap)
    })
}

/// DeregisterImage then DeleteSnapshot.
pub fn delete_image(world: &TestWorld, ami: &str, snapshot: &str) {
    world.ec2(|c| async move {
        c.deregister_image()
            .image_id(ami)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DeregisterImage", e)));
        c.delete_snapshot()
            .snapshot_id(snapshot)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", sdk("DeleteSnapshot", e)));
    })
}

/// `ssh -p 22 user@ip -- command` with exactly this private key (no agent, config or known
/// hosts; batch mode).
pub fn ssh_command(ip: &str, user: &str, key: &Path, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ])
    .args([
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
    ])
    .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
    .args([
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "ConnectTimeout=5",
    ])
    .args(["-o", "LogLevel=ERROR", "-p", "22", "-i"])
    .arg(key)
    .arg(format!("{user}@{ip}"))
    .arg("--")
    .arg(command);
    cmd
}

/// Runs `command` over SSH, retrying (bounded) while the login itself fails (exit 255: sshd not
/// up yet); `Ok(stdout)` when it ran and exited 0, else `Err` with what it printed.
pub fn ssh_ok(ip: &str, user: &str, key: &Path, command: &str) -> Result<String, String> {
    let deadline = Instant::now() + LOGIN_BOUND;
    let mut last = String::new();
    for _ in 0..600 {
        let out = run_bounded(&mut ssh_command(ip, user, key, command), COMMAND_BOUND)
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => return Ok(stdout),
            Some(255) if Instant::now() < deadline => {
                last = stderr;
                thread::sleep(Duration::from_millis(200));
            }
            code => {
                return Err(format!(
                    "ssh {user}@{ip} `{command}` exited {code:?}: {stdout}{stderr}"
                ))
            }
        }
    }
    Err(format!(
        "ssh {user}@{ip}: no login within {LOGIN_BOUND:?}: {last}"
    ))
}

/// Whether a login with `key` is refused (exit 255 for `true`), after the instance is up.
pub fn login_refused(ip: &str, user: &str, key: &Path) -> bool {
    let out =
        run_bounded(&mut ssh_command(ip, user, key, "true"), COMMAND_BOUND).expect("ssh runs");
    out.status.code() == Some(255)
}

/// What of a (stopped) cloud is still on this machine: mounts under its state directory and
/// processes whose command line names it or one of its machines (`lc-<instance id>`).
pub fn leftovers(state_dir: &Path, instance_ids: &[String]) -> Vec<String> {
    let dir = state_dir.display().to_string();
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        if line
            .split_whitespace()
            .nth(4)
            .is_some_and(|m| m.starts_with(&dir))
        {
            found.push(format!("mount: {line}"));
        }
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z'))
        {
            continue; // a zombie holds nothing (the host's PID 1 reaps lazily)
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let machine = instance_ids
            .iter()
            .any(|id| cmdline.contains(&format!("lc-{id}")));
        if cmdline.contains(&dir) || machine {
            found.push(format!("process {name}: {cmdline}"));
        }
    }
    for id in instance_ids {
        let cg = format!("/sys/fs/cgroup/unified/imgbuild-localcloud/lc-{id}");
        if Path::new(&cg).exists() {
            found.push(format!("cgroup: {cg}"));
        }
    }
    found
}
