//! Ready for a real AWS account (issue 17): `imgbuild cleanup` as a user meets it on the test
//! world by hand (the world's env file sends it to the emulator), its exit codes (3 only when
//! something it knows of is still there), a run skipped for its age reported with its
//! resources, and a successful build archiving its own journal in an owner-only `done/`; the
//! IAM policy (iam/imgbuild-policy.json, quoted by README) allows exactly the calls the code makes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde_json::json;

use crate::support::build::{build, builder, cleanup, env, journals, template};
use crate::support::cli::{imgbuild_env, Run, Scratch};
use crate::support::world::{unique_name, TestWorld};

/// `imgbuild cleanup ARGS` in a fresh directory with exactly `vars` (and PATH, HOME).
fn cleanup_with(vars: &[(String, String)], args: &[&str]) -> Run {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = vec!["cleanup", "-color=false"];
    all.extend_from_slice(args);
    let dir = tempfile::tempdir().expect("dir");
    imgbuild_env(dir.path(), &all, None, &vars)
}

/// The variables of the world's env file, as a user gets them with `set -a; . env; set +a`.
fn env_file(world: &TestWorld) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(world.state_dir().join("env")).expect("the env file");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn world_env_file_sends_cleanup_to_the_emulator_so_a_cleanup_with_nothing_left_exits_0() {
    let world = world_or_skip!(shared);
    let mut vars = env_file(world);
    let endpoint = vars
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone());
    assert_eq!(endpoint.as_deref(), Some(world.ec2_endpoint()), "{vars:?}");
    let journal = tempfile::tempdir().expect("journal dir");
    vars.push((
        "IMGBUILD_JOURNAL_DIR".into(),
        journal.path().display().to_string(),
    ));
    // A run nobody made: the tag search goes to the configured region, through the env's
    // endpoint (real AWS would not answer here), finds nothing, twice.
    let run_id = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        let r = cleanup_with(&vars, &["--run-id", &run_id, "--older-than", "0s"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("nothing to remove"), "{}", r.stdout);
        assert!(r.stderr.is_empty(), "{}", r.stderr);
    }
}

#[test]
fn cleanup_whose_search_fails_but_knows_of_nothing_left_exits_1_not_3() {
    let port = crate::support::tools::closed_port();
    let journal = tempfile::tempdir().expect("journal dir");
    let vars: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "IMGBUILD_JOURNAL_DIR".to_string(),
        journal.path().display().to_string(),
    )])
    .collect();
    let endpoint = format!("http://127.0.0.1:{port}");
    let r = cleanup_with(
        &vars,
        &["--region", "us-east-1", "--endpoint-url", &endpoint],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("these could not be removed (or looked for):")
            && r.stderr.contains("us-east-1")
            && r.stderr
                .contains("nothing this cleanup knows of is left, but a search failed"),
        "{}",
        r.stderr
    );
}

/// A security group tagged as a run's own (what a build on another machine leaves).
fn tagged_group(world: &TestWorld, run_id: &str) -> String {
    let name = unique_name("ready-young");
    let run_id = run_id.to_string();
    world.ec2(|client| async move {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroup)
            .tags(Tag::builder().key("imgbuild:run-id").value(run_id).build())
            .tags(Tag::builder().key("imgbuild:build").value("b").build())
            .build();
        client
            .create_security_group()
            .group_name(name)
            .description("a run found by tags only")
            .tag_specifications(tags)
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id()
            .expect("a group id")
            .to_string()
    })
}

fn group_exists(world: &TestWorld, id: &str) -> bool {
    let id = id.to_string();
    world.ec2(|client| async move {
        client
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
            .is_ok_and(|o| !o.security_groups().is_empty())
    })
}

