//! Pure decisions of the amazon-ebs builder, kept apart from the API calls so they can be tested
//! alone: which source image, which address to connect to, who may reach the communicator port,
//! and the build data rendered into names and tags.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Image;

use super::config::{AmazonEbsConfig, SourceAmiFilter, SshInterface};
use crate::communicator::ssh::Communicator;

/// The source image chosen by `source_ami`/`source_ami_filter`, or why none could be.
pub fn choose_source<'a>(
    images: &'a [Image],
    filter: Option<&SourceAmiFilter>,
    region: &str,
) -> Result<&'a Image, String> {
    let describe = || {
        let mut parts = Vec::new();
        if let Some(f) = filter {
            for (k, v) in &f.filters {
                parts.push(format!("{k}={v}"));
            }
            if !f.owners.is_empty() {
                parts.push(format!("owners={}", f.owners.join(",")));
            }
        }
        parts.join(", ")
    };
    match images {
        [] => Err(format!(
            "source_ami_filter matched no image in {region} (filters: {})",
            describe()
        )),
        [one] => Ok(one),
        many => {
            if filter.is_some_and(|f| f.most_recent) {
                // Creation dates are ISO 8601 UTC, so text order is time order; ties keep the
                // first image EC2 listed.
                let mut best = &many[0];
                for i in &many[1..] {
                    if i.creation_date().unwrap_or_default()
                        > best.creation_date().unwrap_or_default()
                    {
                        best = i;
                    }
                }
                return Ok(best);
            }
            let mut sorted: Vec<&Image> = many.iter().collect();
            sorted.sort_by(|a, b| b.creation_date().cmp(&a.creation_date()));
            let mut list: Vec<String> = sorted
                .iter()
                .take(10)
                .map(|i| {
                    format!(
                        "  {} {} (created {})",
                        i.image_id().unwrap_or("?"),
                        i.name().unwrap_or("(no name)"),
                        i.creation_date().unwrap_or("?")
                    )
                })
                .collect();
            if many.len() > 10 {
                list.push(format!("  ... and {} more", many.len() - 10));
            }
            Err(format!(
                "source_ami_filter matched {} images in {region} (filters: {}) and most_recent is not set:\n{}\nset \"most_recent\": true to take the newest, or narrow the filters",
                many.len(),
                describe(),
                list.join("\n")
            ))
        }
    }
}

/// The addresses of a running instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub public_dns: Option<String>,
    pub private_dns: Option<String>,
    pub in_vpc: bool,
}

/// The address to connect to: `ssh_host` wins; then `ssh_interface`; else Packer's rule: in a VPC
/// the public IP, falling back to the private IP (on the last try, `last`), outside a VPC the
/// public DNS name. `None`: not known yet (ask again).
pub fn select_host(
    ssh_host: Option<&str>,
    interface: Option<SshInterface>,
    a: &Addresses,
    last: bool,
) -> Option<String> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if let Some(h) = ssh_host.filter(|h| !h.is_empty()) {
        return Some(h.to_string());
    }
    match interface {
        Some(SshInterface::PublicIp) => nonempty(&a.public_ip),
        Some(SshInterface::PrivateIp) => nonempty(&a.private_ip),
        Some(SshInterface::PublicDns) => nonempty(&a.public_dns),
        Some(SshInterface::PrivateDns) => nonempty(&a.private_dns),
        None if a.in_vpc => {
            nonempty(&a.public_ip).or_else(|| if last { nonempty(&a.private_ip) } else { None })
        }
        None => nonempty(&a.public_dns),
    }
}

/// Who may reach the communicator port through the temporary security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingress {
    /// No rule at all (`communicator: none`: nothing connects).
    Nothing,
    /// These CIDR blocks (`temporary_security_group_source_cidrs`).
    Cidrs(Vec<String>),
    /// The CIDR blocks of the instance's VPC: the default when the connection goes through
    /// `ssh_host`, a bastion or a private address.
    Vpc,
    /// Only this machine's public address (/32 or /128), looked up before anything is created:
    /// `temporary_security_group_source_public_ip`, and the default when SSH goes to the
    /// instance's public address.
    PublicIp,
}

