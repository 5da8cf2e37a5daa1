//! Post-processors: what runs after a build produced its artifact. A closed set, tagged by
//! `"type"`; this module holds their configuration (running them comes later).

pub mod manifest;

pub use manifest::ManifestConfig;

use crate::provisioner::shell_local::ShellLocalConfig;
use crate::template::decode::{Dx, Obj};

/// The post-processor types imgbuild knows.
pub const POST_PROCESSOR_TYPES: &[&str] = &["manifest", "shell-local"];

/// One post-processor's own options (the common ones, `name`, `only`, `except`,
/// `keep_input_artifact`, are the caller's).
#[derive(Debug, Clone, PartialEq)]
pub enum PostProcessorConfig {
    Manifest(ManifestConfig),
    /// The same options as the `shell-local` provisioner.
    ShellLocal(ShellLocalConfig),
}

impl PostProcessorConfig {
    /// Decodes the object of a post-processor of type `kind`, whose common keys the caller has
    /// taken. `None` for a type imgbuild does not know (the caller reports it).
    pub fn decode(kind: &str, obj: Obj, dx: &mut Dx) -> Option<PostProcessorConfig> {
        Some(match kind {
            "manifest" => PostProcessorConfig::Manifest(ManifestConfig::decode(obj, dx)),
            "shell-local" => PostProcessorConfig::ShellLocal(ShellLocalConfig::decode(obj, dx)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

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
            let (c, _) = decode(r#"{"inline": ["x"]}"#, |o, dx| {
                PostProcessorConfig::decode(kind, o, dx)
            });
            assert!(c.is_some(), "{kind}");
        }
    }
}
