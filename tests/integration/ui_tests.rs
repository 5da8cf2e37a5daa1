//! How builds run as users and pipelines see them: `-parallel-builds` and the outcome table,
//! `-timestamp-ui`, plain output without a terminal, the terminal output (spinners, colored
//! prefixes, byte bars, prompts) through a pseudo-terminal made by util-linux `script`,
//! `-on-error=ask` with and without a terminal, `-debug` (pauses, the saved key), the whole-build
//! deadline (`-timeout`, `build_timeout`), and logs (`IMGBUILD_LOG`, `PACKER_LOG`) that never
//! hold a secret.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::build::{builder, env, ssh_builder, Env};
use crate::support::cli::{imgbuild_bin, imgbuild_env, Run, Scratch};
use crate::support::null::{q, NullFx};
use crate::support::state::{assert_nothing_left, state};
use crate::support::world::TestWorld;

/// Runs `imgbuild ARGS` in `s` with the world's environment plus `extra`, stdout and stderr
/// piped (no terminal), stdin closed, and color left on (`TERM` says it could).
fn run(s: &Scratch, e: &Env, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut vars: Vec<(&str, &str)> = e
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("TERM", "xterm-256color"));
    vars.extend_from_slice(extra);
    imgbuild_env(s.dir.path(), args, None, &vars)
}

fn named(world: &TestWorld, name: &str, extra: Value) -> Value {
    let mut b = builder(world, extra);
    b["name"] = json!(name);
    b["ami_name"] = json!(format!("{name}-{{{{timestamp}}}}-{{{{uuid}}}}"));
    b
}

