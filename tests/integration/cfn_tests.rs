//! From AMI to running stack, end to end against a test world of each test's own: `imgbuild
//! build` of a `communicator: none` template (a real AMI in moto's EC2) followed by the
//! `cloudformation-update` and `ssm-parameter` post-processors against moto's CloudFormation and
//! SSM (the same moto server, one port for all services).
//!
//! The stack is shaped like the seed's `cloudformation/web_worker.yaml`
//! (`tests/fixtures/cfn/web_worker.yaml`): `WorkerAMI` feeds a launch configuration and a launch
//! template. Assertions read the emulator back: the stack's parameters, the launch template's
//! image, the SSM parameters' values, versions and tags, and that the AMI exists after a failed
//! update.
//!
//! What moto 5.2.1 cannot emulate: its stack updates are synchronous (the stack is
//! `UPDATE_COMPLETE` when UpdateStack returns, with two stack-level events and no resource
//! events) and it never rolls back: a resource that fails to update makes UpdateStack itself
//! return the error. So the asynchronous path (`UPDATE_ROLLBACK_COMPLETE` and the failed
//! resources' reasons from the events) is covered by unit tests of its pure parts
//! (`post_processor::cloudformation::tests`), and here the failure is a drifted resource
//! (its launch template deleted behind CloudFormation's back), which moto reports from
//! UpdateStack.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::support::build::{ami_from_stdout, build, builder, env, SOURCE_AMI};
use crate::support::cfn::{
    block, create_stack, create_stack_in, ec2, launch_template_image, ssm, stack, stack_in,
    INSTANCE_PROFILE, STACK,
};
use crate::support::cli::{Run, Scratch};
use crate::support::state::{assert_nothing_left, state};
use crate::support::world::TestWorld;

/// The web worker's AMI name: `{{timestamp}}` has one-second resolution (and is the same for
/// every build of one run), so a `{{uuid}}` keeps two builds in one second apart.
const AMI_NAME: &str = "web-worker-{{timestamp}}-{{uuid}}";

/// The world's builder named `name`, with the web worker's AMI name.
fn web_worker(world: &TestWorld, name: &str, extra: Value) -> Value {
    let mut extra = extra;
    extra["name"] = json!(name);
    extra["ami_name"] = json!(AMI_NAME);
    builder(world, extra)
}

fn template(world: &TestWorld, extra: Value, post_processors: Value) -> String {
    json!({
        "variables": {"project": "imgbuild", "stack": STACK},
        "builders": [web_worker(world, "web_worker", extra)],
        "post-processors": post_processors
    })
    .to_string()
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

fn ami_of(stdout: &str, region: &str) -> String {
    ami_from_stdout(stdout, region)
}

/// The AMI a build created in its region, from the progress line (also when the build failed
/// after creating it, when there is no artifact list).
fn created_ami(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("==> web_worker: AMI: "))
        .unwrap_or_else(|| panic!("no `AMI: ami-...` line in:\n{stdout}"))
        .trim()
        .to_string()
}

/// Asserts that `needle` is in `hay`, showing both otherwise.
fn has(hay: &str, needle: &str) {
    assert!(hay.contains(needle), "{needle:?} not in:\n{hay}");
}

