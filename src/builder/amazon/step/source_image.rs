//! Step 1: the source image (Packer's `StepSourceAMIInfo`) and the AMI name check
//! (`StepPreValidate`): which image the instance starts from, and whether the AMI name is free
//! in every region the AMI goes to.

use aws_sdk_ec2::operation::describe_images::builders::DescribeImagesInputBuilder;
use aws_sdk_ec2::operation::describe_images::DescribeImagesInput;
use aws_sdk_ec2::types::Image;

use super::{filter, filters, Env};
use crate::builder::amazon::ec2::{Ec2, Regions};
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::plan;

/// `DescribeImages` in `region` (`what` names the lookup in the error).
pub async fn describe_images(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    what: &str,
    req: DescribeImagesInputBuilder,
) -> Result<Vec<Image>, BuildError> {
    let out =
        env.c(ec2.describe_images(req))
            .await?
            .map_err(|source| BuildError::DescribeImages {
                region: region.to_string(),
                what: what.to_string(),
                source,
            })?;
    Ok(out.images().to_vec())
}

/// The image to launch from: `source_ami`, or the one `source_ami_filter` chooses.
pub async fn source_image(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
) -> Result<Image, BuildError> {
    let run = &env.cfg.run;
    let f = run.source_ami_filter.as_ref();
    let mut req = DescribeImagesInput::builder();
    if let Some(id) = &run.source_ami {
        req = req.image_ids(id);
    }
    if let Some(f) = f {
        req = req.set_filters(Some(filters(&f.filters)));
        if !f.owners.is_empty() {
            req = req.set_owners(Some(f.owners.clone()));
        }
    }
    let what = match &run.source_ami {
        Some(id) => format!("source AMI {id}"),
        None => "source_ami_filter".to_string(),
    };
    // Parallel builds from one source share the lookup (one call, not one per build).
    let images = match env.aws {
        Some(aws) => {
            let request = format!("{req:?}");
            aws.lookup_once(region, request, || {
                describe_images(env, ec2, region, &what, req)
            })
            .await
        }
        None => describe_images(env, ec2, region, &what, req).await,
    };
    let images = match images {
        Err(BuildError::DescribeImages { source, .. })
            if source.is_not_found() && run.source_ami.is_some() =>
        {
            Vec::new()
        }
        r => r?,
    };
    if images.is_empty() {
        if let Some(id) = &run.source_ami {
            return Err(BuildError::SourceAmiNotFound {
                region: region.to_string(),
                id: id.clone(),
            });
        }
    }
    plan::choose_source(&images, f, region)
        .cloned()
        .map_err(BuildError::SourceAmiFilter)
}

/// The images that hold an AMI name, per region (to deregister when forced).
pub type Existing = Vec<(String, Vec<Image>)>;

/// The AMI name must be free in every region the AMI goes to; returns the images that hold it
/// (to deregister when forced).
pub async fn prevalidate(
    env: &Env<'_>,
    regions: &impl Regions,
    name: &str,
    region: &str,
    copy_regions: &[String],
    force: bool,
) -> Result<Existing, BuildError> {
    let cfg = env.cfg;
    if cfg.skip_create_ami {
        return Ok(Vec::new());
    }
    env.say(format!("Prevalidating AMI Name: {name}"));
    let mut check: Vec<&str> = Vec::new();
    if !cfg.ami.skip_save_build_region {
        check.push(region);
    }
    check.extend(copy_regions.iter().map(String::as_str));
    let mut found = Vec::new();
    for r in check {
        let ec2 = regions.ec2_in(r);
        let req = DescribeImagesInput::builder()
            .owners("self")
            .filters(filter("name", name));
        let images = describe_images(env, &ec2, r, "AMI name check", req).await?;
        let images: Vec<Image> = images
            .into_iter()
            .filter(|i| i.name() == Some(name))
            .collect();
        if images.is_empty() {
            continue;
        }
        if !force {
            return Err(BuildError::AmiNameTaken {
                name: name.to_string(),
                region: r.to_string(),
                ids: images
                    .iter()
                    .filter_map(|i| i.image_id())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        found.push((r.to_string(), images));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;

    fn image(id: &str, name: &str) -> Image {
        Image::builder().image_id(id).name(name).build()
    }

    #[tokio::test]
    async fn the_source_ami_is_looked_up_by_id() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_images",
            Ok(DescribeImagesOutput::builder()
                .images(image("ami-src", "base"))
                .build()),
        );
        let got = source_image(&w.env(), &ec2, "us-east-1").await.unwrap();
        assert_eq!(got.image_id(), Some("ami-src"));
        let sent: Vec<DescribeImagesInputBuilder> = ec2.sent("describe_images");
        assert_eq!(sent[0].get_image_ids(), &Some(vec!["ami-src".to_string()]));
    }

    #[tokio::test]
    async fn a_missing_source_ami_names_it_and_the_region() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("describe_images", "InvalidAMIID.NotFound");
        let e = source_image(&w.env(), &ec2, "us-east-1").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "source AMI ami-src was not found in us-east-1 (or is not visible to this account)"
        );
    }

    #[tokio::test]
    async fn a_taken_name_is_refused_unless_forced_in_every_region() {
        let w = World::with(r#""ami_regions": ["eu-west-1"]"#);
        let ec2 = Fake::new("us-east-1");
        let taken = || {
            DescribeImagesOutput::builder()
                .images(image("ami-old", "web"))
                .build()
        };
        ec2.answer(
            "describe_images",
            Ok(DescribeImagesOutput::builder().build()),
        );
        ec2.answer("describe_images", Ok(taken()));
        let copies = vec!["eu-west-1".to_string()];
        let e = prevalidate(&w.env(), &ec2, "web", "us-east-1", &copies, false)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BuildError::AmiNameTaken { ref region, ref ids, .. } if region == "eu-west-1" && ids == "ami-old")
        );
        assert_eq!(
            ec2.calls(),
            ["us-east-1 describe_images", "eu-west-1 describe_images"]
        );
        ec2.answer("describe_images", Ok(taken()));
        let found = prevalidate(&w.env(), &ec2, "web", "us-east-1", &copies, true)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "us-east-1");
    }
}