/// The row of `build` in the final table, split into its cells.
fn row<'a>(stdout: &'a str, build: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|l| l.split_once("Z: ").map_or(l, |(_, rest)| rest))
        .find(|l| l.split_whitespace().next() == Some(build) && l.starts_with("    "))
        .unwrap_or_else(|| panic!("no table row for {build} in:\n{stdout}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Index of the first and last stdout line of `build`'s own work (`==> build: ...`).
fn span(lines: &[&str], build: &str) -> (usize, usize) {
    let mine: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.contains(&format!("==> {build}: ")) && !l.contains("waiting for a free build slot")
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        !mine.is_empty(),
        "no line of {build} in:\n{}",
        lines.join("\n")
    );
    (mine[0], mine[mine.len() - 1])
}

/// The RFC 3339 time before a `-timestamp-ui` line.
fn stamp(line: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let (t, _) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    assert_eq!(t.len(), 20, "Packer's form 2024-08-06T22:13:10Z: {line:?}");
    chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn ui_parallel_builds_honour_the_limit_and_list_each_outcome() {
    let world = world_or_skip!();
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [
            named(&world, "alpha", json!({})),
            named(&world, "bravo", json!({"source_ami_filter": {
                "filters": {"name": "no-such-image-*"}, "owners": ["099720109477"]}})),
            named(&world, "charlie", json!({})),
        ]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    // Each successful build holds 1.5 s after launching, so that builds allowed to run at once
    // visibly overlap.
    let hold = [("IMGBUILD_TEST_PAUSE", "launch:1.5")];
    for limit in ["1", "0"] {
        let e = env(&world);
        let before = state(&world);
        let flag = format!("-parallel-builds={limit}");
        let r = run(&s, &e, &["build", &flag, "-timestamp-ui", "t.json"], &hold);
        let ctx = format!("{flag}: stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        // One build failed, the others went on; nothing of the failed one is left.
        assert_eq!(r.code, 1, "{ctx}");
        assert_eq!(row(&r.stdout, "alpha")[1], "succeeded", "{ctx}");
        assert_eq!(row(&r.stdout, "bravo")[1], "failed and cleaned up", "{ctx}");
        assert_eq!(row(&r.stdout, "charlie")[1], "succeeded", "{ctx}");
        assert!(
            row(&r.stdout, "alpha")[3].starts_with("us-east-1:ami-"),
            "{ctx}"
        );
        assert_eq!(row(&r.stdout, "bravo")[3], "-", "{ctx}");
        assert!(
            r.stdout
                .contains("==> Build outcomes: 2 succeeded, 1 failed"),
            "{ctx}"
        );
        assert!(
            r.stderr.contains(
                "error: 1 of 3 build(s) failed (bravo); everything they created was removed"
            ),
            "{ctx}"
        );
        let amis: Vec<String> = ["alpha", "charlie"]
            .iter()
            .map(|b| {
                row(&r.stdout, b)[3]
                    .trim_start_matches("us-east-1:")
                    .to_string()
            })
            .collect();
        let kept: Vec<&str> = amis.iter().map(String::as_str).collect();
        assert_nothing_left(&before, &state(&world), &kept, &ctx);
        // Plain output: no escape codes although color is on; a timestamp on every line (but
        // the test hook's own `test hook: pausing ...` lines, which are not imgbuild's output).
        assert!(
            !r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'),
            "{ctx}"
        );
        let lines: Vec<&str> = r
            .stdout
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("test hook: "))
            .collect();
        for l in lines.iter().chain(
            r.stderr
                .lines()
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .iter(),
        ) {
            stamp(l);
        }
        let (a, c) = (span(&lines, "alpha"), span(&lines, "charlie"));
        if limit == "1" {
            // One at a time, in template order: charlie starts after alpha ended (by line order
            // and by the timestamps the build printed).
            assert!(c.0 > a.1, "charlie began before alpha ended: {ctx}");
            assert!(stamp(lines[c.0]) >= stamp(lines[a.1]), "{ctx}");
            for b in ["bravo", "charlie"] {
                assert!(
                    r.stdout.contains(&format!(
                        "==> {b}: waiting for a free build slot (-parallel-builds=1)"
                    )),
                    "{ctx}"
                );
            }
        } else {
            // All at once: each began before the other ended.
            assert!(
                c.0 < a.1 && a.0 < c.1,
                "alpha and charlie did not overlap: {ctx}"
            );
            assert!(!r.stdout.contains("waiting for a free build slot"), "{ctx}");
        }
    }
}

/// A pseudo-terminal run: what it printed (`\r` removed) and its exit code.
struct PtyRun {
    code: i32,
    out: String,
}

/// Runs `imgbuild ARGS` in `dir` under util-linux `script`, so that its stdin and stdout are a
/// terminal (200 columns). Each time `marker` appears once more in the output, the next of
/// `answers` is typed (with Enter). `None` (skipped) when `script` is missing outside CI.
fn pty(
    dir: &Path,
    args: &[&str],
    envs: &[(String, String)],
    marker: &str,
    answers: &[&str],
) -> Option<PtyRun> {
    pty_with(dir, args, envs, marker, answers, None)
}

/// [`pty`], also creating the file `release.1` once `release.0` appears in the output (to end
/// an `IMGBUILD_TEST_HOLD_WAIT` hold).
fn pty_with(
    dir: &Path,
    args: &[&str],
    envs: &[(String, String)],
    marker: &str,
    answers: &[&str],
    release: Option<(&str, &Path)>,
) -> Option<PtyRun> {
    if Command::new("script").arg("-V").output().is_err() {
        crate::support::skip("util-linux `script` is missing");
        return None;
    }
    let mut cmdline = format!("stty cols 200 rows 50; exec {}", q(&imgbuild_bin()));
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(&q(a));
    }
    let mut child = Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen
                        .lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
    };
    // A bound on a hanging test (as the other runs' RUN_BOUND), not a measure.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut answered = 0;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "imgbuild under script did not finish; output:\n{}",
                seen.lock().expect("lock")
            );
        }
        if let Some((text, file)) = release {
            if !file.exists() && seen.lock().expect("lock").contains(text) {
                std::fs::write(file, "").expect("create the release file");
            }
        }
        let shown = seen.lock().expect("lock").matches(marker).count();
        if shown > answered && answered < answers.len() {
            // Give the prompt a moment to start reading, then answer.
            std::thread::sleep(Duration::from_millis(100));
            let _ = stdin.write_all(format!("{}\n", answers[answered]).as_bytes());
            let _ = stdin.flush();
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let _ = reader.join();
    let out = seen.lock().expect("lock").replace('\r', "");
    Some(PtyRun {
        code: status.code().expect("script exits"),
        out,
    })
}

/// `==> NAME:` in the color of the `index`-th build (Packer's palette: green, cyan, ...).
fn colored_prefix(index: usize, name: &str) -> String {
    let code = ["32", "36", "35", "33", "34"][index % 5];
    format!("\x1b[1;{code}m==> {name}:\x1b[0m")
}

