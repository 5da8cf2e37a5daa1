//! The `null` builder through the CLI: `imgbuild build` of a template whose builder is
//! `{"type": "null", "ssh_host": ..., "ssh_private_key_file": ...}` runs the provisioners against
//! the test world's real sshd (which accepts the key because the test imported it into the
//! emulator), and nothing else: no EC2 call at all. Assertions are on the sshd side (files,
//! modes, environment values) and on the output (Packer's null artifact).
//!
//! Every test works in a subdirectory of the shared world's sandbox of its own, including the
//! shell provisioner's `remote_folder`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::building::interrupt_at;
use crate::support::cli::{Run, Scratch};
use crate::support::null::{q, NullFx};
use crate::support::world::ssh_keygen;

fn assert_ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

#[test]
fn null_build_runs_shell_and_file_provisioners_on_an_existing_machine() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-run");
    let out = fx.r("out");
    let scripts = fx.r("scripts");
    fx.sh(&format!("mkdir -p {} {}", q(&out), q(&scripts)));
    // A tree with a mode, a nested directory and a name with a space.
    fx.write_local("tree/a.txt", "alpha\n", 0o644);
    fx.write_local("tree/bin/run me.sh", "#!/bin/sh\necho run\n", 0o750);
    fx.write_local("single.conf", "key = value\n", 0o600);
    let script = fx.write_local(
        "write.sh",
        "#!/bin/sh\nset -e\nprintf '%s' \"$GREETING\" > \"$OUT/greeting\"\nprintf '%s|%s' \"$PACKER_BUILD_NAME\" \"$PACKER_BUILDER_TYPE\" > \"$OUT/build\"\necho script says hi\n",
        0o644,
    );
    let t = json!({
        "variables": {"greeting": "it's a \"null\" build $HOME"},
        "builders": [fx.builder(json!({"name": "rehearsal"}))],
        "provisioners": [
            {"type": "shell", "remote_folder": scripts,
             "inline": [format!("mkdir -p {}", q(&fx.r("dest")))]},
            {"type": "file", "source": fx.local("tree").display().to_string(), "destination": fx.r("dest")},
            {"type": "file", "source": fx.local("single.conf").display().to_string(), "destination": fx.r("dest/single.conf")},
            {"type": "shell", "remote_folder": scripts, "script": script,
             "environment_vars": ["GREETING={{user `greeting`}}", format!("OUT={out}")]},
            {"type": "shell", "remote_folder": scripts,
             "inline": [format!("printf '%s' '{{{{build `ID`}}}} {{{{build `User`}}}}' > {}", q(&fx.r("out/build_data")))]}
        ]
    });
    let r = fx.build(&t, &[]);
    assert_ok(&r);
    assert!(r.stdout.contains("Connected to SSH! ("), "{}", r.stdout);
    for line in [
        "==> rehearsal: Waiting for SSH to become available...",
        "    rehearsal: script says hi",
        "Build 'rehearsal' finished after ",
        "==> Builds finished. The artifacts of successful builds are:\n--> rehearsal: Did not export anything. This is the null builder\n",
    ] {
        assert!(r.stdout.contains(line), "{line:?} in:\n{}", r.stdout);
    }
    // No cloud: nothing about AWS, no journal, no cleanup.
    assert!(!r.stdout.contains("Cleaning up"), "{}", r.stdout);
    assert!(!r.stdout.contains("AMI"), "{}", r.stdout);

    // The server side.
    let listing = fx.sh(&format!(
        "cd {} && find . -print0 | sort -z | xargs -0 stat -c '%n %a %F'",
        q(&fx.r("dest"))
    ));
    assert_eq!(
        listing,
        ". 755 directory\n./single.conf 600 regular file\n./tree 755 directory\n./tree/a.txt 644 regular file\n./tree/bin 755 directory\n./tree/bin/run me.sh 750 regular file\n",
    );
    assert_eq!(
        fx.sh(&format!("cat {}", q(&fx.r("dest/tree/bin/run me.sh")))),
        "#!/bin/sh\necho run\n"
    );
    assert_eq!(
        fx.sh(&format!("cat {}", q(&fx.r("out/greeting")))),
        "it's a \"null\" build $HOME"
    );
    assert_eq!(
        fx.sh(&format!("cat {}", q(&fx.r("out/build")))),
        "rehearsal|null"
    );
    assert_eq!(
        fx.sh(&format!("cat {}", q(&fx.r("out/build_data")))),
        format!("Null {}", world.ssh_user())
    );
    // The scripts were cleaned up from remote_folder.
    assert_eq!(fx.sh(&format!("ls -A {}", q(&scripts))), "");
}