#[test]
fn a_run_skipped_for_its_age_is_listed_with_its_resources_and_exits_3() {
    let world = world_or_skip!(shared);
    let e = env(world);
    let run_id = uuid::Uuid::now_v7().to_string();
    let group = tagged_group(world, &run_id);
    let endpoint = world.ec2_endpoint().to_string();
    let args = [
        "--run-id",
        run_id.as_str(),
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint.as_str(),
    ];
    let r = cleanup(&e, &args);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "==> cleanup: skipped run {run_id} (build b, 1 resource(s) found): found by tags only and younger than --older-than"
        )) && r
            .stdout
            .contains(&format!("==> cleanup:   security group {group} in us-east-1")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!(
            "imgbuild cleanup --run-id {run_id} --older-than 0s"
        )),
        "{}",
        r.stderr
    );
    assert!(group_exists(world, &group), "a skipped run is not touched");
    // Machine-readable: the skipped run's resource is a record too.
    let mut m = args.to_vec();
    m.push("-machine-readable");
    let r = cleanup(&e, &m);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            ",cleanup-skipped-resource,{run_id},us-east-1,security-group,{group}"
        )),
        "{}",
        r.stdout
    );
    // Known dead: removed, and then nothing is left.
    let mut all = args.to_vec();
    all.extend(["--older-than", "0s"]);
    let r = cleanup(&e, &all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!group_exists(world, &group), "{}", r.stdout);
    let r = cleanup(&e, &all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("nothing to remove"), "{}", r.stdout);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_successful_build_archives_its_own_journal_in_an_owner_only_done_dir() {
    let world = world_or_skip!(shared);
    let e = env(world);
    let s = Scratch::new().with("t.json", &template(builder(world, json!({})), json!([])));
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (live, done) = journals(e.journal.path());
    assert!(live.is_empty(), "{live:?}");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(mode(&e.journal.path().join("done")), 0o700);
    assert_eq!(mode(&done[0]), 0o600);
    let text = std::fs::read_to_string(&done[0]).expect("journal");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert_eq!(
        (last["event"].as_str(), last["clean"].as_bool()),
        (Some("finished"), Some(true))
    );
}

/// The operations of an AWS SDK crate (`aws-sdk-ec2`, ...): the folders of its
/// `src/operation/`, found through `cargo metadata` (the crate the build uses, whatever its
/// version).
fn sdk_operations(krate: &str) -> BTreeSet<String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    // This machine's platform only: the others' dependencies are not downloaded.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == krate)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{krate} is not a dependency"));
    let dir = Path::new(manifest).with_file_name("src/operation");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every `.name(` call in the Rust files below `dir`: the SDK's fluent calls (`.run_instances()`)
/// and the EC2 seam's (`ec2.run_instances(req)`); test modules included: a call only a test makes
/// still names an action.
fn calls_in(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).expect("src").flatten() {
        let p = e.path();
        if p.is_dir() {
            calls_in(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("source");
            for (i, _) in text.match_indices('(') {
                let head = &text[..i];
                let start = head
                    .rfind(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .map_or(0, |s| s + 1);
                if start > 0 && head.as_bytes()[start - 1] == b'.' && start < i {
                    out.insert(head[start..].to_string());
                }
            }
        }
    }
}

/// `describe_launch_template_versions` -> `DescribeLaunchTemplateVersions`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The actions of iam/imgbuild-policy.json, by statement Sid.
fn policy() -> (String, BTreeMap<String, Vec<String>>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("iam/imgbuild-policy.json");
    let text = std::fs::read_to_string(&path).expect("iam/imgbuild-policy.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("policy JSON");
    assert_eq!(doc["Version"], "2012-10-17");
    let mut by_sid = BTreeMap::new();
    for s in doc["Statement"].as_array().expect("Statement") {
        assert_eq!(s["Effect"], "Allow", "{s}");
        let sid = s["Sid"]
            .as_str()
            .expect("every statement has a Sid")
            .to_string();
        let actions = s["Action"]
            .as_array()
            .expect("Action is a list")
            .iter()
            .map(|a| a.as_str().expect("an action").to_string())
            .collect();
        assert!(
            by_sid.insert(sid.clone(), actions).is_none(),
            "Sid {sid} twice"
        );
    }
    (text, by_sid)
}

#[test]
fn iam_policy_allows_every_aws_call_the_code_makes_and_nothing_else() {
    let (text, by_sid) = policy();
    let allowed: BTreeSet<String> = by_sid.values().flatten().cloned().collect();
    let mut calls = BTreeSet::new();
    calls_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut calls,
    );
    let mut needed = BTreeSet::new();
    for (krate, service) in [
        ("aws-sdk-ec2", "ec2"),
        ("aws-sdk-cloudformation", "cloudformation"),
        ("aws-sdk-ssm", "ssm"),
    ] {
        let ops = sdk_operations(krate);
        assert!(ops.len() > 10, "{krate}: {ops:?}");
        needed.extend(
            calls
                .iter()
                .filter(|c| ops.contains(*c))
                .map(|c| format!("{service}:{}", camel(c))),
        );
    }
    assert!(needed.contains("ec2:RunInstances"), "{needed:?}");
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "the code calls these, iam/imgbuild-policy.json does not allow them: {missing:?}"
    );
    let unused: Vec<&String> = allowed.difference(&needed).collect();
    assert!(
        unused.is_empty(),
        "iam/imgbuild-policy.json allows these, the code never calls them: {unused:?}"
    );
    // README quotes the file as it is.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    assert!(
        readme.contains(text.trim()),
        "README's \"Permissions\" quotes iam/imgbuild-policy.json verbatim"
    );
    for sid in [
        "BuildDescribe",
        "Cleanup",
        "AmiRetention",
        "CloudFormationUpdate",
        "SsmParameter",
    ] {
        assert!(by_sid.contains_key(sid), "{sid}: {by_sid:?}");
    }
}

