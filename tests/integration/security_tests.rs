//! The security defaults, each checked where it takes effect: the temporary private key never
//! reaches a file, the output or the log; the temporary security group opens only the SSH port
//! to the configured (or the VPC's) CIDR blocks; the shell provisioner's scripts and
//! environment-variable files are owner-only and removed (also after a failure) unless
//! `skip_clean`; `shell-local` keeps secrets out of process command lines; a host key that does
//! not match `ssh_host_key_fingerprint` fails at once; and every command line of README's "When
//! a build is interrupted" section runs as written.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::build::{builder, env, Env};
use crate::support::building::Building;
use crate::support::cli::{imgbuild_env, Run, Scratch};
use crate::support::null::{q, NullFx};
use crate::support::state::security_groups_of;
use crate::support::world::unique_name;

/// What an OpenSSH private key looks like in any output: the PEM armour, and the base64 of
/// `openssh-key-v1\0` every OpenSSH private key body starts with.
const KEY_MARKERS: [&str; 3] = ["PRIVATE KEY", "b3BlbnNzaC1rZXktdjE", "-----BEGIN OPENSSH"];

/// The exit code and output of a [`Building`] that ended, as a [`Run`].
fn run_of((code, stdout, stderr): (i32, String, String)) -> Run {
    Run {
        code,
        stdout,
        stderr,
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn vars_of(e: &Env, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut v = e.vars.clone();
    v.extend(extra.iter().map(|(k, val)| (k.to_string(), val.clone())));
    v
}

// ------------------------------------------------------- 1. the temporary private key ---

/// A successful, a failed and a SIGINT'd amazon-ebs build over SSH with the temporary key pair
/// (and a shell-local provisioner, which uses the temporary directory): afterwards `TMPDIR` is
/// empty, no key file is in the working directory, and no output nor the trace log holds key
/// material.
#[test]
fn temporary_private_key_never_reaches_a_file_the_output_or_the_log() {
    let world = world_or_skip!(shared);
    // The sandbox itself: it belongs to the SSH user (a directory made here might not).
    let remote = world.sandbox().display().to_string();
    for case in ["success", "failure", "sigint"] {
        let e = env(world);
        let s = Scratch::new();
        let tmp = tempfile::tempdir().expect("TMPDIR");
        let log = s.path("trace.log");
        let name = unique_name(&format!("sec-key-{case}"));
        let remote_cmd = match case {
            "success" => "echo remote-ok".to_string(),
            "failure" => "echo remote-fails; exit 3".to_string(),
            _ => "echo sleeping-now; sleep 60".to_string(),
        };
        let b = builder(
            world,
            json!({
                "name": name,
                "ami_name": format!("{name}-{{{{timestamp}}}}"),
                "communicator": "ssh",
                "ssh_host": world.ssh_host(),
                "ssh_port": world.ssh_port(),
                "ssh_username": world.ssh_user(),
                "ssh_timeout": "60s"
            }),
        );
        let t = json!({
            "variables": {"project": "imgbuild"},
            "builders": [b],
            "provisioners": [
                {"type": "shell-local", "inline": ["echo local-ok"]},
                {"type": "shell", "remote_folder": remote, "inline": [remote_cmd]}
            ]
        });
        std::fs::write(s.path("t.json"), t.to_string()).expect("template");
        let vars = vars_of(
            &e,
            &[
                ("TMPDIR", tmp.path().display().to_string()),
                ("IMGBUILD_LOG", "trace".to_string()),
                ("IMGBUILD_LOG_PATH", log.display().to_string()),
            ],
        );
        let mut b = Building::start_with(&s, &vars, None);
        let r = match case {
            "sigint" => {
                b.wait_for("sleeping-now");
                run_of(b.interrupt())
            }
            _ => run_of(b.finish()),
        };
        let want = if case == "success" { 0 } else { 1 };
        assert_eq!(
            r.code, want,
            "{case}: stdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert!(
            r.stdout
                .contains("Creating a temporary ed25519 key pair locally and importing it"),
            "{case}: the build used a temporary key pair:\n{}",
            r.stdout
        );
        assert!(r.stdout.contains("local-ok"), "{case}: {}", r.stdout);
        assert_eq!(
            entries(tmp.path()),
            Vec::<String>::new(),
            "{case}: TMPDIR is empty afterwards"
        );
        let pem: Vec<String> = entries(s.dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".pem") || n.contains("key"))
            .collect();
        assert!(
            pem.is_empty(),
            "{case}: key files in the working directory: {pem:?}"
        );
        let log_text = std::fs::read_to_string(&log).expect("the log file exists");
        assert!(
            log_text.len() > 1000,
            "{case}: the trace log has content ({} bytes)",
            log_text.len()
        );
        assert_eq!(mode(&log), 0o600, "{case}: the log file is owner-only");
        for (what, text) in [
            ("stdout", &r.stdout),
            ("stderr", &r.stderr),
            ("log", &log_text),
        ] {
            for m in KEY_MARKERS {
                assert!(
                    !text.contains(m),
                    "{case}: {m:?} in {what}:\n{}",
                    text.lines()
                        .filter(|l| l.contains(m))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
}

// ---------------------------------------------- 2. the temporary security group's rules ---

/// Three builds held right after their temporary security group exists: configured CIDRs (the
/// SSH port only, TCP only, exactly those blocks), no CIDRs with `ssh_host` (the VPC's blocks),
/// `communicator: none` (no rule at all). Then SIGINT, and the groups are gone.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn temporary_security_group_opens_only_the_ssh_port_to_what_is_configured() {
    let world = world_or_skip!(shared);
    let e = env(world);
    let s = Scratch::new();
    let cidrs = ["127.0.0.1/32", "10.20.0.0/16"];
    let port = world.ssh_port();
    let name_cidrs = unique_name("sec-sg-cidrs");
    let name_vpc = unique_name("sec-sg-vpc");
    let name_none = unique_name("sec-sg-none");
    let mk = |name: &str, extra: Value| {
        let mut b = builder(
            world,
            json!({"name": name, "ami_name": format!("{name}-{{{{timestamp}}}}")}),
        );
        if let (Some(o), Value::Object(x)) = (b.as_object_mut(), extra) {
            o.extend(x);
        }
        b
    };
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [
            mk(&name_cidrs, json!({"communicator": "ssh", "ssh_username": "u", "ssh_port": port,
                                   "temporary_security_group_source_cidrs": cidrs})),
            mk(&name_vpc, json!({"communicator": "ssh", "ssh_username": "u", "ssh_port": port,
                                 "ssh_host": world.ssh_host()})),
            mk(&name_none, json!({}))
        ]
    });
    std::fs::write(s.path("t.json"), t.to_string()).expect("template");
    let vars = vars_of(
        &e,
        &[("IMGBUILD_TEST_PAUSE", "security_group:3600".to_string())],
    );
    let mut b = Building::start_with(&s, &vars, None);
    b.wait_for_n("test hook: pausing", 3);

    let groups = |build: &str| security_groups_of(world, build);
    // Configured CIDRs: one rule, TCP, the SSH port, exactly those blocks.
    let g = groups(&name_cidrs);
    assert_eq!(g.len(), 1, "{g:?}");
    let perms = g[0].ip_permissions();
    assert_eq!(perms.len(), 1, "exactly one ingress rule: {perms:?}");
    let p = &perms[0];
    assert_eq!(p.ip_protocol(), Some("tcp"), "{p:?}");
    assert_eq!(p.from_port(), Some(i32::from(port)), "{p:?}");
    assert_eq!(p.to_port(), Some(i32::from(port)), "{p:?}");
    let mut got: Vec<&str> = p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    got.sort();
    let mut want = cidrs.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert!(p.ipv6_ranges().is_empty(), "{p:?}");
    assert!(p.user_id_group_pairs().is_empty(), "{p:?}");
    assert!(
        !got.contains(&"0.0.0.0/0"),
        "never the whole internet unless configured"
    );

    // No CIDRs, SSH through ssh_host: the VPC's own blocks, on the SSH port only.
    let g = groups(&name_vpc);
    assert_eq!(g.len(), 1, "{g:?}");
    let vpc_id = g[0].vpc_id().expect("a VPC group").to_string();
    let vpc_cidrs: Vec<String> = world.ec2(|c| async move {
        let out = c
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .expect("DescribeVpcs");
        out.vpcs()
            .iter()
            .flat_map(|v| {
                v.cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.cidr_block().map(str::to_string))
                    .chain(v.cidr_block().map(str::to_string))
            })
            .collect()
    });
    let perms = g[0].ip_permissions();
    assert_eq!(perms.len(), 1, "exactly one ingress rule: {perms:?}");
    let p = &perms[0];
    assert_eq!(p.ip_protocol(), Some("tcp"));
    assert_eq!(
        (p.from_port(), p.to_port()),
        (Some(i32::from(port)), Some(i32::from(port)))
    );
    let got: Vec<&str> = p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    assert!(!got.is_empty());
    for c in &got {
        assert!(
            vpc_cidrs.iter().any(|v| v == c),
            "{c} is one of the VPC's blocks {vpc_cidrs:?}"
        );
        assert_ne!(*c, "0.0.0.0/0");
    }

    // communicator none: a group with no inbound rule at all.
    let g = groups(&name_none);
    assert_eq!(g.len(), 1, "{g:?}");
    assert!(
        g[0].ip_permissions().is_empty(),
        "{:?}",
        g[0].ip_permissions()
    );

    let ids: Vec<String> = [&name_cidrs, &name_vpc, &name_none]
        .iter()
        .flat_map(|n| groups(n))
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 3);
    let r = run_of(b.interrupt());
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for n in [&name_cidrs, &name_vpc, &name_none] {
        assert!(groups(n).is_empty(), "the group of {n} is deleted");
    }
}