#[test]
fn ui_terminal_shows_colored_prefixes_an_ssh_spinner_with_its_reason_and_a_table() {
    let world = world_or_skip!();
    let e = env(&world);
    let mut web = ssh_builder(&world, json!({"ssh_timeout": "4s"}));
    web["name"] = json!("web");
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [web, named(&world, "db", json!({}))],
        "provisioners": [{"type": "shell", "only": ["web"], "inline": ["true"]}]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let before = state(&world);
    // The instances' waits for "running" are held, their spinners shown, until the spinner's
    // text has appeared (against moto such a wait can end before a frame is drawn).
    let released = s.path("released");
    let mut vars = e.vars.clone();
    vars.push((
        "IMGBUILD_TEST_HOLD_WAIT".into(),
        format!("to be running:{}", released.display()),
    ));
    let Some(r) = pty_with(
        s.dir.path(),
        &["build", "t.json"],
        &vars,
        "\u{0}",
        &[],
        Some(("to be running", &released)),
    ) else {
        return;
    };
    let out = &r.out;
    assert_eq!(r.code, 1, "{out}");
    // Each build's prefix in its own color; the SSH wait as a spinner with the current reason
    // (plain output says "Still waiting for SSH after ..." instead).
    assert!(out.contains(&colored_prefix(0, "web")), "{out}");
    assert!(out.contains(&colored_prefix(1, "db")), "{out}");
    assert!(out.contains("waiting for SSH (attempt "), "{out}");
    assert!(out.contains("connection refused"), "{out}");
    // Waits on EC2 as spinners too.
    assert!(out.contains("to be running"), "{out}");
    // The final table, colored.
    assert!(out.contains("BUILD"), "{out}");
    assert!(out.contains("\x1b[31mfailed and cleaned up"), "{out}");
    assert!(out.contains("\x1b[32msucceeded"), "{out}");
    let db_ami = out
        .lines()
        .find_map(|l| l.strip_prefix("us-east-1: "))
        .unwrap_or_else(|| panic!("no AMI line in:\n{out}"))
        .trim()
        .to_string();
    assert_nothing_left(
        &before,
        &state(&world),
        &[&db_ami],
        "after the terminal run",
    );

    // -color=false: spinners still, but no color; NO_COLOR too.
    for (flag, no_color) in [("-color=false", false), ("-color=true", true)] {
        let e = env(&world);
        let mut vars = e.vars.clone();
        if no_color {
            vars.push(("NO_COLOR".into(), "1".into()));
        }
        let Some(r) = pty(
            s.dir.path(),
            &["build", flag, "-only=db", "t.json"],
            &vars,
            "\u{0}",
            &[],
        ) else {
            return;
        };
        assert_eq!(r.code, 0, "{}", r.out);
        assert!(r.out.contains("==> db: Launching"), "{}", r.out);
        assert!(
            !r.out.contains("\x1b[1;32m") && !r.out.contains("\x1b[32m"),
            "{flag}: {}",
            r.out
        );
        assert!(
            r.out.contains("\x1b[2K"),
            "spinners are still drawn: {}",
            r.out
        );
    }
}

#[test]
fn ui_terminal_shows_a_byte_bar_for_uploads_and_streams_script_output() {
    let world = world_or_skip!(shared);
    let fx = NullFx::new(world, "ui-bar");
    let big = fx.local("big.bin");
    {
        let f = std::fs::File::create(&big).expect("create");
        f.set_len(64 * 1024 * 1024).expect("size");
    }
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [fx.builder(json!({"name": "rehearsal"}))],
        "provisioners": [
            {"type": "file", "source": big.display().to_string(), "destination": fx.r("big.bin")},
            {"type": "shell", "remote_folder": fx.remote, "inline": ["echo streamed from the machine"]}
        ]
    });
    std::fs::write(fx.local("t.json"), t.to_string()).expect("t.json");
    let Some(r) = pty(
        fx.scratch.dir.path(),
        &["build", "t.json"],
        &world.env(),
        "\u{0}",
        &[],
    ) else {
        return;
    };
    assert_eq!(r.code, 0, "{}", r.out);
    // indicatif's byte bar (plain output says "big.bin: 12.0 MiB of 64.0 MiB" instead).
    assert!(r.out.contains("/64.00 MiB"), "{}", r.out);
    assert!(
        r.out.contains(&format!("uploading {}", big.display())),
        "{}",
        r.out
    );
    assert!(!r.out.contains("MiB of 64.0 MiB"), "{}", r.out);
    assert!(
        r.out
            .contains("\x1b[32m    rehearsal:\x1b[0m streamed from the machine"),
        "{}",
        r.out
    );
    assert_eq!(
        fx.sh(&format!("stat -c %s {}", q(&fx.r("big.bin")))),
        "67108864\n"
    );
}

