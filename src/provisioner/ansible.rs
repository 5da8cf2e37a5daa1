//! The `ansible` (remote) provisioner's configuration (hashicorp/packer-plugin-ansible): run
//! `ansible-playbook` on this machine against the build's instance.
//!
//! imgbuild connects Ansible straight to the instance with Ansible's own OpenSSH (through the
//! communicator's bastion when there is one), never through Packer's SSH proxy adapter: the
//! proxy options (`use_proxy`, `local_port`, `ssh_host_key_file`, `ssh_authorized_key_file`,
//! `ansible_proxy_key_type`, `sftp_command`) are accepted and mean nothing, which the build says
//! once.

use std::path::PathBuf;

use crate::checks::{
    error_at, flag, io_reason, is_deferred, local_path_problem, opt_string, relative_path_help,
    strings_at, Want,
};
use crate::template::decode::{Dx, Obj};

/// `ansible`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsibleConfig {
    /// `playbook_file` (required): a local playbook.
    pub playbook_file: PathBuf,
    /// `command`: the program. Default `ansible-playbook`.
    pub command: String,
    /// `extra_arguments`: arguments after imgbuild's own (no shell: `--opt=value`).
    pub extra_arguments: Vec<String>,
    /// `ansible_env_vars`: `KEY=VALUE` added to Ansible's environment.
    pub ansible_env_vars: Vec<(String, String)>,
    /// `ansible_ssh_extra_args`: replaces the default `-o IdentitiesOnly=yes`.
    pub ansible_ssh_extra_args: Vec<String>,
    pub groups: Vec<String>,
    pub empty_groups: Vec<String>,
    /// `host_alias`: the host's name in the inventory. Default `default`.
    pub host_alias: String,
    /// `user`: the SSH user; default the communicator's `ssh_username`.
    pub user: Option<String>,
    /// `inventory_file`: use this inventory instead of a generated one.
    pub inventory_file: Option<PathBuf>,
    /// `inventory_file_template`: the generated inventory's host line (Go template with
    /// `.HostAlias`, `.Host`, `.User`, `.Port`).
    pub inventory_file_template: Option<String>,
    /// `inventory_directory`: where the generated inventory is written. Default the temp dir.
    pub inventory_directory: Option<PathBuf>,
    pub keep_inventory_file: bool,
    pub galaxy_file: Option<PathBuf>,
    /// `galaxy_command`. Default `ansible-galaxy`.
    pub galaxy_command: String,
    pub galaxy_force_install: bool,
    pub galaxy_force_with_deps: bool,
    pub roles_path: Option<String>,
    pub collections_path: Option<String>,
    pub skip_version_check: bool,
    /// `use_sftp`: false sets `ANSIBLE_SCP_IF_SSH=True` as Packer does.
    pub use_sftp: bool,
    /// `use_proxy: true` was written (it means nothing here; said once at run time).
    pub use_proxy_true: bool,
}

/// Options of Packer's SSH proxy adapter, which imgbuild does not use.
const PROXY_OPTIONS: &[&str] = &[
    "local_port",
    "ssh_host_key_file",
    "ssh_authorized_key_file",
    "ansible_proxy_key_type",
    "sftp_command",
];

const PROXY_WHY: &str = "imgbuild connects Ansible straight to the instance with OpenSSH (Packer's SSH proxy adapter is not used), so the proxy's options make no difference";

impl AnsibleConfig {
    /// Decodes and checks an `ansible` object whose common keys the caller has taken. Unless
    /// `skip_version_check`, `command --version` must run here (as Packer checks at validate
    /// time).
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AnsibleConfig {
        let o = &mut obj;
        let playbook_file = local_file(o, dx, "playbook_file", true).unwrap_or_default();
        let command = opt_string(o, dx, "command").unwrap_or_else(|| "ansible-playbook".into());
        let extra_arguments = o.strings(dx, "extra_arguments").unwrap_or_default();
        let ansible_env_vars = crate::checks::env_vars(o, dx, "ansible_env_vars");
        let ansible_ssh_extra_args = o.strings(dx, "ansible_ssh_extra_args").unwrap_or_default();
        let groups = o.strings(dx, "groups").unwrap_or_default();
        let empty_groups = o.strings(dx, "empty_groups").unwrap_or_default();
        let host_alias = opt_string(o, dx, "host_alias").unwrap_or_else(|| "default".into());
        let user = opt_string(o, dx, "user");
        let inventory_file = local_file(o, dx, "inventory_file", false);
        let inventory_file_template = opt_string(o, dx, "inventory_file_template");
        let inventory_directory = local_dir(o, dx, "inventory_directory");
        let keep_inventory_file = flag(o, dx, "keep_inventory_file").unwrap_or(false);
        let galaxy_file = local_file(o, dx, "galaxy_file", false);
        let galaxy_command =
            opt_string(o, dx, "galaxy_command").unwrap_or_else(|| "ansible-galaxy".into());
        let galaxy_force_install = flag(o, dx, "galaxy_force_install").unwrap_or(false);
        let galaxy_force_with_deps = flag(o, dx, "galaxy_force_with_deps").unwrap_or(false);
        let roles_path = opt_string(o, dx, "roles_path");
        let collections_path = opt_string(o, dx, "collections_path");
        let skip_version_check = flag(o, dx, "skip_version_check").unwrap_or(false);
        let use_sftp = flag(o, dx, "use_sftp").unwrap_or(false);
        let use_proxy_true = flag(o, dx, "use_proxy") == Some(true);
        for k in PROXY_OPTIONS {
            if o.has(k) {
                o.ignored(dx, k, PROXY_WHY);
            }
        }
        if flag(o, dx, "ansible_winrm_use_http").is_some() {
            o.ignored(
                dx,
                "ansible_winrm_use_http",
                "imgbuild builds only over SSH (no WinRM)",
            );
        }
        if !skip_version_check {
            check_program(o, dx, "command", &command, "ansible-core");
            if galaxy_file.is_some() {
                check_program(o, dx, "galaxy_command", &galaxy_command, "ansible-core");
            }
        }
        obj.finish(dx);
        AnsibleConfig {
            playbook_file,
            command,
            extra_arguments,
            ansible_env_vars,
            ansible_ssh_extra_args,
            groups,
            empty_groups,
            host_alias,
            user,
            inventory_file,
            inventory_file_template,
            inventory_directory,
            keep_inventory_file,
            galaxy_file,
            galaxy_command,
            galaxy_force_install,
            galaxy_force_with_deps,
            roles_path,
            collections_path,
            skip_version_check,
            use_sftp,
            use_proxy_true,
        }
    }
}

