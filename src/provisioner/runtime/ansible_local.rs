//! `ansible-local` at run time: everything staged locally and uploaded as one tar stream
//! ([`super::staged`]), galaxy and each playbook run on the instance with Packer's command line,
//! the staging directory removed when `clean_staging_directory` says so (also after a failure).

use std::path::Path;

use super::staged::{self, Stage};
use super::{Failure, Runtime};
use crate::communicator::ssh::shell_quote;
use crate::provisioner::ansible_local::{AnsibleLocalConfig, DEFAULT_STAGING_PARENT};

/// `packer_http_addr` when the builder serves no HTTP, as Packer 1.6.6 hands it to ansible-local
/// (its `PackerHTTPAddr` placeholder): no builder of imgbuild serves HTTP.
const HTTP_ADDR_NOT_IMPLEMENTED: &str = "ERR_HTTP_ADDR_NOT_IMPLEMENTED_BY_BUILDER";

/// The name of a local path's last component.
fn base(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The generated inventory (Packer's): `127.0.0.1`, or one group per `inventory_groups`.
pub(crate) fn inventory_text(groups: &[String]) -> String {
    if groups.is_empty() {
        return "127.0.0.1\n".into();
    }
    groups
        .iter()
        .map(|g| format!("[{g}]\n127.0.0.1\n"))
        .collect()
}

/// The command that runs one playbook (Packer 1.6.6's, spacing included).
pub(crate) fn playbook_command(
    c: &AnsibleLocalConfig,
    staging: &str,
    playbook: &str,
    inventory: &str,
    build_name: &str,
    build_type: &str,
) -> String {
    let mut env = String::new();
    if let Some(p) = roles_path(c, staging) {
        env.push_str(&format!("ANSIBLE_ROLES_PATH={p} "));
    }
    if let Some(p) = &c.galaxy_collections_path {
        env.push_str(&format!("ANSIBLE_COLLECTIONS_PATHS={p} "));
    }
    let mut extra = format!(
        " --extra-vars \"packer_build_name={build_name} packer_builder_type={build_type} packer_http_addr={HTTP_ADDR_NOT_IMPLEMENTED} -o IdentitiesOnly=yes\" "
    );
    extra.push_str(&c.extra_arguments.join(" "));
    format!(
        "cd {staging} && {env}{} {playbook}{extra} -c local -i {inventory}",
        c.command
    )
}

/// Where galaxy roles go on the instance, when galaxy runs or a path was given.
fn roles_path(c: &AnsibleLocalConfig, staging: &str) -> Option<String> {
    c.galaxy_roles_path.clone().or_else(|| {
        c.galaxy_file
            .as_ref()
            .map(|_| format!("{staging}/galaxy_roles"))
    })
}

pub(crate) async fn run(rt: &mut Runtime<'_, '_>, c: &AnsibleLocalConfig) -> Result<(), Failure> {
    if !rt.remote.enabled() {
        return Err(Failure::NoCommunicator {
            kind: "ansible-local".into(),
        });
    }
    let staging = match &c.staging_directory {
        Some(s) => rt.render_lenient(s),
        None => format!("{DEFAULT_STAGING_PARENT}/{}", uuid::Uuid::now_v7()),
    };
    let stage = Stage::new()?;
    if let Some(d) = &c.playbook_dir {
        stage.add(d, "")?;
    }
    let mut playbooks = Vec::new();
    for p in &c.playbook_files {
        let inside = c
            .playbook_dir
            .as_ref()
            .and_then(|d| p.strip_prefix(d).ok())
            .map(|r| r.display().to_string());
        let rel = match inside {
            Some(r) => r,
            None => {
                stage.add(p, &base(p))?;
                base(p)
            }
        };
        playbooks.push(rel);
    }
    let inventory = match &c.inventory_file {
        Some(f) => {
            stage.add(f, &base(f))?;
            base(f)
        }
        None => {
            let name = "packer-provisioner-ansible-local-inventory".to_string();
            stage.write(&name, inventory_text(&c.inventory_groups).as_bytes(), 0o644)?;
            name
        }
    };
    if let Some(g) = &c.galaxy_file {
        stage.add(g, &base(g))?;
    }
    for (dir, rel) in [(&c.group_vars, "group_vars"), (&c.host_vars, "host_vars")] {
        if let Some(d) = dir {
            stage.add(d, rel)?;
        }
    }
    for (list, under) in [
        (&c.role_paths, "roles"),
        (&c.collection_paths, "collections"),
        (&c.playbook_paths, "playbooks"),
    ] {
        for p in list {
            stage.add(p, &format!("{under}/{}", base(p)))?;
        }
    }
    staged::upload(rt, &stage, &staging).await?;
    drop(stage);
    let result = run_playbooks(rt, c, &staging, &playbooks, &inventory).await;
    if c.clean_staging_directory {
        let cleaned = staged::remove(rt, &staging).await;
        result?;
        return cleaned;
    }
    result
}

async fn run_playbooks(
    rt: &mut Runtime<'_, '_>,
    c: &AnsibleLocalConfig,
    staging: &str,
    playbooks: &[String],
    inventory: &str,
) -> Result<(), Failure> {
    let q = shell_quote(staging);
    if let Some(g) = &c.galaxy_file {
        let file = base(g);
        let text = std::fs::read_to_string(g).unwrap_or_default();
        let has = |k: &str| text.lines().any(|l| l.starts_with(k));
        let force = if c.galaxy_force_install { " -f" } else { "" };
        if has("roles:") || !has("collections:") {
            let p = roles_path(c, staging).unwrap_or_default();
            let cmd = format!(
                "cd {q} && {} install -r {file} -p {p}{force}",
                c.galaxy_command
            );
            rt.say(&format!("Executing Ansible Galaxy: {cmd}"));
            staged::exec(rt, "ansible-galaxy", &cmd, &[0]).await?;
        }
        if has("collections:") {
            let p = c
                .galaxy_collections_path
                .clone()
                .unwrap_or_else(|| format!("{staging}/galaxy_collections"));
            let cmd = format!(
                "cd {q} && {} collection install -r {file} -p {p}{force}",
                c.galaxy_command
            );
            rt.say(&format!("Executing Ansible Galaxy: {cmd}"));
            staged::exec(rt, "ansible-galaxy collection", &cmd, &[0]).await?;
        }
    }
    let (name, kind) = (rt.ctx.build_name, rt.ctx.build_type);
    for pb in playbooks {
        let cmd = playbook_command(c, &q, pb, inventory, name, kind);
        let cmd = rt.render_lenient(&cmd);
        rt.say(&format!("Executing Ansible: {}", rt.redact(&cmd)));
        let r = staged::exec(rt, &format!("ansible-playbook {pb}"), &cmd, &[0]).await;
        if let Err(Failure::ExitStatus { code: 127, .. }) = &r {
            return Err(Failure::Other(format!(
                "{} could not be found on the instance (exit status 127): ansible-local does not install Ansible; install it first (e.g. a shell provisioner) or set \"command\" to its path",
                c.command
            )));
        }
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packers_inventory_and_command_line() {
        assert_eq!(inventory_text(&[]), "127.0.0.1\n");
        assert_eq!(
            inventory_text(&["web".into(), "db".into()]),
            "[web]\n127.0.0.1\n[db]\n127.0.0.1\n"
        );
        let c = AnsibleLocalConfig {
            playbook_files: vec!["site.yml".into()],
            playbook_dir: None,
            playbook_paths: vec![],
            role_paths: vec![],
            collection_paths: vec![],
            group_vars: None,
            host_vars: None,
            galaxy_file: Some("req.yml".into()),
            inventory_file: None,
            inventory_groups: vec![],
            command: crate::provisioner::ansible_local::DEFAULT_COMMAND.into(),
            extra_arguments: vec!["-v".into(), "--tags=web".into()],
            staging_directory: None,
            clean_staging_directory: false,
            galaxy_command: "ansible-galaxy".into(),
            galaxy_force_install: false,
            galaxy_roles_path: None,
            galaxy_collections_path: None,
        };
        assert_eq!(
            playbook_command(&c, "/tmp/s", "site.yml", "inv", "web", "amazon-ebs"),
            "cd /tmp/s && ANSIBLE_ROLES_PATH=/tmp/s/galaxy_roles ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook site.yml --extra-vars \"packer_build_name=web packer_builder_type=amazon-ebs packer_http_addr=ERR_HTTP_ADDR_NOT_IMPLEMENTED_BY_BUILDER -o IdentitiesOnly=yes\" -v --tags=web -c local -i inv"
        );
    }
}
