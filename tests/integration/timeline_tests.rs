//! The timeline of a build: printed at its end (plain `phase seconds` lines when stdout is not
//! a terminal), as `-machine-readable` records, and in the manifest's build entry
//! (`imgbuild_timeline`); its phases come in the build's order and add up to its wall time.

use serde_json::{json, Value};

use crate::support::build::{build, builder, env, template};
use crate::support::cli::Scratch;

/// The `phase seconds` lines of the timeline in `stdout` (indented parts included, marked by
/// their two leading spaces), and the total.
fn timeline_of(stdout: &str) -> (Vec<(String, f64)>, f64) {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.ends_with(": Timeline (seconds):"))
        .skip(1);
    let mut phases = Vec::new();
    for l in lines.by_ref() {
        let l = l
            .strip_prefix("    ")
            .unwrap_or_else(|| panic!("not a timeline line: {l:?}"));
        let (name, secs) = l.rsplit_once(' ').expect("`phase seconds`");
        let secs: f64 = secs.parse().unwrap_or_else(|_| panic!("seconds in {l:?}"));
        if name == "total" {
            return (phases, secs);
        }
        phases.push((name.to_string(), secs));
    }
    panic!("no timeline with a total in:\n{stdout}");
}

/// The phases (not their parts) add up to the total within 1% (and the rounding of each).
fn adds_up(phases: &[(String, f64)], total: f64) {
    let top: Vec<f64> = phases
        .iter()
        .filter(|(n, _)| !n.starts_with("  "))
        .map(|(_, s)| *s)
        .collect();
    let sum: f64 = top.iter().sum();
    let slack = total * 0.01 + 0.005 * top.len() as f64;
    assert!(
        (sum - total).abs() <= slack,
        "phases add up to {sum}, the build took {total}"
    );
}

#[test]
fn an_amazon_build_prints_its_timeline_and_the_manifest_records_it() {
    let world = world_or_skip!();
    let e = env(&world);
    let b = builder(&world, json!({"ami_regions": ["us-west-2"]}));
    let mut t: Value = serde_json::from_str(&template(
        b,
        json!([{"type": "shell-local", "inline": ["echo hello"]}]),
    ))
    .expect("template");
    t["post-processors"] = json!([{"type": "manifest", "output": "manifest.json"}]);
    let s = Scratch::new().with("t.json", &t.to_string());
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let (phases, total) = timeline_of(&r.stdout);
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prepare",
            "source image",
            "key pair and group",
            "launch",
            "wait running",
            "provisioner 1 shell-local",
            "stop",
            "create image",
            "wait available",
            "region copies",
            "  region copy us-west-2",
            "tags and sharing",
            "teardown",
            "post-processor manifest",
        ],
        "{}",
        r.stdout
    );
    adds_up(&phases, total);
    let copies = phases[9].1;
    assert!(
        phases[10].1 <= copies + 0.01,
        "a part lies within its phase"
    );

    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let tl = &m["builds"][0]["imgbuild_timeline"];
    let recorded: Vec<&str> = tl["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["phase"].as_str().expect("name"))
        .collect();
    // Up to the manifest itself: what comes later is not known yet when it writes.
    let top: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !n.starts_with("  "))
        .collect();
    assert_eq!(recorded, top);
    assert_eq!(
        tl["phases"][9]["parts"][0]["part"], "region copy us-west-2",
        "{tl}"
    );
    let sum: f64 = tl["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["seconds"].as_f64().expect("seconds"))
        .sum();
    let seconds = tl["seconds"].as_f64().expect("seconds");
    assert!(
        (sum - seconds).abs() <= seconds * 0.01 + 0.001 * 14.0,
        "{tl}"
    );
    // The printed total is rounded to hundredths, the manifest's figure to thousandths.
    assert!(
        seconds <= total + 0.005,
        "the manifest is written before the build ends: {seconds} > {total}"
    );
}

