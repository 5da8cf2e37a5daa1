//! Step 14: sharing and tags (Packer's `StepModifyAMIAttributes` and `StepCreateTags`), in every
//! region of the product: launch permissions, product codes, IMDS support, snapshot
//! permissions, the image's and snapshots' tags, and the temporary mark removed.

use std::collections::BTreeMap;

use aws_sdk_ec2::operation::create_tags::CreateTagsInput;
use aws_sdk_ec2::operation::delete_tags::DeleteTagsInput;
use aws_sdk_ec2::operation::modify_image_attribute::ModifyImageAttributeInput;
use aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeInput;
use aws_sdk_ec2::types::{
    AttributeValue, CreateVolumePermission, CreateVolumePermissionModifications, LaunchPermission,
    LaunchPermissionModifications, PermissionGroup, SnapshotAttributeName, Tag,
};

use super::{to_tags, Env, Made};
use crate::builder::amazon::ec2::{Ec2, Regions};
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::plan::TAG_TEMPORARY;

/// The tags of the product's images and of their snapshots (rendered, with the run's).
pub struct Tags<'a> {
    pub ami: &'a BTreeMap<String, String>,
    pub snapshot: &'a BTreeMap<String, String>,
}

/// Shares and tags the image `m` in its region.
pub async fn share_and_tag(
    env: &Env<'_>,
    regions: &impl Regions,
    m: &Made,
    tags: Tags<'_>,
) -> Result<(), BuildError> {
    let ec2 = regions.ec2_in(m.region.as_str());
    share(env, &ec2, m).await?;
    let region = m.region.as_str();
    env.say(format!("Adding tags to AMI ({}) in {region}...", m.id));
    let req = CreateTagsInput::builder()
        .resources(m.id.as_str())
        .set_tags(Some(to_tags(tags.ami)));
    env.c(ec2.create_tags(req))
        .await?
        .map_err(|source| BuildError::CreateTags {
            region: region.to_string(),
            ids: m.id.to_string(),
            source,
        })?;
    let snaps: Vec<String> = m.snapshots.iter().map(|(s, _)| s.0.clone()).collect();
    if !snaps.is_empty() {
        let req = CreateTagsInput::builder()
            .set_resources(Some(snaps.clone()))
            .set_tags(Some(to_tags(tags.snapshot)));
        env.c(ec2.create_tags(req))
            .await?
            .map_err(|source| BuildError::CreateTags {
                region: region.to_string(),
                ids: snaps.join(", "),
                source,
            })?;
    }
    // The product: no longer temporary.
    let mut ids = vec![m.id.to_string()];
    ids.extend(snaps);
    let req = DeleteTagsInput::builder()
        .set_resources(Some(ids.clone()))
        .tags(Tag::builder().key(TAG_TEMPORARY).build());
    env.c(ec2.delete_tags(req))
        .await?
        .map_err(|source| BuildError::DeleteTags {
            region: region.to_string(),
            ids: ids.join(", "),
            source,
        })?;
    Ok(())
}

