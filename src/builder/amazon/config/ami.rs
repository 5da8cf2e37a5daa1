//! The image to create (Packer's `AMIConfig`): name, sharing, encryption, region copies,
//! tags, and the checks Packer makes of them.

use std::collections::BTreeMap;

use crate::checks::{
    error_at, flag, is_deferred, one_of, opt_string, required_nonempty, strings_at, Located,
};
use crate::template::decode::{Dx, Obj};
use crate::template::funcs::clean_resource_name;

use super::tags::{decode_tags, Tags};

/// The image to create (Packer's `AMIConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    /// `ami_name` (required): 3-128 characters of `A-Za-z0-9()[] ./-'@_`. May hold build-time
    /// values (`{{ .SourceAMIName }}`), then it is checked when the build renders it.
    pub ami_name: String,
    /// `ami_description`.
    pub ami_description: Option<String>,
    /// `ami_virtualization_type`: `hvm` (default) or `paravirtual`. CreateImage takes the type
    /// of the source instance, so this only documents it.
    pub ami_virtualization_type: String,
    /// `ami_users`: account ids allowed to launch the AMI.
    pub ami_users: Vec<String>,
    /// `ami_groups`: groups allowed to launch the AMI (`all` makes it public).
    pub ami_groups: Vec<String>,
    /// `ami_product_codes`: product codes to attach.
    pub ami_product_codes: Vec<String>,
    /// `ami_regions`: regions to copy the AMI to, without duplicates and without the build
    /// region (the AMI is already there; when `region` is absent, the builder drops the region
    /// it resolved).
    pub ami_regions: Vec<String>,
    /// `tags` (and the block form `tag`): tags of the AMI (and, unless `snapshot_tags` is given,
    /// not of its snapshots).
    pub tags: Tags,
    /// `ena_support`: enable ENA on the AMI. Default unset: as the source.
    pub ena_support: Option<bool>,
    /// `sriov_support`: enable SR-IOV (`simple`) on the AMI. Default unset: as the source.
    pub sriov_support: Option<bool>,
    /// `force_deregister`: deregister an existing AMI with the same name first. Default false.
    pub force_deregister: bool,
    /// `force_delete_snapshot`: with `force_deregister`, also delete its snapshots. Default
    /// false.
    pub force_delete_snapshot: bool,
    /// `encrypt_boot`: encrypt the AMI's boot volume. Default unset: as the source.
    pub encrypt_boot: Option<bool>,
    /// `kms_key_id`: KMS key for `encrypt_boot` in the build region. Default: the account's
    /// default EBS key.
    pub kms_key_id: Option<String>,
    /// `region_kms_key_ids`: KMS key per copy region (an empty value means that region's
    /// default key). Every region must also be in `ami_regions`, and the other way round.
    pub region_kms_key_ids: BTreeMap<String, String>,
    /// `skip_save_build_region`: do not keep the AMI in the build region (only the copies).
    /// Default false.
    pub skip_save_build_region: bool,
    /// `snapshot_tags` (and the block form `snapshot_tag`): tags of the AMI's snapshots.
    pub snapshot_tags: Tags,
    /// `snapshot_users`: account ids allowed to create volumes from the snapshots.
    pub snapshot_users: Vec<String>,
    /// `snapshot_groups`: groups allowed to create volumes from the snapshots.
    pub snapshot_groups: Vec<String>,
    /// `imds_support` (later Packer): `v2.0` makes instances launched from the AMI require
    /// IMDSv2. Default unset.
    pub imds_support: Option<ImdsSupport>,
}

/// `imds_support`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsSupport {
    /// `v2.0`.
    V2,
}

const AMI_NAME_CHARS: &str = "ami_name should only contain alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)";

