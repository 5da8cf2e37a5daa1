//! The CLI as a user runs it, on good and bad templates: whole rendered messages and exit codes.

use std::path::PathBuf;

use crate::support::cli::{imgbuild_env, imgbuild_in, Scratch};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The four variables every valid builder below needs.
const BUILDER: &str = r#"{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "ubuntu", "ami_name": "web-{{timestamp}}"}"#;

#[test]
fn version_prints_the_version_and_template_language() {
    let r = Scratch::new().run(&["version"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        format!(
            "imgbuild {} (Packer JSON template language 1.6.6)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn a_valid_template_validates_with_exit_0() {
    let s = Scratch::new().with("t.json", &format!(r#"{{"builders": [{BUILDER}]}}"#));
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Template validated successfully.\n", "")
    );
}

#[test]
fn unknown_root_key_names_file_line_column_path_and_closest_key() {
    let s = Scratch::new().with(
        "t.json",
        &format!("{{\n  \"builders\": [{BUILDER}],\n  \"provisoners\": []\n}}\n"),
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "error: unknown key `provisoners` in the template\n \
         --> t.json:4:3 at provisoners\n  \
         |\n\
         4 |   \"provisoners\": []\n  \
         |   ^^^^^^^^^^^^^\n  \
         = help: did you mean `provisioners`?\n\
         imgbuild: the template is not valid: 1 error\n"
    );
}

#[test]
fn duplicate_keys_point_at_the_second_and_name_the_first() {
    let s = Scratch::new().with(
        "t.json",
        "{\"description\": \"a\",\n \"description\": \"b\", \"builders\": [{\"type\": \"amazon-ebs\"}]}",
    );
    let r = s.run(&["validate", "-syntax-only", "t.json"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: duplicate key `description`\n \
         --> t.json:2:2 at description\n  \
         |\n\
         2 |  \"description\": \"b\", \"builders\": [{\"type\": \"amazon-ebs\"}]}\n  \
         |  ^^^^^^^^^^^^^\n  \
         = note: first defined at t.json:1:2\n  \
         = help: JSON keys must be unique in an object; remove or rename one of them\n\
         imgbuild: the template is not valid: 1 error\n"
    );
}

#[test]
fn json_syntax_error_has_a_caret_under_the_bad_character() {
    let s = Scratch::new().with(
        "t.json",
        "{\n  \"builders\": [\n    {\"type\": \"amazon-ebs\"},,\n  ]\n}\n",
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: invalid JSON: a value is missing here\n \
         --> t.json:3:28\n  \
         |\n\
         3 |     {\"type\": \"amazon-ebs\"},,\n  \
         |                            ^\n  \
         = note: a template is one JSON object; check the brackets, commas and quotes around here\n\
         imgbuild: the template is not valid: 1 error\n"
    );
}

#[test]
fn structure_errors_are_all_reported_at_once() {
    let s = Scratch::new().with(
        "t.json",
        r#"{"_comment": 1,
 "builders": [{"name": "a"}, {"type": "amazon-ebs", "name": "b"}, {"type": "amazon-ebs", "name": "b"}],
 "provisioners": [{"inline": ["x"]}, {"type": "shell", "max_retries": "many", "timeout": 5}],
 "post-processors": [[]]}"#,
    );
    let r = s.run(&["validate", "-syntax-only", "t.json"]);
    assert_eq!(r.code, 2);
    let headlines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("imgbuild:"))
        .collect();
    assert_eq!(
        headlines,
        vec![
            "error: the comment `_comment` must be a string, found a number",
            "error: builder 1 is missing its `type`",
            "error: two builders are named `b`",
            "error: provisioner 1 is missing its `type`",
            "error: `max_retries` must be a whole number from 0 to 100, found many",
            "error: `timeout` must be a duration string such as \"30s\", found a number",
            "error: an empty post-processor chain does nothing; remove it",
            "imgbuild: the template is not valid: 7 errors",
        ]
    );
}

#[test]
fn bad_template_files_are_named() {
    let s = Scratch::new()
        .with("empty.json", "")
        .with("list.json", "[1]")
        .with("dir/x", "");
    let r = s.run(&["validate", "empty.json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("error: invalid JSON: the file is empty: a template is a JSON object such as {\"builders\": [...]}\n --> empty.json:1:1\n"), "{}", r.stderr);
    let r = s.run(&["validate", "list.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: a template must be a JSON object, found an array\n --> list.json:1:1\n"
        ),
        "{}",
        r.stderr
    );
    let r = s.run(&["validate", "dir"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: the folder `dir` has no *.pkr.hcl files\n  = help: name a JSON template file, or a folder that holds an HCL2 template's .pkr.hcl files\nimgbuild: the template is not valid: 1 error\n"
    );
    let r = s.run(&["inspect", "missing.json"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: cannot read the template `missing.json`: no such file\n  = help: check the path; relative paths are relative to the current directory\nimgbuild: the template is not valid: 1 error\n"
    );
}

#[test]
fn required_variables_are_all_reported_and_var_precedence_is_command_line_order() {
    let t = format!(
        r#"{{"variables": {{"a": null, "b": null, "c": "{{{{user `b`}}}}-x", "region": "eu-west-1"}},
 "builders": [{BUILDER}],
 "provisioners": [{{"type": "shell", "inline": ["echo {{{{user `a`}}}} {{{{user `c`}}}}"]}}]}}"#
    );
    let s = Scratch::new().with("t.json", &t).with(
        "v1.json",
        r#"{"a": "from-file", "b": "b", "region": "from-file"}"#,
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    let headlines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    // Only the missing variables: their uses (also through `c`) are not errors of their own.
    assert_eq!(
        headlines,
        vec![
            "error: required variable `a` is not set",
            "error: required variable `b` is not set"
        ],
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--> t.json:1:16 at variables.a\n"),
        "{}",
        r.stderr
    );
    // Later on the command line wins, across -var and -var-file.
    let r = s.run(&[
        "validate",
        "-var",
        "a=cli",
        "-var-file=v1.json",
        "-var",
        "b=x",
        "t.json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn var_file_problems_point_into_the_var_file() {
    let t = format!(r#"{{"variables": {{"n": "1"}}, "builders": [{BUILDER}]}}"#);
    let s = Scratch::new()
        .with("t.json", &t)
        .with("num.json", "{\n  \"n\": 5\n}\n")
        .with("arr.json", "[\"n\"]");
    let r = s.run(&["validate", "-var-file", "num.json", "t.json"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: the value of `n` in a variable file must be a string, found a number\n \
         --> num.json:2:8 at n\n  \
         |\n\
         2 |   \"n\": 5\n  \
         |        ^\n  \
         = help: put the value in double quotes: JSON templates only have string variables\n\
         imgbuild: the template is not valid: 1 error\n"
    );
    let r = s.run(&["validate", "-var-file=arr.json", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: a variable file must be a JSON object, found an array\n --> arr.json:1:1\n"
        ),
        "{}",
        r.stderr
    );
    let r = s.run(&["validate", "-var-file=nope.json", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: cannot read the variable file `nope.json`: no such file\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_var_without_equals_is_a_usage_error() {
    let r = Scratch::new().run(&["validate", "-var", "region", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("`-var region` must be KEY=VALUE (e.g. -var region=us-west-2)"),
        "{}",
        r.stderr
    );
}

#[test]
fn variables_use_other_variables_env_and_functions() {
    let t = r#"{"variables": {"base": "web", "name": "{{user `base`}}-{{lower `X`}}", "home": "{{env `HOME`}}"},
 "builders": [{"type": "amazon-ebs", "name": "{{user `name`}}", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "{{user `base`}}", "ami_name": "{{build_name}}-{{timestamp}}"}],
 "provisioners": [{"type": "shell", "inline": ["echo"], "only": ["web-x"]}]}"#;
    let s = Scratch::new().with("t.json", t);
    // `only` names the rendered build name.
    let r = s.run(&["validate", "-syntax-only", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The build is named by the rendered name (`-only` takes it; the raw one is unknown).
    let r = s.run(&["validate", "-only=web-x", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = s.run(&["validate", "-only={{user `name`}}", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not a build in this template"),
        "{}",
        r.stderr
    );
}

#[test]
fn variable_cycles_and_bad_functions_in_defaults_are_located() {
    let t = "{\"variables\": {\n  \"a\": \"{{user `b`}}\",\n  \"b\": \"{{user `a`}}\",\n  \"c\": \"x-{{timestmp}}\"\n},\n \"builders\": [{\"type\": \"amazon-ebs\"}]}";
    let s = Scratch::new().with("t.json", t);
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(
            "error: variables refer to each other in a cycle: a, b\n --> t.json:2:3 at variables.a\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "error: in variable `c`: unknown function `timestmp`\n \
             --> t.json:4:13 at variables.c\n  \
             |\n\
             4 |   \"c\": \"x-{{timestmp}}\"\n  \
             |             ^^^^^^^^\n  \
             = help: did you mean `timestamp`? ({{timestamp}})\n"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn only_except_and_override_must_name_builds() {
    let t = format!(
        r#"{{"builders": [{BUILDER}],
 "provisioners": [{{"type": "shell", "inline": ["x"], "only": ["amazon-eb"], "override": {{"nope": {{}}}}}}]}}"#
    );
    let s = Scratch::new().with("t.json", &t);
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    let headlines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.contains("help:"))
        .collect();
    assert_eq!(
        headlines,
        vec![
            "error: provisioner 1 (shell): `only` names `amazon-eb`, which is not a build in this template",
            "  = help: did you mean `amazon-ebs`? (`only` takes build names, which default to the builder type)",
            "error: provisioner 1 (shell): `override` names `nope`, which is not a build in this template",
            "  = help: builds in this template: amazon-ebs",
        ]
    );
    let r = s.run(&["validate", "-only=web", "-var", "x=1", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("warning: -only names `web`, which is not a build in this template\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("warning: `x` is set by -var but the template declares no such variable\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn unsupported_types_are_named_with_the_supported_ones() {
    let t = format!(
        r#"{{"builders": [{BUILDER}, {{"type": "googlecompute"}}],
 "provisioners": [{{"type": "chef-client"}}, {{"type": "shel"}}],
 "post-processors": [{{"type": "vagrant"}}]}}"#
    );
    let r = Scratch::new()
        .with("t.json", &t)
        .run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.contains("help:"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "error: builder type `googlecompute` is not supported by imgbuild",
            "  = help: supported builders: amazon-ebs, null (amazon-ebs builds AMIs; null runs the provisioners against an existing machine)",
            "error: provisioner type `chef-client` is not supported by imgbuild",
            "  = help: supported provisioners: shell, file, shell-local, breakpoint, ansible, ansible-local, puppet-masterless, chef-solo, salt-masterless",
            "error: provisioner type `shel` is not supported by imgbuild",
            "  = help: did you mean `shell`?",
            "error: post-processor type `vagrant` is not supported by imgbuild",
            "  = help: supported post-processors: manifest, shell-local, ami-outputs, cloudformation-update, ssm-parameter, ami-retention, boot-test",
        ]
    );
}

#[test]
fn min_packer_version_is_checked() {
    let t = format!(r#"{{"min_packer_version": "1.9.0", "builders": [{BUILDER}]}}"#);
    let r = Scratch::new()
        .with("t.json", &t)
        .run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with(
        "error: This template requires Packer version 1.9.0 or higher; imgbuild implements the template language of Packer 1.6.6\n --> t.json:1:24 at min_packer_version\n"
    ), "{}", r.stderr);
    let t = format!(r#"{{"min_packer_version": "1.5.0", "builders": [{BUILDER}]}}"#);
    assert_eq!(
        Scratch::new()
            .with("t.json", &t)
            .run(&["validate", "t.json"])
            .code,
        0
    );
}

#[test]
fn template_from_stdin() {
    let s = Scratch::new();
    let r = imgbuild_in(
        s.dir.path(),
        &["validate", "-"],
        Some(&format!(r#"{{"builders": [{BUILDER}]}}"#)),
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Template validated successfully.\n"),
        "{}",
        r.stderr
    );
    let r = imgbuild_in(s.dir.path(), &["validate", "-"], Some("{\"builders\": 1}"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(" --> <stdin>:1:14 at builders\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn inspect_masks_sensitive_values_everywhere() {
    let t = r#"{"description": "uses hunter2",
 "variables": {"pw": "hunter2", "region": "us-east-1", "req": null},
 "sensitive-variables": ["pw"],
 "builders": [{"type": "amazon-ebs", "name": "web"}],
 "provisioners": [{"type": "shell", "inline": ["x"]}],
 "post-processors": [["shell-local", "manifest"]]}"#;
    let r = Scratch::new().with("t.json", t).run(&["inspect", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Description:\n\nuses <sensitive>\n\n\
         Required variables:\n\n  req\n\n\
         Optional variables and their defaults:\n\n  pw     = <sensitive>\n  region = us-east-1\n\n\
         Builders:\n\n  web (amazon-ebs)\n\n\
         Provisioners:\n\n  shell\n\n\
         Post-processors:\n\n  shell-local -> manifest\n\n\
         Note: If your build names contain user variables or template\n\
         functions such as 'timestamp', these are processed at build time,\n\
         and therefore only show in their raw form here.\n"
    );
    let r = Scratch::new()
        .with("t.json", t)
        .run(&["inspect", "-machine-readable", "t.json"]);
    assert_eq!(r.code, 0);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    let records: Vec<String> = r
        .stdout
        .lines()
        .map(|l| l.split_once(',').map_or("", |(_, rest)| rest).to_string())
        .filter(|l| l.starts_with(",template-"))
        .collect();
    assert_eq!(
        records,
        vec![
            ",template-variable,req,,1",
            ",template-variable,pw,<sensitive>,0",
            ",template-variable,region,us-east-1,0",
            ",template-builder,web,amazon-ebs",
            ",template-provisioner,shell",
            ",template-post-processor,shell-local,manifest",
        ]
    );
}

#[test]
fn build_without_credentials_says_so_and_creates_nothing() {
    let t = format!(
        r#"{{"builders": [{BUILDER}],
 "provisioners": [{{"type": "shell", "inline": ["x"], "pause_before": "10s", "max_retries": 2}}],
 "post-processors": ["manifest"]}}"#
    );
    let s = Scratch::new().with("t.json", &t);
    let journal = s.path("journal");
    let journal = journal.to_str().expect("utf-8 path");
    // No credentials anywhere, and never the instance metadata service (loopback only).
    let r = imgbuild_env(
        s.dir.path(),
        &["build", "-color=false", "t.json"],
        None,
        &[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("IMGBUILD_JOURNAL_DIR", journal),
        ],
    );
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    // stdout has only the outcome table: nothing was started.
    let stdout: Vec<&str> = r.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(stdout.len(), 3, "{}", r.stdout);
    assert_eq!(stdout[0], "==> Build outcomes: 0 succeeded, 1 failed");
    assert!(
        stdout[2].starts_with("    amazon-ebs  failed and cleaned up  "),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("--> amazon-ebs: no AWS credentials found: "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.ends_with(
            "error: 1 of 1 build(s) failed (amazon-ebs); everything they created was removed\n"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn every_image_template_in_the_repository_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("images")).expect("images/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let shown = path.display().to_string();
        // Required variables get placeholder values; the rest keep their defaults.
        let text = std::fs::read_to_string(&path).expect("readable");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let mut args: Vec<String> = vec!["validate".into()];
        if let Some(vars) = doc.get("variables").and_then(|v| v.as_object()) {
            for (k, v) in vars {
                if v.is_null() {
                    // A CIDR must look like one (images/quick_start.json's `my_cidr`).
                    let value = match k.ends_with("cidr") {
                        true => "203.0.113.7/32",
                        false => "placeholder",
                    };
                    args.push("-var".into());
                    args.push(format!("{k}={value}"));
                }
            }
        }
        args.push(shown.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // What the test world would provide to images/local_example.json.
        let world_env = [
            ("IMGBUILD_TEST_EC2_ENDPOINT", "http://127.0.0.1:9"),
            ("IMGBUILD_TEST_SSH_HOST", "127.0.0.1"),
            ("IMGBUILD_TEST_SSH_PORT", "2222"),
            ("IMGBUILD_TEST_SSH_USER", "imgbuild-test"),
            ("IMGBUILD_TEST_SANDBOX", "/tmp/imgbuild-sandbox"),
        ];
        let r = imgbuild_env(&repo(), &refs, None, &world_env);
        assert_eq!(r.code, 0, "{shown} does not validate:\n{}", r.stderr);
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected at least web_worker.json and local_example.json, found {checked}"
    );
}

#[test]
fn configuration_errors_name_the_key_the_call_and_the_file() {
    let t = r#"{
  "builders": [{
    "type": "amazon-ebs",
    "region": "us-east-1",
    "instance_type": "t3.micro",
    "source_ami": "ami-12345678",
    "ssh_username": "ubuntu",
    "ami_nmae": "web-{{timestamp}}",
    "tags": {"Name": "web-{{timestamp"}
  }],
  "provisioners": [
    {"type": "shell", "inline": ["echo {{env `HOME`}}"]},
    {"type": "shell", "script": "scripts/missing.sh"}
  ]
}
"#;
    let s = Scratch::new().with("t.json", t);
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2);
    let cwd = s.dir.path().display().to_string();
    assert_eq!(
        r.stderr,
        format!(
            "error: builder `amazon-ebs` (amazon-ebs) is missing the required key `ami_name`\n \
             --> t.json:2:16 at builders[0]\n  \
             |\n\
             2 |   \"builders\": [{{\n  \
             |                ^\n\
             error: unknown key `ami_nmae` in builder `amazon-ebs` (amazon-ebs)\n \
             --> t.json:8:5 at builders[0].ami_nmae\n  \
             |\n\
             8 |     \"ami_nmae\": \"web-{{{{timestamp}}}}\",\n  \
             |     ^^^^^^^^^^\n  \
             = help: did you mean `ami_name`?\n\
             error: in `tags`: unterminated `{{{{`: the closing `}}}}` is missing\n \
             --> t.json:9:27 at builders[0].tags.Name\n  \
             |\n\
             9 |     \"tags\": {{\"Name\": \"web-{{{{timestamp\"}}\n  \
             |                           ^^\n  \
             = help: close the action with }}}}, or write a literal {{{{ as {{{{\"{{{{\"}}}}\n\
             error: in `inline`: `env` is only allowed in variable defaults\n  \
             --> t.json:12:42 at provisioners[0].inline[0]\n   \
             |\n\
             12 |     {{\"type\": \"shell\", \"inline\": [\"echo {{{{env `HOME`}}}}\"]}},\n   \
             |                                          ^^^\n   \
             = help: declare a variable with the default \"{{{{env `HOME`}}}}\" and use {{{{user `name`}}}} here\n\
             error: Bad script 'scripts/missing.sh': no such file or directory\n  \
             --> t.json:13:33 at provisioners[1].script\n   \
             |\n\
             13 |     {{\"type\": \"shell\", \"script\": \"scripts/missing.sh\"}}\n   \
             |                                 ^^^^^^^^^^^^^^^^^^^^\n   \
             = help: relative paths are resolved against the current directory ({cwd}), not the template's; write `{{{{template_dir}}}}/...` to make it relative to the template\n\
             imgbuild: the template is not valid: 5 errors\n"
        )
    );
}

/// The build would refuse a `shell` provisioner without a communicator after launching an
/// instance; `validate` refuses it first, at the provisioner.
#[test]
fn validate_refuses_a_shell_provisioner_when_the_build_has_no_communicator() {
    let s = Scratch::new().with(
        "t.json",
        r#"{
  "builders": [{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
    "source_ami": "ami-12345678", "communicator": "none", "ami_name": "web-{{timestamp}}"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["true"]},
    {"type": "shell", "inline": ["true"]}
  ]
}
"#,
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert_eq!(
        r.stderr,
        "error: the shell provisioner needs SSH, but this build has \"communicator\": \"none\" (build `amazon-ebs`)\n \
         --> t.json:6:14 at provisioners[1].type\n  \
         |\n\
         6 |     {\"type\": \"shell\", \"inline\": [\"true\"]}\n  \
         |              ^^^^^^^\n  \
         = help: give build `amazon-ebs` a communicator (remove \"communicator\": \"none\"), use `shell-local`, or leave this build out with the provisioner's `except`\n\
         imgbuild: the template is not valid: 1 error\n"
    );
}

/// A typo in a provisioner's `only` made it apply to no build, which hid its other errors.
#[test]
fn validate_reports_a_provisioners_errors_even_when_its_only_has_a_typo() {
    let s = Scratch::new().with(
        "t.json",
        r#"{
  "builders": [{"type": "null", "communicator": "none"}],
  "provisioners": [
    {"type": "shell-local", "only": ["nul"], "inlin": ["true"]}
  ]
}
"#,
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert_eq!(
        r.stderr,
        "error: Command, Inline, Script and Scripts options cannot all be empty.\n \
         --> t.json:4:5 at provisioners[0]\n  \
         |\n\
         4 |     {\"type\": \"shell-local\", \"only\": [\"nul\"], \"inlin\": [\"true\"]}\n  \
         |     ^\n  \
         = help: give the commands in \"inline\": [...], or a local file in \"script\" or \"scripts\"\n\
         error: provisioner 1 (shell-local): `only` names `nul`, which is not a build in this template\n \
         --> t.json:4:38 at provisioners[0].only[0]\n  \
         |\n\
         4 |     {\"type\": \"shell-local\", \"only\": [\"nul\"], \"inlin\": [\"true\"]}\n  \
         |                                      ^^^^^\n  \
         = help: did you mean `null`? (`only` takes build names, which default to the builder type)\n\
         error: unknown key `inlin` in provisioner 1 (shell-local)\n \
         --> t.json:4:46 at provisioners[0].inlin\n  \
         |\n\
         4 |     {\"type\": \"shell-local\", \"only\": [\"nul\"], \"inlin\": [\"true\"]}\n  \
         |                                              ^^^^^^^\n  \
         = help: did you mean `inline`?\n\
         imgbuild: the template is not valid: 3 errors\n"
    );
}

/// `temporary_security_group_source_public_ip` is implemented: what validate accepts, the build
/// does (it looks the address up before creating anything).
#[test]
fn validate_accepts_the_public_ip_source_of_the_temporary_security_group() {
    let s = Scratch::new().with(
        "t.json",
        &format!(
            r#"{{"builders": [{}, "temporary_security_group_source_public_ip": true}}]}}"#,
            BUILDER.trim_end_matches('}')
        ),
    );
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Template validated successfully.\n", "")
    );
}
