//! The `ansible` provisioner for real: ansible-core's `ansible-playbook` on this machine against
//! the test world's sshd (the null builder with a key file, and amazon-ebs with the temporary key
//! pair, which reaches Ansible as a memory file). Assertions on the instance side (files, modes,
//! facts) and on the output (the build prefix, `<sensitive>`, the failing play and task).

use std::path::Path;

use serde_json::{json, Value};

use crate::support::build::{builder, env as build_env, journal_files};
use crate::support::cli::{imgbuild_env, Run};
use crate::support::null::{q, NullFx};
use crate::support::tools::ansible_path;

const SECRET: &str = "hunter2-s3cr3t-value";

/// A playbook with a role (a template of a secret variable and a fact, a handler) and a role
/// installed by ansible-galaxy from a local tarball; returns the galaxy requirements file.
fn write_playbook(fx: &NullFx) -> String {
    fx.write_local(
        "pb/site.yml",
        "- name: web servers\n  hosts: all\n  roles:\n    - web\n    - galaxyrole\n",
        0o644,
    );
    fx.write_local(
        "pb/roles/web/tasks/main.yml",
        "- name: render the config\n  ansible.builtin.template:\n    src: app.conf.j2\n    dest: \"{{ out }}/app.conf\"\n    mode: \"0640\"\n  notify: note restart\n- name: show the secret\n  ansible.builtin.debug:\n    msg: \"the secret is {{ secret }}\"\n",
        0o644,
    );
    fx.write_local(
        "pb/roles/web/templates/app.conf.j2",
        "secret={{ secret }}\nbuild={{ packer_build_name }} type={{ packer_builder_type }}\nuser={{ ansible_facts['user_id'] }}\nhttp={{ packer_http_addr | default('undefined') }}\n",
        0o644,
    );
    fx.write_local(
        "pb/roles/web/handlers/main.yml",
        "- name: note restart\n  ansible.builtin.copy:\n    content: \"restarted\\n\"\n    dest: \"{{ out }}/handler-ran\"\n    mode: \"0600\"\n",
        0o644,
    );
    fx.write_local(
        "galaxy-src/galaxyrole/tasks/main.yml",
        "- name: make dir\n  ansible.builtin.file:\n    path: \"{{ out }}/galaxy-dir\"\n    state: directory\n    mode: \"0750\"\n",
        0o644,
    );
    fx.write_local(
        "galaxy-src/galaxyrole/meta/main.yml",
        "galaxy_info:\n  author: t\n  description: t\n  license: MIT\n  min_ansible_version: \"2.9\"\n  platforms: []\ndependencies: []\n",
        0o644,
    );
    let tarball = fx.local("galaxy/galaxyrole.tar.gz");
    std::fs::create_dir_all(tarball.parent().expect("parent")).expect("mkdir");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(fx.local("galaxy-src"))
        .arg("galaxyrole")
        .status()
        .expect("tar");
    assert!(st.success());
    fx.write_local(
        "requirements.yml",
        &format!("- src: file://{}\n  name: galaxyrole\n", tarball.display()),
        0o644,
    )
}

fn run_with_path(dir: &Path, world_env: Vec<(String, String)>, path: &str, args: &[&str]) -> Run {
    let mut vars: Vec<(&str, &str)> = world_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("PATH", path));
    let mut all = vec!["build", "-color=false"];
    all.extend_from_slice(args);
    all.push("t.json");
    imgbuild_env(dir, &all, None, &vars)
}

fn ansible_template(fx: &NullFx, builder: Value, extra: Value) -> Value {
    let galaxy = write_playbook(fx);
    let mut p = json!({
        "type": "ansible",
        "playbook_file": fx.local("pb/site.yml").display().to_string(),
        "galaxy_file": galaxy,
        "roles_path": fx.local("galaxy_roles").display().to_string(),
        "inventory_directory": fx.local("inv").display().to_string(),
        "extra_arguments": ["--extra-vars", format!("secret={{{{user `secret`}}}} out={}", fx.r("out"))],
        "use_proxy": true
    });
    crate::support::null::merge(&mut p, extra);
    std::fs::create_dir_all(fx.local("inv")).expect("inventory dir");
    json!({
        "variables": {"secret": SECRET},
        "sensitive-variables": ["secret"],
        "builders": [builder],
        "provisioners": [p]
    })
}

