//! Credentials, region and API behaviour as a template gives them (Packer's `AccessConfig`):
//! static keys, profile, `assume_role`, a custom EC2 endpoint, retries and `aws_polling`. The
//! amazon-ebs builder takes them from its object; `imgbuild cleanup` makes one from its flags.

use std::path::PathBuf;

use crate::checks::{error_at, flag, num, opt_count, opt_string, required_nonempty};
use crate::template::decode::{Dx, Obj};

use std::collections::BTreeMap;

/// Credentials, region and API behaviour (Packer's `AccessConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessConfig {
    /// `access_key`: with `secret_key`; default: the AWS credential chain (environment,
    /// profile, instance role).
    pub access_key: Option<String>,
    /// `secret_key`.
    pub secret_key: Option<String>,
    /// `token`: session token for temporary credentials.
    pub token: Option<String>,
    /// `region`: the build region. When absent (allowed, as in Packer 1.6.6) the build uses
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's region, and fails if none is set.
    pub region: Option<String>,
    /// `profile`: the shared-config profile to use.
    pub profile: Option<String>,
    /// `shared_credentials_file`: path of the credentials file. Default `~/.aws/credentials`.
    pub shared_credentials_file: Option<PathBuf>,
    /// `mfa_code`: MFA token code for a profile or role that requires one.
    pub mfa_code: Option<String>,
    /// `assume_role`: assume this role after obtaining the base credentials.
    pub assume_role: Option<AssumeRole>,
    /// `custom_endpoint_ec2`: EC2 endpoint URL (e.g. a local emulator); a bare host name gets
    /// `https://`.
    pub custom_endpoint_ec2: Option<String>,
    /// `decode_authorization_messages`: decode "encoded authorization failure" messages with
    /// STS. Default false.
    pub decode_authorization_messages: bool,
    /// `max_retries`: maximum attempts of a throttled or failed API call. Default: the SDK's.
    pub max_retries: Option<u32>,
    /// `skip_metadata_api_check`: do not ask the EC2 instance metadata service for
    /// credentials. Default false.
    pub skip_metadata_api_check: bool,
    /// `skip_credential_validation`: do not check the credentials with STS before the build.
    /// Default false.
    pub skip_credential_validation: bool,
    /// `skip_region_validation`: do not check `region` and `ami_regions` against the regions
    /// EC2 lists (for new or private regions). Default false.
    pub skip_region_validation: bool,
    /// `aws_polling`: how often and how long to poll while waiting on EC2. Default: the
    /// `AWS_POLL_DELAY_SECONDS`/`AWS_MAX_ATTEMPTS` environment, else the waiters' defaults.
    pub aws_polling: Option<AwsPolling>,
}

/// `assume_role`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRole {
    /// `role_arn` (required).
    pub role_arn: String,
    /// `duration_seconds`: session length. Default: STS's (1 hour).
    pub duration_seconds: Option<u32>,
    /// `external_id`.
    pub external_id: Option<String>,
    /// `policy`: an IAM policy (JSON) that further restricts the session.
    pub policy: Option<String>,
    /// `policy_arns`: managed policies that further restrict the session.
    pub policy_arns: Vec<String>,
    /// `session_name`. Default: chosen by the build.
    pub session_name: Option<String>,
    /// `tags`: session tags.
    pub tags: BTreeMap<String, String>,
    /// `transitive_tag_keys`.
    pub transitive_tag_keys: Vec<String>,
}

/// `aws_polling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsPolling {
    /// `delay_seconds`: seconds between polls.
    pub delay_seconds: Option<u32>,
    /// `max_attempts`: polls before giving up.
    pub max_attempts: Option<u32>,
}

