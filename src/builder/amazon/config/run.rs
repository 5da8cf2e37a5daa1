//! The instance to launch (Packer's `RunConfig`): type, source image, placement, shutdown
//! behaviour, user data, metadata options; its network options are in [`super::network`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::checks::{
    error_at, flag, is_deferred, local_path_problem, num, one_of, opt_string, relative_path_help,
    required_nonempty, unsupported_if_set, Want,
};
use crate::template::decode::{Dx, Obj};

use super::network::{
    filters, security_group_filter, security_groups, subnet_filter, temporary_group_sources,
    vpc_filter, SecurityGroupFilter, SubnetFilter, VpcFilter,
};
use super::tags::{decode_tags, Tags};

/// The instance to launch (Packer's `RunConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// `instance_type` (required unless `spot_instance_types` is given).
    pub instance_type: String,
    /// Spot options (`spot_price` ...); on-demand unless `spot_price` is set.
    pub spot: super::spot::SpotConfig,
    /// `source_ami`: the image to start from. With `source_ami_filter` as well, both apply.
    pub source_ami: Option<String>,
    /// `source_ami_filter`: find the source image (needs `owners` when `source_ami` is absent).
    pub source_ami_filter: Option<SourceAmiFilter>,
    /// `associate_public_ip_address`: default unset: the subnet's setting.
    pub associate_public_ip_address: Option<bool>,
    /// `availability_zone`.
    pub availability_zone: Option<String>,
    /// `disable_stop_instance`: do not stop the instance before creating the image (a
    /// provisioner must stop it). Default false.
    pub disable_stop_instance: bool,
    /// `ebs_optimized`. Default false.
    pub ebs_optimized: bool,
    /// `enable_t2_unlimited` (t2 types) or `enable_unlimited_credits` (later Packer; t2, t3,
    /// t3a, t4g): launch with unlimited CPU credits. Default false.
    pub enable_unlimited_credits: bool,
    /// `iam_instance_profile`: instance profile name for the build instance.
    pub iam_instance_profile: Option<String>,
    /// `skip_profile_validation`: do not check that `iam_instance_profile` exists. Default
    /// false.
    pub skip_profile_validation: bool,
    /// `shutdown_behavior`: what a shutdown from inside the instance does. Default `stop`.
    pub shutdown_behavior: ShutdownBehavior,
    /// `security_group_id` / `security_group_ids` (one of them): existing groups for the
    /// instance; then no temporary group is created.
    pub security_group_ids: Vec<String>,
    /// `security_group_filter`: find existing groups.
    pub security_group_filter: Option<SecurityGroupFilter>,
    /// `run_tags` (and the block form `run_tag`): tags of the build instance. The builder adds
    /// `Name: Packer Builder` when no `Name` is given, as Packer does.
    pub run_tags: Tags,
    /// `subnet_id`.
    pub subnet_id: Option<String>,
    /// `subnet_filter`: find the subnet (used when `subnet_id` is absent).
    pub subnet_filter: Option<SubnetFilter>,
    /// `vpc_id`.
    pub vpc_id: Option<String>,
    /// `vpc_filter`: find the VPC (used when `vpc_id` is absent).
    pub vpc_filter: Option<VpcFilter>,
    /// `tenancy` (or `placement.tenancy`): default unset: the VPC's.
    pub tenancy: Option<Tenancy>,
    /// `temporary_security_group_source_cidrs`: who may reach the communicator port through
    /// the temporary security group. Unset by default: **imgbuild does not default to
    /// `0.0.0.0/0` as Packer does**; the builder decides the secure default.
    pub temporary_security_group_source_cidrs: Option<Vec<String>>,
    /// `temporary_security_group_source_public_ip` (later Packer): allow only this machine's
    /// public IP (looked up at build time). Default false.
    pub temporary_security_group_source_public_ip: bool,
    /// `temporary_security_group_source_public_ip_url` (imgbuild): where to look the public IP
    /// up. Default `https://checkip.amazonaws.com`.
    pub temporary_security_group_source_public_ip_url: Option<String>,
    /// `user_data`: user data for the instance.
    pub user_data: Option<String>,
    /// `user_data_file`: read the user data from this file (checked to exist).
    pub user_data_file: Option<PathBuf>,
    /// `metadata_options` (later Packer): the instance metadata service of the build instance.
    pub metadata_options: MetadataOptions,
}

