//! Finding what earlier runs left in a region, for `imgbuild cleanup`: the resources tagged
//! `imgbuild:run-id` (instances not terminated, volumes, snapshots, AMIs, key pairs, security
//! groups), and the results of create calls whose answer never came back (an instance by its
//! client token, a region copy by its name). Removing is [`super::teardown`]'s.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use aws_sdk_ec2::Client;

use super::plan::{TAG_BUILD, TAG_RUN_ID, TAG_TEMPORARY};
use crate::aws::{pages, Api, ApiError, Aws};
use crate::ledger::Undo;

/// Upper bound on result pages per call (1000 items each at most).
const MAX_PAGES: usize = 200;

/// A resource found in EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub undo: Undo,
    pub run_id: String,
    pub build: Option<String>,
    /// When it was created (Unix seconds), where EC2 says (security groups have no date).
    pub created: Option<i64>,
    /// Carries `imgbuild:temporary` (images and snapshots not delivered).
    pub temporary: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{call} in {region}: {source}")]
pub struct SweepError {
    pub call: &'static str,
    pub region: String,
    pub source: ApiError,
}

fn tags(t: &[Tag]) -> BTreeMap<String, String> {
    t.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn secs(d: Option<&aws_smithy_types::DateTime>) -> Option<i64> {
    d.map(|d| d.secs())
}

/// `2026-11-21T23:41:06.000Z` (DescribeImages' CreationDate) as Unix seconds.
pub fn parse_creation_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

/// The filter that selects imgbuild's resources: of these runs, or of any.
fn run_filter(run_ids: Option<&[String]>) -> Filter {
    match run_ids {
        Some(ids) => Filter::builder()
            .name(format!("tag:{TAG_RUN_ID}"))
            .set_values(Some(ids.to_vec()))
            .build(),
        None => Filter::builder().name("tag-key").values(TAG_RUN_ID).build(),
    }
}

fn found(undo: Undo, t: &BTreeMap<String, String>, created: Option<i64>) -> Option<Found> {
    Some(Found {
        undo,
        run_id: t.get(TAG_RUN_ID)?.clone(),
        build: t.get(TAG_BUILD).cloned(),
        created,
        temporary: t.contains_key(TAG_TEMPORARY),
    })
}

/// Everything tagged with a run id (`run_ids`: only those runs') in `region`: instances not
/// terminated, volumes, snapshots, AMIs, key pairs and security groups, asked in that order.
pub async fn tagged(
    aws: &Aws,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let c = aws.ec2(region);
    let mut out = tagged_instances(&c, region, run_ids).await?;
    out.extend(tagged_volumes(&c, region, run_ids).await?);
    out.extend(tagged_snapshots(&c, region, run_ids).await?);
    out.extend(tagged_images(&c, region, run_ids).await?);
    out.extend(tagged_key_pairs(&c, region, run_ids).await?);
    out.extend(tagged_security_groups(&c, region, run_ids).await?);
    Ok(out)
}

/// Maps a failed `call` in `region` to a [`SweepError`].
fn failed(call: &'static str, region: &str) -> impl FnOnce(ApiError) -> SweepError {
    let region = region.to_string();
    move |source| SweepError {
        call,
        region,
        source,
    }
}

/// The run's instances that are not terminated (nor terminating).
async fn tagged_instances(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let live = ["pending", "running", "shutting-down", "stopping", "stopped"];
    let instances = pages(
        c.describe_instances()
            .filters(run_filter(run_ids))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(live.map(String::from).to_vec()))
                    .build(),
            )
            .into_paginator()
            .send(),
        MAX_PAGES,
    )
    .await
    .map_err(failed("DescribeInstances", region))?;
    let mut out = Vec::new();
    for i in instances
        .iter()
        .flat_map(|p| p.reservations())
        .flat_map(|r| r.instances())
    {
        let Some(id) = i.instance_id() else { continue };
        let undo = Undo::TerminateInstance {
            region: region.to_string(),
            id: id.to_string(),
        };
        out.extend(found(undo, &tags(i.tags()), secs(i.launch_time())));
    }
    Ok(out)
}

async fn tagged_volumes(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let volumes = pages(
        c.describe_volumes()
            .filters(run_filter(run_ids))
            .into_paginator()
            .send(),
        MAX_PAGES,
    )
    .await
    .map_err(failed("DescribeVolumes", region))?;
    let mut out = Vec::new();
    for v in volumes.iter().flat_map(|p| p.volumes()) {
        let Some(id) = v.volume_id() else { continue };
        let undo = Undo::DeleteVolume {
            region: region.to_string(),
            id: id.to_string(),
        };
        out.extend(found(undo, &tags(v.tags()), secs(v.create_time())));
    }
    Ok(out)
}

async fn tagged_snapshots(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let snapshots = pages(
        c.describe_snapshots()
            .owner_ids("self")
            .filters(run_filter(run_ids))
            .into_paginator()
            .send(),
        MAX_PAGES,
    )
    .await
    .map_err(failed("DescribeSnapshots", region))?;
    let mut out = Vec::new();
    for s in snapshots.iter().flat_map(|p| p.snapshots()) {
        let Some(id) = s.snapshot_id() else { continue };
        let undo = Undo::DeleteSnapshot {
            region: region.to_string(),
            id: id.to_string(),
        };
        out.extend(found(undo, &tags(s.tags()), secs(s.start_time())));
    }
    Ok(out)
}