/// The image's attributes (launch permissions, product codes, IMDS support) and its snapshots'
/// create-volume permissions.
async fn share(env: &Env<'_>, ec2: &impl Ec2, m: &Made) -> Result<(), BuildError> {
    let ami = &env.cfg.ami;
    let region = m.region.as_str();
    let img_err = |what, source| BuildError::ModifyImageAttribute {
        region: region.to_string(),
        id: m.id.to_string(),
        what,
        source,
    };
    let image = || ModifyImageAttributeInput::builder().image_id(m.id.as_str());
    if !ami.ami_users.is_empty() || !ami.ami_groups.is_empty() {
        env.say(format!(
            "Setting launch permissions of {} in {region}",
            m.id
        ));
        let mut add = LaunchPermissionModifications::builder();
        for u in &ami.ami_users {
            add = add.add(LaunchPermission::builder().user_id(u).build());
        }
        for g in &ami.ami_groups {
            add = add.add(
                LaunchPermission::builder()
                    .group(PermissionGroup::from(g.as_str()))
                    .build(),
            );
        }
        let req = image().launch_permission(add.build());
        env.c(ec2.modify_image_attribute(req))
            .await?
            .map_err(|s| img_err("launch permissions", s))?;
    }
    if !ami.ami_product_codes.is_empty() {
        let req = image().set_product_codes(Some(ami.ami_product_codes.clone()));
        env.c(ec2.modify_image_attribute(req))
            .await?
            .map_err(|s| img_err("product codes", s))?;
    }
    if ami.imds_support.is_some() {
        let req = image().imds_support(AttributeValue::builder().value("v2.0").build());
        env.c(ec2.modify_image_attribute(req))
            .await?
            .map_err(|s| img_err("imds_support", s))?;
    }
    if !ami.snapshot_users.is_empty() || !ami.snapshot_groups.is_empty() {
        for (s, _) in &m.snapshots {
            let mut add = CreateVolumePermissionModifications::builder();
            for u in &ami.snapshot_users {
                add = add.add(CreateVolumePermission::builder().user_id(u).build());
            }
            for g in &ami.snapshot_groups {
                add = add.add(
                    CreateVolumePermission::builder()
                        .group(PermissionGroup::from(g.as_str()))
                        .build(),
                );
            }
            let req = ModifySnapshotAttributeInput::builder()
                .snapshot_id(s.as_str())
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .create_volume_permission(add.build());
            env.c(ec2.modify_snapshot_attribute(req))
                .await?
                .map_err(|source| BuildError::ModifySnapshotAttribute {
                    region: region.to_string(),
                    id: s.to_string(),
                    source,
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use crate::builder::amazon::ids::{ImageId, Region, SnapshotId};
    use crate::ledger::EntryId;
    use aws_sdk_ec2::operation::create_tags::builders::CreateTagsInputBuilder;
    use aws_sdk_ec2::operation::delete_tags::builders::DeleteTagsInputBuilder;
    use aws_sdk_ec2::operation::modify_image_attribute::builders::ModifyImageAttributeInputBuilder;

    #[tokio::test]
    async fn the_product_is_shared_tagged_and_no_longer_temporary() {
        let w = World::with(r#""ami_users": ["123456789012"], "snapshot_users": ["123456789012"]"#);
        let ec2 = Fake::new("us-east-1");
        let m = Made {
            region: Region::from("eu-west-1"),
            id: ImageId::from("ami-1"),
            entry: EntryId(1),
            snapshots: vec![(SnapshotId::from("snap-1"), EntryId(2))],
        };
        let ami = BTreeMap::from([("Name".to_string(), "web".to_string())]);
        let snapshot = BTreeMap::new();
        let tags = Tags {
            ami: &ami,
            snapshot: &snapshot,
        };
        share_and_tag(&w.env(), &ec2, &m, tags).await.unwrap();
        assert_eq!(
            ec2.calls(),
            [
                "eu-west-1 modify_image_attribute",
                "eu-west-1 modify_snapshot_attribute",
                "eu-west-1 create_tags",
                "eu-west-1 create_tags",
                "eu-west-1 delete_tags"
            ]
        );
        let perm: Vec<ModifyImageAttributeInputBuilder> = ec2.sent("modify_image_attribute");
        let add = perm[0].get_launch_permission().clone().unwrap();
        assert_eq!(add.add()[0].user_id(), Some("123456789012"));
        let tagged: Vec<CreateTagsInputBuilder> = ec2.sent("create_tags");
        assert_eq!(tagged[0].get_resources(), &Some(vec!["ami-1".to_string()]));
        let untagged: Vec<DeleteTagsInputBuilder> = ec2.sent("delete_tags");
        assert_eq!(
            untagged[0].get_resources(),
            &Some(vec!["ami-1".to_string(), "snap-1".to_string()])
        );
        assert_eq!(
            untagged[0].get_tags().clone().unwrap()[0].key(),
            Some(TAG_TEMPORARY)
        );
        assert!(w.undos().is_empty(), "sharing records nothing");
    }
}
