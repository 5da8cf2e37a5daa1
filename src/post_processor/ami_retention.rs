//! The `ami-retention` post-processor (imgbuild's own): keeps the newest AMIs of a build (and/or
//! those younger than a duration) and deregisters the rest, deleting their snapshots, in every
//! region of the build.
//!
//! Which AMIs are looked at: owned by this account, whose name starts with `name_prefix`
//! (default: the build's `ami_name` up to its first `{{`) and that carry every tag of `tags`;
//! in `regions` (default: every region of the artifact).
//!
//! Never deregistered: the build's own artifact (also a reused one), an AMI among the newest
//! `keep_latest`, one younger than `keep_younger_than`, and, unless `include_in_use`, one that a
//! launch template's latest or default version names or that an instance (pending, running,
//! stopping or stopped) runs from. An AMI whose creation date EC2 did not give is kept too, and
//! one still `pending` (another build's in the making).
//! `dry_run` lists what would go and changes nothing. Every decision is printed in a table
//! with its reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, Image};
use chrono::{DateTime, Utc};

use super::context::PpContext;
use super::error::PpError;
use crate::artifact::Artifact;
use crate::aws::{pages, Api, ApiError};
use crate::checks::{error_at, flag, num};
use crate::duration::go as format_duration;
use crate::template::decode::{Dx, Obj};

/// Bound on the pages of one listing (DescribeLaunchTemplateVersions, DescribeInstances).
const MAX_PAGES: usize = 100;

/// `ami-retention`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiRetentionConfig {
    /// `keep_latest`: keep the N newest matching AMIs (the build's own counts among them).
    pub keep_latest: Option<u32>,
    /// `keep_younger_than`: keep AMIs created less than this long ago.
    pub keep_younger_than: Option<Duration>,
    /// `name_prefix`: which AMIs belong to the build. Default: the static part of `ami_name`
    /// (before its first `{{`), unless `tags` is given.
    pub name_prefix: Option<String>,
    /// `tags`: only AMIs that carry all of these tags.
    pub tags: BTreeMap<String, String>,
    /// `regions`: default every region of the artifact.
    pub regions: Vec<String>,
    /// `dry_run`: list what would be deregistered, change nothing. Default false.
    pub dry_run: bool,
    /// `delete_snapshots`: delete the snapshots of a deregistered AMI. Default true.
    pub delete_snapshots: bool,
    /// `include_in_use`: also deregister AMIs used by launch templates or instances. Default
    /// false.
    pub include_in_use: bool,
}

impl AmiRetentionConfig {
    /// Decodes an `ami-retention` post-processor whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> AmiRetentionConfig {
        let o = &mut obj;
        let mut bad = false;
        let keep_latest = match num(o, dx, "keep_latest") {
            Some(n) if !(1..=10_000).contains(&n) => {
                bad = true;
                error_at(
                    o,
                    dx,
                    "keep_latest",
                    format!("`keep_latest` must be between 1 and 10000, found {n}"),
                    Some("the build's own AMI is always kept; keep_latest counts it"),
                );
                None
            }
            Some(n) => u32::try_from(n).ok(),
            None => None,
        };
        let keep_younger_than = o.duration(dx, "keep_younger_than");
        if keep_latest.is_none() && keep_younger_than.is_none() && !bad {
            error_at(
                o,
                dx,
                "keep_latest",
                "`ami-retention` needs `keep_latest`, `keep_younger_than` or both",
                Some("e.g. \"keep_latest\": 5, \"keep_younger_than\": \"336h\" (AMIs in either set are kept)"),
            );
        }
        let name_prefix = o.string(dx, "name_prefix");
        if name_prefix.as_deref() == Some("") {
            error_at(
                o,
                dx,
                "name_prefix",
                "`name_prefix` must not be empty: it would match every AMI of the account",
                Some("leave it out to use the static part of the build's ami_name"),
            );
        }
        let tags = o.string_map(dx, "tags").unwrap_or_default();
        let regions = o.strings(dx, "regions").unwrap_or_default();
        let dry_run = flag(o, dx, "dry_run").unwrap_or(false);
        let delete_snapshots = flag(o, dx, "delete_snapshots").unwrap_or(true);
        let include_in_use = flag(o, dx, "include_in_use").unwrap_or(false);
        obj.finish(dx);
        AmiRetentionConfig {
            keep_latest,
            keep_younger_than,
            name_prefix,
            tags,
            regions,
            dry_run,
            delete_snapshots,
            include_in_use,
        }
    }
}

