//! Fault injection beyond `kill -9` (whose table is in `cleanup_tests`): EC2 API faults from a
//! proxy between imgbuild and the emulator, SSH cut mid-upload and mid-script, the instance
//! terminated while imgbuild waits for SSH, and eight builds in parallel with faults on. Each
//! test has a world of its own and asserts, by comparing the emulator with a snapshot taken
//! before, that nothing of the run is left but a finished build's AMIs; each prints its rows of
//! the table (fault, runs, builds succeeded, resources leaked).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::support::build::{amis_of, builder, env, journals, ssh_builder, template, Env};
use crate::support::building::{Building, MARKER_TIMEOUT};
use crate::support::cli::Scratch;
use crate::support::faultproxy::{Fault, FaultConfig, HttpFaultProxy, TcpProxy};
use crate::support::faults::rounds;
use crate::support::faults::{print_table, Tally};
use crate::support::state::{leaks, state, Region};
use crate::support::world::{unique_name, TestWorld};

/// The builder with its EC2 calls through `proxy`, a name of its own, and `extra`.
fn proxied(world: &TestWorld, proxy: &HttpFaultProxy, extra: Value) -> Value {
    let mut b = builder(world, extra);
    b["custom_endpoint_ec2"] = json!(proxy.url());
    b["ami_name"] = json!(format!(
        "{}-{{{{timestamp}}}}",
        unique_name("imgbuild-fault")
    ));
    b
}

/// SSH options for the world's sshd at `port` (the sshd itself or a proxy in front of it).
fn ssh_to(world: &TestWorld, port: u16) -> Value {
    json!({"communicator": "ssh", "ssh_host": "127.0.0.1", "ssh_port": port,
           "ssh_username": world.ssh_user(), "ssh_timeout": "60s"})
}

fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(o), Value::Object(b)) = (a.as_object_mut(), b) {
        o.extend(b);
    }
    a
}

/// Instances in `after` and not in `before`, in every region.
fn new_instances(before: &BTreeMap<&str, Region>, after: &BTreeMap<&str, Region>) -> usize {
    after
        .iter()
        .map(|(r, a)| {
            a.instances
                .keys()
                .filter(|id| !before[r].instances.contains_key(*id))
                .count()
        })
        .sum()
}

/// What one build left: the leaks (beyond `kept`) and whether its journal is archived.
fn check_after(
    world: &TestWorld,
    e: &Env,
    before: &BTreeMap<&'static str, Region>,
    kept: &[String],
    ctx: &str,
    problems: &mut Vec<String>,
) -> usize {
    let after = state(world);
    let left = leaks(before, &after, kept);
    if !left.is_empty() {
        problems.push(format!("{ctx}: left behind: {left:?}"));
    }
    // Every journal ends saying its run finished and left nothing (but what it kept); a
    // successful build's is archived (done/) by the build itself.
    let (mut live, done) = journals(e.journal.path());
    live.extend(done);
    for j in &live {
        let text = std::fs::read_to_string(j).unwrap_or_default();
        let last: Value = text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        if last["event"] != "finished" || last["clean"] != true {
            problems.push(format!("{ctx}: journal {} ends with {last}", j.display()));
        }
    }
    if live.is_empty() {
        problems.push(format!("{ctx}: no journal"));
    }
    left.len()
}

struct HttpRow {
    name: &'static str,
    faults: &'static [Fault],
    per_mille: u64,
    /// An SSH build with a shell provisioner and a copy to us-west-2 (every create call).
    full: bool,
    always: &'static [&'static str],
}

const HTTP_ROWS: &[HttpRow] = &[
    HttpRow {
        name: "proxy: RequestLimitExceeded 503 (25%)",
        faults: &[Fault::Throttle],
        per_mille: 250,
        full: false,
        always: &[],
    },
    HttpRow {
        name: "proxy: 500 InternalError / 503 (25%)",
        faults: &[Fault::Internal500, Fault::Unavailable503],
        per_mille: 250,
        full: false,
        always: &[],
    },
    HttpRow {
        name: "proxy: connection reset (25%)",
        faults: &[Fault::ResetBefore],
        per_mille: 250,
        full: false,
        always: &[],
    },
    HttpRow {
        name: "proxy: latency 0.8 s (25%)",
        faults: &[Fault::Latency],
        per_mille: 250,
        full: false,
        always: &[],
    },
    HttpRow {
        name: "proxy: lost answers (every create call, 10%)",
        faults: &[Fault::LostAnswer],
        per_mille: 100,
        full: true,
        always: &[
            "ImportKeyPair",
            "CreateSecurityGroup",
            "AuthorizeSecurityGroupIngress",
            "RunInstances",
            "CreateImage",
            "CopyImage",
        ],
    },
];

