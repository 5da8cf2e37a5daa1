//! Post-processors, `-machine-readable` and secrets, end to end: `imgbuild build` of
//! `communicator: none` templates against a test world of each test's own, with the files a
//! pipeline reads (manifest, AMI ID outputs) parsed back and compared with what the emulator
//! holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::build::{build, builder, env, summary_of, Env, SOURCE_AMI};
use crate::support::building::interrupt;
use crate::support::cli::{imgbuild_bin, imgbuild_in, Run, Scratch};
use crate::support::state::{assert_nothing_left, state};
use crate::support::world::TestWorld;

/// A template of one builder (see [`builder`]; `extra` merged into it) and `post-processors`.
fn template(world: &TestWorld, extra: Value, post_processors: Value) -> String {
    json!({
        "variables": {"project": "imgbuild"},
        "builders": [builder(world, extra)],
        "post-processors": post_processors
    })
    .to_string()
}

/// The AMI per region of the first artifact in human output (`us-east-1: ami-...` lines).
fn amis(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in stdout.lines() {
        if let Some((r, a)) = l.split_once(": ami-") {
            if r.starts_with("us-") && !r.contains(' ') && !out.contains_key(r) {
                out.insert(r.to_string(), format!("ami-{}", a.trim()));
            }
        }
    }
    assert!(!out.is_empty(), "no `region: ami-...` line in:\n{stdout}");
    out
}

