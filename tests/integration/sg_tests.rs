//! The temporary security group's default on a default VPC: the project's own
//! `images/web_worker.json`, with nothing but its source image filter pointed at an emulator
//! image, SSH through the world's sshd (`ssh_host`/`ssh_port`; never the emulator's made-up
//! public address), no CIDRs and `temporary_security_group_source_public_ip: true`, builds; and
//! the group allowed exactly the address the world's local "what is my IP" server answered
//! (`IMGBUILD_PUBLIC_IP_URL`: no test asks the internet). And when the address cannot be found,
//! the build fails before anything is created, naming the URL, the answer and the ways out.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::build::{env, CANONICAL};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::state::security_groups_of;
use crate::support::world::{unique_name, TestWorld};

/// The name filter of the world's base image.
const XENIAL: &str = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*";

/// `images/web_worker.json` for the world: the builder as it is, but for its name (unique),
/// source image filter, region, endpoint and SSH target; one harmless provisioner instead of
/// the real scripts (they install packages); `extra` merged into the builder.
fn web_worker_copy(world: &TestWorld, name: &str, extra: Value) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/web_worker.json");
    let mut t: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("images/web_worker.json"))
            .expect("JSON");
    let b = t["builders"][0].as_object_mut().expect("a builder");
    b.insert("name".into(), json!(name));
    b.insert(
        "ami_name".into(),
        json!(format!("{name}-{{{{timestamp}}}}")),
    );
    b.insert(
        "source_ami_filter".into(),
        json!({"filters": {"name": XENIAL, "virtualization-type": "hvm", "root-device-type": "ebs"},
               "owners": [CANONICAL], "most_recent": true}),
    );
    b.insert("custom_endpoint_ec2".into(), json!(world.ec2_endpoint()));
    b.insert("ssh_host".into(), json!(world.ssh_host()));
    b.insert("ssh_port".into(), json!(world.ssh_port()));
    b.insert("ssh_username".into(), json!(world.ssh_user()));
    assert!(!b.contains_key("temporary_security_group_source_cidrs"));
    if let Value::Object(x) = extra {
        b.extend(x);
    }
    t["provisioners"] = json!([{"type": "shell", "inline": ["echo provisioned as $(id -un)"]}]);
    // Its boot test checks the real Django and Celery, which the sandbox world does not have.
    if let Some(chain) = t["post-processors"][0].as_array_mut() {
        chain.retain(|p| p["type"] != "boot-test");
    }
    t
}

/// The `-var` arguments the web worker template requires.
fn var_args(world: &TestWorld) -> Vec<String> {
    [
        ("region", world.region()),
        ("django_db_password", "pw"),
        ("django_db_host", "db.internal.example"),
        ("django_secret", "s"),
        ("email_host", "smtp.example.com"),
        ("web_domain", "mailape.example.com"),
    ]
    .iter()
    .flat_map(|(k, v)| ["-var".to_string(), format!("{k}={v}")])
    .collect()
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn web_worker_builds_with_a_group_that_allows_only_this_machines_public_address() {
    let world = world_or_skip!(shared);
    let e = env(world);
    let s = Scratch::new();
    let name = unique_name("sg-web-worker");
    let t = web_worker_copy(
        world,
        &name,
        json!({"temporary_security_group_source_public_ip": true}),
    );
    std::fs::write(s.path("t.json"), t.to_string()).expect("template");
    let mut args = var_args(world);
    args.push("t.json".into());
    // Held after the group exists, so that its rule can be read before teardown deletes it:
    // until the test has read it (the release file), not for a fixed time (the hour is only a
    // bound).
    let release = s.path("release");
    let mut vars = e.vars.clone();
    vars.push((
        "IMGBUILD_TEST_PAUSE_RELEASE".into(),
        release.display().to_string(),
    ));
    let mut b = Building::spawn(s.dir.path(), &args, &vars, Some("security_group:3600"));
    b.wait_for("test hook: pausing");
    let ip = world.public_ip();
    let g = security_groups_of(world, &name);
    assert_eq!(g.len(), 1, "{g:?}");
    let perms = g[0].ip_permissions();
    assert_eq!(perms.len(), 1, "exactly one ingress rule: {perms:?}");
    let p = &perms[0];
    assert_eq!(p.ip_protocol(), Some("tcp"), "{p:?}");
    let port = i32::from(world.ssh_port());
    assert_eq!((p.from_port(), p.to_port()), (Some(port), Some(port)));
    let got: Vec<&str> = p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    assert_eq!(got, vec![format!("{ip}/32")]);
    assert!(p.ipv6_ranges().is_empty(), "{p:?}");

    std::fs::write(&release, "").expect("release the hold");
    let (code, out, err) = b.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(&format!(
            "allow only this machine's public address, {ip}/32 (answered by http://127.0.0.1:"
        )),
        "{out}"
    );
    assert!(out.contains("provisioned as"), "{out}");
    assert!(
        security_groups_of(world, &name).is_empty(),
        "the group is deleted"
    );
}

#[test]
fn an_address_that_cannot_be_found_fails_the_build_before_anything_is_created() {
    let world = world_or_skip!(shared);
    let s = Scratch::new();
    // A local server whose answer is not an address, and a port nothing listens on.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let garbage_url = format!("http://{}/ip", garbage.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = garbage.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n<html>hi</html>\r\n");
    });
    let closed_url = format!(
        "http://127.0.0.1:{}/ip",
        crate::support::tools::closed_port()
    );
    for (url, problem) in [
        (
            &garbage_url,
            "the answer \"<html>hi</html>\" is not an IP address",
        ),
        (&closed_url, "no answer: Connection refused"),
    ] {
        let mut e = env(world);
        e.vars.retain(|(k, _)| k != "IMGBUILD_PUBLIC_IP_URL");
        e.vars
            .push(("IMGBUILD_PUBLIC_IP_URL".into(), url.to_string()));
        let name = unique_name("sg-no-address");
        // The default (no CIDRs, SSH to the public address) asks for the address too.
        let mut t = web_worker_copy(world, &name, json!({}));
        t["builders"][0]
            .as_object_mut()
            .expect("builder")
            .remove("ssh_host");
        std::fs::write(s.path("t.json"), t.to_string()).expect("template");
        let mut args = var_args(world);
        args.push("t.json".into());
        let (code, out, err) = Building::spawn(s.dir.path(), &args, &e.vars, None).finish();
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        let all = format!("{out}{err}");
        for want in [
            format!("looking up this machine's public address at {url} (for the temporary security group in us-east-1): {problem}"),
            "nothing was created".to_string(),
            "temporary_security_group_source_cidrs".to_string(),
            "ssh_bastion_host".to_string(),
            "security_group_id(s)".to_string(),
        ] {
            assert!(all.contains(&want), "{want:?} in:\n{all}");
        }
        assert!(!all.contains("key pair locally"), "{all}");
        assert!(
            !all.contains("Creating a temporary security group"),
            "{all}"
        );
        assert!(security_groups_of(world, &name).is_empty());
    }
    server.join().expect("server");
}
