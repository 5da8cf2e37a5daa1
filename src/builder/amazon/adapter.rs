//! The amazon-ebs builder as the orchestrator sees it ([`crate::builder::Builder`]): a thin
//! adapter over the build's steps ([`super::Ctx`]) and [`super::teardown`]. Getting ready
//! resolves the polling settings, opens the run journal (the build's [`Ledger`], with a
//! `Started` record) and connects to AWS; teardown undoes the ledger.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::config::AmazonEbsConfig;
use super::step::start_ledger;
use super::steps::protected_snapshots;
use super::teardown;
use super::{BuildError, Ctx};
use crate::artifact::Artifact;
use crate::aws::wait::Polling;
use crate::aws::Aws;
use crate::builder::{Builder, Env, RunError, SetupError};
use crate::cancel::Cancel;
use crate::ledger::lock;
use crate::ledger::{default_journal_dir, Event, Journal, Ledger, Undo};

/// One amazon-ebs build: its configuration, what the run gives it, and once prepared, what it
/// runs with.
pub struct AmazonEbs<'a> {
    cfg: &'a AmazonEbsConfig,
    env: Env<'a>,
    journal: Option<PathBuf>,
    ready: Option<Ready>,
}

/// What a prepared build runs with.
struct Ready {
    polling: Polling,
    ledger: Mutex<Ledger>,
    aws: Aws,
}

/// The journal file of one build of a run: `<run id>.<build name, made safe for a file name>`.
pub fn journal_name(run_id: &str, build: &str) -> String {
    let clean: String = build
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{run_id}.{clean}")
}

impl<'a> AmazonEbs<'a> {
    pub fn new(cfg: &'a AmazonEbsConfig, env: Env<'a>) -> AmazonEbs<'a> {
        AmazonEbs {
            cfg,
            env,
            journal: None,
            ready: None,
        }
    }

    /// The build's steps, over what [`Builder::prepare`] set up.
    fn ctx<'c>(&'c self, ready: &'c Ready, cancel: &Cancel) -> Ctx<'c> {
        let (env, cfg) = (&self.env, self.cfg);
        Ctx {
            name: env.name,
            cfg,
            provisioners: env.provisioners,
            error_cleanup: env.error_cleanup,
            aws: &ready.aws,
            run_id: env.run_id,
            ledger: &ready.ledger,
            ui: env.ui,
            engine: env.engine,
            user: env.user,
            template_dir: env.template_dir,
            force: env.force,
            polling: ready.polling,
            cancel: cancel.clone(),
            interact: env.interact,
            timeline: env.timeline,
            reuse: (env.skip_unchanged || cfg.reuse_unchanged).then_some(
                crate::builder::fingerprint::Inputs {
                    builder_type: env.kind,
                    builder: env.definition,
                    provisioners: env.provisioners,
                    user_data_file: cfg.run.user_data_file.as_deref(),
                    variables: env.user,
                    sensitive: env.sensitive,
                },
            ),
        }
    }

    fn say(&self, m: String) {
        self.env.ui.say(&format!("==> {}: {m}", self.env.name));
    }
}

fn note_finished(ledger: &Mutex<Ledger>, clean: bool) {
    let _ = lock(ledger).note(&Event::Finished {
        clean,
        at: chrono::Utc::now().timestamp(),
    });
}

impl Builder for AmazonEbs<'_> {
    fn build_timeout(&self) -> Option<Duration> {
        self.cfg.build_timeout
    }

    async fn prepare(&mut self, cancel: &Cancel) -> Result<(), SetupError> {
        let cfg = self.cfg;
        let polling = Polling::resolve(
            cfg.access.aws_polling,
            std::env::var("AWS_POLL_DELAY_SECONDS").ok().as_deref(),
            std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
        )
        .map_err(SetupError::Settings)?;
        let dir = default_journal_dir();
        let journal = Journal::create(&dir, &journal_name(self.env.run_id, self.env.name))
            .map_err(|source| SetupError::CreateJournal { dir, source })?;
        self.journal = Some(journal.path().to_path_buf());
        let ledger = start_ledger(journal, self.env.run_id, self.env.name, cfg)
            .map_err(SetupError::WriteJournal)?;
        let aws = match cancel.run(Aws::connect(&cfg.access)).await {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                note_finished(&ledger, true);
                return Err(SetupError::Access(Box::new(e)));
            }
            None => {
                note_finished(&ledger, true);
                return Err(SetupError::Cancelled);
            }
        };
        self.ready = Some(Ready {
            polling,
            ledger,
            aws,
        });
        Ok(())
    }

    async fn run(&self, cancel: &Cancel) -> Result<Artifact, RunError> {
        let Some(ready) = &self.ready else {
            return Err(RunError::Failed(
                "the amazon-ebs build ran before it was prepared".into(),
            ));
        };
        // -debug: a pause before the first step too.
        let step = crate::interact::step_after("start");
        if !self.env.interact.pause(step, cancel).await {
            return Err(RunError::Cancelled);
        }
        self.ctx(ready, cancel).run().await.map_err(RunError::from)
    }

    fn creates_resources(&self) -> bool {
        true
    }

    async fn teardown(&self, success: bool, abort: &Cancel) -> Vec<(Undo, String)> {
        let Some(ready) = &self.ready else {
            return Vec::new();
        };
        let say = |m: String| self.say(m);
        let protected = protected_snapshots(self.cfg);
        teardown::run(
            &ready.aws,
            &ready.ledger,
            success,
            ready.polling,
            &protected,
            abort,
            &say,
        )
        .await
    }

    fn remaining(&self, success: bool) -> Vec<Undo> {
        match &self.ready {
            Some(r) => lock(&r.ledger)
                .to_unwind(success)
                .into_iter()
                .map(|e| e.undo)
                .collect(),
            None => Vec::new(),
        }
    }

    fn finish(&self, clean: bool, succeeded: bool) {
        if let Some(r) = &self.ready {
            // A successful build that left nothing archives its own journal.
            let _ = lock(&r.ledger).finish(clean, succeeded);
        }
    }

    fn journal(&self) -> Option<&Path> {
        self.journal.as_deref()
    }

    fn aws(&self) -> Option<&Aws> {
        self.ready.as_ref().map(|r| &r.aws)
    }

    fn ami_name(&self) -> Option<&str> {
        self.env.definition.get("ami_name").and_then(|v| v.as_str())
    }
}

/// The build's own error as the orchestrator sees it: cancelled, or failed with its text.
impl From<BuildError> for RunError {
    fn from(e: BuildError) -> RunError {
        if e.is_cancelled() {
            RunError::Cancelled
        } else {
            RunError::Failed(Box::new(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_are_safe_file_names() {
        assert_eq!(
            journal_name("0190-ab", "web worker/1"),
            "0190-ab.web_worker_1"
        );
    }
}
