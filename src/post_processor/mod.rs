//! Post-processors: what runs after a build produced its artifact. A closed set, tagged by
//! `"type"`: Packer's `manifest` and `shell-local`, and imgbuild's `ami-outputs` (the AMI IDs as
//! a JSON file and as `KEY=VALUE` lines for the next stage of a pipeline), `cloudformation-update`
//! (the AMI handed to a CloudFormation stack), `ssm-parameter` (the AMI ID published in SSM
//! Parameter Store) and `boot-test` (an instance of the new AMI booted and checked). This module holds their configuration and its decoding
//! ([`PreparedPostProcessor::decode`], and [`check_builds`] across the builds of a template);
//! [`run`] runs a build's chains, each post-processor with a [`context::PpContext`] and failing
//! with an [`error::PpError`] (both below `run` and the post-processors).

pub mod ami_outputs;
pub mod ami_retention;
pub mod boot_test;
pub mod cloudformation;
pub mod context;
pub mod error;
pub mod manifest;
pub mod output;
pub mod run;
pub mod shell_local;
pub mod ssm_parameter;

pub use ami_outputs::AmiOutputsConfig;
pub use ami_retention::AmiRetentionConfig;
pub use boot_test::BootTestConfig;
pub use cloudformation::CloudFormationConfig;
pub use manifest::ManifestConfig;
pub use ssm_parameter::SsmParameterConfig;

use crate::provisioner::shell_local::ShellLocalConfig;
use crate::template::decode::{Dx, Obj};
use crate::template::diag::Diagnostic;
use crate::template::RawPostProcessor;

#[derive(Debug)]
pub struct PreparedPostProcessor {
    pub kind: String,
    pub name: Option<String>,
    pub keep_input_artifact: Option<bool>,
    pub config: PostProcessorConfig,
}

impl PreparedPostProcessor {
    /// Decodes a post-processor of the template: the common keys taken, its own options decoded
    /// by its type. `None` when it cannot be decoded (every problem is reported to `dx`).
    pub fn decode(pp: &RawPostProcessor, dx: &mut Dx) -> Option<PreparedPostProcessor> {
        let what = format!("post-processor `{}`", pp.kind);
        let mut obj = Obj::new(&pp.node, pp.path.clone(), what, dx)?;
        for k in ["type", "name", "only", "except", "keep_input_artifact"] {
            obj.take(k);
        }
        let Some(config) = PostProcessorConfig::decode(&pp.kind, obj, dx) else {
            dx.unknown_type(
                &pp.node,
                &pp.path,
                "post-processor",
                &pp.kind,
                POST_PROCESSOR_TYPES,
            );
            return None;
        };
        Some(PreparedPostProcessor {
            kind: pp.kind.clone(),
            name: pp.name.clone(),
            keep_input_artifact: pp.keep_input_artifact,
            config,
        })
    }
}

/// The post-processors' checks across the builds of one template (Packer's "does this build
/// exist" kind: what one build's post-processor would do to another's), each build given as its
/// name and its post-processor chains. Today: `ami-outputs` builds sharing an env file.
pub fn check_builds(builds: &[(&str, &[Vec<PreparedPostProcessor>])]) -> Vec<Diagnostic> {
    ami_outputs::check_builds(builds)
}

/// The post-processor types imgbuild knows.
pub const POST_PROCESSOR_TYPES: &[&str] = &[
    "manifest",
    "shell-local",
    "ami-outputs",
    "cloudformation-update",
    "ssm-parameter",
    "ami-retention",
    "boot-test",
];

/// One post-processor's own options (the common ones, `name`, `only`, `except`,
/// `keep_input_artifact`, are the caller's).
#[derive(Debug, Clone, PartialEq)]
pub enum PostProcessorConfig {
    Manifest(ManifestConfig),
    /// imgbuild's own: plain AMI IDs as JSON and as `KEY=VALUE` lines.
    AmiOutputs(AmiOutputsConfig),
    /// The same options as the `shell-local` provisioner.
    ShellLocal(ShellLocalConfig),
    /// imgbuild's own: the AMI handed to a CloudFormation stack's parameter.
    CloudFormation(CloudFormationConfig),
    /// imgbuild's own: the AMI ID published as an SSM parameter.
    SsmParameter(SsmParameterConfig),
    /// imgbuild's own: deregister old AMIs of the build (and their snapshots).
    AmiRetention(AmiRetentionConfig),
    /// imgbuild's own: boot an instance of the new AMI and run checks on it.
    BootTest(Box<BootTestConfig>),
}

