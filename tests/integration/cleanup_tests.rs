//! `imgbuild cleanup` against a test world of each test's own: `kill -9` of `imgbuild build` at
//! each phase (held there by `IMGBUILD_TEST_PAUSE`), then cleanup, and the emulator is compared
//! with a snapshot taken before the build (by ID: moto has ~1100 default snapshots and AMIs).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::support::build::{
    ami_from_stdout, amis_of, build, builder, cleanup, env, journal_events, journals, ssh_builder,
    template, Env,
};
use crate::support::building::{Building, MARKER_TIMEOUT};
use crate::support::cli::{imgbuild_env, Scratch};
use crate::support::faults::rounds;
use crate::support::faults::{print_table, Tally};
use crate::support::state::{leaks, state, Region};
use crate::support::world::TestWorld;

/// One fault: a template and where the build is killed (None: not killed, a control run).
struct Fault {
    name: &'static str,
    ssh: bool,
    copy: bool,
    pause: Option<&'static str>,
    /// A source `cleanup --dry-run` must list (the mechanism that finds what the kill hid).
    source: Option<&'static str>,
    /// Killed while provisioning over SSH (no pause hook): how.
    live: Option<Live>,
}

/// A kill while the build talks SSH, without a test hook.
#[derive(Clone, Copy, PartialEq)]
enum Live {
    /// The SSH port is closed: killed while it waits for SSH.
    WaitSsh,
    /// A file provisioner uploads through a rate-limited TCP proxy: killed mid-upload.
    Upload,
    /// A shell provisioner prints a marker and sleeps: killed mid-script.
    Script,
}

const SCRIPT_MARKER: &str = "imgbuild-fault-mid-script";
/// The upload of the mid-upload fault, and the rate it goes at (about 6 s in all).
const UPLOAD_BYTES: u64 = 24 << 20;
const UPLOAD_RATE: u64 = 4 << 20;

