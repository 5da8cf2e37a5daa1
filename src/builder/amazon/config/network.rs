//! Where the instance runs and who may reach it: VPC and subnet (by id or filter), security
//! groups (by id or filter), and the sources of the temporary security group.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::checks::{error_at, flag, is_deferred, opt_string, strings_at, warning_at};
use crate::template::decode::{Dx, Obj};

/// `subnet_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFilter {
    /// `filters`: DescribeSubnets filters.
    pub filters: BTreeMap<String, String>,
    /// `most_free`: the matching subnet with the most free addresses. Default false.
    pub most_free: bool,
    /// `random`: a random matching subnet. Default false.
    pub random: bool,
}

/// `vpc_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcFilter {
    /// `filters`: DescribeVpcs filters.
    pub filters: BTreeMap<String, String>,
}

/// `security_group_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupFilter {
    /// `filters`: DescribeSecurityGroups filters.
    pub filters: BTreeMap<String, String>,
}

/// A filter object: its `filters` map and the object, for the caller's other keys and
/// `finish`.
pub(super) fn filters<'n>(
    obj: &mut Obj<'n>,
    dx: &mut Dx,
    key: &'static str,
    what: &str,
) -> Option<(BTreeMap<String, String>, Obj<'n>)> {
    let mut o = obj.object(dx, key, what)?;
    let filters = o.string_map(dx, "filters").unwrap_or_default();
    Some((filters, o))
}

/// `security_group_id` or `security_group_ids` (not both): the existing groups to launch in.
pub(super) fn security_groups(obj: &mut Obj, dx: &mut Dx) -> Vec<String> {
    let one = opt_string(obj, dx, "security_group_id");
    let many: Vec<String> = obj
        .strings(dx, "security_group_ids")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    match (one, many.is_empty()) {
        (Some(_), false) => {
            error_at(
                obj,
                dx,
                "security_group_ids",
                "Only one of security_group_id or security_group_ids can be specified.",
                Some("put every group in security_group_ids"),
            );
            many
        }
        (Some(id), true) => vec![id],
        (None, _) => many,
    }
}

fn source_cidrs(obj: &mut Obj, dx: &mut Dx) -> Option<Vec<String>> {
    const KEY: &str = "temporary_security_group_source_cidrs";
    let items = strings_at(obj, dx, KEY)?;
    let mut out = Vec::new();
    for item in items {
        if item.value.is_empty() {
            continue;
        }
        if !is_deferred(&item.value) && !valid_cidr(&item.value) {
            let d = dx.error(
                item.span,
                &item.path,
                format!(
                    "Error parsing CIDR in {KEY}: invalid CIDR address: {}",
                    item.value
                ),
            );
            d.notes.push(
                "help: write an address with a prefix length, e.g. \"203.0.113.7/32\"".into(),
            );
        }
        out.push(item.value);
    }
    (!out.is_empty()).then_some(out)
}

/// An IPv4 or IPv6 CIDR block (`address/prefix`).
pub fn valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    !len.is_empty()
        && len.chars().all(|c| c.is_ascii_digit())
        && len.parse::<u8>().is_ok_and(|l| l <= max)
}

/// `security_group_filter` (as Packer: a filter without filters is no filter).
pub(super) fn security_group_filter(obj: &mut Obj, dx: &mut Dx) -> Option<SecurityGroupFilter> {
    filters(obj, dx, "security_group_filter", "security group filter").and_then(|(filters, o)| {
        o.finish(dx);
        (!filters.is_empty()).then_some(SecurityGroupFilter { filters })
    })
}

/// `subnet_filter`, with `most_free` and `random`.
pub(super) fn subnet_filter(obj: &mut Obj, dx: &mut Dx) -> Option<SubnetFilter> {
    filters(obj, dx, "subnet_filter", "subnet filter").and_then(|(filters, mut o)| {
        let f = SubnetFilter {
            filters,
            most_free: flag(&mut o, dx, "most_free").unwrap_or(false),
            random: flag(&mut o, dx, "random").unwrap_or(false),
        };
        o.finish(dx);
        (!f.filters.is_empty()).then_some(f)
    })
}

/// `vpc_filter`.
pub(super) fn vpc_filter(obj: &mut Obj, dx: &mut Dx) -> Option<VpcFilter> {
    filters(obj, dx, "vpc_filter", "VPC filter").and_then(|(filters, o)| {
        o.finish(dx);
        (!filters.is_empty()).then_some(VpcFilter { filters })
    })
}

/// Who may reach the communicator port through the temporary security group.
#[derive(Debug)]
pub(super) struct TemporaryGroupSources {
    /// `temporary_security_group_source_cidrs`.
    pub cidrs: Option<Vec<String>>,
    /// `temporary_security_group_source_public_ip`.
    pub public_ip: bool,
    /// `temporary_security_group_source_public_ip_url`.
    pub public_ip_url: Option<String>,
}

