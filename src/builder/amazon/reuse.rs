//! Reuse when nothing changed: finding the AMIs that already carry a build's fingerprint
//! (`imgbuild:fingerprint`, see [`crate::builder::fingerprint`]) in every region the build would
//! deliver to. Read-only: DescribeImages owned by this account.
//!
//! An image counts only when it is `available` and not marked `imgbuild:temporary` (a build
//! that was interrupted before delivering it). When several carry the fingerprint in a region,
//! the newest is taken. When one region lacks it (a new `ami_regions` entry, a copy someone
//! deregistered), the build runs again in full: copying the one that exists would be faster,
//! but a rebuild is the simple answer that is always right.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Image, ImageState};

use super::plan::TAG_TEMPORARY;
use crate::aws::{Api, ApiError, Aws};
use crate::builder::fingerprint::TAG_FINGERPRINT;
use crate::cancel::Cancel;

#[derive(Debug, thiserror::Error)]
pub enum ReuseError {
    #[error("DescribeImages in {region} (AMIs with {TAG_FINGERPRINT}={fingerprint}): {source}")]
    DescribeImages {
        region: String,
        fingerprint: String,
        source: ApiError,
    },
    #[error("cancelled")]
    Cancelled,
}

/// An AMI that can be reused in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub created: String,
}

/// What the search found: an AMI for every region, or the regions without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    All(BTreeMap<String, Found>),
    Missing(Vec<String>),
}

/// The newest image that may be reused, of those EC2 returned for the fingerprint.
pub fn choose(images: &[Image], fingerprint: &str) -> Option<Found> {
    images
        .iter()
        .filter(|i| i.state() == Some(&ImageState::Available))
        .filter(|i| {
            let tags = i.tags();
            tags.iter()
                .any(|t| t.key() == Some(TAG_FINGERPRINT) && t.value() == Some(fingerprint))
                && !tags.iter().any(|t| t.key() == Some(TAG_TEMPORARY))
        })
        .filter_map(|i| {
            Some(Found {
                id: i.image_id().filter(|s| !s.is_empty())?.to_string(),
                name: i.name().unwrap_or_default().to_string(),
                created: i.creation_date().unwrap_or_default().to_string(),
            })
        })
        // RFC 3339 dates in UTC order as text; the id breaks ties so the choice is stable.
        .max_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)))
}

/// Looks for the fingerprint in every region of `regions`.
pub async fn lookup(
    aws: &Aws,
    regions: &[String],
    fingerprint: &str,
    cancel: &Cancel,
) -> Result<Lookup, ReuseError> {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for r in regions {
        let ec2 = aws.ec2(r);
        let req = ec2
            .describe_images()
            .owners("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_FINGERPRINT}"))
                    .values(fingerprint)
                    .build(),
            )
            .send();
        let out = cancel
            .run(req)
            .await
            .ok_or(ReuseError::Cancelled)?
            .api()
            .map_err(|source| ReuseError::DescribeImages {
                region: r.clone(),
                fingerprint: fingerprint.to_string(),
                source,
            })?;
        match choose(out.images(), fingerprint) {
            Some(f) => {
                found.insert(r.clone(), f);
            }
            None => missing.push(r.clone()),
        }
    }
    Ok(if missing.is_empty() {
        Lookup::All(found)
    } else {
        Lookup::Missing(missing)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::Tag;

    fn image(id: &str, created: &str, state: ImageState, tags: &[(&str, &str)]) -> Image {
        let mut b = Image::builder()
            .image_id(id)
            .name(format!("n-{id}"))
            .creation_date(created)
            .state(state);
        for (k, v) in tags {
            b = b.tags(Tag::builder().key(*k).value(*v).build());
        }
        b.build()
    }

    #[test]
    fn the_newest_available_delivered_image_with_the_fingerprint_is_chosen() {
        let fp = [(TAG_FINGERPRINT, "abc")];
        let images = vec![
            image(
                "ami-1",
                "2025-01-01T00:00:00.000Z",
                ImageState::Available,
                &fp,
            ),
            image(
                "ami-2",
                "2025-01-03T00:00:00.000Z",
                ImageState::Available,
                &fp,
            ),
            // Newer, but still pending, temporary, or with another fingerprint.
            image(
                "ami-3",
                "2025-01-04T00:00:00.000Z",
                ImageState::Pending,
                &fp,
            ),
            image(
                "ami-4",
                "2025-01-05T00:00:00.000Z",
                ImageState::Available,
                &[(TAG_FINGERPRINT, "abc"), (TAG_TEMPORARY, "true")],
            ),
            image(
                "ami-5",
                "2025-01-06T00:00:00.000Z",
                ImageState::Available,
                &[(TAG_FINGERPRINT, "abd")],
            ),
        ];
        let f = choose(&images, "abc").expect("found");
        assert_eq!(f.id, "ami-2");
        assert_eq!(f.created, "2025-01-03T00:00:00.000Z");
        assert_eq!(choose(&images, "zzz"), None);
        assert_eq!(choose(&[], "abc"), None);
    }
}
