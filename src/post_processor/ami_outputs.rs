//! The `ami-outputs` post-processor (imgbuild's own, not Packer's): the AMI IDs of a build in the
//! two forms the next stage of a pipeline reads without parsing `region:ami` strings.
//!
//! - `json_output`: `{"<build>": {"<region>": "ami-..."}}`, e.g.
//!   `jq -r '.web_worker["us-west-2"]' amis.json`;
//! - `env_output`: `KEY=VALUE` lines, e.g. `WEB_WORKER_AMI=ami-...` (the AMI in the build's
//!   region) and `WEB_WORKER_AMI_US_WEST_2=ami-...` (one per region), for `. ./amis.env`,
//!   `docker --env-file`, `$GITHUB_ENV`, GitLab dotenv reports or a Makefile `include`.
//!
//! Both files are updated, not replaced: each build replaces its own entry (its key in the JSON
//! object, its variables in the env file) and leaves the others, so several builds of one run,
//! and runs with `-only`, all end up in one file. Updates are locked and atomic
//! ([`super::output`]).

use std::collections::BTreeMap;

use super::PreparedPostProcessor;
use crate::artifact::Artifact;
use crate::checks::{error_at, is_deferred, opt_string, warning_at};
use crate::template::decode::{Dx, Obj};
use crate::template::diag::Diagnostic;

/// `ami-outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiOutputsConfig {
    /// `json_output`: the JSON file of AMI IDs by build and region.
    pub json_output: Option<String>,
    /// `env_output`: the `KEY=VALUE` file.
    pub env_output: Option<String>,
    /// `env_prefix`: the variables' prefix. Default: the build name in upper case, with every
    /// character other than a letter or digit written `_` (`web-worker` gives `WEB_WORKER`).
    pub env_prefix: Option<String>,
}

impl AmiOutputsConfig {
    /// Decodes an `ami-outputs` post-processor whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AmiOutputsConfig {
        let o = &mut obj;
        let json_output = opt_string(o, dx, "json_output");
        let env_output = opt_string(o, dx, "env_output");
        let env_prefix = opt_string(o, dx, "env_prefix");
        if json_output.is_none() && env_output.is_none() {
            error_at(
                o,
                dx,
                "json_output",
                "`ami-outputs` needs `json_output`, `env_output` or both",
                Some("e.g. \"json_output\": \"amis.json\", \"env_output\": \"amis.env\""),
            );
        }
        if let Some(p) = &env_prefix {
            if !is_deferred(p) && !is_env_name(p) {
                error_at(
                    o,
                    dx,
                    "env_prefix",
                    format!("`env_prefix` \"{p}\" is not a variable name"),
                    Some("use letters, digits and `_`, not starting with a digit, e.g. \"WORKER\""),
                );
            }
            if env_output.is_none() {
                warning_at(
                    o,
                    dx,
                    "env_prefix",
                    "`env_prefix` has no effect without `env_output`",
                    None,
                );
            }
        }
        if let (Some(j), Some(e)) = (&json_output, &env_output) {
            if j == e {
                error_at(
                    o,
                    dx,
                    "env_output",
                    "`json_output` and `env_output` name the same file",
                    None,
                );
            }
        }
        obj.finish(dx);
        AmiOutputsConfig {
            json_output,
            env_output,
            env_prefix,
        }
    }
}

/// True for a shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name as a variable name part: upper case, every character other than an ASCII letter or
/// digit written `_`, and `_` in front of a leading digit. `web-worker` gives `WEB_WORKER`,
/// `us-east-1` gives `US_EAST_1`.
pub fn env_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The prefix of a build's variables: `env_prefix`, or the build name as a variable name.
pub fn prefix(cfg: &AmiOutputsConfig, build: &str) -> String {
    cfg.env_prefix.clone().unwrap_or_else(|| env_name(build))
}

/// The AMI a deployment of this build uses by default: the one in the build region, or the only
/// one when the build region keeps none (`skip_save_build_region` with one copy).
pub fn primary_ami(artifact: &Artifact) -> Option<&str> {
    let build_region = artifact.build_data.get("BuildRegion");
    if let Some(ami) = build_region.and_then(|r| artifact.amis.get(r)) {
        return Some(ami);
    }
    if artifact.amis.len() == 1 {
        return artifact.amis.values().next().map(String::as_str);
    }
    None
}

/// The variables of one build: `<P>_AMI` (when [`primary_ami`] knows it) first, then
/// `<P>_AMI_<REGION>` in region order.
pub fn env_vars(prefix: &str, artifact: &Artifact) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(ami) = primary_ami(artifact) {
        out.push((format!("{prefix}_AMI"), ami.to_string()));
    }
    for (region, ami) in &artifact.amis {
        out.push((format!("{prefix}_AMI_{}", env_name(region)), ami.clone()));
    }
    out
}