/// The part of an `ami_name` before its first template action (`web-worker-{{timestamp}}`
/// gives `web-worker-`).
pub fn static_prefix(ami_name: &str) -> &str {
    match ami_name.find("{{") {
        Some(i) => &ami_name[..i],
        None => ami_name,
    }
}

/// One AMI that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    /// As EC2 gave it.
    pub created: String,
    pub snapshots: Vec<String>,
    /// Still `pending` (being made, e.g. by a parallel build; its snapshots not complete).
    pub pending: bool,
}

impl Candidate {
    fn from_image(i: &Image) -> Option<Candidate> {
        Some(Candidate {
            id: i.image_id().filter(|s| !s.is_empty())?.to_string(),
            name: i.name().unwrap_or_default().to_string(),
            created: i.creation_date().unwrap_or_default().to_string(),
            snapshots: i
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                .map(str::to_string)
                .collect(),
            pending: i.state().map(|s| s.as_str()) == Some("pending"),
        })
    }

    fn created_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.created)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// What happens to one AMI, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep(String),
    Deregister(String),
}

/// Decides, for the AMIs of one region, which are kept and which go. `built`: the artifact's
/// AMIs; `in_use`: AMI id to what uses it.
pub fn decide(
    candidates: &[Candidate],
    built: &BTreeSet<String>,
    in_use: &BTreeMap<String, String>,
    c: &AmiRetentionConfig,
    now: DateTime<Utc>,
) -> Vec<(Candidate, Decision)> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; unknown dates last; the id breaks ties so the order is stable.
    sorted.sort_by(|a, b| {
        b.created_at()
            .cmp(&a.created_at())
            .then_with(|| b.id.cmp(&a.id))
    });
    let mut out = Vec::new();
    for (rank, cand) in sorted.into_iter().enumerate() {
        let age = cand
            .created_at()
            .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
        let d = if built.contains(&cand.id) {
            Decision::Keep("the build's artifact".into())
        } else if cand.pending {
            // Another build's AMI in the making: deregistering it would fail that build.
            Decision::Keep("pending (still being made)".into())
        } else if let Some(n) = c.keep_latest.filter(|n| (rank as u64) < u64::from(*n)) {
            Decision::Keep(format!("among the newest {n}"))
        } else if age.is_none() {
            Decision::Keep("no creation date from EC2".into())
        } else if let (Some(limit), Some(a)) = (c.keep_younger_than, age) {
            if a < limit {
                Decision::Keep(format!("younger than {}", format_duration(limit)))
            } else {
                deregister_or_in_use(cand, in_use, c)
            }
        } else {
            deregister_or_in_use(cand, in_use, c)
        };
        out.push((cand.clone(), d));
    }
    out
}

fn deregister_or_in_use(
    cand: &Candidate,
    in_use: &BTreeMap<String, String>,
    c: &AmiRetentionConfig,
) -> Decision {
    let mut why = Vec::new();
    if let Some(n) = c.keep_latest {
        why.push(format!("not among the newest {n}"));
    }
    if let Some(d) = c.keep_younger_than {
        why.push(format!("older than {}", format_duration(d)));
    }
    match in_use.get(&cand.id) {
        Some(user) if !c.include_in_use => Decision::Keep(format!("in use by {user}")),
        Some(user) => {
            why.push(format!("in use by {user} (include_in_use)"));
            Decision::Deregister(why.join(", "))
        }
        None => Decision::Deregister(why.join(", ")),
    }
}

