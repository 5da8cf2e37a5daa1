//! Builders: what creates the image. `amazon-ebs` builds AMIs; `null` (as in Packer) runs the
//! provisioners against a machine that already exists and creates nothing.
//!
//! The orchestrator sees every builder through one trait, [`Builder`]: get ready
//! ([`Builder::prepare`]), run to an [`Artifact`] ([`Builder::run`]), undo what the build created
//! ([`Builder::teardown`]) and say what is still there ([`Builder::remaining`]). The set is closed:
//! [`BuilderConfig::builder`] gives the [`Build`] of a configuration (static dispatch, no plugins).

pub mod amazon;
pub mod fingerprint;
pub mod null;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use amazon::config::AmazonEbsConfig;
use null::{NullBuild, NullConfig};

use crate::cancel::Cancel;
use crate::interact::Interact;
use crate::ledger::Undo;
use crate::provisioner::PreparedProvisioner;
use crate::template::funcs::Engine;
use crate::ui::Ui;

/// What every build produces (the AMIs, none for the null builder, and the build's data for
/// post-processors), and the AWS access post-processors use. Both live in `amazon` for now and
/// are shared through these names, so that `null` does not reach into `amazon`.
pub use crate::artifact::Artifact;
pub use crate::aws::Aws;

#[derive(Debug)]
pub enum BuilderConfig {
    AmazonEbs(Box<AmazonEbsConfig>),
    /// Packer's `null` builder: provisioners against an existing machine, no cloud.
    Null(Box<NullConfig>),
}

impl BuilderConfig {
    /// Values that must never be shown (credentials, passwords), for the redactor.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            BuilderConfig::AmazonEbs(c) => c.secrets(),
            BuilderConfig::Null(c) => c.secrets(),
        }
    }

    /// The builder of this configuration, for one build in `env`.
    pub fn builder<'a>(&'a self, env: Env<'a>) -> Build<'a> {
        match self {
            BuilderConfig::AmazonEbs(cfg) => {
                Build::AmazonEbs(Box::new(amazon::adapter::AmazonEbs::new(cfg, env)))
            }
            BuilderConfig::Null(cfg) => Build::Null(NullBuild::new(cfg, &env)),
        }
    }
}

/// What the orchestrator gives every build: who it is, what it provisions, and the run around it.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub name: &'a str,
    /// The builder's `type` as written.
    pub kind: &'a str,
    /// The builder object as written (for the reuse fingerprint).
    pub definition: &'a serde_json::Value,
    pub provisioners: &'a [PreparedProvisioner],
    pub error_cleanup: Option<&'a PreparedProvisioner>,
    pub run_id: &'a str,
    pub ui: &'a Ui,
    pub engine: &'a Engine,
    /// `-on-error=ask` and `-debug` (prompts, pauses, the saved key).
    pub interact: &'a Interact,
    /// Every variable's value, and the names in `sensitive-variables`.
    pub user: &'a BTreeMap<String, String>,
    pub sensitive: &'a BTreeSet<String>,
    pub template_dir: &'a str,
    /// `-force`.
    pub force: bool,
    /// `-skip-unchanged`.
    pub skip_unchanged: bool,
    /// Where the build's time goes: the steps mark their phases.
    pub timeline: &'a crate::timeline::Timeline,
}

/// Why a build could not get ready; nothing was created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting that can only be checked at build time (`aws_polling` and its environment
    /// variables).
    #[error("{0}")]
    Settings(String),
    #[error("cannot create the run journal in {} (set IMGBUILD_JOURNAL_DIR to a writable directory): {source}", dir.display())]
    CreateJournal {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the run journal: {0}")]
    WriteJournal(std::io::Error),
    /// The cloud cannot be reached with what was given (credentials, region).
    #[error("{0}")]
    Access(Box<dyn std::error::Error + Send + Sync>),
    /// Interrupted while getting ready.
    #[error("cancelled")]
    Cancelled,
}

/// Why a build's run ended without an artifact.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Cancelled (Ctrl-C, SIGTERM, the build's deadline); the orchestrator says which.
    #[error("cancelled")]
    Cancelled,
    /// The builder's own error, as it renders.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// What the orchestrator needs from any builder. A build is prepared once, run (the builder
/// asks about retries inside, where a retry makes sense), then, when it creates resources,
/// either torn down or left in place, and finished.
// Static dispatch only (the `Build` enum); the futures are awaited on the orchestrator's
// runtime, never spawned, so they need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Builder {
    /// Its own limit on the whole build (`build_timeout`), if it has one.
    fn build_timeout(&self) -> Option<Duration>;

    /// Gets what the build needs before anything is created (amazon-ebs: the polling settings,
    /// the run journal, AWS access). On failure, whatever it set up is closed.
    async fn prepare(&mut self, cancel: &Cancel) -> Result<(), SetupError>;

    /// Runs the build to its artifact.
    async fn run(&self, cancel: &Cancel) -> Result<Artifact, RunError>;

    /// True when the build creates resources that must be undone or left in place (the null
    /// builder creates nothing).
    fn creates_resources(&self) -> bool;

    /// Undoes what the build created (`success`: keeps the product); `abort` (a second Ctrl-C)
    /// skips what is not done yet. What could not be removed, with why.
    async fn teardown(&self, success: bool, abort: &Cancel) -> Vec<(Undo, String)>;

    /// What is still recorded as existing and is not the product.
    fn remaining(&self, success: bool) -> Vec<Undo>;

    /// Notes the end of the build in its journal (`clean`: nothing was left); a build that
    /// `succeeded` and left nothing archives its journal (`ledger::Ledger::finish`).
    fn finish(&self, clean: bool, succeeded: bool);

    /// The run journal that lists what the build created, when it keeps one.
    fn journal(&self) -> Option<&Path>;

    /// The build's AWS access, for the post-processors that call AWS.
    fn aws(&self) -> Option<&Aws>;

    /// The `ami_name` as written in the template (its static prefix finds the build's AMIs of
    /// other runs).
    fn ami_name(&self) -> Option<&str>;
}

/// The builder of one build: the closed set of builders, one method set.
pub enum Build<'a> {
    AmazonEbs(Box<amazon::adapter::AmazonEbs<'a>>),
    Null(NullBuild<'a>),
}

/// `each!(self, b => expr)`: `expr` with `b` bound to the builder inside.
macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            Build::AmazonEbs($b) => $e,
            Build::Null($b) => $e,
        }
    };
}

impl Builder for Build<'_> {
    fn build_timeout(&self) -> Option<Duration> {
        each!(self, b => b.build_timeout())
    }

    async fn prepare(&mut self, cancel: &Cancel) -> Result<(), SetupError> {
        each!(self, b => b.prepare(cancel).await)
    }

    async fn run(&self, cancel: &Cancel) -> Result<Artifact, RunError> {
        each!(self, b => b.run(cancel).await)
    }

    fn creates_resources(&self) -> bool {
        each!(self, b => b.creates_resources())
    }

    async fn teardown(&self, success: bool, abort: &Cancel) -> Vec<(Undo, String)> {
        each!(self, b => b.teardown(success, abort).await)
    }

    fn remaining(&self, success: bool) -> Vec<Undo> {
        each!(self, b => b.remaining(success))
    }

    fn finish(&self, clean: bool, succeeded: bool) {
        each!(self, b => b.finish(clean, succeeded))
    }

    fn journal(&self) -> Option<&Path> {
        each!(self, b => b.journal())
    }

    fn aws(&self) -> Option<&Aws> {
        each!(self, b => b.aws())
    }

    fn ami_name(&self) -> Option<&str> {
        each!(self, b => b.ami_name())
    }
}
