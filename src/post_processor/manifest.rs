//! The `manifest` post-processor's configuration (Packer 1.6.6
//! `post-processor/manifest`): append a record of each build's artifact to a JSON file.

use std::collections::BTreeMap;

use crate::checks::{flag, opt_string};
use crate::template::decode::{Dx, Obj};

/// `manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestConfig {
    /// `output`: the manifest file. Default `packer-manifest.json`.
    pub output: String,
    /// `strip_path`: record only file names, without directories. Default false.
    pub strip_path: bool,
    /// `strip_time`: leave `build_time` out. Default false.
    pub strip_time: bool,
    /// `custom_data`: extra strings recorded with the build; values may hold build-time values
    /// (`{{ build `SourceAMI` }}`), rendered when the build knows them.
    pub custom_data: BTreeMap<String, String>,
}

pub const DEFAULT_OUTPUT: &str = "packer-manifest.json";

impl ManifestConfig {
    /// Decodes a `manifest` post-processor whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> ManifestConfig {
        let o = &mut obj;
        let c = ManifestConfig {
            output: opt_string(o, dx, "output").unwrap_or_else(|| DEFAULT_OUTPUT.to_string()),
            strip_path: flag(o, dx, "strip_path").unwrap_or(false),
            strip_time: flag(o, dx, "strip_time").unwrap_or(false),
            custom_data: o.string_map(dx, "custom_data").unwrap_or_default(),
        };
        obj.finish(dx);
        c
    }
}

