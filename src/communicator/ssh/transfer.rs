//! Transfers as tar streams over one channel: `upload_file` and `upload_dir` (remote `tar -x`),
//! `download` of a file or a directory (remote `tar -c` streamed back and unpacked here, refusing
//! any path that would land outside the destination). Symlinks, empty directories, modes and any
//! file name (spaces, unicode, long) survive both ways.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::conn::Conn;
use super::error::{Endpoint, SshError};
use super::exec::{finish, shell_quote, start_command, stop_error, ExitOutcome};
use super::pump::{io_to_ssh, Step, Stop};
use super::session::Session;

mod archive;
pub use archive::*;

/// Remote exit status of the transfer scripts when the destination directory is missing.
const EXIT_NO_DESTINATION: i32 = 97;
/// Remote exit status of the download script when the source does not exist.
const EXIT_NO_SOURCE: i32 = 96;
/// How often progress is reported at most (in bytes).
const PROGRESS_STEP: u64 = 256 * 1024;
/// Buffer between tar and the channel.
const IO_BUFFER: usize = 128 * 1024;
/// How much remote stderr is kept for error messages.
const STDERR_KEEP: usize = 16 * 1024;

// ------------------------------------------------------------- on the session ---

/// Throttled progress reporting.
struct Progress {
    f: Option<ProgressFn>,
    bytes: u64,
    reported: u64,
    total: Option<u64>,
}

impl Progress {
    fn new(f: Option<ProgressFn>, total: Option<u64>) -> Self {
        Progress {
            f,
            bytes: 0,
            reported: 0,
            total,
        }
    }

    fn add(&mut self, n: u64) {
        self.bytes += n;
        if self.bytes - self.reported >= PROGRESS_STEP {
            self.report();
        }
    }

    fn report(&mut self) {
        self.reported = self.bytes;
        if let Some(f) = &self.f {
            f(TransferProgress {
                bytes: self.bytes,
                total: self.total,
            });
        }
    }
}

