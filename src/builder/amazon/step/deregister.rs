//! Step 10: `force_deregister` (Packer's `StepDeregisterAMI`): the images that hold the AMI
//! name (found by the pre-validation) are deregistered, and with `force_delete_snapshot` their
//! snapshots deleted, just before the new image is made.

use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotInput;
use aws_sdk_ec2::operation::deregister_image::DeregisterImageInput;

use super::source_image::Existing;
use super::Env;
use crate::builder::amazon::ec2::{Ec2, Regions};
use crate::builder::amazon::error::BuildError;

/// Deregisters `existing` (images that are gone already are fine).
pub async fn force_deregister(
    env: &Env<'_>,
    regions: &impl Regions,
    existing: &Existing,
) -> Result<(), BuildError> {
    for (region, images) in existing {
        let ec2 = regions.ec2_in(region);
        for img in images {
            let Some(id) = img.image_id() else { continue };
            env.say(format!(
                "Deregistering the existing AMI {id} in {region} (force_deregister)"
            ));
            let req = DeregisterImageInput::builder().image_id(id);
            match ec2.deregister_image(req).await {
                Err(e) if !e.is_not_found() => {
                    return Err(BuildError::DeregisterImage {
                        region: region.clone(),
                        id: id.to_string(),
                        source: e,
                    })
                }
                _ => {}
            }
            if env.cfg.ami.force_delete_snapshot {
                for s in img
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                {
                    env.say(format!("Deleting its snapshot {s} (force_delete_snapshot)"));
                    let req = DeleteSnapshotInput::builder().snapshot_id(s);
                    match ec2.delete_snapshot(req).await {
                        Err(e) if !e.is_not_found() => {
                            return Err(BuildError::DeleteSnapshot {
                                region: region.clone(),
                                id: s.to_string(),
                                source: e,
                            })
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::delete_snapshot::builders::DeleteSnapshotInputBuilder;
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, Image};

    fn existing() -> Existing {
        let img = Image::builder()
            .image_id("ami-old")
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .ebs(EbsBlockDevice::builder().snapshot_id("snap-old").build())
                    .build(),
            )
            .build();
        vec![("eu-west-1".to_string(), vec![img])]
    }

    #[tokio::test]
    async fn the_holder_of_the_name_and_its_snapshots_go_and_gone_ones_are_fine() {
        let w = World::with(r#""force_deregister": true, "force_delete_snapshot": true"#);
        let ec2 = Fake::new("us-east-1");
        ec2.fail("deregister_image", "InvalidAMIID.NotFound");
        force_deregister(&w.env(), &ec2, &existing()).await.unwrap();
        assert_eq!(
            ec2.calls(),
            ["eu-west-1 deregister_image", "eu-west-1 delete_snapshot"]
        );
        let sent: Vec<DeleteSnapshotInputBuilder> = ec2.sent("delete_snapshot");
        assert_eq!(sent[0].get_snapshot_id().as_deref(), Some("snap-old"));
        assert!(
            w.undos().is_empty(),
            "the user's old image is not the build's"
        );
    }

    #[tokio::test]
    async fn a_refused_deregistration_names_the_image_and_region() {
        let w = World::with(r#""force_deregister": true"#);
        let ec2 = Fake::new("us-east-1");
        ec2.fail("deregister_image", "UnauthorizedOperation");
        let e = force_deregister(&w.env(), &ec2, &existing())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "DeregisterImage ami-old in eu-west-1 (force_deregister): UnauthorizedOperation: UnauthorizedOperation (scripted)"
        );
        assert_eq!(ec2.calls(), ["eu-west-1 deregister_image"]);
    }
}