/// `shutdown_behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownBehavior {
    Stop,
    Terminate,
}

/// `tenancy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenancy {
    Default,
    Dedicated,
    Host,
}

impl Tenancy {
    pub fn as_str(self) -> &'static str {
        match self {
            Tenancy::Default => "default",
            Tenancy::Dedicated => "dedicated",
            Tenancy::Host => "host",
        }
    }
}

/// `source_ami_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAmiFilter {
    /// `filters`: DescribeImages filters (name to value).
    pub filters: BTreeMap<String, String>,
    /// `owners`: account ids or aliases (`amazon`, `self`, `aws-marketplace`) that own the image.
    pub owners: Vec<String>,
    /// `most_recent`: take the newest match instead of failing on several. Default false.
    pub most_recent: bool,
}

/// `metadata_options`. Every field unset means "not sent": EC2's defaults apply (endpoint
/// enabled, tokens optional unless the source AMI requires IMDSv2, hop limit 1, tags disabled),
/// which are also the values Packer documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `http_endpoint`: `enabled` or `disabled`.
    pub http_endpoint: Option<String>,
    /// `http_tokens`: `optional` or `required` (IMDSv2 only).
    pub http_tokens: Option<String>,
    /// `http_put_response_hop_limit`: 1-64.
    pub http_put_response_hop_limit: Option<u32>,
    /// `instance_metadata_tags`: `enabled` or `disabled`.
    pub instance_metadata_tags: Option<String>,
}

impl RunConfig {
    /// Takes the instance options from the builder object.
    pub fn decode(obj: &mut Obj, dx: &mut Dx) -> RunConfig {
        let instance_type = if obj.has("spot_instance_types") {
            opt_string(obj, dx, "instance_type").unwrap_or_default()
        } else {
            required_nonempty(
                obj,
                dx,
                "instance_type",
                Some("e.g. \"instance_type\": \"t3.micro\""),
            )
        };
        let spot = super::spot::SpotConfig::decode(obj, dx, &instance_type);
        let instance_type = match (&spot.price, instance_type.is_empty()) {
            (Some(_), true) => spot.instance_types.first().cloned().unwrap_or_default(),
            _ => instance_type,
        };
        let (source_ami, source_ami_filter) = source_image(obj, dx);
        let associate_public_ip_address = flag(obj, dx, "associate_public_ip_address");
        let availability_zone = opt_string(obj, dx, "availability_zone");
        let disable_stop_instance = flag(obj, dx, "disable_stop_instance").unwrap_or(false);
        let ebs_optimized = flag(obj, dx, "ebs_optimized").unwrap_or(false);
        let enable_unlimited_credits = unlimited_credits(obj, dx, &instance_type);
        let iam_instance_profile = opt_string(obj, dx, "iam_instance_profile");
        let skip_profile_validation = flag(obj, dx, "skip_profile_validation").unwrap_or(false);
        let shutdown_behavior = shutdown_behavior(obj, dx);
        let security_group_ids = security_groups(obj, dx);
        let security_group_filter = security_group_filter(obj, dx);
        let run_tags = decode_tags(obj, dx, "run_tags", "run_tag");
        let subnet_id = opt_string(obj, dx, "subnet_id");
        let subnet_filter = subnet_filter(obj, dx);
        let vpc_id = opt_string(obj, dx, "vpc_id");
        let vpc_filter = vpc_filter(obj, dx);
        let tenancy = tenancy(obj, dx);
        let groups_given = !security_group_ids.is_empty() || security_group_filter.is_some();
        let sources = temporary_group_sources(obj, dx, groups_given);
        let (user_data, user_data_file) = user_data(obj, dx);
        let metadata_options = metadata_options(obj, dx);

        RunConfig {
            instance_type,
            spot,
            source_ami,
            source_ami_filter,
            associate_public_ip_address,
            availability_zone,
            disable_stop_instance,
            ebs_optimized,
            enable_unlimited_credits,
            iam_instance_profile,
            skip_profile_validation,
            shutdown_behavior,
            security_group_ids,
            security_group_filter,
            run_tags,
            subnet_id,
            subnet_filter,
            vpc_id,
            vpc_filter,
            tenancy,
            temporary_security_group_source_cidrs: sources.cidrs,
            temporary_security_group_source_public_ip: sources.public_ip,
            temporary_security_group_source_public_ip_url: sources.public_ip_url,
            user_data,
            user_data_file,
            metadata_options,
        }
    }
}

