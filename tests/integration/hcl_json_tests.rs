//! HCL2 in JSON syntax (`.pkr.json`): the web worker's twin validates and inspects as
//! images/web_worker.pkr.hcl; null builds run as their `.pkr.hcl` twin; errors are located in
//! the `.pkr.json` file.

use std::path::PathBuf;

use crate::support::cli::{imgbuild_in, Scratch};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const VARS: &[&str] = &[
    "django_db_password=password-1",
    "django_db_host=db.internal",
    "django_secret=secret-key-1",
    "email_host=smtp.internal",
    "web_domain=example.com",
];

#[test]
fn the_pkr_json_web_worker_validates_and_inspects_as_the_pkr_hcl_one() {
    // Both next to a link to provisioners/, as images/ is in the repository.
    let s = Scratch::new()
        .with(
            "images/web_worker.pkr.hcl",
            &std::fs::read_to_string(repo().join("images/web_worker.pkr.hcl")).expect("hcl"),
        )
        .with(
            "images/web_worker.pkr.json",
            &std::fs::read_to_string(repo().join("tests/fixtures/hcl/web_worker.pkr.json"))
                .expect("json twin"),
        );
    std::os::unix::fs::symlink(repo().join("provisioners"), s.path("provisioners")).expect("link");
    let mut seen = Vec::new();
    for t in ["images/web_worker.pkr.hcl", "images/web_worker.pkr.json"] {
        let i = imgbuild_in(s.dir.path(), &["inspect", "-color=false", t], None);
        assert_eq!(i.code, 0, "{t}: {}", i.stderr);
        let mut args = vec!["validate", "-color=false"];
        for v in VARS {
            args.extend(["-var", v]);
        }
        args.push(t);
        let v = imgbuild_in(s.dir.path(), &args, None);
        assert_eq!(
            (v.code, v.stdout.as_str()),
            (0, "Template validated successfully.\n"),
            "{t}: {}",
            v.stderr
        );
        seen.push((i.stdout, v.stderr));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].0.matches("  file\n").count(), 5, "{}", seen[0].0);
}

const NULL_HCL: &str = r#"variable "greeting" {
  type    = list(string)
  default = ["hello"]
}
locals {
  who = "world"
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
    inline = ["echo \"${var.greeting[0]} ${local.who} from ${source.name}\" >> out-${source.name}.txt"]
  }
  provisioner "shell-local" {
    only   = ["null.a"]
    inline = [for w in ["x", "y"] : "echo ${upper(w)} >> out-a.txt"]
  }
  post-processor "manifest" {
    output = "m.json"
  }
}
"#;

const NULL_JSON: &str = r#"{
  "//": "the twin of NULL_HCL",
  "variable": {"greeting": {"type": "list(string)", "default": ["hello"]}},
  "locals": {"who": "world"},
  "source": {"null": {"a": {"communicator": "none"}, "b": {"communicator": "none"}}},
  "build": {
    "sources": ["source.null.a", "source.null.b"],
    "provisioner": [
      {"shell-local": {"inline": ["echo \"${var.greeting[0]} ${local.who} from ${source.name}\" >> out-${source.name}.txt"]}},
      {"shell-local": {"only": ["null.a"], "inline": "${[for w in [\"x\", \"y\"] : \"echo ${upper(w)} >> out-a.txt\"]}"}}
    ],
    "post-processor": {"manifest": {"output": "m.json"}}
  }
}
"#;

#[test]
fn pkr_json_null_builds_run_as_their_pkr_hcl_twin() {
    let mut seen = Vec::new();
    for (name, text) in [("t.pkr.hcl", NULL_HCL), ("t.pkr.json", NULL_JSON)] {
        let s = Scratch::new().with(name, text);
        let r = s.run(&["build", "-color=false", "-parallel-builds=1", name]);
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
        let read = |f: &str| {
            std::fs::read_to_string(s.path(f)).unwrap_or_else(|e| panic!("{name} {f}: {e}"))
        };
        let m: serde_json::Value = serde_json::from_str(&read("m.json")).expect("manifest");
        let builds: Vec<String> = m["builds"]
            .as_array()
            .expect("builds")
            .iter()
            .map(|b| b["name"].as_str().unwrap_or("").to_string())
            .collect();
        seen.push((read("out-a.txt"), read("out-b.txt"), builds));
    }
    assert_eq!(seen[0].0, "hello world from a\nX\nY\n");
    assert_eq!(seen[0].1, "hello world from b\n");
    assert_eq!(seen[0].2, vec!["a", "b"]);
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn pkr_json_errors_are_located_in_the_json_file() {
    let bad = r#"{
  "source": {"null": {"a": {"communicator": "none", "bogus_key": 1}}},
  "build": {"sources": ["source.null.a"],
    "provisioner": {"shell-local": {"inline": ["echo ${var.nope}"]}}},
  "oops": {"x": 1}
}
"#;
    let s = Scratch::new().with("bad.pkr.json", bad);
    let r = s.run(&["validate", "-color=false", "bad.pkr.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for want in [
        "error: unknown argument `bogus_key` in source `null.a`\n --> bad.pkr.json:2:53 at source.null.a.bogus_key\n",
        "error: cannot evaluate `inline`: there is no variable `nope`; declare it with variable \"nope\" { type = string }\n --> bad.pkr.json:4:47 at build.provisioner[0].inline\n",
    ] {
        assert!(r.stderr.contains(want), "missing:\n{want}\nin:\n{}", r.stderr);
    }
    let s = Scratch::new().with("syntax.pkr.json", "{\n  \"build\": {\"sources\": [}\n}\n");
    let r = s.run(&["validate", "-color=false", "syntax.pkr.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: invalid JSON: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(" --> syntax.pkr.json:2:"), "{}", r.stderr);
}
