//! HCL2 `data "amazon-parameterstore"` against the test world's moto SSM: the build reads the
//! parameters (plain and SecureString, endpoint from `custom_endpoint_ssm` and from
//! AWS_ENDPOINT_URL; a name from a local, as Packer 1.12+ allows) and uses their outputs in
//! locals and provisioners, the SecureString masked;
//! validate makes no AWS call; a missing parameter is a message naming it; an amazon-ebs build
//! (in `.pkr.json`) takes its `source_ami` and tags from a parameter.

use aws_sdk_ssm::types::ParameterType;

use crate::support::build::{ami_from_stdout, build, builder, env, SOURCE_AMI};
use crate::support::cfn::{block, ec2, ssm};
use crate::support::cli::{imgbuild_in, Scratch};

const TEMPLATE: &str = r#"variable "prefix" {
  type = string
}
variable "ep" {
  type = string
}
data "amazon-parameterstore" "plain" {
  name                = local.plain_name
  custom_endpoint_ssm = var.ep
}
data "amazon-parameterstore" "secret" {
  name            = "${var.prefix}/secret"
  with_decryption = true
}
locals {
  greeting   = "hello ${data.amazon-parameterstore.plain.value}"
  plain_name = "${var.prefix}/plain"
}
source "null" "a" {
  communicator = "none"
}
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = [
      "echo '${local.greeting} v${data.amazon-parameterstore.plain.version}' > out.txt",
      "echo secret=${data.amazon-parameterstore.secret.value}",
      "printf %s '${data.amazon-parameterstore.secret.value}' > secret.txt",
    ]
  }
}
"#;

#[test]
fn parameterstore_values_arrive_in_the_build_and_secure_strings_are_masked() {
    let world = world_or_skip!(shared);
    let prefix = format!("/imgbuild-test/hcl-params-{}", std::process::id());
    let secret = "s3cret-parameter-value-1";
    let client = ssm(world, "us-east-1");
    for (name, value, kind) in [
        ("plain", "world", ParameterType::String),
        ("secret", secret, ParameterType::SecureString),
    ] {
        block(
            client
                .put_parameter()
                .name(format!("{prefix}/{name}"))
                .value(value)
                .r#type(kind)
                .overwrite(true)
                .send(),
        )
        .expect("put_parameter");
    }
    let ep = world.ec2_endpoint().to_string();
    let s = Scratch::new().with("t.pkr.hcl", TEMPLATE);
    let pv = format!("prefix={prefix}");
    let epv = format!("ep={ep}");
    let args = ["-var", pv.as_str(), "-var", epv.as_str(), "t.pkr.hcl"];

    // Validate makes no AWS call: no credentials, region or endpoint at all.
    let mut v = vec!["validate", "-color=false"];
    v.extend_from_slice(&args);
    let r = imgbuild_in(s.dir.path(), &v, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let e = env(world);
    let r = build(&s, &e, &args, &[("AWS_ENDPOINT_URL", &ep)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let read = |f: &str| std::fs::read_to_string(s.path(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(read("out.txt"), "hello world v1\n");
    assert_eq!(read("secret.txt"), secret);
    assert_eq!(
        r.stdout.matches("secret=<sensitive>").count(),
        1,
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "leaked:\n{}\n{}",
        r.stdout,
        r.stderr
    );

    // A parameter that does not exist: the build stops before anything runs, naming it. No
    // AWS_ENDPOINT_URL this time: moto is reached through `custom_endpoint_ssm` alone.
    let pv2 = format!("prefix={prefix}/missing");
    let args2 = ["-var", pv2.as_str(), "-var", epv.as_str(), "t.pkr.hcl"];
    let s2 = Scratch::new().with("t.pkr.hcl", TEMPLATE);
    let r = build(&s2, &e, &args2, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "data.amazon-parameterstore.plain: could not read the SSM parameter `{prefix}/missing/plain` in us-east-1: ParameterNotFound"
        )),
        "{}",
        r.stderr
    );
    assert!(!s2.path("out.txt").exists());
}

/// An amazon-ebs build (`.pkr.json`) on the world whose `source_ami` and tags come from a
/// parameter, reached through `custom_endpoint_ssm` alone.
#[test]
fn an_amazon_ebs_build_takes_its_source_ami_and_tags_from_a_parameter() {
    let world = world_or_skip!(shared);
    let name = format!("/imgbuild-test/hcl-params-{}/ami", std::process::id());
    block(
        ssm(world, "us-east-1")
            .put_parameter()
            .name(&name)
            .value(SOURCE_AMI)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send(),
    )
    .expect("put_parameter");
    let mut b = builder(
        world,
        serde_json::json!({
            "source_ami_filter": null,
            "snapshot_tags": null,
            "source_ami": "${data.amazon-parameterstore.ami.value}",
            "tags": {"FromParam": "${data.amazon-parameterstore.ami.value}",
                     "ParamVersion": "${data.amazon-parameterstore.ami.version}"}
        }),
    );
    b.as_object_mut().expect("object").remove("type");
    let t = serde_json::json!({
        "data": {"amazon-parameterstore": {"ami": {"name": name, "custom_endpoint_ssm": world.ec2_endpoint()}}},
        "source": {"amazon-ebs": {"w": b}},
        "build": {"sources": ["source.amazon-ebs.w"]}
    });
    let s = Scratch::new().with("t.pkr.json", &t.to_string());
    let e = env(world);
    let r = build(&s, &e, &["t.pkr.json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ami = ami_from_stdout(&r.stdout, "us-east-1");
    let out = block(ec2(world).describe_images().image_ids(&ami).send()).expect("describe");
    let image = &out.images()[0];
    assert_eq!(
        image.description(),
        Some(format!("built from {SOURCE_AMI}").as_str())
    );
    let mut tags: Vec<(String, String)> = image
        .tags()
        .iter()
        .filter(|t| {
            t.key()
                .is_some_and(|k| k.starts_with("FromParam") || k == "ParamVersion")
        })
        .map(|t| (t.key().unwrap_or("").into(), t.value().unwrap_or("").into()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("FromParam".into(), SOURCE_AMI.into()),
            ("ParamVersion".into(), "1".into())
        ]
    );
}