// ------------------------------------------------ the policy against IAM enforcement ---

/// The Python that runs `moto_server` (its script's `#!` line), where the test world installs
/// it: on PATH or in the test world's venv.
fn moto_python() -> Option<String> {
    let mut places: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .collect()
        })
        .unwrap_or_default();
    places.push("/usr/local/lib/imgbuild-testworld/venv/bin/moto_server".into());
    if let Some(home) = std::env::var_os("HOME") {
        places.push(Path::new(&home).join(".local/share/imgbuild-testworld/venv/bin/moto_server"));
    }
    places.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        let line = text.lines().next()?.strip_prefix("#!")?.trim().to_string();
        // pyenv shims and `#!/usr/bin/env python3`: python3 on PATH.
        (!line.contains(' ') && Path::new(&line).is_file())
            .then_some(line)
            .or_else(|| Some("python3".to_string()))
    })
}

/// A moto server of this test's own with IAM enforcement on
/// (tests/fixtures/iam/moto_iam_server.py), stopped by its PID when dropped.
struct IamMoto {
    child: Child,
    python: String,
    endpoint: String,
    /// Keys of a user allowed everything (to create the test's users).
    admin: (String, String),
    dir: tempfile::TempDir,
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/iam")
        .join(name)
}

/// How many times [`IamMoto::start`] tries a fresh port when moto lost its port to another
/// process.
const START_ATTEMPTS: u32 = 3;

/// How a start attempt of moto ended.
#[derive(Debug)]
enum Listening {
    Yes,
    Exited,
    TimedOut,
}

