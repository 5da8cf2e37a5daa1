//! What the emulator holds: [`state`] reads every image, instance, key pair, security group,
//! volume and snapshot of the regions the tests use, [`assert_nothing_left`] and [`leaks`]
//! compare two such readings, and [`history`] seeds AMIs of earlier builds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::build::SOURCE_AMI;
use super::world::TestWorld;

/// The regions the tests build in (and [`state`] reads).
pub const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];
/// An AMI: name, tags, snapshot ids.
pub type AmiInfo = (String, BTreeMap<String, String>, Vec<String>);

/// What the emulator holds in one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    /// id -> (name, tags, snapshot ids)
    pub images: BTreeMap<String, AmiInfo>,
    /// id -> state
    pub instances: BTreeMap<String, String>,
    pub key_pairs: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    /// id -> tags
    pub snapshots: BTreeMap<String, BTreeMap<String, String>>,
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What the emulator holds in every region of [`REGIONS`] (all of it: compare two readings).
pub fn state(world: &TestWorld) -> BTreeMap<&'static str, Region> {
    world.ec2(|base| async move {
        let conf = base.config().to_builder();
        let mut out = BTreeMap::new();
        for r in REGIONS {
            let c = aws_sdk_ec2::Client::from_conf(
                conf.clone()
                    .region(aws_sdk_ec2::config::Region::new(r))
                    .build(),
            );
            let mut reg = Region::default();
            for i in c
                .describe_images()
                .owners("self")
                .send()
                .await
                .expect("DescribeImages")
                .images()
            {
                reg.images.insert(
                    i.image_id().unwrap_or_default().to_string(),
                    (
                        i.name().unwrap_or_default().to_string(),
                        tags_of(i.tags()),
                        i.block_device_mappings()
                            .iter()
                            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                            .map(str::to_string)
                            .collect(),
                    ),
                );
            }
            for res in c
                .describe_instances()
                .send()
                .await
                .expect("DescribeInstances")
                .reservations()
            {
                for i in res.instances() {
                    reg.instances.insert(
                        i.instance_id().unwrap_or_default().to_string(),
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                    );
                }
            }
            for k in c
                .describe_key_pairs()
                .send()
                .await
                .expect("DescribeKeyPairs")
                .key_pairs()
            {
                reg.key_pairs
                    .insert(k.key_name().unwrap_or_default().to_string());
            }
            for g in c
                .describe_security_groups()
                .send()
                .await
                .expect("DescribeSecurityGroups")
                .security_groups()
            {
                reg.groups
                    .insert(g.group_id().unwrap_or_default().to_string());
            }
            for v in c
                .describe_volumes()
                .send()
                .await
                .expect("DescribeVolumes")
                .volumes()
            {
                reg.volumes
                    .insert(v.volume_id().unwrap_or_default().to_string());
            }
            // ~1100 default snapshots: all of them, to compare before and after.
            for s in c
                .describe_snapshots()
                .owner_ids("self")
                .send()
                .await
                .expect("DescribeSnapshots")
                .snapshots()
            {
                reg.snapshots.insert(
                    s.snapshot_id().unwrap_or_default().to_string(),
                    tags_of(s.tags()),
                );
            }
            out.insert(r, reg);
        }
        out
    })
}