/// imgbuild's rule for the temporary security group (Packer opens 0.0.0.0/0 by default), or
/// `None` when the template names its own groups (no temporary group):
/// - the configured `temporary_security_group_source_cidrs`, always (a warning says when they
///   include the whole internet);
/// - `communicator: none`: no rule;
/// - `temporary_security_group_source_public_ip: true`: this machine's public address;
/// - SSH through `ssh_host`, `ssh_bastion_host` or a private interface: the VPC's own CIDR
///   blocks, never the internet;
/// - SSH to the instance's public address with nothing else given: this machine's public
///   address (a CI runner's address need not be known in advance).
pub fn ingress(cfg: &AmazonEbsConfig) -> Option<Ingress> {
    if !cfg.run.security_group_ids.is_empty() || cfg.run.security_group_filter.is_some() {
        return None;
    }
    if let Some(c) = &cfg.run.temporary_security_group_source_cidrs {
        return Some(Ingress::Cidrs(c.clone()));
    }
    if cfg.ssh.communicator == Communicator::None {
        return Some(Ingress::Nothing);
    }
    if cfg.run.temporary_security_group_source_public_ip {
        return Some(Ingress::PublicIp);
    }
    let private = matches!(
        cfg.ssh_interface,
        Some(SshInterface::PrivateIp | SshInterface::PrivateDns)
    );
    if cfg.ssh.ssh_host.is_some() || cfg.ssh.ssh_bastion.is_some() || private {
        return Some(Ingress::Vpc);
    }
    Some(Ingress::PublicIp)
}

/// True when a CIDR block lets everyone in.
pub fn is_open_world(cidr: &str) -> bool {
    matches!(cidr.trim(), "0.0.0.0/0" | "::/0")
}

/// The build template data of the source image (`{{ .SourceAMI }}` ...), as fields and as
/// `{{ build `...` }}` values.
pub fn source_fields(image: &Image, region: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Option<&str>| {
        m.insert(k.to_string(), v.unwrap_or_default().to_string());
    };
    put("BuildRegion", Some(region));
    put("SourceAMI", image.image_id());
    put("SourceAMIName", image.name());
    put("SourceAMICreationDate", image.creation_date());
    put("SourceAMIOwner", image.owner_id());
    put("SourceAMIOwnerName", image.image_owner_alias());
    m
}

