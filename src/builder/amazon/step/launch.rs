//! Step 6: the source instance (Packer's `StepRunSourceInstance`): `RunInstances` with a client
//! token (journaled as an intent first, so that an instance whose answer was lost is still found),
//! recorded in the ledger, then the wait for it to run; volumes that outlive it are recorded too.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::operation::describe_instances::DescribeInstancesInput;
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesInputBuilder;
use aws_sdk_ec2::operation::run_instances::RunInstancesInput;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, CreditSpecificationRequest, EbsBlockDevice, HttpTokensState,
    IamInstanceProfileSpecification, Instance, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceMetadataTagsState, InstanceNetworkInterfaceSpecification, InstanceStateName,
    MarketType, Placement, ResourceType, ShutdownBehavior as Ec2Shutdown, SpotInstanceType,
    SpotMarketOptions, Tenancy as Ec2Tenancy, VolumeType,
};

use super::network::Net;
use super::{filter, tag_spec, Env};
use crate::aws::ApiError;
use crate::builder::amazon::config::spot::SpotPrice;
use crate::builder::amazon::config::{BlockDevice, ShutdownBehavior, Tenancy};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::{required, BuildError};
use crate::builder::amazon::ids::{ImageId, InstanceId, KeyPairName, SecurityGroupId};
use crate::builder::amazon::waits;
use crate::ledger::Undo;

/// How long the wait for the instance to run (or stop) may take unless `aws_polling` says
/// otherwise (Packer: 10 minutes).
pub const INSTANCE_WAIT: Duration = Duration::from_secs(10 * 60);

/// What the instance is launched with: the results of the steps before.
pub struct Launch<'a> {
    pub ami: &'a ImageId,
    pub key_name: Option<&'a KeyPairName>,
    pub groups: &'a [SecurityGroupId],
    pub net: &'a Net,
    pub user_data: Option<Vec<u8>>,
    pub run_tags: &'a BTreeMap<String, String>,
    pub volume_tags: &'a BTreeMap<String, String>,
    /// `spot_tags`, rendered, with the run's tags (only with `spot_price`).
    pub spot_tags: &'a BTreeMap<String, String>,
}

