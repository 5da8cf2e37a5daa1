//! The staged-provisioner runtime that `ansible-local`, `chef-solo`, `salt-masterless` and
//! `puppet-masterless` share: the files a tool needs are laid out in a local staging tree
//! ([`Stage`]: copies and generated files), uploaded to the instance's staging directory as ONE
//! tar stream over one channel, then the tool's commands run on the instance with their output
//! streamed under the build's prefix, and the staging directory is removed when asked to.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::unbounded_channel;

use super::file::session;
use super::remote::{with_lines, Line};
use super::shell::{check_outcome, Tail};
use super::{Failure, Runtime};
use crate::communicator::ssh::{shell_quote, ExecOptions, ExitOutcome, Stream};

/// A local tree laid out as the staging directory will be on the instance. Removed on drop.
pub(crate) struct Stage {
    dir: tempfile::TempDir,
}

/// The most entries a staged directory copy walks (a guard against copying a huge tree).
const MAX_ENTRIES: usize = 100_000;

impl Stage {
    pub(crate) fn new() -> Result<Stage, Failure> {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-stage")
            .tempdir()
            .map_err(|source| Failure::Local {
                what: "cannot create a local staging directory".into(),
                source,
            })?;
        Ok(Stage { dir })
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the local file or directory `src` to `rel` in the stage (a directory's contents
    /// go into `rel`), keeping modes.
    pub(crate) fn add(&self, src: &Path, rel: &str) -> Result<(), Failure> {
        let dst = self.dir.path().join(rel);
        let mut budget = MAX_ENTRIES;
        copy_tree(src, &dst, &mut budget).map_err(|source| Failure::Local {
            what: format!("cannot stage {}", src.display()),
            source,
        })
    }

    /// Writes a generated file (`content`) to `rel` with `mode`.
    pub(crate) fn write(&self, rel: &str, content: &[u8], mode: u32) -> Result<(), Failure> {
        let p = self.dir.path().join(rel);
        let io = |source| Failure::Local {
            what: format!("cannot write the generated {rel}"),
            source,
        };
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&p, content).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io)
    }
}

fn copy_tree(src: &Path, dst: &Path, budget: &mut usize) -> std::io::Result<()> {
    if *budget == 0 {
        return Err(std::io::Error::other(format!(
            "more than {MAX_ENTRIES} files to stage"
        )));
    }
    *budget -= 1;
    let meta = std::fs::metadata(src)?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        std::fs::set_permissions(dst, meta.permissions())?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(src)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            let name = e.file_name().unwrap_or_default();
            copy_tree(&e, &dst.join(name), budget)?;
        }
    } else {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(src, dst)?;
    }
    Ok(())
}

/// `mkdir -p` the remote staging directory and uploads the stage's contents into it, as one
/// tar stream.
pub(crate) async fn upload(
    rt: &mut Runtime<'_, '_>,
    stage: &Stage,
    remote_dir: &str,
) -> Result<(), Failure> {
    exec(
        rt,
        "creating the staging directory",
        &format!("mkdir -p {}", shell_quote(remote_dir)),
        &[0],
    )
    .await?;
    rt.say(&format!("Uploading the staged files to {remote_dir}"));
    let s = session(rt).await?;
    let src = format!("{}/", stage.root().display());
    s.upload_dir(&src, remote_dir, None)
        .await
        .map_err(|source| Failure::Ssh {
            what: format!("uploading the staged files to {remote_dir}"),
            source: Box::new(source),
        })?;
    Ok(())
}

/// Runs `command` on the instance, its output streamed with the build's prefix; an exit code
/// not in `valid` is a failure naming `what`, the command and the last lines.
pub(crate) async fn exec(
    rt: &mut Runtime<'_, '_>,
    what: &str,
    command: &str,
    valid: &[i64],
) -> Result<ExitOutcome, Failure> {
    let ctx = rt.ctx;
    let s = session(rt).await?;
    let (tx, mut rx) = unbounded_channel();
    let fut = s.exec(command, ExecOptions::default(), move |stream, line| {
        let _ = tx.send(match stream {
            Stream::Stdout => Line::Out(line.to_string()),
            Stream::Stderr => Line::Err(line.to_string()),
        });
    });
    let mut tail = Tail::default();
    let outcome = with_lines(ctx.ui, ctx.build_name, &mut rx, |l| tail.push(l), fut)
        .await
        .map_err(|source| Failure::Ssh {
            what: what.to_string(),
            source: Box::new(source),
        })?;
    check_outcome(rt, &outcome, valid, false, what.to_string(), command, &tail)?;
    Ok(outcome)
}

/// `rm -rf` the remote staging directory.
pub(crate) async fn remove(rt: &mut Runtime<'_, '_>, remote_dir: &str) -> Result<(), Failure> {
    rt.say(&format!("Removing staging directory {remote_dir}"));
    exec(
        rt,
        "removing the staging directory",
        &format!("rm -rf {}", shell_quote(remote_dir)),
        &[0],
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_copies_trees_with_modes_and_writes_generated_files() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/x.txt"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            src.path().join("a/b/x.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let st = Stage::new().unwrap();
        st.add(&src.path().join("a"), "roles/a").unwrap();
        st.write("inv", b"127.0.0.1\n", 0o644).unwrap();
        let x = st.root().join("roles/a/b/x.txt");
        assert_eq!(std::fs::read_to_string(&x).unwrap(), "x");
        assert_eq!(
            std::fs::metadata(&x).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_to_string(st.root().join("inv")).unwrap(),
            "127.0.0.1\n"
        );
        let root = st.root().to_path_buf();
        drop(st);
        assert!(!root.exists());
    }
}
