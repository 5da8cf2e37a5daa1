//! `imgbuild fix`: each deprecated option Packer 1.6.6's `packer fix` rewrites (for amazon-ebs,
//! shell, file, manifest) becomes its successor, the rest of the text keeps its bytes, and the
//! result validates; a template with nothing to fix comes back byte for byte.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::support::cli::{imgbuild_in, Scratch};

/// A template in the usual layout: an amazon-ebs builder whose members are `builder` (one per
/// line, after the required ones), a shell and a file provisioner, and `pps` as the
/// post-processors.
fn tpl(builder: &[&str], pps: &str) -> String {
    let mut members = vec![
        r#""type": "amazon-ebs""#,
        r#""region": "us-east-1""#,
        r#""source_ami": "ami-0123456789abcdef0""#,
        r#""instance_type": "t3.micro""#,
        r#""ssh_username": "admin""#,
    ];
    members.extend_from_slice(builder);
    format!(
        "{{\n  \"builders\": [\n    {{\n      {}\n    }}\n  ],\n  \"provisioners\": [\n    {{\"type\": \"shell\", \"inline\": [\"echo hi\"]}},\n    {{\"type\": \"file\", \"source\": \"t.json\", \"destination\": \"/tmp/t.json\"}}\n  ],\n  \"post-processors\": {pps}\n}}\n",
        members.join(",\n      ")
    )
}

/// Runs `imgbuild fix t.json` on `before` and checks that it prints exactly `after` (and names
/// `fixer` on stderr), that `after` validates, and that fixing `after` changes nothing.
fn check(fixer: &str, before: &str, after: &str) {
    let s = Scratch::new().with("t.json", before);
    let key = s.path("key.pem");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let r = s.run(&["fix", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, after, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("({fixer})")),
        "stderr names the fix: {}",
        r.stderr
    );
    let s = s.with("t.json", after);
    let v = s.run(&["validate", "t.json"]);
    assert_eq!(
        v.code, 0,
        "the fixed template validates:\n{after}\n{}",
        v.stderr
    );
    let again = s.run(&["fix", "t.json"]);
    assert_eq!((again.code, again.stdout.as_str()), (0, after));
    assert!(again.stderr.is_empty(), "{}", again.stderr);
}

const NO_PP: &str = "[]";

