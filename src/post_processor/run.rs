//! Running a build's post-processors after its AMIs exist (and its temporary resources are gone):
//! each chain in template order, each post-processor of a chain receiving the artifact of the
//! one before it, and Packer's bookkeeping of which artifacts the build ends with
//! (`keep_input_artifact`, `packer/build.go`).
//!
//! A post-processor that fails ends its chain (the next chains still run) and fails the build,
//! but never removes an AMI (only a failed `boot-test` does, by its `deregister_on_failure`, and
//! says so with [`PpError::ImageRemoved`]): where Packer would destroy an input artifact that is
//! not kept, imgbuild only leaves it out of the artifact list.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ami_outputs::{self, AmiOutputsConfig};
use super::cloudformation;
pub use super::context::PpContext;
use super::error::PpError;
use super::manifest::{self, ManifestBuild, ManifestConfig};
use super::output::{self, LOCK_WAIT};
use super::ssm_parameter;
use super::{shell_local, PostProcessorConfig};
use crate::artifact::Artifact;
use crate::post_processor::PreparedPostProcessor;
use crate::redact::MASK;

/// What one post-processor returned: its artifact and whether its input is kept by default,
/// and whether that default beats `keep_input_artifact: false` (Packer's `forceOverride`).
#[derive(Debug)]
struct Processed {
    artifact: Artifact,
    default_keep: bool,
    force_keep: bool,
}

/// Packer's bookkeeping of the artifacts a build ends with.
#[derive(Debug)]
pub(crate) struct Kept<A> {
    list: Vec<A>,
    keep_original: bool,
}

impl<A> Kept<A> {
    pub fn new(chains: usize) -> Kept<A> {
        Kept {
            list: Vec::new(),
            keep_original: chains == 0,
        }
    }

    /// Post-processor `index` of a chain consumed `prior`; returns whether `prior` is kept.
    pub fn step(
        &mut self,
        index: usize,
        user_keep: Option<bool>,
        default_keep: bool,
        force_keep: bool,
        prior: A,
    ) -> bool {
        let keep = match user_keep {
            Some(false) if default_keep && force_keep => true,
            Some(k) => k,
            None => default_keep,
        };
        if index == 0 {
            // The builder's artifact: several chains may use it; decided at the end.
            self.keep_original |= keep;
        } else if keep {
            self.list.push(prior);
        }
        keep
    }

    /// A chain ran to its end with `last` as its artifact.
    pub fn end_chain(&mut self, last: A) {
        self.list.push(last);
    }

    /// The build's artifacts: the builder's first, when kept.
    pub fn finish(mut self, original: A) -> Vec<A> {
        if self.keep_original {
            self.list.insert(0, original);
        }
        self.list
    }
}

/// How a build's post-processing ended: the artifacts to report, and the failures.
#[derive(Debug, Default)]
pub struct PostProcessed {
    pub artifacts: Vec<Artifact>,
    pub errors: Vec<String>,
    /// A post-processor removed the build's AMIs (a failed boot test's
    /// `deregister_on_failure`): the build keeps none.
    pub removed: bool,
}

/// Runs every chain for the builder's artifact.
pub async fn run(
    chains: &[Vec<PreparedPostProcessor>],
    builder: &Artifact,
    ctx: &PpContext<'_>,
) -> PostProcessed {
    let mut kept = Kept::new(chains.len());
    let mut errors = Vec::new();
    let mut removed = false;
    'chains: for chain in chains {
        let mut prior = builder.clone();
        for (i, pp) in chain.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                errors.push(format!(
                    "Post-processor {} not run: cancelled (interrupted)",
                    pp.kind
                ));
                break 'chains;
            }
            let label = match &pp.name {
                Some(n) if *n != pp.kind => format!("{n} (type {})", pp.kind),
                _ => pp.kind.clone(),
            };
            ctx.ui.say(&format!(
                "==> {}: Running post-processor: {label}",
                ctx.build_name
            ));
            ctx.timeline.mark(format!("post-processor {label}"));
            let target = format!("{} ({})", ctx.build_name, pp.kind);
            // The boot test sees Ctrl-C itself and tears its instance down before it returns.
            let done = if matches!(pp.config, PostProcessorConfig::BootTest(_)) {
                one(pp, &prior, ctx, &target).await
            } else {
                match ctx.cancel.run(one(pp, &prior, ctx, &target)).await {
                    Some(r) => r,
                    None => Err(PpError::Cancelled),
                }
            };
            match done {
                Ok(p) => {
                    let keep = kept.step(
                        i,
                        pp.keep_input_artifact,
                        p.default_keep,
                        p.force_keep,
                        prior,
                    );
                    if pp.keep_input_artifact == Some(false) && keep {
                        ctx.say(
                            &target,
                            &format!("keep_input_artifact=false is ignored: {} passes its input artifact on", pp.kind),
                        );
                    }
                    prior = p.artifact;
                }
                Err(e) => {
                    removed |= matches!(e, PpError::ImageRemoved(_));
                    errors.push(format!("Post-processor failed: {}: {e}", pp.kind));
                    continue 'chains;
                }
            }
        }
        kept.end_chain(prior);
    }
    PostProcessed {
        artifacts: kept.finish(builder.clone()),
        errors,
        removed,
    }
}

