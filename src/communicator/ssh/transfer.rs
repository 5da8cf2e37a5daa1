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

/// What to upload as a file.
#[derive(Clone, Debug)]
pub enum UploadSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Bytes moved so far (uploads: file content, with its total; downloads: the archive stream,
/// total unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferProgress {
    pub bytes: u64,
    pub total: Option<u64>,
}

/// Progress callback (called on the session's thread, at most every 256 KiB and at the end).
pub type ProgressFn = Arc<dyn Fn(TransferProgress) + Send + Sync>;

/// What a transfer moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

// ------------------------------------------------------------------ pure logic ---

/// Packer's trailing-slash rule for a directory source: `src` puts the directory itself inside
/// the destination (its entries are named `src/...`); `src/` puts its contents directly in it.
/// Returns the name the directory itself gets in the archive (`None`: contents only).
pub fn archive_prefix(local_dir: &Path) -> io::Result<Option<OsString>> {
    if local_dir.as_os_str().as_bytes().ends_with(b"/") {
        return Ok(None);
    }
    match local_dir.file_name() {
        Some(name) => Ok(Some(name.to_os_string())),
        // `.`, `..`, `x/..`: name it after what it resolves to.
        None => {
            let real = fs::canonicalize(local_dir)?;
            Ok(Some(
                real.file_name()
                    .map(OsStr::to_os_string)
                    .unwrap_or_else(|| OsString::from("root")),
            ))
        }
    }
}

/// `(directory, file name)` of a remote file path; `None` for an empty name, `.`, `..` or a path
/// ending in `/`.
pub fn split_remote(remote: &str) -> Option<(String, String)> {
    let (dir, name) = match remote.rfind('/') {
        Some(0) => ("/".to_string(), &remote[1..]),
        Some(i) => (remote[..i].to_string(), &remote[i + 1..]),
        None => (".".to_string(), remote),
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((dir, name.to_string()))
}

/// One thing to put in an upload archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink { target: PathBuf },
}

#[derive(Clone, Debug)]
pub struct LocalEntry {
    /// Where it is here (`None`: the bytes are given).
    pub fs_path: Option<PathBuf>,
    /// Its name in the archive (relative).
    pub name: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// The entries of `root` (a directory), depth first, sorted by name; `prefix` names the root
/// itself (see [`archive_prefix`]). Sockets, FIFOs and devices are skipped.
pub fn collect_tree(root: &Path, prefix: Option<&OsStr>) -> io::Result<Vec<LocalEntry>> {
    let meta = fs::metadata(root)?;
    let mut out = Vec::new();
    let base = match prefix {
        Some(p) => {
            out.push(LocalEntry {
                fs_path: Some(root.to_path_buf()),
                name: PathBuf::from(p),
                kind: EntryKind::Dir,
                mode: meta.mode() & 0o7777,
                mtime: meta.mtime().max(0) as u64,
            });
            PathBuf::from(p)
        }
        None => PathBuf::new(),
    };
    walk(root, &base, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, name: &Path, out: &mut Vec<LocalEntry>) -> io::Result<()> {
    let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let meta = fs::symlink_metadata(&path)?;
        let child_name = name.join(child.file_name());
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink {
                target: fs::read_link(&path)?,
            }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File { size: meta.len() }
        } else {
            tracing::warn!(path = %path.display(), "skipping a special file (not a file, directory or symlink)");
            continue;
        };
        let is_dir = kind == EntryKind::Dir;
        out.push(LocalEntry {
            fs_path: Some(path.clone()),
            name: child_name.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime().max(0) as u64,
        });
        if is_dir {
            walk(&path, &child_name, out)?;
        }
    }
    Ok(())
}

/// Reads exactly `size` bytes: pads with zeros if the file shrank, stops if it grew (the archive
/// stays well-formed either way), counting content bytes for progress.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    counter: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        (self.counter)(n as u64);
        Ok(n)
    }
}

/// Writes `entries` as a tar archive (GNU headers: long names and link targets survive; owner
/// 0/0, modes and mtimes as given). `data` supplies the bytes of entries without `fs_path`.
pub fn write_tar<W: Write>(
    out: W,
    entries: &[LocalEntry],
    data: Option<&[u8]>,
    counter: &mut dyn FnMut(u64),
) -> io::Result<(W, TransferStats)> {
    let mut builder = tar::Builder::new(out);
    let mut stats = TransferStats::default();
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_mtime(entry.mtime);
        header.set_uid(0);
        header.set_gid(0);
        match &entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, &entry.name, io::empty())?;
                stats.dirs += 1;
            }
            EntryKind::File { size } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(*size);
                let reader: Box<dyn Read> =
                    match &entry.fs_path {
                        Some(p) => Box::new(fs::File::open(p).map_err(|e| {
                            io::Error::new(e.kind(), format!("{}: {e}", p.display()))
                        })?),
                        None => Box::new(data.unwrap_or_default()),
                    };
                let exact = ExactReader {
                    inner: reader,
                    left: *size,
                    counter: &mut *counter,
                };
                builder.append_data(&mut header, &entry.name, exact)?;
                stats.files += 1;
                stats.bytes += size;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &entry.name, target)?;
                stats.symlinks += 1;
            }
        }
    }
    builder.finish()?;
    Ok((builder.into_inner()?, stats))
}

/// How archive entry names map to local paths on download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadLayout {
    /// `tar -C dir .`: entries `./x` go to `dest/x`.
    Contents { dest: PathBuf },
    /// `tar -c name`: the entry `name` (file or directory) becomes `root`, `name/x` is `root/x`.
    Item { name: OsString, root: PathBuf },
}

