//! Step 13: copies (Packer's `StepAMIRegionCopy` and the `encrypt_boot` copy): `CopyImage` with a
//! client token (journaled as an intent with the name first), recorded and tagged at once, then
//! waited for; the regions are copied to at once. An image that is not the product (the
//! unencrypted original, the build region's with `skip_save_build_region`) is removed now.

use aws_sdk_ec2::operation::copy_image::CopyImageInput;
use aws_sdk_ec2::operation::create_tags::CreateTagsInput;

use super::finish_image::finish_image;
use super::{to_tags, Env, Made};
use crate::aws::Aws;
use crate::builder::amazon::ec2::{Ec2, Regions};
use crate::builder::amazon::error::{required, BuildError};
use crate::builder::amazon::ids::ImageId;
use crate::builder::amazon::teardown;
use crate::ledger::lock;
use crate::ledger::Undo;

/// The name, description and encryption of a copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyAs<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub kms: Option<&'a str>,
    pub encrypted: bool,
}

/// Copies `from` to `region` and waits for the copy.
pub async fn copy_image(
    env: &Env<'_>,
    regions: &impl Regions,
    from: &Made,
    region: &str,
    to: CopyAs<'_>,
) -> Result<Made, BuildError> {
    let ec2 = regions.ec2_in(region);
    let token = uuid::Uuid::new_v4().to_string();
    env.check_cancel()?;
    let intent = env.intent("CopyImage", region, &token, Some(to.name))?;
    let mut req = CopyImageInput::builder()
        .source_image_id(from.id.as_str())
        .source_region(from.region.as_str())
        .name(to.name)
        .set_description(to.description.map(str::to_string))
        .client_token(&token);
    if to.encrypted {
        req = req
            .encrypted(true)
            .set_kms_key_id(to.kms.filter(|k| !k.is_empty()).map(str::to_string));
    }
    let sent = ec2.copy_image(req).await;
    env.test_hold("sent_copy_image").await;
    let out = sent.map_err(|source| BuildError::CopyImage {
        region: region.to_string(),
        source_region: from.region.to_string(),
        image: from.id.to_string(),
        source,
    })?;
    let id = required(out.image_id(), "CopyImage", "ImageId", region)?;
    let entry = env.record(
        Undo::DeregisterImage {
            region: region.to_string(),
            id: id.clone(),
        },
        Some(intent),
    )?;
    // Tag the copy at once so that it is found even if the process dies now.
    let tag = CreateTagsInput::builder()
        .resources(&id)
        .set_tags(Some(to_tags(&env.temporary_tags())));
    let _ = ec2.create_tags(tag).await;
    env.say(format!("Copy of {} in {region}: {id}", from.id));
    env.pause_point("copy").await?;
    finish_image(env, &ec2, region, ImageId(id), entry).await
}

/// Copies `from` to each of `copy_regions` at once, encrypted with each region's own key when
/// `encrypt_boot` (a build-region key is not valid elsewhere; none: the region's default).
pub async fn copy_to_regions(
    env: &Env<'_>,
    regions: &impl Regions,
    from: &Made,
    copy_regions: &[String],
    name: &str,
    description: Option<&str>,
) -> Result<Vec<Made>, BuildError> {
    let ami = &env.cfg.ami;
    env.say(format!(
        "Copying {} to {}...",
        from.id,
        copy_regions.join(", ")
    ));
    let results = futures_util::future::join_all(copy_regions.iter().map(|r| {
        let to = CopyAs {
            name,
            description,
            kms: ami.region_kms_key_ids.get(r).map(String::as_str),
            encrypted: ami.encrypt_boot == Some(true),
        };
        let part = env.timeline.part(format!("region copy {r}"));
        async move {
            let made = copy_image(env, regions, from, r, to).await;
            part.end();
            made
        }
    }))
    .await;
    let mut copies = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(m) => copies.push(m),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            BuildError::Several(errors)
        });
    }
    Ok(copies)
}

/// `encrypt_boot`: the unencrypted image is copied encrypted in the build region, and the
/// intermediate one removed.
pub async fn encrypt_in_place(
    env: &Env<'_>,
    aws: &Aws,
    made: Made,
    name: &str,
    description: Option<&str>,
) -> Result<Made, BuildError> {
    env.say(format!(
        "Encrypting: copying {} with encrypted boot volumes",
        made.id
    ));
    let region = made.region.clone();
    let to = CopyAs {
        name,
        description,
        kms: env.cfg.ami.kms_key_id.as_deref(),
        encrypted: true,
    };
    let enc = copy_image(env, aws, &made, region.as_str(), to).await?;
    remove_now(env, aws, &made, "unencrypted intermediate AMI").await?;
    Ok(enc)
}