impl AmiConfig {
    /// Takes the image options from the builder object; `build_region` is dropped from
    /// `ami_regions`.
    pub fn decode(obj: &mut Obj, dx: &mut Dx, build_region: Option<&str>) -> AmiConfig {
        let ami_name = required_nonempty(obj, dx, "ami_name", None);
        check_ami_name(obj, dx, &ami_name);
        let ami_description = opt_string(obj, dx, "ami_description");
        let ami_virtualization_type =
            one_of(obj, dx, "ami_virtualization_type", &["hvm", "paravirtual"])
                .unwrap_or_else(|| "hvm".to_string());
        let ami_users = obj.strings(dx, "ami_users").unwrap_or_default();
        let ami_groups = obj.strings(dx, "ami_groups").unwrap_or_default();
        let ami_product_codes = obj.strings(dx, "ami_product_codes").unwrap_or_default();
        let tags = decode_tags(obj, dx, "tags", "tag");
        let ena_support = flag(obj, dx, "ena_support");
        let sriov_support = flag(obj, dx, "sriov_support");
        let force_deregister = flag(obj, dx, "force_deregister").unwrap_or(false);
        let force_delete_snapshot = flag(obj, dx, "force_delete_snapshot").unwrap_or(false);
        let encrypt_boot = flag(obj, dx, "encrypt_boot");
        let kms_key_id = opt_string(obj, dx, "kms_key_id");
        let region_kms_key_ids = obj.string_map(dx, "region_kms_key_ids").unwrap_or_default();
        let skip_save_build_region = flag(obj, dx, "skip_save_build_region").unwrap_or(false);
        let snapshot_tags = decode_tags(obj, dx, "snapshot_tags", "snapshot_tag");
        let snapshot_users = obj.strings(dx, "snapshot_users").unwrap_or_default();
        let snapshot_groups = obj.strings(dx, "snapshot_groups").unwrap_or_default();
        let imds_support = one_of(obj, dx, "imds_support", &["v2.0"]).map(|_| ImdsSupport::V2);

        // Packer's order of checks (AMIConfig.Prepare).
        let listed_regions = strings_at(obj, dx, "ami_regions").unwrap_or_default();
        for region in region_kms_key_ids.keys() {
            if !listed_regions.iter().any(|r| &r.value == region) {
                error_at(
                    obj,
                    dx,
                    "region_kms_key_ids",
                    format!("Region {region} is in region_kms_key_ids but not in ami_regions"),
                    Some("add the region to ami_regions, or remove its key"),
                );
            }
        }
        let ami_regions = ami_regions(dx, listed_regions, &region_kms_key_ids, build_region);

        let c = AmiConfig {
            ami_name,
            ami_description,
            ami_virtualization_type,
            ami_users,
            ami_groups,
            ami_product_codes,
            ami_regions,
            tags,
            ena_support,
            sriov_support,
            force_deregister,
            force_delete_snapshot,
            encrypt_boot,
            kms_key_id,
            region_kms_key_ids,
            skip_save_build_region,
            snapshot_tags,
            snapshot_users,
            snapshot_groups,
            imds_support,
        };
        check_encryption(obj, dx, &c);
        c
    }
}

