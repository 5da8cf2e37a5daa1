//! Step 8: provisioning (Packer's `StepProvision`): the provisioner runtime over the
//! communicator, while the instance is watched (a terminated one never answers SSH), and, with
//! `-on-error=ask`, run again on the same instance when the person asks.

use std::time::Duration;

use aws_sdk_ec2::operation::describe_instances::DescribeInstancesInput;
use aws_sdk_ec2::types::InstanceStateName;

use super::{state_reason, Env};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::ids::InstanceId;
use crate::communicator::ssh::Communicator;
use crate::provisioner::runtime::{self, ProvisionContext, ProvisionError};

/// How often the source instance's state is checked while provisioning waits for SSH and runs.
const WATCH_EVERY: Duration = Duration::from_secs(10);

/// Runs the provisioners of `pctx` on the instance `id`.
pub async fn provision(
    env: &Env<'_>,
    ec2: &impl Ec2,
    region: &str,
    id: &InstanceId,
    pctx: &ProvisionContext<'_>,
) -> Result<(), BuildError> {
    // One attempt: a provisioning failure is `Err` (the person may ask to run it again, with
    // -on-error=ask); the instance gone, a deadline or Ctrl-C end the step as `Ok(Err(..))`.
    let attempt = || async {
        let r = env
            .c(async {
                tokio::select! {
                    r = runtime::run(pctx, env.cancel) => Ok(r),
                    gone = watch_instance(ec2, region, id),
                        if env.cfg.ssh.communicator == Communicator::Ssh => Err(gone),
                }
            })
            .await;
        match r {
            Ok(Ok(Ok(()))) => Ok(Ok(())),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(gone)) | Err(gone) => Ok(Err(gone)),
        }
    };
    // The one retry loop of every builder (`Interact::retrying`).
    let provisioned = env
        .interact
        .retrying(
            "provisioning",
            env.cancel,
            |e| matches!(e, ProvisionError::Cancelled),
            attempt,
        )
        .await;
    match provisioned {
        Ok(done) => done,
        Err(ProvisionError::Cancelled) => Err(BuildError::Cancelled),
        Err(e) => Err(BuildError::Provision(Box::new(e))),
    }
}

/// Resolves (with the error to report) only when the instance is shutting down or
/// terminated; polls every [`WATCH_EVERY`] (a failed poll is skipped, not fatal).
async fn watch_instance(ec2: &impl Ec2, region: &str, id: &InstanceId) -> BuildError {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let req = DescribeInstancesInput::builder().instance_ids(id.as_str());
        let Ok(out) = ec2.describe_instances(req).await else {
            continue;
        };
        let Some(i) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id.as_str()))
        else {
            continue;
        };
        if let Some(state @ (InstanceStateName::ShuttingDown | InstanceStateName::Terminated)) =
            i.state().and_then(|s| s.name())
        {
            return BuildError::InstanceGone {
                region: region.to_string(),
                id: id.to_string(),
                state: state.as_str().to_string(),
                reason: state_reason(i),
            };
        }
    }
}
