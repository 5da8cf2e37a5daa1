//! `puppet-masterless` for real (Debian's `puppet` on the test world's "instance"), and
//! `chef-solo` and `salt-masterless`, whose tools are not installable here: their staged files
//! on the instance and the exact command they run (which then fails, naming it).

use serde_json::json;

use crate::support::null::{q, NullFx};

fn have_puppet() -> bool {
    if std::path::Path::new("/usr/bin/puppet").is_file() {
        return true;
    }
    crate::support::skip(
        "puppet is not installed (scripts/testworld.sh install: apt-get install puppet)",
    );
    false
}

#[test]
fn puppet_masterless_applies_a_manifest_with_a_module_and_facts() {
    let world = world_or_skip!(shared);
    if !have_puppet() {
        return;
    }
    let fx = NullFx::new(world, "puppet");
    let out = fx.r("out");
    fx.sh(&format!("mkdir -p {}", q(&out)));
    fx.write_local(
        "modules/greet/manifests/init.pp",
        &format!(
            "class greet {{\n  file {{ '{out}/motd':\n    content => \"hello ${{facts['packer_build_name']}} ${{facts['role']}}\\n\",\n    mode => '0640',\n  }}\n}}\n"
        ),
        0o644,
    );
    fx.write_local("site.pp", "include greet\n", 0o644);
    let staging = fx.r("puppet-staging");
    let t = json!({
        "builders": [fx.builder(json!({"name": "pup"}))],
        "provisioners": [{
            "type": "puppet-masterless",
            "manifest_file": fx.local("site.pp").display().to_string(),
            "module_paths": [fx.local("modules").display().to_string()],
            "facter": {"role": "web"},
            "prevent_sudo": true,
            "staging_directory": staging,
            "clean_staging_directory": true
        }]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(
        fx.sh(&format!("stat -c '%a' {0}/motd && cat {0}/motd", q(&out))),
        "640\nhello pup web\n"
    );
    assert!(
        r.stdout.contains(&format!(
            "Running Puppet: cd {staging} && FACTER_packer_build_name='pup' FACTER_packer_builder_type='null' FACTER_role='web' puppet apply --detailed-exitcodes --modulepath='{staging}/module-0' {staging}/site.pp"
        )),
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

#[test]
fn chef_solo_stages_cookbooks_solo_rb_and_node_json_and_runs_packers_command() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "chef");
    fx.write_local("cookbooks/web/recipes/default.rb", "file '/tmp/x'\n", 0o644);
    fx.write_local("roles/web.json", "{}\n", 0o644);
    let staging = fx.r("chef-staging");
    let t = json!({
        "builders": [fx.builder(json!({"name": "chf"}))],
        "provisioners": [{
            "type": "chef-solo",
            "cookbook_paths": [fx.local("cookbooks").display().to_string()],
            "roles_path": fx.local("roles").display().to_string(),
            "run_list": ["recipe[web]"],
            "json": {"port": 8080, "user": "www"},
            "json_string": "{\"port\": 9090, \"tls\": {\"on\": true}}",
            "skip_install": true,
            "prevent_sudo": true,
            "staging_directory": staging
        }]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let cmd = format!("chef-solo --no-color -c {staging}/solo.rb -j {staging}/node.json");
    assert!(
        r.stdout.contains(&format!("Executing Chef: {cmd}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("provisioner 1 (chef-solo) failed: chef-solo exited with status 127"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fx.sh(&format!("cd {} && find . -type f | sort && cat solo.rb node.json", q(&staging))),
        format!(
            "./cookbooks-0/web/recipes/default.rb\n./node.json\n./roles/web.json\n./solo.rb\ncookbook_path \t[\"{staging}/cookbooks-0\"]\nrole_path \"{staging}/roles\"\nchef_license \"accept-silent\"\n{{\"port\":9090,\"run_list\":[\"recipe[web]\"],\"tls\":{{\"on\":true}},\"user\":\"www\"}}"
        )
    );
}

#[test]
fn salt_masterless_moves_the_state_tree_into_place_and_runs_salt_call() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "salt");
    fx.write_local("salt/top.sls", "base:\n  '*':\n    - web\n", 0o644);
    fx.write_local("salt/web.sls", "/tmp/x:\n  file.managed: []\n", 0o644);
    let (tmp, states, pillar) = (fx.r("salt-tmp"), fx.r("srv/salt"), fx.r("srv/pillar"));
    let t = json!({
        "builders": [fx.builder(json!({"name": "slt"}))],
        "provisioners": [{
            "type": "salt-masterless",
            "local_state_tree": fx.local("salt").display().to_string(),
            "remote_state_tree": states,
            "remote_pillar_roots": pillar,
            "temp_config_dir": tmp,
            "skip_bootstrap": true,
            "disable_sudo": true
        }]
    });
    let r = fx.build(&t, &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let cmd = format!("salt-call --local state.highstate --file-root={states} --pillar-root={pillar} --retcode-passthrough -l info");
    assert!(
        r.stdout.contains(&format!("Running: {cmd}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("provisioner 1 (salt-masterless) failed: salt-call exited with status 127"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fx.sh(&format!(
            "cd {} && find . -type f | sort; test -e {} || echo tmp-gone",
            q(&states),
            q(&tmp)
        )),
        "./top.sls\n./web.sls\ntmp-gone\n"
    );
}

/// A git repository (bare, `<name>.git`) in `dir` holding `files` (path, text), tagged `v1`.
fn git_repo(dir: &std::path::Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let work = dir.join(format!("{name}-work"));
    for (p, text) in files {
        let f = work.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, text).expect("write");
    }
    let git = |args: &[&str], cwd: &std::path::Path| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"], &work);
    git(&["add", "."], &work);
    git(&["commit", "-q", "-m", "formula"], &work);
    git(&["tag", "v1"], &work);
    let bare = dir.join(format!("{name}.git"));
    git(
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
        dir,
    );
    bare
}

#[test]
fn salt_masterless_adds_git_formulas_to_the_state_tree_and_keeps_existing_ones() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "saltf");
    fx.write_local("salt/top.sls", "base:\n  '*':\n    - nginx\n", 0o644);
    fx.write_local("salt/users/init.sls", "# ours\n", 0o644);
    let repo = git_repo(
        fx.scratch.dir.path(),
        "nginx-formula",
        &[
            ("nginx/init.sls", "nginx: pkg.installed\n"),
            ("nginx/map.jinja", "{}\n"),
            ("README.md", "x\n"),
        ],
    );
    let users = git_repo(
        fx.scratch.dir.path(),
        "users-formula",
        &[("users/init.sls", "# theirs\n")],
    );
    let (tmp, states) = (fx.r("salt-tmp"), fx.r("srv/salt"));
    let nginx_url = format!("git::file://{}//nginx?ref=v1", repo.display());
    let users_url = format!("git::file://{}//users", users.display());
    let t = json!({
        "builders": [fx.builder(json!({"name": "sltf"}))],
        "provisioners": [{
            "type": "salt-masterless",
            "local_state_tree": fx.local("salt").display().to_string(),
            "formulas": [nginx_url, users_url],
            "remote_state_tree": states,
            "remote_pillar_roots": fx.r("srv/pillar"),
            "temp_config_dir": tmp,
            "skip_bootstrap": true,
            "disable_sudo": true
        }]
    });
    let r = fx.build(&t, &[]);
    // salt-call is not installed: the run fails after the state tree is in place.
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let local = fx.local("salt");
    assert!(
        r.stdout
            .contains(&format!("{nginx_url} => {}", local.join("nginx").display())),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "Found existing formula at: {}",
            local.join("users").display()
        )),
        "{}",
        r.stdout
    );
    assert_eq!(
        fx.sh(&format!(
            "cd {} && find . -type f | sort && cat users/init.sls",
            q(&states)
        )),
        "./nginx/init.sls\n./nginx/map.jinja\n./top.sls\n./users/init.sls\n# ours\n"
    );
    // The local state tree is as it was: the formula went into the stage only.
    assert!(!local.join("nginx").exists());
}
