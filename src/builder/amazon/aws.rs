//! AWS access: aws-config's standard chain (environment, shared config and credentials files,
//! `profile`, SSO, web identity, container and instance metadata), the template's static
//! credentials, region, `custom_endpoint_ec2` (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` work
//! through aws-config), `max_retries` (the SDK's standard retry with backoff absorbs throttling
//! and 5xx), `shared_credentials_file` and `assume_role`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[allow(deprecated)] // The replacement lives in aws-runtime, not a dependency of ours.
use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_async::future::pagination_stream::PaginationStream;

use super::config::AccessConfig;

/// An EC2 API error: the code EC2 gave (`UnauthorizedOperation`, `InvalidAMIID.NotFound`, ...)
/// and its message, or what went wrong on the way (connection refused, timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(c) if self.message.is_empty() => f.write_str(c),
            Some(c) => write!(f, "{c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn from_sdk<E>(e: &SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let SdkError::ServiceError(s) = e {
            let err = s.err();
            if err.code().is_some() {
                return ApiError {
                    code: err.code().map(str::to_string),
                    message: err.message().unwrap_or_default().to_string(),
                };
            }
            // No EC2 error in the answer (a proxy's or emulator's page): say what came back.
            let raw = s.raw();
            let body = raw
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let text = strip_markup(&body);
            return ApiError {
                code: None,
                message: format!(
                    "HTTP {} with no EC2 error in the answer{}",
                    raw.status().as_u16(),
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ),
            };
        }
        ApiError {
            code: None,
            message: error_chain(e),
        }
    }

    pub fn msg(message: impl Into<String>) -> ApiError {
        ApiError {
            code: None,
            message: message.into(),
        }
    }

    /// The resource does not exist (any more): `*.NotFound`, or an AMI that is gone.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.ends_with(".NotFound")
                || c.ends_with(".Malformed.NotFound")
                || c == "InvalidAMIID.Unavailable"
        })
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// An error and its sources, `a: b: c`, without repeating a source already in the text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The text of an HTML or XML answer, shortened, for messages.
fn strip_markup(body: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut text = words.join(" ");
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Maps an SDK result's error to [`ApiError`].
pub trait Api<T> {
    fn api(self) -> Result<T, ApiError>;
}

impl<T, E> Api<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn api(self) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::from_sdk(&e))
    }
}

/// The pages of a paginated call (`.into_paginator().send()`), in order, at most `max` of them
/// (no request is made for a page beyond); the first error ends the listing.
pub async fn pages<T, E>(
    mut pages: PaginationStream<Result<T, SdkError<E, HttpResponse>>>,
    max: usize,
) -> Result<Vec<T>, ApiError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut out = Vec::new();
    while out.len() < max {
        match pages.try_next().await.api()? {
            Some(page) => out.push(page),
            None => break,
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS region: set `region` in the builder, or AWS_REGION (or AWS_DEFAULT_REGION, or the profile's region)")]
    NoRegion,
    #[error("no AWS credentials found{}: {message}", profile.as_ref().map(|p| format!(" for profile {p}")).unwrap_or_default())]
    NoCredentials {
        profile: Option<String>,
        message: String,
    },
    #[error("`{option}` is not implemented yet in imgbuild: {instead}")]
    NotYet {
        option: &'static str,
        instead: &'static str,
    },
}

/// EC2 clients of one build, one per region, sharing credentials.
#[derive(Debug)]
pub struct Aws {
    base: SdkConfig,
    endpoint: Option<String>,
    clients: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    /// The build region.
    pub region: String,
}

impl Aws {
    /// Loads the configuration and checks that credentials exist (no API call is made).
    pub async fn connect(access: &AccessConfig) -> Result<Aws, AwsError> {
        if access.mfa_code.is_some() {
            return Err(AwsError::NotYet {
                option: "mfa_code",
                instead: "get temporary credentials first (e.g. `aws sts get-session-token --token-code ...`) and pass them in the environment or a profile",
            });
        }
        if let Some(r) = &access.assume_role {
            if !r.tags.is_empty() || !r.transitive_tag_keys.is_empty() {
                return Err(AwsError::NotYet {
                    option: "assume_role.tags",
                    instead: "assume the role with session tags before running imgbuild, or use a profile with role_arn",
                });
            }
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &access.profile {
            loader = loader.profile_name(p);
        }
        #[allow(deprecated)]
        if let Some(path) = &access.shared_credentials_file {
            loader = loader.profile_files(
                ProfileFiles::builder()
                    .include_default_config_file(true)
                    .with_file(ProfileFileKind::Credentials, path)
                    .build(),
            );
        }
        if let Some(r) = &access.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let (Some(ak), Some(sk)) = (&access.access_key, &access.secret_key) {
            loader = loader.credentials_provider(Credentials::new(
                ak.clone(),
                sk.clone(),
                access.token.clone(),
                None,
                "template",
            ));
        }
        let mut retry = RetryConfig::standard();
        if let Some(n) = access.max_retries {
            retry = retry.with_max_attempts(n.saturating_add(1));
        }
        loader = loader.retry_config(retry).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
        let mut base = loader.load().await;
        let region = base
            .region()
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty())
            .ok_or(AwsError::NoRegion)?;
        if let Some(role) = &access.assume_role {
            let mut b = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                .session_name(
                    role.session_name
                        .clone()
                        .unwrap_or_else(|| format!("imgbuild-{}", std::process::id())),
                )
                .region(Region::new(region.clone()))
                .configure(&base);
            if let Some(x) = &role.external_id {
                b = b.external_id(x);
            }
            if let Some(d) = role.duration_seconds {
                b = b.session_length(Duration::from_secs(d.into()));
            }
            if let Some(p) = &role.policy {
                b = b.policy(p);
            }
            if !role.policy_arns.is_empty() {
                b = b.policy_arns(role.policy_arns.clone());
            }
            let provider = b.build().await;
            base = base
                .into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                    provider,
                ))
                .build();
        }
        // Credentials are resolved now, so that a missing one is reported before the build
        // starts rather than at its first call.
        match base.credentials_provider() {
            Some(p) => {
                use aws_sdk_ec2::config::ProvideCredentials;
                if let Err(e) = p.provide_credentials().await {
                    return Err(AwsError::NoCredentials {
                        profile: access.profile.clone(),
                        message: error_chain(&e),
                    });
                }
            }
            None => {
                return Err(AwsError::NoCredentials {
                    profile: access.profile.clone(),
                    message: "no credential provider is configured".into(),
                })
            }
        }
        Ok(Aws {
            base,
            endpoint: access.custom_endpoint_ec2.clone(),
            clients: Mutex::new(HashMap::new()),
            region,
        })
    }

    /// The configuration the build's clients are made from (credentials, retry, timeouts,
    /// `AWS_ENDPOINT_URL*`), for the clients of other services (the post-processors'
    /// CloudFormation and SSM).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.base
    }

    /// The EC2 client of `region`.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_ec2::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()));
                if let Some(e) = &self.endpoint {
                    b = b.endpoint_url(e);
                }
                aws_sdk_ec2::Client::from_conf(b.build())
            })
            .clone()
    }
}
