//! Step 2: reuse when nothing changed (`-skip-unchanged`, `reuse_unchanged`): the fingerprint of
//! the image's inputs, and the AMIs that already carry it in every region the build delivers to.

use std::collections::BTreeMap;

use super::Env;
use crate::aws::Aws;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::reuse::{self, Lookup, ReuseError};
use crate::builder::fingerprint::{self, Fingerprint, FingerprintError, Inputs};
use crate::duration::human as human_duration;

/// The reuse fingerprint, when reuse is on (and there will be an AMI to reuse). Reading
/// the files may take a while: it runs where blocking is allowed.
pub fn fingerprint(
    env: &Env<'_>,
    inputs: Option<&Inputs<'_>>,
    source_id: &str,
) -> Result<Option<Fingerprint>, BuildError> {
    let Some(inputs) = inputs else {
        return Ok(None);
    };
    if env.cfg.skip_create_ami {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let r = tokio::task::block_in_place(|| {
        fingerprint::compute(inputs, source_id, fingerprint::SecretKey::load)
    });
    match r {
        Ok(fp) => {
            env.say(format!(
                "Fingerprint of the image's inputs: {} (computed in {})",
                fp.short(),
                human_duration(started.elapsed())
            ));
            Ok(Some(fp))
        }
        Err(e @ FingerprintError::Generated { .. }) => {
            env.say(format!("reuse is off for this build: {e}"));
            Ok(None)
        }
        Err(e) => Err(BuildError::Fingerprint(e)),
    }
}

/// The AMIs (region to AMI ID) that carry `fp` in every region this build delivers to;
/// `None` (and why, on the output) when the build has to run. `force`: `-force`.
pub async fn reusable(
    env: &Env<'_>,
    aws: &Aws,
    force: bool,
    fp: &Fingerprint,
    region: &str,
    copy_regions: &[String],
) -> Result<Option<BTreeMap<String, String>>, BuildError> {
    if force {
        env.say(format!(
            "-force: building again, whether or not an AMI with fingerprint {} exists",
            fp.short()
        ));
        return Ok(None);
    }
    let mut regions: Vec<String> = Vec::new();
    if !env.cfg.ami.skip_save_build_region || copy_regions.is_empty() {
        regions.push(region.to_string());
    }
    regions.extend(copy_regions.iter().cloned());
    let found = reuse::lookup(aws, &regions, &fp.0, env.cancel)
        .await
        .map_err(|e| match e {
            ReuseError::Cancelled => BuildError::Cancelled,
            e => BuildError::Reuse(e),
        })?;
    match found {
        Lookup::Missing(missing) => {
            env.say(format!(
                "No AMI with fingerprint {} in {}: building",
                fp.short(),
                missing.join(", ")
            ));
            Ok(None)
        }
        Lookup::All(found) => {
            let first = found
                .get(region)
                .or_else(|| found.values().next())
                .cloned()
                .ok_or(BuildError::MissingField {
                    call: "DescribeImages",
                    field: "ImageId",
                    region: region.to_string(),
                })?;
            let ids = if found.len() == 1 {
                first.id.clone()
            } else {
                found
                    .iter()
                    .map(|(r, f)| format!("{r}: {}", f.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            env.say(format!(
                "reusing {ids} (fingerprint {} unchanged since {}): nothing is launched; the post-processors run on it",
                fp.short(),
                first.created
            ));
            Ok(Some(found.into_iter().map(|(r, f)| (r, f.id)).collect()))
        }
    }
}
