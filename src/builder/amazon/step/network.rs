//! Step 3: the network (Packer's `StepNetworkInfo`): the VPC, subnet and availability zone the
//! instance goes to, from the template's IDs or filters, or the default VPC.

use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsInput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsInput;
use aws_sdk_ec2::types::Subnet;

use super::{filter, filters, Env};
use crate::builder::amazon::config::RunConfig;
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;

/// Where the instance goes.
#[derive(Debug, Clone, Default)]
pub struct Net {
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub az: Option<String>,
}

/// The VPC, subnet and zone of the build's instance.
pub async fn network(env: &Env<'_>, ec2: &impl Ec2, region: &str) -> Result<Net, BuildError> {
    let run = &env.cfg.run;
    let mut net = Net {
        vpc_id: run.vpc_id.clone(),
        subnet_id: run.subnet_id.clone(),
        az: run.availability_zone.clone(),
    };
    if net.vpc_id.is_none() {
        if let Some(f) = &run.vpc_filter {
            let req = DescribeVpcsInput::builder().set_filters(Some(filters(&f.filters)));
            let out = env.c(ec2.describe_vpcs(req)).await?.map_err(|source| {
                BuildError::DescribeVpcs {
                    region: region.to_string(),
                    source,
                }
            })?;
            net.vpc_id = one_vpc(out.vpcs(), region)?;
        }
    }
    if let Some(id) = &net.subnet_id {
        let req = DescribeSubnetsInput::builder().subnet_ids(id);
        let out = env
            .c(ec2.describe_subnets(req))
            .await?
            .map_err(|source| subnets_err(region, source))?;
        let s = out.subnets().first().ok_or(BuildError::Network {
            region: region.to_string(),
            what: "subnet_id",
            message: format!("subnet {id} not found"),
        })?;
        net.vpc_id = s.vpc_id().map(str::to_string);
        net.az = s.availability_zone().map(str::to_string);
    } else if run.subnet_filter.is_some() || net.vpc_id.is_some() {
        let chosen = choose_subnet(env, ec2, region, run, &net).await?;
        net.subnet_id = chosen.subnet_id().map(str::to_string);
        net.vpc_id = chosen.vpc_id().map(str::to_string);
        net.az = chosen.availability_zone().map(str::to_string);
    }
    if net.vpc_id.is_none() {
        let req = DescribeVpcsInput::builder().filters(filter("isDefault", "true"));
        let out =
            env.c(ec2.describe_vpcs(req))
                .await?
                .map_err(|source| BuildError::DescribeVpcs {
                    region: region.to_string(),
                    source,
                })?;
        net.vpc_id = out
            .vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .map(str::to_string);
    }
    Ok(net)
}

fn subnets_err(region: &str, source: crate::aws::ApiError) -> BuildError {
    BuildError::DescribeSubnets {
        region: region.to_string(),
        source,
    }
}