/// Renders the keys and values of a tag map with `render` (which knows the build data); an error
/// names the tag.
pub fn render_tags(
    tags: &BTreeMap<String, String>,
    render: impl Fn(&str) -> Result<String, String>,
) -> Result<BTreeMap<String, String>, (String, String)> {
    let mut out = BTreeMap::new();
    for (k, v) in tags {
        let key = render(k).map_err(|e| (k.clone(), e))?;
        let value = render(v).map_err(|e| (k.clone(), e))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// The build's tags added to everything it creates, so that `imgbuild cleanup` can find them.
pub const TAG_RUN_ID: &str = "imgbuild:run-id";
pub const TAG_BUILD: &str = "imgbuild:build";
/// On images and snapshots until the build delivers them (removed on success): `imgbuild cleanup`
/// removes an image or snapshot it finds by tag alone, without a journal, only when it has this.
pub const TAG_TEMPORARY: &str = "imgbuild:temporary";

/// Checks an AMI name rendered at build time as Packer does (3-128 characters of
/// `A-Za-z0-9()[] ./-'@_`).
pub fn check_ami_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(3..=128).contains(&len) {
        return Err(format!(
            "ami_name must be between 3 and 128 characters long, \"{name}\" has {len}"
        ));
    }
    let bad: Vec<char> = name
        .chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "ami_name \"{name}\" has characters EC2 refuses: {}; pipe build values through `clean_resource_name`",
            bad.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, name: &str, date: &str) -> Image {
        Image::builder()
            .image_id(id)
            .name(name)
            .creation_date(date)
            .build()
    }

    fn filter(most_recent: bool) -> SourceAmiFilter {
        SourceAmiFilter {
            filters: [("name".to_string(), "ubuntu/*".to_string())].into(),
            owners: vec!["099720109477".into()],
            most_recent,
        }
    }

    #[test]
    fn source_filter_errors_list_what_matched() {
        let none = choose_source(&[], Some(&filter(true)), "us-east-1").unwrap_err();
        assert_eq!(
            none,
            "source_ami_filter matched no image in us-east-1 (filters: name=ubuntu/*, owners=099720109477)"
        );
        let imgs = vec![
            img("ami-1", "old", "2020-01-01T00:00:00.000Z"),
            img("ami-2", "new", "2021-01-01T00:00:00.000Z"),
        ];
        let many = choose_source(&imgs, Some(&filter(false)), "us-east-1").unwrap_err();
        assert_eq!(
            many,
            "source_ami_filter matched 2 images in us-east-1 (filters: name=ubuntu/*, owners=099720109477) and most_recent is not set:\n  ami-2 new (created 2021-01-01T00:00:00.000Z)\n  ami-1 old (created 2020-01-01T00:00:00.000Z)\nset \"most_recent\": true to take the newest, or narrow the filters"
        );
        let newest = choose_source(&imgs, Some(&filter(true)), "us-east-1").unwrap();
        assert_eq!(newest.image_id(), Some("ami-2"));
        let one = choose_source(&imgs[..1], None, "r").unwrap();
        assert_eq!(one.image_id(), Some("ami-1"));
    }

    #[test]
    fn host_selection_follows_packer() {
        let a = Addresses {
            public_ip: Some("54.1.2.3".into()),
            private_ip: Some("10.0.0.5".into()),
            public_dns: Some("ec2-54-1-2-3.compute.amazonaws.com".into()),
            private_dns: Some("ip-10-0-0-5.ec2.internal".into()),
            in_vpc: true,
        };
        assert_eq!(
            select_host(Some("127.0.0.1"), Some(SshInterface::PublicIp), &a, false).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            select_host(None, None, &a, false).as_deref(),
            Some("54.1.2.3")
        );
        assert_eq!(
            select_host(None, Some(SshInterface::PrivateDns), &a, false).as_deref(),
            Some("ip-10-0-0-5.ec2.internal")
        );
        assert_eq!(
            select_host(None, Some(SshInterface::PrivateIp), &a, false).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            select_host(None, Some(SshInterface::PublicDns), &a, false).as_deref(),
            Some("ec2-54-1-2-3.compute.amazonaws.com")
        );
        let private_only = Addresses {
            public_ip: None,
            public_dns: Some(String::new()),
            ..a.clone()
        };
        assert_eq!(select_host(None, None, &private_only, false), None);
        assert_eq!(
            select_host(None, None, &private_only, true).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            select_host(None, Some(SshInterface::PublicDns), &private_only, true),
            None
        );
        let classic = Addresses { in_vpc: false, ..a };
        assert_eq!(
            select_host(Some(""), None, &classic, false).as_deref(),
            Some("ec2-54-1-2-3.compute.amazonaws.com")
        );
    }

    fn cfg(extra: &str) -> AmazonEbsConfig {
        let text = format!(
            r#"{{"ami_name": "web", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"{extra}}}"#
        );
        let (c, d) = crate::checks::testing::decode(&text, AmazonEbsConfig::decode);
        assert!(!d.has_errors(), "{d:?}");
        c
    }

    #[test]
    fn the_temporary_group_never_opens_the_internet_unless_told() {
        assert_eq!(
            ingress(&cfg(
                r#", "temporary_security_group_source_cidrs": ["0.0.0.0/0"]"#
            )),
            Some(Ingress::Cidrs(vec!["0.0.0.0/0".into()]))
        );
        assert_eq!(
            ingress(&cfg(r#", "communicator": "none""#)),
            Some(Ingress::Nothing)
        );
        assert_eq!(
            ingress(&cfg(r#", "ssh_host": "10.1.2.3""#)),
            Some(Ingress::Vpc)
        );
        assert_eq!(
            ingress(&cfg(r#", "ssh_interface": "private_ip""#)),
            Some(Ingress::Vpc)
        );
        assert_eq!(
            ingress(&cfg(r#", "ssh_interface": "private_dns""#)),
            Some(Ingress::Vpc)
        );
        assert_eq!(
            ingress(&cfg(
                r#", "ssh_bastion_host": "bastion.example", "ssh_bastion_agent_auth": true"#
            )),
            Some(Ingress::Vpc)
        );
        assert_eq!(ingress(&cfg(r#", "security_group_id": "sg-1""#)), None);
        assert_eq!(
            ingress(&cfg(
                r#", "security_group_filter": {"filters": {"tag:Class": "packer"}}"#
            )),
            None
        );
    }

    #[test]
    fn ssh_to_the_public_address_allows_only_this_machines_address() {
        // The default: nothing says who connects, and SSH goes to the public address.
        assert_eq!(
            ingress(&cfg(r#", "ssh_port": 2222"#)),
            Some(Ingress::PublicIp)
        );
        assert_eq!(
            ingress(&cfg(r#", "ssh_interface": "public_dns""#)),
            Some(Ingress::PublicIp)
        );
        assert_eq!(
            ingress(&cfg(r#", "ssh_interface": "public_ip""#)),
            Some(Ingress::PublicIp)
        );
        // Asked for explicitly: it wins over the VPC default of ssh_host.
        assert_eq!(
            ingress(&cfg(
                r#", "ssh_host": "127.0.0.1", "temporary_security_group_source_public_ip": true"#
            )),
            Some(Ingress::PublicIp)
        );
        // Not when CIDRs, groups or nothing to connect are given.
        assert_ne!(
            ingress(&cfg(
                r#", "temporary_security_group_source_cidrs": ["203.0.113.7/32"]"#
            )),
            Some(Ingress::PublicIp)
        );
        assert_eq!(
            ingress(&cfg(
                r#", "security_group_ids": ["sg-1"], "temporary_security_group_source_public_ip": true"#
            )),
            None
        );
    }

    #[test]
    fn tags_render_build_values_and_name_the_tag_that_fails() {
        use crate::template::funcs::{Clock, Engine, Phase, Scope};
        let engine = Engine::new(Clock::now());
        let user = BTreeMap::from([("team".to_string(), "web".to_string())]);
        let image = img(
            "ami-785db401",
            "ubuntu/xenial:1",
            "2017-07-21T00:00:00.000Z",
        );
        let mut data = source_fields(&image, "us-east-1");
        data.insert("ID".into(), "i-1".into());
        let scope = Scope {
            phase: Phase::Build,
            user: &user,
            template_dir: "/t",
            build_name: Some("b"),
            build_type: Some("amazon-ebs"),
            build: Some(&data),
            fields: Some(&data),
        };
        let render = |src: &str| engine.render(src, &scope).map_err(|e| e.message);
        let tags = BTreeMap::from([
            ("SourceAMI".to_string(), "{{ .SourceAMI }}".to_string()),
            ("Region".to_string(), "{{ .BuildRegion }}".to_string()),
            (
                "Base".to_string(),
                "{{ .SourceAMIName | clean_resource_name }}".to_string(),
            ),
            (
                "{{user `team`}}-owner".to_string(),
                "{{build `ID`}}".to_string(),
            ),
        ]);
        let out = render_tags(&tags, render).unwrap();
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            vec![
                ("Base".to_string(), "ubuntu/xenial-1".to_string()),
                ("Region".to_string(), "us-east-1".to_string()),
                ("SourceAMI".to_string(), "ami-785db401".to_string()),
                ("web-owner".to_string(), "i-1".to_string()),
            ]
        );
        let bad = BTreeMap::from([("X".to_string(), "{{ .NoSuchField }}".to_string())]);
        let (key, message) = render_tags(&bad, render).unwrap_err();
        assert_eq!(key, "X");
        assert!(message.contains("NoSuchField"), "{message}");
    }

    #[test]
    fn ami_names_are_checked_after_rendering() {
        assert!(check_ami_name("web 2024-01-01 (v1)").is_ok());
        assert_eq!(
            check_ami_name("ab").unwrap_err(),
            "ami_name must be between 3 and 128 characters long, \"ab\" has 2"
        );
        assert!(check_ami_name("web:1*").unwrap_err().contains("':', '*'"));
        assert!(
            is_open_world("0.0.0.0/0") && is_open_world("::/0") && !is_open_world("10.0.0.0/8")
        );
    }
}
