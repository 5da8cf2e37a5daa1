//! Step 5: the security groups (Packer's `StepSecurityGroup`): the template's groups (by ID or
//! filter), or a temporary group that lets the communicator port in from the allowed CIDR
//! blocks, recorded in the ledger.

use aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressInput;
use aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupInput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsInput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsInput;
use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, ResourceType};

use super::network::Net;
use super::{filter, filters, tag_spec, Env};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::{required, BuildError};
use crate::builder::amazon::ids::SecurityGroupId;
use crate::builder::amazon::plan::Ingress;
use crate::builder::amazon::public_ip;
use crate::ledger::Undo;

/// The groups to launch in: a temporary one when `ingress` is given (the template names no
/// group), else the template's.
pub async fn security_groups(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    net: &Net,
    ingress: Option<Ingress>,
) -> Result<Vec<SecurityGroupId>, BuildError> {
    match ingress {
        Some(i) => Ok(vec![temporary_group(env, ec2, region, net, i).await?]),
        None => existing_groups(env, ec2, region, net).await,
    }
}

/// This machine's public address (/32 or /128) as the temporary group's only source: asked of
/// `temporary_security_group_source_public_ip_url`, else `url_env` (`IMGBUILD_PUBLIC_IP_URL`),
/// else Packer's default URL. Called while planning, before anything is created; the output says
/// which address is allowed.
pub async fn public_address(
    env: &Env<'_>,
    region: &str,
    url_env: Option<String>,
) -> Result<Ingress, BuildError> {
    let cfg = env.cfg;
    let url = public_ip::lookup_url(
        cfg.run
            .temporary_security_group_source_public_ip_url
            .as_deref(),
        url_env,
    );
    env.say(format!(
        "Looking up this machine's public address at {url}..."
    ));
    let ip = env
        .c(public_ip::lookup(&url))
        .await?
        .map_err(|problem| BuildError::PublicIp {
            url: url.clone(),
            region: region.to_string(),
            problem,
        })?;
    let cidr = public_ip::single_host_cidr(ip);
    env.say(format!(
        "The temporary security group will allow only this machine's public address, {cidr} (answered by {url}), to reach port {}",
        cfg.ssh.ssh_port
    ));
    Ok(Ingress::Cidrs(vec![cidr]))
}

/// Creates the temporary group (recorded at once) and its inbound rule.
pub async fn temporary_group(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    net: &Net,
    ingress: Ingress,
) -> Result<SecurityGroupId, BuildError> {
    let name = format!("packer_{}", uuid::Uuid::now_v7());
    let cidrs = match &ingress {
        Ingress::Nothing => Vec::new(),
        Ingress::Cidrs(c) => c.clone(),
        // Ctx::plan turns it into the looked-up address before anything is created.
        Ingress::PublicIp => return Err(BuildError::Network { region: region.to_string(), what: "temporary security group", message: "this machine's public address was not looked up".into() }),
        Ingress::Vpc => match &net.vpc_id {
            Some(v) => vpc_cidrs(env, ec2, region, v).await?,
            None => return Err(BuildError::Network { region: region.to_string(), what: "temporary security group", message: "no VPC to take the allowed CIDR blocks from; set temporary_security_group_source_cidrs".into() }),
        },
    };
    env.say(format!(
        "Creating a temporary security group {name}{}",
        if cidrs.is_empty() {
            " with no inbound rule (communicator none)".to_string()
        } else {
            format!(
                " allowing port {} from {}",
                env.cfg.ssh.ssh_port,
                cidrs.join(", ")
            )
        }
    ));
    env.check_cancel()?;
    let req = CreateSecurityGroupInput::builder()
        .group_name(&name)
        .description(format!(
            "Temporary group for imgbuild build {} (run {})",
            env.name, env.run_id
        ))
        .set_vpc_id(net.vpc_id.clone())
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &env.run_tags()));
    let id = match ec2.create_security_group(req).await {
        Ok(out) => required(out.group_id(), "CreateSecurityGroup", "GroupId", region)?,
        // A retry after a lost answer: the name is this run's own (a fresh UUID).
        Err(e) if e.code_is("InvalidGroup.Duplicate") => {
            group_by_name(ec2, &name, net.vpc_id.as_deref())
                .await
                .ok_or(BuildError::CreateSecurityGroup {
                    region: region.to_string(),
                    source: e,
                })?
        }
        Err(source) => {
            return Err(BuildError::CreateSecurityGroup {
                region: region.to_string(),
                source,
            })
        }
    };
    env.record(
        Undo::DeleteSecurityGroup {
            region: region.to_string(),
            id: id.clone(),
        },
        None,
    )?;
    if !cidrs.is_empty() {
        authorize(env, ec2, region, &id, &cidrs).await?;
    }
    Ok(SecurityGroupId(id))
}

