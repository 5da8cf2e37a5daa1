//! The `shell-local` post-processor at run time: each script through `execute_command` on this
//! machine, with the artifact in its environment, output streamed under the post-processor's
//! prefix, in a process group of its own that is killed when the run is cancelled.
//!
//! The environment (set on the process and, as in Packer, written into `{{.Vars}}` with
//! `env_var_format`): `PACKER_BUILD_NAME`, `PACKER_BUILDER_TYPE`, imgbuild's
//! `IMGBUILD_ARTIFACT_ID` (`us-east-1:ami-1,us-west-2:ami-2`), `IMGBUILD_AMI` (the AMI in the
//! build region) and `IMGBUILD_AMI_<REGION>` (`IMGBUILD_AMI_US_WEST_2`), then the
//! `environment_vars` of the template, which win over those.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::ami_outputs::{env_name, primary_ami};
use super::context::PpContext;
use super::error::PpError;
use crate::artifact::Artifact;
use crate::provisioner::runtime::local::{run_local, LocalError};
use crate::provisioner::runtime::remote::Line;
use crate::provisioner::runtime::shell::env_map;
use crate::provisioner::shell::ShellSource;
use crate::provisioner::shell_local::{host_os, ShellLocalConfig};

/// The variables a `shell-local` post-processor's scripts get, sorted by name; `user` (the
/// rendered `environment_vars`) last, so a template can override any of them.
pub fn environment(
    build_name: &str,
    build_type: &str,
    artifact: &Artifact,
    user: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut vars = vec![("IMGBUILD_ARTIFACT_ID".to_string(), artifact.id())];
    if let Some(ami) = primary_ami(artifact) {
        vars.push(("IMGBUILD_AMI".to_string(), ami.to_string()));
    }
    for (region, ami) in &artifact.amis {
        vars.push((format!("IMGBUILD_AMI_{}", env_name(region)), ami.clone()));
    }
    vars.extend_from_slice(user);
    env_map(build_name, build_type, &vars)
}

