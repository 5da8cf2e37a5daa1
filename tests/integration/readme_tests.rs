//! README.md stays honest where it is cheap to check: every environment variable `src/` names
//! is in its table, the table of contents lists every section, the quick-start template is
//! valid, and the first two errors of "Troubleshooting" are quoted as imgbuild prints them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::cli::{imgbuild_env, imgbuild_in, Scratch};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The text of the section `## title`, up to the next `## ` heading.
fn section(readme: &str, title: &str) -> String {
    let head = format!("\n## {title}\n");
    let start = readme
        .find(&head)
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let body = &readme[start + head.len()..];
    body[..body.find("\n## ").unwrap_or(body.len())].to_string()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The environment variable names written as whole string literals (`"IMGBUILD_LOG"`) in the
/// code of `src/` outside its unit tests: those imgbuild reads, and those it sets for scripts.
fn env_names_in_src() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut names = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source file");
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for (i, _) in code.match_indices('"') {
            let rest = &code[i + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let known = ["IMGBUILD_", "AWS_", "PACKER_"]
                .iter()
                .any(|p| name.starts_with(p) && name.len() > p.len());
            if known && rest[name.len()..].starts_with('"') && !name.ends_with('_') {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn readme_names_every_environment_variable_src_reads_or_sets() {
    let names = env_names_in_src();
    // The scan finds what it should (a scan that finds nothing would prove nothing).
    for expected in [
        "IMGBUILD_JOURNAL_DIR",
        "IMGBUILD_LOG",
        "IMGBUILD_FINGERPRINT_KEY",
        "IMGBUILD_TEST_PAUSE",
        "AWS_POLL_DELAY_SECONDS",
    ] {
        assert!(
            names.contains(expected),
            "{expected} not found in {names:?}"
        );
    }
    let table = section(&readme(), "Environment variables");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !table.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's \"Environment variables\" table lacks {missing:?}"
    );
    // The test hooks are said to be test-only.
    let hooks = table
        .lines()
        .find(|l| l.contains("`IMGBUILD_TEST_PAUSE`"))
        .expect("the test hooks' row");
    assert!(hooks.contains("`test-hooks` cargo feature only"), "{hooks}");
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation other than `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn readme_contents_list_every_section_in_order() {
    let readme = readme();
    let sections: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| *h != "Contents")
        .map(|h| format!("- [{h}](#{})", anchor(h)))
        .collect();
    let contents: Vec<String> = section(&readme, "Contents")
        .lines()
        .filter(|l| l.starts_with("- "))
        .map(str::to_string)
        .collect();
    assert_eq!(contents, sections);
    assert_eq!(
        anchor("Builder, provisioner and post-processor options"),
        "builder-provisioner-and-post-processor-options"
    );
}

#[test]
fn readme_points_nowhere_outside_the_repository() {
    let readme = readme();
    for bad in ["../shared", "shared/design.md", "/work/"] {
        assert!(
            !readme.contains(bad),
            "README points outside the repository: {bad}"
        );
    }
}

#[test]
fn readme_quick_start_template_is_valid_and_quoted_by_the_command_shown() {
    let quick = section(&readme(), "Quick start on AWS");
    assert!(quick.contains("imgbuild validate -var my_cidr=203.0.113.7/32 images/quick_start.json"));
    let r = imgbuild_in(
        &root(),
        &[
            "validate",
            "-var",
            "my_cidr=203.0.113.7/32",
            "images/quick_start.json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

/// A build of the quick-start template with `vars` (no credentials file, no instance metadata):
/// it stops before any AWS call. Returns stderr.
fn refused_build(vars: &[(&str, &str)]) -> String {
    let s = Scratch::new();
    let journal = s.path("journal");
    let journal = journal.to_str().expect("utf-8 path");
    let template = root().join("images/quick_start.json");
    let mut envs = vec![
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("IMGBUILD_JOURNAL_DIR", journal),
    ];
    envs.extend_from_slice(vars);
    let r = imgbuild_env(
        s.dir.path(),
        &[
            "build",
            "-color=false",
            "-var",
            "my_cidr=203.0.113.7/32",
            template.to_str().expect("utf-8 path"),
        ],
        None,
        &envs,
    );
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r.stderr
}

#[test]
fn readme_troubleshooting_quotes_the_region_and_credentials_errors_as_printed() {
    let help = section(&readme(), "Troubleshooting");
    // The line after `==> Some builds didn't complete ...`, for each case.
    let line = |stderr: &str, starts: &str| -> String {
        stderr
            .lines()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no {starts:?} line in:\n{stderr}"))
            .to_string()
    };
    let no_region = refused_build(&[
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret-example"),
    ]);
    let l = line(&no_region, "--> amazon-ebs: no AWS region");
    assert!(help.contains(&format!("\n{l}\n")), "README lacks:\n{l}");

    let no_credentials = refused_build(&[("AWS_REGION", "us-east-1")]);
    let l = line(&no_credentials, "--> amazon-ebs: no AWS credentials found");
    assert!(help.contains(&format!("\n{l}\n")), "README lacks:\n{l}");
    for attempted in ["  Environment: ", "  Profile: "] {
        let l = line(&no_credentials, attempted);
        assert!(help.contains(&format!("\n{l}\n")), "README lacks:\n{l}");
    }
}