#[test]
fn cfn_update_sets_worker_ami_keeps_the_other_parameters_and_a_second_update_is_no_update() {
    let world = world_or_skip!();
    let e = env(&world);
    create_stack(&world, SOURCE_AMI);
    create_stack_in(&world, "us-west-2", "ami-0badc0de");
    let (_, before) = stack(&world);
    let ep = world.ec2_endpoint().to_string();
    let update = json!({"type": "cloudformation-update", "stack_name": "{{user `stack`}}",
                        "parameter": "WorkerAMI", "custom_endpoint_cloudformation": ep,
                        "timeout": "2m"});
    // Two chains updating the same stack: the second finds it already on the new AMI. A
    // third updates the stack of each region with the AMI copied there.
    let per_region = json!({"type": "cloudformation-update", "parameter": "WorkerAMI",
                            "stacks": {"us-east-1": STACK, "us-west-2": STACK},
                            "custom_endpoint_cloudformation": ep});
    let t = template(
        &world,
        json!({"ami_regions": ["us-west-2"]}),
        json!([update.clone(), update, per_region]),
    );
    let s = Scratch::new().with("t.json", &t);
    let r = build(&s, &e, &["t.json"], &[]);
    ok(&r);
    let ami = ami_of(&r.stdout, "us-east-1");
    let west = ami_of(&r.stdout, "us-west-2");
    let (status, west_params) = stack_in(&world, "us-west-2");
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(west_params["WorkerAMI"], west);
    assert_eq!(west_params["InstanceType"], "t2.micro");
    has(
        &r.stdout,
        "==> web_worker (cloudformation-update): Stack web_worker (us-west-2) is UPDATE_COMPLETE after ",
    );
    assert_eq!(
        r.stdout
            .matches(&format!("Stack web_worker (us-east-1) already uses {ami} as WorkerAMI: no updates are to be performed\n"))
            .count(),
        2,
        "{}",
        r.stdout
    );

    // The emulator: the parameter is the new AMI, the others kept their values, and the
    // resources that use it were updated.
    let (status, after) = stack(&world);
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(after["WorkerAMI"], ami);
    assert_eq!(after["InstanceProfile"], INSTANCE_PROFILE);
    assert_eq!(after["InstanceType"], "t2.micro");
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert_eq!(launch_template_image(&world), ami);

    // The output: what is updated, the stack's events as progress, the outcome; then the
    // second update says there was nothing to do.
    let out = &r.stdout;
    has(
        out,
        "==> web_worker: Running post-processor: cloudformation-update\n",
    );
    has(out, &format!(
        "==> web_worker (cloudformation-update): Updating stack web_worker (us-east-1, CREATE_COMPLETE): WorkerAMI={ami}, keeping InstanceProfile, InstanceType\n"
    ));
    has(out, "==> web_worker (cloudformation-update): Waiting for stack web_worker (us-east-1) to be UPDATE_COMPLETE (at most 2 minutes; an interrupt stops the wait, not the update)\n");
    has(out, "==> web_worker (cloudformation-update): web_worker: web_worker (AWS::CloudFormation::Stack): UPDATE_IN_PROGRESS: User Initiated\n");
    has(out, "==> web_worker (cloudformation-update): web_worker: web_worker (AWS::CloudFormation::Stack): UPDATE_COMPLETE\n");
    has(
        out,
        "==> web_worker (cloudformation-update): Stack web_worker (us-east-1) is UPDATE_COMPLETE after ",
    );
    has(out, &format!(": WorkerAMI={ami}\n"));
    has(out, &format!(
        "==> web_worker (cloudformation-update): Stack web_worker (us-east-1) already uses {ami} as WorkerAMI: no updates are to be performed\n"
    ));
    // Only the events of this update are shown, not the stack's creation.
    // Two updates happened (us-east-1 by the first chain, us-west-2 by the third); the
    // no-update ones have no events.
    assert!(!out.contains("CREATE_COMPLETE\n"), "{out}");
    assert_eq!(
        out.matches("UPDATE_IN_PROGRESS: User Initiated").count(),
        2,
        "{out}"
    );
}

#[test]
fn cfn_failed_updates_fail_the_build_with_the_reason_and_keep_the_ami() {
    let world = world_or_skip!();
    let e = env(&world);
    create_stack(&world, SOURCE_AMI);
    // Drift: the stack's launch template is deleted behind CloudFormation's back, so updating
    // it fails (moto reports that from UpdateStack; AWS would roll the stack back).
    block(
        ec2(&world)
            .delete_launch_template()
            .launch_template_name("mail-ape-web-worker")
            .send(),
    )
    .expect("DeleteLaunchTemplate");
    let ep = world.ec2_endpoint().to_string();
    let t = template(
        &world,
        json!({}),
        json!([
            {"type": "cloudformation-update", "stack_name": STACK, "parameter": "WorkerAMI",
             "custom_endpoint_cloudformation": ep},
            {"type": "cloudformation-update", "stack_name": "no_such_stack", "parameter": "WorkerAMI",
             "custom_endpoint_cloudformation": ep},
            {"type": "cloudformation-update", "stack_name": STACK, "parameter": "ImageId",
             "custom_endpoint_cloudformation": ep},
            {"type": "cloudformation-update", "stack_name": STACK, "parameter": "WorkerAMI",
             "region": "eu-west-1", "custom_endpoint_cloudformation": ep}
        ]),
    );
    let s = Scratch::new().with("t.json", &t);
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let ami = created_ami(&r.stdout);
    let err = &r.stderr;
    // Each failure, with CloudFormation's reason and how to retry with the AMI that exists.
    has(err, &format!(
        "Post-processor failed: cloudformation-update: updating stack web_worker (us-east-1) to {ami}: InvalidLaunchTemplateId.NotFound: The specified launch template, with template ID lt-"
    ));
    has(err, &format!(
        "does not exist; the AMI {ami} (us-east-1) exists and was kept; retry the stack update with: aws cloudformation update-stack --region us-east-1 --stack-name web_worker --use-previous-template --parameters ParameterKey=WorkerAMI,ParameterValue={ami} ParameterKey=InstanceProfile,UsePreviousValue=true ParameterKey=InstanceType,UsePreviousValue=true"
    ));
    has(err, "Post-processor failed: cloudformation-update: describing stack no_such_stack (us-east-1): ValidationError: Stack with id no_such_stack does not exist");
    has(err, "Post-processor failed: cloudformation-update: stack web_worker (us-east-1) has no parameter ImageId (its parameters: WorkerAMI, InstanceProfile, InstanceType)");
    has(err, "Post-processor failed: cloudformation-update: the artifact has no AMI in eu-west-1 for stack web_worker (its AMIs are in: us-east-1); add eu-west-1 to ami_regions");
    has(err, &format!(
        "1 of 1 build(s) failed (web_worker); the AMIs of builds that failed after creating them were kept (web_worker: us-east-1:{ami})"
    ));
    // The AMI exists (and nothing else the build made); the stack was not pointed at it by us.
    let after = state(&world);
    assert!(
        after["us-east-1"].images.contains_key(&ami),
        "{ami} is gone"
    );
    assert_nothing_left(&before, &after, &[&ami], "after failed stack updates");
}