#[test]
fn null_build_machine_readable_artifact_is_packers_null_artifact() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-mr");
    let t = json!({
        "builders": [fx.builder(json!({}))],
        "provisioners": [{"type": "shell", "remote_folder": fx.remote, "inline": ["true"]}]
    });
    let r = fx.build(&t, &["-machine-readable"]);
    assert_ok(&r);
    let records: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_once(',').map(|(_, rest)| rest))
        .filter(|l| l.starts_with("null,artifact"))
        .collect();
    assert_eq!(
        records,
        vec![
            "null,artifact-count,1",
            "null,artifact,0,builder-id,fnoeding.null",
            "null,artifact,0,id,Null",
            "null,artifact,0,string,Did not export anything. This is the null builder",
            "null,artifact,0,files-count,0",
            "null,artifact,0,end",
        ]
    );
}

#[test]
fn null_build_failing_provisioner_exits_1_with_the_command_and_code() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-fail");
    let marker = fx.r("never");
    let t = json!({
        "builders": [fx.builder(json!({}))],
        "provisioners": [
            {"type": "shell", "remote_folder": fx.remote, "inline": ["echo about to fail >&2", "exit 7"]},
            {"type": "shell", "remote_folder": fx.remote, "inline": [format!("touch {}", q(&marker))]}
        ]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "--> null: provisioner 1 (shell) failed: script inline (2 commands) exited with status 7 (valid exit codes: 0)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("    about to fail"), "{}", r.stderr);
    assert!(
        r.stderr.contains("error: 1 of 1 build(s) failed (null)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fx.sh(&format!("test -e {} && echo yes || echo no", q(&marker))),
        "no\n"
    );
}

#[test]
fn null_build_with_a_key_the_machine_does_not_accept_says_why() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-badkey");
    // A key that was never imported: sshd refuses it.
    let (other, _) = ssh_keygen(fx.scratch.dir.path(), "not-imported");
    let t = json!({
        "builders": [fx.builder(json!({
            "ssh_private_key_file": other.display().to_string(),
            // Long: the build ends after its 2 refused logins, and a login on a loaded machine
            // (sshd asks the emulator for the keys) can take seconds, so 3 s could end in a
            // timeout before the second refusal.
            "ssh_timeout": "120s", "ssh_handshake_attempts": 2
        }))],
        "provisioners": [{"type": "shell", "remote_folder": fx.remote, "inline": ["true"]}]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    // A refused key is tried `ssh_handshake_attempts` times, not until `ssh_timeout`.
    assert!(
        all.contains("failed 2 times (ssh_handshake_attempts)"),
        "{all}"
    );
    assert!(
        all.contains(&format!("rejected for user {}", world.ssh_user())),
        "{all}"
    );
    assert!(all.contains("ed25519"), "{all}");
}

#[test]
fn null_build_communicator_none_runs_shell_local_and_refuses_shell() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-none");
    let marker = fx.local("local-ran");
    let t = json!({
        "builders": [{"type": "null", "communicator": "none"}],
        "provisioners": [
            {"type": "shell-local", "inline": [format!("printf '%s' \"$PACKER_BUILDER_TYPE\" > {}", q(&marker.display().to_string()))]}
        ]
    });
    let r = fx.build(&t, &[]);
    assert_ok(&r);
    assert_eq!(std::fs::read_to_string(&marker).expect("marker"), "null");
    assert!(
        r.stdout
            .contains("--> null: Did not export anything. This is the null builder"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Waiting for SSH"), "{}", r.stdout);

    let t = json!({
        "builders": [{"type": "null", "communicator": "none"}],
        "provisioners": [{"type": "shell", "inline": ["true"]}]
    });
    let r = fx.build(&t, &[]);
    // Refused as an invalid template (exit 2) before the build starts, as `validate` refuses it.
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "the shell provisioner needs SSH, but this build has \"communicator\": \"none\""
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn null_build_sigint_while_a_script_runs_stops_at_once_and_exits_1() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-int");
    let t = json!({
        "builders": [fx.builder(json!({}))],
        "provisioners": [{"type": "shell", "remote_folder": fx.remote,
            "inline": ["echo sleeping now", "sleep 1200"]}]
    });
    std::fs::write(fx.local("t.json"), t.to_string()).expect("write");
    let (code, out, err) = interrupt_at(
        fx.scratch.dir.path(),
        &world.env(),
        &["t.json".to_string()],
        "null: sleeping now",
        Duration::from_millis(200),
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    // The script would take twenty minutes, longer than the build may take in all (the bound of
    // `interrupt_at`): that the build exited at all shows the interrupt stopped the script.
    assert!(
        err.contains("==> Interrupt received: cancelling the builds"),
        "{err}"
    );
    assert!(err.contains("--> null: cancelled (interrupted)"), "{err}");
    assert!(!out.contains("Did not export anything"), "{out}");
}

#[test]
fn null_validate_reports_located_errors_and_inspect_lists_the_builder() {
    let s = Scratch::new().with(
        "t.json",
        r#"{
  "builders": [
    {"type": "null", "ssh_username": "u"},
    {"type": "null", "name": "both", "ssh_host": "h", "ssh_username": "u",
     "ssh_password": "pw", "ssh_agent_auth": true}
  ]
}"#,
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let expected = [
        "error: builder `null` (null) is missing the required key `ssh_host`\n --> t.json:3:5 at builders[0]\n",
        "error: builder `null` (null) has no way to log in: one authentication method must be specified\n --> t.json:3:5 at builders[0]\n",
        "error: only one of ssh_agent_auth, ssh_password and ssh_private_key_file may be specified; `ssh_password` is set too\n --> t.json:5:46 at builders[1].ssh_agent_auth\n",
        "imgbuild: the template is not valid: 3 errors\n",
    ];
    for e in expected {
        assert!(r.stderr.contains(e), "{e:?} in:\n{}", r.stderr);
    }
    let r = s.run(&["inspect", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Builders:\n\n  both (null)\n  null\n"),
        "{}",
        r.stdout
    );
    let ok = Scratch::new().with(
        "t.json",
        r#"{"builders": [{"type": "null", "communicator": "none"}]}"#,
    );
    let r = ok.run(&["validate", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Template validated successfully.\n");
}

#[test]
fn null_build_post_processors_receive_packers_null_artifact() {
    // communicator none: no SSH, no world needed.
    let s = Scratch::new().with(
        "t.json",
        r#"{
  "builders": [{"type": "null", "name": "rehearsal", "communicator": "none"}],
  "post-processors": [
    {"type": "manifest", "output": "m.json"},
    {"type": "shell-local", "inline": ["printf '%s %s' \"$IMGBUILD_ARTIFACT_ID\" \"$PACKER_BUILDER_TYPE\" > pp.txt"]},
    {"type": "ami-outputs", "json_output": "amis.json"}
  ]
}"#,
    );
    let r = s.run(&["build", "-color=false", "-machine-readable", "t.json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("m.json")).expect("manifest"))
            .expect("json");
    let entry = &manifest["builds"][0];
    assert_eq!(entry["artifact_id"], "Null", "{manifest}");
    assert_eq!(entry["builder_type"], "null", "{manifest}");
    assert_eq!(entry["name"], "rehearsal", "{manifest}");
    assert!(entry["files"].is_null(), "{manifest}");
    assert_eq!(
        std::fs::read_to_string(s.path("pp.txt")).expect("shell-local ran"),
        "Null null"
    );
    assert!(
        r.stdout
            .contains("the null builder made no AMI: nothing to write"),
        "{}",
        r.stdout
    );
    assert!(!s.path("amis.json").exists());
    // Packer's list: the builder's artifact and one per chain, all the null artifact.
    assert!(
        r.stdout.contains(",rehearsal,artifact-count,4\n"),
        "{}",
        r.stdout
    );
    let ids = r
        .stdout
        .lines()
        .filter(|l| l.contains(",rehearsal,artifact,") && l.contains(",builder-id,"))
        .filter(|l| l.ends_with(",builder-id,fnoeding.null"))
        .count();
    assert_eq!(ids, 4, "{}", r.stdout);
}

#[test]
fn null_build_applies_ssh_ciphers() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "null-ciphers");
    let marker = fx.r("ran");
    // `ssh_timeout`: long where the login must work (a login on a loaded machine can take
    // seconds), short where it cannot (the build waits for it to pass).
    let template = |ciphers: Value, ssh_timeout: &str| {
        json!({
            "builders": [fx.builder(json!({"ssh_ciphers": ciphers, "ssh_timeout": ssh_timeout}))],
            "provisioners": [{"type": "shell", "remote_folder": fx.remote,
                              "inline": [format!("touch {}", q(&marker))]}]
        })
    };
    // A cipher both sides have: it works.
    let r = fx.build(&template(json!(["aes256-ctr"]), "120s"), &[]);
    assert_ok(&r);
    assert_eq!(
        fx.sh(&format!("test -e {} && echo yes", q(&marker))),
        "yes\n"
    );
    // Names the SSH library does not know at all: refused at once, with what it knows.
    let r = fx.build(&template(json!(["no-such-cipher"]), "120s"), &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "ssh_ciphers: imgbuild's SSH library supports none of no-such-cipher (it supports: "
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("aes128-gcm@openssh.com"), "{}", r.stderr);
    // Not retried: a retry would say "Still waiting for SSH ... (attempt N)" first.
    assert!(!r.stdout.contains("Still waiting for SSH"), "{}", r.stdout);
    // Only a cipher this OpenSSH no longer accepts: the list is what is offered, so no login.
    let r = fx.build(&template(json!(["3des-cbc"]), "5s"), &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}