/// Removes an image (and its snapshots) of this build now, marking it undone.
pub async fn remove_now(env: &Env<'_>, aws: &Aws, m: &Made, what: &str) -> Result<(), BuildError> {
    env.say(format!("Removing the {what} {} in {}", m.id, m.region));
    let progress = env.progress();
    let undo = Undo::DeregisterImage {
        region: m.region.to_string(),
        id: m.id.to_string(),
    };
    teardown::undo(
        aws,
        &undo,
        env.polling,
        std::time::Instant::now() + teardown::DEADLINE,
        &env.protected_snapshots(),
        env.cancel,
        &progress,
    )
    .await
    .map_err(|e| BuildError::Intermediate {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    let mut l = lock(env.ledger);
    l.undone(m.entry).map_err(BuildError::Journal)?;
    for (_, e) in &m.snapshots {
        l.undone(*e).map_err(BuildError::Journal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::finish_image::answers::available;
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use crate::builder::amazon::ids::Region;
    use crate::ledger::EntryId;
    use aws_sdk_ec2::operation::copy_image::builders::CopyImageInputBuilder;
    use aws_sdk_ec2::operation::copy_image::CopyImageOutput;

    fn source() -> Made {
        Made {
            region: Region::from("us-east-1"),
            id: ImageId::from("ami-src"),
            entry: EntryId(1),
            snapshots: Vec::new(),
        }
    }

    #[tokio::test]
    async fn each_region_gets_a_copy_recorded_tagged_and_waited_for() {
        let w = World::with(
            r#""ami_regions": ["eu-west-1"], "encrypt_boot": true, "region_kms_key_ids": {"eu-west-1": "alias/eu"}"#,
        );
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "copy_image",
            Ok(CopyImageOutput::builder().image_id("ami-eu").build()),
        );
        ec2.answer("describe_images", Ok(available("ami-eu", &["snap-eu"])));
        let copies = copy_to_regions(
            &w.env(),
            &ec2,
            &source(),
            &["eu-west-1".to_string()],
            "web",
            None,
        )
        .await
        .unwrap();
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].id, ImageId::from("ami-eu"));
        assert_eq!(copies[0].region, Region::from("eu-west-1"));
        assert_eq!(
            ec2.calls(),
            [
                "eu-west-1 copy_image",
                "eu-west-1 create_tags",
                "eu-west-1 describe_images",
                "eu-west-1 create_tags"
            ]
        );
        let sent: Vec<CopyImageInputBuilder> = ec2.sent("copy_image");
        let r = &sent[0];
        assert_eq!(r.get_source_image_id().as_deref(), Some("ami-src"));
        assert_eq!(r.get_source_region().as_deref(), Some("us-east-1"));
        assert_eq!(r.get_name().as_deref(), Some("web"));
        assert_eq!(r.get_encrypted(), &Some(true));
        assert_eq!(r.get_kms_key_id().as_deref(), Some("alias/eu"));
        assert!(r.get_client_token().is_some());
        assert_eq!(
            w.undos(),
            vec![
                Undo::DeregisterImage {
                    region: "eu-west-1".into(),
                    id: "ami-eu".into()
                },
                Undo::DeleteSnapshot {
                    region: "eu-west-1".into(),
                    id: "snap-eu".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_copy_names_both_regions_and_records_nothing() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("copy_image", "InvalidRequest");
        let to = CopyAs {
            name: "web",
            description: None,
            kms: None,
            encrypted: false,
        };
        let e = copy_image(&w.env(), &ec2, &source(), "eu-west-1", to)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CopyImage ami-src from us-east-1 to eu-west-1: InvalidRequest: InvalidRequest (scripted)"
        );
        assert!(w.undos().is_empty());
        let sent: Vec<CopyImageInputBuilder> = ec2.sent("copy_image");
        assert_eq!(sent[0].get_encrypted(), &None);
    }

    #[tokio::test]
    async fn failures_in_several_regions_are_reported_together() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("copy_image", "InvalidRequest");
        ec2.fail("copy_image", "InvalidRequest");
        let regions = ["eu-west-1".to_string(), "ap-south-1".to_string()];
        let e = copy_to_regions(&w.env(), &ec2, &source(), &regions, "web", None)
            .await
            .unwrap_err();
        assert!(matches!(&e, BuildError::Several(v) if v.len() == 2), "{e}");
    }
}
