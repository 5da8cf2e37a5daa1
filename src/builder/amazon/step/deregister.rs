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
