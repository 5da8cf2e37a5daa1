//! The `ansible-local` provisioner's configuration (hashicorp/packer-plugin-ansible
//! `provisioner/ansible-local`): stage playbooks, roles and inventory on the instance and run
//! `ansible-playbook -c local` there. Ansible must already be installed on the instance, as in
//! Packer.

use std::path::PathBuf;

use crate::checks::{error_at, flag, opt_string};
use crate::provisioner::ansible::{local_dir, local_file};
use crate::template::decode::{Dx, Obj};

/// Packer's default `command`.
pub const DEFAULT_COMMAND: &str = "ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook";
/// Packer's default staging directory (a time-ordered UUID is appended at run time).
pub const DEFAULT_STAGING_PARENT: &str = "/tmp/packer-provisioner-ansible-local";

/// `ansible-local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsibleLocalConfig {
    /// `playbook_file` or `playbook_files` (one of them is required).
    pub playbook_files: Vec<PathBuf>,
    pub playbook_dir: Option<PathBuf>,
    pub playbook_paths: Vec<PathBuf>,
    pub role_paths: Vec<PathBuf>,
    pub collection_paths: Vec<PathBuf>,
    pub group_vars: Option<PathBuf>,
    pub host_vars: Option<PathBuf>,
    pub galaxy_file: Option<PathBuf>,
    pub inventory_file: Option<PathBuf>,
    pub inventory_groups: Vec<String>,
    pub command: String,
    pub extra_arguments: Vec<String>,
    /// `staging_directory`; `None`: Packer's default with a fresh UUID.
    pub staging_directory: Option<String>,
    pub clean_staging_directory: bool,
    pub galaxy_command: String,
    pub galaxy_force_install: bool,
    /// On the instance; default `<staging>/galaxy_roles`.
    pub galaxy_roles_path: Option<String>,
    /// On the instance; default `<staging>/galaxy_collections`.
    pub galaxy_collections_path: Option<String>,
}

impl AnsibleLocalConfig {
    /// Decodes and checks an `ansible-local` object whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AnsibleLocalConfig {
        let o = &mut obj;
        let one = local_file(o, dx, "playbook_file", false);
        let many = paths(o, dx, "playbook_files", false);
        if one.is_some() && !many.is_empty() {
            error_at(
                o,
                dx,
                "playbook_files",
                "Either playbook_file or playbook_files can be specified, not both",
                None,
            );
        } else if one.is_none() && many.is_empty() {
            error_at(
                o,
                dx,
                "playbook_file",
                "Either playbook_file or playbook_files must be specified",
                None,
            );
        }
        let playbook_files = one.into_iter().chain(many).collect();
        let playbook_dir = local_dir(o, dx, "playbook_dir");
        let playbook_paths = paths(o, dx, "playbook_paths", true);
        let role_paths = paths(o, dx, "role_paths", true);
        let collection_paths = paths(o, dx, "collection_paths", true);
        let group_vars = local_dir(o, dx, "group_vars");
        let host_vars = local_dir(o, dx, "host_vars");
        let galaxy_file = local_file(o, dx, "galaxy_file", false);
        let inventory_file = local_file(o, dx, "inventory_file", false);
        let inventory_groups = o.strings(dx, "inventory_groups").unwrap_or_default();
        let command = opt_string(o, dx, "command").unwrap_or_else(|| DEFAULT_COMMAND.into());
        let extra_arguments = o.strings(dx, "extra_arguments").unwrap_or_default();
        let staging_directory = opt_string(o, dx, "staging_directory");
        let clean_staging_directory = flag(o, dx, "clean_staging_directory").unwrap_or(false);
        let galaxy_command =
            opt_string(o, dx, "galaxy_command").unwrap_or_else(|| "ansible-galaxy".into());
        let galaxy_force_install = flag(o, dx, "galaxy_force_install").unwrap_or(false);
        let galaxy_roles_path = opt_string(o, dx, "galaxy_roles_path");
        let galaxy_collections_path = opt_string(o, dx, "galaxy_collections_path");
        obj.finish(dx);
        AnsibleLocalConfig {
            playbook_files,
            playbook_dir,
            playbook_paths,
            role_paths,
            collection_paths,
            group_vars,
            host_vars,
            galaxy_file,
            inventory_file,
            inventory_groups,
            command,
            extra_arguments,
            staging_directory,
            clean_staging_directory,
            galaxy_command,
            galaxy_force_install,
            galaxy_roles_path,
            galaxy_collections_path,
        }
    }
}

/// A list of local paths, each checked (directories when `dirs`, else files), each error at its
/// item.
pub(crate) fn paths(o: &mut Obj, dx: &mut Dx, key: &'static str, dirs: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for item in crate::checks::strings_at(o, dx, key).unwrap_or_default() {
        let p = crate::checks::expand_user(&item.value);
        if !crate::checks::is_deferred(&item.value) {
            let problem = match std::fs::metadata(&p) {
                Err(e) => Some(crate::checks::io_reason(&e)),
                Ok(m) if dirs && !m.is_dir() => Some("it is not a directory".into()),
                Ok(m) if !dirs && m.is_dir() => Some("it is a directory, not a file".into()),
                Ok(_) => None,
            };
            if let Some(why) = problem {
                let d = dx.error(
                    item.span,
                    &item.path,
                    format!("{key}: {}: {why}", item.value),
                );
                d.notes
                    .push(format!("help: {}", crate::checks::relative_path_help(&p)));
            }
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn defaults_are_packers_and_missing_paths_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("site.yml");
        std::fs::write(&pb, "").unwrap();
        let (c, d) = decode(
            &format!(r#"{{"playbook_file": {}}}"#, js(pb.display().to_string())),
            AnsibleLocalConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.playbook_files, vec![pb.clone()]);
        assert_eq!(c.command, DEFAULT_COMMAND);
        assert_eq!(c.galaxy_command, "ansible-galaxy");
        assert!(c.staging_directory.is_none() && !c.clean_staging_directory);
        let (_, d) = decode(
            &format!(
                r#"{{"playbook_file": {}, "role_paths": ["nope"], "group_vars": "gv"}}"#,
                js(pb.display().to_string())
            ),
            AnsibleLocalConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec![
                "role_paths: nope: no such file or directory",
                "group_vars: gv: no such file or directory"
            ]
        );
        assert_eq!(
            d.items[0].path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("builders[0].role_paths[0]")
        );
        let (_, d) = decode("{}", AnsibleLocalConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["Either playbook_file or playbook_files must be specified"]
        );
    }
}