fn assert_instance_side(fx: &NullFx, build: &str, kind: &str) {
    let listing = fx.sh(&format!(
        "cd {} && stat -c '%n %a %F' app.conf handler-ran galaxy-dir",
        q(&fx.r("out"))
    ));
    assert_eq!(
        listing,
        "app.conf 640 regular file\nhandler-ran 600 regular file\ngalaxy-dir 750 directory\n"
    );
    assert_eq!(
        fx.sh(&format!("cat {}", q(&fx.r("out/app.conf")))),
        format!(
            // No builder serves HTTP: Packer passes no packer_http_addr then.
            "secret={SECRET}\nbuild={build} type={kind}\nuser={}\nhttp=undefined\n",
            fx.world.ssh_user()
        )
    );
}

#[test]
fn ansible_runs_a_role_a_secret_template_a_handler_and_galaxy_against_the_instance() {
    let world = world_or_skip!(shared);
    let Some(path) = ansible_path() else { return };
    let fx = NullFx::new(world, "ansible-null");
    fx.sh(&format!("mkdir -p {}", q(&fx.r("out"))));
    let t = ansible_template(&fx, fx.builder(json!({"name": "box"})), json!({}));
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(fx.scratch.dir.path(), world.env(), &path, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_instance_side(&fx, "box", "null");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains(SECRET), "the secret leaked:\n{all}");
    assert!(
        r.stdout.contains("    box: ok: [default] => {\n")
            || r.stdout.contains("    box: ok: [default] => {"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\"msg\": \"the secret is <sensitive>\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("    box: RUNNING HANDLER [web : note restart]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("- galaxyrole was installed successfully"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout
            .matches("`use_proxy: true` means nothing here")
            .count(),
        1
    );
    // The generated inventory is gone, and no ssh master of this run lives on.
    assert_eq!(std::fs::read_dir(fx.local("inv")).expect("inv").count(), 0);
}

#[test]
fn ansible_failing_task_names_play_and_task_and_the_build_cleans_up() {
    let world = world_or_skip!(shared);
    let Some(path) = ansible_path() else { return };
    let fx = NullFx::new(world, "ansible-fail");
    fx.write_local(
        "fail.yml",
        "- name: doomed play\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: fine\n      ansible.builtin.command: \"true\"\n    - name: the breaking task\n      ansible.builtin.command: \"false\"\n",
        0o644,
    );
    std::fs::create_dir_all(fx.local("inv")).expect("inventory dir");
    let t = json!({
        "builders": [fx.builder(json!({"name": "box"}))],
        "provisioners": [{"type": "ansible", "playbook_file": fx.local("fail.yml").display().to_string(),
                          "inventory_directory": fx.local("inv").display().to_string()}]
    });
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(fx.scratch.dir.path(), world.env(), &path, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("provisioner 1 (ansible) failed: ansible-playbook (play `doomed play`, task `the breaking task` failed) exited with status 2"),
        "{all}"
    );
    assert!(all.contains("fatal: [default]: FAILED!"), "{all}");
    assert_eq!(std::fs::read_dir(fx.local("inv")).expect("inv").count(), 0);
}

#[test]
fn ansible_with_the_temporary_key_pair_of_an_amazon_ebs_build_leaves_no_key_file() {
    let world = world_or_skip!(shared);
    let Some(path) = ansible_path() else { return };
    let fx = NullFx::new(world, "ansible-ebs");
    fx.sh(&format!("mkdir -p {}", q(&fx.r("out"))));
    let b = builder(
        world,
        json!({"communicator": "ssh", "ssh_host": world.ssh_host(), "ssh_port": world.ssh_port(),
               "ssh_username": world.ssh_user(), "ssh_timeout": "30s", "name": "ebs"}),
    );
    let mut t = ansible_template(&fx, b, json!({}));
    t["variables"]["project"] = json!("imgbuild");
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let e = build_env(world);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut vars = e.vars.clone();
    vars.push(("TMPDIR".into(), tmp.path().display().to_string()));
    let r = run_with_path(fx.scratch.dir.path(), vars, &path, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_instance_side(&fx, "ebs", "amazon-ebs");
    assert!(
        r.stdout.contains("ansible_ssh_private_key_file=/proc/"),
        "{}",
        r.stdout
    );
    // Nothing of the run is left in the temp directory (no key file, no control sockets).
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!journal_files(e.journal.path()).is_empty());
}

#[test]
fn ansible_local_stages_playbook_dir_roles_and_group_vars_and_runs_on_the_instance() {
    let world = world_or_skip!(shared);
    if ansible_path().is_none() {
        return;
    }
    let bin = crate::support::tools::ansible_bin();
    let fx = NullFx::new(world, "ansible-local");
    fx.sh(&format!("mkdir -p {}", q(&fx.r("out"))));
    fx.write_local(
        "local/site.yml",
        "- name: local play\n  hosts: web\n  roles:\n    - extra\n  tasks:\n    - name: greet\n      ansible.builtin.copy:\n        content: \"{{ greeting }} from {{ packer_build_name }}\\n\"\n        dest: \"{{ out }}/greeting\"\n        mode: \"0604\"\n",
        0o644,
    );
    fx.write_local(
        "gv/web.yml",
        &format!("greeting: hello\nout: {}\n", fx.r("out")),
        0o644,
    );
    fx.write_local(
        "roles/extra/tasks/main.yml",
        "- name: role file\n  ansible.builtin.copy:\n    content: \"role\\n\"\n    dest: \"{{ out }}/role\"\n    mode: \"0600\"\n",
        0o644,
    );
    let staging = fx.r("staging");
    let t = json!({
        "builders": [fx.builder(json!({"name": "loc"}))],
        "provisioners": [{
            "type": "ansible-local",
            "playbook_file": fx.local("local/site.yml").display().to_string(),
            "playbook_dir": fx.local("local").display().to_string(),
            "role_paths": [fx.local("roles/extra").display().to_string()],
            "group_vars": fx.local("gv").display().to_string(),
            "inventory_groups": ["web"],
            "staging_directory": staging,
            "clean_staging_directory": true,
            "command": format!("PYTHONUNBUFFERED=1 {}/ansible-playbook", bin.display()),
            "galaxy_command": format!("{}/ansible-galaxy", bin.display())
        }]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(
        fx.sh(&format!(
            "cd {} && stat -c '%n %a' greeting role && cat greeting",
            q(&fx.r("out"))
        )),
        "greeting 604\nrole 600\nhello from loc\n"
    );
    assert!(
        r.stdout
            .contains("-c local -i packer-provisioner-ansible-local-inventory"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("    loc: TASK [extra : role file]"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains(&format!("Removing staging directory {staging}")));
    assert_eq!(
        fx.sh(&format!(
            "test -e {} && echo left || echo gone",
            q(&staging)
        )),
        "gone\n"
    );
}

#[test]
fn ansible_with_a_pinned_host_key_checks_it_and_runs_with_strict_checking() {
    let world = world_or_skip!(shared);
    let Some(path) = ansible_path() else { return };
    let fx = NullFx::new(world, "ansible-pin");
    fx.write_local(
        "pin.yml",
        &format!(
            "- name: pinned\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: touch\n      ansible.builtin.file:\n        path: \"{}\"\n        state: touch\n        mode: \"0600\"\n",
            fx.r("pinned")
        ),
        0o644,
    );
    let fp = crate::support::tools::world_host_key_fingerprint(world);
    let t = json!({
        "builders": [fx.builder(json!({"name": "pin", "ssh_host_key_fingerprint": fp}))],
        "provisioners": [{"type": "ansible", "playbook_file": fx.local("pin.yml").display().to_string()}]
    });
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(fx.scratch.dir.path(), world.env(), &path, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("ansible: checking the host key against {fp}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("-o StrictHostKeyChecking=yes"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("StrictHostKeyChecking=no"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fx.sh(&format!("stat -c %a {}", q(&fx.r("pinned")))),
        "600\n"
    );
}

#[test]
fn ansible_goes_through_the_bastion_with_a_proxy_command() {
    let world = world_or_skip!(shared);
    let Some(path) = ansible_path() else { return };
    let fx = NullFx::new(world, "ansible-bastion");
    let Some(bastion) = crate::support::tools::ForwardingSshd::start(world, fx.scratch.dir.path())
    else {
        crate::support::skip("cannot start a second sshd (the bastion)");
        return;
    };
    fx.write_local(
        "b.yml",
        &format!(
            "- name: via bastion\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: touch\n      ansible.builtin.file:\n        path: \"{}\"\n        state: touch\n        mode: \"0640\"\n",
            fx.r("via-bastion")
        ),
        0o644,
    );
    let key = fx.key.display().to_string();
    let t = json!({
        "builders": [fx.builder(json!({"name": "bst", "ssh_bastion_host": "127.0.0.1",
            "ssh_bastion_port": bastion.port, "ssh_bastion_username": world.ssh_user(),
            "ssh_bastion_private_key_file": key}))],
        "provisioners": [{"type": "ansible", "playbook_file": fx.local("b.yml").display().to_string()}]
    });
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(fx.scratch.dir.path(), world.env(), &path, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("-p {} -W %h:%p", bastion.port)),
        "{}",
        r.stdout
    );
    assert_eq!(
        fx.sh(&format!("stat -c %a {}", q(&fx.r("via-bastion")))),
        "640\n"
    );
    // imgbuild's own login and Ansible's went through the bastion.
    let log = std::fs::read_to_string(&bastion.log).unwrap_or_default();
    assert!(
        log.matches("Accepted publickey").count() >= 2,
        "bastion log:\n{log}"
    );
}

#[test]
fn ansible_local_failing_playbook_names_it_and_still_cleans_the_staging_directory() {
    let world = world_or_skip!(shared);
    if ansible_path().is_none() {
        return;
    }
    let bin = crate::support::tools::ansible_bin();
    let fx = NullFx::new(world, "ansible-local-fail");
    fx.write_local(
        "bad.yml",
        "- name: local doomed\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: breaks here\n      ansible.builtin.command: \"false\"\n",
        0o644,
    );
    let staging = fx.r("staging");
    let t = json!({
        "builders": [fx.builder(json!({"name": "locf"}))],
        "provisioners": [{
            "type": "ansible-local",
            "playbook_file": fx.local("bad.yml").display().to_string(),
            "staging_directory": staging,
            "clean_staging_directory": true,
            "command": format!("{}/ansible-playbook", bin.display())
        }]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "provisioner 1 (ansible-local) failed: ansible-playbook bad.yml exited with status 2"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("    locf: TASK [breaks here]"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fx.sh(&format!(
            "test -e {} && echo left || echo gone",
            q(&staging)
        )),
        "gone\n"
    );
}

/// The root-only user of password logins (scripts/testworld.sh install makes it, without a
/// password) with a random password for this test, reset to none (`*`) when dropped; the test's
/// own world's sshd takes passwords from it.
struct PasswordUser {
    name: &'static str,
    password: String,
}

impl PasswordUser {
    fn enable(world: &crate::support::world::TestWorld) -> Option<PasswordUser> {
        let name = "imgbuild-pw";
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            crate::support::skip("password logins need root (a password on the imgbuild-pw user)");
            return None;
        }
        let exists = std::process::Command::new("id").arg(name).output().ok()?;
        if !exists.status.success() {
            crate::support::skip("no imgbuild-pw user: run scripts/testworld.sh install");
            return None;
        }
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let mut child = std::process::Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{name}:{password}\n").as_bytes())
            .expect("write to chpasswd");
        assert!(child.wait().expect("chpasswd").success());
        let user = PasswordUser { name, password };
        let conf = world.state_dir().join("sshd_config");
        let text = std::fs::read_to_string(&conf).expect("sshd_config");
        let allow = format!("AllowUsers {}", world.ssh_user());
        assert!(text.contains(&allow) && text.contains("PasswordAuthentication no\n"));
        let text = text.replace(&allow, &format!("{allow} {name}")).replace(
            "PasswordAuthentication no\n",
            "PasswordAuthentication yes\n",
        );
        std::fs::write(&conf, text).expect("write sshd_config");
        crate::support::boot::reload_sshd(world);
        Some(user)
    }
}

impl Drop for PasswordUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("usermod")
            .args(["-p", "*", self.name])
            .status();
    }
}

/// The `login.json` files of `ansible` steps' private directories that hold `password`.
fn password_files_left(password: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for parent in [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten().take(10_000) {
            if !e
                .file_name()
                .to_string_lossy()
                .starts_with("imgbuild-ansible-")
            {
                continue;
            }
            let f = e.path().join("login.json");
            if std::fs::read_to_string(&f).is_ok_and(|t| t.contains(password)) {
                out.push(f);
            }
        }
    }
    out
}

#[test]
fn ansible_logs_in_with_ssh_password_through_sshpass_and_leaves_no_password_file() {
    let Some(path) = ansible_path() else { return };
    let world = world_or_skip!();
    let Some(user) = PasswordUser::enable(&world) else {
        return;
    };
    let out = format!("/home/{}/ansible-pw-{}", user.name, std::process::id());
    let s = crate::support::cli::Scratch::new();
    let pb = s.dir.path().join("site.yml");
    std::fs::write(
        &pb,
        format!("- name: password login\n  hosts: all\n  tasks:\n    - name: write who I am\n      ansible.builtin.copy:\n        content: \"{{{{ ansible_facts['user_id'] }}}}\\n\"\n        dest: {out}\n        mode: \"0600\"\n"),
    )
    .expect("site.yml");
    let t = json!({
        "builders": [{"type": "null", "ssh_host": world.ssh_host(), "ssh_port": world.ssh_port(),
                      "ssh_username": user.name, "ssh_password": user.password, "ssh_timeout": "30s"}],
        "provisioners": [{"type": "ansible", "playbook_file": pb.display().to_string()}]
    });
    std::fs::write(s.dir.path().join("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(s.dir.path(), world.env(), &path, &[]);
    let written = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(written.expect("the playbook's file"), "imgbuild-pw\n");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains(&user.password), "the password leaked:\n{all}");
    let exec: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("Executing Ansible:"))
        .collect();
    assert_eq!(exec.len(), 1, "{all}");
    assert!(exec[0].contains("/login.json"), "{}", exec[0]);
    assert_eq!(
        password_files_left(&user.password),
        Vec::<std::path::PathBuf>::new()
    );
    // A pinned host key cannot be checked with a password login: a clear failure.
    let mut t = t;
    t["builders"][0]["ssh_host_key_fingerprint"] =
        json!(crate::support::tools::world_host_key_fingerprint(&world));
    std::fs::write(s.dir.path().join("t.json"), t.to_string()).expect("t.json");
    let r = run_with_path(s.dir.path(), world.env(), &path, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("cannot check ssh_host_key_fingerprint with an ssh_password login"),
        "{}",
        r.stderr
    );
}