/// `source_ami` and `source_ami_filter`: one of them is required, and a filter alone must name
/// the image's owners.
fn source_image(obj: &mut Obj, dx: &mut Dx) -> (Option<String>, Option<SourceAmiFilter>) {
    let source_ami = opt_string(obj, dx, "source_ami");
    let source_ami_filter = source_ami_filter(obj, dx);
    if source_ami.is_none() {
        match &source_ami_filter {
            None => {
                let (span, path) = (obj.head(), obj.path.clone());
                let d = dx.error(
                    span,
                    &path,
                    "A source_ami or source_ami_filter must be specified",
                );
                d.notes.push(
                    "help: e.g. \"source_ami_filter\": {\"filters\": {\"name\": \"ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*\"}, \"owners\": [\"099720109477\"], \"most_recent\": true}".into(),
                );
            }
            Some(f) if f.owners.is_empty() => {
                error_at(
                    obj,
                    dx,
                    "source_ami_filter",
                    "For security reasons, your source AMI filter must declare an owner.",
                    Some("add \"owners\": the account ids or aliases (\"amazon\", \"self\") that publish the image"),
                );
            }
            Some(_) => {}
        }
    }
    (source_ami, source_ami_filter)
}

/// `shutdown_behavior`: `stop` (default) or `terminate`.
fn shutdown_behavior(obj: &mut Obj, dx: &mut Dx) -> ShutdownBehavior {
    match opt_string(obj, dx, "shutdown_behavior").as_deref() {
        None | Some("stop") => ShutdownBehavior::Stop,
        Some("terminate") => ShutdownBehavior::Terminate,
        Some(_) => {
            error_at(
                obj,
                dx,
                "shutdown_behavior",
                "shutdown_behavior only accepts 'stop' or 'terminate' values.",
                None,
            );
            ShutdownBehavior::Stop
        }
    }
}

/// `user_data` or `user_data_file` (not both); the file must exist unless its path holds a
/// build-time value. (The `boot-test` post-processor's overrides are decoded by this too.)
pub fn user_data(obj: &mut Obj, dx: &mut Dx) -> (Option<String>, Option<PathBuf>) {
    let user_data = opt_string(obj, dx, "user_data");
    let user_data_file = opt_string(obj, dx, "user_data_file").map(PathBuf::from);
    if user_data.is_some() && user_data_file.is_some() {
        error_at(
            obj,
            dx,
            "user_data_file",
            "Only one of user_data or user_data_file can be specified.",
            None,
        );
    } else if let Some(p) = &user_data_file {
        let deferred = p.to_str().is_some_and(is_deferred);
        if let Some(why) = (!deferred)
            .then(|| local_path_problem(p, Want::File))
            .flatten()
        {
            let msg = if why == "no such file or directory" {
                format!("user_data_file not found: {}", p.display())
            } else {
                format!("user_data_file is invalid: {}: {why}", p.display())
            };
            let help = relative_path_help(p);
            error_at(obj, dx, "user_data_file", msg, Some(&help));
        }
    }
    (user_data, user_data_file)
}