/// One build in the manifest file, in Packer's field order. Fields imgbuild does not know (a
/// newer Packer's, or another tool's) are kept when the file is rewritten.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestBuild {
    pub name: String,
    pub builder_type: String,
    /// Unix seconds; left out with `strip_time` (Packer's `omitempty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_time: Option<i64>,
    /// `null` for AMIs (they are no files); other builders' lists are kept as they are.
    #[serde(default)]
    pub files: serde_json::Value,
    pub artifact_id: String,
    #[serde(default)]
    pub packer_run_uuid: String,
    /// `null` when the post-processor has no `custom_data`, as in Packer.
    #[serde(default)]
    pub custom_data: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The manifest file: every build recorded so far, and the run that wrote last.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestFile {
    #[serde(default)]
    pub builds: Vec<ManifestBuild>,
    #[serde(default)]
    pub last_run_uuid: String,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The manifest after a build is added to `existing` (the file's text, if it exists): appended,
/// as in Packer, except that with `-force` a file last written by another run starts over.
/// Written as Go's `json.MarshalIndent(.., "", "  ")` writes it (no newline at the end). A file
/// that is not a manifest is an error: it is not overwritten.
pub fn append(
    existing: Option<&str>,
    entry: ManifestBuild,
    run_uuid: &str,
    force: bool,
) -> Result<String, String> {
    let mut file = match existing.filter(|t| !t.trim().is_empty()) {
        Some(text) => serde_json::from_str::<ManifestFile>(text)
            .map_err(|e| format!("it is not a manifest (JSON with a \"builds\" list): {e}"))?,
        None => ManifestFile::default(),
    };
    if force && file.last_run_uuid != run_uuid {
        file = ManifestFile::default();
    }
    file.builds.push(entry);
    file.last_run_uuid = run_uuid.to_string();
    serde_json::to_string_pretty(&file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn entry(name: &str, time: Option<i64>, run: &str) -> ManifestBuild {
        ManifestBuild {
            name: name.into(),
            builder_type: "amazon-ebs".into(),
            build_time: time,
            files: serde_json::Value::Null,
            artifact_id: "us-east-1:ami-1,us-west-2:ami-2".into(),
            packer_run_uuid: run.into(),
            custom_data: None,
            other: Default::default(),
        }
    }

    #[test]
    fn the_file_is_packers_format() {
        let text = append(
            None,
            entry("web", Some(1700000000), "run-1"),
            "run-1",
            false,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{
  "builds": [
    {
      "name": "web",
      "builder_type": "amazon-ebs",
      "build_time": 1700000000,
      "files": null,
      "artifact_id": "us-east-1:ami-1,us-west-2:ami-2",
      "packer_run_uuid": "run-1",
      "custom_data": null
    }
  ],
  "last_run_uuid": "run-1"
}"#
        );
        let mut e = entry("web", None, "run-1");
        e.custom_data = Some(
            [("role".to_string(), serde_json::json!("worker"))]
                .into_iter()
                .collect(),
        );
        let text = append(None, e, "run-1", false).unwrap();
        assert!(!text.contains("build_time"), "strip_time: {text}");
        assert!(
            text.contains("\"custom_data\": {\n        \"role\": \"worker\"\n      }"),
            "{text}"
        );
    }

    #[test]
    fn builds_append_across_runs_and_force_starts_over_once_per_run() {
        let one = append(None, entry("a", Some(1), "r1"), "r1", false).unwrap();
        let two = append(Some(&one), entry("b", Some(2), "r1"), "r1", true).unwrap();
        let three = append(Some(&two), entry("a", Some(3), "r2"), "r2", false).unwrap();
        let f: ManifestFile = serde_json::from_str(&three).unwrap();
        let names: Vec<(&str, &str)> = f
            .builds
            .iter()
            .map(|b| (b.name.as_str(), b.packer_run_uuid.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "r1"), ("b", "r1"), ("a", "r2")]);
        assert_eq!(f.last_run_uuid, "r2");
        // -force in a new run truncates; the second build of that run appends.
        let forced = append(Some(&three), entry("a", Some(4), "r3"), "r3", true).unwrap();
        let forced = append(Some(&forced), entry("b", Some(4), "r3"), "r3", true).unwrap();
        let f: ManifestFile = serde_json::from_str(&forced).unwrap();
        assert_eq!(f.builds.len(), 2);
        assert!(f.builds.iter().all(|b| b.packer_run_uuid == "r3"));
    }

    #[test]
    fn other_builders_entries_and_unknown_fields_are_kept() {
        let foreign = r#"{"builds": [{"name": "box", "builder_type": "virtualbox-iso", "build_time": 5,
            "files": [{"name": "box.ovf", "size": 12}], "artifact_id": "box", "packer_run_uuid": "p",
            "custom_data": {"n": 1}, "extra": true}], "last_run_uuid": "p", "note": "x"}"#;
        let text = append(Some(foreign), entry("web", Some(6), "r"), "r", false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["builds"][0]["files"][0]["name"], "box.ovf");
        assert_eq!(v["builds"][0]["custom_data"]["n"], 1);
        assert_eq!(v["builds"][0]["extra"], true);
        assert_eq!(v["note"], "x");
        assert_eq!(v["builds"][1]["name"], "web");
        assert_eq!(v["last_run_uuid"], "r");
        assert!(append(Some("[]"), entry("a", None, "r"), "r", false)
            .unwrap_err()
            .starts_with("it is not a manifest"));
        assert!(append(Some("{\"builds\": 3}"), entry("a", None, "r"), "r", false).is_err());
    }

    #[test]
    fn defaults_are_packers() {
        let (c, d) = decode("{}", ManifestConfig::decode);
        assert!(d.items.is_empty());
        assert_eq!(c.output, "packer-manifest.json");
        assert!(!c.strip_path && !c.strip_time);
        assert!(c.custom_data.is_empty());
    }

    #[test]
    fn options_render_now_and_keep_build_values() {
        let (c, d) = decode(
            r#"{"output": "out/{{user `n`}}.json", "strip_path": "true", "strip_time": true,
                "custom_data": {"source_ami": "{{ build `SourceAMI` }}", "n": 7, "v": "{{user `n`}}"}}"#,
            ManifestConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.output, "out/7.json");
        assert!(c.strip_path && c.strip_time);
        assert_eq!(
            c.custom_data.get("source_ami").map(String::as_str),
            Some("{{ build `SourceAMI` }}")
        );
        assert_eq!(c.custom_data.get("n").map(String::as_str), Some("7"));
        assert_eq!(c.custom_data.get("v").map(String::as_str), Some("7"));
    }

    #[test]
    fn bad_values_and_unknown_keys() {
        let (_, d) = decode(
            r#"{"custom_data": {"a": ["x"]}, "strip_paths": true}"#,
            ManifestConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec![
                "`custom_data.a` must be a string, found an array",
                "unknown key `strip_paths` in builder `b`",
            ]
        );
        assert!(all_text(&d).contains("did you mean `strip_path`?"));
    }
}