#[test]
fn ui_ask_on_a_terminal_retries_provisioning_then_cleans_up_or_aborts() {
    let world = world_or_skip!();
    let mut web = ssh_builder(&world, json!({"ssh_timeout": "2s"}));
    web["name"] = json!("web");
    let t = json!({"variables": {"project": "imgbuild"}, "builders": [web], "provisioners": [{"type": "shell", "inline": ["true"]}]});
    let s = Scratch::new().with("t.json", &t.to_string());
    let question = "[c] Clean up and exit, [a] abort without cleanup, or [r] retry provisioning";

    // Retry once (provisioning runs again: a second SSH wait), then clean up.
    let e = env(&world);
    let before = state(&world);
    let Some(r) = pty(
        s.dir.path(),
        &["build", "-on-error=ask", "t.json"],
        &e.vars,
        question,
        &["r", "c"],
    ) else {
        return;
    };
    let out = &r.out;
    assert_eq!(r.code, 1, "{out}");
    assert_eq!(out.matches(question).count(), 2, "{out}");
    assert!(out.contains("provisioning failed: "), "{out}");
    assert!(out.contains("Retrying (chosen at the prompt)"), "{out}");
    assert!(out.contains("Cleaning up (chosen at the prompt)"), "{out}");
    assert_eq!(
        out.matches("Waiting for SSH to become available...")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("Cleaning up: terminating instance i-"),
        "{out}"
    );
    assert!(out.contains("failed and cleaned up"), "{out}");
    assert_nothing_left(&before, &state(&world), &[], "after ask: retry, clean up");

    // Abort: everything stays, listed; exit 3.
    let e = env(&world);
    let Some(r) = pty(
        s.dir.path(),
        &["build", "-on-error=ask", "t.json"],
        &e.vars,
        question,
        &["a"],
    ) else {
        return;
    };
    let out = &r.out;
    assert_eq!(r.code, 3, "{out}");
    assert!(
        out.contains("Aborting without cleanup (chosen at the prompt)"),
        "{out}"
    );
    assert!(
        out.contains("-on-error=ask: leaving what the build created in place"),
        "{out}"
    );
    assert!(out.contains("failed and left resources"), "{out}");
    assert!(out.contains("left by -on-error=ask"), "{out}");
    assert!(!out.contains("Cleaning up: terminating"), "{out}");
    let running = state(&world)["us-east-1"]
        .instances
        .values()
        .filter(|s| s.as_str() != "terminated")
        .count();
    assert_eq!(running, 1, "the instance was left running: {out}");
}

