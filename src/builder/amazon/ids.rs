//! ID newtypes of the EC2 resources a build passes from step to step, so that a step's signature
//! says which resource it takes (an instance, not an image) and a string cannot be swapped for
//! another by accident.

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_string())
            }
        }
    };
}

id!(
    /// An EC2 instance (`i-...`).
    InstanceId
);
id!(
    /// An AMI (`ami-...`).
    ImageId
);
id!(
    /// An EBS snapshot (`snap-...`).
    SnapshotId
);
id!(
    /// A key pair, by its name (EC2 addresses key pairs by name).
    KeyPairName
);
id!(
    /// A security group (`sg-...`).
    SecurityGroupId
);
id!(
    /// An AWS region (`us-east-1`).
    Region
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_the_bare_id() {
        let i = InstanceId::from("i-123");
        assert_eq!(i.to_string(), "i-123");
        assert_eq!(i.as_str(), "i-123");
        assert_eq!(Region::from("eu-west-1").to_string(), "eu-west-1");
    }
}