impl AccessConfig {
    /// Takes the access options from the builder object.
    pub fn decode(obj: &mut Obj, dx: &mut Dx) -> AccessConfig {
        let access_key = opt_string(obj, dx, "access_key");
        let secret_key = opt_string(obj, dx, "secret_key");
        if access_key.is_some() != secret_key.is_some() {
            let key = if access_key.is_some() {
                "access_key"
            } else {
                "secret_key"
            };
            error_at(
                obj,
                dx,
                key,
                "`access_key` and `secret_key` must both be either set or not set.",
                None,
            );
        }
        let token = opt_string(obj, dx, "token");
        let region = opt_string(obj, dx, "region");
        let profile = opt_string(obj, dx, "profile");
        let shared_credentials_file =
            opt_string(obj, dx, "shared_credentials_file").map(|p| crate::checks::expand_user(&p));
        let mfa_code = opt_string(obj, dx, "mfa_code");
        let assume_role = assume_role(obj, dx);
        let custom_endpoint_ec2 = opt_string(obj, dx, "custom_endpoint_ec2").map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        let decode_authorization_messages =
            flag(obj, dx, "decode_authorization_messages").unwrap_or(false);
        let max_retries = opt_count(obj, dx, "max_retries", 1000);
        let skip_metadata_api_check = flag(obj, dx, "skip_metadata_api_check").unwrap_or(false);
        let skip_credential_validation =
            flag(obj, dx, "skip_credential_validation").unwrap_or(false);
        let skip_region_validation = flag(obj, dx, "skip_region_validation").unwrap_or(false);
        let aws_polling = obj
            .object(dx, "aws_polling", "polling of EC2 waiters")
            .map(|mut o| {
                let p = AwsPolling {
                    delay_seconds: opt_count(&mut o, dx, "delay_seconds", 3600),
                    max_attempts: opt_count(&mut o, dx, "max_attempts", 100_000),
                };
                o.finish(dx);
                p
            });
        AccessConfig {
            access_key,
            secret_key,
            token,
            region,
            profile,
            shared_credentials_file,
            mfa_code,
            assume_role,
            custom_endpoint_ec2,
            decode_authorization_messages,
            max_retries,
            skip_metadata_api_check,
            skip_credential_validation,
            skip_region_validation,
            aws_polling,
        }
    }
}

fn assume_role(obj: &mut Obj, dx: &mut Dx) -> Option<AssumeRole> {
    let mut o = obj.object(dx, "assume_role", "role to assume")?;
    let role_arn = required_nonempty(&mut o, dx, "role_arn", None);
    let duration_seconds = match num(&mut o, dx, "duration_seconds") {
        None | Some(0) => None,
        Some(s) if (900..=43200).contains(&s) => Some(s as u32),
        Some(s) => {
            error_at(
                &mut o,
                dx,
                "duration_seconds",
                format!("`duration_seconds` must be between 900 and 43200, found {s}"),
                None,
            );
            None
        }
    };
    let r = AssumeRole {
        role_arn,
        duration_seconds,
        external_id: opt_string(&mut o, dx, "external_id"),
        policy: opt_string(&mut o, dx, "policy"),
        policy_arns: o.strings(dx, "policy_arns").unwrap_or_default(),
        session_name: opt_string(&mut o, dx, "session_name"),
        tags: o.string_map(dx, "tags").unwrap_or_default(),
        transitive_tag_keys: o.strings(dx, "transitive_tag_keys").unwrap_or_default(),
    };
    o.finish(dx);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{decode, errors};

    fn access(text: &str) -> (AccessConfig, Vec<String>) {
        let (c, d) = decode(text, |mut obj, dx| {
            let c = AccessConfig::decode(&mut obj, dx);
            obj.finish(dx);
            c
        });
        (c, errors(&d))
    }

    #[test]
    fn takes_only_the_access_keys() {
        let (c, e) = access(
            r#"{"region": "eu-west-1", "profile": "ci", "custom_endpoint_ec2": "localhost:5000",
                "aws_polling": {"delay_seconds": 5}, "max_retries": 3}"#,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.profile.as_deref(), Some("ci"));
        assert_eq!(
            c.custom_endpoint_ec2.as_deref(),
            Some("https://localhost:5000")
        );
        assert_eq!(c.max_retries, Some(3));
        assert_eq!(c.aws_polling.and_then(|p| p.delay_seconds), Some(5));
        // Keys of other sections are not this decoder's: they stay unknown here.
        let (_, e) = access(r#"{"ami_name": "x", "secret_key": "s"}"#);
        assert_eq!(
            e,
            vec![
                "`access_key` and `secret_key` must both be either set or not set.",
                "unknown key `ami_name` in builder `b`",
            ]
        );
    }
}
