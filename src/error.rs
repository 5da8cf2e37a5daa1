//! Top-level errors and exit codes.
//!
//! Exit codes, as README.md documents them: 0 success; 1 build failed, everything cleaned up;
//! 2 usage or template error; 3 build failed or was interrupted and resources were left behind.

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
    /// One or more builds failed; `left_behind` when resources remain (listed in the message).
    #[error("{message}")]
    Build { message: String, left_behind: bool },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Template(_) => Exit::Usage,
            Error::NotImplemented { .. } | Error::Runtime(_) => Exit::BuildFailed,
            Error::Build { left_behind, .. } => {
                if *left_behind {
                    Exit::LeftBehind
                } else {
                    Exit::BuildFailed
                }
            }
        }
    }
}