/// A local file option: must exist and be readable (unless it is rendered at build time).
/// `required`: a missing key is an error.
pub(crate) fn local_file(
    o: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    required: bool,
) -> Option<PathBuf> {
    local_path(o, dx, key, required, Want::File)
}

/// A local directory option: must exist.
pub(crate) fn local_dir(o: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<PathBuf> {
    local_path(o, dx, key, false, Want::FileOrDir)
}

fn local_path(
    o: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    required: bool,
    want: Want,
) -> Option<PathBuf> {
    let Some(item) = strings_at(o, dx, key).and_then(|v| v.into_iter().next()) else {
        if required {
            error_at(o, dx, key, format!("{key} must be specified"), None);
        }
        return None;
    };
    let path = crate::checks::expand_user(&item.value);
    if !is_deferred(&item.value) {
        let problem = local_path_problem(&path, want).or_else(|| {
            (want == Want::FileOrDir && !path.is_dir()).then(|| "it is not a directory".into())
        });
        if let Some(why) = problem {
            let d = dx.error(
                item.span,
                &item.path,
                format!("{key}: {}: {why}", item.value),
            );
            d.notes.push(format!("help: {}", relative_path_help(&path)));
        }
    }
    Some(path)
}

/// Ansible refuses a locale that is not UTF-8 (`LC_ALL=C` in CI images): when the environment's
/// locale is not UTF-8, `LC_ALL=C.UTF-8` for Ansible's processes.
pub(crate) fn utf8_locale() -> Option<(&'static str, &'static str)> {
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    match locale {
        Some(l) if l.to_ascii_lowercase().replace('-', "").contains("utf8") => None,
        // Unset: Python coerces the C locale to UTF-8 itself.
        None => None,
        Some(_) => Some(("LC_ALL", "C.UTF-8")),
    }
}

/// Packer runs `<program> --version` at validate time; a program that does not run is an
/// error that says how to install it.
pub(crate) fn check_program(o: &mut Obj, dx: &mut Dx, key: &'static str, program: &str, pkg: &str) {
    if is_deferred(program) {
        return;
    }
    let mut cmd = std::process::Command::new(program);
    if let Some((k, v)) = utf8_locale() {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    let why = match out {
        Ok(o) if o.status.success() => return,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            match err.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(l) => format!("`{program} --version` failed ({}): {}", o.status, l.trim()),
                None => format!("`{program} --version` failed ({})", o.status),
            }
        }
        Err(e) => format!("`{program} --version` cannot run: {}", io_reason(&e)),
    };
    error_at(
        o,
        dx,
        key,
        format!("{why}: {program} must be installed on the machine running imgbuild"),
        Some(&format!(
            "install {pkg} (`pipx install {pkg}`, `python3 -m pip install {pkg}`, or `apt-get install ansible-core`) and put it on PATH, or set \"skip_version_check\": true"
        )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn defaults_are_packers_and_proxy_options_are_ignored_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("site.yml");
        std::fs::write(&pb, "- hosts: all\n").unwrap();
        let (c, d) = decode(
            &format!(
                r#"{{"playbook_file": {}, "skip_version_check": true, "use_proxy": true, "local_port": 2200}}"#,
                js(pb.display().to_string())
            ),
            AnsibleConfig::decode,
        );
        assert!(errors(&d).is_empty(), "{d:?}");
        assert_eq!(c.playbook_file, pb);
        assert_eq!(
            (
                c.command.as_str(),
                c.galaxy_command.as_str(),
                c.host_alias.as_str()
            ),
            ("ansible-playbook", "ansible-galaxy", "default")
        );
        assert!(c.use_proxy_true && !c.use_sftp && !c.keep_inventory_file);
        let w = warnings(&d);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("local_port"), "{w:?}");
        assert!(all_text(&d).contains("straight to the instance"), "{d:?}");
    }

    #[test]
    fn a_missing_playbook_and_a_missing_command_are_located_errors() {
        let (_, d) = decode(
            r#"{"playbook_file": "nope.yml", "command": "/nonexistent/ansible-playbook"}"#,
            AnsibleConfig::decode,
        );
        let e = errors(&d);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0], "playbook_file: nope.yml: no such file or directory");
        assert!(
            e[1].starts_with(
                "`/nonexistent/ansible-playbook --version` cannot run: no such file or directory"
            ),
            "{e:?}"
        );
        assert!(all_text(&d).contains("skip_version_check"), "{d:?}");
        let (_, d) = decode(r#"{"skip_version_check": true}"#, AnsibleConfig::decode);
        assert_eq!(errors(&d), vec!["playbook_file must be specified"]);
    }
}