#[test]
fn ui_ask_without_a_terminal_cleans_up_and_says_so() {
    let world = world_or_skip!();
    let e = env(&world);
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [ssh_builder(&world, json!({"ssh_timeout": "2s"}))],
        "provisioners": [{"type": "shell", "inline": ["true"]}]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let before = state(&world);
    let r = run(&s, &e, &["build", "-on-error=ask", "t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("==> amazon-ebs: -on-error=ask: no terminal is attached to ask on, so the build cleans up (as -on-error=cleanup)"), "{}", r.stdout);
    assert!(!r.stdout.contains("[c] Clean up"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Cleaning up: terminating instance i-"),
        "{}",
        r.stdout
    );
    assert_eq!(row(&r.stdout, "amazon-ebs")[1], "failed and cleaned up");
    assert_nothing_left(&before, &state(&world), &[], "after ask without a terminal");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn ui_debug_saves_the_key_0600_and_pauses_only_on_a_terminal() {
    use std::os::unix::fs::PermissionsExt;
    let world = world_or_skip!();
    // Without a terminal: no pauses (said), the key saved, usable by ssh-keygen.
    let e = env(&world);
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [ssh_builder(&world, json!({"ssh_timeout": "2s"}))],
        "provisioners": [{"type": "shell", "inline": ["true"]}]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let key = s.path("ec2_amazon-ebs.pem");
    // The key exists while the build runs (held after launch until the test has read the key,
    // not for a fixed time; SSH then fails) ...
    let started = Instant::now();
    let release = s.path("release");
    let child = Command::new(imgbuild_bin())
        .current_dir(s.dir.path())
        .args(["build", "-debug", "t.json"])
        .envs(e.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("IMGBUILD_TEST_PAUSE", "launch:300")
        .env("IMGBUILD_TEST_PAUSE_RELEASE", &release)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgbuild starts");
    let mut text = String::new();
    let mut mode = 0;
    // A bound on the wait, not a measure (it ends as soon as the key is there): on a loaded
    // machine the build can take far longer than usual to reach its key pair.
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(m) = std::fs::metadata(&key) {
            mode = m.permissions().mode() & 0o777;
            text = std::fs::read_to_string(&key).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let public = Command::new("ssh-keygen")
        .args(["-y", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    std::fs::write(&release, "").expect("release the hold");
    let out = child.wait_with_output().expect("imgbuild ends");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("==> Debug mode enabled. Builds will not be parallelized."),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("no terminal is attached, so the builds do not pause between steps"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Press Enter"), "{}", r.stdout);
    let said = format!("the temporary private key is saved in {}", key.display());
    assert!(r.stdout.contains(&said), "{said} in:\n{}", r.stdout);
    assert_eq!(mode, 0o600);
    assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert!(!r.stdout.contains("BEGIN OPENSSH") && !r.stderr.contains("BEGIN OPENSSH"));
    // ... and is removed with the rest once the build is torn down.
    assert!(!key.exists(), "the key file outlived the build");
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    assert!(String::from_utf8_lossy(&public.stdout).starts_with("ssh-ed25519 AAAA"));

    // On a terminal: a pause before each step, answered with Enter.
    let e = env(&world);
    let t =
        json!({"variables": {"project": "imgbuild"}, "builders": [named(&world, "db", json!({}))]});
    let s = Scratch::new().with("t.json", &t.to_string());
    let before = state(&world);
    let enter = ["", "", "", "", "", "", "", "", "", "", "", ""];
    let Some(r) = pty(
        s.dir.path(),
        &["build", "-debug", "t.json"],
        &e.vars,
        "Press Enter to continue.",
        &enter,
    ) else {
        return;
    };
    let out = &r.out;
    assert_eq!(r.code, 0, "{out}");
    let pauses: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("Pausing before ").nth(1))
        .filter_map(|l| l.split(". Press Enter").next())
        .collect();
    let expected = [
        "step 'source' (find the source AMI and check the names)",
        "step 'key_pair' (the temporary key pair)",
        "step 'security_group' (the temporary security group)",
        "step 'launch' (the source instance)",
        "step 'provision' (connect and run the provisioners)",
        "step 'stop' (stop the instance)",
        "step 'create_image' (create the AMI)",
        "waiting for the AMI to be available",
        "the cleanup (removing what the build created)",
    ];
    assert_eq!(pauses, expected, "{out}");
    let ami = out
        .lines()
        .find_map(|l| l.strip_prefix("us-east-1: "))
        .unwrap_or_else(|| panic!("no AMI line in:\n{out}"))
        .trim()
        .to_string();
    assert_nothing_left(&before, &state(&world), &[&ami], "after a -debug build");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn ui_timeout_cancels_and_tears_down_and_names_the_limit() {
    let world = world_or_skip!();
    // -timeout smaller than build_timeout; then build_timeout smaller than -timeout. 15 s: the
    // build must reach its hold after launch before the deadline, which takes well under a
    // second idle but several on a loaded machine (4 s could expire before the launch).
    for (build_timeout, flag, said) in [
        (
            "1h",
            "-timeout=15s",
            "the whole-build deadline expired: -timeout of 15 seconds",
        ),
        (
            "15s",
            "-timeout=1h",
            "the whole-build deadline expired: build_timeout of 15 seconds",
        ),
    ] {
        let e = env(&world);
        let t = json!({"variables": {"project": "imgbuild"}, "builders": [builder(&world, json!({"build_timeout": build_timeout}))]});
        let s = Scratch::new().with("t.json", &t.to_string());
        let before = state(&world);
        // Held an hour after launch, longer than a run may take (`RUN_BOUND`): that the build
        // exits at all shows the deadline cut the pause short.
        let r = run(
            &s,
            &e,
            &["build", flag, "t.json"],
            &[("IMGBUILD_TEST_PAUSE", "launch:3600")],
        );
        let ctx = format!("{flag}: stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, 1, "{ctx}");
        assert!(r.stderr.contains(said), "{ctx}");
        assert!(
            r.stdout.contains("test hook: pausing 3600s after launch"),
            "{ctx}"
        );
        assert!(
            r.stdout.contains("Cleaning up: terminating instance i-"),
            "{ctx}"
        );
        assert_eq!(
            row(&r.stdout, "amazon-ebs")[1],
            "failed and cleaned up",
            "{ctx}"
        );
        assert_nothing_left(&before, &state(&world), &[], &ctx);
    }
}

#[test]
fn ui_logs_go_to_their_file_or_stderr_never_stdout_and_hold_no_secret() {
    let world = world_or_skip!();
    let secret = "s3cr3t 'quoted' $value";
    let aws_secret = "AwsSecretKey/With+Chars";
    let t = json!({
        "variables": {"secret": secret, "project": "imgbuild"},
        "sensitive-variables": ["secret"],
        // The run tags come back in EC2's answers, which the AWS SDK logs at trace level.
        "builders": [builder(&world, json!({"run_tags": {"Secret": "{{user `secret`}}"}}))],
        "provisioners": [{"type": "shell-local", "environment_vars": ["SECRET={{user `secret`}}"],
                          "inline": ["echo \"said $SECRET\""]}]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let forms = |text: &str| {
        for f in [secret, "s3cr3t", aws_secret, "AwsSecretKey"] {
            assert!(!text.contains(f), "{f:?} leaked in:\n{text}");
        }
    };
    for level in ["debug", "trace"] {
        let e = env(&world);
        let log = s.path(&format!("{level}.log"));
        let log_s = log.display().to_string();
        let r = run(
            &s,
            &e,
            &["build", "t.json"],
            &[
                ("IMGBUILD_LOG", level),
                ("IMGBUILD_LOG_PATH", &log_s),
                ("AWS_SECRET_ACCESS_KEY", aws_secret),
            ],
        );
        assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        let text = std::fs::read_to_string(&log).expect("the log file");
        // The log has imgbuild's events and the output lines, masked.
        // (Whichever module orchestrates the run: the layout of src/ is not under test here.)
        assert!(
            text.lines()
                .any(|l| l.contains(" imgbuild::") && l.contains(": run started run_id=")),
            "{text}"
        );
        assert!(
            text.contains("imgbuild::ui:     amazon-ebs: said <sensitive>"),
            "{text}"
        );
        if level == "trace" {
            // A raw secret reached the writer (EC2's answer) and was masked there.
            assert!(
                text.contains("<key>Secret</key><value><sensitive></value>"),
                "{text}"
            );
        }
        forms(&text);
        forms(&r.stdout);
        forms(&r.stderr);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).expect("log").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Never mixed into stdout or stderr.
        assert!(
            !r.stdout.contains("imgbuild::") && !r.stderr.contains("imgbuild::"),
            "{}",
            r.stdout
        );
    }
    // PACKER_LOG=1 without a path: to stderr, never stdout.
    let e = env(&world);
    let r = run(&s, &e, &["build", "t.json"], &[("PACKER_LOG", "1")]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(" DEBUG imgbuild::ui: ==> amazon-ebs: Launching"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stdout.contains("DEBUG") && !r.stdout.contains("imgbuild::"),
        "{}",
        r.stdout
    );
    forms(&r.stderr);
    forms(&r.stdout);
}

/// Two builders in two regions, built in parallel over SSH; the provisioners' `only`, `except`
/// and `override` choose what each build runs; `-only` and `-except` choose the builds.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (scripts/test.sh): it holds the build with IMGBUILD_TEST_PAUSE or IMGBUILD_TEST_LOCK_HOLD_MS"
)]
fn ui_two_regions_in_parallel_with_only_except_and_override() {
    let world = world_or_skip!();
    let dir = world
        .sandbox()
        .join(format!("two-regions-{}", std::process::id()));
    // Made by the remote user (the sandbox is theirs).
    let d = dir.display().to_string();
    let ssh = |name: &str, region: &str| {
        let mut b = named(
            &world,
            name,
            json!({"region": region, "communicator": "ssh", "ssh_host": "127.0.0.1",
                   "ssh_port": world.ssh_port(), "ssh_username": world.ssh_user()}),
        );
        b["name"] = json!(name);
        b
    };
    let line = |what: &str| format!("echo {what} >> {d}/{{{{build_name}}}}.log");
    let t = json!({
        "variables": {"project": "imgbuild"},
        "builders": [ssh("east", "us-east-1"), ssh("west", "us-west-2")],
        "provisioners": [
            {"type": "shell", "inline": [format!("mkdir -p {d}"), line("common")]},
            {"type": "shell", "only": ["east"], "inline": [line("only-east")]},
            {"type": "shell", "except": ["east"], "inline": [line("except-east")]},
            {"type": "shell", "inline": [line("base")],
             "override": {"west": {"inline": [line("overridden")]}}}
        ]
    });
    let s = Scratch::new().with("t.json", &t.to_string());
    let log = |build: &str| std::fs::read_to_string(dir.join(format!("{build}.log")));
    let reset = || {
        for b in ["east", "west"] {
            let _ = std::fs::remove_file(dir.join(format!("{b}.log")));
        }
    };

    // Both builds, at once (a hold after launch makes them overlap).
    let e = env(&world);
    let before = state(&world);
    let r = run(
        &s,
        &e,
        &["build", "-timestamp-ui", "t.json"],
        &[("IMGBUILD_TEST_PAUSE", "launch:1")],
    );
    let ctx = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, 0, "{ctx}");
    assert_eq!(
        log("east").expect("east ran"),
        "common\nonly-east\nbase\n",
        "{ctx}"
    );
    assert_eq!(
        log("west").expect("west ran"),
        "common\nexcept-east\noverridden\n",
        "{ctx}"
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    let (east_first, east_last) = span(&lines, "east");
    let (west_first, west_last) = span(&lines, "west");
    assert!(
        east_first < west_last && west_first < east_last,
        "the two builds overlap: {ctx}"
    );
    let east_ami = row(&r.stdout, "east")[3]
        .strip_prefix("us-east-1:")
        .unwrap_or_else(|| panic!("east's AMI is in us-east-1: {ctx}"))
        .to_string();
    let west_ami = row(&r.stdout, "west")[3]
        .strip_prefix("us-west-2:")
        .unwrap_or_else(|| panic!("west's AMI is in us-west-2: {ctx}"))
        .to_string();
    let after = state(&world);
    assert!(after["us-east-1"].images.contains_key(&east_ami), "{ctx}");
    assert!(after["us-west-2"].images.contains_key(&west_ami), "{ctx}");
    assert!(!after["us-west-2"].images.contains_key(&east_ami), "{ctx}");
    assert_nothing_left(&before, &after, &[&east_ami, &west_ami], &ctx);

    // -only and -except pick builds by name; the provisioners still follow their own filters.
    for (flag, ran, skipped, expect) in [
        (
            "-only=west",
            "west",
            "east",
            "common\nexcept-east\noverridden\n",
        ),
        ("-except=west", "east", "west", "common\nonly-east\nbase\n"),
    ] {
        reset();
        let e = env(&world);
        let before = state(&world);
        let r = run(&s, &e, &["build", flag, "t.json"], &[]);
        let ctx = format!("{flag}: stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, 0, "{ctx}");
        assert_eq!(log(ran).expect("ran"), expect, "{ctx}");
        assert!(log(skipped).is_err(), "{skipped} must not run: {ctx}");
        assert!(!r.stdout.contains(&format!("==> {skipped}:")), "{ctx}");
        let region = if ran == "east" {
            "us-east-1"
        } else {
            "us-west-2"
        };
        let ami = row(&r.stdout, ran)[3]
            .strip_prefix(&format!("{region}:"))
            .unwrap_or_else(|| panic!("{ran}'s AMI in {region}: {ctx}"))
            .to_string();
        assert_nothing_left(&before, &state(&world), &[&ami], &ctx);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
