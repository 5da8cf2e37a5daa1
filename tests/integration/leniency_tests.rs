//! Packer 1.6.6's leniency: what it accepts, imgbuild accepts with a located warning; `-strict`
//! makes each warning an error (exit 2).

use crate::support::cli::Scratch;

const UNDECLARED: &str = "{\"variables\": {\"region\": \"us-east-1\"},\n \"builders\": [{\"type\": \"amazon-ebs\", \"region\": \"{{user `region`}}\", \"instance_type\": \"t3.micro\",\n  \"source_ami\": \"ami-1{{user `regoin`}}\", \"ssh_username\": \"u\", \"ami_name\": \"a-{{timestamp}}\",\n  \"tags\": {\"Team\": \"{{user `team`}}\", \"Owner\": \"{{user `team`}}\"}}]}";

#[test]
fn undeclared_user_variable_renders_empty_with_a_located_warning() {
    let s = Scratch::new().with("t.json", UNDECLARED);
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Template validated successfully.\n");
    let heads: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:") || l.contains("-->") || l.contains(" = "))
        .collect();
    assert_eq!(
        heads,
        vec![
            "warning: variable `regoin` is not declared: {{user `regoin`}} renders as empty text, as in Packer 1.6.6",
            " --> t.json:3:30 at builders[0].source_ami",
            "  = help: did you mean `region`? Or declare `regoin` under \"variables\" (or pass -var regoin=...)",
            "warning: variable `team` is not declared: {{user `team`}} renders as empty text, as in Packer 1.6.6",
            " --> t.json:4:28 at builders[0].tags.Team",
            "  = note: used in 1 more place(s)",
            "  = help: declare `team` under \"variables\", or pass -var team=...",
        ],
        "{}",
        r.stderr
    );
}

#[test]
fn strict_turns_each_leniency_warning_into_an_error() {
    let s = Scratch::new().with("t.json", UNDECLARED);
    let r = s.run(&["validate", "-strict", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 2, "{}", r.stderr);
    assert!(
        errors[0].contains("`regoin` is not declared"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "= note: an error because of -strict (without it, a warning: Packer accepts this)"
        ),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .ends_with("imgbuild: the template is not valid: 2 errors\n"));
}

#[test]
fn a_set_undeclared_variable_is_used_and_strict_refuses_it() {
    let s = Scratch::new().with("t.json", UNDECLARED);
    let r = s.run(&[
        "validate",
        "-var",
        "team=core",
        "-var",
        "regoin=2",
        "t.json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        vec![
            "warning: `team` is set by -var but the template declares no such variable",
            "warning: `regoin` is set by -var but the template declares no such variable",
        ]
    );
    let r = s.run(&[
        "validate",
        "-strict",
        "-var",
        "team=core",
        "-var",
        "regoin=2",
        "t.json",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        2
    );
}

#[test]
fn builder_names_and_only_except_override_are_rendered_before_matching() {
    let t = r#"{"variables": {"env": "prod"},
 "builders": [{"type": "amazon-ebs", "name": "web-{{user `env`}}", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "u", "ami_name": "a-{{timestamp}}"},
   {"type": "amazon-ebs", "name": "db-{{user `env`}}", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "u", "ami_name": "b-{{timestamp}}"}],
 "provisioners": [{"type": "shell", "inline": ["x"], "only": ["web-{{user `env`}}"],
     "override": {"web-{{user `env`}}": {"inline": ["y"]}}},
   {"type": "shell", "inline": ["z"], "except": ["db-{{user `env`}}"]}],
 "post-processors": [{"type": "manifest", "only": ["db-{{user `env`}}"]}]}"#;
    let s = Scratch::new().with("t.json", t);
    let r = s.run(&["validate", "-strict", "t.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = s.run(&["validate", "-strict", "-only=web-prod", "t.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = s.run(&["validate", "-var", "env=dev", "-only=db-dev", "t.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn only_naming_no_build_is_a_warning_and_strict_makes_it_an_error() {
    let builder = r#"{"type": "amazon-ebs", "name": "web", "region": "us-east-1", "instance_type": "t3.micro",
     "source_ami": "ami-12345678", "ssh_username": "u", "ami_name": "a-{{timestamp}}"}"#;
    let s = Scratch::new().with(
        "t.json",
        &format!(
            r#"{{"builders": [{builder}, {}]}}"#,
            builder.replace("\"web\"", "\"db\"")
        ),
    );
    let r = s.run(&["validate", "-only=web,wbe", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("warning: -only names `wbe`, which is not a build in this template\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("= help: did you mean `web`?"),
        "{}",
        r.stderr
    );
    let r = s.run(&["validate", "-strict", "-except=dbb", "t.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("error: -except names `dbb`, which is not a build in this template\n"),
        "{}",
        r.stderr
    );
}