/// Asserts that, between `before` and `after`, nothing was added except `kept` AMIs (and their
/// snapshots), and that every new instance is terminated.
pub fn assert_nothing_left(
    before: &BTreeMap<&str, Region>,
    after: &BTreeMap<&str, Region>,
    kept: &[&str],
    context: &str,
) {
    for r in REGIONS {
        let (b, a) = (&before[r], &after[r]);
        let new_images: Vec<&String> = a
            .images
            .keys()
            .filter(|k| !b.images.contains_key(*k))
            .collect();
        let unexpected: Vec<&&String> = new_images
            .iter()
            .filter(|i| !kept.contains(&i.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{context}: AMIs left in {r}: {unexpected:?}"
        );
        let kept_snaps: BTreeSet<&String> =
            new_images.iter().flat_map(|i| &a.images[*i].2).collect();
        let new_snaps: Vec<&String> = a
            .snapshots
            .keys()
            .filter(|k| !b.snapshots.contains_key(*k) && !kept_snaps.contains(k))
            .collect();
        assert!(
            new_snaps.is_empty(),
            "{context}: snapshots left in {r}: {new_snaps:?}"
        );
        for (id, st) in &a.instances {
            if !b.instances.contains_key(id) {
                assert_eq!(st, "terminated", "{context}: instance {id} in {r}");
            }
        }
        assert_eq!(a.key_pairs, b.key_pairs, "{context}: key pairs in {r}");
        assert_eq!(a.groups, b.groups, "{context}: security groups in {r}");
        assert_eq!(a.volumes, b.volumes, "{context}: volumes in {r}");
    }
}

/// What is in `after` and not in `before`, apart from `kept` AMIs and their snapshots and
/// terminated instances: one line per resource.
pub fn leaks(
    before: &BTreeMap<&str, Region>,
    after: &BTreeMap<&str, Region>,
    kept: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for r in REGIONS {
        let (b, a) = (&before[r], &after[r]);
        let mut kept_snaps = BTreeSet::new();
        for (id, (_, _, snaps)) in &a.images {
            if b.images.contains_key(id) {
                continue;
            }
            if kept.contains(id) {
                kept_snaps.extend(snaps.iter().cloned());
            } else {
                out.push(format!("{r} AMI {id}"));
            }
        }
        for id in a.snapshots.keys() {
            if !b.snapshots.contains_key(id) && !kept_snaps.contains(id) {
                out.push(format!("{r} snapshot {id}"));
            }
        }
        for (id, st) in &a.instances {
            if !b.instances.contains_key(id) && st != "terminated" {
                out.push(format!("{r} instance {id} ({st})"));
            }
        }
        for k in a.key_pairs.difference(&b.key_pairs) {
            out.push(format!("{r} key pair {k}"));
        }
        for g in a.groups.difference(&b.groups) {
            out.push(format!("{r} security group {g}"));
        }
        for v in a.volumes.difference(&b.volumes) {
            out.push(format!("{r} volume {v}"));
        }
    }
    out
}

/// Creates `n` AMIs named `<prefix><i>` from one instance, a little more than a second apart
/// (EC2 creation dates have one-second resolution); returns their ids, oldest first.
pub fn history(world: &TestWorld, prefix: &str, n: usize) -> Vec<String> {
    let prefix = prefix.to_string();
    world.ec2(|c| async move {
        let run = c
            .run_instances()
            .image_id(SOURCE_AMI)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances");
        let instance = run.instances()[0].instance_id().expect("id").to_string();
        let mut ids = Vec::new();
        for i in 0..n {
            let out = c
                .create_image()
                .instance_id(&instance)
                .name(format!("{prefix}{i}"))
                .send()
                .await
                .expect("CreateImage");
            ids.push(out.image_id().expect("image id").to_string());
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        ids
    })
}

/// Images whose name starts with `prefix` in a region: id -> snapshot ids.
pub fn images_named(
    world: &TestWorld,
    region: &'static str,
    prefix: &str,
) -> BTreeMap<String, Vec<String>> {
    state(world)[region]
        .images
        .iter()
        .filter(|(_, (name, _, _))| name.starts_with(prefix))
        .map(|(id, (_, _, snaps))| (id.clone(), snaps.clone()))
        .collect()
}

/// The security groups the build `name` created (by its `imgbuild:build` tag).
pub fn security_groups_of(world: &TestWorld, name: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
    let name = name.to_string();
    world.ec2(|c| async move {
        c.describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:imgbuild:build")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeSecurityGroups")
            .security_groups()
            .to_vec()
    })
}
