//! Step 7: the address to connect to (Packer's `ssh_interface` / `ssh_host` choice): the running
//! instance's addresses, looked at up to three times, a second apart, before falling back to the
//! private address.

use std::time::Duration;

use aws_sdk_ec2::operation::describe_instances::DescribeInstancesInput;
use aws_sdk_ec2::types::Instance;

use super::Env;
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::ids::InstanceId;
use crate::builder::amazon::plan::{self, Addresses};
use crate::communicator::ssh::Communicator;

/// The host the communicator connects to (only build data with `communicator: none`).
pub async fn host(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &InstanceId,
    instance: &Instance,
) -> Result<String, BuildError> {
    let cfg = env.cfg;
    let addrs = |i: &Instance| Addresses {
        public_ip: i.public_ip_address().map(str::to_string),
        private_ip: i.private_ip_address().map(str::to_string),
        public_dns: i.public_dns_name().map(str::to_string),
        private_dns: i.private_dns_name().map(str::to_string),
        in_vpc: i.vpc_id().is_some_and(|v| !v.is_empty()),
    };
    let mut current = addrs(instance);
    // As Packer: up to 3 looks, 1 s apart, before falling back to the private address.
    for attempt in 1..=3 {
        if let Some(h) = plan::select_host(
            cfg.ssh.ssh_host.as_deref(),
            cfg.ssh_interface,
            &current,
            attempt == 3,
        ) {
            return Ok(h);
        }
        if attempt == 3 {
            break;
        }
        if !env.cancel.sleep(Duration::from_secs(1)).await {
            return Err(BuildError::Cancelled);
        }
        let req = DescribeInstancesInput::builder().instance_ids(id.as_str());
        let out = env
            .c(ec2.describe_instances(req))
            .await?
            .map_err(|source| BuildError::DescribeInstances {
                region: region.to_string(),
                id: id.to_string(),
                source,
            })?;
        if let Some(i) = out.reservations().iter().flat_map(|r| r.instances()).next() {
            current = addrs(i);
        }
    }
    if cfg.ssh.communicator == Communicator::None {
        // Nothing connects: the address is only build data.
        return Ok(current.private_ip.clone().unwrap_or_default());
    }
    Err(BuildError::NoAddress {
        region: region.to_string(),
        id: id.to_string(),
        interface: cfg
            .ssh_interface
            .map_or("public".to_string(), |i| i.as_str().to_string()),
        addresses: format!("{current:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;

    #[tokio::test]
    async fn in_a_vpc_the_public_address_is_the_host() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        let i = Instance::builder()
            .instance_id("i-1")
            .vpc_id("vpc-1")
            .public_ip_address("203.0.113.9")
            .private_ip_address("10.0.0.9")
            .build();
        let h = host(&w.env(), &ec2, "us-east-1", &"i-1".into(), &i)
            .await
            .unwrap();
        assert_eq!(h, "203.0.113.9");
        assert!(
            ec2.calls().is_empty(),
            "no second look when the address is known"
        );
    }

    #[tokio::test]
    async fn ssh_host_wins() {
        let w = World::with(r#""ssh_host": "bastion.example""#);
        let ec2 = Fake::new("us-east-1");
        let i = Instance::builder().instance_id("i-1").build();
        let h = host(&w.env(), &ec2, "us-east-1", &"i-1".into(), &i)
            .await
            .unwrap();
        assert_eq!(h, "bastion.example");
    }
}