#[test]
fn machine_readable_timeline_records_add_up() {
    let s = Scratch::new().with(
        "t.json",
        &json!({
            "builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [
                {"type": "shell-local", "inline": ["true"]},
                {"type": "shell-local", "inline": ["true"]}
            ]
        })
        .to_string(),
    );
    let r = s.run(&["build", "-machine-readable", "t.json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let fields = |l: &str| l.split(',').skip(1).map(String::from).collect::<Vec<_>>();
    let phases: Vec<Vec<String>> = r
        .stdout
        .lines()
        .map(fields)
        .filter(|f| f[1] == "timeline")
        .collect();
    let names: Vec<&str> = phases.iter().map(|f| f[2].as_str()).collect();
    assert_eq!(
        names,
        [
            "prepare",
            "provisioner 1 shell-local",
            "provisioner 2 shell-local"
        ],
        "{}",
        r.stdout
    );
    assert!(phases.iter().all(|f| f[0] == "null" && f.len() == 4));
    let totals: Vec<Vec<String>> = r
        .stdout
        .lines()
        .map(fields)
        .filter(|f| f[1] == "timeline-total")
        .collect();
    assert_eq!(totals.len(), 1, "{}", r.stdout);
    let total: f64 = totals[0][2].parse().expect("total");
    let listed: Vec<(String, f64)> = phases
        .iter()
        .map(|f| (f[2].clone(), f[3].parse().expect("seconds")))
        .collect();
    adds_up(&listed, total);
    assert!(!r.stdout.contains("Timeline (seconds)"), "no human lines");
}

#[test]
fn on_a_terminal_each_phase_gets_a_bar() {
    use std::process::{Command, Stdio};
    if Command::new("script").arg("-V").output().is_err() {
        return crate::support::skip("util-linux `script` is missing");
    }
    let s = Scratch::new().with(
        "t.json",
        &json!({
            "builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [{"type": "shell-local", "inline": ["sleep 0.2"]}]
        })
        .to_string(),
    );
    let bin = crate::support::cli::imgbuild_bin();
    let out = Command::new("timeout")
        .args(["120", "script", "-qefc"])
        .arg(format!("stty cols 120; exec '{bin}' build t.json"))
        .arg("/dev/null")
        .current_dir(s.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("Timeline (seconds):"))
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let bar = ['█', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    assert!(
        lines[0].starts_with("    prepare ") && lines[0].contains(bar),
        "{text}"
    );
    assert!(
        lines[1].starts_with("    provisioner 1 shell-local ") && lines[1].contains(bar),
        "{text}"
    );
    assert!(
        lines[2].starts_with("    total ") && !lines[2].contains(bar),
        "{text}"
    );
}

#[test]
fn a_failed_build_prints_the_phases_it_reached_and_its_on_error_time() {
    let s = Scratch::new().with(
        "t.json",
        &json!({
            "builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [
                {"type": "shell-local", "inline": ["exit 3"]},
                {"type": "shell-local", "inline": ["echo never"]}
            ]
        })
        .to_string(),
    );
    let r = s.run(&["build", "-color=false", "t.json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let (phases, total) = timeline_of(&r.stdout);
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["prepare", "provisioner 1 shell-local", "on-error"]);
    adds_up(&phases, total);
}

/// A JSON template and its HCL2 twin whose `only`/`except` leave provisioners out of a build.
const JSON_TWIN: &str = r#"{
  "builders": [{"type": "null", "name": "a", "communicator": "none"},
               {"type": "null", "name": "b", "communicator": "none"}],
  "provisioners": [
    {"type": "shell-local", "only": ["b"], "inline": ["echo one"]},
    {"type": "shell-local", "name": "second", "inline": ["echo two"]},
    {"type": "shell-local", "except": ["b"], "inline": ["echo three"]BAD}
  ]
}"#;
const HCL_TWIN: &str = r#"source "null" "a" { communicator = "none" }
source "null" "b" { communicator = "none" }
build {
  sources = ["source.null.a", "source.null.b"]
  provisioner "shell-local" {
    only   = ["null.b"]
    inline = ["echo one"]
  }
  provisioner "shell-local" {
    name   = "second"
    inline = ["echo two"]
  }
  provisioner "shell-local" {
    except = ["null.b"]
    inline = ["echo three"]BAD
  }
}
"#;

#[test]
fn provisioners_are_numbered_by_their_place_in_the_template_in_json_and_hcl2_alike() {
    let s = Scratch::new()
        .with("t.json", &JSON_TWIN.replace("BAD", ""))
        .with("t.pkr.hcl", &HCL_TWIN.replace("BAD", ""));
    let mut got = Vec::new();
    for (file, build) in [
        ("t.json", "a"),
        ("t.json", "b"),
        ("t.pkr.hcl", "null.a"),
        ("t.pkr.hcl", "null.b"),
    ] {
        let only = format!("-only={build}");
        let r = s.run(&["build", "-color=false", &only, file]);
        assert_eq!(r.code, 0, "{file} {build}:\n{}\n{}", r.stdout, r.stderr);
        let (phases, total) = timeline_of(&r.stdout);
        adds_up(&phases, total);
        let names: Vec<String> = phases
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n != "prepare")
            .collect();
        got.push(names);
    }
    let a = [
        "provisioner 2 shell-local (second)",
        "provisioner 3 shell-local",
    ];
    let b = [
        "provisioner 1 shell-local",
        "provisioner 2 shell-local (second)",
    ];
    assert_eq!(got, [a.to_vec(), b.to_vec(), a.to_vec(), b.to_vec()]);
    // Error messages number them the same way: the third provisioner in both languages.
    let s = Scratch::new()
        .with("t.json", &JSON_TWIN.replace("BAD", r#", "bogus": 1"#))
        .with("t.pkr.hcl", &HCL_TWIN.replace("BAD", "\n    bogus  = 1"));
    for file in ["t.json", "t.pkr.hcl"] {
        let r = s.run(&["validate", file]);
        assert_eq!(r.code, 2, "{file}:\n{}\n{}", r.stdout, r.stderr);
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(
            out.contains("unknown key `bogus` in provisioner 3 (shell-local)")
                && !out.contains("in provisioner 1 (")
                && !out.contains("in provisioner 2 ("),
            "{file}:\n{out}"
        );
    }
}
