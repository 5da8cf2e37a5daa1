//! The local cloud's security groups (on unless `--no-security-groups`): an instance's groups
//! are enforced with nftables on its own address (this machine counts as the world's public
//! address, and as inside the instance's VPC): a port its groups do not open to this machine is
//! dropped, one they open answers, rules take effect when added or revoked, the instance's
//! traffic to itself is never filtered, the build's temporary group (SSH from this machine's
//! address) lets the build and its boot test in, and the cloud's table is gone after the cloud
//! stops, even when its EC2 server was killed with -9. Root only.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::cloud_tests::{cloud_env, new_instances, small_template};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::cloud::{find_image, leftovers, public_ip, ssh_ok, CANONICAL, UBUNTU_JAMMY};
use crate::support::state::state;
use crate::support::world::TestWorld;

/// Whether a TCP connection to ip:port is accepted within 2 s (a dropped SYN times out).
fn tcp_open(ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("an address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// A security group in the default VPC with these (port, CIDR) TCP rules; its ID.
fn group(world: &TestWorld, name: &str, rules: &[(i32, &str)]) -> String {
    let id = world.ec2(|c| async move {
        c.create_security_group()
            .group_name(name)
            .description("cloud_sg_tests")
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id()
            .expect("a group ID")
            .to_string()
    });
    for (port, cidr) in rules {
        ingress(world, &id, *port, cidr, true);
    }
    id
}

/// AuthorizeSecurityGroupIngress (`add`) or RevokeSecurityGroupIngress of one TCP rule.
fn ingress(world: &TestWorld, group: &str, port: i32, cidr: &str, add: bool) {
    world.ec2(|c| async move {
        if add {
            c.authorize_security_group_ingress()
                .group_id(group)
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .cidr_ip(cidr)
                .send()
                .await
                .map(|_| ())
                .expect("AuthorizeSecurityGroupIngress");
        } else {
            c.revoke_security_group_ingress()
                .group_id(group)
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .cidr_ip(cidr)
                .send()
                .await
                .map(|_| ())
                .expect("RevokeSecurityGroupIngress");
        }
    })
}

/// RunInstances of one instance of `image` in `group`; (instance ID, its address).
fn launch_in(world: &TestWorld, image: &str, key: &str, group: &str) -> (String, String) {
    let id = world.ec2(|c| async move {
        c.run_instances()
            .image_id(image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .key_name(key)
            .security_group_ids(group)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances")
            .instances()[0]
            .instance_id()
            .expect("an instance ID")
            .to_string()
    });
    let ip = public_ip(world, &id).expect("a running instance has an address");
    (id, ip)
}

/// The nftables tables of the machine (`nft list tables`).
fn tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cloud_security_groups_are_enforced_on_instance_addresses() {
    let Some(world) = TestWorld::start_real_instances() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let key = world.create_key_pair(dir.path(), "sg").expect("key pair");
    let me = format!("{}/32", world.public_ip());
    let ubuntu = find_image(&world, CANONICAL, UBUNTU_JAMMY);
    let ssh_group = group(&world, "ssh-from-me", &[(22, &me)]);
    let web_group = group(&world, "web-only", &[(80, "0.0.0.0/0")]);
    let (id1, ip1) = launch_in(&world, &ubuntu, "sg", &ssh_group);
    let (id2, ip2) = launch_in(&world, &ubuntu, "sg", &web_group);
    let net = ip1
        .rsplit_once('.')
        .expect("a dotted address")
        .0
        .to_string();
    let table = format!("imgbuild_lc_{}", net.replace('.', "_"));
    assert!(tables().contains(&table), "{}\n{}", tables(), world.logs());
    // The last launch's rules are in place once RunInstances answered (nothing else changed
    // since: no later event may be what put them there).
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .expect("nft runs");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!("ip daddr {ip2} tcp dport 80 accept")),
        "{rules}"
    );

    // SSH from this machine's address is open on the first; the second opens only port 80.
    let out = ssh_ok(
        &ip1,
        "ubuntu",
        &key,
        "cloud-init status --wait >/dev/null; hostname",
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(out.trim(), format!("ip-{}", ip1.replace('.', "-")));
    assert!(!tcp_open(&ip2, 22), "port 22 of a group that opens only 80");
    // A rule for the VPC's CIDR lets this machine in too (it stands where a builder inside the
    // VPC would: `ssh_interface: private_ip`, `ssh_host`); a rule for another network does not.
    ingress(&world, &web_group, 22, "10.99.0.0/16", true);
    assert!(!tcp_open(&ip2, 22), "22 from another network");
    ingress(&world, &web_group, 22, "172.31.0.0/16", true);
    assert!(tcp_open(&ip2, 22), "22 from the default VPC's CIDR");

    // The instance reaches its own address on any port; this machine does not, until a rule
    // opens the port (127.0.0.1/32: this machine); revoking SSH closes it for new connections.
    let serve = format!(
        "nohup python3 -m http.server 8080 --bind {ip1} </dev/null >/dev/null 2>&1 & \
         for i in $(seq 50); do curl -fsS -o /dev/null http://{ip1}:8080/ && echo self-ok && break; sleep 0.1; done"
    );
    let out = ssh_ok(&ip1, "ubuntu", &key, &serve).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.trim(), "self-ok");
    assert!(!tcp_open(&ip1, 8080), "8080 is not open to this machine");
    ingress(&world, &ssh_group, 8080, "127.0.0.1/32", true);
    assert!(tcp_open(&ip1, 8080), "8080 open once authorized");
    ingress(&world, &ssh_group, 22, &me, false);
    assert!(!tcp_open(&ip1, 22), "22 closed once revoked");

    // The build's temporary group: SSH from this machine's address, for the build and its boot test.
    let e = cloud_env(&world);
    let before = state(&world);
    let chain = json!([{"type": "boot-test", "timeout": "2m", "inline": ["echo boot-test-in"]}]);
    let s = Scratch::new().with("t.json", &small_template(&world, json!({}), chain));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\n{}", world.logs());
    assert!(out.contains("boot-test-in"), "{out}");
    let mut ids = new_instances(&world, &before);
    assert_eq!(ids.len(), 2, "the build's instance and the boot test's");

    // kill -9 of the EC2 server, then stop: the table goes with the cloud.
    let server = world
        .pids()
        .into_iter()
        .find(|(name, _)| name == "moto")
        .expect("the EC2 server")
        .1;
    let killed = Command::new("kill")
        .args(["-KILL", &server.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -9 {server}");
    assert!(tables().contains(&table), "the table outlives the server");
    let state_dir = world.state_dir().to_path_buf();
    world.stop().expect("the cloud stops");
    assert!(!tables().contains(&table), "{}", tables());
    ids.extend([id1, id2]);
    assert_eq!(leftovers(&state_dir, &ids), Vec::<String>::new());
}