async fn one(
    pp: &PreparedPostProcessor,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<Processed, PpError> {
    match &pp.config {
        PostProcessorConfig::Manifest(c) => manifest(c, input, ctx, target).await?,
        PostProcessorConfig::AmiOutputs(c) => ami_outputs(c, input, ctx, target).await?,
        PostProcessorConfig::ShellLocal(c) => shell_local::run(c, ctx, target, input).await?,
        PostProcessorConfig::CloudFormation(c) => {
            cloudformation::run(c, input, ctx, target).await?
        }
        PostProcessorConfig::SsmParameter(c) => ssm_parameter::run(c, input, ctx, target).await?,
        PostProcessorConfig::AmiRetention(c) => {
            super::ami_retention::run(c, input, ctx, target).await?
        }
        PostProcessorConfig::BootTest(c) => {
            super::boot_test::run::run(c, input, ctx, target).await?
        }
    }
    // All of them pass their input on and keep it, whatever the template says (Packer's
    // manifest and shell-local return `source, true, true`; a stack update or an SSM
    // parameter only points at the AMI).
    Ok(Processed {
        artifact: input.clone(),
        default_keep: true,
        force_keep: true,
    })
}

/// Runs a file update off the runtime's threads (it may wait for another writer's lock), and
/// says so when another writer made it wait.
async fn update_file(
    ctx: &PpContext<'_>,
    target: &str,
    path: PathBuf,
    change: impl FnOnce(Option<&str>) -> Result<String, String> + Send + 'static,
) -> Result<(), PpError> {
    let shown = path.display().to_string();
    let waited = tokio::task::spawn_blocking(move || output::update(&path, LOCK_WAIT, change))
        .await
        .map_err(|e| PpError::Other(format!("writing {shown}: {e}")))??;
    if let Some(d) = waited {
        ctx.say(
            target,
            &format!(
                "waited {} for another writer of {shown}",
                crate::duration::human(d)
            ),
        );
    }
    Ok(())
}

/// The manifest entry of this build, with every sensitive value masked.
fn manifest_entry(
    c: &ManifestConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
    now: i64,
) -> Result<ManifestBuild, PpError> {
    let r = &ctx.ui.redactor;
    let custom_data = if c.custom_data.is_empty() {
        None
    } else {
        let mut m = BTreeMap::new();
        for (k, v) in &c.custom_data {
            let value = ctx.render(&format!("custom_data `{k}`"), v, input, None)?;
            let masked = r.redact(&value);
            if masked != value {
                ctx.say(
                    target,
                    &format!(
                        "custom_data `{}` holds a sensitive value: recorded as {MASK}",
                        r.redact(k)
                    ),
                );
            }
            m.insert(r.redact(k), serde_json::Value::String(masked));
        }
        Some(m)
    };
    Ok(ManifestBuild {
        name: r.redact(ctx.build_name),
        builder_type: ctx.build_type.to_string(),
        build_time: (!c.strip_time).then_some(now),
        files: serde_json::Value::Null,
        artifact_id: r.redact(&input.id()),
        packer_run_uuid: ctx.run_id.to_string(),
        custom_data,
        other: timeline_member(ctx),
    })
}

/// `imgbuild_timeline`: the build's phases up to this post-processor (which counts until now),
/// names masked as everything else.
fn timeline_member(ctx: &PpContext<'_>) -> serde_json::Map<String, serde_json::Value> {
    let json = ctx.timeline.report().to_json().to_string();
    let masked = ctx.ui.redactor.redact(&json);
    let value = serde_json::from_str(&masked).unwrap_or(serde_json::Value::Null);
    serde_json::Map::from_iter([("imgbuild_timeline".to_string(), value)])
}

async fn manifest(
    c: &ManifestConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    let output = PathBuf::from(ctx.render("output", &c.output, input, None)?);
    let entry = manifest_entry(c, input, ctx, target, chrono::Utc::now().timestamp())?;
    let text = serde_json::to_string(&entry).map_err(|e| PpError::Other(e.to_string()))?;
    if ctx.ui.redactor.contains_secret(&text) {
        return Err(PpError::Secret {
            path: output,
            what: "the build's entry".into(),
        });
    }
    let (run, force) = (ctx.run_id.to_string(), ctx.force);
    update_file(ctx, target, output.clone(), move |cur| {
        manifest::append(cur, entry, &run, force)
    })
    .await?;
    ctx.say(
        target,
        &format!("Recorded {} in {}", input.id(), output.display()),
    );
    Ok(())
}

async fn ami_outputs(
    c: &AmiOutputsConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    if input.null {
        ctx.say(target, "the null builder made no AMI: nothing to write");
        return Ok(());
    }
    let r = &ctx.ui.redactor;
    let name = ctx.build_name.to_string();
    if let Some(j) = &c.json_output {
        let path = PathBuf::from(ctx.render("json_output", j, input, None)?);
        let amis = input.amis.clone();
        let mine = ami_outputs::merge_json(None, &name, &amis).map_err(PpError::Other)?;
        if r.contains_secret(&mine) {
            return Err(PpError::Secret {
                path,
                what: "the build's entry".into(),
            });
        }
        let n = name.clone();
        update_file(ctx, target, path.clone(), move |cur| {
            ami_outputs::merge_json(cur, &n, &amis)
        })
        .await?;
        ctx.say(target, &format!("Wrote the AMI IDs to {}", path.display()));
    }
    if let Some(e) = &c.env_output {
        let path = PathBuf::from(ctx.render("env_output", e, input, None)?);
        let prefix = match &c.env_prefix {
            Some(p) => ctx.render("env_prefix", p, input, None)?,
            None => ami_outputs::env_name(&name),
        };
        if !ami_outputs::is_env_name(&prefix) {
            return Err(PpError::Other(format!(
                "env_prefix \"{}\" is not a variable name",
                r.redact(&prefix)
            )));
        }
        let vars = ami_outputs::env_vars(&prefix, input);
        if ami_outputs::primary_ami(input).is_none() {
            ctx.say(
                target,
                &format!("no {prefix}_AMI: the build region has no AMI and there are several regions; use {prefix}_AMI_<REGION>"),
            );
        }
        let mine = ami_outputs::merge_env(None, &prefix, &vars);
        if r.contains_secret(&mine) {
            return Err(PpError::Secret {
                path,
                what: "the build's variables".into(),
            });
        }
        update_file(ctx, target, path.clone(), move |cur| {
            Ok(ami_outputs::merge_env(cur, &prefix, &vars))
        })
        .await?;
        ctx.say(
            target,
            &format!("Wrote the AMI variables to {}", path.display()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays Packer's loop over chains of (keep_input_artifact, default keep, force) with
    /// artifacts named by position: "b" (builder), "c0p1" (chain 0, post-processor 1).
    fn replay(chains: &[Vec<(Option<bool>, bool, bool)>]) -> Vec<String> {
        let mut kept = Kept::new(chains.len());
        for (c, chain) in chains.iter().enumerate() {
            let mut prior = "b".to_string();
            for (i, (user, def, force)) in chain.iter().enumerate() {
                kept.step(i, *user, *def, *force, prior);
                prior = format!("c{c}p{i}");
            }
            kept.end_chain(prior);
        }
        kept.finish("b".to_string())
    }

    #[test]
    fn artifact_lists_follow_packer() {
        // No post-processors: the builder's artifact.
        assert_eq!(replay(&[]), vec!["b"]);
        // A manifest (keeps, forced): the builder's and the manifest's (Packer lists both).
        let m = (None, true, true);
        assert_eq!(replay(&[vec![m]]), vec!["b", "c0p0"]);
        // A chain of two: each input kept.
        assert_eq!(replay(&[vec![m, m]]), vec!["b", "c0p0", "c0p1"]);
        // Two chains.
        assert_eq!(replay(&[vec![m], vec![m]]), vec!["b", "c0p0", "c1p0"]);
        // keep_input_artifact=false cannot drop what a forcing post-processor keeps.
        assert_eq!(
            replay(&[vec![(Some(false), true, true)]]),
            vec!["b", "c0p0"]
        );
        // A post-processor that does not keep its input by default (compress-like)...
        let drop = (None, false, false);
        assert_eq!(replay(&[vec![drop]]), vec!["c0p0"]);
        // ...unless told to, and the other chain's keeping wins for the builder's artifact.
        assert_eq!(
            replay(&[vec![(Some(true), false, false)]]),
            vec!["b", "c0p0"]
        );
        assert_eq!(replay(&[vec![drop], vec![m]]), vec!["b", "c0p0", "c1p0"]);
        // In the middle of a chain, a dropped input is left out.
        assert_eq!(replay(&[vec![m, drop]]), vec!["b", "c0p1"]);
    }
}