/// The user data of a launch: `user_data`, or the contents of `user_data_file` (read now, so
/// that a file that changed since the template was checked is sent as it is).
pub fn user_data(
    run: &crate::builder::amazon::config::RunConfig,
) -> Result<Option<Vec<u8>>, BuildError> {
    match (&run.user_data, &run.user_data_file) {
        (Some(u), _) => Ok(Some(u.clone().into_bytes())),
        (None, Some(p)) => std::fs::read(p)
            .map(Some)
            .map_err(|source| BuildError::UserDataFile {
                path: p.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// The running source instance.
pub struct Launched {
    pub id: InstanceId,
    /// As `DescribeInstances` showed it running (its addresses).
    pub instance: Instance,
}

/// EC2's answers to `RunInstances` that are about the instance type (no capacity for it, a
/// maximum price below its spot price, its spot limit, not offered in the zone): with
/// `spot_instance_types` the next type is tried.
const TRY_NEXT_TYPE: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "UnfulfillableCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "Unsupported",
];

/// The instance types to try, in order: `spot_instance_types` for a spot build that lists
/// them, else `instance_type`.
fn types_to_try(run: &crate::builder::amazon::config::RunConfig) -> Vec<String> {
    if run.spot.price.is_some() && !run.spot.instance_types.is_empty() {
        run.spot.instance_types.clone()
    } else {
        vec![run.instance_type.clone()]
    }
}

/// Launches the source instance and waits for it to run. With `spot_instance_types`, the types
/// are tried in order, once each, while EC2 refuses them for a reason of the type
/// ([`TRY_NEXT_TYPE`]).
pub async fn launch(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    l: Launch<'_>,
) -> Result<Launched, BuildError> {
    let run = &env.cfg.run;
    let types = types_to_try(run);
    env.say(format!(
        "Launching a source {}instance ({}) from {}...",
        if run.spot.price.is_some() {
            "spot "
        } else {
            ""
        },
        types[0],
        l.ami
    ));
    let mut refused: Vec<(String, ApiError)> = Vec::new();
    let mut id = None;
    for (n, t) in types.iter().enumerate() {
        match run_one(env, ec2, region, &l, t).await? {
            Ok(i) => {
                id = Some(i);
                break;
            }
            Err(e) => {
                if let Some(next) = types.get(n + 1) {
                    env.say(format!("{t} refused ({e}); trying {next}..."));
                }
                refused.push((t.clone(), e));
            }
        }
    }
    let Some(id) = id else {
        return Err(all_refused(region, &l, refused));
    };
    env.say(format!("Instance ID: {id}"));
    env.timeline.mark("wait running");
    let instance = wait_running(env, ec2, region, &id).await?;
    Ok(Launched {
        id: InstanceId(id),
        instance,
    })
}

/// The error when every type was refused: EC2's one error for one type, else each type's.
fn all_refused(region: &str, l: &Launch<'_>, mut refused: Vec<(String, ApiError)>) -> BuildError {
    if refused.len() == 1 {
        let (instance_type, source) = refused.remove(0);
        return BuildError::RunInstances {
            region: region.to_string(),
            ami: l.ami.to_string(),
            instance_type,
            source,
        };
    }
    let each: Vec<String> = refused.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    BuildError::SpotTypesRefused {
        region: region.to_string(),
        ami: l.ami.to_string(),
        each: each.join("; "),
    }
}

/// One `RunInstances` of type `instance_type`: the instance ID (recorded), or EC2's refusal when
/// it is one for the type ([`TRY_NEXT_TYPE`]); any other failure is the build's error.
async fn run_one(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    l: &Launch<'_>,
    instance_type: &str,
) -> Result<Result<String, ApiError>, BuildError> {
    let token = uuid::Uuid::new_v4().to_string();
    let req = request(env, l, &token, instance_type);
    env.check_cancel()?;
    let intent = env.intent("RunInstances", region, &token, None)?;
    let sent = ec2.run_instances(req).await;
    env.test_hold("sent_run_instances").await;
    let out = match sent {
        Ok(o) => o,
        Err(source)
            if source
                .code
                .as_deref()
                .is_some_and(|c| TRY_NEXT_TYPE.contains(&c)) =>
        {
            env.refused(intent)?;
            return Ok(Err(source));
        }
        Err(source) => {
            // The call may have created the instance even though its answer was lost: look
            // it up by its client token, so that teardown finds it.
            let req = DescribeInstancesInput::builder().filters(filter("client-token", &token));
            if let Ok(found) = ec2.describe_instances(req).await {
                for i in found.reservations().iter().flat_map(|r| r.instances()) {
                    if let Some(id) = i.instance_id() {
                        env.record(
                            Undo::TerminateInstance {
                                region: region.to_string(),
                                id: id.to_string(),
                            },
                            Some(intent),
                        )?;
                    }
                }
            }
            return Err(BuildError::RunInstances {
                region: region.to_string(),
                ami: l.ami.to_string(),
                instance_type: instance_type.to_string(),
                source,
            });
        }
    };
    let id = required(
        out.instances().first().and_then(|i| i.instance_id()),
        "RunInstances",
        "InstanceId",
        region,
    )?;
    env.record(
        Undo::TerminateInstance {
            region: region.to_string(),
            id: id.clone(),
        },
        Some(intent),
    )?;
    Ok(Ok(id))
}

/// Waits for the instance to run; records its volumes that outlive it (`delete_on_termination`
/// false), which are the build's too.
async fn wait_running(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &str,
) -> Result<Instance, BuildError> {
    env.say(format!("Waiting for instance ({id}) to become ready..."));
    let progress = env.progress();
    let w = env.wait(
        format!("instance {id} in {region}"),
        "running",
        INSTANCE_WAIT,
        &progress,
    );
    let instance = waits::instance(&w, ec2, region, id, |i| {
        waits::instance_state(
            i,
            &InstanceStateName::Running,
            &[InstanceStateName::Pending],
        )
    })
    .await?;
    for m in instance.block_device_mappings() {
        if let Some(e) = m.ebs() {
            if e.delete_on_termination() == Some(false) {
                if let Some(v) = e.volume_id() {
                    env.record(
                        Undo::DeleteVolume {
                            region: region.to_string(),
                            id: v.to_string(),
                        },
                        None,
                    )?;
                }
            }
        }
    }
    Ok(instance)
}

/// The `RunInstances` request of the build (one instance of `instance_type`, with `token`).
fn request(
    env: &Env<'_>,
    l: &Launch<'_>,
    token: &str,
    instance_type: &str,
) -> RunInstancesInputBuilder {
    let cfg = env.cfg;
    let run = &cfg.run;
    let mut req = RunInstancesInput::builder()
        .image_id(l.ami.as_str())
        .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .client_token(token)
        .set_key_name(l.key_name.map(|k| k.0.clone()))
        .instance_initiated_shutdown_behavior(match run.shutdown_behavior {
            ShutdownBehavior::Stop => Ec2Shutdown::Stop,
            ShutdownBehavior::Terminate => Ec2Shutdown::Terminate,
        })
        .tag_specifications(tag_spec(ResourceType::Instance, l.run_tags))
        .tag_specifications(tag_spec(ResourceType::Volume, l.volume_tags));
    if run.ebs_optimized {
        req = req.ebs_optimized(true);
    }
    if let Some(price) = &run.spot.price {
        req = spot_request(req, price, l.spot_tags);
    }
    if let Some(u) = &l.user_data {
        req = req.user_data(aws_smithy_types::base64::encode(u));
    }
    if let Some(p) = &run.iam_instance_profile {
        let spec = if p.starts_with("arn:") {
            IamInstanceProfileSpecification::builder().arn(p).build()
        } else {
            IamInstanceProfileSpecification::builder().name(p).build()
        };
        req = req.iam_instance_profile(spec);
    }
    let mut mappings: Vec<BlockDeviceMapping> = cfg
        .launch_block_device_mappings
        .iter()
        .map(block_device)
        .collect();
    if cfg.no_ephemeral {
        mappings.extend(no_ephemeral_mappings());
    }
    if !mappings.is_empty() {
        req = req.set_block_device_mappings(Some(mappings));
    }
    placement_and_options(env, l, req)
}

/// A spot instance: a one-time spot request made by `RunInstances` itself (it closes when the
/// instance terminates), the instance terminated if EC2 interrupts it; `auto` sends no maximum
/// price (up to the on-demand price).
fn spot_request(
    req: RunInstancesInputBuilder,
    price: &SpotPrice,
    tags: &BTreeMap<String, String>,
) -> RunInstancesInputBuilder {
    let mut o = SpotMarketOptions::builder()
        .spot_instance_type(SpotInstanceType::OneTime)
        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate);
    if let SpotPrice::Max(p) = price {
        o = o.max_price(p);
    }
    let req = req.instance_market_options(
        InstanceMarketOptionsRequest::builder()
            .market_type(MarketType::Spot)
            .spot_options(o.build())
            .build(),
    );
    if tags.is_empty() {
        req
    } else {
        req.tag_specifications(tag_spec(ResourceType::SpotInstancesRequest, tags))
    }
}

/// The placement, credits, metadata options and network interface of the request.
fn placement_and_options(
    env: &Env<'_>,
    l: &Launch<'_>,
    mut req: RunInstancesInputBuilder,
) -> RunInstancesInputBuilder {
    let run = &env.cfg.run;
    let net = l.net;
    if net.az.is_some() || run.tenancy.is_some() {
        let mut p = Placement::builder().set_availability_zone(if net.subnet_id.is_none() {
            net.az.clone()
        } else {
            None
        });
        if let Some(t) = run.tenancy {
            p = p.tenancy(match t {
                Tenancy::Default => Ec2Tenancy::Default,
                Tenancy::Dedicated => Ec2Tenancy::Dedicated,
                Tenancy::Host => Ec2Tenancy::Host,
            });
        }
        req = req.placement(p.build());
    }
    if run.enable_unlimited_credits {
        req = req.credit_specification(
            CreditSpecificationRequest::builder()
                .cpu_credits("unlimited")
                .build(),
        );
    }
    let m = &run.metadata_options;
    if m.http_endpoint.is_some()
        || m.http_tokens.is_some()
        || m.http_put_response_hop_limit.is_some()
        || m.instance_metadata_tags.is_some()
    {
        req = req.metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .set_http_endpoint(
                    m.http_endpoint
                        .as_deref()
                        .map(InstanceMetadataEndpointState::from),
                )
                .set_http_tokens(m.http_tokens.as_deref().map(HttpTokensState::from))
                .set_http_put_response_hop_limit(m.http_put_response_hop_limit.map(|h| h as i32))
                .set_instance_metadata_tags(
                    m.instance_metadata_tags
                        .as_deref()
                        .map(InstanceMetadataTagsState::from),
                )
                .build(),
        );
    }
    let groups: Vec<String> = l.groups.iter().map(|g| g.0.clone()).collect();
    if let Some(public) = run.associate_public_ip_address {
        let ni = InstanceNetworkInterfaceSpecification::builder()
            .device_index(0)
            .associate_public_ip_address(public)
            .delete_on_termination(true)
            .set_subnet_id(net.subnet_id.clone())
            .set_groups(Some(groups))
            .build();
        req = req.network_interfaces(ni);
    } else {
        req = req
            .set_subnet_id(net.subnet_id.clone())
            .set_security_group_ids(Some(groups));
    }
    req
}

/// An EC2 block device mapping from a template one (zero values unset, as in Packer).
pub fn block_device(d: &BlockDevice) -> BlockDeviceMapping {
    let b = BlockDeviceMapping::builder().device_name(&d.device_name);
    if d.no_device {
        return b.no_device("").build();
    }
    if let Some(v) = d
        .virtual_name
        .as_deref()
        .filter(|v| v.starts_with("ephemeral"))
    {
        return b.virtual_name(v).build();
    }
    let mut e = EbsBlockDevice::builder().delete_on_termination(d.delete_on_termination);
    if let Some(t) = &d.volume_type {
        e = e.volume_type(VolumeType::from(t.as_str()));
    }
    if let Some(s) = d.volume_size {
        e = e.volume_size(s as i32);
    }
    if let Some(i) = d.iops {
        e = e.iops(i as i32);
    }
    if let Some(t) = d.throughput {
        e = e.throughput(t as i32);
    }
    if let Some(s) = &d.snapshot_id {
        e = e.snapshot_id(s);
    }
    if let Some(enc) = d.encrypted {
        e = e.encrypted(enc);
        if enc {
            if let Some(k) = &d.kms_key_id {
                e = e.kms_key_id(k);
            }
        }
    }
    b.ebs(e.build()).build()
}

/// `no_ephemeral`: hide the instance-store devices Packer hides (`xvdb` .. `xvdy`).
fn no_ephemeral_mappings() -> Vec<BlockDeviceMapping> {
    (0..24u8)
        .map(|i| {
            BlockDeviceMapping::builder()
                .device_name(format!("xvd{}", (b'b' + i) as char))
                .no_device("")
                .build()
        })
        .collect()
}

/// `DescribeInstances` answers for the steps' tests.
#[cfg(test)]
pub(crate) mod answers {
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::types::{Instance, InstanceState, InstanceStateName, Reservation};

    /// The instance `id` in `state`, with `extra` applied to it.
    pub fn instance(
        id: &str,
        state: InstanceStateName,
        extra: impl FnOnce(
            aws_sdk_ec2::types::builders::InstanceBuilder,
        ) -> aws_sdk_ec2::types::builders::InstanceBuilder,
    ) -> DescribeInstancesOutput {
        let i: Instance = extra(
            Instance::builder()
                .instance_id(id)
                .state(InstanceState::builder().name(state).build()),
        )
        .build();
        DescribeInstancesOutput::builder()
            .reservations(Reservation::builder().instances(i).build())
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::answers::instance;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::run_instances::RunInstancesOutput;
    use aws_sdk_ec2::types::{EbsInstanceBlockDevice, InstanceBlockDeviceMapping};

    fn inputs<'a>(
        ami: &'a ImageId,
        key: &'a KeyPairName,
        groups: &'a [SecurityGroupId],
        net: &'a Net,
        tags: &'a BTreeMap<String, String>,
    ) -> Launch<'a> {
        Launch {
            ami,
            key_name: Some(key),
            groups,
            net,
            user_data: Some(b"#!/bin/sh".to_vec()),
            run_tags: tags,
            volume_tags: tags,
            spot_tags: tags,
        }
    }

    fn terminate(id: &str) -> Undo {
        Undo::TerminateInstance {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn the_instance_is_launched_recorded_and_waited_for() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        let (ami, key, net) = (
            ImageId::from("ami-src"),
            KeyPairName::from("kp"),
            Net::default(),
        );
        let groups = [SecurityGroupId::from("sg-1")];
        let tags = BTreeMap::from([("Name".to_string(), "Packer Builder".to_string())]);
        ec2.answer(
            "run_instances",
            Ok(RunInstancesOutput::builder()
                .instances(Instance::builder().instance_id("i-1").build())
                .build()),
        );
        ec2.answer(
            "describe_instances",
            Ok(instance("i-1", InstanceStateName::Pending, |b| b)),
        );
        let kept = InstanceBlockDeviceMapping::builder()
            .ebs(
                EbsInstanceBlockDevice::builder()
                    .volume_id("vol-kept")
                    .delete_on_termination(false)
                    .build(),
            )
            .build();
        ec2.answer(
            "describe_instances",
            Ok(instance("i-1", InstanceStateName::Running, |b| {
                b.block_device_mappings(kept)
            })),
        );
        let l = inputs(&ami, &key, &groups, &net, &tags);
        let got = launch(&w.env(), &ec2, "us-east-1", l).await.unwrap();
        assert_eq!(got.id, InstanceId::from("i-1"));
        let sent: Vec<RunInstancesInputBuilder> = ec2.sent("run_instances");
        let r = &sent[0];
        assert_eq!(r.get_image_id().as_deref(), Some("ami-src"));
        assert_eq!(r.get_key_name().as_deref(), Some("kp"));
        assert_eq!(r.get_security_group_ids(), &Some(vec!["sg-1".to_string()]));
        assert!(r.get_client_token().is_some());
        assert_eq!(
            r.get_user_data().as_deref(),
            Some(aws_smithy_types::base64::encode("#!/bin/sh").as_str())
        );
        assert_eq!(
            w.undos(),
            vec![
                terminate("i-1"),
                Undo::DeleteVolume {
                    region: "us-east-1".into(),
                    id: "vol-kept".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_lost_answer_finds_the_instance_by_its_client_token() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        let (ami, key, net) = (
            ImageId::from("ami-src"),
            KeyPairName::from("kp"),
            Net::default(),
        );
        let tags = BTreeMap::new();
        ec2.fail("run_instances", "RequestTimeout");
        ec2.answer(
            "describe_instances",
            Ok(instance("i-lost", InstanceStateName::Pending, |b| b)),
        );
        let e = launch(
            &w.env(),
            &ec2,
            "us-east-1",
            inputs(&ami, &key, &[], &net, &tags),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "RunInstances in us-east-1 (source AMI ami-src, t3.micro): RequestTimeout: RequestTimeout (scripted)"
        );
        let token = ec2.sent::<RunInstancesInputBuilder>("run_instances")[0]
            .get_client_token()
            .clone()
            .unwrap();
        let lookup: Vec<
            aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesInputBuilder,
        > = ec2.sent("describe_instances");
        let f = &lookup[0].get_filters().clone().unwrap()[0];
        assert_eq!(f.name(), Some("client-token"));
        assert_eq!(f.values(), [token]);
        assert_eq!(w.undos(), vec![terminate("i-lost")]);
    }

    /// A spot world whose `spot_instance_types` are `types`.
    fn spot_world(types: &[&str]) -> World {
        let mut w = World::with(r#""spot_price": "auto""#);
        w.cfg.run.spot.instance_types = types.iter().map(|t| t.to_string()).collect();
        w
    }

    fn types_sent(ec2: &Fake) -> Vec<String> {
        ec2.sent::<RunInstancesInputBuilder>("run_instances")
            .iter()
            .map(|r| r.get_instance_type().as_ref().unwrap().as_str().to_string())
            .collect()
    }

    #[tokio::test]
    async fn spot_types_are_tried_in_order_while_ec2_refuses_them_for_capacity() {
        let w = spot_world(&["t3.small", "t3.medium", "t3.micro"]);
        let ec2 = Fake::new("us-east-1");
        let (ami, key, net) = (
            ImageId::from("ami-src"),
            KeyPairName::from("kp"),
            Net::default(),
        );
        let tags = BTreeMap::new();
        ec2.fail("run_instances", "InsufficientInstanceCapacity");
        ec2.fail("run_instances", "SpotMaxPriceTooLow");
        ec2.answer(
            "run_instances",
            Ok(RunInstancesOutput::builder()
                .instances(Instance::builder().instance_id("i-3").build())
                .build()),
        );
        ec2.answer(
            "describe_instances",
            Ok(instance("i-3", InstanceStateName::Running, |b| b)),
        );
        let l = inputs(&ami, &key, &[], &net, &tags);
        let got = launch(&w.env(), &ec2, "us-east-1", l).await.unwrap();
        assert_eq!(got.id, InstanceId::from("i-3"));
        assert_eq!(types_sent(&ec2), ["t3.small", "t3.medium", "t3.micro"]);
        // Refusals are not lost answers: no lookup by client token, one DescribeInstances (the
        // wait) only.
        assert_eq!(
            ec2.sent::<aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesInputBuilder>("describe_instances").len(),
            1
        );
        assert_eq!(w.undos(), vec![terminate("i-3")]);
    }

    #[tokio::test]
    async fn every_spot_type_refused_names_each_with_its_reason_and_other_errors_stop_at_once() {
        let w = spot_world(&["t3.small", "t3.micro"]);
        let ec2 = Fake::new("us-east-1");
        let (ami, key, net) = (
            ImageId::from("ami-src"),
            KeyPairName::from("kp"),
            Net::default(),
        );
        let tags = BTreeMap::new();
        ec2.fail("run_instances", "InsufficientInstanceCapacity");
        ec2.fail("run_instances", "Unsupported");
        let l = inputs(&ami, &key, &[], &net, &tags);
        let e = launch(&w.env(), &ec2, "us-east-1", l).await.err().unwrap();
        assert_eq!(
            e.to_string(),
            "RunInstances in us-east-1 (source AMI ami-src): EC2 refused every one of spot_instance_types: \
             t3.small: InsufficientInstanceCapacity: InsufficientInstanceCapacity (scripted); \
             t3.micro: Unsupported: Unsupported (scripted); list more types, another subnet or \
             availability zone, or a higher spot_price"
        );
        assert!(w.undos().is_empty());
        // An error that is not about the type is the build's error: the next type is not tried.
        let ec2 = Fake::new("us-east-1");
        ec2.fail("run_instances", "InvalidAMIID.NotFound");
        let l = inputs(&ami, &key, &[], &net, &tags);
        let e = launch(&w.env(), &ec2, "us-east-1", l).await.err().unwrap();
        assert!(matches!(e, BuildError::RunInstances { .. }), "{e}");
        assert_eq!(types_sent(&ec2), ["t3.small"]);
    }

    #[tokio::test]
    async fn an_instance_that_terminates_while_starting_fails_the_wait() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_instances",
            Ok(instance("i-1", InstanceStateName::Terminated, |b| b)),
        );
        let e = wait_running(&w.env(), &ec2, "us-east-1", "i-1")
            .await
            .unwrap_err();
        assert!(matches!(e, BuildError::Wait(_)), "{e}");
        assert!(w.undos().is_empty());
    }
}