/// Packer's checks of encryption and sharing (AMIConfig.Prepare): KMS keys need
/// `encrypt_boot`, have a valid form, and an AMI or snapshot shared with other accounts cannot
/// use the default key.
fn check_encryption(obj: &mut Obj, dx: &mut Dx, c: &AmiConfig) {
    let AmiConfig {
        ami_users,
        snapshot_users,
        kms_key_id,
        region_kms_key_ids,
        ..
    } = c;
    let encrypting = c.encrypt_boot == Some(true);
    if !ami_users.is_empty() {
        if kms_key_id.is_none() && encrypting {
            error_at(
                obj,
                dx,
                "ami_users",
                "Cannot share AMI encrypted with default KMS key",
                Some("set kms_key_id to a customer managed key the other accounts may use"),
            );
        }
        if region_kms_key_ids.values().any(String::is_empty) {
            error_at(
                obj,
                dx,
                "ami_users",
                "Cannot share AMI encrypted with default KMS key for other regions",
                Some("give every region in region_kms_key_ids a customer managed key"),
            );
        }
    }
    let mut kms_keys: Vec<(&'static str, &str)> = Vec::new();
    if let Some(k) = kms_key_id {
        kms_keys.push(("kms_key_id", k));
    }
    for k in region_kms_key_ids.values().filter(|k| !k.is_empty()) {
        kms_keys.push(("region_kms_key_ids", k));
    }
    if !kms_keys.is_empty() && !encrypting {
        let key = kms_keys[0].0;
        error_at(
            obj,
            dx,
            key,
            "If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true.",
            Some("add \"encrypt_boot\": true"),
        );
    }
    for (key, k) in &kms_keys {
        if !is_deferred(k) && !valid_kms_key(k) {
            error_at(
                obj,
                dx,
                key,
                format!("\"{k}\" is not a valid KMS Key Id."),
                Some("use a key id, a multi-region key id (mrk-...), alias/NAME, or the key's or alias's ARN"),
            );
        }
    }
    if !snapshot_users.is_empty()
        && kms_key_id.is_none()
        && region_kms_key_ids.is_empty()
        && encrypting
    {
        error_at(
            obj,
            dx,
            "snapshot_users",
            "Cannot share snapshot encrypted with default KMS key",
            Some("set kms_key_id (and region_kms_key_ids) to customer managed keys the other accounts may use"),
        );
    }
}

/// Length and characters of a name without build-time values (Packer checks after rendering).
fn check_ami_name(obj: &mut Obj, dx: &mut Dx, name: &str) {
    if name.is_empty() || is_deferred(name) {
        return;
    }
    let len = name.len();
    if !(3..=128).contains(&len) {
        error_at(
            obj,
            dx,
            "ami_name",
            "ami_name must be between 3 and 128 characters long",
            Some(&format!("it is {len} characters long")),
        );
    }
    let cleaned = clean_resource_name(name);
    if cleaned != name {
        let bad: String = name
            .chars()
            .zip(cleaned.chars())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a)
            .fold(String::new(), |mut acc, c| {
                if !acc.contains(c) {
                    acc.push(c);
                }
                acc
            });
        error_at(
            obj,
            dx,
            "ami_name",
            format!("{AMI_NAME_CHARS}; found {}", quote_chars(&bad)),
            Some("pipe the name through the `clean_resource_name` template filter to replace the others with `-`, e.g. \"web {{isotime | clean_resource_name}}\""),
        );
    }
}