impl IamMoto {
    fn start() -> Option<IamMoto> {
        let Some(python) = moto_python() else {
            crate::support::skip(
                "moto_server is not installed; scripts/testworld.sh install installs it",
            );
            return None;
        };
        let mut dir = tempfile::tempdir().expect("dir");
        // The port is found with `bind(0)` and let go for moto to bind; a test running in
        // parallel can take it first, and then moto exits on its bind. Each such loss is retried
        // on a fresh port (a bounded number of times); earlier attempts' logs are kept for the
        // failure message.
        let mut earlier = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
            let child = Command::new(&python)
                .arg(fixture("moto_iam_server.py"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // CreateUser, PutUserPolicy and CreateAccessKey of the admin go unchecked.
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("the moto wrapper starts");
            let mut moto = IamMoto {
                child,
                python: python.clone(),
                endpoint: format!("http://127.0.0.1:{port}"),
                admin: (String::new(), String::new()),
                dir,
            };
            match moto.wait_listening(port) {
                Listening::Yes => return Some(moto.with_admin()),
                Listening::Exited if attempt < START_ATTEMPTS => {
                    earlier.push_str(&format!(
                        "attempt {attempt} on port {port}:\n{}\n",
                        moto.log()
                    ));
                    // Keeps the directory for the next attempt; `moto` is dropped (its child is
                    // already gone).
                    dir = std::mem::replace(&mut moto.dir, tempfile::tempdir().expect("dir"));
                }
                how => panic!(
                    "moto did not listen on port {port} ({how:?}, attempt {attempt}): {}\n{earlier}",
                    moto.log()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits (bounded) until moto itself listens on `port`, or exits.
    fn wait_listening(&mut self, port: u16) -> Listening {
        // A bound on the start, not a measure: moto imports for seconds when idle, and many
        // times that on a loaded machine (2 cores, load 14), so 30 s was too short.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && crate::support::tools::pid_listens_on(self.child.id(), port)
            {
                return Listening::Yes;
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                return Listening::Exited;
            }
            if std::time::Instant::now() > deadline {
                return Listening::TimedOut;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Creates the admin user (allowed everything).
    fn with_admin(mut self) -> IamMoto {
        let admin = self.dir.path().join("admin.json");
        std::fs::write(
            &admin,
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
        )
        .expect("admin policy");
        self.admin = self.user("admin", &admin, ("testing", "testing"));
        self
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// A new user holding the policy in `policy`, created with the keys `by`.
    fn user(&self, name: &str, policy: &Path, by: (&str, &str)) -> (String, String) {
        let out = Command::new(&self.python)
            .arg(fixture("iam_user.py"))
            .arg(&self.endpoint)
            .arg(name)
            .arg(policy)
            .env("AWS_ACCESS_KEY_ID", by.0)
            .env("AWS_SECRET_ACCESS_KEY", by.1)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("iam_user.py runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "iam_user.py {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let (k, s) = text.trim().split_once(' ').expect("key and secret");
        (k.to_string(), s.to_string())
    }

    /// `imgbuild build` of `template` with the keys of `user`: exit code and all output.
    fn build(&self, template: &serde_json::Value, user: &(String, String)) -> (i32, String) {
        let s = Scratch::new().with("t.json", &template.to_string());
        let journal = s.path("journal").display().to_string();
        let r = imgbuild_env(
            s.dir.path(),
            &["build", "-color=false", "t.json"],
            None,
            &[
                ("AWS_ACCESS_KEY_ID", &user.0),
                ("AWS_SECRET_ACCESS_KEY", &user.1),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("IMGBUILD_JOURNAL_DIR", &journal),
            ],
        );
        (r.code, format!("{}\n{}", r.stdout, r.stderr))
    }
}

/// The two builds that together make every call of a build: one without SSH that succeeds
/// (image, region copy, sharing, tags), one whose SSH cannot connect (key pair, security
/// group, and the teardown of both).
fn iam_templates(endpoint: &str) -> [serde_json::Value; 2] {
    let base = json!({
        "type": "amazon-ebs",
        "region": "us-east-1",
        "custom_endpoint_ec2": endpoint,
        "instance_type": "t3.micro",
        "source_ami_filter": {
            "filters": {"name": "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"},
            "owners": ["099720109477"],
            "most_recent": true
        },
        "ami_name": "iam-{{timestamp}}-{{uuid}}",
        "ami_description": "built from {{ .SourceAMI }}",
        "tags": {"Project": "the IAM test"},
        "run_tags": {"Purpose": "imgbuild test"}
    });
    let with = |extra: serde_json::Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        json!({"builders": [b]})
    };
    [
        with(json!({"communicator": "none", "ami_regions": ["us-west-2"],
                    "ami_users": ["123456789012"], "snapshot_users": ["123456789012"]})),
        with(
            json!({"communicator": "ssh", "ssh_username": "ubuntu", "ssh_host": "127.0.0.1",
                    "ssh_port": 9, "ssh_timeout": "2s"}),
        ),
    ]
}

/// Denied, as moto and imgbuild say it.
fn denied(out: &str) -> bool {
    ["UnauthorizedOperation", "AccessDenied", "not authorized"]
        .iter()
        .any(|w| out.contains(w))
}

/// The actions a build cannot do without: removing any one of them from the policy fails one
/// of [`iam_templates`]' builds with a message that names it. (The rest of the build
/// statements are called only on paths these builds do not take: `force_deregister`, volumes
/// that outlive the instance, a failed image.)
const REQUIRED: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:RunInstances",
    "ec2:ImportKeyPair",
    "ec2:CreateSecurityGroup",
    "ec2:CreateImage",
    "ec2:CopyImage",
    "ec2:CreateTags",
    "ec2:ModifyImageAttribute",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:StopInstances",
    "ec2:TerminateInstances",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteKeyPair",
];

#[test]
fn iam_policy_file_is_enough_for_a_build_and_each_required_action_is_needed() {
    let Some(moto) = IamMoto::start() else {
        return;
    };
    let admin = (moto.admin.0.as_str(), moto.admin.1.as_str());
    let policy_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("iam/imgbuild-policy.json");
    let [plain, ssh] = iam_templates(&moto.endpoint);

    let user = moto.user("builder", &policy_path, admin);
    let (code, out) = moto.build(&plain, &user);
    assert_eq!(
        code,
        0,
        "with the policy, the build succeeds:\n{out}\n{}",
        moto.log()
    );
    let (code, out) = moto.build(&ssh, &user);
    assert!(
        code == 1 && out.contains("waiting for SSH") && !denied(&out),
        "with the policy, only SSH fails:\n{out}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy_path).expect("policy"))
            .expect("policy JSON");
    let mut missed = Vec::new();
    for (n, action) in REQUIRED.iter().enumerate() {
        let mut less = doc.clone();
        for s in less["Statement"].as_array_mut().expect("statements") {
            s["Action"]
                .as_array_mut()
                .expect("actions")
                .retain(|a| a != action);
        }
        less["Statement"]
            .as_array_mut()
            .expect("statements")
            .retain(|s| !s["Action"].as_array().is_some_and(Vec::is_empty));
        let file = moto.dir.path().join(format!("less-{n}.json"));
        std::fs::write(&file, less.to_string()).expect("policy");
        let user = moto.user(&format!("less-{n}"), &file, admin);
        let call = action.trim_start_matches("ec2:");
        let (code, mut out) = moto.build(&plain, &user);
        if code == 0 || !out.contains(call) {
            out.push_str(&moto.build(&ssh, &user).1);
        }
        if !(out.contains(call) && denied(&out)) {
            missed.push(format!("{action}:\n{out}"));
        }
    }
    assert!(
        missed.is_empty(),
        "without these the builds did not fail naming them:\n{}",
        missed.join("\n\n")
    );
}
