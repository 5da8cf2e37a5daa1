//! The errors of the post-processors: [`PpError`], what any post-processor's run fails with,
//! and the integrations' own ([`CfnError`], [`SsmError`]), which it boxes. Below the
//! post-processors and [`super::run`], which all return them.

use std::path::PathBuf;

use super::output::OutputError;
use crate::aws::wait::WaitError;
use crate::aws::ApiError;

/// Why a post-processor failed.
#[derive(Debug, thiserror::Error)]
pub enum PpError {
    #[error("rendering {what}: {message}")]
    Render { what: String, message: String },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    CloudFormation(Box<CfnError>),
    #[error(transparent)]
    Ssm(Box<SsmError>),
    #[error("refusing to write {}: {what} would hold a sensitive value", path.display())]
    Secret { path: PathBuf, what: String },
    #[error("Script exited with non-zero exit status: {code}. Allowed exit codes are: {valid:?} (script {script})")]
    ExitStatus {
        script: String,
        code: i32,
        valid: Vec<i64>,
    },
    #[error("Script {script} was killed by signal {signal}")]
    Signaled { script: String, signal: i32 },
    #[error("{what}: {source}")]
    Local {
        what: String,
        source: std::io::Error,
    },
    #[error("cancelled (interrupted)")]
    Cancelled,
    /// Failed, and the build's AMIs are gone (a failed `boot-test` with
    /// `deregister_on_failure`): the build keeps nothing.
    #[error("{0}")]
    ImageRemoved(String),
    #[error("{0}")]
    Other(String),
}

impl From<CfnError> for PpError {
    fn from(e: CfnError) -> PpError {
        PpError::CloudFormation(Box::new(e))
    }
}

impl From<SsmError> for PpError {
    fn from(e: SsmError) -> PpError {
        PpError::Ssm(Box::new(e))
    }
}

/// Why `cloudformation-update` failed, naming the stack and its region.
#[derive(Debug, thiserror::Error)]
pub enum CfnError {
    #[error("the artifact has no AMI in {region} for stack {stack} (its AMIs are in: {have}); add {region} to ami_regions or update a stack in one of those regions")]
    NoAmi {
        stack: String,
        region: String,
        have: String,
    },
    #[error("the artifact has no AMI in the build region {region}; set `region` to one of {have}, or use `stacks`")]
    NoPrimaryAmi { region: String, have: String },
    #[error("no AWS access: the null builder makes no AMI to hand to a stack")]
    NoAws,
    #[error("describing stack {stack} ({region}): {source}")]
    DescribeStack {
        stack: String,
        region: String,
        source: ApiError,
    },
    #[error("stack {stack} ({region}) has no parameter {parameter} (its parameters: {known})")]
    NoSuchParameter {
        stack: String,
        region: String,
        parameter: String,
        known: String,
    },
    #[error("updating stack {stack} ({region}) to {ami}: {source}")]
    UpdateStack {
        stack: String,
        region: String,
        ami: String,
        source: ApiError,
    },
    #[error("updating stack {stack} ({region}) to {ami}: {source}")]
    Wait {
        stack: String,
        region: String,
        ami: String,
        source: WaitError,
    },
}

/// Why `ssm-parameter` failed, naming the parameter and its region.
#[derive(Debug, thiserror::Error)]
pub enum SsmError {
    #[error("the artifact has no AMI in {region} (its AMIs are in: {have})")]
    NoAmi { region: String, have: String },
    #[error("no AWS access: the null builder makes no AMI to publish")]
    NoAws,
    #[error("`parameter_name` \"{name}\" is not an SSM parameter name: {why}")]
    BadName { name: String, why: String },
    #[error("SSM parameter {name} already exists in {region}; set \"overwrite\": true to replace its value")]
    Exists { name: String, region: String },
    #[error("publishing {ami} as SSM parameter {name} ({region}): {source}")]
    PutParameter {
        name: String,
        region: String,
        ami: String,
        source: ApiError,
    },
    #[error("tagging SSM parameter {name} ({region}): {source}")]
    AddTags {
        name: String,
        region: String,
        source: ApiError,
    },
}