impl PostProcessorConfig {
    /// Decodes the object of a post-processor of type `kind`, whose common keys the caller has
    /// taken. `None` for a type imgbuild does not know (the caller reports it).
    pub fn decode(kind: &str, obj: Obj, dx: &mut Dx) -> Option<PostProcessorConfig> {
        Some(match kind {
            "manifest" => PostProcessorConfig::Manifest(ManifestConfig::decode(obj, dx)),
            "ami-outputs" => PostProcessorConfig::AmiOutputs(AmiOutputsConfig::decode(obj, dx)),
            "shell-local" => PostProcessorConfig::ShellLocal(ShellLocalConfig::decode(obj, dx)),
            "cloudformation-update" => {
                PostProcessorConfig::CloudFormation(CloudFormationConfig::decode(obj, dx))
            }
            "ssm-parameter" => {
                PostProcessorConfig::SsmParameter(SsmParameterConfig::decode(obj, dx))
            }
            "ami-retention" => {
                PostProcessorConfig::AmiRetention(AmiRetentionConfig::decode(obj, dx))
            }
            "boot-test" => PostProcessorConfig::BootTest(Box::new(BootTestConfig::decode(obj, dx))),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn a_prepared_post_processor_takes_the_common_keys_and_unknown_types_are_reported() {
        let text = r#"{
            "builders": [{"type": "null", "name": "b"}],
            "post-processors": [
                {"type": "manifest", "name": "m", "only": ["b"], "keep_input_artifact": true,
                 "output": "m.json"},
                {"type": "vagrant"}
            ]
        }"#;
        let ((m, unknown), d) = template(text, |t, dx| {
            let pps: Vec<_> = t.post_processors.iter().flatten().collect();
            (
                PreparedPostProcessor::decode(pps[0], dx),
                PreparedPostProcessor::decode(pps[1], dx),
            )
        });
        let m = m.expect("manifest decodes");
        assert_eq!(m.name.as_deref(), Some("m"));
        assert_eq!(m.keep_input_artifact, Some(true));
        assert!(matches!(&m.config, PostProcessorConfig::Manifest(c) if c.output == "m.json"));
        assert!(unknown.is_none());
        assert_eq!(
            errors(&d),
            vec!["post-processor type `vagrant` is not supported by imgbuild"]
        );
        assert!(
            all_text(&d).contains("supported post-processors: manifest"),
            "{d:?}"
        );
    }

    #[test]
    fn known_types_decode_and_others_are_none() {
        let (c, d) = decode(r#"{"output": "m.json"}"#, |o, dx| {
            PostProcessorConfig::decode("manifest", o, dx)
        });
        assert!(d.items.is_empty());
        assert!(matches!(c, Some(PostProcessorConfig::Manifest(m)) if m.output == "m.json"));
        let (c, d) = decode(r#"{"inline": ["echo {{ build `ID` }}"]}"#, |o, dx| {
            PostProcessorConfig::decode("shell-local", o, dx)
        });
        assert!(d.items.is_empty(), "{d:?}");
        assert!(matches!(c, Some(PostProcessorConfig::ShellLocal(_))));
        let (_, d) = decode("{}", |o, dx| {
            PostProcessorConfig::decode("shell-local", o, dx)
        });
        assert_eq!(
            errors(&d),
            vec!["Command, Inline, Script and Scripts options cannot all be empty."]
        );
        let (c, d) = decode("{}", |o, dx| PostProcessorConfig::decode("vagrant", o, dx));
        assert!(c.is_none() && d.items.is_empty());
        for kind in POST_PROCESSOR_TYPES {
            let (c, _) = decode(
                r#"{"inline": ["x"], "json_output": "a.json", "keep_latest": 1}"#,
                |o, dx| PostProcessorConfig::decode(kind, o, dx),
            );
            assert!(c.is_some(), "{kind}");
        }
    }
}
