//! The local side of transfers: what to upload, the tar stream of a tree, unpacking a
//! download safely, and the remote shell commands that pack and unpack.

use super::*;

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

pub(super) fn walk(dir: &Path, name: &Path, out: &mut Vec<LocalEntry>) -> io::Result<()> {
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
pub(super) struct ExactReader<'a, R> {
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
pub(super) fn check_ancestors(base: &Path, target: &Path) -> Result<(), String> {
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
pub(super) fn remove_non_dir(path: &Path) -> io::Result<()> {
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
pub(super) fn unpack_script(dest: &str) -> String {
    format!(
        "D={}; if [ ! -d \"$D\" ]; then echo \"imgbuild: destination directory does not exist: $D\" >&2; exit {EXIT_NO_DESTINATION}; fi; exec tar -x -p --no-same-owner -f - -C \"$D\"",
        shell_quote(dest)
    )
}

/// The remote script that streams `remote` as a tar archive: its contents when it ends with `/`,
/// else the item itself under its own name.
pub(super) fn pack_script(remote: &str) -> String {
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