/// Lets the communicator port in from `cidrs`.
async fn authorize(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &str,
    cidrs: &[String],
) -> Result<(), BuildError> {
    let port = i32::from(env.cfg.ssh.ssh_port);
    let mut perm = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port);
    for c in cidrs {
        if c.contains(':') {
            perm = perm.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
        } else {
            perm = perm.ip_ranges(IpRange::builder().cidr_ip(c).build());
        }
    }
    let req = AuthorizeSecurityGroupIngressInput::builder()
        .group_id(id)
        .ip_permissions(perm.build());
    match ec2.authorize_security_group_ingress(req).await {
        // A retry after a lost answer: the first try added the rule.
        Err(e) if !e.code_is("InvalidPermission.Duplicate") => {
            Err(BuildError::AuthorizeSecurityGroupIngress {
                region: region.to_string(),
                id: id.to_string(),
                source: e,
            })
        }
        _ => Ok(()),
    }
}

/// The CIDR blocks (IPv4 and IPv6) of a VPC.
async fn vpc_cidrs(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    vpc: &str,
) -> Result<Vec<String>, BuildError> {
    let req = DescribeVpcsInput::builder().vpc_ids(vpc);
    let out = env
        .c(ec2.describe_vpcs(req))
        .await?
        .map_err(|source| BuildError::DescribeVpcs {
            region: region.to_string(),
            source,
        })?;
    let mut cidrs = Vec::new();
    for v in out.vpcs() {
        if let Some(c) = v.cidr_block() {
            cidrs.push(c.to_string());
        }
        for a in v.cidr_block_association_set() {
            if let Some(c) = a.cidr_block() {
                if !cidrs.iter().any(|x| x == c) {
                    cidrs.push(c.to_string());
                }
            }
        }
        for a in v.ipv6_cidr_block_association_set() {
            if let Some(c) = a.ipv6_cidr_block() {
                cidrs.push(c.to_string());
            }
        }
    }
    if cidrs.is_empty() {
        return Err(BuildError::MissingField {
            call: "DescribeVpcs",
            field: "CidrBlock",
            region: region.to_string(),
        });
    }
    Ok(cidrs)
}

/// The template's groups: `security_group_ids`, or those `security_group_filter` matches.
async fn existing_groups(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    net: &Net,
) -> Result<Vec<SecurityGroupId>, BuildError> {
    let run = &env.cfg.run;
    if !run.security_group_ids.is_empty() {
        return Ok(run
            .security_group_ids
            .iter()
            .map(|g| SecurityGroupId(g.clone()))
            .collect());
    }
    let Some(f) = &run.security_group_filter else {
        return Ok(Vec::new());
    };
    let mut fs = filters(&f.filters);
    if let Some(v) = &net.vpc_id {
        fs.push(filter("vpc-id", v));
    }
    let req = DescribeSecurityGroupsInput::builder().set_filters(Some(fs));
    let out = env
        .c(ec2.describe_security_groups(req))
        .await?
        .map_err(|source| BuildError::DescribeSecurityGroups {
            region: region.to_string(),
            source,
        })?;
    let ids: Vec<SecurityGroupId> = out
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .map(SecurityGroupId::from)
        .collect();
    if ids.is_empty() {
        return Err(BuildError::Network {
            region: region.to_string(),
            what: "security_group_filter",
            message: "no security group matches".into(),
        });
    }
    Ok(ids)
}