// Without CIDRs and without a private path to the instance, the group allows only this
// machine's public address, and a build whose address cannot be found fails before anything is
// created: tests/integration/sg_tests.rs.

// ------------------------------ 3. the shell provisioner's remote scripts and env files ---

/// One record line written by a script: `<mode> <path>` of itself and of the env-var file.
fn records(path: &Path) -> Vec<(u32, PathBuf)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("record {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let (m, p) = l.split_once(' ').expect("mode and path");
            (
                u32::from_str_radix(m, 8).expect("octal mode"),
                PathBuf::from(p),
            )
        })
        .collect()
}

#[test]
fn shell_scripts_and_env_var_files_are_owner_only_and_removed_unless_skip_clean() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "sec-shell");
    let scripts = fx.r("scripts");
    let rec = fx.r("rec");
    fx.sh(&format!("mkdir -p {} {}", q(&scripts), q(&rec)));
    let secret = "s3cr3t value 'quoted' $HOME";
    // Records `stat -c '%a %n'` of the running script ($0) and of the env-var file.
    let record = |file: &str| {
        vec![
            format!(
                "stat -c '%a %n' \"$0\" \"$ENVFILE\" > {}",
                q(&format!("{rec}/{file}"))
            ),
            format!(
                "printf '%s' \"$SECRET_V\" > {}",
                q(&format!("{rec}/{file}.value"))
            ),
        ]
    };
    let shell = |file: &str, execute: &str, skip_clean: bool, fail: bool| {
        let mut inline = record(file);
        if fail {
            inline.push("exit 7".into());
        }
        json!({
            "type": "shell",
            "remote_folder": scripts,
            "use_env_var_file": true,
            "environment_vars": ["SECRET_V={{user `secret`}}"],
            "execute_command": execute,
            "skip_clean": skip_clean,
            "inline": inline
        })
    };
    // Packer's default command (chmod +x) and one that runs the file as uploaded.
    let with_chmod = "chmod +x {{.Path}}; . {{.EnvVarFile}} && ENVFILE={{.EnvVarFile}} {{.Path}}";
    let as_uploaded = ". {{.EnvVarFile}} && ENVFILE={{.EnvVarFile}} sh {{.Path}}";
    std::fs::write(
        fx.local("secret.json"),
        json!({ "secret": secret }).to_string(),
    )
    .expect("var file");
    let template = |provisioners: Vec<Value>| {
        json!({
            "variables": {"secret": null},
            "sensitive-variables": ["secret"],
            "builders": [fx.builder(json!({"name": "sec-shell"}))],
            "provisioners": provisioners
        })
    };
    let t = template(vec![
        shell("chmod", with_chmod, false, false),
        shell("plain", as_uploaded, false, false),
        shell("kept", as_uploaded, true, false),
    ]);
    let r = fx.build(&t, &["-var-file=secret.json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let rec_path = |f: &str| PathBuf::from(format!("{rec}/{f}"));
    for f in ["chmod", "plain", "kept"] {
        assert_eq!(
            std::fs::read_to_string(rec_path(&format!("{f}.value"))).expect("value"),
            secret,
            "{f}: the variable reached the script"
        );
    }
    // While running: the script is never readable or writable by group or others (0700 as
    // uploaded; `chmod +x` adds only execute bits), the env-var file is 0600.
    let chmod = records(&rec_path("chmod"));
    assert_eq!(chmod.len(), 2, "{chmod:?}");
    assert_eq!(chmod[0].0 & 0o066, 0, "script mode {:o}", chmod[0].0);
    assert_eq!(chmod[0].0 & 0o700, 0o700, "script mode {:o}", chmod[0].0);
    assert_eq!(chmod[1].0, 0o600, "env-var file mode {:o}", chmod[1].0);
    let plain = records(&rec_path("plain"));
    assert_eq!(
        plain.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        vec![0o700, 0o600],
        "{plain:?}"
    );
    // Afterwards: removed, except with skip_clean (still owner-only).
    for (_, p) in chmod.iter().chain(&plain) {
        assert!(p.is_absolute(), "{}", p.display());
        assert!(!p.exists(), "{} was removed", p.display());
    }
    let kept = records(&rec_path("kept"));
    for (m, p) in &kept {
        assert!(p.exists(), "skip_clean keeps {}", p.display());
        assert_eq!(mode(p), *m, "{}", p.display());
    }
    assert_eq!(kept[1].0, 0o600);
    // The env-var file holds the secret, so it must not outlive a failed script either.
    let t = template(vec![shell("failed", as_uploaded, false, true)]);
    let r = fx.build(&t, &["-var-file=secret.json"]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("exited with status 7"), "{all}");
    let failed = records(&rec_path("failed"));
    assert_eq!(failed.len(), 2);
    for (_, p) in &failed {
        assert!(!p.exists(), "{} was removed after the failure", p.display());
    }
    let left: Vec<String> = std::fs::read_dir(&scripts)
        .expect("scripts dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let kept_names: Vec<String> = kept
        .iter()
        .filter_map(|(_, p)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for n in &left {
        assert!(
            kept_names.contains(n),
            "only skip_clean's files stay: {left:?}"
        );
    }
}

// ------------------------------------------- 4. no secret in local process arguments ---

/// shell-local (provisioner and post-processor) with a sensitive value in `environment_vars`
/// and the default `execute_command` (`/bin/sh -c "{{.Vars}} {{.Script}}"`): the script reads
/// the value from its environment, while its own command line, its parent's and every
/// command line of its process group (what `ps` shows every local user) hold none of it.
#[test]
fn shell_local_keeps_secrets_out_of_process_command_lines() {
    let s = Scratch::new();
    let out = s.dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let secret = "hunter2-'quoted' \"dq\" $(id)";
    let capture = |prefix: &str| {
        vec![
            format!("tr '\\0' ' ' < /proc/$$/cmdline > \"$OUT/{prefix}self\""),
            format!("tr '\\0' ' ' < /proc/$PPID/cmdline > \"$OUT/{prefix}parent\""),
            format!("if command -v ps >/dev/null; then pg=$(ps -o pgid= -p $$ | tr -d ' '); ps -e -o pgid=,args= | awk -v g=\"$pg\" '$1==g' > \"$OUT/{prefix}group\"; fi"),
            format!("printf '%s' \"$SECRET_V\" > \"$OUT/{prefix}value\""),
            "echo \"the value is $SECRET_V\"".to_string(),
        ]
    };
    let env_vars = json!([
        "SECRET_V={{user `secret`}}",
        format!("OUT={}", out.display())
    ]);
    let t = json!({
        "variables": {"secret": null},
        "sensitive-variables": ["secret"],
        "builders": [{"type": "null", "name": "local-secrets", "communicator": "none"}],
        "provisioners": [
            {"type": "shell-local", "environment_vars": env_vars, "inline": capture("prov-")}
        ],
        "post-processors": [
            {"type": "shell-local", "environment_vars": env_vars, "inline": capture("pp-")}
        ]
    });
    std::fs::write(s.path("t.json"), t.to_string()).expect("template");
    std::fs::write(
        s.path("secret.json"),
        json!({ "secret": secret }).to_string(),
    )
    .expect("var file");
    let tmp_s = tmp.path().display().to_string();
    let r = imgbuild_env(
        s.dir.path(),
        &["build", "-color=false", "-var-file=secret.json", "t.json"],
        None,
        &[("TMPDIR", tmp_s.as_str())],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("the value is <sensitive>"),
        "the output is masked:\n{}",
        r.stdout
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    for prefix in ["prov-", "pp-"] {
        let read = |f: &str| std::fs::read_to_string(out.join(format!("{prefix}{f}")));
        assert_eq!(
            read("value").expect("value"),
            secret,
            "{prefix}: the value reached the script through its environment"
        );
        let me = read("self").expect("own command line");
        let parent = read("parent").expect("parent's command line");
        assert!(!me.trim().is_empty() && !parent.trim().is_empty());
        assert!(
            format!("{me}{parent}").contains("imgbuild-shell-local."),
            "{prefix}: the captured command lines are the script's: {me:?} {parent:?}"
        );
        // The `/bin/sh -c` of execute_command was captured, with references in place of values.
        assert!(
            parent.contains("SECRET_V=\"$SECRET_V\""),
            "{prefix}: {parent:?}"
        );
        let group = read("group").unwrap_or_default();
        for (what, text) in [("self", &me), ("parent", &parent), ("group", &group)] {
            for needle in ["hunter2", "quoted"] {
                assert!(
                    !text.contains(needle),
                    "{prefix}{what}: the secret is on a command line: {text}"
                );
            }
        }
    }
    assert_eq!(
        entries(tmp.path()),
        Vec::<String>::new(),
        "the inline scripts' temporary files are removed"
    );
}

// ----------------------------------------------------------- 5. host key fingerprint ---

#[test]
fn ssh_host_key_fingerprint_connects_when_right_and_fails_fast_when_wrong() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "sec-hostkey");
    let right = crate::support::tools::world_host_key_fingerprint(world);
    let wrong = "SHA256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU";
    assert_ne!(right, wrong);
    let template = |fp: &str| {
        json!({
            "builders": [fx.builder(json!({"name": "hostkey", "ssh_timeout": "60s",
                                           "ssh_host_key_fingerprint": fp}))],
            "provisioners": [{"type": "shell", "remote_folder": fx.r(""),
                              "inline": ["echo connected-ok"]}]
        })
    };
    let r = fx.build(&template(&right), &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("connected-ok"), "{}", r.stdout);

    let r = fx.build(&template(wrong), &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    let want = format!("does not match ssh_host_key_fingerprint: expected {wrong}, got {right}");
    assert!(all.contains(&want), "{want:?} in:\n{all}");
    assert!(!all.contains("connected-ok"), "{all}");
    // No retries: a mismatch is not "not up yet" (ssh_timeout is 60 s); a retry would say
    // "Still waiting for SSH ... (attempt N)" first.
    assert!(!all.contains("Still waiting for SSH"), "{all}");

    // A malformed fingerprint is a template error (exit 2), located at the key.
    let r = fx.build(&template("aa:bb:cc"), &[]);
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("ssh_host_key_fingerprint")
            && r.stderr.contains("is not a SHA-256 fingerprint"),
        "{}",
        r.stderr
    );
}

// ---------------------------------- 6. README "When a build is interrupted", as written ---

/// The `imgbuild ...` command lines of README's section (comments stripped), in order.
fn readme_commands() -> (String, Vec<String>) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## When a build is interrupted")
        .expect("the section exists");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    let section = rest[..end].to_string();
    let mut cmds = Vec::new();
    let mut in_code = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let l = line.split(" #").next().unwrap_or("").trim();
        if in_code && l.starts_with("imgbuild ") {
            cmds.push(l.to_string());
        }
    }
    (section, cmds)
}

