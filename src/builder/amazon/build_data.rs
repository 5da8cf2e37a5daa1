//! The build's generated data (Packer's `{{ build `Key` }}` values: `SourceAMI`, `BuildRegion`,
//! `ID`, `Host`, ...), typed as the steps learn it; rendered to the string map that templates
//! and the artifact's `build_data` use only when a template is rendered or the build ends.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Image;

use super::ids::{ImageId, InstanceId, Region};
use crate::communicator::ssh::Communicator;

/// What the build knows so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildData {
    /// `BuildRegion`.
    pub region: Region,
    /// `SourceAMI` and the rest of the source image's fields.
    pub source: Source,
    /// `PackerRunUUID`: the run id.
    pub run_uuid: String,
    /// `ConnType`: `ssh` or `none`.
    pub conn_type: &'static str,
    /// `SSHPublicKey`: the temporary key pair's public key, once imported.
    pub ssh_public_key: Option<String>,
    /// `ID`, `Host`, `Port`, `User`: once the instance runs.
    pub connection: Option<Connection>,
}

/// The source image's fields (`SourceAMI*`; empty when EC2 did not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ami: ImageId,
    pub name: String,
    pub creation_date: String,
    pub owner: String,
    pub owner_name: String,
}

/// Where the communicator connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub instance: InstanceId,
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl BuildData {
    /// The data known once the source image is chosen.
    pub fn new(image: &Image, region: &str, run_id: &str, communicator: Communicator) -> BuildData {
        let s = |v: Option<&str>| v.unwrap_or_default().to_string();
        BuildData {
            region: Region::from(region),
            source: Source {
                ami: ImageId(s(image.image_id())),
                name: s(image.name()),
                creation_date: s(image.creation_date()),
                owner: s(image.owner_id()),
                owner_name: s(image.image_owner_alias()),
            },
            run_uuid: run_id.to_string(),
            conn_type: match communicator {
                Communicator::Ssh => "ssh",
                Communicator::None => "none",
            },
            ssh_public_key: None,
            connection: None,
        }
    }

    /// The `{{ build `Key` }}` map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_string(), v.to_string());
        };
        put("BuildRegion", self.region.as_str());
        put("SourceAMI", self.source.ami.as_str());
        put("SourceAMIName", &self.source.name);
        put("SourceAMICreationDate", &self.source.creation_date);
        put("SourceAMIOwner", &self.source.owner);
        put("SourceAMIOwnerName", &self.source.owner_name);
        put("PackerRunUUID", &self.run_uuid);
        put("ConnType", self.conn_type);
        if let Some(k) = &self.ssh_public_key {
            put("SSHPublicKey", k);
        }
        if let Some(c) = &self.connection {
            put("ID", c.instance.as_str());
            put("Host", &c.host);
            put("Port", &c.port.to_string());
            put("User", &c.user);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::amazon::plan;

    #[test]
    fn the_map_has_packers_keys_as_the_build_learns_them() {
        let image = Image::builder()
            .image_id("ami-src")
            .name("base")
            .owner_id("099720109477")
            .build();
        let mut data = BuildData::new(&image, "us-east-1", "run-1", Communicator::Ssh);
        let mut expected = plan::source_fields(&image, "us-east-1");
        expected.insert("PackerRunUUID".into(), "run-1".into());
        expected.insert("ConnType".into(), "ssh".into());
        assert_eq!(data.to_map(), expected);

        data.ssh_public_key = Some("ssh-ed25519 AAAA".into());
        data.connection = Some(Connection {
            instance: InstanceId::from("i-1"),
            host: "10.0.0.5".into(),
            port: 22,
            user: "ubuntu".into(),
        });
        for (k, v) in [
            ("SSHPublicKey", "ssh-ed25519 AAAA"),
            ("ID", "i-1"),
            ("Host", "10.0.0.5"),
            ("Port", "22"),
            ("User", "ubuntu"),
        ] {
            expected.insert(k.into(), v.into());
        }
        assert_eq!(data.to_map(), expected);
    }
}
