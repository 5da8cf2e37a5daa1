//! What a build produces, for the post-processors and the summary: the AMI in each region and
//! the build's generated data, or the null builder's "nothing". It lives below the builders, the
//! post-processors and the orchestrator, which all pass it along.

use std::collections::BTreeMap;

/// Packer's builder id of amazon-ebs artifacts (`-machine-readable` `builder-id` records).
pub const AMAZON_EBS_BUILDER_ID: &str = "mitchellh.amazonebs";
/// Packer's builder id of the null builder's artifact (`-machine-readable` `builder-id`).
pub const NULL_BUILDER_ID: &str = "fnoeding.null";
/// Packer's `NullArtifact.Id()`.
pub const NULL_ARTIFACT_ID: &str = "Null";
/// Packer's `NullArtifact.String()`.
pub const NULL_ARTIFACT_STRING: &str = "Did not export anything. This is the null builder";

/// The result: the AMI in each region, and the build's generated data (`SourceAMI`,
/// `BuildRegion`, ...) that post-processors render `{{ build `...` }}` against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    pub amis: BTreeMap<String, String>,
    pub build_data: BTreeMap<String, String>,
    /// The null builder's artifact (Packer's `NullArtifact`): no image at all, id `Null`.
    pub null: bool,
}

impl Artifact {
    /// What the null builder produces (with its build data, for post-processors).
    pub fn null(build_data: BTreeMap<String, String>) -> Artifact {
        Artifact {
            build_data,
            null: true,
            ..Artifact::default()
        }
    }

    /// Packer's builder id of the artifact (`-machine-readable` `builder-id` records).
    pub fn builder_id(&self) -> &'static str {
        if self.null {
            NULL_BUILDER_ID
        } else {
            AMAZON_EBS_BUILDER_ID
        }
    }

    /// Packer's `Id()`: `region:ami` pairs sorted by region, joined by `,` (`Null` for the null
    /// builder).
    pub fn id(&self) -> String {
        if self.null {
            return NULL_ARTIFACT_ID.to_string();
        }
        let pairs: Vec<String> = self.amis.iter().map(|(r, a)| format!("{r}:{a}")).collect();
        pairs.join(",")
    }

    /// Packer's `String()`: `AMIs were created:\n<region>: <ami>\n...`.
    pub fn describe(&self) -> String {
        if self.null {
            return NULL_ARTIFACT_STRING.to_string();
        }
        let mut s = String::from("AMIs were created:\n");
        for (r, a) in &self.amis {
            s.push_str(&format!("{r}: {a}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_and_text_are_packers() {
        let a = Artifact {
            amis: [("us-west-2", "ami-w"), ("us-east-1", "ami-e")]
                .iter()
                .map(|(r, a)| (r.to_string(), a.to_string()))
                .collect(),
            ..Artifact::default()
        };
        assert_eq!(a.id(), "us-east-1:ami-e,us-west-2:ami-w");
        assert_eq!(
            a.describe(),
            "AMIs were created:\nus-east-1: ami-e\nus-west-2: ami-w\n"
        );
        assert_eq!(a.builder_id(), "mitchellh.amazonebs");
        let n = Artifact::null(BTreeMap::new());
        assert_eq!((n.id().as_str(), n.builder_id()), ("Null", "fnoeding.null"));
        assert_eq!(n.describe(), NULL_ARTIFACT_STRING);
    }
}