#[test]
fn http_faults_between_imgbuild_and_ec2_the_build_succeeds_and_leaks_nothing() {
    let world = world_or_skip!();
    let mut rows: Vec<(&str, Tally)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (n, row) in HTTP_ROWS.iter().enumerate() {
        let mut tally = Tally::default();
        for round in 0..rounds() {
            let ctx = format!("{} (round {round})", row.name);
            let mut config = FaultConfig::new(
                row.faults,
                row.per_mille,
                0x9e37_79b9 + (n * 31 + round) as u64,
            );
            config.always = row.always.to_vec();
            let proxy = HttpFaultProxy::start(world.ec2_endpoint(), config);
            let (b, provisioners) = if row.full {
                (
                    proxied(
                        &world,
                        &proxy,
                        merged(
                            ssh_to(&world, world.ssh_port()),
                            json!({"ami_regions": ["us-west-2"]}),
                        ),
                    ),
                    json!([{"type": "shell", "remote_folder": world.sandbox().display().to_string(),
                            "inline": ["echo provisioned"]}]),
                )
            } else {
                (proxied(&world, &proxy, json!({})), json!([]))
            };
            let s = Scratch::new().with("t.json", &template(b, provisioners));
            let e = env(&world);
            let before = state(&world);
            tally.runs += 1;
            let (code, out, err) = Building::start(&s, &e, None).finish();
            let mut kept = Vec::new();
            if code == 0 {
                tally.succeeded += 1;
                kept = amis_of(&out);
                let want = if row.full { 2 } else { 1 };
                if kept.len() != want {
                    problems.push(format!("{ctx}: {} AMIs, not {want}:\n{out}", kept.len()));
                }
            } else {
                problems.push(format!("{ctx}: build failed ({code}):\n{out}\n{err}"));
            }
            let after = state(&world);
            let made = new_instances(&before, &after);
            if made != 1 {
                problems.push(format!("{ctx}: {made} instances were launched, not 1"));
            }
            tally.leaked += check_after(&world, &e, &before, &kept, &ctx, &mut problems);
            let c = proxy.counts();
            let injected: u64 = c.injected.values().sum();
            if injected == 0 {
                problems.push(format!(
                    "{ctx}: no fault was injected ({} requests)",
                    c.requests
                ));
            }
            if row.faults == [Fault::LostAnswer] {
                // The answer of RunInstances was lost after the instance was made: the SDK's
                // retry carried the same client token and got the first answer back.
                if c.lost_run_instances == 0 || c.replayed == 0 {
                    problems.push(format!(
                        "{ctx}: RunInstances' answer was not lost and replayed: {c:?}"
                    ));
                }
            }
            notes.push(format!(
                "{ctx}: {} requests, {injected} faults {:?}, by call {:?}, replayed by client token {}, duplicate names refused {}",
                c.requests, c.injected, c.by_action, c.replayed, c.duplicate_names
            ));
        }
        rows.push((row.name, tally));
    }
    let table = print_table(&rows);
    println!("\n{table}\n{}", notes.join("\n"));
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n\n"));
    assert!(rows.iter().all(|(_, t)| t.leaked == 0), "{table}");
}

/// How an SSH cut goes.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    Upload,
    Script,
    ScriptRetried,
}

const UPLOAD_BYTES: u64 = 24 << 20;
const MARKER: &str = "imgbuild-fault-script-started";