#[test]
fn fix_createtime() {
    check(
        "createtime",
        &tpl(&[r#""ami_name": "web {{.CreateTime}}""#], NO_PP),
        &tpl(&[r#""ami_name": "web {{timestamp}}""#], NO_PP),
    );
}

#[test]
fn fix_clean_image_name() {
    check(
        "clean-image-name",
        &tpl(
            &[
                r#""ami_name": "web {{timestamp | clean_ami_name}}""#,
                r#""tags": {"Name": "{{ clean_image_name `a b` }}"}"#,
            ],
            NO_PP,
        ),
        &tpl(
            &[
                r#""ami_name": "web {{timestamp | clean_resource_name}}""#,
                r#""tags": {"Name": "{{ clean_resource_name `a b` }}"}"#,
            ],
            NO_PP,
        ),
    );
}

#[test]
fn fix_sshkeypath() {
    check(
        "sshkeypath",
        &tpl(
            &[r#""ssh_key_path": "key.pem""#, r#""ami_name": "web""#],
            NO_PP,
        ),
        &tpl(
            &[
                r#""ssh_private_key_file": "key.pem""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
    );
    // Both set: the old one goes, as in Packer.
    check(
        "sshkeypath",
        &tpl(
            &[
                r#""ssh_private_key_file": "key.pem""#,
                r#""ami_name": "web""#,
                r#""ssh_key_path": "other.pem""#,
            ],
            NO_PP,
        ),
        &tpl(
            &[
                r#""ssh_private_key_file": "key.pem""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
    );
}

#[test]
fn fix_sshdisableagent() {
    check(
        "sshdisableagent",
        &tpl(
            &[r#""ami_name": "web""#, r#""ssh_disable_agent": true"#],
            NO_PP,
        ),
        &tpl(
            &[
                r#""ami_name": "web""#,
                r#""ssh_disable_agent_forwarding": true"#,
            ],
            NO_PP,
        ),
    );
}

#[test]
fn fix_ssh_wait_timeout() {
    check(
        "ssh-wait-timeout",
        &tpl(
            &[r#""ssh_wait_timeout": "20m""#, r#""ami_name": "web""#],
            NO_PP,
        ),
        &tpl(&[r#""ssh_timeout": "20m""#, r#""ami_name": "web""#], NO_PP),
    );
    // Both set: ssh_wait_timeout is the one a build uses, so its value stays.
    check(
        "ssh-wait-timeout",
        &tpl(
            &[
                r#""ssh_timeout": "5m""#,
                r#""ssh_wait_timeout": "20m""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
        &tpl(&[r#""ssh_timeout": "20m""#, r#""ami_name": "web""#], NO_PP),
    );
}

#[test]
fn fix_amazon_shutdown_behavior() {
    check(
        "amazon-shutdown_behavior",
        &tpl(
            &[
                r#""shutdown_behaviour": "terminate""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
        &tpl(
            &[
                r#""shutdown_behavior": "terminate""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
    );
}

#[test]
fn fix_amazon_enhanced_networking() {
    check(
        "amazon-enhanced-networking",
        &tpl(
            &[r#""ami_name": "web""#, r#""enhanced_networking": true"#],
            NO_PP,
        ),
        &tpl(&[r#""ami_name": "web""#, r#""ena_support": true"#], NO_PP),
    );
}

#[test]
fn fix_amazon_private_ip() {
    check(
        "amazon-private-ip",
        &tpl(
            &[r#""ssh_private_ip": true"#, r#""ami_name": "web""#],
            NO_PP,
        ),
        &tpl(
            &[r#""ssh_interface": "private_ip""#, r#""ami_name": "web""#],
            NO_PP,
        ),
    );
    check(
        "amazon-private-ip",
        &tpl(
            &[r#""ssh_private_ip": "false""#, r#""ami_name": "web""#],
            NO_PP,
        ),
        &tpl(
            &[r#""ssh_interface": "public_ip""#, r#""ami_name": "web""#],
            NO_PP,
        ),
    );
}

#[test]
fn fix_amazon_temp_sec_cidrs() {
    check(
        "amazon-temp-sec-cidrs",
        &tpl(
            &[
                r#""temporary_security_group_source_cidr": "10.0.0.0/8""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
        &tpl(
            &[
                r#""temporary_security_group_source_cidrs": ["10.0.0.0/8"]"#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
    );
}

#[test]
fn fix_spot_price_auto_product() {
    // Removed from the middle, and as the last member (the comma before it goes too).
    check(
        "spot-price-auto-product",
        &tpl(
            &[
                r#""spot_price_auto_product": "Linux/UNIX""#,
                r#""ami_name": "web""#,
            ],
            NO_PP,
        ),
        &tpl(&[r#""ami_name": "web""#], NO_PP),
    );
    check(
        "spot-price-auto-product",
        &tpl(
            &[
                r#""ami_name": "web""#,
                r#""spot_price_auto_product": "Linux/UNIX""#,
            ],
            NO_PP,
        ),
        &tpl(&[r#""ami_name": "web""#], NO_PP),
    );
}

#[test]
fn fix_ssh_host_port() {
    check(
        "ssh-host-port",
        &tpl(
            &[
                r#""ami_name": "web""#,
                r#""ssh_host_port_min": 2222"#,
                r#""ssh_host_port_max": 4444"#,
            ],
            NO_PP,
        ),
        &tpl(&[r#""ami_name": "web""#], NO_PP),
    );
}

#[test]
fn fix_manifest_filename() {
    // In each of Packer's forms: an object, and an object in a chain.
    check(
        "manifest-filename",
        &tpl(
            &[r#""ami_name": "web""#],
            r#"[{"type": "manifest", "filename": "m.json", "strip_path": true}, [{"type": "manifest", "filename": "n.json"}]]"#,
        ),
        &tpl(
            &[r#""ami_name": "web""#],
            r#"[{"type": "manifest", "output": "m.json", "strip_path": true}, [{"type": "manifest", "output": "n.json"}]]"#,
        ),
    );
}

#[test]
fn every_fix_at_once_on_compact_json_keeps_everything_else() {
    let before = r#"{"builders":[{"type":"amazon-ebs","region":"us-east-1","source_ami":"ami-0123456789abcdef0","instance_type":"t3.micro","ssh_username":"admin","ami_name":"w {{.CreateTime}}","enhanced_networking":true,"shutdown_behaviour":"stop","spot_price_auto_product":"x","ssh_private_ip":false,"temporary_security_group_source_cidr":"10.1.0.0/16","ssh_wait_timeout":"9m","ssh_disable_agent":true}],"post-processors":[{"type":"manifest","filename":"m.json"}]}"#;
    let after = r#"{"builders":[{"type":"amazon-ebs","region":"us-east-1","source_ami":"ami-0123456789abcdef0","instance_type":"t3.micro","ssh_username":"admin","ami_name":"w {{timestamp}}","ena_support":true,"shutdown_behavior":"stop","ssh_interface":"public_ip","temporary_security_group_source_cidrs":["10.1.0.0/16"],"ssh_timeout":"9m","ssh_disable_agent_forwarding":true}],"post-processors":[{"type":"manifest","output":"m.json"}]}"#;
    let s = Scratch::new().with("t.json", before);
    let r = s.run(&["fix", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, after);
    assert_eq!(r.stderr.lines().count(), 9, "{}", r.stderr);
    let v = Scratch::new()
        .with("t.json", after)
        .run(&["validate", "t.json"]);
    assert_eq!(v.code, 0, "{}", v.stderr);
}

#[test]
fn nothing_to_fix_is_the_same_bytes_and_w_leaves_the_file_alone() {
    // Odd spacing, escapes, a tab, no newline at the end: all kept.
    let text = "{ \"builders\" : [ {\"type\": \"amazon-ebs\",\t\"region\":\"us-east-1\", \"source_ami\": \"ami-0123456789abcdef0\",\n \"instance_type\": \"t3.micro\", \"ssh_username\": \"admin\", \"ami_name\": \"w\\u0020{{timestamp}}\"} ] }";
    let s = Scratch::new().with("t.json", text);
    let r = s.run(&["fix", "t.json"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, text, "")
    );
    let before = std::fs::metadata(s.path("t.json")).expect("stat");
    let w = s.run(&["fix", "-w", "t.json"]);
    assert_eq!((w.code, w.stdout.as_str()), (0, ""));
    let after = std::fs::metadata(s.path("t.json")).expect("stat");
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "-w with nothing to fix does not write"
    );
    let stdin = imgbuild_in(s.dir.path(), &["fix", "-"], Some(text));
    assert_eq!((stdin.code, stdin.stdout.as_str()), (0, text));
}

#[test]
fn w_replaces_the_file_atomically_keeping_its_mode() {
    let before = tpl(
        &[r#""ami_name": "web""#, r#""enhanced_networking": true"#],
        NO_PP,
    );
    let after = tpl(&[r#""ami_name": "web""#, r#""ena_support": true"#], NO_PP);
    let s = Scratch::new().with("t.json", &before);
    let path = s.path("t.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let r = s.run(&["-w", "fix", "t.json"]);
    assert_eq!(r.code, 2, "-w belongs after fix: {}", r.stderr);
    let r = s.run(&["fix", "-w", "t.json"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), after);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn fix_refuses_what_it_cannot_read_with_the_place() {
    let s = Scratch::new().with(
        "t.json",
        "{\n  \"builders\": [\n    {\"type\": \"amazon-ebs\",}\n  ]\n}\n",
    );
    let r = s.run(&["fix", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("t.json:3:"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = imgbuild_in(s.dir.path(), &["fix", "-w", "-"], Some("{}"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("standard input"), "{}", r.stderr);
    let r = s.run(&["fix", "missing.json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing.json"), "{}", r.stderr);
}

#[test]
fn readme_lists_every_fix() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for (fixer, _) in imgbuild::template::fix::FIXES {
        assert!(
            readme.contains(&format!("| `{fixer}` |")),
            "README's fix table lacks {fixer}"
        );
    }
}
