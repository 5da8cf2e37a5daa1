//! The `ssm-parameter` post-processor (imgbuild's own): publishes the AMI ID to an SSM
//! Parameter Store parameter, the way EC2 Image Builder and Bottlerocket publish their images
//! (`/aws/service/bottlerocket/.../image_id`), so that launch templates and stacks can read it
//! with `resolve:ssm:` or an `AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>` parameter.
//!
//! The parameter is `parameter_name` (`name` is the post-processor's label, Packer's common
//! key). One parameter per region of the artifact (SSM is regional), each holding the AMI of its
//! region; `region` publishes only the AMI of that region. `overwrite` defaults to false, as
//! in `PutParameter`: a parameter that exists is an error unless `overwrite` is true. `tags`
//! are set when the parameter is created; with `overwrite` they are added to it afterwards
//! (`AddTagsToResource`), because SSM refuses tags and overwrite in one request.
//!
//! Credentials are the builder's; the endpoint is `custom_endpoint_ssm`, else
//! `AWS_ENDPOINT_URL_SSM` or `AWS_ENDPOINT_URL` (through aws-config), else AWS's.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use super::context::PpContext;
use super::error::{PpError, SsmError};
use crate::artifact::Artifact;
use crate::aws::Api;
use crate::checks::{error_at, flag, is_deferred, one_of, opt_string};
use crate::template::decode::{Dx, Obj};

/// The data types `PutParameter` accepts for a `String` parameter holding an AMI ID.
pub const DATA_TYPES: &[&str] = &["text", "aws:ec2:image"];

/// `ssm-parameter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmParameterConfig {
    /// `parameter_name`: the parameter's name, e.g. `/images/web/latest` (`name` is the
    /// post-processor's label, as for every post-processor).
    pub name: String,
    /// `overwrite` (default false, as in `PutParameter`).
    pub overwrite: bool,
    pub tags: BTreeMap<String, String>,
    pub description: Option<String>,
    /// `data_type`: `text` (SSM's default) or `aws:ec2:image` (SSM then checks the AMI).
    pub data_type: Option<String>,
    /// `region`: publish only the AMI of this region.
    pub region: Option<String>,
    /// `custom_endpoint_ssm`.
    pub custom_endpoint: Option<String>,
}

impl SsmParameterConfig {
    /// Decodes an `ssm-parameter` post-processor whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> SsmParameterConfig {
        let o = &mut obj;
        let name = match opt_string(o, dx, "parameter_name") {
            Some(n) => {
                if !is_deferred(&n) {
                    if let Some(why) = name_problem(&n) {
                        error_at(
                            o,
                            dx,
                            "parameter_name",
                            format!("`parameter_name` \"{n}\" is not an SSM parameter name: {why}"),
                            Some("e.g. \"/images/web-worker/latest\""),
                        );
                    }
                }
                n
            }
            None => {
                // `name` is every post-processor's label (Packer's common key), taken before
                // this decoder runs: say so when it was probably meant as the parameter.
                let help = if o.has("name") {
                    "`name` is the post-processor's label, as in every Packer post-processor; \
                     the SSM parameter is `parameter_name`, e.g. \"parameter_name\": \"/images/web-worker/latest\""
                } else {
                    "e.g. \"parameter_name\": \"/images/web-worker/latest\""
                };
                error_at(
                    o,
                    dx,
                    "parameter_name",
                    "`ssm-parameter` needs `parameter_name`: the parameter that receives the AMI ID",
                    Some(help),
                );
                String::new()
            }
        };
        let overwrite = flag(o, dx, "overwrite").unwrap_or(false);
        let tags = o.string_map(dx, "tags").unwrap_or_default();
        if tags.len() > 50 {
            error_at(
                o,
                dx,
                "tags",
                format!(
                    "SSM allows at most 50 tags on a parameter, found {}",
                    tags.len()
                ),
                None,
            );
        }
        let description = opt_string(o, dx, "description");
        let data_type = one_of(o, dx, "data_type", DATA_TYPES);
        let region = opt_string(o, dx, "region");
        let custom_endpoint = opt_string(o, dx, "custom_endpoint_ssm");
        obj.finish(dx);
        SsmParameterConfig {
            name,
            overwrite,
            tags,
            description,
            data_type,
            region,
            custom_endpoint,
        }
    }
}

/// Why `name` cannot be an SSM parameter name (SSM's rules), or `None`.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > 1011 {
        return Some("it is longer than 1011 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Some(format!(
            "`{c}` is not allowed (only letters, digits, `_`, `.`, `-` and `/`)"
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Some("a name with `/` must start with `/`".into());
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Some("names starting with `aws` or `ssm` are reserved".into());
    }
    if name.ends_with('/') || name.contains("//") {
        return Some("a path level is empty".into());
    }
    if name.matches('/').count() > 15 {
        return Some("it has more than 15 levels".into());
    }
    None
}

fn tag(k: &str, v: &str) -> Result<Tag, PpError> {
    Tag::builder()
        .key(k)
        .value(v)
        .build()
        .map_err(|e| PpError::Other(format!("tag {k}: {e}")))
}

