//! AWS access for everything that calls AWS (the amazon-ebs builder, `imgbuild cleanup`, the
//! post-processors): aws-config's standard chain (environment, shared config and credentials
//! files, `profile`, SSO, web identity, container and instance metadata), the template's static
//! credentials, region, `custom_endpoint_ec2` (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` work
//! through aws-config), `max_retries` (the SDK's standard retry with backoff absorbs throttling
//! and 5xx), `shared_credentials_file` and `assume_role`; the clients made from it (EC2 per
//! region, CloudFormation, SSM).
//!
//! - [`access`]: the template's access options (Packer's `AccessConfig`);
//! - [`error`]: [`ApiError`], what a failed call says;
//! - [`pages`]: paginated listings;
//! - [`wait`]: deadline-based polling;
//! - [`poller`]: the shared pollers (one per account, region and resource kind) of the waits;
//! - [`once`]: read-only lookups that parallel builds share.

pub mod access;
pub mod error;
pub mod once;
pub mod pages;
pub mod poller;
pub mod wait;

pub use access::{AccessConfig, AssumeRole, AwsPolling};
pub use error::{error_chain, Api, ApiError};
pub use pages::pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(deprecated)] // The replacement lives in aws-runtime, not a dependency of ours.
use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{Filter, Image, Instance, Snapshot};
use poller::{shared, Call, Poller, Source, SNAPSHOT_TICK, TICK};

/// Why AWS access could not be set up (before any API call).
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

/// The AWS clients of one build (or one `imgbuild cleanup`), sharing credentials, retries and
/// timeouts: EC2 per region (made once each), CloudFormation and SSM for the post-processors.
#[derive(Debug)]
pub struct Aws {
    base: SdkConfig,
    endpoint: Option<String>,
    clients: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    /// Whose resources the clients see (access key ID and endpoint), so that builds of one
    /// account share their pollers ([`poller::shared`]) and other accounts' builds do not.
    account: String,
    /// The build region.
    pub region: String,
}

impl Aws {
    /// Loads the configuration and checks that credentials exist (no API call is made).
    pub async fn connect(access: &AccessConfig) -> Result<Aws, AwsError> {
        not_yet(access)?;
        let mut base = loader(access).load().await;
        let region = base
            .region()
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty())
            .ok_or(AwsError::NoRegion)?;
        if let Some(role) = &access.assume_role {
            base = with_role(base, role, &region).await;
        }
        // Credentials are resolved now, so that a missing one is reported before the build
        // starts rather than at its first call.
        let key_id = check_credentials(&base, access.profile.as_deref()).await?;
        let account = format!(
            "{key_id}|{}",
            access.custom_endpoint_ec2.as_deref().unwrap_or_default()
        );
        Ok(Aws {
            base,
            endpoint: access.custom_endpoint_ec2.clone(),
            clients: Mutex::new(HashMap::new()),
            account,
            region,
        })
    }

    /// A CloudFormation client of `region` with the build's credentials (`endpoint`: the
    /// post-processor's own endpoint URL, e.g. a local emulator).
    pub fn cloudformation(
        &self,
        region: &str,
        endpoint: Option<&str>,
    ) -> aws_sdk_cloudformation::Client {
        let mut b = aws_sdk_cloudformation::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()));
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        aws_sdk_cloudformation::Client::from_conf(b.build())
    }

    /// An SSM client of `region` with the build's credentials (`endpoint` as for
    /// [`Aws::cloudformation`]).
    pub fn ssm(&self, region: &str, endpoint: Option<&str>) -> aws_sdk_ssm::Client {
        let mut b =
            aws_sdk_ssm::config::Builder::from(&self.base).region(Region::new(region.to_string()));
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        aws_sdk_ssm::Client::from_conf(b.build())
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

impl Aws {
    /// The shared poller of instances in `region` (DescribeInstances).
    pub fn instance_poller(&self, region: &str) -> Arc<Poller<Instance>> {
        shared(&self.account, region, "instance", || {
            Poller::new("instance", region, TICK, Instances(self.ec2(region)))
        })
    }

    /// The shared poller of images in `region` (DescribeImages).
    pub fn image_poller(&self, region: &str) -> Arc<Poller<Image>> {
        shared(&self.account, region, "image", || {
            Poller::new("image", region, TICK, Images(self.ec2(region)))
        })
    }

    /// The answer of the read-only `call` in `region` (`request`: what it asks, as text),
    /// shared with the builds of this account that ask the same ([`once::lookup`]).
    pub async fn lookup_once<T, E, Fut>(
        &self,
        region: &str,
        request: String,
        call: impl FnOnce() -> Fut,
    ) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let key = format!("{region}|{request}");
        once::lookup(&self.account, key, call).await
    }

    /// The shared poller of CloudFormation stacks in `region` at `endpoint` (the
    /// post-processor's own, if any). DescribeStacks takes one stack name, not a list, so a
    /// tick makes one call per distinct stack waited for: the waits on one stack (several
    /// builds, or chains, updating it) share that call, and the tick and the throttling
    /// back-off are those of every poller.
    pub fn stack_poller(
        &self,
        region: &str,
        endpoint: Option<&str>,
    ) -> Arc<Poller<aws_sdk_cloudformation::types::Stack>> {
        let account = format!(
            "{}|cloudformation:{}",
            self.account,
            endpoint.unwrap_or_default()
        );
        shared(&account, region, "stack", || {
            Poller::new(
                "stack",
                region,
                TICK,
                Stacks(self.cloudformation(region, endpoint)),
            )
        })
    }

    /// The shared poller of snapshots in `region` (DescribeSnapshots), every
    /// [`SNAPSHOT_TICK`]: their progress is for display only.
    pub fn snapshot_poller(&self, region: &str) -> Arc<Poller<Snapshot>> {
        shared(&self.account, region, "snapshot", || {
            Poller::new(
                "snapshot",
                region,
                SNAPSHOT_TICK,
                Snapshots(self.ec2(region)),
            )
        })
    }
}