/// The builder, provisioners and (for [`Live::Upload`]) the proxy of a live-SSH fault.
fn live_setup(
    world: &TestWorld,
    s: &Scratch,
    live: Live,
) -> (Value, Value, Option<crate::support::faultproxy::TcpProxy>) {
    let remote = world
        .sandbox()
        .join(crate::support::world::unique_name("fault"))
        .display()
        .to_string();
    let sandbox = world.sandbox().display().to_string();
    let direct = |port: u16| {
        builder(
            world,
            json!({"communicator": "ssh", "ssh_host": "127.0.0.1", "ssh_port": port,
                   "ssh_username": world.ssh_user(), "ssh_timeout": "60s"}),
        )
    };
    match live {
        Live::WaitSsh => (
            ssh_builder(world, json!({"ssh_timeout": "120s"})),
            json!([{"type": "shell", "inline": ["true"]}]),
            None,
        ),
        Live::Script => (
            direct(world.ssh_port()),
            json!([{"type": "shell", "remote_folder": sandbox,
                    "inline": [format!("echo {SCRIPT_MARKER}"), "sleep 60"]}]),
            None,
        ),
        Live::Upload => {
            let target: std::net::SocketAddr = format!("127.0.0.1:{}", world.ssh_port())
                .parse()
                .expect("sshd address");
            let proxy = crate::support::faultproxy::TcpProxy::start(target);
            proxy.limit_rate(UPLOAD_RATE);
            let big = s.path("big.bin");
            std::fs::File::create(&big)
                .and_then(|f| f.set_len(UPLOAD_BYTES))
                .expect("a big file");
            (
                direct(proxy.port()),
                json!([{"type": "file", "source": big.display().to_string(),
                        "destination": format!("{remote}.bin")}]),
                Some(proxy),
            )
        }
    }
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "none (control: build succeeds)",
        ssh: false,
        copy: true,
        pause: None,
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 after key pair",
        ssh: true,
        copy: false,
        pause: Some("key_pair"),
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 after security group",
        ssh: false,
        copy: false,
        pause: Some("security_group"),
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 before launch returns (after intent)",
        ssh: false,
        copy: false,
        pause: Some("sent_run_instances"),
        source: Some("client-token"),
        live: None,
    },
    Fault {
        name: "kill -9 instance running",
        ssh: false,
        copy: false,
        pause: Some("launch"),
        source: Some("journal"),
        live: None,
    },
    Fault {
        name: "kill -9 instance stopped",
        ssh: false,
        copy: false,
        pause: Some("stop"),
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 mid-create-image",
        ssh: false,
        copy: false,
        pause: Some("create_image"),
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 before copy returns (after intent)",
        ssh: false,
        copy: true,
        pause: Some("sent_copy_image"),
        source: Some("name"),
        live: None,
    },
    Fault {
        name: "kill -9 mid-copy",
        ssh: false,
        copy: true,
        pause: Some("copy"),
        source: None,
        live: None,
    },
    Fault {
        name: "kill -9 waiting for SSH",
        ssh: true,
        copy: false,
        pause: None,
        source: None,
        live: Some(Live::WaitSsh),
    },
    Fault {
        name: "kill -9 mid-upload (file provisioner)",
        ssh: true,
        copy: false,
        pause: None,
        source: None,
        live: Some(Live::Upload),
    },
    Fault {
        name: "kill -9 mid-script (shell provisioner)",
        ssh: true,
        copy: false,
        pause: None,
        source: None,
        live: Some(Live::Script),
    },
];

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn cleanup_after_kill_9_at_each_phase_leaves_only_a_finished_builds_amis() {
    let world = world_or_skip!();
    let mut rows: Vec<(&str, Tally)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for f in FAULTS {
        let mut tally = Tally::default();
        for round in 0..rounds() {
            let ctx = format!("{} (round {round})", f.name);
            let extra = if f.copy {
                json!({"ami_regions": ["us-west-2"]})
            } else {
                json!({})
            };
            let b = if f.ssh {
                ssh_builder(&world, extra)
            } else {
                builder(&world, extra)
            };
            let provisioners = if f.ssh {
                json!([{"type": "shell", "inline": ["true"]}])
            } else {
                json!([])
            };
            let s = Scratch::new();
            let (b, provisioners, proxy) = match f.live {
                Some(live) => live_setup(&world, &s, live),
                None => (b, provisioners, None),
            };
            let s = s.with("t.json", &template(b, provisioners));
            let e = env(&world);
            let before = state(&world);
            tally.runs += 1;
            let pause = f.pause.map(|p| format!("{p}:120"));
            let mut building = Building::start(&s, &e, pause.as_deref());
            let mut kept: Vec<String> = Vec::new();
            if f.pause.is_some() || f.live.is_some() {
                match f.live {
                    None => {
                        building.wait_for("test hook: pausing");
                    }
                    Some(Live::WaitSsh) => {
                        building.wait_for("Waiting for SSH to become available");
                    }
                    Some(Live::Script) => {
                        building.wait_for(SCRIPT_MARKER);
                    }
                    Some(Live::Upload) => {
                        let p = proxy.as_ref().expect("the upload's proxy");
                        // Handshake and login are a few kB: past 3 MiB, the upload runs.
                        if !p.wait_up_bytes(3 << 20, MARKER_TIMEOUT) {
                            problems.push(format!("{ctx}: the upload never got under way"));
                        }
                        if p.up_bytes() >= UPLOAD_BYTES {
                            problems.push(format!("{ctx}: the upload had ended before the kill"));
                        }
                    }
                }
                let (out, _) = building.kill9();
                // The fault is real: something of the run exists now.
                let found = leaks(&before, &state(&world), &[]);
                if found.is_empty() {
                    problems.push(format!("{ctx}: nothing existed after the kill:\n{out}"));
                }
            } else {
                let (code, out, err) = building.finish();
                if code == 0 {
                    tally.succeeded += 1;
                    kept = amis_of(&out);
                    assert_eq!(kept.len(), 2, "{ctx}: {out}");
                } else {
                    problems.push(format!("{ctx}: build failed ({code}):\n{out}\n{err}"));
                }
            }
            if let Some(src) = f.source {
                let d = cleanup(&e, &["--dry-run"]);
                let listed = d
                    .stdout
                    .lines()
                    .any(|l| l.split_whitespace().last() == Some(src) && l.starts_with("us-"));
                if d.code != 0 || !listed {
                    problems.push(format!(
                        "{ctx}: the dry run lists nothing found by {src}:\n{}\n{}",
                        d.stdout, d.stderr
                    ));
                }
            }
            // A successful build archived its journal: with no journal left, cleanup searches
            // the configured region by tag, here the emulator's.
            let endpoint = world.ec2_endpoint().to_string();
            let r = cleanup(&e, &["--endpoint-url", &endpoint]);
            if r.code != 0 {
                problems.push(format!(
                    "{ctx}: cleanup exited {}:\n{}\n{}",
                    r.code, r.stdout, r.stderr
                ));
            }
            let after = state(&world);
            let left = leaks(&before, &after, &kept);
            tally.leaked += left.len();
            if !left.is_empty() {
                problems.push(format!(
                    "{ctx}: left after cleanup: {left:?}\ncleanup said:\n{}\n{}",
                    r.stdout, r.stderr
                ));
            }
            for a in &kept {
                let region = if after["us-east-1"].images.contains_key(a) {
                    "us-east-1"
                } else {
                    "us-west-2"
                };
                if !after[region].images.contains_key(a) {
                    problems.push(format!("{ctx}: the product AMI {a} was removed"));
                }
            }
            // Every journal is archived; a second cleanup finds nothing.
            let (live, done) = journals(e.journal.path());
            if !live.is_empty() || done.len() != 1 {
                problems.push(format!("{ctx}: journals left {live:?}, archived {done:?}"));
            }
            let again = cleanup(
                &e,
                &[
                    "--region",
                    "us-east-1",
                    "--region",
                    "us-west-2",
                    "--endpoint-url",
                    &endpoint,
                ],
            );
            if again.code != 0 || !again.stdout.contains("nothing to remove") {
                problems.push(format!(
                    "{ctx}: second cleanup: {}\n{}\n{}",
                    again.code, again.stdout, again.stderr
                ));
            }
            if state(&world) != after {
                problems.push(format!("{ctx}: the second cleanup changed something"));
            }
        }
        rows.push((f.name, tally));
    }
    let table = print_table(&rows);
    println!("\n{table}");
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n\n"));
    assert!(rows.iter().all(|(_, t)| t.leaked == 0), "{table}");
}