fn source_ami_filter(obj: &mut Obj, dx: &mut Dx) -> Option<SourceAmiFilter> {
    let (filters, mut o) = filters(obj, dx, "source_ami_filter", "source AMI filter")?;
    let owners: Vec<String> = o
        .strings(dx, "owners")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let most_recent = flag(&mut o, dx, "most_recent").unwrap_or(false);
    o.finish(dx);
    // Packer: a filter with neither filters nor owners is no filter.
    (!filters.is_empty() || !owners.is_empty()).then_some(SourceAmiFilter {
        filters,
        owners,
        most_recent,
    })
}

fn unlimited_credits(obj: &mut Obj, dx: &mut Dx, instance_type: &str) -> bool {
    let t2 = flag(obj, dx, "enable_t2_unlimited").unwrap_or(false);
    let any = flag(obj, dx, "enable_unlimited_credits").unwrap_or(false);
    let family = instance_type.split('.').next().unwrap_or("");
    let known = !instance_type.is_empty() && !is_deferred(instance_type);
    if t2 && known && family != "t2" {
        error_at(
            obj,
            dx,
            "enable_t2_unlimited",
            format!("Error: T2 Unlimited enabled with a non-T2 Instance Type: {instance_type}"),
            Some("use \"enable_unlimited_credits\" for other burstable types (t3, t3a, t4g)"),
        );
    }
    if any && known && !["t2", "t3", "t3a", "t4g"].contains(&family) {
        error_at(
            obj,
            dx,
            "enable_unlimited_credits",
            format!("unlimited credits need a burstable instance type (t2, t3, t3a, t4g), found {instance_type}"),
            None,
        );
    }
    t2 || any
}

