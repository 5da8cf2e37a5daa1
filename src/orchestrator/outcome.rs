//! How one build ended: its artifacts or why it failed ([`Failure`]), what it left behind, and
//! the kind of its failure for the run's error ([`BuildFailure`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::builder::{Artifact, SetupError};
use crate::duration::human as human_duration;
use crate::error::BuildFailure;
use crate::ledger::Undo;

/// Why one build failed: the text of its `error` record and of the summary.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// It could not get ready; nothing was created.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Ctrl-C or SIGTERM.
    #[error("cancelled (interrupted)")]
    Cancelled,
    /// Its whole-build deadline (`-timeout`, `build_timeout`) expired.
    #[error("the whole-build deadline expired: {origin} of {} (the smaller of -timeout and build_timeout applies); the build was cancelled", human_duration(*.limit))]
    Expired {
        limit: Duration,
        origin: &'static str,
    },
    /// The builder's own error.
    #[error("{0}")]
    Builder(Box<dyn std::error::Error + Send + Sync>),
    /// Interrupted after the build made its artifact, before the post-processors ran.
    #[error("cancelled (interrupted) before post-processing")]
    CancelledBeforePostProcessing,
    /// Post-processors failed, each with its error.
    #[error("{}", .0.join("; "))]
    PostProcessing(Vec<String>),
}

impl Failure {
    /// True when the build was interrupted rather than failed.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            Failure::Setup(SetupError::Cancelled)
                | Failure::Cancelled
                | Failure::Expired { .. }
                | Failure::CancelledBeforePostProcessing
        )
    }
}

/// How one build ended.
#[derive(Debug)]
pub(super) struct Outcome {
    pub name: String,
    pub took: Duration,
    /// The artifacts to report (Packer's list after post-processing: the builder's AMIs and what
    /// each post-processor passed on); empty when no AMI was made (`skip_create_ami`).
    pub result: Result<Vec<Artifact>, Failure>,
    /// What still exists and is not the product, with why it could not be removed.
    pub left: Vec<(Undo, String)>,
    pub journal: Option<PathBuf>,
    /// The artifact id of AMIs that exist although the build failed (its post-processing did).
    pub kept: Option<String>,
}

impl Outcome {
    /// How the build ended, in the words of the final table.
    pub fn outcome(&self) -> &'static str {
        match (&self.result, self.left.is_empty()) {
            (Ok(_), true) => "succeeded",
            (Ok(_), false) => "succeeded and left resources",
            (Err(_), true) => "failed and cleaned up",
            (Err(_), false) => "failed and left resources",
        }
    }

    /// How the build did not end cleanly, by kind; `None` when it did.
    pub fn failure(&self) -> Option<BuildFailure> {
        let (build, kept) = (self.name.clone(), self.kept.clone());
        if !self.left.is_empty() {
            return Some(BuildFailure::LeftBehind {
                build,
                failed: self.result.is_err(),
                kept,
                resources: self.left.clone(),
                journal: self.journal.clone(),
            });
        }
        match &self.result {
            Ok(_) => None,
            Err(e) if e.is_cancelled() => Some(BuildFailure::Cancelled { build, kept }),
            Err(_) => Some(BuildFailure::Failed { build, kept }),
        }
    }

    /// The artifact ids of the build (each once; "(reused)" after AMIs that existed already),
    /// or the AMIs kept after a failure.
    pub fn artifact_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        match &self.result {
            Ok(artifacts) => {
                for a in artifacts {
                    let id = match a.reused {
                        true => format!("{} (reused)", a.id()),
                        false => a.id(),
                    };
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            Err(_) => {
                if let Some(k) = &self.kept {
                    ids.push(format!("{k} (kept)"));
                }
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruptions_are_told_apart_from_failures() {
        assert!(Failure::Cancelled.is_cancelled());
        assert!(Failure::Setup(SetupError::Cancelled).is_cancelled());
        assert!(Failure::CancelledBeforePostProcessing.is_cancelled());
        assert!(!Failure::Builder("boom".into()).is_cancelled());
        assert!(!Failure::PostProcessing(vec!["a".into(), "b".into()]).is_cancelled());
        assert_eq!(
            Failure::PostProcessing(vec!["a".into(), "b".into()]).to_string(),
            "a; b"
        );
    }
    fn outcome(result: Result<Vec<Artifact>, Failure>, left: usize) -> Outcome {
        let undo = Undo::DeleteKeyPair {
            region: "us-east-1".into(),
            name: "k".into(),
        };
        Outcome {
            name: "web".into(),
            took: Duration::ZERO,
            result,
            left: vec![(undo, "not removed".into()); left],
            journal: Some(PathBuf::from("/j/run.web")),
            kept: None,
        }
    }

    #[test]
    fn each_outcome_has_its_kind() {
        assert_eq!(outcome(Ok(vec![]), 0).failure(), None);
        let failed = outcome(Err(Failure::Builder("boom".into())), 0);
        assert!(matches!(
            failed.failure(),
            Some(BuildFailure::Failed { .. })
        ));
        let cancelled = outcome(Err(Failure::Cancelled), 0);
        assert!(matches!(
            cancelled.failure(),
            Some(BuildFailure::Cancelled { .. })
        ));
        let expired = Failure::Expired {
            limit: Duration::from_secs(4),
            origin: "-timeout",
        };
        assert!(matches!(
            outcome(Err(expired), 0).failure(),
            Some(BuildFailure::Cancelled { .. })
        ));
        match outcome(Ok(vec![]), 1).failure() {
            Some(BuildFailure::LeftBehind {
                failed, journal, ..
            }) => {
                assert!(!failed);
                assert_eq!(journal, Some(PathBuf::from("/j/run.web")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcome(Ok(vec![]), 1).outcome(),
            "succeeded and left resources"
        );
    }

    #[test]
    fn the_table_names_each_artifact_once_and_says_which_were_reused() {
        let ami = Artifact {
            amis: [("us-east-1".to_string(), "ami-1".to_string())].into(),
            ..Artifact::default()
        };
        let built = outcome(Ok(vec![ami.clone(), ami.clone(), ami.clone()]), 0);
        assert_eq!(built.artifact_ids(), vec!["us-east-1:ami-1"]);
        let reused = Artifact {
            reused: true,
            ..ami
        };
        let again = outcome(Ok(vec![reused.clone(), reused]), 0);
        assert_eq!(again.artifact_ids(), vec!["us-east-1:ami-1 (reused)"]);
        let mut failed = outcome(Err(Failure::Builder("boom".into())), 0);
        failed.kept = Some("us-east-1:ami-1".into());
        assert_eq!(failed.artifact_ids(), vec!["us-east-1:ami-1 (kept)"]);
    }
}
