//! The `file` provisioner: uploads files and directory trees (one tar stream per source, with
//! Packer's trailing-slash rule), `content` as a file, and downloads (`direction: download`).
//! Large transfers report their progress in bytes every few seconds.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;

use super::remote::{human_bytes, progress_reporter, progress_reporter_with, with_lines};
use super::{Failure, Runtime};
use crate::communicator::ssh::{shell_quote, ExecOptions, ExitOutcome, UploadSource};
use crate::provisioner::file::{Direction, FileConfig};

/// How often a transfer in progress says how far it got.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Transfers at least this large get a summary line with their throughput.
pub const SUMMARY_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Where a single file lands: `dst/` gets the source's name appended.
pub fn file_destination(src: &str, dst: &str) -> String {
    if dst.ends_with('/') {
        let name = Path::new(src.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{dst}{name}")
    } else {
        dst.to_string()
    }
}

pub(crate) async fn run(rt: &mut Runtime<'_, '_>, c: &FileConfig) -> Result<(), Failure> {
    if !rt.remote.enabled() {
        return Err(Failure::NoCommunicator {
            kind: "file".into(),
        });
    }
    let dst = rt.render_lenient(&c.destination);
    if let Some(content) = &c.content {
        let content = rt.render_lenient(content);
        rt.say(&format!("Uploading content => {dst}"));
        if dst.ends_with('/') {
            return Err(Failure::Other(format!(
                "the destination {dst:?} of `content` ends with a slash: give the path of the file to write"
            )));
        }
        let session = session(rt).await?;
        session
            .upload_file(UploadSource::Bytes(content.into_bytes()), &dst, 0o644, None)
            .await
            .map_err(|source| Failure::Ssh {
                what: format!("uploading content to {dst}"),
                source: Box::new(source),
            })?;
        return Ok(());
    }
    for src in &c.sources {
        let src = rt.render_lenient(src);
        match c.direction {
            Direction::Upload => upload(rt, &src, &dst, c.generated).await?,
            Direction::Download => download(rt, &src, &dst).await?,
        }
    }
    Ok(())
}

/// A live session, or the reason there is none (the staged provisioners use it too).
pub(super) async fn session(
    rt: &mut Runtime<'_, '_>,
) -> Result<std::sync::Arc<crate::communicator::ssh::Session>, Failure> {
    let ctx = rt.ctx;
    rt.remote
        .session(ctx.ui, None)
        .await
        .map_err(|source| Failure::Ssh {
            what: "cannot reach the instance".into(),
            source: Box::new(source),
        })
}

async fn upload(
    rt: &mut Runtime<'_, '_>,
    src: &str,
    dst: &str,
    generated: bool,
) -> Result<(), Failure> {
    rt.say(&format!("Uploading {src} => {dst}"));
    let meta = match tokio::fs::metadata(src).await {
        Ok(m) => m,
        Err(source) => {
            let mut what = format!("cannot upload {src}");
            if source.kind() == std::io::ErrorKind::NotFound {
                if Path::new(src).is_relative() {
                    what.push_str(&format!(
                        " (relative paths are resolved against the current directory, {})",
                        std::env::current_dir()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default()
                    ));
                }
                if generated {
                    what.push_str(
                        " (it is `generated`: nothing before this provisioner created it)",
                    );
                }
            }
            return Err(Failure::Local { what, source });
        }
    };
    let ctx = rt.ctx;
    let session = session(rt).await?;
    let started = Instant::now();
    let (tx, mut rx) = unbounded_channel();
    // On a terminal, a byte progress bar instead of progress lines.
    let bar = ctx.ui.bytes(ctx.build_name, &format!("uploading {src}"));
    let live = bar.is_live().then(|| bar.status());
    if meta.is_dir() {
        let progress = progress_reporter_with(tx, src.to_string(), PROGRESS_EVERY, live);
        let fut = session.upload_dir(src, dst, Some(progress));
        let stats = with_lines(ctx.ui, ctx.build_name, &mut rx, |_| {}, fut)
            .await
            .map_err(|source| Failure::Ssh {
                what: format!("uploading the directory {src} to {dst}"),
                source: Box::new(source),
            })?;
        rt.say(&format!(
            "Uploaded {} file{}, {} director{}, {} in {:.2}s{}",
            stats.files,
            if stats.files == 1 { "" } else { "s" },
            stats.dirs,
            if stats.dirs == 1 { "y" } else { "ies" },
            human_bytes(stats.bytes),
            started.elapsed().as_secs_f64(),
            rate(stats.bytes, started.elapsed())
        ));
        return Ok(());
    }
    let mut target = file_destination(src, dst);
    if !dst.ends_with('/') && remote_is_dir(&session, &target).await {
        // As scp and rsync do: a file copied onto a directory goes inside it.
        target = file_destination(src, &format!("{target}/"));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    let progress = if live.is_some() {
        Some(progress_reporter_with(
            tx,
            src.to_string(),
            PROGRESS_EVERY,
            live,
        ))
    } else {
        (meta.len() >= SUMMARY_MIN_BYTES)
            .then(|| progress_reporter(tx, src.to_string(), PROGRESS_EVERY))
    };
    let fut = session.upload_file(UploadSource::Path(src.into()), &target, mode, progress);
    let stats = with_lines(ctx.ui, ctx.build_name, &mut rx, |_| {}, fut)
        .await
        .map_err(|source| Failure::Ssh {
            what: format!("uploading {src} to {target}"),
            source: Box::new(source),
        })?;
    if stats.bytes >= SUMMARY_MIN_BYTES {
        rt.say(&format!(
            "Uploaded {} in {:.2}s{}",
            human_bytes(stats.bytes),
            started.elapsed().as_secs_f64(),
            rate(stats.bytes, started.elapsed())
        ));
    }
    Ok(())
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    if elapsed.as_secs_f64() <= 0.0 || bytes == 0 {
        return String::new();
    }
    format!(
        " ({}/s)",
        human_bytes((bytes as f64 / elapsed.as_secs_f64()) as u64)
    )
}

async fn remote_is_dir(session: &crate::communicator::ssh::Session, path: &str) -> bool {
    matches!(
        session
            .exec_collect(
                &format!("test -d {}", shell_quote(path)),
                ExecOptions::default()
            )
            .await,
        Ok((ExitOutcome::Exited(0), _, _))
    )
}

async fn download(rt: &mut Runtime<'_, '_>, src: &str, dst: &str) -> Result<(), Failure> {
    rt.say(&format!("Downloading {src} => {dst}"));
    if src.contains(['*', '?', '[']) {
        return Err(Failure::Other(format!(
            "cannot download {src}: glob patterns in download sources are not supported yet; name the file, or the directory with a trailing slash"
        )));
    }
    let ctx = rt.ctx;
    let session = session(rt).await?;
    let started = Instant::now();
    let (tx, mut rx) = unbounded_channel();
    let bar = ctx.ui.bytes(ctx.build_name, &format!("downloading {src}"));
    let live = bar.is_live().then(|| bar.status());
    let progress = progress_reporter_with(tx, src.to_string(), PROGRESS_EVERY, live);
    let fut = session.download(src, dst, Some(progress));
    let stats = with_lines(ctx.ui, ctx.build_name, &mut rx, |_| {}, fut)
        .await
        .map_err(|source| Failure::Ssh {
            what: format!("downloading {src} to {dst}"),
            source: Box::new(source),
        })?;
    if stats.bytes >= SUMMARY_MIN_BYTES || stats.files > 1 {
        rt.say(&format!(
            "Downloaded {} file{}, {} in {:.2}s{}",
            stats.files,
            if stats.files == 1 { "" } else { "s" },
            human_bytes(stats.bytes),
            started.elapsed().as_secs_f64(),
            rate(stats.bytes, started.elapsed())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_onto_a_slash_keeps_its_name() {
        assert_eq!(
            file_destination("files/app.conf", "/etc/app/"),
            "/etc/app/app.conf"
        );
        assert_eq!(
            file_destination("files/app.conf", "/etc/app.conf"),
            "/etc/app.conf"
        );
        assert_eq!(file_destination("/a/b/", "/x/"), "/x/b");
    }
}