fn quote_chars(chars: &str) -> String {
    chars
        .chars()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ami_regions`: duplicates dropped; regions missing from a non-empty `region_kms_key_ids`
/// reported; the build region dropped (the AMI is already there), as Packer does.
fn ami_regions(
    dx: &mut Dx,
    listed: Vec<Located<String>>,
    region_kms_key_ids: &BTreeMap<String, String>,
    build_region: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in listed {
        let region = item.value;
        if region.is_empty() || seen.contains(&region) {
            continue;
        }
        seen.push(region.clone());
        if !region_kms_key_ids.is_empty() && !region_kms_key_ids.contains_key(&region) {
            let d = dx.error(
                item.span,
                &item.path,
                format!("Region {region} is in ami_regions but not in region_kms_key_ids"),
            );
            d.notes.push(
                "help: when region_kms_key_ids is set, it needs a key (or \"\" for the region's default key) for every region in ami_regions".into(),
            );
        }
        if Some(region.as_str()) != build_region {
            out.push(region);
        }
    }
    out
}

/// A KMS key id, alias or ARN, as Packer's `ValidateKmsKey`, plus multi-region keys and the
/// `aws-cn` partition.
pub fn valid_kms_key(k: &str) -> bool {
    fn key_id(s: &str) -> bool {
        let s = s.strip_prefix("mrk-").unwrap_or(s);
        !s.is_empty() && s.chars().all(|c| matches!(c, 'a'..='f' | '0'..='9' | '-'))
    }
    fn alias(s: &str) -> bool {
        s.strip_prefix("alias/").is_some_and(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c))
        })
    }
    fn region(s: &str) -> bool {
        // [a-z]{2}-(gov-)?[a-z]+-\d
        let parts: Vec<&str> = s.split('-').collect();
        let lower = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
        let (first, rest) = match parts.split_first() {
            Some(v) => v,
            None => return false,
        };
        let (last, middle) = match rest.split_last() {
            Some(v) => v,
            None => return false,
        };
        let middle_ok = match middle {
            [m] => lower(m),
            ["gov", m] => lower(m),
            _ => false,
        };
        first.len() == 2
            && lower(first)
            && middle_ok
            && last.len() == 1
            && last.chars().all(|c| c.is_ascii_digit())
    }
    if key_id(k) || alias(k) {
        return true;
    }
    let parts: Vec<&str> = k.splitn(6, ':').collect();
    let [arn, partition, service, reg, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && ["aws", "aws-us-gov", "aws-cn"].contains(partition)
        && *service == "kms"
        && (reg.is_empty() || region(reg))
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (resource.strip_prefix("key/").is_some_and(key_id) || alias(resource))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::AMI_NAME_CHARS;

    #[test]
    fn ami_name_rules() {
        let (_, d) = raw(
            r#"{"ami_name": "ab", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["ami_name must be between 3 and 128 characters long"]
        );
        let long = "a".repeat(129);
        let (_, d) = raw(&format!(
            r#"{{"ami_name": "{long}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}}"#
        ));
        assert_eq!(
            errors(&d),
            vec!["ami_name must be between 3 and 128 characters long"]
        );
        let (_, d) = raw(
            r#"{"ami_name": "web*{x}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert_eq!(
            errors(&d),
            vec![format!("{AMI_NAME_CHARS}; found '*', '{{', '}}'")]
        );
        assert!(all_text(&d).contains("clean_resource_name"));
        // Build-time values: checked when the build renders the name.
        let (c, d) = raw(
            r#"{"ami_name": "web {{ .SourceAMIName }}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert_eq!(c.ami.ami_name, "web {{ .SourceAMIName }}");
        // Template functions are rendered before the check.
        let (c, d) = raw(
            r#"{"ami_name": "web {{timestamp}} {{ `a:b` | clean_resource_name }}", "instance_type": "t3.micro", "source_ami": "ami-1", "ssh_username": "u"}"#,
        );
        assert!(!d.has_errors(), "{:?}", errors(&d));
        assert!(c.ami.ami_name.ends_with(" a-b"), "{}", c.ami.ami_name);
    }

    #[test]
    fn kms_and_encryption_rules() {
        assert_eq!(
            errs(r#""kms_key_id": "alias/x""#),
            vec!["If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true."]
        );
        assert_eq!(
            errs(r#""encrypt_boot": true, "kms_key_id": "k!""#),
            vec!["\"k!\" is not a valid KMS Key Id."]
        );
        assert_eq!(
            errs(
                r#""encrypt_boot": true, "region_kms_key_ids": {"us-east-2": "alias/x"}, "ami_regions": ["eu-west-1"]"#
            ),
            vec![
                "Region us-east-2 is in region_kms_key_ids but not in ami_regions",
                "Region eu-west-1 is in ami_regions but not in region_kms_key_ids",
            ]
        );
        let c = ok(
            r#""encrypt_boot": true, "region_kms_key_ids": {"us-east-2": "alias/x", "eu-west-1": ""}, "ami_regions": ["us-east-2", "eu-west-1"]"#,
        );
        assert_eq!(c.ami.region_kms_key_ids.len(), 2);
        assert_eq!(
            errs(r#""encrypt_boot": true, "ami_users": ["123456789012"]"#),
            vec!["Cannot share AMI encrypted with default KMS key"]
        );
        assert_eq!(
            errs(
                r#""encrypt_boot": true, "kms_key_id": "alias/a", "ami_users": ["123456789012"], "region_kms_key_ids": {"eu-west-1": ""}, "ami_regions": ["eu-west-1"]"#
            ),
            vec!["Cannot share AMI encrypted with default KMS key for other regions"]
        );
        assert_eq!(
            errs(r#""encrypt_boot": true, "snapshot_users": ["123456789012"]"#),
            vec!["Cannot share snapshot encrypted with default KMS key"]
        );
        assert!(errs(r#""encrypt_boot": false, "ami_users": ["123456789012"]"#).is_empty());
    }

    #[test]
    fn kms_key_formats() {
        for good in [
            "12345678-1234-1234-1234-123456789012",
            "alias/my/key_1",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
            "arn:aws:kms:us-east-1:123456789012:alias/x",
            "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/abcd",
            "arn:aws-cn:kms:cn-north-1:123456789012:key/abcd",
        ] {
            assert!(valid_kms_key(good), "{good}");
        }
        for bad in [
            "",
            "k",
            "alias/",
            "alias/a b",
            "arn:aws:kms:us-east-1:1234:key/abcd",
            "arn:aws:s3:us-east-1:123456789012:key/abcd",
            "arn:aws:kms:useast1:123456789012:key/abcd",
            "arn:aws:kms:us-east-1:123456789012:key/xyz",
        ] {
            assert!(!valid_kms_key(bad), "{bad}");
        }
    }
}
