//! Provisioners: what runs against the instance between launch and image creation. A closed
//! set, tagged by `"type"`; this module holds their configuration (running them comes later).

pub mod breakpoint;
pub mod file;
pub mod runtime;
pub mod shell;
pub mod shell_local;

pub use breakpoint::BreakpointConfig;
pub use file::{Direction, FileConfig};
pub use shell::{ShellConfig, ShellSource};
pub use shell_local::ShellLocalConfig;

use crate::template::decode::{Dx, Obj};
use std::time::Duration;

#[derive(Debug)]
pub struct PreparedProvisioner {
    /// Position in the template's `provisioners` list (0-based).
    pub index: usize,
    pub kind: String,
    pub pause_before: Option<Duration>,
    pub max_retries: u32,
    pub timeout: Option<Duration>,
    pub config: ProvisionerConfig,
    /// The definition as written, with this build's `override` merged (for the reuse
    /// fingerprint: template text, not rendered values).
    pub definition: serde_json::Value,
}

/// The provisioner types imgbuild knows.
pub const PROVISIONER_TYPES: &[&str] = &["shell", "file", "shell-local", "breakpoint"];

/// One provisioner's own options (the common ones, `only`, `except`, `override`,
/// `pause_before`, `max_retries`, `timeout`, are the caller's).
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionerConfig {
    Shell(ShellConfig),
    File(FileConfig),
    ShellLocal(ShellLocalConfig),
    Breakpoint(BreakpointConfig),
}

impl ProvisionerConfig {
    /// Decodes the object of a provisioner of type `kind`, whose common keys the caller has
    /// taken. `None` for a type imgbuild does not know (the caller reports it).
    pub fn decode(kind: &str, obj: Obj, dx: &mut Dx) -> Option<ProvisionerConfig> {
        Some(match kind {
            "shell" => ProvisionerConfig::Shell(ShellConfig::decode(obj, dx)),
            "file" => ProvisionerConfig::File(FileConfig::decode(obj, dx)),
            "shell-local" => ProvisionerConfig::ShellLocal(ShellLocalConfig::decode(obj, dx)),
            "breakpoint" => ProvisionerConfig::Breakpoint(BreakpointConfig::decode(obj, dx)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn every_listed_type_decodes_and_others_are_none() {
        for kind in PROVISIONER_TYPES {
            let (c, _) = decode(r#"{"inline": ["true"]}"#, |o, dx| {
                ProvisionerConfig::decode(kind, o, dx)
            });
            assert!(c.is_some(), "{kind}");
        }
        let (c, d) = decode(r#"{"inline": ["true"]}"#, |o, dx| {
            ProvisionerConfig::decode("ansible", o, dx)
        });
        assert!(c.is_none());
        assert!(d.items.is_empty(), "the caller reports unknown types");
        let (c, _) = decode(r#"{"inline": ["true"]}"#, |o, dx| {
            ProvisionerConfig::decode("shell", o, dx)
        });
        assert!(
            matches!(c, Some(ProvisionerConfig::Shell(s)) if s.source == ShellSource::Inline(vec!["true".into()]))
        );
    }
}
