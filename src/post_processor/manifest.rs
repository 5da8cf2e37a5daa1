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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

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
