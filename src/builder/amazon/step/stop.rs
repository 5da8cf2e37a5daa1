//! Step 9: stopping the source instance (Packer's `StepStopEBSBackedInstance`) and the instance
//! attributes the image takes over (`StepModifyEBSBackedInstance`: ENA, SR-IOV).

use aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeInput;
use aws_sdk_ec2::operation::stop_instances::StopInstancesInput;
use aws_sdk_ec2::types::{AttributeBooleanValue, AttributeValue, InstanceStateName};

use super::launch::INSTANCE_WAIT;
use super::Env;
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::ids::InstanceId;
use crate::builder::amazon::waits;

/// Stops the instance (unless `disable_stop_instance`: the provisioners shut it down) and
/// waits until it is stopped.
pub async fn stop(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &InstanceId,
) -> Result<(), BuildError> {
    if env.cfg.run.disable_stop_instance {
        env.say(
            "disable_stop_instance: waiting for the provisioners' shutdown to stop the instance...",
        );
    } else {
        env.say("Stopping the source instance...");
        env.check_cancel()?;
        let req = StopInstancesInput::builder().instance_ids(id.as_str());
        ec2.stop_instances(req)
            .await
            .map_err(|source| BuildError::StopInstances {
                region: region.to_string(),
                id: id.to_string(),
                source,
            })?;
        env.say("Waiting for the instance to stop...");
    }
    let progress = env.progress();
    let w = env.wait(
        format!("instance {id} in {region}"),
        "stopped",
        INSTANCE_WAIT,
        &progress,
    );
    let pending = [
        InstanceStateName::Running,
        InstanceStateName::Stopping,
        InstanceStateName::Pending,
    ];
    waits::instance(&w, ec2, region, id.as_str(), |i| {
        waits::instance_state(i, &InstanceStateName::Stopped, &pending)
    })
    .await?;
    Ok(())
}

/// `ena_support`, `sriov_support`: set on the stopped instance, so that the image has them.
pub async fn modify_instance(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &InstanceId,
) -> Result<(), BuildError> {
    let ami = &env.cfg.ami;
    let err = |what, source| BuildError::ModifyInstanceAttribute {
        region: region.to_string(),
        id: id.to_string(),
        what,
        source,
    };
    if let Some(ena) = ami.ena_support {
        env.say(format!("Setting ENA support to {ena}"));
        let req = ModifyInstanceAttributeInput::builder()
            .instance_id(id.as_str())
            .ena_support(AttributeBooleanValue::builder().value(ena).build());
        ec2.modify_instance_attribute(req)
            .await
            .map_err(|s| err("ena_support", s))?;
    }
    if ami.sriov_support == Some(true) {
        env.say("Setting SR-IOV support (simple)");
        let req = ModifyInstanceAttributeInput::builder()
            .instance_id(id.as_str())
            .sriov_net_support(AttributeValue::builder().value("simple").build());
        ec2.modify_instance_attribute(req)
            .await
            .map_err(|s| err("sriov_support", s))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::launch::answers::instance;
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::modify_instance_attribute::builders::ModifyInstanceAttributeInputBuilder;
    use aws_sdk_ec2::operation::stop_instances::builders::StopInstancesInputBuilder;

    #[tokio::test]
    async fn the_instance_is_stopped_and_waited_for() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_instances",
            Ok(instance("i-1", InstanceStateName::Stopped, |b| b)),
        );
        stop(&w.env(), &ec2, "us-east-1", &"i-1".into())
            .await
            .unwrap();
        assert_eq!(
            ec2.calls(),
            ["us-east-1 stop_instances", "us-east-1 describe_instances"]
        );
        let sent: Vec<StopInstancesInputBuilder> = ec2.sent("stop_instances");
        assert_eq!(sent[0].get_instance_ids(), &Some(vec!["i-1".to_string()]));
        assert!(w.undos().is_empty(), "stopping records nothing");
    }

    #[tokio::test]
    async fn disable_stop_instance_only_waits() {
        let w = World::with(r#""disable_stop_instance": true"#);
        let ec2 = Fake::new("us-east-1");
        ec2.answer(
            "describe_instances",
            Ok(instance("i-1", InstanceStateName::Stopped, |b| b)),
        );
        stop(&w.env(), &ec2, "us-east-1", &"i-1".into())
            .await
            .unwrap();
        assert_eq!(ec2.calls(), ["us-east-1 describe_instances"]);
    }

    #[tokio::test]
    async fn a_refused_stop_names_the_call_instance_and_region() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("stop_instances", "UnauthorizedOperation");
        let e = stop(&w.env(), &ec2, "us-east-1", &"i-1".into())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "StopInstances i-1 in us-east-1: UnauthorizedOperation: UnauthorizedOperation (scripted)"
        );
    }

    #[tokio::test]
    async fn ena_and_sriov_are_set_on_the_instance() {
        let w = World::with(r#""ena_support": true, "sriov_support": true"#);
        let ec2 = Fake::new("us-east-1");
        modify_instance(&w.env(), &ec2, "us-east-1", &"i-1".into())
            .await
            .unwrap();
        let sent: Vec<ModifyInstanceAttributeInputBuilder> = ec2.sent("modify_instance_attribute");
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].get_ena_support().as_ref().and_then(|v| v.value()),
            Some(true)
        );
        assert_eq!(
            sent[1]
                .get_sriov_net_support()
                .as_ref()
                .and_then(|v| v.value()),
            Some("simple")
        );
    }
}