/// The temporary security group's sources: CIDRs or this machine's public IP (not both), the
/// lookup URL, and warnings when `groups_given` (existing groups: no temporary group).
pub(super) fn temporary_group_sources(
    obj: &mut Obj,
    dx: &mut Dx,
    groups_given: bool,
) -> TemporaryGroupSources {
    let cidrs = source_cidrs(obj, dx);
    let public_ip = flag(obj, dx, "temporary_security_group_source_public_ip").unwrap_or(false);
    let public_ip_url = opt_string(obj, dx, "temporary_security_group_source_public_ip_url");
    if cidrs.is_some() && public_ip {
        error_at(
            obj,
            dx,
            "temporary_security_group_source_public_ip",
            "Only one of temporary_security_group_source_cidrs or temporary_security_group_source_public_ip can be specified.",
            None,
        );
    }
    if let Some(url) = &public_ip_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            error_at(
                obj,
                dx,
                "temporary_security_group_source_public_ip_url",
                format!("`temporary_security_group_source_public_ip_url` must be an http:// or https:// URL, found \"{url}\""),
                None,
            );
        } else if !public_ip {
            warning_at(
                obj,
                dx,
                "temporary_security_group_source_public_ip_url",
                "`temporary_security_group_source_public_ip_url` has no effect without \"temporary_security_group_source_public_ip\": true",
                None,
            );
        }
    }
    if groups_given {
        for key in [
            "temporary_security_group_source_cidrs",
            "temporary_security_group_source_public_ip",
        ] {
            if obj.has(key) {
                warning_at(
                    obj,
                    dx,
                    key,
                    format!("`{key}` has no effect when security groups are given"),
                    Some("the temporary security group is only created when security_group_id(s) and security_group_filter are absent"),
                );
            }
        }
    }
    TemporaryGroupSources {
        cidrs,
        public_ip,
        public_ip_url,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn security_groups_merge_but_not_both_keys() {
        assert_eq!(
            ok(r#""security_group_id": "sg-1""#).run.security_group_ids,
            vec!["sg-1"]
        );
        assert_eq!(
            ok(r#""security_group_ids": ["sg-1", "sg-2"]"#)
                .run
                .security_group_ids,
            vec!["sg-1", "sg-2"]
        );
        assert_eq!(
            errs(r#""security_group_id": "sg-1", "security_group_ids": ["sg-2"]"#),
            vec!["Only one of security_group_id or security_group_ids can be specified."]
        );
    }

    #[test]
    fn temporary_security_group_options() {
        let c =
            ok(r#""temporary_security_group_source_cidrs": ["203.0.113.7/32", "2001:db8::/48"]"#);
        assert_eq!(
            c.run.temporary_security_group_source_cidrs,
            Some(vec![
                "203.0.113.7/32".to_string(),
                "2001:db8::/48".to_string()
            ])
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_cidrs": ["nope", "10.0.0.0/33", "10.0.0.1"]"#),
            vec![
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: nope",
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: 10.0.0.0/33",
                "Error parsing CIDR in temporary_security_group_source_cidrs: invalid CIDR address: 10.0.0.1",
            ]
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_cidrs": "10.0.0.0/8", "temporary_security_group_source_public_ip": true"#),
            vec!["Only one of temporary_security_group_source_cidrs or temporary_security_group_source_public_ip can be specified."]
        );
        let c = ok(
            r#""temporary_security_group_source_public_ip": true, "temporary_security_group_source_public_ip_url": "https://ip.example/""#,
        );
        assert!(c.run.temporary_security_group_source_public_ip);
        assert_eq!(
            c.run
                .temporary_security_group_source_public_ip_url
                .as_deref(),
            Some("https://ip.example/")
        );
        assert_eq!(
            errs(r#""temporary_security_group_source_public_ip": true, "temporary_security_group_source_public_ip_url": "ip.example""#),
            vec!["`temporary_security_group_source_public_ip_url` must be an http:// or https:// URL, found \"ip.example\""]
        );
        let (_, d) = ebs(
            r#""security_group_id": "sg-1", "temporary_security_group_source_cidrs": ["10.0.0.0/8"]"#,
        );
        assert_eq!(
            warnings(&d),
            vec!["`temporary_security_group_source_cidrs` has no effect when security groups are given"]
        );
    }

    #[test]
    fn filters_and_network() {
        let c = ok(
            r#""subnet_filter": {"filters": {"tag:Name": "build"}, "most_free": true}, "vpc_filter": {"filters": {"isDefault": "true"}},
            "security_group_filter": {"filters": {"tag:Class": "packer"}}, "availability_zone": "us-east-1a""#,
        );
        let s = c.run.subnet_filter.unwrap();
        assert!(s.most_free && !s.random);
        assert_eq!(c.run.vpc_filter.unwrap().filters.len(), 1);
        assert!(c.run.security_group_filter.is_some());
        assert_eq!(c.run.availability_zone.as_deref(), Some("us-east-1a"));
        // A filter without filters is no filter, as in Packer.
        assert_eq!(
            ok(r#""subnet_filter": {"random": true}"#).run.subnet_filter,
            None
        );
    }
}
