//! `puppet-masterless`, `chef-solo` and `salt-masterless` at run time, on the staged-provisioner
//! runtime ([`super::staged`]): their files laid out locally, uploaded as one tar stream, then
//! Packer's commands run on the instance.

use std::path::Path;
use std::time::Duration;

use super::staged::{self, Stage};
use super::{Failure, Runtime};
use crate::communicator::ssh::shell_quote;
use crate::provisioner::config_mgmt::{base, ChefConfig, PuppetConfig, SaltConfig};

pub(crate) async fn puppet(rt: &mut Runtime<'_, '_>, c: &PuppetConfig) -> Result<(), Failure> {
    need_ssh(rt, "puppet-masterless")?;
    let stage = Stage::new()?;
    if c.manifest_file.is_dir() {
        stage.add(&c.manifest_file, "manifests")?;
    } else {
        stage.add(&c.manifest_file, &base(&c.manifest_file))?;
    }
    if let Some(d) = &c.manifest_dir {
        stage.add(d, "manifests")?;
    }
    for (i, m) in c.module_paths.iter().enumerate() {
        stage.add(m, &format!("module-{i}"))?;
    }
    if let Some(h) = &c.hiera_config_path {
        stage.add(h, "hiera.yaml")?;
    }
    staged::upload(rt, &stage, &c.staging_directory).await?;
    drop(stage);
    let cmd = match &c.execute_command {
        Some(t) => rt.render_lenient(t),
        None => c.command(rt.ctx.build_name, rt.ctx.build_type),
    };
    rt.say(&format!("Running Puppet: {}", rt.redact(&cmd)));
    // --detailed-exitcodes: 2 means "changes were applied".
    let valid: Vec<i64> = if c.ignore_exit_codes {
        (0..=255).collect()
    } else {
        vec![0, 2]
    };
    let result = staged::exec(rt, "puppet apply", &cmd, &valid)
        .await
        .map(|_| ());
    if c.clean_staging_directory {
        let cleaned = staged::remove(rt, &c.staging_directory).await;
        result?;
        return cleaned;
    }
    result
}

pub(crate) async fn chef(rt: &mut Runtime<'_, '_>, c: &ChefConfig) -> Result<(), Failure> {
    need_ssh(rt, "chef-solo")?;
    if !c.skip_install {
        let cmd = rt.render_lenient(&c.install());
        rt.say(&format!("Installing Chef: {cmd}"));
        staged::exec(rt, "installing Chef", &cmd, &[0]).await?;
    }
    let stage = Stage::new()?;
    for (i, p) in c.cookbook_paths.iter().enumerate() {
        stage.add(p, &format!("cookbooks-{i}"))?;
    }
    for (p, rel) in [
        (&c.roles_path, "roles"),
        (&c.data_bags_path, "data_bags"),
        (&c.environments_path, "environments"),
        (
            &c.encrypted_data_bag_secret_path,
            "encrypted_data_bag_secret",
        ),
    ] {
        if let Some(p) = p {
            stage.add(p, rel)?;
        }
    }
    let solo = match &c.config_template {
        Some(t) => std::fs::read_to_string(t).map_err(|source| Failure::Local {
            what: format!("cannot read config_template {}", t.display()),
            source,
        })?,
        None => c.solo_rb(),
    };
    stage.write("solo.rb", solo.as_bytes(), 0o644)?;
    let rendered = c.json_string.as_deref().map(|t| rt.render_lenient(t));
    let node = c.node_json(rendered.as_deref()).map_err(Failure::Other)?;
    stage.write("node.json", node.as_bytes(), 0o644)?;
    staged::upload(rt, &stage, &c.staging_directory).await?;
    drop(stage);
    let cmd = match &c.execute_command {
        Some(t) => rt.render_lenient(t),
        None => c.command(),
    };
    rt.say(&format!("Executing Chef: {}", rt.redact(&cmd)));
    staged::exec(rt, "chef-solo", &cmd, &[0]).await.map(|_| ())
}