/// A manifest's text without the `imgbuild_timeline` members imgbuild adds last to each entry
/// (their figures differ from run to run), so that the rest compares as Packer writes it.
fn without_timeline(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find(",\n      \"imgbuild_timeline\": {") {
        let end = out[start..]
            .find("\n      }")
            .map(|i| start + i + "\n      }".len())
            .expect("the member's closing brace");
        out.replace_range(start..end, "");
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

#[test]
fn pp_manifest_is_packers_format_appends_across_runs_and_force_starts_over() {
    let world = world_or_skip!();
    let e = env(&world);
    let t = template(
        &world,
        json!({"name": "web-worker", "ami_name": "imgbuild-pp-{{uuid}}", "ami_regions": ["us-west-2"]}),
        json!([
            {"type": "manifest", "output": "out/manifest.json",
             "custom_data": {"source_ami": "{{ build `SourceAMI` }}", "region": "{{ .BuildRegion }}",
                             "project": "{{user `project`}}"}},
            [{"type": "manifest", "output": "stripped.json", "strip_time": true, "strip_path": true,
              "keep_input_artifact": false}]
        ]),
    );
    let s = Scratch::new().with("t.json", &t);
    let before = state(&world);
    let started = chrono::Utc::now().timestamp();
    let r = build(&s, &e, &["t.json"], &[]);
    let ended = chrono::Utc::now().timestamp();
    ok(&r);
    let a = amis(&r.stdout);
    let (east, west) = (a["us-east-1"].clone(), a["us-west-2"].clone());
    let after = state(&world);
    assert_nothing_left(
        &before,
        &after,
        &[&east, &west],
        "after a build with manifests",
    );
    let run_id = after["us-east-1"].images[&east].1["imgbuild:run-id"].clone();

    // Packer's messages, and its artifact list: the builder's, then what each chain passed on.
    assert_eq!(
        r.stdout
            .matches("==> web-worker: Running post-processor: manifest\n")
            .count(),
        2,
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(
        "==> web-worker (manifest): keep_input_artifact=false is ignored: manifest passes its input artifact on\n"
    ), "{}", r.stdout);
    // The summary names each AMI once (Packer lists them once per artifact: 3 times here).
    assert_eq!(
        summary_of(&r.stdout),
        format!(
            "==> Builds finished. The artifacts of successful builds are:
--> web-worker: AMIs were created:
us-east-1: {east}
us-west-2: {west}

==> Build outcomes: 1 succeeded, 0 failed
BUILD | OUTCOME | DURATION | ARTIFACTS
web-worker | succeeded | <took> | us-east-1:{east},us-west-2:{west}"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("NOT run") && !r.stderr.contains("NOT run"));

    // The file, byte for byte as Packer writes it.
    let m = parse(&s.path("out/manifest.json"));
    let time = m["builds"][0]["build_time"].as_i64().expect("build_time");
    assert!(
        (started..=ended).contains(&time),
        "{time} not in {started}..={ended}"
    );
    let expected = format!(
        r#"{{
  "builds": [
    {{
      "name": "web-worker",
      "builder_type": "amazon-ebs",
      "build_time": {time},
      "files": null,
      "artifact_id": "us-east-1:{east},us-west-2:{west}",
      "packer_run_uuid": "{run_id}",
      "custom_data": {{
        "project": "imgbuild",
        "region": "us-east-1",
        "source_ami": "{SOURCE_AMI}"
      }}
    }}
  ],
  "last_run_uuid": "{run_id}"
}}"#
    );
    let text = read(&s.path("out/manifest.json"));
    assert!(text.contains("\"imgbuild_timeline\": {"), "{text}");
    assert_eq!(without_timeline(&text), expected);
    let stripped = parse(&s.path("stripped.json"));
    let keys: BTreeSet<&str> = stripped["builds"][0]
        .as_object()
        .expect("entry")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "name",
            "builder_type",
            "files",
            "artifact_id",
            "packer_run_uuid",
            "custom_data",
            "imgbuild_timeline"
        ]),
        "strip_time leaves build_time out"
    );
    assert_eq!(stripped["builds"][0]["custom_data"], Value::Null);

    // A second run appends; the first entry is as it was.
    let r2 = build(&s, &e, &["t.json"], &[]);
    ok(&r2);
    let m2 = parse(&s.path("out/manifest.json"));
    let builds = m2["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0], m["builds"][0]);
    let run2 = builds[1]["packer_run_uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    assert_ne!(run2, run_id);
    assert_eq!(m2["last_run_uuid"], run2.as_str());
    let a2 = amis(&r2.stdout);
    assert_eq!(
        builds[1]["artifact_id"],
        format!(
            "us-east-1:{},us-west-2:{}",
            a2["us-east-1"], a2["us-west-2"]
        )
        .as_str()
    );

    // -force in a new run starts the manifest over.
    let r3 = build(&s, &e, &["-force", "t.json"], &[]);
    ok(&r3);
    let m3 = parse(&s.path("out/manifest.json"));
    assert_eq!(m3["builds"].as_array().map(Vec::len), Some(1));
    assert_eq!(m3["builds"][0]["packer_run_uuid"], m3["last_run_uuid"]);
    assert_ne!(m3["last_run_uuid"], run2.as_str());
    // No lock or temporary file is left next to the outputs.
    assert_eq!(
        names_in(s.dir.path()),
        BTreeSet::from(["t.json".into(), "out".into(), "stripped.json".into()])
    );
    assert_eq!(
        names_in(&s.path("out")),
        BTreeSet::from(["manifest.json".into()])
    );
}

#[test]
fn pp_ami_outputs_feed_a_cloudformation_update_stack() {
    let world = world_or_skip!();
    let e = env(&world);
    let t = template(
        &world,
        json!({"name": "web_worker", "ami_regions": ["us-west-2"]}),
        json!([{"type": "ami-outputs", "json_output": "deploy/amis.json",
                "env_output": "deploy/amis.env"}]),
    );
    // What an earlier run and another template left there.
    let s = Scratch::new()
        .with("t.json", &t)
        .with(
            "deploy/amis.env",
            "API_AMI=ami-api\nWEB_WORKER_AMI=ami-stale\nWEB_WORKER_AMI_EU_WEST_1=ami-stale\n",
        )
        .with(
            "deploy/amis.json",
            r#"{"api": {"eu-west-1": "ami-api"}, "web_worker": {"eu-west-1": "ami-stale"}}"#,
        );
    let r = build(&s, &e, &["t.json"], &[]);
    ok(&r);
    let a = amis(&r.stdout);
    let (east, west) = (&a["us-east-1"], &a["us-west-2"]);
    assert_eq!(
        read(&s.path("deploy/amis.env")),
        format!(
            "API_AMI=ami-api\nWEB_WORKER_AMI={east}\nWEB_WORKER_AMI_US_EAST_1={east}\nWEB_WORKER_AMI_US_WEST_2={west}\n"
        )
    );
    assert_eq!(
        parse(&s.path("deploy/amis.json")),
        json!({"api": {"eu-west-1": "ami-api"},
               "web_worker": {"us-east-1": east, "us-west-2": west}})
    );
    assert!(
        r.stdout
            .contains("==> web_worker (ami-outputs): Wrote the AMI variables to deploy/amis.env\n"),
        "{}",
        r.stdout
    );

    // The README's pipeline step, with a stand-in `aws` that records its arguments.
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let aws = bin.join("aws");
    std::fs::write(&aws, "#!/bin/sh\nprintf '%s\\n' \"$@\" >> \"$AWS_ARGS\"\n").expect("aws");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = r#"set -eu
. ./deploy/amis.env
aws cloudformation update-stack --stack-name mail_ape_1_0 --use-previous-template \
  --parameters "ParameterKey=WorkerAMI,ParameterValue=$WEB_WORKER_AMI" \
               "ParameterKey=InstanceProfile,UsePreviousValue=true" \
  --region us-east-1
if command -v jq >/dev/null; then
  aws cloudformation update-stack --stack-name mail_ape_1_0 --use-previous-template \
    --parameters "ParameterKey=WorkerAMI,ParameterValue=$(jq -r '.web_worker["us-west-2"]' deploy/amis.json)" \
    --region us-west-2
fi
"#;
    let args = s.path("aws-args.txt");
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(s.dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("AWS_ARGS", &args)
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{out:?}");
    let recorded = read(&args);
    assert!(
        recorded.contains(&format!("\nParameterKey=WorkerAMI,ParameterValue={east}\n")),
        "{recorded}"
    );
    if recorded.matches("update-stack").count() == 2 {
        assert!(
            recorded.contains(&format!("\nParameterKey=WorkerAMI,ParameterValue={west}\n")),
            "{recorded}"
        );
    } else {
        eprintln!("jq is not installed: the jq form of the pipeline step was not run");
    }
}

#[test]
fn pp_shell_local_sees_the_artifact_and_a_failing_one_fails_the_build_but_keeps_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    let script = json!([
        "echo \"id=$IMGBUILD_ARTIFACT_ID\"",
        "echo \"ami=$IMGBUILD_AMI east=$IMGBUILD_AMI_US_EAST_1 west=$IMGBUILD_AMI_US_WEST_2\"",
        "echo \"name=$PACKER_BUILD_NAME type=$PACKER_BUILDER_TYPE greeting=$GREETING\"",
        "echo \"source={{ build `SourceAMI` }}\"",
        "echo to-stderr >&2",
        "exit 3"
    ]);
    let b =
        json!({"name": "web", "ami_name": "imgbuild-pp-{{uuid}}", "ami_regions": ["us-west-2"]});
    let t = template(
        &world,
        b.clone(),
        json!([[
            {"type": "shell-local", "inline": script, "valid_exit_codes": [0, 3],
             "environment_vars": ["GREETING=hello {{ build `SourceAMI` }}"]},
            "manifest"
        ]]),
    );
    let s = Scratch::new().with("t.json", &t);
    let r = build(&s, &e, &["t.json"], &[]);
    ok(&r);
    let a = amis(&r.stdout);
    let (east, west) = (&a["us-east-1"], &a["us-west-2"]);
    for line in [
        "==> web: Running post-processor: shell-local".to_string(),
        format!("    web (shell-local): id=us-east-1:{east},us-west-2:{west}"),
        format!("    web (shell-local): ami={east} east={east} west={west}"),
        format!("    web (shell-local): name=web type=amazon-ebs greeting=hello {SOURCE_AMI}"),
        format!("    web (shell-local): source={SOURCE_AMI}"),
        "==> web: Running post-processor: manifest".to_string(),
    ] {
        assert!(
            r.stdout.lines().any(|l| l == line),
            "{line} in:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stderr
            .lines()
            .any(|l| l == "    web (shell-local): to-stderr"),
        "{}",
        r.stderr
    );
    // The manifest after it in the chain got the artifact.
    let m = parse(&s.path("packer-manifest.json"));
    assert_eq!(
        m["builds"][0]["artifact_id"],
        format!("us-east-1:{east},us-west-2:{west}").as_str()
    );

    // The same script without exit code 3 allowed fails the build (exit 1), in -machine-readable
    // form; the AMIs stay, the chain stops there, and the next chain still runs.
    let t = template(
        &world,
        b,
        json!([
            [{"type": "shell-local", "inline": script}, "manifest"],
            [{"type": "manifest", "output": "other.json"}]
        ]),
    );
    let s2 = Scratch::new().with("t.json", &t);
    let before = state(&world);
    let r = build(&s2, &e, &["-machine-readable", "t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr, "",
        "-machine-readable writes everything to stdout"
    );
    let after = state(&world);
    let kept: Vec<&String> = after["us-east-1"]
        .images
        .keys()
        .chain(after["us-west-2"].images.keys())
        .filter(|k| !before["us-east-1"].images.contains_key(*k))
        .filter(|k| !before["us-west-2"].images.contains_key(*k))
        .collect();
    assert_eq!(kept.len(), 2, "the AMIs in both regions are kept: {kept:?}");
    let kept: Vec<&str> = kept.iter().map(|k| k.as_str()).collect();
    assert_nothing_left(&before, &after, &kept, "after a failing post-processor");
    let other = parse(&s2.path("other.json"));
    let id = other["builds"][0]["artifact_id"]
        .as_str()
        .expect("artifact id")
        .to_string();
    for k in &kept {
        assert!(id.contains(k), "{id} names {k}");
    }
    assert!(
        !s2.path("packer-manifest.json").exists(),
        "the chain stopped at the failing post-processor"
    );
    // Packer's records for a failed build.
    let records: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.splitn(4, ',').collect())
        .collect();
    let of = |kind: &str| -> Vec<&Vec<&str>> {
        records.iter().filter(|f| f.get(2) == Some(&kind)).collect()
    };
    let ec = of("error-count");
    assert_eq!(ec.len(), 1, "{}", r.stdout);
    assert_eq!((ec[0][1], ec[0][3]), ("", "1"));
    let err = of("error");
    assert_eq!(err.len(), 1);
    assert_eq!(err[0][1], "web");
    assert!(
        err[0][3].starts_with(
            "Post-processor failed: shell-local: Script exited with non-zero exit status: 3. Allowed exit codes are: [0]"
        ),
        "{}",
        err[0][3]
    );
    assert!(of("artifact").is_empty() && of("artifact-count").is_empty());
    let escaped_id = id.replace(',', "%!(PACKER_COMMA)");
    assert!(
        r.stdout.contains(&format!(
            ",,ui,message,    web (shell-local): id={escaped_id}\n"
        )),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains(",,ui,error,    web (shell-local): to-stderr\n"));
    let last = r.stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains(",,ui,error,error: 1 of 1 build(s) failed (web); the AMIs of builds that failed after creating them were kept (web: us-east-1:"),
        "{last}"
    );
}

#[test]
fn pp_machine_readable_lines_are_packers_and_the_awk_pipeline_gets_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    let s = Scratch::new().with("t.json", &template(&world, json!({}), json!([])));
    let started = chrono::Utc::now().timestamp();
    let r = build(&s, &e, &["-machine-readable", "t.json"], &[]);
    ok(&r);
    assert_eq!(
        r.stderr, "",
        "-machine-readable writes everything to stdout"
    );
    let now = chrono::Utc::now().timestamp();
    let mut kinds = BTreeSet::new();
    for l in r.stdout.lines() {
        let f: Vec<&str> = l.splitn(4, ',').collect();
        assert!(f.len() >= 3, "{l}");
        let ts: i64 = f[0].parse().unwrap_or_else(|_| panic!("timestamp in {l}"));
        // Printed during the build (not "in the last two minutes", which a loaded machine can
        // exceed).
        assert!((started..=now).contains(&ts), "{l}");
        match f[2] {
            "ui" => {
                let (sub, _) = f[3].split_once(',').unwrap_or((f[3], ""));
                assert!(matches!(sub, "say" | "message" | "error"), "{l}");
                assert_eq!(f[1], "", "{l}");
                kinds.insert(format!("ui,{sub}"));
            }
            "artifact-count" | "artifact" => {
                assert_eq!(f[1], "amazon-ebs", "{l}");
                kinds.insert(f[2].to_string());
            }
            // imgbuild's own: the build's timeline (README "Where the time of a build went").
            "timeline" | "timeline-part" | "timeline-total" => {
                assert_eq!(f[1], "amazon-ebs", "{l}");
            }
            other => panic!("unexpected record type {other}: {l}"),
        }
    }
    assert!(kinds.contains("ui,say"), "{kinds:?}");
    assert!(r.stdout.contains(&format!(
        ",,ui,say,==> amazon-ebs: Source AMI: {SOURCE_AMI} ("
    )));
    let ami = state(&world)["us-east-1"]
        .images
        .iter()
        .find(|(_, (name, _, _))| name.starts_with("imgbuild-test-"))
        .map(|(id, _)| id.clone())
        .expect("the AMI");
    // The end, record for record.
    let tail: Vec<String> = r
        .stdout
        .lines()
        .rev()
        .take(7)
        .map(|l| {
            l.split_once(',')
                .map(|x| x.1)
                .unwrap_or_default()
                .to_string()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(
        tail,
        vec![
            "amazon-ebs,artifact-count,1".to_string(),
            "amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs".into(),
            format!("amazon-ebs,artifact,0,id,us-east-1:{ami}"),
            format!("amazon-ebs,artifact,0,string,AMIs were created:\\nus-east-1: {ami}\\n"),
            "amazon-ebs,artifact,0,files-count,0".into(),
            "amazon-ebs,artifact,0,end".into(),
            format!(",ui,say,--> amazon-ebs: AMIs were created:\\nus-east-1: {ami}"),
        ]
    );
    // The pipeline scripts people wrote for Packer.
    for (pipeline, want) in [
        (
            r#"awk -F, '$3=="artifact" && $5=="id" {print $6}'"#,
            format!("us-east-1:{ami}\n"),
        ),
        (
            r#"awk -F, '$3=="artifact" && $5=="id" {print $6}' | cut -d: -f2"#,
            format!("{ami}\n"),
        ),
        (
            r#"awk -F: '/artifact,0,id/ {print $2}'"#,
            format!("{ami}\n"),
        ),
    ] {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(pipeline)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(r.stdout.as_bytes()).expect("write");
        }
        let out = child.wait_with_output().expect("pipeline");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{pipeline}");
    }
}

/// Starts `imgbuild build` without waiting for it.
fn spawn_build(dir: &Path, e: &Env, extra: &[(&str, &str)]) -> std::process::Child {
    Command::new(imgbuild_bin())
        .args(["build", "-color=false", "t.json"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(e.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgbuild starts")
}

/// Waits for a child at most `limit`; kills it (by its PID) and fails when it takes longer.
fn wait_bounded(child: std::process::Child, limit: Duration) -> Run {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.expect("imgbuild finishes");
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            // SAFETY: kill(2) on the process this test started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("imgbuild {pid} did not finish within {limit:?}");
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn pp_two_imgbuild_runs_write_one_manifest_and_outputs_at_once() {
    let world = world_or_skip!();
    let shared = tempfile::tempdir().expect("shared dir");
    let out = |f: &str| shared.path().join(f).display().to_string();
    let pps = json!([
        {"type": "manifest", "output": out("manifest.json")},
        {"type": "ami-outputs", "json_output": out("amis.json"), "env_output": out("amis.env")}
    ]);
    let runs: Vec<(Scratch, Env)> = ["a", "b"]
        .iter()
        .map(|p| {
            let builders: Vec<Value> = (1..=3)
                .map(|i| {
                    builder(
                        &world,
                        json!({"name": format!("{p}{i}"), "ami_name": "pp-{{uuid}}"}),
                    )
                })
                .collect();
            let t = json!({"variables": {"project": "imgbuild"}, "builders": builders,
                           "post-processors": pps});
            (Scratch::new().with("t.json", &t.to_string()), env(&world))
        })
        .collect();
    // Each writer holds the lock a second, so that writers of the two runs (and of one run's
    // three builds) overlap even when a loaded machine spreads their ends out; 400 ms left
    // "writers had to wait for each other" to timing.
    let hold = [("IMGBUILD_TEST_LOCK_HOLD_MS", "1000")];
    let children: Vec<_> = runs
        .iter()
        .map(|(s, e)| spawn_build(s.dir.path(), e, &hold))
        .collect();
    let results: Vec<Run> = children
        .into_iter()
        .map(|c| wait_bounded(c, Duration::from_secs(240)))
        .collect();
    for r in &results {
        ok(r);
    }
    let all_out: String = results.iter().map(|r| r.stdout.as_str()).collect();
    assert!(
        all_out.contains(" for another writer of "),
        "writers had to wait for each other:\n{all_out}"
    );

    // Every build of both runs is in each file, and the files agree.
    let m = parse(&shared.path().join("manifest.json"));
    let builds = m["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 6, "{m:#}");
    let mut by_run: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for b in builds {
        let name = b["name"].as_str().expect("name").to_string();
        by_run
            .entry(b["packer_run_uuid"].as_str().expect("uuid").to_string())
            .or_default()
            .insert(name.clone());
        let id = b["artifact_id"].as_str().expect("id");
        let ami = id
            .strip_prefix("us-east-1:")
            .expect("one region")
            .to_string();
        assert!(ids.insert(name, ami).is_none(), "each build once");
    }
    let groups: BTreeSet<BTreeSet<String>> = by_run.into_values().collect();
    let want = |p: &str| (1..=3).map(|i| format!("{p}{i}")).collect::<BTreeSet<_>>();
    assert_eq!(groups, BTreeSet::from([want("a"), want("b")]));
    assert!(m["last_run_uuid"].is_string());
    let j = parse(&shared.path().join("amis.json"));
    let mut env_want = BTreeSet::new();
    for (name, ami) in &ids {
        assert_eq!(j[name], json!({"us-east-1": ami}), "{j:#}");
        env_want.insert(format!("{}_AMI={ami}", name.to_uppercase()));
        env_want.insert(format!("{}_AMI_US_EAST_1={ami}", name.to_uppercase()));
    }
    assert_eq!(j.as_object().map(|o| o.len()), Some(6));
    let env_text = read(&shared.path().join("amis.env"));
    let env_got: BTreeSet<String> = env_text.lines().map(str::to_string).collect();
    assert_eq!(env_got, env_want);
    assert_eq!(env_text.lines().count(), 12, "{env_text}");
    assert_eq!(
        names_in(shared.path()),
        BTreeSet::from([
            "manifest.json".into(),
            "amis.json".into(),
            "amis.env".into()
        ]),
        "no lock or temporary file is left"
    );
}

// --- secrets ---------------------------------------------------------------------------------

const DB_PASSWORD: &str = r#"Zq9pa$$ 'wo"rd', & more"#;
const DJANGO_SECRET: &str = r#"Kx7s3cr3t $HOME "it's" 100% sure"#;

/// The forms a secret takes on its way to an output, computed here independently of imgbuild's
/// redactor: plain, shell-quoted three ways, bash `%q`, JSON-escaped, URL-encoded (both), and
/// each of those with Packer's machine-readable comma escape.
fn forms(secret: &str) -> Vec<String> {
    let url: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let double: String = secret
        .chars()
        .flat_map(|c| {
            let esc = matches!(c, '\\' | '"' | '$' | '`');
            esc.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect();
    // bash's `printf %q` (checked against bash 5: `,` is escaped, `~` and `#` only first).
    let q: String = secret
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let plain = c.is_ascii_alphanumeric()
                || "_@%+=:./-".contains(c)
                || (i > 0 && matches!(c, '~' | '#'));
            let esc = !plain;
            esc.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect();
    let json = serde_json::to_string(secret).expect("json");
    let base = vec![
        secret.to_string(),
        secret.replace('\'', r#"'"'"'"#),
        secret.replace('\'', r"'\''"),
        double,
        q,
        json[1..json.len() - 1].to_string(),
        url.clone(),
        url.replace("%20", "+"),
    ];
    let mut all = base.clone();
    all.extend(base.iter().map(|f| f.replace(',', "%!(PACKER_COMMA)")));
    all
}

#[test]
fn pp_secrets_never_leave_imgbuild_in_any_output() {
    let world = world_or_skip!();
    let e = env(&world);
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let t = json!({
        "variables": {
            "aws_access_key": "", "aws_secret_key": "",
            "django_db_password": null, "django_secret": null,
            "web_domain": "example.com", "project": "mailape"
        },
        "sensitive-variables": ["aws_access_key", "aws_secret_key", "django_db_password", "django_secret"],
        "builders": [builder(&world, json!({
            "name": "web_worker",
            "access_key": "{{user `aws_access_key`}}",
            "secret_key": "{{user `aws_secret_key`}}",
            "ami_name": "web-worker-{{uuid}}",
            "ami_description": "web worker {{user `django_secret`}}",
            "tags": {"role": "web_worker", "db": "{{user `django_db_password`}}",
                     "source_ami": "{{ .SourceAMI }}"}
        }))],
        "post-processors": [
            {"type": "manifest", "output": "web-worker-manifest.json", "strip_path": true,
             "custom_data": {"secret": "{{user `django_secret`}}", "web_domain": "{{user `web_domain`}}",
                             "source_ami": "{{ build `SourceAMI` }}"}},
            {"type": "ami-outputs", "json_output": "web-worker-amis.json",
             "env_output": "web-worker-amis.env"},
            {"type": "shell-local", "inline_shebang": "/bin/bash -e",
             "environment_vars": ["DB_PASSWORD={{user `django_db_password`}}",
                                  "DJANGO_SECRET={{user `django_secret`}}"],
             "inline": [
                "echo \"pw=$DB_PASSWORD\"",
                "echo \"secret=$DJANGO_SECRET\" >&2",
                "python3 -c 'import json,os; print(json.dumps(os.environ[\"DB_PASSWORD\"]))'",
                "python3 -c 'import urllib.parse as u,os; print(u.quote(os.environ[\"DB_PASSWORD\"], safe=\"\"), u.quote_plus(os.environ[\"DJANGO_SECRET\"], safe=\"\"))'",
                "printf '%q\\n' \"$DB_PASSWORD\"",
                "printf '%s\\n' \"$DB_PASSWORD\" \"$DJANGO_SECRET\" | sed 's/^/line: /'"
             ]},
            [{"type": "shell-local", "environment_vars": ["DB_PASSWORD={{user `django_db_password`}}"],
              "inline": ["echo \"failing with $DB_PASSWORD\" >&2", "exit 9"]}]
        ]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let vars = [
        "-var".to_string(),
        format!("django_db_password={DB_PASSWORD}"),
        "-var".to_string(),
        format!("django_secret={DJANGO_SECRET}"),
    ];
    let tmp_s = tmp.path().display().to_string();
    let extra = [("TMPDIR", tmp_s.as_str())];
    let mut args: Vec<&str> = vars.iter().map(String::as_str).collect();
    args.push("t.json");
    let human = build(&s, &e, &args, &extra);
    let mut margs = vec!["-machine-readable"];
    margs.extend(args.iter().copied());
    let machine = build(&s, &e, &margs, &extra);
    for r in [&human, &machine] {
        // The last chain fails on purpose (its error output is a sink too).
        assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    }

    // The secrets did flow: into AWS (by design) and through every sink, masked.
    let st = state(&world);
    let ami = st["us-east-1"]
        .images
        .values()
        .find(|(name, _, _)| name.starts_with("web-worker-"))
        .expect("the AMI");
    assert_eq!(ami.1.get("db").map(String::as_str), Some(DB_PASSWORD));
    for line in [
        "    web_worker (shell-local): pw=<sensitive>",
        "    web_worker (shell-local): \"<sensitive>\"",
        "    web_worker (shell-local): <sensitive> <sensitive>",
        "    web_worker (shell-local): <sensitive>",
        "    web_worker (shell-local): line: <sensitive>",
    ] {
        assert!(
            human.stdout.lines().any(|l| l == line),
            "{line} in:\n{}",
            human.stdout
        );
        assert!(
            machine.stdout.contains(&format!(",,ui,message,{line}\n")),
            "{line} in:\n{}",
            machine.stdout
        );
    }
    assert!(
        human
            .stderr
            .contains("    web_worker (shell-local): secret=<sensitive>\n"),
        "{}",
        human.stderr
    );
    assert!(human
        .stderr
        .contains("    web_worker (shell-local): failing with <sensitive>\n"));
    assert!(human.stdout.contains(
        "==> web_worker (manifest): custom_data `secret` holds a sensitive value: recorded as <sensitive>"
    ));
    let m = parse(&s.path("web-worker-manifest.json"));
    assert_eq!(m["builds"].as_array().map(Vec::len), Some(2));
    for b in m["builds"].as_array().expect("builds") {
        assert_eq!(
            b["custom_data"],
            json!({"secret": "<sensitive>", "web_domain": "example.com", "source_ami": SOURCE_AMI})
        );
    }

    // Every byte imgbuild wrote: both runs' stdout and stderr, every file in the working
    // directory (the template holds only references), the journal directory and TMPDIR.
    let mut captured: Vec<(String, String)> = vec![
        ("human stdout".into(), human.stdout.clone()),
        ("human stderr".into(), human.stderr.clone()),
        ("machine stdout".into(), machine.stdout.clone()),
        ("machine stderr".into(), machine.stderr.clone()),
    ];
    let files: Vec<PathBuf> = files_below(s.dir.path())
        .into_iter()
        .chain(files_below(e.journal.path()))
        .chain(files_below(tmp.path()))
        .collect();
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        captured.push((
            f.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in [
        "t.json",
        "web-worker-manifest.json",
        "web-worker-amis.json",
        "web-worker-amis.env",
    ] {
        assert!(names.contains(want), "{want} in {names:?}");
    }
    assert!(
        files_below(tmp.path()).is_empty(),
        "no temporary script is left"
    );
    assert!(
        !files_below(e.journal.path()).is_empty(),
        "the journal is among the captured files"
    );
    for (what, text) in &captured {
        for secret in [DB_PASSWORD, DJANGO_SECRET] {
            for form in forms(secret) {
                assert!(
                    !text.contains(&form),
                    "{what} holds the form {form:?} of a secret:\n{text}"
                );
            }
        }
        // Nor any part of one that keeps its first characters.
        for head in ["Zq9pa", "Kx7s3cr3t"] {
            assert!(!text.contains(head), "{what} holds {head}:\n{text}");
        }
    }
}

#[test]
fn pp_configuration_errors_are_reported_before_any_build() {
    let b = r#"{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
               "source_ami": "ami-12345678", "ssh_username": "ubuntu", "ami_name": "web-{{timestamp}}"}"#;
    let t = format!(
        r#"{{"builders": [{b}], "post-processors": [{{"type": "ami-outputs", "env_prefix": "1x"}}]}}"#
    );
    let r = Scratch::new()
        .with("t.json", &t)
        .run(&["validate", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r
        .stderr
        .ends_with("imgbuild: the template is not valid: 2 errors\n"));
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors,
        vec![
            "error: `ami-outputs` needs `json_output`, `env_output` or both",
            "error: `env_prefix` \"1x\" is not a variable name",
        ],
        "{}",
        r.stderr
    );
    // Two builds whose variables would overwrite each other in one env file.
    let b2 = b.replace(
        "\"amazon-ebs\",",
        "\"amazon-ebs\", \"name\": \"web_worker\",",
    );
    let b3 = b.replace(
        "\"amazon-ebs\",",
        "\"amazon-ebs\", \"name\": \"web-worker\",",
    );
    let t = format!(
        r#"{{"builders": [{b2}, {b3}], "post-processors": [{{"type": "ami-outputs", "env_output": "a.env"}}]}}"#
    );
    let r = Scratch::new()
        .with("t.json", &t)
        .run(&["validate", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error: builds `web_worker` and `web-worker` would both write WEB_WORKER_AMI... to a.env\n"
        ),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("help: give one of them its own \"env_prefix\" (or its own env_output)"));
}

#[test]
fn pp_the_web_worker_image_writes_deploy_ready_outputs() {
    // The shipped template validates with its ami-outputs post-processor.
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let r = imgbuild_in(
        &repo,
        &[
            "validate",
            "-var",
            "django_db_password=x1234",
            "-var",
            "django_db_host=db",
            "-var",
            "django_secret=y1234",
            "-var",
            "email_host=mail",
            "-var",
            "web_domain=example.com",
            "images/web_worker.json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let t: Value = serde_json::from_str(&read(&repo.join("images/web_worker.json"))).expect("json");
    // One chain: the boot test first, then the manifest and the outputs.
    let pps = t["post-processors"][0].as_array().expect("a chain");
    assert_eq!(pps[0]["type"], "boot-test", "{pps:?}");
    assert!(
        pps.iter().any(|p| p["type"] == "ami-outputs"
            && p["env_output"] == "web-worker-amis.env"
            && p["json_output"] == "web-worker-amis.json"),
        "{pps:?}"
    );
}

#[test]
fn pp_interrupting_a_shell_local_post_processor_kills_its_processes_and_keeps_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    let t = template(
        &world,
        json!({"name": "web"}),
        json!([{"type": "shell-local", "inline": [
            "sleep 600 &",
            "echo $! > sleep.pid",
            "echo started",
            "wait"
        ]}]),
    );
    let s = Scratch::new().with("t.json", &t);
    let before = state(&world);
    // The script waits for a ten-minute `sleep` (longer than the wait for it to go below, so it
    // cannot end by itself in time): the interrupt must stop it, and its child.
    let (code, out, err) = interrupt(&s, &e, "none:0", "    web (shell-local): started", false);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("Post-processor failed: shell-local: cancelled (interrupted)"),
        "{err}"
    );
    let after = state(&world);
    let ami = after["us-east-1"]
        .images
        .keys()
        .find(|k| !before["us-east-1"].images.contains_key(*k))
        .expect("the AMI is kept")
        .clone();
    assert!(out.contains(&format!("==> web: AMI: {ami}\n")), "{out}");
    assert!(
        err.contains(&format!(
            "the AMIs of builds that failed after creating them were kept (web: us-east-1:{ami})"
        )),
        "{err}"
    );
    assert_nothing_left(
        &before,
        &after,
        &[&ami],
        "after an interrupted post-processor",
    );
    // The script's own child went with it.
    let pid: i32 = read(&s.path("sleep.pid")).trim().parse().expect("pid");
    // A bound on the wait, not a measure: it ends as soon as the process is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Running unless gone or a zombie (dead, not yet reaped by whoever inherited it).
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    while running() {
        if std::time::Instant::now() > deadline {
            // SAFETY: the `sleep` this test's build started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("the post-processor's `sleep` ({pid}) outlived imgbuild");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