/// Runs `ssm-parameter` on the artifact.
pub async fn run(
    c: &SsmParameterConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    if input.null {
        ctx.say(target, "the null builder made no AMI: nothing to publish");
        return Ok(());
    }
    let aws = ctx.aws.ok_or(SsmError::NoAws)?;
    let name = ctx.render("parameter_name", &c.name, input, None)?;
    if let Some(why) = name_problem(&name) {
        return Err(SsmError::BadName { name, why }.into());
    }
    let have = input.amis.keys().cloned().collect::<Vec<_>>().join(", ");
    let amis: Vec<(String, String)> = match &c.region {
        Some(r) => {
            let r = ctx.render("region", r, input, None)?;
            let ami = input.amis.get(&r).ok_or_else(|| SsmError::NoAmi {
                region: r.clone(),
                have,
            })?;
            vec![(r, ami.clone())]
        }
        None => input
            .amis
            .iter()
            .map(|(r, a)| (r.clone(), a.clone()))
            .collect(),
    };
    let description = match &c.description {
        Some(d) => Some(ctx.render("description", d, input, None)?),
        None => None,
    };
    let mut tags = Vec::new();
    for (k, v) in &c.tags {
        let k = ctx.render("tags", k, input, None)?;
        let v = ctx.render(&format!("tags `{k}`"), v, input, None)?;
        tags.push((k, v));
    }
    let endpoint = match &c.custom_endpoint {
        Some(e) => Some(ctx.render("custom_endpoint_ssm", e, input, None)?),
        None => None,
    };
    for (region, ami) in &amis {
        let ssm = aws.ssm(region, endpoint.as_deref());
        let mut req = ssm
            .put_parameter()
            .name(&name)
            .value(ami)
            .r#type(ParameterType::String)
            .overwrite(c.overwrite)
            .set_description(description.clone())
            .set_data_type(c.data_type.clone());
        if !c.overwrite {
            for (k, v) in &tags {
                req = req.tags(tag(k, v)?);
            }
        }
        let out = match req.send().await.api() {
            Ok(o) => o,
            Err(e) if e.code_is("ParameterAlreadyExists") => {
                return Err(SsmError::Exists {
                    name: name.clone(),
                    region: region.clone(),
                }
                .into())
            }
            Err(source) => {
                return Err(SsmError::PutParameter {
                    name: name.clone(),
                    region: region.clone(),
                    ami: ami.clone(),
                    source,
                }
                .into())
            }
        };
        if c.overwrite && !tags.is_empty() {
            let mut t = ssm
                .add_tags_to_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&name);
            for (k, v) in &tags {
                t = t.tags(tag(k, v)?);
            }
            t.send().await.api().map_err(|source| SsmError::AddTags {
                name: name.clone(),
                region: region.clone(),
                source,
            })?;
        }
        ctx.say(
            target,
            &format!(
                "Published {ami} as SSM parameter {name} in {region} (version {})",
                out.version()
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn decode_and_defaults() {
        let (c, d) = decode(
            r#"{"parameter_name": "/images/web/{{user `n`}}"}"#,
            SsmParameterConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c,
            SsmParameterConfig {
                name: "/images/web/7".into(),
                overwrite: false,
                tags: BTreeMap::new(),
                description: None,
                data_type: None,
                region: None,
                custom_endpoint: None,
            }
        );
        let (c, d) = decode(
            r#"{"parameter_name": "web-latest", "overwrite": true, "tags": {"Team": "web", "N": 7},
                "description": "the web worker", "data_type": "aws:ec2:image",
                "region": "us-west-2", "custom_endpoint_ssm": "http://127.0.0.1:9"}"#,
            SsmParameterConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert!(c.overwrite);
        assert_eq!(c.tags.get("N").map(String::as_str), Some("7"));
        assert_eq!(c.data_type.as_deref(), Some("aws:ec2:image"));
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.custom_endpoint.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn decode_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "{}",
                "`ssm-parameter` needs `parameter_name`: the parameter that receives the AMI ID",
            ),
            (
                r#"{"parameter_name": "images/web"}"#,
                "`parameter_name` \"images/web\" is not an SSM parameter name: a name with `/` must start with `/`",
            ),
            (
                r#"{"parameter_name": "/aws/service/x"}"#,
                "`parameter_name` \"/aws/service/x\" is not an SSM parameter name: names starting with `aws` or `ssm` are reserved",
            ),
            (
                r#"{"parameter_name": "/images/web latest"}"#,
                "`parameter_name` \"/images/web latest\" is not an SSM parameter name: ` ` is not allowed (only letters, digits, `_`, `.`, `-` and `/`)",
            ),
            (
                r#"{"parameter_name": "/a", "data_type": "image"}"#,
                "`data_type` must be one of `text`, `aws:ec2:image`, found \"image\"",
            ),
            (
                r#"{"parameter_name": "/a", "overwrite": "sometimes"}"#,
                "`overwrite` must be true or false, found \"sometimes\"",
            ),
            (
                r#"{"parameter_name": "/a", "tags": ["x"]}"#,
                "`tags` must be an object of strings, found an array",
            ),
            (
                r#"{"parameter_name": "/a", "tag": {}}"#,
                "unknown key `tag` in builder `b`",
            ),
        ];
        for (text, want) in cases {
            let (_, d) = decode(text, SsmParameterConfig::decode);
            assert_eq!(errors(&d), vec![*want], "{text}");
        }
        // Deferred names are checked once rendered.
        let (_, d) = decode(
            r#"{"parameter_name": "/images/{{ build `ID` }}"}"#,
            SsmParameterConfig::decode,
        );
        assert!(!d.has_errors(), "{d:?}");
        // `name` is the label: the error says where the parameter goes.
        let (_, d) = decode(r#"{"name": "/images/web"}"#, |mut o, dx| {
            o.take("name");
            SsmParameterConfig::decode(o, dx)
        });
        assert!(
            all_text(&d).contains("`name` is the post-processor's label"),
            "{d:?}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("/images/web-worker/latest"), None);
        assert_eq!(name_problem("web_worker.latest"), None);
        assert!(name_problem("/images//x").is_some());
        assert!(name_problem("/images/x/").is_some());
        assert!(name_problem("ssm-thing").is_some());
        assert!(name_problem(&"/a".repeat(16)).is_some());
        assert!(name_problem("").is_some());
    }
}