fn tenancy(obj: &mut Obj, dx: &mut Dx) -> Option<Tenancy> {
    fn parse(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> (bool, Option<Tenancy>) {
        let Some(v) = opt_string(obj, dx, key) else {
            return (false, None);
        };
        let t = match v.as_str() {
            "default" => Some(Tenancy::Default),
            "dedicated" => Some(Tenancy::Dedicated),
            "host" => Some(Tenancy::Host),
            other => {
                error_at(
                    obj,
                    dx,
                    key,
                    format!("Unknown tenancy type {other}"),
                    Some("use default, dedicated or host"),
                );
                None
            }
        };
        (true, t)
    }
    let (top_set, top) = parse(obj, dx, "tenancy");
    let Some(mut p) = obj.object(dx, "placement", "instance placement") else {
        return top;
    };
    let (inner_set, inner) = parse(&mut p, dx, "tenancy");
    for key in ["host_id", "host_resource_group_arn"] {
        unsupported_if_set(
            &mut p,
            dx,
            key,
            "dedicated host placement is not supported; use \"tenancy\": \"host\" to let EC2 place the instance on a host with auto-placement",
        );
    }
    if top_set && inner_set {
        error_at(
            &mut p,
            dx,
            "tenancy",
            "Only one of tenancy or placement.tenancy can be specified.",
            None,
        );
    }
    p.finish(dx);
    top.or(inner)
}

fn metadata_options(obj: &mut Obj, dx: &mut Dx) -> MetadataOptions {
    let Some(mut o) = obj.object(dx, "metadata_options", "instance metadata options") else {
        return MetadataOptions::default();
    };
    let http_put_response_hop_limit = match num(&mut o, dx, "http_put_response_hop_limit") {
        None | Some(0) => None,
        Some(n) if (1..=64).contains(&n) => Some(n as u32),
        Some(n) => {
            error_at(
                &mut o,
                dx,
                "http_put_response_hop_limit",
                format!("`http_put_response_hop_limit` must be between 1 and 64, found {n}"),
                None,
            );
            None
        }
    };
    let m = MetadataOptions {
        http_endpoint: one_of(&mut o, dx, "http_endpoint", &["enabled", "disabled"]),
        http_tokens: one_of(&mut o, dx, "http_tokens", &["optional", "required"]),
        http_put_response_hop_limit,
        instance_metadata_tags: one_of(
            &mut o,
            dx,
            "instance_metadata_tags",
            &["enabled", "disabled"],
        ),
    };
    o.finish(dx);
    m
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn source_ami_filter_rules() {
        let (c, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u",
            "source_ami_filter": {"filters": {"name": "ubuntu/*", "virtualization-type": "hvm"}, "owners": "099720109477", "most_recent": "true"}}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        let f = c.run.source_ami_filter.unwrap();
        assert_eq!(f.owners, vec!["099720109477"]);
        assert!(f.most_recent);
        assert_eq!(f.filters.get("name").map(String::as_str), Some("ubuntu/*"));

        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u",
            "source_ami_filter": {"filters": {"name": "x"}}}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["For security reasons, your source AMI filter must declare an owner."]
        );
        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "t3.micro", "ssh_username": "u", "source_ami_filter": {}}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["A source_ami or source_ami_filter must be specified"]
        );
        // Both: accepted, as in Packer (DescribeImages gets the id and the filters).
        let c = ok(r#""source_ami_filter": {"filters": {"name": "x"}}"#);
        assert!(c.run.source_ami.is_some() && c.run.source_ami_filter.is_some());
        // Unknown keys inside are reported.
        let errs = errs(r#""source_ami_filter": {"owners": ["self"], "most_recnt": true}"#);
        assert_eq!(
            errs,
            vec!["unknown key `most_recnt` in `source_ami_filter` of builder `b` (source AMI filter)"]
        );
    }

    #[test]
    fn user_data_rules() {
        assert_eq!(
            errs(r#""user_data": "x", "user_data_file": "/nonexistent""#),
            vec!["Only one of user_data or user_data_file can be specified."]
        );
        assert_eq!(
            errs(r#""user_data_file": "/nonexistent/ud.sh""#),
            vec!["user_data_file not found: /nonexistent/ud.sh"]
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ud.sh");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let c = ok(&format!(
            r#""user_data_file": {}"#,
            js(f.display().to_string())
        ));
        assert_eq!(c.run.user_data_file.as_deref(), Some(f.as_path()));
        assert!(all_text(&ebs(r#""user_data_file": "rel/ud.sh""#).1).contains("current directory"));
    }

    #[test]
    fn unlimited_credits_rules() {
        assert_eq!(
            errs(r#""enable_t2_unlimited": true"#),
            vec!["Error: T2 Unlimited enabled with a non-T2 Instance Type: t3.micro"]
        );
        assert!(
            ok(r#""enable_unlimited_credits": true"#)
                .run
                .enable_unlimited_credits
        );
        let (_, d) = raw(
            r#"{"ami_name": "abc", "instance_type": "m5.large", "source_ami": "ami-1", "ssh_username": "u", "enable_unlimited_credits": true}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["unlimited credits need a burstable instance type (t2, t3, t3a, t4g), found m5.large"]
        );
    }

    #[test]
    fn metadata_options_and_imds_support() {
        let c = ok(
            r#""metadata_options": {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 2, "instance_metadata_tags": "disabled"}, "imds_support": "v2.0""#,
        );
        let m = &c.run.metadata_options;
        assert_eq!(m.http_tokens.as_deref(), Some("required"));
        assert_eq!(m.http_put_response_hop_limit, Some(2));
        assert_eq!(c.ami.imds_support, Some(ImdsSupport::V2));
        assert_eq!(
            errs(
                r#""metadata_options": {"http_endpoint": "on", "http_tokens": "always", "http_put_response_hop_limit": 65}, "imds_support": "v1""#
            ),
            vec![
                "`imds_support` must be one of `v2.0`, found \"v1\"",
                "`http_put_response_hop_limit` must be between 1 and 64, found 65",
                "`http_endpoint` must be one of `enabled`, `disabled`, found \"on\"",
                "`http_tokens` must be one of `optional`, `required`, found \"always\"",
            ]
        );
    }
}