/// The table of decisions: a header, then one line per AMI, columns padded.
pub fn table(rows: &[(String, Candidate, String, String)]) -> Vec<String> {
    let head = ["REGION", "ACTION", "AMI", "CREATED", "NAME", "REASON"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|(r, c, action, why)| {
            [
                r.clone(),
                action.clone(),
                c.id.clone(),
                c.created.clone(),
                c.name.clone(),
                why.clone(),
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 6]| {
        let mut s = String::from("    ");
        for (i, c) in cols.iter().enumerate() {
            s.push_str(c);
            if i < 5 {
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(head)];
    for row in &cells {
        out.push(line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
    }
    out
}

fn api_err(call: &str, region: &str, e: ApiError) -> PpError {
    PpError::Other(format!("{call} in {region}: {e}"))
}

/// AMI ids that launch templates (latest and default versions) and instances (pending,
/// running, stopping, stopped) use in one region, with what uses them.
async fn in_use(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    ctx: &PpContext<'_>,
) -> Result<BTreeMap<String, String>, PpError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let req = ec2
        .describe_launch_template_versions()
        .versions("$Latest")
        .versions("$Default")
        .into_paginator()
        .send();
    let versions = ctx
        .cancel
        .run(pages(req, MAX_PAGES))
        .await
        .ok_or(PpError::Cancelled)?
        .map_err(|e| api_err("DescribeLaunchTemplateVersions", region, e))?;
    for v in versions.iter().flat_map(|p| p.launch_template_versions()) {
        if let Some(ami) = v.launch_template_data().and_then(|d| d.image_id()) {
            out.entry(ami.to_string()).or_insert_with(|| {
                format!(
                    "launch template {} version {}",
                    v.launch_template_id()
                        .or(v.launch_template_name())
                        .unwrap_or("?"),
                    v.version_number().unwrap_or_default()
                )
            });
        }
    }
    let req = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .into_paginator()
        .send();
    let instances = ctx
        .cancel
        .run(pages(req, MAX_PAGES))
        .await
        .ok_or(PpError::Cancelled)?
        .map_err(|e| api_err("DescribeInstances", region, e))?;
    for r in instances.iter().flat_map(|p| p.reservations()) {
        for i in r.instances() {
            if let Some(ami) = i.image_id() {
                out.entry(ami.to_string()).or_insert_with(|| {
                    format!(
                        "instance {} ({})",
                        i.instance_id().unwrap_or("?"),
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str())
                            .unwrap_or("?")
                    )
                });
            }
        }
    }
    Ok(out)
}

/// One row of the report: region, AMI, what happened to it, why.
type Row = (String, Candidate, String, String);

/// What a run did, across its regions.
#[derive(Default)]
struct Tally {
    rows: Vec<Row>,
    failures: Vec<String>,
    gone: usize,
    snaps_gone: usize,
}

/// Runs the post-processor on `input`.
pub async fn run(
    c: &AmiRetentionConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    if input.null {
        ctx.say(target, "the null builder made no AMI: nothing to prune");
        return Ok(());
    }
    let Some(aws) = ctx.aws else {
        return Err(PpError::Other(
            "ami-retention needs the AWS access of an amazon-ebs build".into(),
        ));
    };
    let (prefix, tags) = rule(c, input, ctx)?;
    let regions: Vec<String> = if c.regions.is_empty() {
        input.amis.keys().cloned().collect()
    } else {
        c.regions.clone()
    };
    let built: BTreeSet<String> = input.amis.values().cloned().collect();
    announce(c, ctx, target, prefix.as_deref(), &tags, &regions);
    let now = Utc::now();
    let mut tally = Tally::default();
    for region in &regions {
        let ec2 = aws.ec2(region);
        let candidates = matching(&ec2, region, prefix.as_deref(), &tags, ctx).await?;
        let users = if c.include_in_use {
            BTreeMap::new()
        } else {
            in_use(&ec2, region, ctx).await?
        };
        for (cand, d) in decide(&candidates, &built, &users, c, now) {
            match d {
                Decision::Keep(why) => tally.rows.push((region.clone(), cand, "keep".into(), why)),
                Decision::Deregister(why) if c.dry_run => {
                    tally
                        .rows
                        .push((region.clone(), cand, "would deregister".into(), why))
                }
                Decision::Deregister(why) => {
                    deregister(&ec2, region, cand, why, c, ctx, &mut tally).await?
                }
            }
        }
    }
    report(c, ctx, target, tally)
}

/// Which AMIs the rule covers: `name_prefix` (rendered), else the fixed start of the build's
/// `ami_name` unless `tags` are given; and `tags`, rendered.
fn rule(
    c: &AmiRetentionConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
) -> Result<(Option<String>, BTreeMap<String, String>), PpError> {
    let prefix = match (&c.name_prefix, c.tags.is_empty()) {
        (Some(p), _) => Some(ctx.render("name_prefix", p, input, None)?),
        (None, false) => None,
        (None, true) => {
            let p = static_prefix(ctx.ami_name.unwrap_or_default()).to_string();
            if p.is_empty() {
                return Err(PpError::Other(
                    "ami-retention: the build's ami_name starts with a template action, so it has no fixed prefix to find the build's AMIs by: set `name_prefix` or `tags`".into(),
                ));
            }
            Some(p)
        }
    };
    let mut tags = BTreeMap::new();
    for (k, v) in &c.tags {
        tags.insert(
            ctx.render(&format!("tags `{k}`"), k, input, None)?,
            ctx.render(&format!("tags `{k}`"), v, input, None)?,
        );
    }
    Ok((prefix, tags))
}

/// Says what the run keeps, of which AMIs, where.
fn announce(
    c: &AmiRetentionConfig,
    ctx: &PpContext<'_>,
    target: &str,
    prefix: Option<&str>,
    tags: &BTreeMap<String, String>,
    regions: &[String],
) {
    let mut what = Vec::new();
    if let Some(p) = prefix {
        what.push(format!("name starts with \"{p}\""));
    }
    for (k, v) in tags {
        what.push(format!("tag {k}={v}"));
    }
    let mut policy = Vec::new();
    if let Some(n) = c.keep_latest {
        policy.push(format!("the newest {n}"));
    }
    if let Some(d) = c.keep_younger_than {
        policy.push(format!("those younger than {}", format_duration(d)));
    }
    ctx.say(
        target,
        &format!(
            "{}keeping {} of the AMIs whose {} in {}",
            if c.dry_run { "dry run: " } else { "" },
            policy.join(" and "),
            what.join(" and "),
            regions.join(", ")
        ),
    );
}

/// The account's own AMIs in `region` that the rule covers (DescribeImages with the rule as
/// filters, and the rule checked again on the answer).
async fn matching(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    prefix: Option<&str>,
    tags: &BTreeMap<String, String>,
    ctx: &PpContext<'_>,
) -> Result<Vec<Candidate>, PpError> {
    let mut req = ec2.describe_images().owners("self");
    if let Some(p) = prefix {
        req = req.filters(
            Filter::builder()
                .name("name")
                .values(format!("{p}*"))
                .build(),
        );
    }
    for (k, v) in tags {
        req = req.filters(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    let images = ctx
        .cancel
        .run(req.send())
        .await
        .ok_or(PpError::Cancelled)?
        .api()
        .map_err(|e| api_err("DescribeImages", region, e))?;
    // The filters again, here: an emulator or a wildcard may be looser than the rule.
    Ok(images
        .images()
        .iter()
        .filter(|i| prefix.is_none_or(|p| i.name().unwrap_or_default().starts_with(p)))
        .filter(|i| {
            tags.iter().all(|(k, v)| {
                i.tags()
                    .iter()
                    .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
            })
        })
        .filter_map(Candidate::from_image)
        .collect())
}

/// Deregisters one AMI (and, with `delete_snapshots`, its snapshots), recording the outcome and
/// any failure in `tally`. Only cancellation is an error here.
async fn deregister(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    cand: Candidate,
    mut why: String,
    c: &AmiRetentionConfig,
    ctx: &PpContext<'_>,
    tally: &mut Tally,
) -> Result<(), PpError> {
    let r = ctx
        .cancel
        .run(ec2.deregister_image().image_id(&cand.id).send())
        .await
        .ok_or(PpError::Cancelled)?
        .api();
    if let Err(e) = r.filter_not_found() {
        tally
            .failures
            .push(format!("DeregisterImage {} in {region}: {e}", cand.id));
        tally
            .rows
            .push((region.to_string(), cand, "FAILED".into(), e.to_string()));
        return Ok(());
    }
    tally.gone += 1;
    if c.delete_snapshots {
        for s in &cand.snapshots {
            let r = ctx
                .cancel
                .run(ec2.delete_snapshot().snapshot_id(s).send())
                .await
                .ok_or(PpError::Cancelled)?
                .api();
            match r.filter_not_found() {
                Ok(()) => tally.snaps_gone += 1,
                Err(e) => {
                    tally
                        .failures
                        .push(format!("DeleteSnapshot {s} in {region}: {e}"));
                    why.push_str(&format!("; snapshot {s} NOT deleted: {e}"));
                }
            }
        }
    }
    tally
        .rows
        .push((region.to_string(), cand, "deregistered".into(), why));
    Ok(())
}

/// Prints the table and the counts; fails when any call failed.
fn report(
    c: &AmiRetentionConfig,
    ctx: &PpContext<'_>,
    target: &str,
    tally: Tally,
) -> Result<(), PpError> {
    let Tally {
        rows,
        failures,
        gone,
        snaps_gone,
    } = tally;
    if rows.is_empty() {
        ctx.say(target, "no AMI matched");
    } else {
        for l in table(&rows) {
            ctx.ui.say(&l);
        }
    }
    let kept = rows.iter().filter(|r| r.2 == "keep").count();
    let would = rows.iter().filter(|r| r.2 == "would deregister").count();
    ctx.say(
        target,
        &if c.dry_run {
            format!("dry run: {kept} kept, {would} would be deregistered; nothing was changed")
        } else {
            format!("{kept} kept, {gone} deregistered, {snaps_gone} snapshot(s) deleted")
        },
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(PpError::Other(format!(
            "ami-retention: {}",
            failures.join("; ")
        )))
    }
}

/// Already gone counts as done.
trait NotFoundOk {
    fn filter_not_found(self) -> Result<(), ApiError>;
}

impl<T> NotFoundOk for Result<T, ApiError> {
    fn filter_not_found(self) -> Result<(), ApiError> {
        match self {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn cand(id: &str, created: &str) -> Candidate {
        Candidate {
            id: id.into(),
            name: format!("web-{id}"),
            created: created.into(),
            snapshots: vec![format!("snap-{id}")],
            pending: false,
        }
    }

    fn cfg(keep_latest: Option<u32>, younger: Option<u64>) -> AmiRetentionConfig {
        AmiRetentionConfig {
            keep_latest,
            keep_younger_than: younger.map(|h| Duration::from_secs(h * 3600)),
            name_prefix: None,
            tags: BTreeMap::new(),
            regions: vec![],
            dry_run: false,
            delete_snapshots: true,
            include_in_use: false,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn history() -> Vec<Candidate> {
        vec![
            cand("ami-1", "2025-01-01T00:00:00.000Z"),
            cand("ami-5", "2025-01-09T12:00:00.000Z"),
            cand("ami-3", "2025-01-05T00:00:00.000Z"),
            cand("ami-2", "2025-01-03T00:00:00.000Z"),
            cand("ami-4", "2025-01-08T00:00:00.000Z"),
            cand("ami-x", "not a date"),
        ]
    }

    fn summary(d: &[(Candidate, Decision)]) -> Vec<(String, String)> {
        d.iter()
            .map(|(c, d)| {
                (
                    c.id.clone(),
                    match d {
                        Decision::Keep(w) => format!("keep: {w}"),
                        Decision::Deregister(w) => format!("go: {w}"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_pending_ami_is_kept_whatever_its_rank() {
        let mut h = history();
        h[0].pending = true; // ami-1, the oldest
        let d = decide(
            &h,
            &BTreeSet::new(),
            &BTreeMap::new(),
            &cfg(Some(1), None),
            now(),
        );
        let s = summary(&d);
        assert_eq!(s[0], ("ami-5".into(), "keep: among the newest 1".into()));
        assert_eq!(s[1].1, "go: not among the newest 1");
        assert_eq!(
            s[4],
            ("ami-1".into(), "keep: pending (still being made)".into())
        );
    }

    #[test]
    fn keep_latest_keeps_the_newest_and_the_build_and_in_use_ones() {
        let built = BTreeSet::from(["ami-2".to_string()]);
        let in_use = BTreeMap::from([("ami-1".to_string(), "instance i-1 (running)".to_string())]);
        let d = decide(&history(), &built, &in_use, &cfg(Some(2), None), now());
        assert_eq!(
            summary(&d),
            vec![
                ("ami-5".into(), "keep: among the newest 2".into()),
                ("ami-4".into(), "keep: among the newest 2".into()),
                ("ami-3".into(), "go: not among the newest 2".into()),
                ("ami-2".into(), "keep: the build's artifact".into()),
                (
                    "ami-1".into(),
                    "keep: in use by instance i-1 (running)".into()
                ),
                ("ami-x".into(), "keep: no creation date from EC2".into()),
            ]
        );
        let mut all = cfg(Some(2), None);
        all.include_in_use = true;
        let d = decide(&history(), &built, &in_use, &all, now());
        assert_eq!(
            summary(&d)[4],
            (
                "ami-1".into(),
                "go: not among the newest 2, in use by instance i-1 (running) (include_in_use)"
                    .into()
            )
        );
    }

    #[test]
    fn keep_younger_than_and_both_rules_keep_the_union() {
        let none = BTreeSet::new();
        let no_use = BTreeMap::new();
        // 72h before 2025-01-10: 2025-01-07; ami-5 and ami-4 are younger.
        let d = decide(&history(), &none, &no_use, &cfg(None, Some(72)), now());
        assert_eq!(
            summary(&d)[..4],
            vec![
                (
                    "ami-5".to_string(),
                    "keep: younger than 72h0m0s".to_string()
                ),
                ("ami-4".into(), "keep: younger than 72h0m0s".into()),
                ("ami-3".into(), "go: older than 72h0m0s".into()),
                ("ami-2".into(), "go: older than 72h0m0s".into()),
            ]
        );
        let d = decide(&history(), &none, &no_use, &cfg(Some(3), Some(72)), now());
        let s = summary(&d);
        assert_eq!(s[2], ("ami-3".into(), "keep: among the newest 3".into()));
        assert_eq!(
            s[3],
            (
                "ami-2".into(),
                "go: not among the newest 3, older than 72h0m0s".into()
            )
        );
    }

    #[test]
    fn prefixes_and_config_checks() {
        assert_eq!(static_prefix("web-worker-{{timestamp}}"), "web-worker-");
        assert_eq!(static_prefix("{{user `x`}}-web"), "");
        assert_eq!(static_prefix("fixed"), "fixed");
        let (c, d) = decode(
            r#"{"keep_latest": 3, "keep_younger_than": "168h", "dry_run": true}"#,
            AmiRetentionConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.keep_latest, Some(3));
        assert_eq!(c.keep_younger_than, Some(Duration::from_secs(168 * 3600)));
        assert!(c.dry_run && c.delete_snapshots && !c.include_in_use);
        let (_, d) = decode(r#"{"dry_run": true}"#, AmiRetentionConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["`ami-retention` needs `keep_latest`, `keep_younger_than` or both"]
        );
        let (_, d) = decode(
            r#"{"keep_latest": 0, "name_prefix": ""}"#,
            AmiRetentionConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec![
                "`keep_latest` must be between 1 and 10000, found 0",
                "`name_prefix` must not be empty: it would match every AMI of the account"
            ]
        );
    }

    #[test]
    fn the_table_pads_columns() {
        let rows = vec![
            (
                "us-east-1".to_string(),
                cand("ami-1", "2025-01-01T00:00:00.000Z"),
                "keep".to_string(),
                "the build's artifact".to_string(),
            ),
            (
                "us-west-2".to_string(),
                cand("ami-22", "2025-01-02T00:00:00.000Z"),
                "deregistered".to_string(),
                "not among the newest 1".to_string(),
            ),
        ];
        assert_eq!(
            table(&rows),
            vec![
                "    REGION     ACTION        AMI     CREATED                   NAME        REASON",
                "    us-east-1  keep          ami-1   2025-01-01T00:00:00.000Z  web-ami-1   the build's artifact",
                "    us-west-2  deregistered  ami-22  2025-01-02T00:00:00.000Z  web-ami-22  not among the newest 1",
            ]
        );
    }
}