#[test]
fn ssh_cut_mid_upload_and_mid_script_fails_clearly_or_retries_and_leaks_nothing() {
    let world = world_or_skip!();
    let rows_def: [(&str, Cut); 3] = [
        ("SSH cut mid-upload (file)", Cut::Upload),
        ("SSH cut mid-script (shell)", Cut::Script),
        ("SSH cut mid-script, max_retries 1", Cut::ScriptRetried),
    ];
    let sshd: std::net::SocketAddr = format!("127.0.0.1:{}", world.ssh_port())
        .parse()
        .expect("sshd address");
    let mut rows: Vec<(&str, Tally)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (name, cut) in rows_def {
        let mut tally = Tally::default();
        for round in 0..rounds() {
            let ctx = format!("{name} (round {round})");
            let proxy = TcpProxy::start(sshd);
            let s = Scratch::new();
            let remote = world
                .sandbox()
                .join(unique_name("cut"))
                .display()
                .to_string();
            let sandbox = world.sandbox().display().to_string();
            let provisioners = match cut {
                Cut::Upload => {
                    let big = s.path("big.bin");
                    std::fs::File::create(&big)
                        .and_then(|f| f.set_len(UPLOAD_BYTES))
                        .expect("a big file");
                    proxy.limit_rate(4 << 20);
                    json!([{"type": "file", "source": big.display().to_string(),
                            "destination": format!("{remote}.bin")}])
                }
                Cut::Script => json!([{"type": "shell", "remote_folder": sandbox,
                    "inline": [format!("echo {MARKER}"), "sleep 30"]}]),
                // The second try finds the mark of the first and ends quickly.
                Cut::ScriptRetried => json!([{"type": "shell", "remote_folder": sandbox,
                    "max_retries": 1,
                    "inline": [format!("if [ -e {remote}.mark ]; then echo second try; exit 0; fi"),
                               format!("touch {remote}.mark"),
                               format!("echo {MARKER}"), "sleep 30"]}]),
            };
            let b = builder(&world, ssh_to(&world, proxy.port()));
            let s = s.with("t.json", &template(b, provisioners));
            let e = env(&world);
            let before = state(&world);
            tally.runs += 1;
            let mut building = Building::start(&s, &e, None);
            if cut == Cut::Upload {
                if !proxy.wait_up_bytes(3 << 20, MARKER_TIMEOUT) {
                    problems.push(format!("{ctx}: the upload never got under way"));
                }
            } else {
                building.wait_for(MARKER);
            }
            let bytes = proxy.up_bytes();
            proxy.cut();
            // Bounded (RUN_TIMEOUT): a build that never noticed the cut fails the test there.
            let (code, out, err) = building.finish();
            let mut kept = Vec::new();
            match cut {
                Cut::Upload | Cut::Script => {
                    let (what, says) = if cut == Cut::Upload {
                        if bytes >= UPLOAD_BYTES {
                            problems.push(format!("{ctx}: the upload had ended before the cut"));
                        }
                        ("provisioner 1 (file) failed", "upload")
                    } else {
                        ("provisioner 1 (shell) failed", "disconnected unexpectedly")
                    };
                    if code != 1 || !err.contains(what) || !err.to_lowercase().contains(says) {
                        problems.push(format!(
                            "{ctx}: want exit 1 naming `{what}` and `{says}`, got {code}:\n{out}\n{err}"
                        ));
                    }
                }
                Cut::ScriptRetried => {
                    if code == 0 && out.contains("second try") {
                        tally.succeeded += 1;
                        kept = amis_of(&out);
                    } else {
                        problems.push(format!(
                            "{ctx}: the retry did not succeed ({code}):\n{out}\n{err}"
                        ));
                    }
                }
            }
            let said = err
                .lines()
                .find(|l| l.contains("failed") || l.contains("Retrying"))
                .or_else(|| out.lines().find(|l| l.contains("Retrying")))
                .unwrap_or("");
            notes.push(format!("{ctx}: exit {code}: {said}"));
            tally.leaked += check_after(&world, &e, &before, &kept, &ctx, &mut problems);
        }
        rows.push((name, tally));
    }
    let table = print_table(&rows);
    println!("\n{table}\n{}", notes.join("\n"));
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n\n"));
    assert!(rows.iter().all(|(_, t)| t.leaked == 0), "{table}");
}

