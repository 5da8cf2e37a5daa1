//! moto's CloudFormation, SSM and EC2 for the post-processor tests: SDK clients for the world, the
//! web worker stack (`tests/fixtures/cfn/web_worker.yaml`) and what it points at.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};

use super::world::{TestWorld, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

/// The web worker stack's name (the seed's `web_worker`).
pub const STACK: &str = "web_worker";
/// The stack's `InstanceProfile` parameter, which updates must keep.
pub const INSTANCE_PROFILE: &str = "arn:aws:iam::123456789012:instance-profile/mail-ape-web";

fn stack_template() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cfn/web_worker.yaml");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `fut` on a runtime of its own (the tests are synchronous).
pub fn block<T>(fut: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// SDK configuration for the world's moto (every service), in `region`.
pub async fn sdk(world: &TestWorld, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(world.ec2_endpoint())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "imgbuild-cfn-tests",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// A CloudFormation client for the world in `region`.
pub fn cfn_in(world: &TestWorld, region: &str) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&block(sdk(world, region)))
}

/// An SSM client for the world in `region`.
pub fn ssm(world: &TestWorld, region: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&block(sdk(world, region)))
}

/// An EC2 client for the world in us-east-1.
pub fn ec2(world: &TestWorld) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&block(sdk(world, "us-east-1")))
}

/// Creates the web worker stack with `WorkerAMI` = `ami` and the other parameters set.
pub fn create_stack(world: &TestWorld, ami: &str) {
    create_stack_in(world, "us-east-1", ami)
}

/// [`create_stack`] in `region` (its availability zone adapted).
pub fn create_stack_in(world: &TestWorld, region: &str, ami: &str) {
    use aws_sdk_cloudformation::types::Parameter;
    let c = cfn_in(world, region);
    let p = |k: &str, v: &str| {
        Parameter::builder()
            .parameter_key(k)
            .parameter_value(v)
            .build()
    };
    block(
        c.create_stack()
            .stack_name(STACK)
            .template_body(stack_template().replace("us-east-1a", &format!("{region}a")))
            .parameters(p("WorkerAMI", ami))
            .parameters(p("InstanceProfile", INSTANCE_PROFILE))
            .parameters(p("InstanceType", "t2.micro"))
            .send(),
    )
    .expect("CreateStack");
    assert_eq!(stack_in(world, region).0, "CREATE_COMPLETE");
}

/// The stack's status and parameters.
pub fn stack(world: &TestWorld) -> (String, BTreeMap<String, String>) {
    stack_in(world, "us-east-1")
}

/// [`stack`] in `region`.
pub fn stack_in(world: &TestWorld, region: &str) -> (String, BTreeMap<String, String>) {
    let c = cfn_in(world, region);
    let out = block(c.describe_stacks().stack_name(STACK).send()).expect("DescribeStacks");
    let s = &out.stacks()[0];
    (
        s.stack_status().expect("status").as_str().to_string(),
        s.parameters()
            .iter()
            .map(|p| {
                (
                    p.parameter_key().unwrap_or_default().to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

/// The image of the launch template's latest version.
pub fn launch_template_image(world: &TestWorld) -> String {
    let c = ec2(world);
    let out = block(
        c.describe_launch_template_versions()
            .launch_template_name("mail-ape-web-worker")
            .versions("$Latest")
            .send(),
    )
    .expect("DescribeLaunchTemplateVersions");
    out.launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.image_id())
        .expect("ImageId")
        .to_string()
}