/// The ID of the security group `name` (in `vpc`), if exactly one exists.
async fn group_by_name(ec2: &impl Ec2, name: &str, vpc: Option<&str>) -> Option<String> {
    let mut req = DescribeSecurityGroupsInput::builder().filters(filter("group-name", name));
    if let Some(v) = vpc {
        req = req.filters(filter("vpc-id", v));
    }
    let out = ec2.describe_security_groups(req).await.ok()?;
    match out.security_groups() {
        [g] => g.group_id().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::authorize_security_group_ingress::builders::AuthorizeSecurityGroupIngressInputBuilder;
    use aws_sdk_ec2::operation::create_security_group::builders::CreateSecurityGroupInputBuilder;
    use aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupOutput;
    use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
    use aws_sdk_ec2::types::SecurityGroup;

    fn net() -> Net {
        Net {
            vpc_id: Some("vpc-1".into()),
            ..Net::default()
        }
    }

    fn delete(id: &str) -> Undo {
        Undo::DeleteSecurityGroup {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_temporary_group_is_created_recorded_and_opened_to_the_cidrs() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "create_security_group",
            Ok(CreateSecurityGroupOutput::builder()
                .group_id("sg-1")
                .build()),
        );
        let cidrs = Ingress::Cidrs(vec!["10.0.0.0/8".into(), "2001:db8::/32".into()]);
        let groups = security_groups(&w.env(), &ec2, "us-east-1", &net(), Some(cidrs))
            .await
            .unwrap();
        assert_eq!(groups, vec![SecurityGroupId::from("sg-1")]);
        assert_eq!(
            ec2.calls(),
            [
                "us-east-1 create_security_group",
                "us-east-1 authorize_security_group_ingress"
            ]
        );
        let create: Vec<CreateSecurityGroupInputBuilder> = ec2.sent("create_security_group");
        assert_eq!(create[0].get_vpc_id().as_deref(), Some("vpc-1"));
        assert!(create[0]
            .get_group_name()
            .as_deref()
            .is_some_and(|n| n.starts_with("packer_")));
        let rule: Vec<AuthorizeSecurityGroupIngressInputBuilder> =
            ec2.sent("authorize_security_group_ingress");
        let perm = &rule[0].get_ip_permissions().clone().unwrap()[0];
        assert_eq!(perm.from_port(), Some(22));
        assert_eq!(perm.ip_ranges()[0].cidr_ip(), Some("10.0.0.0/8"));
        assert_eq!(perm.ipv6_ranges()[0].cidr_ipv6(), Some("2001:db8::/32"));
        assert_eq!(w.undos(), vec![delete("sg-1")]);
    }

    #[tokio::test]
    async fn a_lost_answer_then_duplicate_is_resolved_by_name() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("create_security_group", "InvalidGroup.Duplicate");
        ec2.answer(
            "describe_security_groups",
            Ok(DescribeSecurityGroupsOutput::builder()
                .security_groups(SecurityGroup::builder().group_id("sg-first").build())
                .build()),
        );
        ec2.fail(
            "authorize_security_group_ingress",
            "InvalidPermission.Duplicate",
        );
        let id = temporary_group(
            &w.env(),
            &ec2,
            "us-east-1",
            &net(),
            Ingress::Cidrs(vec!["10.0.0.0/8".into()]),
        )
        .await
        .unwrap();
        assert_eq!(id, SecurityGroupId::from("sg-first"));
        assert_eq!(w.undos(), vec![delete("sg-first")]);
    }

    #[tokio::test]
    async fn a_duplicate_without_a_group_of_that_name_fails_unrecorded() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("create_security_group", "InvalidGroup.Duplicate");
        let e = temporary_group(&w.env(), &ec2, "us-east-1", &net(), Ingress::Nothing)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CreateSecurityGroup in us-east-1: InvalidGroup.Duplicate: InvalidGroup.Duplicate (scripted)"
        );
        assert!(w.undos().is_empty());
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `answer`; its URL.
    async fn answering(answer: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ip", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                answer.len()
            );
            let _ = s.write_all(format!("{head}{answer}").as_bytes()).await;
        });
        url
    }

    #[tokio::test]
    async fn the_public_address_is_the_only_source_and_the_templates_url_wins() {
        let url = answering("2001:db8::7\n").await;
        let w = World::with(&format!(
            r#""temporary_security_group_source_public_ip": true, "temporary_security_group_source_public_ip_url": "{url}""#
        ));
        let i = public_address(&w.env(), "us-east-1", Some("http://127.0.0.1:9/".into()))
            .await
            .unwrap();
        assert_eq!(i, Ingress::Cidrs(vec!["2001:db8::7/128".into()]));
        let url = answering("198.51.100.7\n").await;
        let w = World::with("");
        let i = public_address(&w.env(), "us-east-1", Some(url))
            .await
            .unwrap();
        assert_eq!(i, Ingress::Cidrs(vec!["198.51.100.7/32".into()]));
    }

    #[tokio::test]
    async fn an_answer_that_is_no_address_fails_naming_the_url_the_answer_and_the_ways_out() {
        let url = answering("<html>rate limited</html>").await;
        let w = World::with("");
        let e = public_address(&w.env(), "eu-west-1", Some(url.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("looking up this machine's public address at {url} (for the temporary security group in eu-west-1): the answer \"<html>rate limited</html>\" is not an IP address; nothing was created. Instead: set \"temporary_security_group_source_cidrs\" to the address(es) imgbuild connects from (e.g. [\"203.0.113.7/32\"]), connect through \"ssh_bastion_host\", or give \"security_group_id(s)\"")
        );
        assert!(w.undos().is_empty());
    }

    #[tokio::test]
    async fn the_templates_groups_are_used_as_they_are() {
        let w = World::with(r#""security_group_ids": ["sg-a", "sg-b"]"#);
        let ec2 = Fake::new("us-east-1");
        let groups = security_groups(&w.env(), &ec2, "us-east-1", &net(), None)
            .await
            .unwrap();
        assert_eq!(groups, vec![SecurityGroupId::from("sg-a"), "sg-b".into()]);
        assert!(ec2.calls().is_empty());
    }
}