/// Go's `fmt.Sprintf(format, key, value)` for the `%s` verbs of `env_var_format` (and `%%`).
fn sprintf2(format: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut args = [key, value].into_iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('s') => {
                    chars.next();
                    out.push_str(args.next().unwrap_or("%!s(MISSING)"));
                    continue;
                }
                Some('%') => {
                    chars.next();
                    out.push('%');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// `{{.Vars}}`: every variable through `env_var_format`, in name order, single quotes in values
/// written `'"'"'` (Packer's shell-local).
pub fn flatten(format: &str, env: &BTreeMap<String, String>) -> String {
    env.iter()
        .map(|(k, v)| sprintf2(format, k, &v.replace('\'', r#"'"'"'"#)))
        .collect()
}

/// Runs the post-processor for `artifact`; `target` is its output prefix
/// (`web_worker (shell-local)`).
pub async fn run(
    c: &ShellLocalConfig,
    ctx: &PpContext<'_>,
    target: &str,
    artifact: &Artifact,
) -> Result<(), PpError> {
    if !c.runs_on_this_host() {
        ctx.say(
            target,
            &format!(
                "Skipping shell-local due to runtime OS ({} is not in only_on: {})",
                host_os(),
                c.only_on.join(", ")
            ),
        );
        return Ok(());
    }
    let mut user = Vec::new();
    for (k, v) in &c.environment_vars {
        user.push((
            k.clone(),
            ctx.render(&format!("environment_vars {k}"), v, artifact, None)?,
        ));
    }
    let env = environment(ctx.build_name, ctx.build_type, artifact, &user);
    // Values reach the script through its environment, never its command line.
    let vars = crate::provisioner::runtime::local::vars_as_references(&c.env_var_format, &env);

    // The inline script lives in a private directory for as long as this runs.
    let local = |what: &str| {
        let what = what.to_string();
        move |source| PpError::Local { what, source }
    };
    let mut _dir = None;
    let scripts: Vec<String> = match &c.source {
        ShellSource::Inline(commands) => {
            let mut text = format!("#!{}\n", c.inline_shebang);
            for (i, line) in commands.iter().enumerate() {
                text.push_str(&ctx.render(&format!("inline[{i}]"), line, artifact, None)?);
                text.push('\n');
            }
            let dir = tempfile::Builder::new()
                .prefix("imgbuild-shell-local.")
                .tempdir()
                .map_err(local(
                    "cannot create a temporary directory for the inline script",
                ))?;
            let path = dir.path().join(format!("script{}", c.script_extension()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&path)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            };
            write().map_err(local("cannot write the inline script"))?;
            _dir = Some(dir);
            vec![path.display().to_string()]
        }
        ShellSource::Scripts(paths) => {
            let mut out = Vec::new();
            for p in paths {
                out.push(ctx.render("script", &p.display().to_string(), artifact, None)?);
            }
            out
        }
    };

    for script in scripts {
        let mut fields = artifact.build_data.clone();
        fields.insert("Vars".into(), vars.clone());
        fields.insert("Script".into(), script.clone());
        fields.insert("Command".into(), script.clone());
        let mut argv = Vec::new();
        for a in &c.execute_command {
            argv.push(ctx.render("execute_command", a, artifact, Some(&fields))?);
        }
        ctx.say(target, &format!("Running local shell script: {script}"));
        let Some((program, args)) = argv.split_first() else {
            return Err(PpError::Other("execute_command is empty".into()));
        };
        let status = run_local(program, args, &env, |line| match line {
            Line::Err(line) => ctx.ui.error(&format!("    {target}: {line}")),
            Line::Out(line) | Line::Say(line) => ctx.ui.message(&format!("    {target}: {line}")),
        })
        .await
        .map_err(|LocalError { what, source }| PpError::Local { what, source })?;
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) if c.valid_exit_codes.contains(&i64::from(code)) => {}
            (Some(code), _) => {
                return Err(PpError::ExitStatus {
                    script,
                    code,
                    valid: c.valid_exit_codes.clone(),
                })
            }
            (None, signal) => {
                return Err(PpError::Signaled {
                    script,
                    signal: signal.unwrap_or_default(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_has_the_artifact_and_the_template_wins() {
        let a = Artifact {
            amis: [
                ("us-east-1".to_string(), "ami-e".to_string()),
                ("us-west-2".to_string(), "ami-w".to_string()),
            ]
            .into_iter()
            .collect(),
            build_data: [("BuildRegion".to_string(), "us-west-2".to_string())]
                .into_iter()
                .collect(),
            ..Artifact::default()
        };
        let env = environment(
            "web",
            "amazon-ebs",
            &a,
            &[
                ("PACKER_BUILD_NAME".into(), "mine".into()),
                ("PW".into(), "it's".into()),
            ],
        );
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("IMGBUILD_AMI", "ami-w"),
                ("IMGBUILD_AMI_US_EAST_1", "ami-e"),
                ("IMGBUILD_AMI_US_WEST_2", "ami-w"),
                ("IMGBUILD_ARTIFACT_ID", "us-east-1:ami-e,us-west-2:ami-w"),
                ("PACKER_BUILDER_TYPE", "amazon-ebs"),
                ("PACKER_BUILD_NAME", "mine"),
                ("PW", "it's"),
            ]
        );
        let mut small = BTreeMap::new();
        small.insert("A".to_string(), "1".to_string());
        small.insert("PW".to_string(), "it's".to_string());
        assert_eq!(flatten("%s='%s' ", &small), r#"A='1' PW='it'"'"'s' "#);
        assert_eq!(
            flatten("export %s=%s;%%\n", &small),
            "export A=1;%\nexport PW=it'\"'\"'s;%\n"
        );
        assert_eq!(sprintf2("%s %s %s", "k", "v"), "k v %!s(MISSING)");
    }
}
