//! Step 12: an image becomes available (Packer's `WaitUntilAMIAvailable`): the wait, then its
//! snapshots recorded in the ledger (except the template's own) and tagged with this run at
//! once, so that `imgbuild cleanup` finds them.

use std::time::Duration;

use aws_sdk_ec2::operation::create_tags::CreateTagsInput;

use super::{to_tags, Env, Made};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::ids::{ImageId, Region, SnapshotId};
use crate::builder::amazon::waits;
use crate::ledger::{EntryId, Undo};

/// How long an image may take to become available unless `aws_polling` says otherwise
/// (Packer: 30 minutes).
const IMAGE_WAIT: Duration = Duration::from_secs(30 * 60);

/// Waits for the image `id` (ledger entry `entry`) to be available and records its snapshots.
pub async fn finish_image(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: ImageId,
    entry: EntryId,
) -> Result<Made, BuildError> {
    env.say(format!(
        "Waiting for AMI {id} in {region} to become ready..."
    ));
    let progress = env.progress();
    let w = env.wait(
        format!("AMI {id} in {region}"),
        "available",
        IMAGE_WAIT,
        &progress,
    );
    let image = waits::image(&w, ec2, region, id.as_str()).await?;
    let protected = env.protected_snapshots();
    let mut snapshots = Vec::new();
    for s in image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
    {
        if protected.iter().any(|p| p == s) {
            continue;
        }
        let e = env.record(
            Undo::DeleteSnapshot {
                region: region.to_string(),
                id: s.to_string(),
            },
            None,
        )?;
        snapshots.push((SnapshotId::from(s), e));
    }
    // The run-id tag on the snapshots at once (CreateImage could tag them itself, but not
    // every EC2 implementation supports it), so that `imgbuild cleanup` finds them.
    if !snapshots.is_empty() {
        let ids: Vec<String> = snapshots.iter().map(|(s, _)| s.0.clone()).collect();
        let req = CreateTagsInput::builder()
            .set_resources(Some(ids.clone()))
            .set_tags(Some(to_tags(&env.temporary_tags())));
        ec2.create_tags(req)
            .await
            .map_err(|source| BuildError::CreateTags {
                region: region.to_string(),
                ids: ids.join(", "),
                source,
            })?;
    }
    Ok(Made {
        region: Region::from(region),
        id,
        entry,
        snapshots,
    })
}

/// `DescribeImages` answers for the steps' tests.
#[cfg(test)]
pub(crate) mod answers {
    use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, Image, ImageState};

    /// The image `id`, available, with snapshots `snaps`.
    pub fn available(id: &str, snaps: &[&str]) -> DescribeImagesOutput {
        let mut b = Image::builder().image_id(id).state(ImageState::Available);
        for s in snaps {
            b = b.block_device_mappings(
                BlockDeviceMapping::builder()
                    .ebs(EbsBlockDevice::builder().snapshot_id(*s).build())
                    .build(),
            );
        }
        DescribeImagesOutput::builder().images(b.build()).build()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::answers::available;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use crate::ledger::EntryId;
    use aws_sdk_ec2::operation::create_tags::builders::CreateTagsInputBuilder;

    #[tokio::test]
    async fn the_snapshots_are_recorded_and_tagged_except_the_templates_own() {
        let w = World::with(
            r#""launch_block_device_mappings": [{"device_name": "/dev/sdb", "snapshot_id": "snap-user"}]"#,
        );
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_images",
            Ok(available("ami-1", &["snap-1", "snap-user"])),
        );
        let made = finish_image(&w.env(), &ec2, "us-east-1", "ami-1".into(), EntryId(7))
            .await
            .unwrap();
        assert_eq!(made.snapshots.len(), 1);
        assert_eq!(made.snapshots[0].0, SnapshotId::from("snap-1"));
        assert_eq!(
            w.undos(),
            vec![Undo::DeleteSnapshot {
                region: "us-east-1".into(),
                id: "snap-1".into()
            }]
        );
        let tags: Vec<CreateTagsInputBuilder> = ec2.sent("create_tags");
        assert_eq!(tags[0].get_resources(), &Some(vec!["snap-1".to_string()]));
    }
}
