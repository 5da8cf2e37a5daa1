//! HCL2 templates as a user runs them: the HCL2 web worker builds the same image as the JSON one
//! on the test world (files, modes, AMI tags, manifest); bad HCL2 gives located messages, all at
//! once, exit 2; `hcl2_upgrade` turns every template in images/ into HCL2 that validates and
//! inspects the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::build::env;
use crate::support::cli::{imgbuild_env, imgbuild_in, Run, Scratch};
use crate::support::state::state;

/// What an HCL2 template whose `required_plugins` names only the amazon plugin is told, once.
const PLUGINS_NOTE: &str =
    "warning: `required_plugins` names only plugins imgbuild has built in: `packer init` is not needed\n";

/// What the test world would provide to images/local_example.json.
const WORLD_ENV: &[(&str, &str)] = &[
    ("IMGBUILD_TEST_EC2_ENDPOINT", "http://127.0.0.1:9"),
    ("IMGBUILD_TEST_SSH_HOST", "127.0.0.1"),
    ("IMGBUILD_TEST_SSH_PORT", "2222"),
    ("IMGBUILD_TEST_SSH_USER", "imgbuild-test"),
    ("IMGBUILD_TEST_SANDBOX", "/tmp/imgbuild-sandbox"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/web_worker")
        .join(name)
        .display()
        .to_string()
}

const WEB_VARS: &[(&str, &str)] = &[
    ("django_db_password", "pa$$ 'w0rd\" `id` \\x"),
    ("django_db_host", "db.internal.example"),
    ("django_secret", "s3cr3t-k3y;$(id)&&|*"),
    ("email_host", "smtp.example.com"),
    ("email_host_password", "mail-pass-9876"),
    ("web_domain", "mailape.example.com"),
];

fn web_args(sandbox: &Path, cmd: &str, template: &str) -> Vec<String> {
    let mut v = vec![cmd.to_string(), "-color=false".to_string()];
    let mut vars: Vec<(String, String)> = WEB_VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.push(("sandbox".into(), sandbox.display().to_string()));
    for (k, val) in vars {
        v.push("-var".into());
        v.push(format!("{k}={val}"));
    }
    v.push(template.to_string());
    v
}

/// Every file under `root`: relative path -> (mode, bytes or link target).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut guard = 0;
    while let Some(dir) = stack.pop() {
        guard += 1;
        assert!(guard < 10_000, "a bounded tree");
        for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("link");
                out.insert(rel, (0, t.display().to_string().into_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, (mode, std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

/// The manifest without what differs between two runs (ids, times).
fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("web-worker-manifest.json")).expect("manifest");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    m["last_run_uuid"] = serde_json::Value::Null;
    for b in m["builds"].as_array_mut().expect("builds") {
        b["build_time"] = serde_json::Value::Null;
        b["packer_run_uuid"] = serde_json::Value::Null;
        b["artifact_id"] = serde_json::Value::Null;
        // Durations differ run to run (timeline_tests checks the timeline itself).
        b["imgbuild_timeline"] = serde_json::Value::Null;
    }
    m
}

#[test]
fn hcl2_web_worker_builds_the_same_image_as_the_json_one() {
    let world = world_or_skip!();
    let sandbox = world.sandbox().to_path_buf();
    let mut results = Vec::new();
    for name in ["template.json", "template.pkr.hcl"] {
        let e = env(&world);
        let s = Scratch::new();
        for entry in std::fs::read_dir(&sandbox).expect("sandbox").flatten() {
            let p = entry.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        let before = state(&world);
        let args = web_args(&sandbox, "build", &fixture(name));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let vars: Vec<(&str, &str)> = e
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = imgbuild_env(s.dir.path(), &refs, None, &vars);
        assert_eq!(
            r.code, 0,
            "{name}: stdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        for secret in ["s3cr3t-k3y", "mail-pass-9876", "w0rd"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{name} leaked {secret}"
            );
        }
        let after = state(&world);
        let mut tags = Vec::new();
        for (region, st) in &after {
            for (ami, (ami_name, t, _)) in &st.images {
                if !before[region].images.contains_key(ami) {
                    assert!(ami_name.starts_with("web-worker-"), "{ami_name}");
                    let mut t = t.clone();
                    // Each run has its own id; everything else must be equal.
                    assert!(
                        t.remove("imgbuild:run-id").is_some(),
                        "{ami} carries its run id"
                    );
                    tags.push((region.to_string(), t));
                }
            }
        }
        results.push((tree(&sandbox), tags, manifest(s.dir.path())));
    }
    let (json, hcl) = (&results[0], &results[1]);
    assert!(
        json.0.len() > 20,
        "the JSON build delivered files: {:?}",
        json.0.keys()
    );
    assert_eq!(
        json.0.keys().collect::<Vec<_>>(),
        hcl.0.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (k, v) in &json.0 {
        if k == ".timings" {
            // The stand-in scripts log when they ran: compare which ran, in order.
            let names = |b: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(|l| l.split(' ').next().unwrap_or("").to_string())
                    .collect()
            };
            assert_eq!(
                names(&v.1),
                names(&hcl.0[k].1),
                "the same scripts, in order"
            );
            assert_eq!(names(&v.1).len(), 5, "{:?}", names(&v.1));
            continue;
        }
        assert_eq!(v, &hcl.0[k], "{k}: same mode and bytes");
    }
    assert_eq!(json.1.len(), 2, "an AMI in each region: {:?}", json.1);
    assert_eq!(json.1, hcl.1, "the same AMI tags");
    assert_eq!(json.2, hcl.2, "the same manifest");
}

/// `validate` of an HCL2 template in a scratch dir: (exit code, stderr).
fn validate(text: &str) -> (i32, String) {
    let s = Scratch::new().with("t.pkr.hcl", text);
    let r = s.run(&["validate", "-color=false", "t.pkr.hcl"]);
    (r.code, r.stderr)
}

const SOURCE: &str = r#"source "amazon-ebs" "web" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  source_ami    = "ami-12345678"
  ssh_username  = "ubuntu"
  ami_name      = "web-{{timestamp}}"
}
"#;

#[test]
fn a_valid_hcl2_template_validates_and_inspects() {
    let text = format!(
        "{SOURCE}\nvariable \"who\" {{\n  type = string\n}}\nbuild {{\n  sources = [\"source.amazon-ebs.web\"]\n  provisioner \"shell\" {{\n    inline = [\"echo ${{upper(var.who)}}\"]\n  }}\n}}\n"
    );
    let s = Scratch::new().with("t.pkr.hcl", &text);
    let r = s.run(&["validate", "-color=false", "-var", "who=me", "t.pkr.hcl"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Template validated successfully.\n", "")
    );
    let r = s.run(&["inspect", "-color=false", "t.pkr.hcl"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Required variables:\n\n  who\n"),
        "{}",
        r.stdout
    );
    // -only takes TYPE.NAME (or NAME); anything else is named with the builds there are.
    let r = s.run(&[
        "validate",
        "-color=false",
        "-var",
        "who=me",
        "-only=amazon-ebs.web",
        "t.pkr.hcl",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = s.run(&[
        "validate",
        "-color=false",
        "-var",
        "who=me",
        "-only=amazon-ebs.wbe",
        "t.pkr.hcl",
    ]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            "error: -only names `amazon-ebs.wbe`, which is not a build in this template\n  = help: builds in this template: amazon-ebs.web\nimgbuild: the template is not valid: 1 error\n"
        )
    );
    // A sensitive variable's value is masked wherever inspect shows it.
    let masked = text
        .replace("type = string\n", "type = string\n  sensitive = true\n")
        .replace("build {\n", "build {\n  description = \"for ${var.who}\"\n");
    let s = Scratch::new().with("t.pkr.hcl", &masked);
    let r = s.run(&[
        "inspect",
        "-color=false",
        "-var",
        "who=topsecret-1",
        "t.pkr.hcl",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("Description:\n\nfor <sensitive>\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("topsecret-1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  web                      amazon-ebs\n") || r.stdout.contains("web"),
        "{}",
        r.stdout
    );
}

/// Sixteen kinds of bad HCL2, each with its whole message.
#[test]
fn bad_hcl2_gives_located_messages_all_at_once_with_exit_2() {
    let build = "build {\n  sources = [\"source.amazon-ebs.web\"]\n}\n";
    let cases: Vec<(String, &str)> = vec![
        ("source \"amazon-ebs\" \"web\" {\n  region = \n}\n".into(), "SYNTAX"),
        (format!("{SOURCE}{build}sauce \"x\" {{}}\n"), "UNKNOWN_TOP"),
        (format!("{SOURCE}build {{\n  sources = [\"source.amazon-ebs.wbe\"]\n}}\n"), "UNKNOWN_SOURCE"),
        (format!("{SOURCE}{build}locals {{\n  a = uper(\"x\")\n}}\n"), "UNKNOWN_FUNC"),
        (format!("{SOURCE}{build}locals {{\n  a = var.nope\n}}\n"), "UNKNOWN_VAR"),
        (format!("{SOURCE}{build}variable \"v\" {{\n  type = string\n}}\n"), "REQUIRED"),
        (format!("{SOURCE}{build}variable \"n\" {{\n  type    = number\n  default = \"x\"\n}}\n"), "TYPE"),
        (format!("{SOURCE}{build}variable \"v\" {{\n  default = \"a\"\n  validation {{\n    condition     = length(var.v) > 3\n    error_message = \"v must be longer than 3 characters.\"\n  }}\n}}\n"), "VALIDATION"),
        (format!("{SOURCE}{build}data \"amazon-secretsmanager\" \"s\" {{\n  name = \"x\"\n}}\n"), "DATA"),
        (format!("{SOURCE}build {{\n  sources = [\"source.amazon-ebs.web\"]\n  provisioner \"shel\" {{\n    inline = [\"true\"]\n  }}\n}}\n"), "PROVISIONER_TYPE"),
        (SOURCE.replace("ami_name", "ami_nmae") + build, "UNKNOWN_KEY"),
        (format!("packer {{\n  required_plugins {{\n    docker = {{\n      source  = \"github.com/hashicorp/docker\"\n      version = \">= 1\"\n    }}\n  }}\n}}\n{SOURCE}{build}"), "PLUGIN"),
        (format!("{SOURCE}{build}locals {{\n  a = \"x\"\n}}\nlocals {{\n  a = \"y\"\n}}\n"), "LOCAL_TWICE"),
        (format!("{SOURCE}data \"amazon-ami\" \"u\" {{\n  owners = [\"1\"]\n}}\nlocals {{\n  n = \"${{data.amazon-ami.u.name}}-x\"\n}}\nbuild {{\n  sources = [\"source.amazon-ebs.web\"]\n  provisioner \"shell\" {{\n    inline = [local.n]\n  }}\n}}\n"), "DATA_USE"),
        ("".into(), "NO_BUILD"),
        (
            format!("{SOURCE}build {{\n  sources = [\"source.amazon-ebs.web\"]\n  provisioner \"shell\" {{\n    only   = [\"web\"]\n    inline = [\"true\"]\n  }}\n}}\n"),
            "ONLY_NAME",
        ),
    ];
    let mut out = String::new();
    for (text, label) in &cases {
        let (code, err) = validate(text);
        out.push_str(&format!("=== {label} (exit {code})\n{err}"));
    }
    let want = std::fs::read_to_string(repo().join("tests/fixtures/hcl/bad_messages.txt"))
        .unwrap_or_default();
    if std::env::var("IMGBUILD_BLESS").is_ok() {
        std::fs::create_dir_all(repo().join("tests/fixtures/hcl")).expect("dir");
        std::fs::write(repo().join("tests/fixtures/hcl/bad_messages.txt"), &out).expect("bless");
        return;
    }
    assert_eq!(cases.len(), 16);
    assert_eq!(out.matches("(exit 2)").count(), cases.len(), "{out}");
    assert_eq!(out, want);
}

/// Every template in images/, upgraded: the HCL2 twin validates, and inspects as the JSON one.
#[test]
fn hcl2_upgrade_of_every_image_validates_and_inspects_the_same() {
    let mut n = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo().join("images"))
        .expect("images")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for json in names {
        n += 1;
        // The template next to a link to provisioners/, as in the repository.
        let root = Scratch::new();
        std::fs::create_dir(root.path("images")).expect("images dir");
        std::fs::copy(&json, root.path("images/t.json")).expect("copy");
        let s = Scratch {
            dir: tempfile::tempdir_in(root.path("images")).expect("scratch"),
        };
        std::fs::rename(root.path("images/t.json"), s.path("t.json")).expect("move");
        std::os::unix::fs::symlink(
            repo().join("provisioners"),
            root.path("images/provisioners"),
        )
        .expect("link");
        let r = s.run(&["hcl2_upgrade", "t.json"]);
        assert_eq!(r.code, 0, "{}: {}", json.display(), r.stderr);
        assert_eq!(r.stdout, "Successfully created t.pkr.hcl\n");
        let inspect =
            |t: &str| -> Run { imgbuild_in(s.dir.path(), &["inspect", "-color=false", t], None) };
        let (a, b) = (inspect("t.json"), inspect("t.pkr.hcl"));
        assert_eq!(
            (a.code, b.code),
            (0, 0),
            "{}: {}\n{}",
            json.display(),
            a.stderr,
            b.stderr
        );
        // A default taken from the environment reads `{{env `X`}}` in JSON, `env("X")` in HCL2.
        let json_out = a.stdout.replace("{{env `", "env(\"").replace("`}}", "\")");
        assert_eq!(json_out, b.stdout, "{}: inspect output", json.display());
        // Validate with a value for every required variable.
        let mut args = vec!["validate".to_string(), "-color=false".to_string()];
        for line in a
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("Required variables:"))
            .skip(2)
        {
            if line.trim().is_empty() {
                break;
            }
            args.push("-var".into());
            args.push(format!("{}=203.0.113.7/32", line.trim()));
        }
        for t in ["t.json", "t.pkr.hcl"] {
            let mut v = args.clone();
            v.push(t.into());
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            let r = imgbuild_env(s.dir.path(), &refs, None, WORLD_ENV);
            let want = if t == "t.json" { "" } else { PLUGINS_NOTE };
            assert_eq!(
                (r.code, r.stderr.as_str()),
                (0, want),
                "{} ({t})",
                json.display()
            );
        }
    }
    assert!(n >= 4, "every template in images/: {n}");
}

/// images/web_worker.pkr.hcl (upgraded, then tidied by hand) inspects as images/web_worker.json
/// and validates with the same values.
#[test]
fn the_hcl2_web_worker_image_inspects_and_validates_as_the_json_one() {
    let dir = repo();
    let inspect = |t: &str| imgbuild_in(&dir, &["inspect", "-color=false", t], None);
    let (a, b) = (
        inspect("images/web_worker.json"),
        inspect("images/web_worker.pkr.hcl"),
    );
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    assert_eq!(a.stdout, b.stdout);
    for t in ["images/web_worker.json", "images/web_worker.pkr.hcl"] {
        let mut args = vec!["validate", "-color=false"];
        let vars = [
            "django_db_password=password-1",
            "django_db_host=db.internal",
            "django_secret=secret-key-1",
            "email_host=smtp.internal",
            "web_domain=example.com",
        ];
        for v in &vars {
            args.push("-var");
            args.push(v);
        }
        args.push(t);
        let r = imgbuild_in(&dir, &args, None);
        let want = if t.ends_with(".json") {
            ""
        } else {
            PLUGINS_NOTE
        };
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "Template validated successfully.\n", want),
            "{t}"
        );
    }
}

/// Packer 1.6.6 (early HCL2) and imgbuild evaluate the functions both have alike: each
/// expression is `packer console`d and put in a build's `description` for `imgbuild inspect`.
#[test]
fn functions_evaluate_as_packer_1_6_6_evaluates_them() {
    let version = crate::support::world::run_ok(
        std::process::Command::new("packer").arg("version"),
        std::time::Duration::from_secs(30),
    );
    if !version
        .as_ref()
        .is_ok_and(|v| v.starts_with("Packer v1.6.6"))
    {
        crate::support::skip(
            "packer 1.6.6 (the reference) is not installed; scripts/test.sh installs it",
        );
        return;
    }
    let exprs = [
        r#"lower("HELLO")"#,
        r#"title("hello world")"#,
        r#"trimspace("  hello\n\n")"#,
        r#"chomp("hello\n\n")"#,
        r#"trim("?!hello?!", "!?")"#,
        r#"substr("hello world", 1, 4)"#,
        r#"replace("hello world", "/w.*d/", "everybody")"#,
        r#"regex_replace("2026-03-07T14:05:09Z", "[- TZ:]", "")"#,
        r#"split(",", "foo,bar,baz")"#,
        r#"join("-", ["a", "b"])"#,
        r#"format("%5s|%-3s|%.2f|%d|%q", "ab", "c", 3.14159, 4, "x")"#,
        r#"formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2018-01-02T23:12:01Z")"#,
        r#"formatdate("HH:mmaa h'h'mm", "2018-01-02T23:12:01-08:00")"#,
        r#"concat(["a", ""], ["b", "c"])"#,
        r#"merge({a="b", c="d"}, {e="f", c="z"})"#,
        r#"lookup({a="ay"}, "c", "what?")"#,
        r#"element(["a", "b"], 3)"#,
        r#"keys({b=2, a=1})"#,
        r#"values({b=2, a=1})"#,
        r#"length("hello")"#,
        r#"coalesce("", "b")"#,
        r#"distinct(["a", "b", "a"])"#,
        r#"flatten([["a"], [], ["b", ["c"]]])"#,
        r#"sort(["e", "d", "a"])"#,
        r#"reverse([1, 2, 3])"#,
        r#"max(12, 54, 3)"#,
        r#"jsondecode("{\"a\": [1, true]}")"#,
        r#"yamldecode("a: [1, 2]")"#,
        r#"base64encode("Hello World")"#,
        r#"base64decode("SGVsbG8gV29ybGQ=")"#,
        r#"sha256("hello world")"#,
        r#"basename("foo/bar/baz.txt")"#,
        r#"dirname("foo/bar/baz.txt")"#,
        r#"try(tonumber("x"), "fallback")"#,
        r#"can(tonumber("x"))"#,
        r#"[for s in ["a", "b"] : upper(s)]"#,
        r#"{for k, v in {a = 1} : v => k}"#,
        r#""%{ for x in [1, 2] }<${x}>%{ endfor }""#,
    ];
    let s = Scratch::new().with("c.pkr.hcl", "source \"null\" \"x\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.x\"]\n}\n");
    for e in exprs {
        // `packer console` reads the expression on standard input; bounded in time.
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "printf '%s\\n' \"jsonencode($1)\" | packer console c.pkr.hcl",
            "sh",
            e,
        ])
        .current_dir(s.dir.path());
        let out = crate::support::world::run_ok(&mut cmd, std::time::Duration::from_secs(60))
            .unwrap_or_else(|err| panic!("{e}: {err}"));
        let want = out.trim().to_string();
        let t = format!(
            "source \"null\" \"x\" {{\n  communicator = \"none\"\n}}\nbuild {{\n  description = jsonencode({e})\n  sources = [\"source.null.x\"]\n}}\n"
        );
        std::fs::write(s.path("t.pkr.hcl"), t).expect("write");
        let r = s.run(&["inspect", "-color=false", "t.pkr.hcl"]);
        assert_eq!(r.code, 0, "{e}: {}", r.stderr);
        let got = r.stdout.lines().nth(2).unwrap_or("").to_string();
        assert_eq!(got, want, "{e}");
    }
}

/// A folder is one template; variables take Packer's precedence: default < PKR_VAR_* <
/// *.auto.pkrvars.hcl < -var-file and -var in command-line order. An error in the folder's
/// second file names that file and counts lines in it.
#[test]
fn a_folder_is_one_template_and_variables_follow_packers_precedence() {
    let vars = "variable \"a\" {\n  default = \"default\"\n}\nvariable \"b\" {\n  default = \"default\"\n}\nvariable \"c\" {\n  default = \"default\"\n}\nvariable \"d\" {\n  default = \"default\"\n}\nvariable \"n\" {\n  type    = list(number)\n  default = []\n}\n";
    let main = "source \"null\" \"x\" {\n  communicator = \"none\"\n}\nbuild {\n  description = \"${var.a} ${var.b} ${var.c} ${var.d} ${jsonencode(var.n)}\"\n  sources     = [\"source.null.x\"]\n}\n";
    let s = Scratch::new()
        .with("t/a_vars.pkr.hcl", vars)
        .with("t/b_main.pkr.hcl", main)
        .with("t/x.auto.pkrvars.hcl", "c = \"auto\"\nd = \"auto\"\n")
        .with("f.pkrvars.hcl", "d = \"file\"\n")
        .with("g.json", "{\"d\": \"json-file\"}");
    let env = [
        ("PKR_VAR_b", "env"),
        ("PKR_VAR_c", "env"),
        ("PKR_VAR_n", "[1, 2]"),
    ];
    let run = |args: &[&str]| imgbuild_env(s.dir.path(), args, None, &env);
    let description = |r: &Run| r.stdout.lines().nth(2).unwrap_or("").to_string();
    let r = run(&["inspect", "-color=false", "t"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(description(&r), "default env auto auto [1,2]");
    let r = run(&[
        "inspect",
        "-color=false",
        "-var",
        "d=flag",
        "-var-file=f.pkrvars.hcl",
        "t",
    ]);
    assert_eq!(description(&r), "default env auto file [1,2]");
    let r = run(&[
        "inspect",
        "-color=false",
        "-var-file=f.pkrvars.hcl",
        "-var-file=g.json",
        "-var",
        "d=flag",
        "-var",
        "n=[3]",
        "t",
    ]);
    assert_eq!(description(&r), "default env auto flag [3]");

    std::fs::write(s.path("t/b_main.pkr.hcl"), main.replace("var.d", "var.e")).expect("write");
    let r = run(&["validate", "-color=false", "t"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: cannot evaluate `description`: there is no variable `e`; declare it with variable \"e\" { type = string }\n \
         --> t/b_main.pkr.hcl:5:17 at build.description\n  \
         |\n\
         5 |   description = \"${var.a} ${var.b} ${var.c} ${var.e} ${jsonencode(var.n)}\"\n  \
         |                 ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n\
         imgbuild: the template is not valid: 1 error\n"
    );
}

/// The HCL2 twin of a two-build `null` template runs as the JSON one: the same provisioners per
/// build (`only` and `override` by `TYPE.NAME`), `source.name` per build, the same manifest; the sensitive
/// variable is masked in the output.
#[test]
fn hcl2_null_builds_run_as_their_json_twin() {
    let secret = "hunter2-secret-value";
    let json = r#"{
  "variables": {"token": null},
  "sensitive-variables": ["token"],
  "builders": [
    {"type": "null", "name": "a", "communicator": "none"},
    {"type": "null", "name": "b", "communicator": "none"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo \"$PACKER_BUILD_NAME {{build_name}}\" >> out-{{build_name}}.txt", "echo token={{user `token`}}"]},
    {"type": "shell-local", "only": ["a"], "inline": ["echo only-a >> out-a.txt"]}
  ],
  "post-processors": [{"type": "manifest", "output": "m.json"}]
}"#;
    let hcl = r#"variable "token" {
  type      = string
  sensitive = true
}
source "null" "a" {
  communicator = "none"
}
source "null" "b" {
  communicator = "none"
}
build {
  sources = ["source.null.a", "source.null.b"]
  provisioner "shell-local" {
    inline = ["echo \"$PACKER_BUILD_NAME ${source.name}\" >> out-${source.name}.txt", "echo token=${var.token}"]
  }
  provisioner "shell-local" {
    only   = ["null.a"]
    inline = ["echo not-overridden >> out-a.txt"]
    override = {
      "null.a" = {
        inline = ["echo only-a >> out-a.txt"]
      }
    }
  }
  post-processor "manifest" {
    output = "m.json"
  }
}
"#;
    let mut seen = Vec::new();
    for (name, text) in [("t.json", json), ("t.pkr.hcl", hcl)] {
        let s = Scratch::new().with(name, text);
        let var = format!("token={secret}");
        let r = s.run(&[
            "build",
            "-color=false",
            "-parallel-builds=1",
            "-var",
            &var,
            name,
        ]);
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{name} leaked:\n{}",
            r.stdout
        );
        assert_eq!(
            r.stdout.matches("token=<sensitive>").count(),
            2,
            "{name}: {}",
            r.stdout
        );
        let read = |f: &str| {
            std::fs::read_to_string(s.path(f)).unwrap_or_else(|e| panic!("{name} {f}: {e}"))
        };
        let mut m: serde_json::Value = serde_json::from_str(&read("m.json")).expect("manifest");
        m["last_run_uuid"] = serde_json::Value::Null;
        for b in m["builds"].as_array_mut().expect("builds") {
            b["build_time"] = serde_json::Value::Null;
            b["packer_run_uuid"] = serde_json::Value::Null;
            b["imgbuild_timeline"] = serde_json::Value::Null;
        }
        seen.push((read("out-a.txt"), read("out-b.txt"), m));
    }
    assert_eq!(seen[0].0, "a a\nonly-a\n");
    assert_eq!(seen[0].1, "b b\n");
    assert_eq!(seen[0], seen[1]);
}
