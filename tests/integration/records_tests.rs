//! `-machine-readable` against the reference: the same null-builder template (no SSH, no EC2:
//! `communicator: none`, a `shell-local` provisioner and post-processor) built by imgbuild and
//! by HashiCorp Packer 1.6.6, and the records compared by kind (type, `ui` subtype or artifact
//! field, whether a target is named) and field count. Skipped when `packer` is not on PATH,
//! except in CI (scripts/test.sh installs it), where its absence fails the test.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::support::cli::Scratch;

/// A template both tools build without a machine: a script's stdout and stderr from a
/// provisioner, and a post-processor's stdout, each with a marker to find its record by.
const TEMPLATE: &str = r#"{
  "builders": [{"type": "null", "name": "rec", "communicator": "none"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo prov-out-marker", "echo prov-err-marker 1>&2"]}
  ],
  "post-processors": [{"type": "shell-local", "inline": ["echo pp-out-marker"]}]
}"#;

/// What makes two records the same kind: the target is named or not, the type, the first data
/// field when it says what the record is (`ui`'s say/message/error, `artifact`'s field name,
/// which is its second), and the number of data fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RecordKind {
    targeted: bool,
    kind: String,
    sub: String,
    fields: usize,
}

/// One machine-readable line (`timestamp,target,type,data...`) as its kind; `None` for a line
/// that is not a record.
fn kind_of(line: &str) -> Option<RecordKind> {
    let parts: Vec<&str> = line.split(',').collect();
    if parts.len() < 3 || parts[0].parse::<i64>().is_err() {
        return None;
    }
    let data = &parts[3..];
    let sub = match parts[2] {
        "ui" => data.first().copied().unwrap_or_default(),
        "artifact" => data.get(1).copied().unwrap_or_default(),
        _ => "",
    };
    Some(RecordKind {
        targeted: !parts[1].is_empty(),
        kind: parts[2].to_string(),
        sub: sub.to_string(),
        fields: data.len(),
    })
}

/// The kinds of all records of `stdout`, and the kind of the record holding each marker.
fn kinds(stdout: &str, markers: &[&str]) -> (BTreeSet<RecordKind>, Vec<Option<RecordKind>>) {
    // imgbuild's own records, the build's timeline (README), have no Packer counterpart.
    let all = stdout
        .lines()
        .filter_map(kind_of)
        .filter(|k| !k.kind.starts_with("timeline"))
        .collect();
    let by_marker = markers
        .iter()
        .map(|m| stdout.lines().find(|l| l.contains(m)).and_then(kind_of))
        .collect();
    (all, by_marker)
}

/// Packer's version line, or `None` (after saying so) when it is not installed outside CI.
fn packer_or_skip() -> Option<String> {
    match crate::support::world::run_ok(
        Command::new("packer").arg("version"),
        Duration::from_secs(30),
    ) {
        Ok(v) => Some(v),
        Err(e) => {
            crate::support::skip(&format!(
                "packer (the reference) is not installed ({e}); scripts/test.sh installs it"
            ));
            None
        }
    }
}

#[test]
fn machine_readable_records_match_packer_for_a_null_build_with_script_output() {
    let Some(version) = packer_or_skip() else {
        return;
    };
    let markers = ["prov-out-marker", "prov-err-marker", "pp-out-marker"];

    let ours = Scratch::new().with("t.json", TEMPLATE);
    let run = ours.run(&["build", "-machine-readable", "t.json"]);
    assert_eq!(run.code, 0, "imgbuild:\n{}\n{}", run.stdout, run.stderr);

    let theirs = Scratch::new().with("t.json", TEMPLATE);
    let mut cmd = Command::new("packer");
    cmd.args(["build", "-machine-readable", "t.json"])
        .current_dir(theirs.dir.path())
        .env("CHECKPOINT_DISABLE", "1");
    let packer = crate::support::world::run_ok(&mut cmd, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("packer build failed ({}): {e}", version.trim()));

    let (our_kinds, our_markers) = kinds(&run.stdout, &markers);
    let (packer_kinds, packer_markers) = kinds(&packer, &markers);
    // A script's stdout is `ui,message` (not `ui,say`), its stderr `ui,error`.
    assert_eq!(
        our_markers, packer_markers,
        "the records of a script's output differ:\nimgbuild:\n{}\npacker:\n{packer}",
        run.stdout
    );
    assert!(
        our_markers.iter().all(Option::is_some),
        "a marker is missing:\n{}",
        run.stdout
    );
    assert_eq!(
        our_kinds, packer_kinds,
        "record kinds differ:\nimgbuild:\n{}\npacker:\n{packer}",
        run.stdout
    );
}

#[test]
fn record_kinds_name_ui_subtypes_and_artifact_fields() {
    let say = kind_of("1,,ui,say,==> rec: a").expect("a record");
    assert_eq!(
        (say.kind.as_str(), say.sub.as_str(), say.fields),
        ("ui", "say", 2)
    );
    let art = kind_of("1,rec,artifact,0,id,Null").expect("a record");
    assert!(art.targeted);
    assert_eq!((art.sub.as_str(), art.fields), ("id", 3));
    assert_eq!(kind_of("    rec: not a record"), None);
}