#[test]
fn instance_terminated_while_waiting_for_ssh_is_reported_and_torn_down() {
    let world = world_or_skip!();
    let name = "instance terminated while waiting for SSH";
    let mut tally = Tally::default();
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for round in 0..rounds() {
        let ctx = format!("{name} (round {round})");
        // Nothing answers on the SSH port: the wait could last the whole ssh_timeout, an hour,
        // far longer than `Building::finish` waits (RUN_TIMEOUT). So a build that ends in time
        // was stopped by the instance watch, which the message below confirms.
        let b = ssh_builder(&world, json!({"ssh_timeout": "1h"}));
        let s = Scratch::new().with(
            "t.json",
            &template(b, json!([{"type": "shell", "inline": ["true"]}])),
        );
        let e = env(&world);
        let before = state(&world);
        tally.runs += 1;
        let mut building = Building::start(&s, &e, None);
        let line = building.wait_for("Instance ID: ");
        let id = line
            .split("Instance ID: ")
            .nth(1)
            .expect("an instance ID")
            .trim()
            .to_string();
        building.wait_for("Waiting for SSH to become available");
        let target = id.clone();
        world.ec2(|c| async move {
            c.terminate_instances()
                .instance_ids(target)
                .send()
                .await
                .expect("TerminateInstances")
        });
        let (code, out, err) = building.finish();
        if code != 1
            || !err.contains(&format!(
                "the source instance {id} in us-east-1 is terminated"
            ))
            || !err.contains("Client.UserInitiatedShutdown")
        {
            problems.push(format!(
                "{ctx}: want exit 1 with the state and its reason, got {code}:\n{out}\n{err}"
            ));
        }
        let said = err.lines().find(|l| l.contains(&id)).unwrap_or("");
        notes.push(format!("{ctx}: exit {code} after the termination: {said}"));
        tally.leaked += check_after(&world, &e, &before, &[], &ctx, &mut problems);
    }
    let rows = [(name, tally)];
    let table = print_table(&rows);
    println!("\n{table}\n{}", notes.join("\n"));
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n\n"));
    assert!(rows.iter().all(|(_, t)| t.leaked == 0), "{table}");
}

/// Every `REGION: ami-...` artifact line of a run with many builds.
fn all_amis(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.split_once("us-east-1: ami-")
                .map(|(_, id)| format!("ami-{}", id.trim()))
        })
        .collect()
}

#[test]
fn eight_builds_in_parallel_with_http_faults_all_succeed_and_leak_nothing() {
    let world = world_or_skip!();
    const BUILDS: usize = 8;
    let name = "8 parallel builds, mixed HTTP faults (15%)";
    let mut tally = Tally::default();
    let mut problems: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for round in 0..rounds() {
        let ctx = format!("{name} (round {round})");
        let proxy = HttpFaultProxy::start(
            world.ec2_endpoint(),
            FaultConfig::new(&Fault::ALL, 150, 0x5eed + round as u64),
        );
        let builders: Vec<Value> = (1..=BUILDS)
            .map(|i| {
                let mut b = proxied(&world, &proxy, json!({}));
                b["name"] = json!(format!("p{i}"));
                b
            })
            .collect();
        let t = json!({"variables": {"project": "imgbuild"}, "builders": builders});
        let s = Scratch::new().with("t.json", &t.to_string());
        let e = env(&world);
        let before = state(&world);
        tally.runs += BUILDS;
        let (code, out, err) = Building::start(&s, &e, None).finish();
        let kept = all_amis(&out);
        tally.succeeded += kept.len();
        if code != 0 || kept.len() != BUILDS {
            problems.push(format!(
                "{ctx}: exit {code}, {} AMIs:\n{out}\n{err}",
                kept.len()
            ));
        }
        let made = new_instances(&before, &state(&world));
        if made != BUILDS {
            problems.push(format!(
                "{ctx}: {made} instances were launched, not {BUILDS}"
            ));
        }
        tally.leaked += check_after(&world, &e, &before, &kept, &ctx, &mut problems);
        let c = proxy.counts();
        if c.injected.len() < 4 {
            problems.push(format!("{ctx}: too few kinds of fault injected: {c:?}"));
        }
        notes.push(format!(
            "{ctx}: {} requests, faults {:?}",
            c.requests, c.injected
        ));
    }
    let rows = [(name, tally)];
    let table = print_table(&rows);
    println!("\n{table}\n{}", notes.join("\n"));
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n\n"));
    assert!(rows.iter().all(|(_, t)| t.leaked == 0), "{table}");
}