/// Access options imgbuild does not implement yet, refused with what to do instead.
fn not_yet(access: &AccessConfig) -> Result<(), AwsError> {
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
    Ok(())
}

/// aws-config's loader with the template's profile, credentials file, region, static
/// credentials, retries and timeouts.
fn loader(access: &AccessConfig) -> ConfigLoader {
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
    loader
}

/// The configuration with the credentials of `role`, assumed from the base credentials.
async fn with_role(base: SdkConfig, role: &AssumeRole, region: &str) -> SdkConfig {
    let mut b = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
        .session_name(
            role.session_name
                .clone()
                .unwrap_or_else(|| format!("imgbuild-{}", std::process::id())),
        )
        .region(Region::new(region.to_string()))
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
    base.into_builder()
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build()
}

/// Resolves the credentials once: a missing one is an error naming the profile. The access
/// key ID (not a secret) tells accounts apart.
async fn check_credentials(base: &SdkConfig, profile: Option<&str>) -> Result<String, AwsError> {
    match base.credentials_provider() {
        Some(p) => {
            use aws_sdk_ec2::config::ProvideCredentials;
            match p.provide_credentials().await {
                Ok(c) => Ok(c.access_key_id().to_string()),
                Err(e) => Err(AwsError::NoCredentials {
                    profile: profile.map(str::to_string),
                    message: error_chain(&e),
                }),
            }
        }
        None => Err(AwsError::NoCredentials {
            profile: profile.map(str::to_string),
            message: "no credential provider is configured".into(),
        }),
    }
}

/// A poller's `Describe*` call: a filter on the IDs, which (unlike a list of IDs) leaves out
/// an ID that is not visible yet instead of failing the whole call.
fn id_filter(name: &str, ids: Vec<String>) -> Filter {
    Filter::builder().name(name).set_values(Some(ids)).build()
}

struct Instances(aws_sdk_ec2::Client);
struct Images(aws_sdk_ec2::Client);
struct Snapshots(aws_sdk_ec2::Client);
struct Stacks(aws_sdk_cloudformation::Client);

impl Source<Instance> for Instances {
    fn describe(&self, ids: Vec<String>) -> Call<Instance> {
        let req = self
            .0
            .describe_instances()
            .filters(id_filter("instance-id", ids));
        Box::pin(async move {
            let out = req.send().await.api()?;
            Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| Some((i.instance_id()?.to_string(), i.clone())))
                .collect())
        })
    }
}

impl Source<Image> for Images {
    fn describe(&self, ids: Vec<String>) -> Call<Image> {
        let req = self.0.describe_images().filters(id_filter("image-id", ids));
        Box::pin(async move {
            let out = req.send().await.api()?;
            Ok(out
                .images()
                .iter()
                .filter_map(|i| Some((i.image_id()?.to_string(), i.clone())))
                .collect())
        })
    }
}

impl Source<Snapshot> for Snapshots {
    fn describe(&self, ids: Vec<String>) -> Call<Snapshot> {
        let req = self
            .0
            .describe_snapshots()
            .filters(id_filter("snapshot-id", ids));
        Box::pin(async move {
            let out = req.send().await.api()?;
            Ok(out
                .snapshots()
                .iter()
                .filter_map(|s| Some((s.snapshot_id()?.to_string(), s.clone())))
                .collect())
        })
    }
}

impl Source<aws_sdk_cloudformation::types::Stack> for Stacks {
    /// One DescribeStacks per name; a stack that does not exist is left out.
    fn describe(&self, ids: Vec<String>) -> Call<aws_sdk_cloudformation::types::Stack> {
        let c = self.0.clone();
        Box::pin(async move {
            let mut found = Vec::new();
            for id in ids {
                match c.describe_stacks().stack_name(&id).send().await.api() {
                    Ok(out) => found.extend(out.stacks().first().map(|s| (id, s.clone()))),
                    Err(e) if e.message.contains("does not exist") => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        })
    }
}
