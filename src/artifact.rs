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
    /// The AMIs existed already and nothing was built (`-skip-unchanged`, `reuse_unchanged`):
    /// the summary says "reused", not "created".
    pub reused: bool,
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

    /// Packer's `String()`: `AMIs were created:\n<region>: <ami>\n...` (the `-machine-readable`
    /// `string` record, whatever the AMIs' history: Packer's consumers parse it as it is).
    pub fn describe(&self) -> String {
        if self.null {
            return NULL_ARTIFACT_STRING.to_string();
        }
        Artifact::listing(false, self.amis.iter())
    }

    /// The words for people: like [`Artifact::describe`], but a reused AMI is "reused".
    pub fn describe_human(&self) -> String {
        if self.null {
            return NULL_ARTIFACT_STRING.to_string();
        }
        Artifact::listing(self.reused, self.amis.iter())
    }

    /// `AMIs were created:` (or `reused:`), then a `<region>: <ami>` line for each pair.
    pub fn listing<'a>(
        reused: bool,
        amis: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> String {
        let verb = if reused { "reused" } else { "created" };
        let mut s = format!("AMIs were {verb}:\n");
        for (r, a) in amis {
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
        assert_eq!(n.describe_human(), NULL_ARTIFACT_STRING);
    }

    #[test]
    fn a_reused_ami_is_reused_for_people_and_packers_string_for_machines() {
        let a = Artifact {
            amis: [("us-east-1".to_string(), "ami-e".to_string())].into(),
            reused: true,
            ..Artifact::default()
        };
        assert_eq!(a.describe_human(), "AMIs were reused:\nus-east-1: ami-e\n");
        assert_eq!(a.describe(), "AMIs were created:\nus-east-1: ami-e\n");
        let built = Artifact {
            reused: false,
            ..a.clone()
        };
        assert_eq!(built.describe_human(), built.describe());
    }
}
