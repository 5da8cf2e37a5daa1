//! Top-level errors and exit codes.
//!
//! Exit codes, as README.md documents them: 0 success; 1 build failed, everything cleaned up;
//! 2 usage or template error; 3 build failed or was interrupted and resources were left behind.
//! The code follows from the error's kind ([`Error::exit`]): a run whose builds failed exits 3
//! when one of them is [`BuildFailure::LeftBehind`], else 1.

use std::path::PathBuf;

use crate::ledger::Undo;
use crate::template::diag::Diagnostics;

/// What a run ended with, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    BuildFailed = 1,
    Usage = 2,
    LeftBehind = 3,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The template (or a var file) is invalid; the diagnostics say where and why.
    #[error("the template is not valid ({} error(s))", .0.error_count())]
    Template(Diagnostics),
    /// Everything was prepared but the step that would run it does not exist yet.
    #[error("{what} is not implemented yet in imgbuild {version}: nothing was created in AWS")]
    NotImplemented { what: String, version: &'static str },
    /// One or more builds of the run failed, or left resources behind.
    #[error("{}", render_builds(.failures, *.total))]
    Builds {
        /// Each build that did not end cleanly, in the run's order.
        failures: Vec<BuildFailure>,
        /// How many builds ran.
        total: usize,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

/// How one build did not end cleanly, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildFailure {
    /// It failed and everything it created was removed; `kept`: the artifact id of AMIs that
    /// exist although it failed (its post-processing did).
    Failed { build: String, kept: Option<String> },
    /// It was interrupted (Ctrl-C, SIGTERM, its deadline) and everything it created was removed;
    /// `kept` as for [`BuildFailure::Failed`].
    Cancelled { build: String, kept: Option<String> },
    /// Resources it created are still there: each with why it could not be removed, and the
    /// journal that lists them (for `imgbuild cleanup`). `failed`: the build failed too (a
    /// build can succeed and still leave something its teardown could not remove).
    LeftBehind {
        build: String,
        failed: bool,
        kept: Option<String>,
        resources: Vec<(Undo, String)>,
        journal: Option<PathBuf>,
    },
}

impl BuildFailure {
    pub fn build(&self) -> &str {
        match self {
            BuildFailure::Failed { build, .. }
            | BuildFailure::Cancelled { build, .. }
            | BuildFailure::LeftBehind { build, .. } => build,
        }
    }

    /// True when the build itself failed (or was interrupted).
    pub fn failed(&self) -> bool {
        match self {
            BuildFailure::Failed { .. } | BuildFailure::Cancelled { .. } => true,
            BuildFailure::LeftBehind { failed, .. } => *failed,
        }
    }

    /// The artifact id of AMIs kept although the build failed.
    pub fn kept(&self) -> Option<&str> {
        match self {
            BuildFailure::Failed { kept, .. }
            | BuildFailure::Cancelled { kept, .. }
            | BuildFailure::LeftBehind { kept, .. } => kept.as_deref(),
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            BuildFailure::Failed { .. } | BuildFailure::Cancelled { .. } => Exit::BuildFailed,
            BuildFailure::LeftBehind { .. } => Exit::LeftBehind,
        }
    }
}

/// The message of [`Error::Builds`]: what was left behind (with the journals and how to remove
/// it) when anything was, else which builds failed and that everything was removed.
fn render_builds(failures: &[BuildFailure], total: usize) -> String {
    let left: Vec<&BuildFailure> = failures
        .iter()
        .filter(|f| matches!(f, BuildFailure::LeftBehind { .. }))
        .collect();
    if !left.is_empty() {
        let mut msg = String::from("resources were left behind:");
        for f in left {
            if let BuildFailure::LeftBehind {
                build,
                resources,
                journal,
                ..
            } = f
            {
                for (u, why) in resources {
                    msg.push_str(&format!("\n  {build}: {} ({why})", u.describe()));
                }
                if let Some(j) = journal {
                    msg.push_str(&format!("\n  {build}: journal: {}", j.display()));
                }
            }
        }
        msg.push_str("\nremove them with `imgbuild cleanup` (they are tagged imgbuild:run-id)");
        return msg;
    }
    let failed: Vec<&BuildFailure> = failures.iter().filter(|f| f.failed()).collect();
    let names: Vec<&str> = failed.iter().map(|f| f.build()).collect();
    let kept: Vec<String> = failed
        .iter()
        .filter_map(|f| f.kept().map(|id| format!("{}: {id}", f.build())))
        .collect();
    let tail = if kept.is_empty() {
        "everything they created was removed".to_string()
    } else {
        format!(
            "the AMIs of builds that failed after creating them were kept ({}); everything else they created was removed",
            kept.join(", ")
        )
    };
    format!(
        "{} of {total} build(s) failed ({}); {tail}",
        failed.len(),
        names.join(", ")
    )
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Template(_) => Exit::Usage,
            Error::NotImplemented { .. } | Error::Runtime(_) => Exit::BuildFailed,
            Error::Builds { failures, .. } => failures
                .iter()
                .map(BuildFailure::exit)
                .max_by_key(|e| e.code())
                .unwrap_or(Exit::BuildFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminate(id: &str) -> Undo {
        Undo::TerminateInstance {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    #[test]
    fn the_exit_code_follows_the_kind() {
        let failed = BuildFailure::Failed {
            build: "a".into(),
            kept: None,
        };
        let cancelled = BuildFailure::Cancelled {
            build: "b".into(),
            kept: None,
        };
        let left = BuildFailure::LeftBehind {
            build: "c".into(),
            failed: false,
            kept: None,
            resources: vec![(terminate("i-1"), "not removed".into())],
            journal: Some(PathBuf::from("/j/run.c")),
        };
        let builds = |failures: Vec<BuildFailure>| Error::Builds { failures, total: 3 };
        assert_eq!(builds(vec![failed.clone()]).exit(), Exit::BuildFailed);
        assert_eq!(builds(vec![cancelled.clone()]).exit(), Exit::BuildFailed);
        assert_eq!(
            builds(vec![failed, cancelled, left.clone()]).exit(),
            Exit::LeftBehind
        );
        assert_eq!(builds(vec![left]).exit().code(), 3);
        assert_eq!(Error::Template(Diagnostics::default()).exit().code(), 2);
    }

    #[test]
    fn failed_builds_are_named_with_the_amis_kept() {
        let e = Error::Builds {
            failures: vec![
                BuildFailure::Failed {
                    build: "a".into(),
                    kept: None,
                },
                BuildFailure::Cancelled {
                    build: "b".into(),
                    kept: Some("us-east-1:ami-1".into()),
                },
            ],
            total: 3,
        };
        assert_eq!(
            e.to_string(),
            "2 of 3 build(s) failed (a, b); the AMIs of builds that failed after creating them were kept (b: us-east-1:ami-1); everything else they created was removed"
        );
    }

    #[test]
    fn what_was_left_is_listed_with_the_journal() {
        let e = Error::Builds {
            failures: vec![
                BuildFailure::Failed {
                    build: "a".into(),
                    kept: None,
                },
                BuildFailure::LeftBehind {
                    build: "c".into(),
                    failed: true,
                    kept: None,
                    resources: vec![(terminate("i-1"), "skipped (second interrupt)".into())],
                    journal: Some(PathBuf::from("/j/run.c")),
                },
            ],
            total: 2,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("resources were left behind:\n  c: "),
            "{text}"
        );
        assert!(text.contains("i-1"), "{text}");
        assert!(text.contains("(skipped (second interrupt))"), "{text}");
        assert!(text.contains("\n  c: journal: /j/run.c\n"), "{text}");
        assert!(
            text.ends_with("remove them with `imgbuild cleanup` (they are tagged imgbuild:run-id)")
        );
        assert!(!text.contains("a:"), "{text}");
    }
}