/// True for a region as a variable name part: `US_EAST_1`, `US_GOV_WEST_1`, `AP_SOUTHEAST_2`.
fn is_region_part(s: &str) -> bool {
    let parts: Vec<&str> = s.split('_').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_uppercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// True when `key` is one of the variables a build with this prefix writes (so an update
/// replaces it): `<P>_AMI` and `<P>_AMI_<REGION>`. `WEB_AMI_AMI_US_EAST_1` (build `web-ami`) is
/// not one of build `web`'s.
fn owned_by(prefix: &str, key: &str) -> bool {
    let main = format!("{prefix}_AMI");
    key == main
        || key
            .strip_prefix(&main)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(is_region_part)
}

/// The env file after a build wrote `vars`: the lines of other builds (and anything else) as they
/// were, this build's old variables removed, its new ones at the end.
pub fn merge_env(existing: Option<&str>, prefix: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    for line in existing.unwrap_or_default().lines() {
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_start_matches("export ").trim());
        if key.is_some_and(|k| owned_by(prefix, k)) || line.trim().is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (k, v) in vars {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// The JSON file after build `build` wrote its AMIs: an object of builds, each an object of
/// regions. Other builds' entries are kept; an existing file that is not such an object is an
/// error (it is not overwritten).
pub fn merge_json(
    existing: Option<&str>,
    build: &str,
    amis: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut root = serde_json::Map::new();
    if let Some(text) = existing.filter(|t| !t.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => root = m,
            Ok(_) => return Err("it is not a JSON object of builds".into()),
            Err(e) => return Err(format!("it is not valid JSON: {e}")),
        }
    }
    root.insert(build.to_string(), serde_json::json!(amis));
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(root))
        .map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// Builds of one template whose variables would overwrite each other in one env file: each
/// build given as its name and its post-processor chains.
pub fn check_builds(builds: &[(&str, &[Vec<PreparedPostProcessor>])]) -> Vec<Diagnostic> {
    use crate::post_processor::PostProcessorConfig;
    // (env_output, prefix) -> first build
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut out = Vec::new();
    for &(name, chains) in builds {
        for pp in chains.iter().flatten() {
            let PostProcessorConfig::AmiOutputs(c) = &pp.config else {
                continue;
            };
            let Some(file) = c.env_output.as_ref().filter(|f| !is_deferred(f)) else {
                continue;
            };
            let p = prefix(c, name);
            match seen.get(&(file.clone(), p.clone())) {
                Some(other) if other != name => out.push(
                    Diagnostic::error(format!(
                        "builds `{other}` and `{name}` would both write {p}_AMI... to {file}"
                    ))
                    .help("give one of them its own \"env_prefix\" (or its own env_output)"),
                ),
                Some(_) => {}
                None => {
                    seen.insert((file.clone(), p), name.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn artifact(amis: &[(&str, &str)], build_region: &str) -> Artifact {
        Artifact {
            amis: amis
                .iter()
                .map(|(r, a)| (r.to_string(), a.to_string()))
                .collect(),
            build_data: [("BuildRegion".to_string(), build_region.to_string())]
                .into_iter()
                .collect(),
            ..Artifact::default()
        }
    }

    #[test]
    fn decode_and_validation() {
        let (c, d) = decode(
            r#"{"json_output": "amis.json", "env_output": "out/{{user `n`}}.env", "env_prefix": "WORKER"}"#,
            AmiOutputsConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.json_output.as_deref(), Some("amis.json"));
        assert_eq!(c.env_output.as_deref(), Some("out/7.env"));
        assert_eq!(c.env_prefix.as_deref(), Some("WORKER"));

        let (_, d) = decode("{}", AmiOutputsConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["`ami-outputs` needs `json_output`, `env_output` or both"]
        );
        let (_, d) = decode(
            r#"{"env_output": "a.env", "env_prefix": "9 lives"}"#,
            AmiOutputsConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["`env_prefix` \"9 lives\" is not a variable name"]
        );
        let (_, d) = decode(
            r#"{"json_output": "a", "env_prefix": "X"}"#,
            AmiOutputsConfig::decode,
        );
        assert!(!d.has_errors());
        assert_eq!(
            warnings(&d),
            vec!["`env_prefix` has no effect without `env_output`"]
        );
        let (_, d) = decode(
            r#"{"json_output": "a", "env_output": "a"}"#,
            AmiOutputsConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["`json_output` and `env_output` name the same file"]
        );
        let (_, d) = decode(
            r#"{"json_output": "a", "env_file": "b"}"#,
            AmiOutputsConfig::decode,
        );
        assert_eq!(errors(&d), vec!["unknown key `env_file` in builder `b`"]);
    }

    #[test]
    fn variable_names() {
        assert_eq!(env_name("web_worker"), "WEB_WORKER");
        assert_eq!(env_name("web-worker"), "WEB_WORKER");
        assert_eq!(env_name("us-gov-west-1"), "US_GOV_WEST_1");
        assert_eq!(env_name("2024 web.é"), "_2024_WEB__");
        assert_eq!(env_name(""), "_");
        assert!(is_env_name("WORKER_1") && is_env_name("_x"));
        assert!(!is_env_name("1X") && !is_env_name("A-B") && !is_env_name(""));
    }

    #[test]
    fn env_vars_put_the_build_region_first() {
        let a = artifact(
            &[("us-west-2", "ami-west"), ("us-east-1", "ami-east")],
            "us-west-2",
        );
        assert_eq!(
            env_vars("WEB_WORKER", &a),
            vec![
                ("WEB_WORKER_AMI".to_string(), "ami-west".to_string()),
                (
                    "WEB_WORKER_AMI_US_EAST_1".to_string(),
                    "ami-east".to_string()
                ),
                (
                    "WEB_WORKER_AMI_US_WEST_2".to_string(),
                    "ami-west".to_string()
                ),
            ]
        );
        // skip_save_build_region with one copy: that copy; with two, no main variable.
        let a = artifact(&[("eu-west-1", "ami-eu")], "us-east-1");
        assert_eq!(primary_ami(&a), Some("ami-eu"));
        let a = artifact(
            &[("eu-west-1", "ami-eu"), ("us-west-2", "ami-w")],
            "us-east-1",
        );
        assert_eq!(primary_ami(&a), None);
        assert_eq!(env_vars("P", &a).len(), 2);
    }

    #[test]
    fn env_merge_replaces_only_this_builds_variables() {
        let old = "WEB_AMI=ami-old\nWEB_AMI_US_EAST_1=ami-old\nWEB_AMI_EU_WEST_1=ami-gone\n\
                   WEB_AMI_AMI=ami-other\nWEB_AMI_AMI_US_EAST_1=ami-other\nOTHER=1\n\n# note\n";
        let new = vec![
            ("WEB_AMI".to_string(), "ami-new".to_string()),
            ("WEB_AMI_US_EAST_1".to_string(), "ami-new".to_string()),
        ];
        assert_eq!(
            merge_env(Some(old), "WEB", &new),
            "WEB_AMI_AMI=ami-other\nWEB_AMI_AMI_US_EAST_1=ami-other\nOTHER=1\n# note\n\
             WEB_AMI=ami-new\nWEB_AMI_US_EAST_1=ami-new\n"
        );
        assert_eq!(
            merge_env(None, "WEB", &new),
            "WEB_AMI=ami-new\nWEB_AMI_US_EAST_1=ami-new\n"
        );
        // Applying the same update twice changes nothing.
        let once = merge_env(Some(old), "WEB", &new);
        assert_eq!(merge_env(Some(&once), "WEB", &new), once);
        assert!(is_region_part("US_GOV_WEST_1") && is_region_part("AP_SOUTHEAST_2"));
        assert!(!is_region_part("AMI_US_EAST_1") && !is_region_part("US_EAST"));
    }

    #[test]
    fn json_merge_keeps_other_builds() {
        let amis: BTreeMap<String, String> = [("us-east-1".to_string(), "ami-1".to_string())]
            .into_iter()
            .collect();
        let first = merge_json(None, "web", &amis).unwrap();
        assert_eq!(
            first,
            "{\n  \"web\": {\n    \"us-east-1\": \"ami-1\"\n  }\n}\n"
        );
        let amis2: BTreeMap<String, String> = [("eu-west-1".to_string(), "ami-2".to_string())]
            .into_iter()
            .collect();
        let both = merge_json(Some(&first), "api", &amis2).unwrap();
        let v: serde_json::Value = serde_json::from_str(&both).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"web": {"us-east-1": "ami-1"}, "api": {"eu-west-1": "ami-2"}})
        );
        let replaced = merge_json(Some(&both), "web", &amis2).unwrap();
        let v: serde_json::Value = serde_json::from_str(&replaced).unwrap();
        assert_eq!(v["web"], serde_json::json!({"eu-west-1": "ami-2"}));
        assert_eq!(
            merge_json(Some("[1]"), "web", &amis).unwrap_err(),
            "it is not a JSON object of builds"
        );
        assert!(merge_json(Some("{"), "web", &amis)
            .unwrap_err()
            .starts_with("it is not valid JSON"));
        assert!(merge_json(Some("  \n"), "web", &amis).is_ok());
    }
}
