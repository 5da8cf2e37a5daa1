//! Provisioners: what runs against the instance between launch and image creation. A closed
//! set, tagged by `"type"`; this module holds their configuration and its decoding
//! ([`PreparedProvisioner::decode`], with a build's `override` merged); [`runtime`] runs them.

pub mod ansible;
pub mod ansible_local;
pub mod breakpoint;
pub mod config_mgmt;
pub mod file;
pub mod runtime;
pub mod shell;
pub mod shell_local;

pub use ansible::AnsibleConfig;
pub use ansible_local::AnsibleLocalConfig;
pub use breakpoint::BreakpointConfig;
pub use config_mgmt::{ChefConfig, PuppetConfig, SaltConfig};
pub use file::{Direction, FileConfig};
pub use shell::{ShellConfig, ShellSource};
pub use shell_local::ShellLocalConfig;

use crate::template::decode::{Dx, Obj};
use crate::template::json::{Kind, Member, Node};
use crate::template::RawProvisioner;
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

impl PreparedProvisioner {
    /// Decodes a provisioner of the template for the build named `build`: its `override` for
    /// that build merged over its settings, the common keys taken, its own options decoded by
    /// its type. `None` when it cannot be decoded (every problem is reported to `dx`).
    pub fn decode(p: &RawProvisioner, build: &str, dx: &mut Dx) -> Option<PreparedProvisioner> {
        let node = merged(p, build);
        let what = if p.path.to_string().starts_with("error-cleanup") {
            format!("error-cleanup-provisioner ({})", p.kind)
        } else {
            format!("provisioner {} ({})", p.index + 1, p.kind)
        };
        let mut obj = Obj::new(&node, p.path.clone(), what, dx)?;
        // `name` (HCL2's, or the JSON model's): shown in the timeline, read from `definition`.
        obj.string(dx, "name");
        for k in [
            "type",
            "only",
            "except",
            "override",
            "pause_before",
            "max_retries",
            "timeout",
        ] {
            obj.take(k);
        }
        let Some(config) = ProvisionerConfig::decode(&p.kind, obj, dx) else {
            dx.unknown_type(&node, &p.path, "provisioner", &p.kind, PROVISIONER_TYPES);
            return None;
        };
        Some(PreparedProvisioner {
            index: p.index,
            kind: p.kind.clone(),
            pause_before: p.pause_before,
            max_retries: p.max_retries,
            timeout: p.timeout,
            config,
            definition: {
                let mut v = node.to_json();
                if let Some(o) = v.as_object_mut() {
                    o.remove("override");
                }
                v
            },
        })
    }
}

/// The provisioner's settings with this build's `override` merged over them.
fn merged(p: &RawProvisioner, build: &str) -> Node {
    let Some((_, ov)) = p.overrides.iter().find(|(n, _)| n.name == build) else {
        return p.node.clone();
    };
    let base = p.node.as_object().unwrap_or(&[]);
    let extra = ov.as_object().unwrap_or(&[]);
    let mut members: Vec<Member> = base
        .iter()
        .filter(|m| m.key != "override" && !extra.iter().any(|e| e.key == m.key))
        .cloned()
        .collect();
    members.extend(extra.iter().cloned());
    Node {
        span: p.node.span,
        kind: Kind::Object(members),
    }
}

/// The provisioner types imgbuild knows.
pub const PROVISIONER_TYPES: &[&str] = &[
    "shell",
    "file",
    "shell-local",
    "breakpoint",
    "ansible",
    "ansible-local",
    "puppet-masterless",
    "chef-solo",
    "salt-masterless",
];

/// One provisioner's own options (the common ones, `only`, `except`, `override`,
/// `pause_before`, `max_retries`, `timeout`, are the caller's).
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionerConfig {
    Shell(ShellConfig),
    File(FileConfig),
    ShellLocal(ShellLocalConfig),
    Breakpoint(BreakpointConfig),
    Ansible(Box<AnsibleConfig>),
    AnsibleLocal(Box<AnsibleLocalConfig>),
    Puppet(Box<PuppetConfig>),
    Chef(Box<ChefConfig>),
    Salt(Box<SaltConfig>),
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
            "ansible" => ProvisionerConfig::Ansible(Box::new(AnsibleConfig::decode(obj, dx))),
            "ansible-local" => {
                ProvisionerConfig::AnsibleLocal(Box::new(AnsibleLocalConfig::decode(obj, dx)))
            }
            "puppet-masterless" => {
                ProvisionerConfig::Puppet(Box::new(PuppetConfig::decode(obj, dx)))
            }
            "chef-solo" => ProvisionerConfig::Chef(Box::new(ChefConfig::decode(obj, dx))),
            "salt-masterless" => ProvisionerConfig::Salt(Box::new(SaltConfig::decode(obj, dx))),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn a_prepared_provisioner_has_its_builds_override_merged_and_unknown_types_are_reported() {
        let text = r#"{
            "builders": [{"type": "null", "name": "b"}, {"type": "null", "name": "c"}],
            "provisioners": [
                {"type": "shell", "inline": ["a"], "max_retries": 2,
                 "override": {"b": {"inline": ["for b"]}}},
                {"type": "chef-client", "playbook_file": "x.yml"}
            ]
        }"#;
        let ((b, c, unknown), d) = template(text, |t, dx| {
            (
                PreparedProvisioner::decode(&t.provisioners[0], "b", dx),
                PreparedProvisioner::decode(&t.provisioners[0], "c", dx),
                PreparedProvisioner::decode(&t.provisioners[1], "b", dx),
            )
        });
        let b = b.expect("decodes for b");
        assert!(
            matches!(&b.config, ProvisionerConfig::Shell(s) if s.source == ShellSource::Inline(vec!["for b".into()]))
        );
        assert_eq!(b.max_retries, 2);
        assert!(b.definition.get("override").is_none(), "{}", b.definition);
        assert_eq!(b.definition["inline"], serde_json::json!(["for b"]));
        let c = c.expect("decodes for c");
        assert!(
            matches!(&c.config, ProvisionerConfig::Shell(s) if s.source == ShellSource::Inline(vec!["a".into()]))
        );
        assert!(unknown.is_none());
        assert_eq!(
            errors(&d),
            vec!["provisioner type `chef-client` is not supported by imgbuild"]
        );
        assert!(
            all_text(&d).contains("supported provisioners: shell, file"),
            "{d:?}"
        );
        assert_eq!(
            d.items[0].path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("provisioners[1].type")
        );
    }

    #[test]
    fn every_listed_type_decodes_and_others_are_none() {
        for kind in PROVISIONER_TYPES {
            let (c, _) = decode(r#"{"inline": ["true"]}"#, |o, dx| {
                ProvisionerConfig::decode(kind, o, dx)
            });
            assert!(c.is_some(), "{kind}");
        }
        let (c, d) = decode(r#"{"inline": ["true"]}"#, |o, dx| {
            ProvisionerConfig::decode("chef-client", o, dx)
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