impl DownloadLayout {
    /// The local path of an archive entry; `Ok(None)` for the destination itself; `Err` for a
    /// name that is absolute, climbs with `..`, or is outside the expected item.
    pub fn map(&self, entry: &Path) -> Result<Option<PathBuf>, String> {
        let mut parts = Vec::new();
        for c in entry.components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(format!("unsafe path in archive: {}", entry.display()));
                }
            }
        }
        match self {
            DownloadLayout::Contents { dest } => {
                if parts.is_empty() {
                    return Ok(None);
                }
                Ok(Some(parts.iter().fold(dest.clone(), |p, c| p.join(c))))
            }
            DownloadLayout::Item { name, root } => match parts.split_first() {
                Some((first, rest)) if *first == name.as_os_str() => {
                    Ok(Some(rest.iter().fold(root.clone(), |p, c| p.join(c))))
                }
                _ => Err(format!("unexpected entry in archive: {}", entry.display())),
            },
        }
    }

    fn base(&self) -> &Path {
        match self {
            DownloadLayout::Contents { dest } => dest,
            DownloadLayout::Item { root, .. } => root.parent().unwrap_or(root),
        }
    }
}

/// Fails if any existing directory between `base` and `target` (exclusive) is a symlink or not
/// a directory, so nothing is ever written through a link the archive planted.
fn check_ancestors(base: &Path, target: &Path) -> Result<(), String> {
    let rel = target
        .strip_prefix(base)
        .map_err(|_| format!("{} is outside {}", target.display(), base.display()))?;
    let mut cur = base.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "refusing to write through the symlink {}",
                    cur.display()
                ))
            }
            Ok(m) if !m.is_dir() => {
                return Err(format!("{} is not a directory", cur.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes what is at `path` unless it is a directory (a file or a symlink is replaced).
fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory", path.display()),
        )),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
pub enum UnpackError {
    /// Reading the archive failed (the stream).
    Read(io::Error),
    /// Writing here failed.
    Write(PathBuf, io::Error),
    /// The archive is not acceptable.
    Refused(String),
}

/// Unpacks a tar stream according to `layout`. Directory modes are applied last (deepest
/// first) so read-only directories can still be filled.
pub fn unpack<R: Read>(reader: R, layout: &DownloadLayout) -> Result<TransferStats, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = TransferStats::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let base = layout.base().to_path_buf();
    let entries = archive.entries().map_err(UnpackError::Read)?;
    for entry in entries {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let name = entry.path().map_err(UnpackError::Read)?.into_owned();
        let Some(target) = layout.map(&name).map_err(UnpackError::Refused)? else {
            continue;
        };
        check_ancestors(&base, &target).map_err(UnpackError::Refused)?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let werr = |e: io::Error| UnpackError::Write(target.clone(), e);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_non_dir(&target).map_err(werr)?;
                        fs::create_dir(&target).map_err(werr)?;
                    }
                    Err(_) => fs::create_dir_all(&target).map_err(werr)?,
                }
                dir_modes.push((target.clone(), mode));
                stats.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(werr)?;
                }
                remove_non_dir(&target).map_err(werr)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(werr)?;
                let n = io::copy(&mut entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::Other {
                        UnpackError::Read(e)
                    } else {
                        UnpackError::Write(target.clone(), e)
                    }
                })?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(werr)?;
                stats.files += 1;
                stats.bytes += n;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!("symlink {} has no target", name.display()))
                    })?
                    .into_owned();
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(werr)?;
                }
                remove_non_dir(&target).map_err(werr)?;
                std::os::unix::fs::symlink(&link, &target).map_err(werr)?;
                stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!("hard link {} has no target", name.display()))
                    })?
                    .into_owned();
                let source = layout
                    .map(&link)
                    .map_err(UnpackError::Refused)?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!(
                            "hard link {} to the destination itself",
                            name.display()
                        ))
                    })?;
                check_ancestors(&base, &source).map_err(UnpackError::Refused)?;
                remove_non_dir(&target).map_err(werr)?;
                fs::hard_link(&source, &target).map_err(werr)?;
                stats.files += 1;
            }
            other => {
                tracing::warn!(entry = %name.display(), kind = ?other, "skipping an unsupported archive entry");
            }
        }
    }
    for (dir, mode) in dir_modes.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .map_err(|e| UnpackError::Write(dir.clone(), e))?;
    }
    Ok(stats)
}

/// The remote script that unpacks a tar stream into an existing directory.
fn unpack_script(dest: &str) -> String {
    format!(
        "D={}; if [ ! -d \"$D\" ]; then echo \"imgbuild: destination directory does not exist: $D\" >&2; exit {EXIT_NO_DESTINATION}; fi; exec tar -x -p --no-same-owner -f - -C \"$D\"",
        shell_quote(dest)
    )
}

/// The remote script that streams `remote` as a tar archive: its contents when it ends with `/`,
/// else the item itself under its own name.
fn pack_script(remote: &str) -> String {
    let q = shell_quote(remote);
    if remote.ends_with('/') {
        format!(
            "P={q}; if [ ! -d \"$P\" ]; then echo \"imgbuild: no such directory: $P\" >&2; exit {EXIT_NO_SOURCE}; fi; exec tar -c -f - -C \"$P\" ."
        )
    } else {
        format!(
            "P={q}; if [ ! -e \"$P\" ] && [ ! -L \"$P\" ]; then echo \"imgbuild: no such file or directory: $P\" >&2; exit {EXIT_NO_SOURCE}; fi; cd -- \"$(dirname -- \"$P\")\" && exec tar -c -f - -- \"$(basename -- \"$P\")\""
        )
    }
}

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