pub(crate) async fn salt(rt: &mut Runtime<'_, '_>, c: &SaltConfig) -> Result<(), Failure> {
    need_ssh(rt, "salt-masterless")?;
    if !c.skip_bootstrap {
        let cmd = c.bootstrap();
        rt.say(&format!("Bootstrapping Salt: {cmd}"));
        staged::exec(rt, "bootstrapping Salt", &cmd, &[0]).await?;
    }
    let stage = Stage::new()?;
    for (p, rel) in [
        (&c.minion_config, "minion"),
        (&c.grains_file, "grains"),
        (&c.local_state_tree, "states"),
        (&c.local_pillar_roots, "pillar"),
    ] {
        if let Some(p) = p {
            stage.add(p, rel)?;
        }
    }
    formulas(rt, c, &stage).await?;
    staged::upload(rt, &stage, &c.temp_config_dir).await?;
    drop(stage);
    for mv in c.move_into_place() {
        staged::exec(rt, "moving the Salt files into place", &mv, &[0]).await?;
    }
    let cmd = c.command();
    rt.say(&format!("Running: {}", rt.redact(&cmd)));
    let r = staged::exec(rt, "salt-call", &cmd, &[0]).await.map(|_| ());
    let rm = format!("rm -rf {}", shell_quote(&c.temp_config_dir));
    let cleaned = staged::exec(rt, "removing the Salt staging directory", &rm, &[0]).await;
    r?;
    cleaned.map(|_| ())
}

/// How long one formula's `git clone` may take.
const CLONE_TIMEOUT: Duration = Duration::from_secs(600);

/// `formulas`: each formula directory goes into the staged state tree as `<dir>` (Packer's
/// `local_state_tree/<dir>`), cloned with git unless the state tree has it already ("Found
/// existing formula", as Packer). The clone and the stage are temporary: `local_state_tree`
/// itself is not written to.
async fn formulas(rt: &Runtime<'_, '_>, c: &SaltConfig, stage: &Stage) -> Result<(), Failure> {
    if c.formulas.is_empty() {
        return Ok(());
    }
    rt.say("Downloading Salt formulas...");
    let tree = c.local_state_tree.as_deref().unwrap_or(Path::new("."));
    for f in &c.formulas {
        if stage.root().join("states").join(&f.dir).exists() {
            rt.say(&format!(
                "Found existing formula at: {}",
                tree.join(&f.dir).display()
            ));
            continue;
        }
        rt.say(&format!("{} => {}", f.url, tree.join(&f.dir).display()));
        let tmp = tempfile::Builder::new()
            .prefix("imgbuild-formula")
            .tempdir()
            .map_err(|source| Failure::Local {
                what: "cannot create a directory for a formula".into(),
                source,
            })?;
        let dest = tmp.path().join("repo");
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(["clone", "--quiet", "--depth", "1"]);
        if let Some(r) = &f.git_ref {
            cmd.args(["--branch", r]);
        }
        cmd.arg("--").arg(&f.repo).arg(&dest);
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let failed = |why: String| {
            Failure::Other(format!(
                "Unable to download Salt formula from {}: {why}",
                f.url
            ))
        };
        let out = match tokio::time::timeout(CLONE_TIMEOUT, cmd.output()).await {
            Err(_) => {
                return Err(failed(format!(
                    "git clone took longer than {}s",
                    CLONE_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(failed(format!("cannot run git ({e}); install git"))),
            Ok(Ok(o)) => o,
        };
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(failed(format!("git clone failed: {}", err.trim())));
        }
        let dir = dest.join(&f.dir);
        if !dir.is_dir() {
            return Err(failed(format!(
                "the repository has no directory `{}`",
                f.dir
            )));
        }
        stage.add(&dir, &format!("states/{}", f.dir))?;
    }
    Ok(())
}

fn need_ssh(rt: &Runtime<'_, '_>, kind: &str) -> Result<(), Failure> {
    if rt.remote.enabled() {
        Ok(())
    } else {
        Err(Failure::NoCommunicator { kind: kind.into() })
    }
}