/// A build killed at `pause` with `extra` builder options: its journal directory and the
/// emulator state before it.
fn killed_build(
    world: &TestWorld,
    extra: Value,
    pause: &str,
) -> (Env, BTreeMap<&'static str, Region>) {
    let s = Scratch::new().with("t.json", &template(builder(world, extra), json!([])));
    let e = env(world);
    let before = state(world);
    let mut b = Building::start(&s, &e, Some(&format!("{pause}:120")));
    b.wait_for("test hook: pausing");
    b.kill9();
    (e, before)
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn cleanup_dry_run_lists_what_would_go_and_changes_nothing() {
    let world = world_or_skip!();
    let (e, before) = killed_build(&world, json!({}), "create_image");
    let killed = state(&world);
    let (live, _) = journals(e.journal.path());
    assert_eq!(live.len(), 1);
    let run_id = journal_events(e.journal.path())[0][0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();

    let r = cleanup(&e, &["--dry-run"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("REGION "))
        .unwrap_or_else(|| panic!("no table in:\n{}", r.stdout));
    assert_eq!(
        lines[head].split_whitespace().collect::<Vec<_>>(),
        ["REGION", "KIND", "ID", "RUN", "BUILD", "AGE", "SOURCE"]
    );
    let rows: Vec<Vec<&str>> = lines[head + 1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .filter(|c: &Vec<&str>| c.len() == 7)
        .collect();
    let kinds: BTreeSet<&str> = rows.iter().map(|c| c[1]).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ami", "instance", "security-group", "volume"]),
        "{}",
        r.stdout
    );
    for c in &rows {
        assert_eq!(c[0], "us-east-1");
        assert_eq!(c[3], run_id);
        assert_eq!(c[4], "amazon-ebs");
        assert!(c[5].ends_with('s'), "age {}", c[5]);
        let want = if c[1] == "volume" { "tag" } else { "journal" };
        assert_eq!(c[6], want, "{c:?}");
    }
    // The instance in the table is the one the emulator runs.
    let inst = rows
        .iter()
        .find(|c| c[1] == "instance")
        .expect("instance row");
    assert_eq!(killed["us-east-1"].instances[inst[2]], "stopped");
    assert!(
        r.stdout.contains("(dry run, nothing changed)"),
        "{}",
        r.stdout
    );
    assert_eq!(state(&world), killed, "a dry run changes nothing");
    assert_eq!(journals(e.journal.path()).0, live, "nor the journals");

    // From another machine (no journal), in every region, by tags alone.
    let other = env(&world);
    let endpoint = world.ec2_endpoint().to_string();
    let r = cleanup(
        &other,
        &[
            "--dry-run",
            "--all-regions",
            "--older-than",
            "0s",
            "--endpoint-url",
            &endpoint,
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let tagged: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() == 7 && c[0] == "us-east-1")
        .collect();
    assert!(
        tagged.iter().any(|c| c[2] == inst[2] && c[6] == "tag"),
        "{}",
        r.stdout
    );
    assert!(
        tagged.iter().any(|c| c[1] == "ami" && c[6] == "tag"),
        "the half-made AMI is marked temporary: {}",
        r.stdout
    );
    assert_eq!(state(&world), killed, "a dry run changes nothing");

    // Machine-readable: one record per resource.
    let r = cleanup(&e, &["--dry-run", "-machine-readable"]);
    assert_eq!(r.code, 0);
    let records = r
        .stdout
        .lines()
        .filter(|l| l.contains(",cleanup-resource,us-east-1,"))
        .count();
    assert_eq!(records, rows.len(), "{}", r.stdout);

    // The next build says so at start.
    let s = Scratch::new().with(
        "t.json",
        &template(
            builder(
                &world,
                json!({"source_ami_filter": {"filters": {"name": "no-such-*"}, "owners": ["self"]}}),
            ),
            json!([]),
        ),
    );
    let b = build(&s, &e, &["t.json"], &[]);
    assert_eq!(b.code, 1);
    assert!(
        b.stderr.contains(
            "==> Note: 1 earlier run(s) did not finish or left resources behind (journals in "
        ) && b
            .stderr
            .contains("see them with `imgbuild cleanup --dry-run`"),
        "{}",
        b.stderr
    );

    let r = cleanup(&e, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let left = leaks(&before, &state(&world), &[]);
    assert!(left.is_empty(), "{left:?}\n{}", r.stdout);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn cleanup_leaves_a_running_build_alone() {
    let world = world_or_skip!();
    let s = Scratch::new().with("t.json", &template(builder(&world, json!({})), json!([])));
    let e = env(&world);
    let before = state(&world);
    // Held for an hour (the interrupt at the end cuts the hold short): with a shorter hold, two
    // cleanups on a loaded machine could outlast it and the build would go on and change the
    // state this test compares.
    let mut b = Building::start(&s, &e, Some("launch:3600"));
    b.wait_for("test hook: pausing");
    let running = state(&world);
    assert!(!leaks(&before, &running, &[]).is_empty());

    // Its journal is locked by the running build.
    let r = cleanup(&e, &["--older-than", "0s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("still running: a process (pid "),
        "{}",
        r.stdout
    );
    assert_eq!(
        state(&world),
        running,
        "nothing of the running build was touched"
    );
    // Without its journal (another machine's cleanup): by tags, and too young.
    let other = env(&world);
    let endpoint = world.ec2_endpoint().to_string();
    let r = cleanup(
        &other,
        &["--region", "us-east-1", "--endpoint-url", &endpoint],
    );
    // Skipped for its age: its resources are still there, so not a success.
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("found by tags only and younger than --older-than"),
        "{}",
        r.stdout
    );
    assert_eq!(
        state(&world),
        running,
        "nothing of the running build was touched"
    );

    let (code, out, err) = b.interrupt();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(leaks(&before, &state(&world), &[]).is_empty());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn two_cleanups_at_once_both_succeed_and_leave_nothing() {
    let world = world_or_skip!();
    let (e, before) = killed_build(&world, json!({"ami_regions": ["us-west-2"]}), "copy");
    assert!(leaks(&before, &state(&world), &[]).len() >= 5);
    // Both at once, each bounded (`imgbuild_env` kills its child past its bound and fails). The
    // earlier bounded wait here could not end: a scoped thread is joined at the end of its
    // scope, so a hanging cleanup hung the test instead of failing it.
    let vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let runs: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| imgbuild_env(dir.path(), &["cleanup", "-color=false"], None, &vars))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    for r in runs {
        let r = r.unwrap_or_else(|_| panic!("a cleanup run failed (see its panic above)"));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    }
    let left = leaks(&before, &state(&world), &[]);
    assert!(left.is_empty(), "{left:?}");
    let (live, done) = journals(e.journal.path());
    assert!(live.is_empty() && done.len() == 1, "{live:?} {done:?}");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn cleanup_by_tags_alone_removes_undelivered_images_but_never_a_product() {
    let world = world_or_skip!();
    // A successful build whose journal is then lost: its AMI is a product.
    let s = Scratch::new().with("t.json", &template(builder(&world, json!({})), json!([])));
    let e = env(&world);
    let before = state(&world);
    let ok = build(&s, &e, &["t.json"], &[]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    let product = ami_from_stdout(&ok.stdout, "us-east-1");
    let snaps = state(&world)["us-east-1"].images[&product].2.clone();
    let tags = &state(&world)["us-east-1"].images[&product].1;
    assert!(!tags.contains_key("imgbuild:temporary"), "{tags:?}");
    // A build killed mid-create-image, whose journal is lost too.
    let (e2, _) = killed_build(&world, json!({}), "create_image");
    let killed = state(&world);
    let temp: Vec<&String> = killed["us-east-1"]
        .images
        .iter()
        .filter(|(_, (_, t, _))| t.contains_key("imgbuild:temporary"))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(temp.len(), 1, "the half-made AMI is marked temporary");
    for j in journals(e.journal.path())
        .0
        .iter()
        .chain(&journals(e2.journal.path()).0)
    {
        std::fs::remove_file(j).expect("lose the journal");
    }
    let endpoint = world.ec2_endpoint().to_string();
    let args = ["--region", "us-east-1", "--endpoint-url", endpoint.as_str()];
    // Too young by default: skipped, and left (exit 3).
    let r = cleanup(&e, &args);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(state(&world), killed);
    // Old enough: the killed run goes entirely, the product stays.
    let mut all = args.to_vec();
    all.extend(["--older-than", "0s"]);
    let r = cleanup(&e, &all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let after = state(&world);
    let left = leaks(&before, &after, std::slice::from_ref(&product));
    assert!(left.is_empty(), "{left:?}\n{}", r.stdout);
    assert!(after["us-east-1"].images.contains_key(&product));
    for sn in &snaps {
        assert!(
            after["us-east-1"].snapshots.contains_key(sn),
            "product snapshot {sn}"
        );
    }
}

#[test]
fn cleanup_that_cannot_reach_ec2_exits_3_and_keeps_the_journal() {
    let dir = tempfile::tempdir().expect("dir");
    let port = crate::support::tools::closed_port();
    let journal = dir
        .path()
        .join("0190c4a2-7b3e-7cc0-8000-000000000001.b.jsonl");
    let lines = [
        json!({"event": "started", "run_id": "0190c4a2-7b3e-7cc0-8000-000000000001", "build": "b",
               "pid": 999_999_999u64, "at": 1_720_000_000, "endpoint": format!("http://127.0.0.1:{port}")}),
        json!({"event": "created", "seq": 1, "undo": "terminate_instance", "region": "us-east-1", "id": "i-0123456789abcdef0"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&journal, text).expect("write journal");
    let j = journal.display().to_string();
    let vars = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let r = imgbuild_env(dir.path(), &["cleanup", "--journal", &j], None, &vars);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("these could not be removed")
            && r.stderr
                .contains("instance i-0123456789abcdef0 in us-east-1"),
        "{}",
        r.stderr
    );
    assert!(journal.exists(), "the journal stays until its run is gone");
    // A journal that cannot be read is a usage error.
    let r = imgbuild_env(
        dir.path(),
        &["cleanup", "--journal", "missing.jsonl"],
        None,
        &vars,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot read the journal missing.jsonl"),
        "{}",
        r.stderr
    );
}