async fn tagged_images(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let images = pages(
        c.describe_images()
            .owners("self")
            .filters(run_filter(run_ids))
            .into_paginator()
            .send(),
        MAX_PAGES,
    )
    .await
    .map_err(failed("DescribeImages", region))?;
    let mut out = Vec::new();
    for i in images.iter().flat_map(|p| p.images()) {
        let Some(id) = i.image_id() else { continue };
        let undo = Undo::DeregisterImage {
            region: region.to_string(),
            id: id.to_string(),
        };
        let created = i.creation_date().and_then(parse_creation_date);
        out.extend(found(undo, &tags(i.tags()), created));
    }
    Ok(out)
}

/// Key pairs (DescribeKeyPairs is not paginated).
async fn tagged_key_pairs(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let kps = c
        .describe_key_pairs()
        .filters(run_filter(run_ids))
        .send()
        .await
        .api()
        .map_err(failed("DescribeKeyPairs", region))?;
    let mut out = Vec::new();
    for k in kps.key_pairs() {
        let Some(name) = k.key_name() else { continue };
        let undo = Undo::DeleteKeyPair {
            region: region.to_string(),
            name: name.to_string(),
        };
        out.extend(found(undo, &tags(k.tags()), secs(k.create_time())));
    }
    Ok(out)
}

/// Security groups (EC2 gives them no creation date).
async fn tagged_security_groups(
    c: &Client,
    region: &str,
    run_ids: Option<&[String]>,
) -> Result<Vec<Found>, SweepError> {
    let groups = pages(
        c.describe_security_groups()
            .filters(run_filter(run_ids))
            .into_paginator()
            .send(),
        MAX_PAGES,
    )
    .await
    .map_err(failed("DescribeSecurityGroups", region))?;
    let mut out = Vec::new();
    for g in groups.iter().flat_map(|p| p.security_groups()) {
        let Some(id) = g.group_id() else { continue };
        let undo = Undo::DeleteSecurityGroup {
            region: region.to_string(),
            id: id.to_string(),
        };
        out.extend(found(undo, &tags(g.tags()), None));
    }
    Ok(out)
}

/// The instances a RunInstances call with `client_token` made (not terminated). EC2 filters by
/// `client-token`; where that filter is not supported (some emulators), the run's instances are
/// listed and compared by their client token.
pub async fn instances_by_client_token(
    aws: &Aws,
    region: &str,
    client_token: &str,
    run_id: &str,
) -> Result<Vec<String>, SweepError> {
    let c = aws.ec2(region);
    let direct = c
        .describe_instances()
        .filters(
            Filter::builder()
                .name("client-token")
                .values(client_token)
                .build(),
        )
        .send()
        .await
        .api();
    let out = match direct {
        Ok(o) => o,
        Err(e)
            if e.code
                .as_deref()
                .is_some_and(|c| c.starts_with("InvalidParameter"))
                || e.code.is_none() =>
        {
            c.describe_instances()
                .filters(run_filter(Some(&[run_id.to_string()])))
                .send()
                .await
                .api()
                .map_err(failed("DescribeInstances", region))?
        }
        Err(source) => return Err(failed("DescribeInstances", region)(source)),
    };
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.client_token() == Some(client_token))
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .filter_map(|i| i.instance_id())
        .map(str::to_string)
        .collect())
}

/// Images of this account named `name` in `region` that may be a run's region copy whose answer
/// never came back: made at or after `not_before` (the run's start) and tagged with no other run.
pub async fn copies_named(
    aws: &Aws,
    region: &str,
    name: &str,
    not_before: i64,
    run_id: &str,
) -> Result<Vec<Found>, SweepError> {
    let c = aws.ec2(region);
    let out = c
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .api()
        .map_err(failed("DescribeImages", region))?;
    Ok(out
        .images()
        .iter()
        .filter_map(|i| {
            let t = tags(i.tags());
            if t.get(TAG_RUN_ID).is_some_and(|r| r != run_id) {
                return None;
            }
            let created = i.creation_date().and_then(parse_creation_date)?;
            // A minute of leeway for clocks.
            if created + 60 < not_before {
                return None;
            }
            Some(Found {
                undo: Undo::DeregisterImage {
                    region: region.to_string(),
                    id: i.image_id()?.to_string(),
                },
                run_id: run_id.to_string(),
                build: t.get(TAG_BUILD).cloned(),
                created: Some(created),
                temporary: true,
            })
        })
        .collect())
}

/// Every region this account can use (DescribeRegions), for `--all-regions`.
pub async fn regions(aws: &Aws, region: &str) -> Result<Vec<String>, SweepError> {
    let out = aws
        .ec2(region)
        .describe_regions()
        .send()
        .await
        .api()
        .map_err(failed("DescribeRegions", region))?;
    let mut v: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .map(str::to_string)
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_dates_parse() {
        assert_eq!(parse_creation_date("1970-01-01T00:01:40.000Z"), Some(100));
        assert_eq!(parse_creation_date("yesterday"), None);
    }
}