/// An SSM parameter's value, version, data type and tags in `region`.
fn parameter(
    world: &TestWorld,
    region: &str,
    name: &str,
) -> (String, i64, String, BTreeMap<String, String>) {
    let c = ssm(world, region);
    let p = block(c.get_parameter().name(name).send())
        .unwrap_or_else(|e| panic!("GetParameter {name} in {region}: {e:?}"));
    let p = p.parameter().expect("parameter");
    let tags = block(
        c.list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send(),
    )
    .expect("ListTagsForResource");
    (
        p.value().unwrap_or_default().to_string(),
        p.version(),
        p.data_type().unwrap_or_default().to_string(),
        tags.tag_list()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    )
}

fn put_parameter(world: &TestWorld, region: &str, name: &str, value: &str) {
    block(
        ssm(world, region)
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send(),
    )
    .expect("PutParameter");
}

#[test]
fn ssm_parameter_publishes_each_regions_ami_with_tags_and_overwrites_only_when_told() {
    let world = world_or_skip!();
    let e = env(&world);
    put_parameter(
        &world,
        "us-east-1",
        "/images/web-worker/current",
        "ami-00000000",
    );
    put_parameter(
        &world,
        "us-east-1",
        "/images/web-worker/pinned",
        "ami-11111111",
    );
    let ep = world.ec2_endpoint().to_string();
    let tags = json!({"Project": "{{user `project`}}", "Source": "{{ .SourceAMI }}"});
    let t = template(
        &world,
        json!({"ami_regions": ["us-west-2"]}),
        json!([
            // New, in both regions, with tags and the AMI data type.
            {"type": "ssm-parameter", "parameter_name": "/images/{{ build_name }}/latest", "tags": tags,
             "description": "web worker from {{ .SourceAMI }}", "data_type": "aws:ec2:image",
             "custom_endpoint_ssm": ep},
            // Existing, replaced (tags added afterwards), in one region only.
            {"type": "ssm-parameter", "parameter_name": "/images/web-worker/current", "overwrite": true,
             "tags": {"Project": "imgbuild"}, "region": "us-east-1", "custom_endpoint_ssm": ep}
        ]),
    );
    let s = Scratch::new().with("t.json", &t);
    let r = build(&s, &e, &["t.json"], &[]);
    ok(&r);
    let east = ami_of(&r.stdout, "us-east-1");
    let west = ami_of(&r.stdout, "us-west-2");
    let want_tags: BTreeMap<String, String> = [
        ("Project".to_string(), "imgbuild".to_string()),
        ("Source".to_string(), SOURCE_AMI.to_string()),
    ]
    .into_iter()
    .collect();
    for (region, ami) in [("us-east-1", &east), ("us-west-2", &west)] {
        let (value, version, data_type, tags) =
            parameter(&world, region, "/images/web_worker/latest");
        assert_eq!(&value, ami, "{region}");
        assert_eq!(version, 1, "{region}");
        assert_eq!(data_type, "aws:ec2:image", "{region}");
        assert_eq!(tags, want_tags, "{region}");
        has(&r.stdout, &format!(
            "==> web_worker (ssm-parameter): Published {ami} as SSM parameter /images/web_worker/latest in {region} (version 1)\n"
        ));
    }
    let (value, version, _, tags) = parameter(&world, "us-east-1", "/images/web-worker/current");
    assert_eq!((value.as_str(), version), (east.as_str(), 2));
    assert_eq!(tags.get("Project").map(String::as_str), Some("imgbuild"));
    // `region` kept it out of us-west-2.
    let west_current = block(
        ssm(&world, "us-west-2")
            .get_parameter()
            .name("/images/web-worker/current")
            .send(),
    );
    assert!(west_current.is_err(), "{west_current:?}");

    // Without `overwrite`, an existing parameter is an error that says what to do, and keeps
    // its value. The endpoint comes from AWS_ENDPOINT_URL_SSM this time (aws-config).
    let t = template(
        &world,
        json!({}),
        json!([{"type": "ssm-parameter", "parameter_name": "/images/web-worker/pinned"}]),
    );
    let s2 = Scratch::new().with("t.json", &t);
    let r2 = build(&s2, &e, &["t.json"], &[("AWS_ENDPOINT_URL_SSM", &ep)]);
    assert_eq!(r2.code, 1, "stdout:\n{}\nstderr:\n{}", r2.stdout, r2.stderr);
    let ami2 = created_ami(&r2.stdout);
    has(&r2.stderr, "Post-processor failed: ssm-parameter: SSM parameter /images/web-worker/pinned already exists in us-east-1; set \"overwrite\": true to replace its value");
    has(
        &r2.stderr,
        &format!("were kept (web_worker: us-east-1:{ami2})"),
    );
    let (value, version, _, _) = parameter(&world, "us-east-1", "/images/web-worker/pinned");
    assert_eq!((value.as_str(), version), ("ami-11111111", 1));
}

