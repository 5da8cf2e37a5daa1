//! Step 11: the image (Packer's `StepCreateAMI`): `CreateImage` from the stopped instance,
//! tagged as this run's temporary image and recorded in the ledger; a retry whose first answer
//! was lost is resolved by the image's name and this run's tag.

use aws_sdk_ec2::operation::create_image::CreateImageInput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesInput;
use aws_sdk_ec2::types::{BlockDeviceMapping, ResourceType};

use super::launch::block_device;
use super::{filter, tag_spec, Env};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::{required, BuildError};
use crate::builder::amazon::ids::{ImageId, InstanceId};
use crate::builder::amazon::plan::TAG_RUN_ID;
use crate::ledger::{EntryId, Undo};

/// The image just made (not yet available), and its ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: ImageId,
    pub entry: EntryId,
}

/// Creates the image `name` from `instance`.
pub async fn create_image(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    instance: &InstanceId,
    name: &str,
    description: Option<&str>,
) -> Result<Created, BuildError> {
    env.say(format!("Creating AMI {name} from instance {instance}"));
    env.check_cancel()?;
    let mappings: Vec<BlockDeviceMapping> = env
        .cfg
        .ami_block_device_mappings
        .iter()
        .map(block_device)
        .collect();
    let req = CreateImageInput::builder()
        .instance_id(instance.as_str())
        .name(name)
        .set_description(description.map(str::to_string))
        .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
        .tag_specifications(tag_spec(ResourceType::Image, &env.temporary_tags()));
    let failed = |source| BuildError::CreateImage {
        region: region.to_string(),
        instance: instance.to_string(),
        source,
    };
    let id = match ec2.create_image(req).await {
        Ok(out) => required(out.image_id(), "CreateImage", "ImageId", region)?,
        // The SDK retried a call whose answer was lost: the image of that name carrying
        // this run's tag is the one the first try made (any other is refused, as before).
        Err(e) if e.code_is("InvalidAMIName.Duplicate") => {
            match image_of_this_run(env, ec2, name).await {
                Some(id) => id,
                None => return Err(failed(e)),
            }
        }
        Err(source) => return Err(failed(source)),
    };
    let entry = env.record(
        Undo::DeregisterImage {
            region: region.to_string(),
            id: id.clone(),
        },
        None,
    )?;
    env.say(format!("AMI: {id}"));
    Ok(Created {
        id: ImageId(id),
        entry,
    })
}

/// The ID of this account's image `name` tagged with this run, if exactly one exists.
async fn image_of_this_run(env: &Env<'_>, ec2: &impl Ec2, name: &str) -> Option<String> {
    let req = DescribeImagesInput::builder()
        .owners("self")
        .filters(filter("name", name))
        .filters(filter(&format!("tag:{TAG_RUN_ID}"), env.run_id));
    let out = ec2.describe_images(req).await.ok()?;
    match out.images() {
        [i] => i.image_id().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use crate::builder::amazon::plan::TAG_TEMPORARY;
    use aws_sdk_ec2::operation::create_image::builders::CreateImageInputBuilder;
    use aws_sdk_ec2::operation::create_image::CreateImageOutput;
    use aws_sdk_ec2::operation::describe_images::builders::DescribeImagesInputBuilder;
    use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
    use aws_sdk_ec2::types::Image;

    fn deregister(id: &str) -> Undo {
        Undo::DeregisterImage {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn the_image_is_created_tagged_temporary_and_recorded() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "create_image",
            Ok(CreateImageOutput::builder().image_id("ami-new").build()),
        );
        let made = create_image(&w.env(), &ec2, "us-east-1", &"i-1".into(), "web", Some("d"))
            .await
            .unwrap();
        assert_eq!(made.id, ImageId::from("ami-new"));
        let sent: Vec<CreateImageInputBuilder> = ec2.sent("create_image");
        assert_eq!(sent[0].get_instance_id().as_deref(), Some("i-1"));
        assert_eq!(sent[0].get_name().as_deref(), Some("web"));
        assert_eq!(sent[0].get_description().as_deref(), Some("d"));
        let spec = &sent[0].get_tag_specifications().clone().unwrap()[0];
        assert!(spec.tags().iter().any(|t| t.key() == Some(TAG_TEMPORARY)));
        assert!(spec
            .tags()
            .iter()
            .any(|t| t.key() == Some(TAG_RUN_ID) && t.value() == Some("run-1")));
        assert_eq!(w.undos(), vec![deregister("ami-new")]);
    }

    #[tokio::test]
    async fn a_lost_answer_then_duplicate_is_resolved_by_name_and_run_tag() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("create_image", "InvalidAMIName.Duplicate");
        ec2.answer(
            "describe_images",
            Ok(DescribeImagesOutput::builder()
                .images(Image::builder().image_id("ami-first").build())
                .build()),
        );
        let made = create_image(&w.env(), &ec2, "us-east-1", &"i-1".into(), "web", None)
            .await
            .unwrap();
        assert_eq!(made.id, ImageId::from("ami-first"));
        let lookup: Vec<DescribeImagesInputBuilder> = ec2.sent("describe_images");
        let names: Vec<_> = lookup[0]
            .get_filters()
            .clone()
            .unwrap()
            .iter()
            .map(|f| (f.name().unwrap().to_string(), f.values().to_vec()))
            .collect();
        assert_eq!(
            names,
            [
                ("name".to_string(), vec!["web".to_string()]),
                (format!("tag:{TAG_RUN_ID}"), vec!["run-1".to_string()])
            ]
        );
        assert_eq!(w.undos(), vec![deregister("ami-first")]);
    }

    #[tokio::test]
    async fn a_duplicate_name_of_another_run_is_refused_unrecorded() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("create_image", "InvalidAMIName.Duplicate");
        let e = create_image(&w.env(), &ec2, "us-east-1", &"i-1".into(), "web", None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CreateImage from instance i-1 in us-east-1: InvalidAMIName.Duplicate: InvalidAMIName.Duplicate (scripted)"
        );
        assert!(w.undos().is_empty());
    }
}
