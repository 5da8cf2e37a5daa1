//! Files that several writers update at once: the manifest and the `ami-outputs` files, written
//! by every build of a run and by imgbuild runs side by side (two pipelines in one workspace).
//!
//! An update holds an exclusive lock on `<file>.lock` while it reads the file, computes the new
//! contents, writes them to a temporary file in the same directory and renames that over the
//! file. So no update is lost, and a reader sees the old file or the new one, never a part.
//! The lock is `flock(2)`: the kernel releases it when its holder dies, so a `kill -9` leaves no
//! stale lock (at worst an empty, unlocked `.lock` file, which the next writer takes). Waiting for
//! it is bounded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::duration::human as human_duration;

/// How long an update waits for another writer's lock (each update holds it for milliseconds).
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} stayed locked by another writer for {}", path.display(), human_duration(*waited))]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} was left as it is: {message}", path.display())]
    Content { path: PathBuf, message: String },
}

/// An exclusive lock on a `.lock` file; released (and the file removed) on drop.
struct Lock {
    path: PathBuf,
    _file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held (the file closes after this), so a writer that opened this
        // file and then gets the lock sees it is gone and tries again.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the lock; also says how long another writer held it up, if it did.
fn lock(path: &Path, wait: Duration) -> Result<(Lock, Option<Duration>), OutputError> {
    let lp = lock_path(path);
    let err = |source| OutputError::Lock {
        path: lp.clone(),
        source,
    };
    if let Some(dir) = lp.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    let mut contended = false;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lp)
            .map_err(err)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            let held = file.metadata().map_err(err)?;
            match std::fs::metadata(&lp) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    let lock = Lock {
                        path: lp,
                        _file: file,
                    };
                    return Ok((lock, contended.then(|| start.elapsed())));
                }
                // The previous holder removed it after this process opened it: try again.
                _ => {}
            }
        } else {
            let e = std::io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR)
            ) {
                return Err(err(e));
            }
            contended = true;
        }
        drop(file);
        if start.elapsed() >= wait {
            return Err(OutputError::LockTimeout {
                path: lp,
                waited: wait,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Replaces `path` with `contents` through a temporary file in the same directory and a rename.
/// The file keeps its permissions; a new one gets 0644.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), OutputError> {
    let err = |source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Updates `path` under its lock: `change` gets the current contents (`None` when the file does
/// not exist) and returns the new ones, or why the file must be left alone. Returns how long
/// another writer made this one wait, if it did.
pub fn update(
    path: &Path,
    wait: Duration,
    change: impl FnOnce(Option<&str>) -> Result<String, String>,
) -> Result<Option<Duration>, OutputError> {
    let (_lock, waited) = lock(path, wait)?;
    let current = match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(OutputError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let new = change(current.as_deref()).map_err(|message| OutputError::Content {
        path: path.to_path_buf(),
        message,
    })?;
    write_atomic(path, new.as_bytes())?;
    crate::testhook::hold_lock();
    Ok(waited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("sub").join("count.txt"));
        let n = 8;
        let per = 25;
        let barrier = Arc::new(Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|t| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..per {
                        update(&path, LOCK_WAIT, |cur| {
                            let mut s = cur.unwrap_or_default().to_string();
                            s.push_str(&format!("{t}-{i}\n"));
                            Ok(s)
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&*path).unwrap();
        assert_eq!(text.lines().count(), n * per);
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["count.txt"],
            "no lock or temporary file is left"
        );
    }

    #[test]
    fn a_held_lock_times_out_and_a_refused_change_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let held = lock(&path, LOCK_WAIT).unwrap();
        assert!(held.1.is_none(), "nobody held it");
        let start = Instant::now();
        let e = update(&path, Duration::from_millis(150), |_| Ok("new".into())).unwrap_err();
        assert!(matches!(e, OutputError::LockTimeout { .. }), "{e}");
        assert!(start.elapsed() >= Duration::from_millis(150));
        assert!(e
            .to_string()
            .ends_with("m.json.lock stayed locked by another writer for 150 milliseconds"));
        drop(held);
        let e = update(&path, LOCK_WAIT, |cur| {
            assert_eq!(cur, Some("old"));
            Err("it is not JSON".into())
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("m.json was left as it is: it is not JSON"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(
            update(&path, LOCK_WAIT, |_| Ok("new".into())).unwrap(),
            None
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "permissions are kept");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_writer_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(lock_path(&path), "").unwrap();
        update(&path, Duration::from_millis(500), |_| Ok("x".into())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }
}