#[test]
fn cfn_and_ssm_options_are_checked_before_anything_is_built() {
    // No world needed: `validate` makes no AWS call.
    let t = json!({
        "builders": [{"type": "amazon-ebs", "region": "us-east-1", "source_ami": "ami-12345678",
                      "instance_type": "t3.micro", "communicator": "none", "ami_name": "x-{{timestamp}}"}],
        "post-processors": [
            {"type": "cloudformation-update", "stack_name": "web_worker", "parameter": "Worker AMI",
             "capabilities": ["CAPABILITY_IAM", "CAPABILITY_ADMIN"]},
            {"type": "ssm-parameter", "parameter_name": "images/web", "overwrite": "yes please"}
        ]
    })
    .to_string();
    let s = Scratch::new().with("t.json", &t);
    let r = s.run(&["validate", "t.json"]);
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for m in [
        "`parameter` \"Worker AMI\" is not a CloudFormation parameter name",
        "unknown capability \"CAPABILITY_ADMIN\"",
        "`parameter_name` \"images/web\" is not an SSM parameter name: a name with `/` must start with `/`",
        "`overwrite` must be true or false, found \"yes please\"",
        "t.json:",
    ] {
        has(&r.stderr, m);
    }
}

/// Regression: README's test command failed on a fresh machine when
/// `ssm_parameter_publishes_each_regions_ami_with_tags_and_overwrites_only_when_told` built the
/// web worker twice in one second with `web-worker-{{timestamp}}`: the second build's AMI name
/// was taken. Two builds of one run share their `{{timestamp}}` (one clock per run), so this is
/// "two builds in one second" every time, not only on a fast machine.
#[test]
fn two_builds_in_one_second_do_not_collide_on_the_ami_name() {
    let world = world_or_skip!();
    let e = env(&world);
    let t = json!({
        "variables": {"project": "imgbuild", "stack": STACK},
        "builders": [
            web_worker(&world, "web_worker", json!({})),
            web_worker(&world, "web_worker_again", json!({}))
        ]
    })
    .to_string();
    let s = Scratch::new().with("t.json", &t);
    let before = state(&world);
    let r = build(&s, &e, &["t.json"], &[]);
    ok(&r);
    let after = state(&world);
    let names: Vec<&str> = after["us-east-1"]
        .images
        .iter()
        .filter(|(id, _)| !before["us-east-1"].images.contains_key(*id))
        .map(|(_, (name, _, _))| name.as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}\n{}", r.stdout);
    assert_ne!(names[0], names[1]);
    // The same second: the names differ only in their unique part.
    let second = |name: &str| {
        name.strip_prefix("web-worker-")
            .and_then(|rest| rest.split_once('-'))
            .map(|(ts, _)| ts.to_string())
            .unwrap_or_else(|| panic!("{name} is not web-worker-<timestamp>-<uuid>"))
    };
    assert_eq!(second(names[0]), second(names[1]), "{names:?}");
}