/// Collected remote output of a transfer command.
#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Captured {
    fn keep(buf: &mut Vec<u8>, data: &[u8]) {
        buf.extend_from_slice(data);
        if buf.len() > STDERR_KEEP {
            let cut = buf.len() - STDERR_KEEP;
            buf.drain(..cut);
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Reads whatever is available on `stream_id` into `captured` once (non-blocking).
fn drain_once(
    conn: &Conn,
    abandon: &AtomicBool,
    channel: &ssh2::Channel,
    stream_id: i32,
    captured: &mut Vec<u8>,
) -> Result<bool, Stop> {
    let mut buf = [0u8; 8192];
    let sess = conn.sess.clone();
    let mut stream = channel.stream(stream_id);
    match conn.drive(abandon, conn.deadline(), || {
        stream.read(&mut buf).map_err(|e| io_to_ssh(&sess, e))
    })? {
        Step::Done(n) if n > 0 => {
            Captured::keep(captured, &buf[..n]);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `io::Write` into a channel's stdin, draining its output while the window is full.
struct ChannelWriter<'a> {
    conn: &'a mut Conn,
    abandon: &'a AtomicBool,
    channel: &'a mut ssh2::Channel,
    captured: &'a mut Captured,
    stop: Option<Stop>,
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut last_progress = Instant::now();
        let sess = self.conn.sess.clone();
        loop {
            let deadline = last_progress + self.conn.io_timeout;
            let channel = &mut *self.channel;
            match self.conn.drive(self.abandon, deadline, || {
                channel.write(buf).map_err(|e| io_to_ssh(&sess, e))
            }) {
                Ok(Step::Done(n)) => return Ok(n),
                Ok(Step::Idle) => {
                    let mut got = false;
                    let mut failed = None;
                    for (id, sink) in [
                        (0, &mut self.captured.stdout),
                        (1, &mut self.captured.stderr),
                    ] {
                        match drain_once(self.conn, self.abandon, self.channel, id, sink) {
                            Ok(g) => got |= g,
                            Err(stop) => {
                                failed = Some(stop);
                                break;
                            }
                        }
                    }
                    if let Some(stop) = failed {
                        return Err(self.fail(stop));
                    }
                    if got {
                        last_progress = Instant::now();
                    }
                    if self.channel.eof() {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "the remote command stopped reading",
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(self.fail(Stop::Stalled));
                    }
                    if let Err(stop) = self.conn.wait_channel(self.abandon, self.channel, true) {
                        return Err(self.fail(stop));
                    }
                }
                Err(stop) => return Err(self.fail(stop)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChannelWriter<'_> {
    fn fail(&mut self, stop: Stop) -> io::Error {
        let e = io::Error::other(stop.to_string());
        self.stop = Some(stop);
        e
    }
}

/// `io::Read` of a channel's stdout, keeping its stderr, with a stall bound.
struct ChannelReader<'a> {
    conn: &'a mut Conn,
    abandon: &'a AtomicBool,
    channel: &'a mut ssh2::Channel,
    captured: &'a mut Captured,
    progress: &'a mut Progress,
    stop: Option<Stop>,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut last_progress = Instant::now();
        let sess = self.conn.sess.clone();
        loop {
            let deadline = last_progress + self.conn.io_timeout;
            let mut stdout = self.channel.stream(0);
            match self.conn.drive(self.abandon, deadline, || {
                stdout.read(buf).map_err(|e| io_to_ssh(&sess, e))
            }) {
                Ok(Step::Done(n)) => {
                    self.progress.add(n as u64);
                    return Ok(n);
                }
                Ok(Step::Idle) => {
                    match drain_once(
                        self.conn,
                        self.abandon,
                        self.channel,
                        1,
                        &mut self.captured.stderr,
                    ) {
                        Ok(true) => last_progress = Instant::now(),
                        Ok(false) => {}
                        Err(stop) => return Err(self.fail(stop)),
                    }
                    if self.channel.eof() {
                        return Ok(0);
                    }
                    if Instant::now() >= deadline {
                        return Err(self.fail(Stop::Stalled));
                    }
                    if let Err(stop) = self.conn.wait_channel(self.abandon, self.channel, false) {
                        return Err(self.fail(stop));
                    }
                }
                Err(stop) => return Err(self.fail(stop)),
            }
        }
    }
}

impl ChannelReader<'_> {
    fn fail(&mut self, stop: Stop) -> io::Error {
        let e = io::Error::other(stop.to_string());
        self.stop = Some(stop);
        e
    }
}

/// Reads the rest of stdout and stderr until EOF, then how the command ended.
fn drain_and_finish(
    conn: &mut Conn,
    abandon: &AtomicBool,
    channel: &mut ssh2::Channel,
    captured: &mut Captured,
) -> Result<ExitOutcome, Stop> {
    let mut last_progress = Instant::now();
    loop {
        let mut got = false;
        for (id, sink) in [(0, &mut captured.stdout), (1, &mut captured.stderr)] {
            got |= drain_once(conn, abandon, channel, id, sink)?;
        }
        if channel.eof() {
            break;
        }
        if got {
            last_progress = Instant::now();
        } else {
            if last_progress.elapsed() >= conn.io_timeout {
                return Err(Stop::Stalled);
            }
            conn.wait_channel(abandon, channel, false)?;
        }
    }
    finish(conn, abandon, channel)
}

/// Streams `entries` into `tar -x` in `remote_dir`.
#[allow(clippy::too_many_arguments)]
fn upload_entries(
    conn: &mut Conn,
    abandon: &AtomicBool,
    remote_dir: &str,
    entries: &[LocalEntry],
    data: Option<&[u8]>,
    progress: Option<ProgressFn>,
    local_shown: &str,
    remote_shown: &str,
) -> Result<TransferStats, SshError> {
    let endpoint = conn.endpoint.clone();
    let upload_error = |message: String| SshError::Upload {
        endpoint: endpoint.clone(),
        paths: Box::new((local_shown.to_string(), remote_shown.to_string())),
        message,
    };
    let total: u64 = entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size } => size,
            _ => 0,
        })
        .sum();
    let mut progress = Progress::new(progress, Some(total));
    let script = unpack_script(remote_dir);
    let mut channel = start_command(conn, abandon, &script, "tar -x (upload)", false)?;
    let mut captured = Captured::default();
    let written = {
        let writer = ChannelWriter {
            conn: &mut *conn,
            abandon,
            channel: &mut channel,
            captured: &mut captured,
            stop: None,
        };
        // Batch tar's small writes (512-byte headers, 8 KiB copies) into full SSH packets.
        let buffered = io::BufWriter::with_capacity(IO_BUFFER, writer);
        let mut count = |n: u64| progress.add(n);
        match write_tar(buffered, entries, data, &mut count) {
            Ok((buffered, stats)) => match buffered.into_inner() {
                Ok(_) => Ok(stats),
                Err(e) => Err(io::Error::new(e.error().kind(), e.error().to_string())),
            },
            Err(e) => Err(e),
        }
    };
    let mut written_err = None;
    let stats = match written {
        Ok(stats) => {
            if let Err(stop) = conn.complete(abandon, || channel.send_eof()) {
                written_err = Some(stop.to_string());
            }
            Some(stats)
        }
        Err(e) => {
            written_err = Some(e.to_string());
            None
        }
    };
    if abandon.load(std::sync::atomic::Ordering::Relaxed) {
        conn.release(channel);
        return Err(SshError::Cancelled {
            endpoint,
            operation: "upload",
        });
    }
    let outcome = drain_and_finish(conn, abandon, &mut channel, &mut captured);
    if let Err(stop) = &outcome {
        conn.note(stop);
    }
    conn.release(channel);
    match outcome {
        Ok(ExitOutcome::Exited(EXIT_NO_DESTINATION)) => Err(SshError::UploadDestinationMissing {
            endpoint,
            remote: remote_dir.to_string(),
        }),
        Ok(ExitOutcome::Exited(0)) if written_err.is_none() => {
            progress.report();
            Ok(stats.unwrap_or_default())
        }
        Ok(other) => {
            let mut msg = format!("remote tar: {other}");
            if let Some(w) = written_err {
                msg.push_str(&format!("; sending: {w}"));
            }
            let stderr = captured.stderr_text();
            if !stderr.is_empty() {
                msg.push_str(&format!("; stderr: {stderr}"));
            }
            Err(upload_error(msg))
        }
        Err(stop) => Err(stop_error(conn, stop, "upload", |_, m| {
            upload_error(match &written_err {
                Some(w) => format!("{w}; {m}"),
                None => m,
            })
        })),
    }
}

fn download_on(
    conn: &mut Conn,
    abandon: &AtomicBool,
    remote: &str,
    layout: &DownloadLayout,
    local: &Path,
    progress: Option<ProgressFn>,
) -> Result<TransferStats, SshError> {
    let endpoint = conn.endpoint.clone();
    let download_error = |message: String| SshError::Download {
        endpoint: endpoint.clone(),
        paths: Box::new((remote.to_string(), local.to_path_buf())),
        message,
    };
    let mut progress = Progress::new(progress, None);
    let script = pack_script(remote);
    let mut channel = start_command(conn, abandon, &script, "tar -c (download)", false)?;
    let mut captured = Captured::default();
    let (unpacked, read_stop) = {
        let mut reader = ChannelReader {
            conn: &mut *conn,
            abandon,
            channel: &mut channel,
            captured: &mut captured,
            progress: &mut progress,
            stop: None,
        };
        let mut buffered = io::BufReader::with_capacity(IO_BUFFER, &mut reader);
        let result = unpack(&mut buffered, layout);
        // Drain what tar leaves after its end-of-archive blocks.
        if result.is_ok() {
            let mut sink = [0u8; 8192];
            while let Ok(n) = buffered.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        }
        drop(buffered);
        (result, reader.stop.take())
    };
    if let Some(stop) = read_stop {
        conn.note(&stop);
        let stop_text = stop.to_string();
        let err = stop_error(conn, stop, "download", |_, m| download_error(m));
        conn.release(channel);
        if matches!(err, SshError::Download { .. }) {
            return Err(download_error(stop_text));
        }
        return Err(err);
    }
    let outcome = drain_and_finish(conn, abandon, &mut channel, &mut captured);
    if let Err(stop) = &outcome {
        conn.note(stop);
    }
    conn.release(channel);
    let outcome = match outcome {
        Ok(o) => o,
        Err(stop) => return Err(stop_error(conn, stop, "download", |_, m| download_error(m))),
    };
    match (outcome, unpacked) {
        (ExitOutcome::Exited(EXIT_NO_SOURCE), _) => Err(SshError::DownloadSourceMissing {
            endpoint,
            remote: remote.to_string(),
        }),
        (_, Err(UnpackError::Write(path, source))) => Err(SshError::WriteLocal { path, source }),
        (_, Err(UnpackError::Refused(why))) => Err(download_error(why)),
        (ExitOutcome::Exited(0), Ok(stats)) => {
            progress.report();
            Ok(stats)
        }
        (other, unpacked) => {
            let mut msg = format!("remote tar: {other}");
            if let Err(UnpackError::Read(e)) = unpacked {
                msg.push_str(&format!("; reading the archive: {e}"));
            }
            let stderr = captured.stderr_text();
            if !stderr.is_empty() {
                msg.push_str(&format!("; stderr: {stderr}"));
            }
            Err(download_error(msg))
        }
    }
}

/// Where a download lands: `remote/` (contents) into `local` (created if missing); `remote` (a
/// file or a directory) becomes `local` itself, or `local/<name>` when `local` is an existing
/// directory or ends with `/`.
pub fn download_layout(remote: &str, local: &Path) -> Result<DownloadLayout, String> {
    if remote.ends_with('/') {
        return Ok(DownloadLayout::Contents {
            dest: local.to_path_buf(),
        });
    }
    let (_, name) = split_remote(remote)
        .ok_or_else(|| format!("cannot tell the name of the remote path {remote:?}"))?;
    let into_dir = local.as_os_str().as_bytes().ends_with(b"/") || local.is_dir();
    let root = if into_dir {
        local.join(&name)
    } else {
        local.to_path_buf()
    };
    Ok(DownloadLayout::Item {
        name: OsString::from(name),
        root,
    })
}

impl Session {
    /// Uploads one file (from disk or bytes) to exactly `remote_path` with `mode` (not subject to
    /// the remote umask). The remote directory must exist. An existing file is replaced (unlinked
    /// first, so a running binary can be replaced).
    pub async fn upload_file(
        &self,
        source: UploadSource,
        remote_path: &str,
        mode: u32,
        progress: Option<ProgressFn>,
    ) -> Result<TransferStats, SshError> {
        let endpoint = self.endpoint().clone();
        let (dir, name) = split_remote(remote_path).ok_or_else(|| SshError::InvalidOptions {
            endpoint: endpoint.clone(),
            message: format!("the upload destination {remote_path:?} is not a file path"),
        })?;
        let remote = remote_path.to_string();
        self.call(move |conn, abandon| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (entry, data, shown) = match source {
                UploadSource::Path(path) => {
                    let meta = fs::metadata(&path).map_err(|source| SshError::ReadLocal {
                        path: path.clone(),
                        source,
                    })?;
                    if !meta.is_file() {
                        return Err(SshError::ReadLocal {
                            path: path.clone(),
                            source: io::Error::new(
                                io::ErrorKind::InvalidInput,
                                "not a regular file",
                            ),
                        });
                    }
                    let shown = path.display().to_string();
                    (
                        LocalEntry {
                            fs_path: Some(path),
                            name: PathBuf::from(&name),
                            kind: EntryKind::File { size: meta.len() },
                            mode: mode & 0o7777,
                            mtime: meta.mtime().max(0) as u64,
                        },
                        None,
                        shown,
                    )
                }
                UploadSource::Bytes(bytes) => (
                    LocalEntry {
                        fs_path: None,
                        name: PathBuf::from(&name),
                        kind: EntryKind::File {
                            size: bytes.len() as u64,
                        },
                        mode: mode & 0o7777,
                        mtime: now,
                    },
                    Some(bytes),
                    "(bytes)".to_string(),
                ),
            };
            upload_entries(
                conn,
                abandon,
                &dir,
                std::slice::from_ref(&entry),
                data.as_deref(),
                progress,
                &shown,
                &remote,
            )
        })
        .await
    }

    /// Uploads a directory tree as one tar stream over one channel. Packer's rule: `dir` puts the
    /// directory itself inside `remote_dest`, `dir/` puts its contents there. `remote_dest` must
    /// already exist.
    pub async fn upload_dir(
        &self,
        local_dir: impl AsRef<Path>,
        remote_dest: &str,
        progress: Option<ProgressFn>,
    ) -> Result<TransferStats, SshError> {
        let local = local_dir.as_ref().to_path_buf();
        let remote = remote_dest.to_string();
        let meta = tokio::fs::metadata(&local)
            .await
            .map_err(|source| SshError::ReadLocal {
                path: local.clone(),
                source,
            })?;
        if !meta.is_dir() {
            return Err(SshError::UploadSourceNotADirectory { path: local });
        }
        self.call(move |conn, abandon| {
            let read_err = |source: io::Error| SshError::ReadLocal {
                path: local.clone(),
                source,
            };
            let prefix = archive_prefix(&local).map_err(read_err)?;
            let entries = collect_tree(&local, prefix.as_deref()).map_err(read_err)?;
            let shown = local.display().to_string();
            upload_entries(
                conn, abandon, &remote, &entries, None, progress, &shown, &remote,
            )
        })
        .await
    }

    /// Downloads a remote file or directory (see `download_layout` for where it lands).
    pub async fn download(
        &self,
        remote_path: &str,
        local_path: impl AsRef<Path>,
        progress: Option<ProgressFn>,
    ) -> Result<TransferStats, SshError> {
        let local = local_path.as_ref().to_path_buf();
        let remote = remote_path.to_string();
        let endpoint: Endpoint = self.endpoint().clone();
        let layout = download_layout(&remote, &local)
            .map_err(|message| SshError::InvalidOptions { endpoint, message })?;
        self.call(move |conn, abandon| {
            let parent = match &layout {
                DownloadLayout::Contents { dest } => dest.clone(),
                DownloadLayout::Item { root, .. } => {
                    root.parent().map(Path::to_path_buf).unwrap_or_default()
                }
            };
            if !parent.as_os_str().is_empty() {
                fs::create_dir_all(&parent).map_err(|source| SshError::WriteLocal {
                    path: parent.clone(),
                    source,
                })?;
            }
            download_on(conn, abandon, &remote, &layout, &local, progress)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        assert_eq!(
            archive_prefix(&src).expect("prefix"),
            Some(OsString::from("src"))
        );
        let with_slash = PathBuf::from(format!("{}/", src.display()));
        assert_eq!(archive_prefix(&with_slash).expect("prefix"), None);
        let dot = src.join(".");
        assert_eq!(
            archive_prefix(&dot).expect("prefix"),
            Some(OsString::from("src"))
        );
    }

    #[test]
    fn split_remote_paths() {
        assert_eq!(
            split_remote("/tmp/a b/f.txt"),
            Some(("/tmp/a b".into(), "f.txt".into()))
        );
        assert_eq!(split_remote("/f"), Some(("/".into(), "f".into())));
        assert_eq!(split_remote("f"), Some((".".into(), "f".into())));
        assert_eq!(split_remote("/tmp/"), None);
        assert_eq!(split_remote("/tmp/.."), None);
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tree");
        fs::create_dir_all(root.join("empty dir")).expect("mkdir");
        fs::create_dir_all(root.join("sub/ünï")).expect("mkdir");
        fs::write(root.join("sub/ünï/file with spaces.txt"), b"hello").expect("write");
        fs::write(root.join("run.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
        std::os::unix::fs::symlink("sub/ünï/file with spaces.txt", root.join("link")).expect("ln");
        let long = "d".repeat(120);
        fs::create_dir_all(root.join(&long)).expect("mkdir");
        fs::write(root.join(&long).join("f".repeat(120)), b"long").expect("write");
        dir
    }

    #[test]
    fn tree_to_tar_and_back_preserves_everything() {
        let src = sample_tree();
        let root = src.path().join("tree");
        let entries = collect_tree(&root, Some(OsStr::new("tree"))).expect("collect");
        assert_eq!(entries[0].name, PathBuf::from("tree"));
        let mut counted = 0u64;
        let (bytes, stats) =
            write_tar(Vec::new(), &entries, None, &mut |n| counted += n).expect("tar");
        assert_eq!(stats.symlinks, 1);
        assert_eq!(stats.files, 3);
        assert_eq!(counted, 5 + 10 + 4);

        let out = tempfile::tempdir().expect("tempdir");
        let layout = DownloadLayout::Item {
            name: "tree".into(),
            root: out.path().join("copy"),
        };
        let back = unpack(&bytes[..], &layout).expect("unpack");
        assert_eq!(back.files, 3);
        let copy = out.path().join("copy");
        assert_eq!(
            fs::read(copy.join("sub/ünï/file with spaces.txt")).expect("read"),
            b"hello"
        );
        assert!(copy.join("empty dir").is_dir());
        assert_eq!(
            fs::read_link(copy.join("link")).expect("readlink"),
            PathBuf::from("sub/ünï/file with spaces.txt")
        );
        let mode = fs::metadata(copy.join("run.sh")).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o750);
        let long = copy.join("d".repeat(120)).join("f".repeat(120));
        assert_eq!(fs::read(long).expect("read long"), b"long");
    }

    #[test]
    fn contents_layout_strips_dot() {
        let layout = DownloadLayout::Contents {
            dest: PathBuf::from("/x"),
        };
        assert_eq!(layout.map(Path::new("./")).expect("map"), None);
        assert_eq!(
            layout.map(Path::new("./a/b")).expect("map"),
            Some(PathBuf::from("/x/a/b"))
        );
        assert!(layout.map(Path::new("../etc/passwd")).is_err());
        assert!(layout.map(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn item_layout_requires_the_item_name() {
        let layout = DownloadLayout::Item {
            name: "data".into(),
            root: PathBuf::from("/dl/data"),
        };
        assert_eq!(
            layout.map(Path::new("data/x")).expect("map"),
            Some(PathBuf::from("/dl/data/x"))
        );
        assert!(layout.map(Path::new("other/x")).is_err());
    }

    fn raw_tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    #[test]
    fn unpack_refuses_to_write_through_a_planted_symlink() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dest = tempfile::tempdir().expect("tempdir");
        let archive = raw_tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "evil", outside.path()).expect("link");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, "evil/pwned", &b"bad"[..])
                .expect("file");
        });
        let layout = DownloadLayout::Contents {
            dest: dest.path().to_path_buf(),
        };
        let err = unpack(&archive[..], &layout).expect_err("must refuse");
        assert!(
            matches!(err, UnpackError::Refused(ref m) if m.contains("symlink")),
            "{err:?}"
        );
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn unpack_applies_read_only_dir_modes_last() {
        let archive = raw_tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o555);
            b.append_data(&mut h, "ro", io::empty()).expect("dir");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(2);
            h.set_mode(0o600);
            b.append_data(&mut h, "ro/f", &b"ok"[..]).expect("file");
        });
        let dest = tempfile::tempdir().expect("tempdir");
        let layout = DownloadLayout::Contents {
            dest: dest.path().to_path_buf(),
        };
        unpack(&archive[..], &layout).expect("unpack");
        let ro = dest.path().join("ro");
        assert_eq!(fs::metadata(&ro).expect("stat").mode() & 0o777, 0o555);
        assert_eq!(fs::read(ro.join("f")).expect("read"), b"ok");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).expect("chmod back");
    }

    #[test]
    fn download_layout_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let existing = dir.path().to_path_buf();
        assert_eq!(
            download_layout("/srv/data", &existing).expect("layout"),
            DownloadLayout::Item {
                name: "data".into(),
                root: existing.join("data")
            }
        );
        let new = existing.join("renamed");
        assert_eq!(
            download_layout("/srv/data", &new).expect("layout"),
            DownloadLayout::Item {
                name: "data".into(),
                root: new.clone()
            }
        );
        assert_eq!(
            download_layout("/srv/data/", &new).expect("layout"),
            DownloadLayout::Contents { dest: new }
        );
    }

    #[test]
    fn scripts_quote_paths() {
        let s = unpack_script("/tmp/it's here");
        assert!(s.starts_with("D='/tmp/it'\\''s here';"), "{s}");
        assert!(pack_script("/a/").contains("-C \"$P\" ."));
        assert!(pack_script("/a").contains("basename"));
    }
}
