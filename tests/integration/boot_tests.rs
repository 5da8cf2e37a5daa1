//! `wait_for_boot`: against a world of each test's own with a stand-in `cloud-init`
//! (`support/boot.rs`), whose `status --wait` blocks until the test releases it. The build waits
//! for it after SSH connects and before the first provisioner; `false` skips it; the wait ends
//! at `ssh_timeout` (and says so) and at Ctrl-C, leaving nothing behind.

use serde_json::json;

use crate::support::boot::{line_of, ssh_world_builder, CloudInit};
use crate::support::build::{ami_from_stdout, env, template};
use crate::support::building::Building;
use crate::support::cli::Scratch;
use crate::support::state::{assert_nothing_left, state};

fn provisioners() -> serde_json::Value {
    json!([{"type": "shell", "inline": ["echo provisioner-ran"]}])
}

#[test]
fn wait_for_boot_waits_for_cloud_init_before_the_first_provisioner_and_false_skips_it() {
    let world = world_or_skip!();
    let standin = CloudInit::install(&world);
    let e = env(&world);

    // On by default: the build waits until first boot ends, then provisions.
    let s = Scratch::new().with(
        "t.json",
        &template(ssh_world_builder(&world, json!({})), provisioners()),
    );
    let mut b = Building::start(&s, &e, None);
    b.wait_for("stand-in cloud-init: first boot is running");
    standin.release();
    let (code, out, err) = b.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let connected = line_of(&out, "Connected to SSH!", 0);
    let waiting = line_of(
        &out,
        "Waiting for cloud-init to finish first boot (cloud-init status --wait)...",
        connected,
    );
    let done = line_of(&out, "status: done", waiting);
    let finished = line_of(&out, "First boot finished", done);
    line_of(&out, "provisioner-ran", finished);
    ami_from_stdout(&out, "us-east-1");

    // `wait_for_boot: false`: cloud-init would block, and is not asked.
    standin.reset();
    let b = ssh_world_builder(&world, json!({"wait_for_boot": false}));
    let s = Scratch::new().with("t.json", &template(b, provisioners()));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.contains("cloud-init"), "{out}");
    line_of(
        &out,
        "provisioner-ran",
        line_of(&out, "Connected to SSH!", 0),
    );
}

#[test]
fn the_first_boot_wait_ends_at_ssh_timeout_and_at_ctrl_c_leaving_nothing() {
    let world = world_or_skip!();
    let standin = CloudInit::install(&world);
    let e = env(&world);
    let before = state(&world);

    // ssh_timeout also bounds the SSH login before the wait: 3 s was too short for a login on a
    // loaded machine (sshd asks the emulator for the keys), which then failed as "timed out
    // waiting for SSH" instead of at the first-boot wait.
    let b = ssh_world_builder(&world, json!({"ssh_timeout": "10s"}));
    let s = Scratch::new().with("t.json", &template(b, provisioners()));
    let (code, out, err) = Building::start(&s, &e, None).finish();
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("first boot did not finish within ssh_timeout (10s): still waiting for cloud-init status --wait; raise ssh_timeout, or set \"wait_for_boot\": false"),
        "{all}"
    );
    assert!(!all.contains("provisioner-ran"), "{all}");
    standin.kill_waiting();
    assert_nothing_left(&before, &state(&world), &[], "after the ssh_timeout");

    let s = Scratch::new().with(
        "t.json",
        &template(ssh_world_builder(&world, json!({})), provisioners()),
    );
    let mut b = Building::start(&s, &e, None);
    b.wait_for("stand-in cloud-init: first boot is running");
    let (code, out, err) = b.interrupt();
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.contains("provisioner-ran"), "{out}");
    standin.kill_waiting();
    assert_nothing_left(&before, &state(&world), &[], "after Ctrl-C during the wait");
}