/// The one VPC `vpc_filter` matched (an error names none or the many).
fn one_vpc(vpcs: &[aws_sdk_ec2::types::Vpc], region: &str) -> Result<Option<String>, BuildError> {
    match vpcs {
        [one] => Ok(one.vpc_id().map(str::to_string)),
        [] => Err(BuildError::Network {
            region: region.to_string(),
            what: "vpc_filter",
            message: "no VPC matches the filter".into(),
        }),
        many => Err(BuildError::Network {
            region: region.to_string(),
            what: "vpc_filter",
            message: format!(
                "{} VPCs match the filter ({}); exactly one must",
                many.len(),
                many.iter()
                    .filter_map(|v| v.vpc_id())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The subnet `subnet_filter` (or the VPC and zone alone) chooses: a random one when asked,
/// else the one with the most free addresses.
async fn choose_subnet(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    run: &RunConfig,
    net: &Net,
) -> Result<Subnet, BuildError> {
    let mut fs = run
        .subnet_filter
        .as_ref()
        .map(|f| filters(&f.filters))
        .unwrap_or_default();
    if let Some(v) = &net.vpc_id {
        fs.push(filter("vpc-id", v));
    }
    if let Some(az) = &net.az {
        fs.push(filter("availability-zone", az));
    }
    let req = DescribeSubnetsInput::builder().set_filters(Some(fs));
    let out = env
        .c(ec2.describe_subnets(req))
        .await?
        .map_err(|source| subnets_err(region, source))?;
    let subnets = out.subnets();
    let random = run.subnet_filter.as_ref().is_some_and(|f| f.random);
    let chosen = if subnets.is_empty() {
        return Err(BuildError::Network {
            region: region.to_string(),
            what: "subnet_filter",
            message: "no subnet matches".into(),
        });
    } else if random {
        &subnets[(uuid::Uuid::new_v4().as_u128() % subnets.len() as u128) as usize]
    } else {
        // most_free, and the choice when only a VPC is given.
        subnets
            .iter()
            .max_by_key(|s| s.available_ip_address_count().unwrap_or(0))
            .unwrap_or(&subnets[0])
    };
    Ok(chosen.clone())
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::describe_subnets::builders::DescribeSubnetsInputBuilder;
    use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
    use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
    use aws_sdk_ec2::types::Vpc;

    #[tokio::test]
    async fn a_subnet_id_gives_its_vpc_and_zone() {
        let w = World::with(r#""subnet_id": "subnet-1""#);
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_subnets",
            Ok(DescribeSubnetsOutput::builder()
                .subnets(
                    Subnet::builder()
                        .subnet_id("subnet-1")
                        .vpc_id("vpc-1")
                        .availability_zone("us-east-1b")
                        .build(),
                )
                .build()),
        );
        let net = network(&w.env(), &ec2, "us-east-1").await.unwrap();
        assert_eq!(net.subnet_id.as_deref(), Some("subnet-1"));
        assert_eq!(net.vpc_id.as_deref(), Some("vpc-1"));
        assert_eq!(net.az.as_deref(), Some("us-east-1b"));
        assert_eq!(ec2.calls(), ["us-east-1 describe_subnets"]);
    }

    #[tokio::test]
    async fn a_vpc_filter_must_match_exactly_one() {
        let w = World::with(r#""vpc_filter": {"filters": {"tag:Name": "build"}}"#);
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_vpcs",
            Ok(DescribeVpcsOutput::builder()
                .vpcs(Vpc::builder().vpc_id("vpc-1").build())
                .vpcs(Vpc::builder().vpc_id("vpc-2").build())
                .build()),
        );
        let e = network(&w.env(), &ec2, "us-east-1").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "vpc_filter in us-east-1: 2 VPCs match the filter (vpc-1, vpc-2); exactly one must"
        );
    }

    #[tokio::test]
    async fn a_vpc_alone_chooses_its_subnet_with_the_most_free_addresses() {
        let w = World::with(r#""vpc_id": "vpc-1""#);
        let ec2 = Fake::new("us-east-1");
        let subnet = |id: &str, free: i32| {
            Subnet::builder()
                .subnet_id(id)
                .vpc_id("vpc-1")
                .available_ip_address_count(free)
                .build()
        };
        ec2.answer(
            "describe_subnets",
            Ok(DescribeSubnetsOutput::builder()
                .subnets(subnet("subnet-small", 3))
                .subnets(subnet("subnet-big", 200))
                .build()),
        );
        let net = network(&w.env(), &ec2, "us-east-1").await.unwrap();
        assert_eq!(net.subnet_id.as_deref(), Some("subnet-big"));
        let sent: Vec<DescribeSubnetsInputBuilder> = ec2.sent("describe_subnets");
        let f = &sent[0].get_filters().clone().unwrap()[0];
        assert_eq!(f.name(), Some("vpc-id"));
    }
}