/// A build killed with `kill -9` while its instance runs, then every command line of the
/// README section as a user types it: the dry run lists the instance (found by journal) and
/// changes nothing, cleanup removes everything and a second cleanup finds nothing. Every flag
/// the section names exists in `imgbuild cleanup --help`.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn readme_interrupted_section_commands_work_as_written() {
    let (section, cmds) = readme_commands();
    assert!(
        cmds.len() >= 2,
        "the section has the cleanup commands: {cmds:?}"
    );
    assert!(cmds.iter().any(|c| c.contains("--dry-run")), "{cmds:?}");
    let help = imgbuild_env(Path::new("."), &["cleanup", "--help"], None, &[]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    for flag in [
        "--journal",
        "--run-id",
        "--region",
        "--all-regions",
        "--older-than",
        "--dry-run",
        "--endpoint-url",
    ] {
        if section.contains(flag) {
            assert!(
                help.stdout.contains(flag),
                "{flag} in cleanup --help:\n{}",
                help.stdout
            );
        }
    }

    let world = world_or_skip!();
    let e = env(&world);
    let s = Scratch::new();
    let name = unique_name("sec-readme");
    let b = builder(
        &world,
        json!({"name": name, "ami_name": format!("{name}-{{{{timestamp}}}}")}),
    );
    let t = json!({"variables": {"project": "imgbuild"}, "builders": [b]});
    std::fs::write(s.path("t.json"), t.to_string()).expect("template");
    let vars = vars_of(&e, &[("IMGBUILD_TEST_PAUSE", "launch:120".to_string())]);
    let mut b = Building::start_with(&s, &vars, None);
    b.wait_for("test hook: pausing");
    let (out, _) = b.kill9();
    let instance = out
        .split_whitespace()
        .find(|w| w.starts_with("i-"))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .to_string()
        })
        .unwrap_or_else(|| panic!("an instance ID in:\n{out}"));
    // As the README's manual way says: it carries the run id tag.
    let tags = {
        let id = instance.clone();
        world.ec2(|c| async move {
            let out = c
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("DescribeInstances");
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .flat_map(|i| i.tags())
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect::<Vec<_>>()
        })
    };
    let run_id = tags
        .iter()
        .find(|(k, _)| k == "imgbuild:run-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("imgbuild:run-id tag on {instance}: {tags:?}"));
    let state = |id: &str| {
        let id = id.to_string();
        world.ec2(|c| async move {
            let out = c
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("DescribeInstances");
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| i.state()?.name().map(|n| n.as_str().to_string()))
                .next()
                .unwrap_or_default()
        })
    };
    assert_eq!(state(&instance), "running");

    let envs: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let endpoint = world.ec2_endpoint().to_string();
    let mut removed = false;
    for cmd in &cmds {
        // As written, with the run's id for `<run-id>`; a tag search in a region given on the
        // command line goes to the emulator (the README's lines go to AWS).
        let cmd = cmd.replace("<run-id>", &run_id);
        let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        if cmd.contains("--region") {
            args.extend(["--endpoint-url", endpoint.as_str()]);
        }
        let r = imgbuild_env(s.dir.path(), &args, None, &envs);
        assert_eq!(
            r.code, 0,
            "`{cmd}`: stdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        if cmd.contains("--dry-run") && !removed {
            assert!(
                r.stdout.contains(&instance),
                "`{cmd}` lists {instance}:\n{}",
                r.stdout
            );
            assert!(
                r.stdout.contains(&run_id),
                "`{cmd}` names the run:\n{}",
                r.stdout
            );
            assert_eq!(state(&instance), "running", "`{cmd}` changed nothing");
        } else if !cmd.contains("--dry-run") && !removed {
            removed = true;
            assert_ne!(
                state(&instance),
                "running",
                "`{cmd}` terminated it:\n{}",
                r.stdout
            );
        }
    }
    assert!(removed, "the section has a cleanup without --dry-run");
    let t = state(&instance);
    assert!(t == "terminated" || t == "shutting-down", "{t}");
    // Twice is safe: nothing left.
    // (The journal is archived now, so these search by tag: at the emulator, not at AWS.)
    let again = imgbuild_env(
        s.dir.path(),
        &["cleanup", "--endpoint-url", &endpoint],
        None,
        &envs,
    );
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let dry = imgbuild_env(
        s.dir.path(),
        &["cleanup", "--dry-run", "--endpoint-url", &endpoint],
        None,
        &envs,
    );
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(!dry.stdout.contains(&instance), "{}", dry.stdout);
}
