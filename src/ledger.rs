//! The ledger: what a build created, as data, so that cleanup cannot be forgotten.
//!
//! The function that creates a resource records an [`Undo`] the moment the resource's ID exists.
//! The orchestrator owns the ledger and unwinds it in reverse on every path: on success the
//! product (the AMIs and their snapshots) is [`Ledger::keep`]t and everything else undone; on
//! failure or cancellation everything is undone.
//!
//! Every record is also appended to a journal file and flushed before `record` returns, so that
//! `imgbuild cleanup` can finish the job after `kill -9`, a power cut or a vanished CI runner. The
//! journal is JSON lines; a torn last line (a crash mid-write) is ignored when reading. A
//! journal whose run has nothing left to clean up is moved to `done/` beside it ([`archive`]):
//! by the build itself when it succeeded ([`Ledger::finish`]), else by `imgbuild cleanup`.
//!
//! This module is pure data and files; the calls that undo (EC2 API) live in the builder.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// How to remove one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    DeleteKeyPair { region: String, name: String },
    DeleteSecurityGroup { region: String, id: String },
    TerminateInstance { region: String, id: String },
    DeleteVolume { region: String, id: String },
    DeregisterImage { region: String, id: String },
    DeleteSnapshot { region: String, id: String },
}

impl Undo {
    /// "instance i-0abc in us-east-1", for messages.
    pub fn describe(&self) -> String {
        match self {
            Undo::DeleteKeyPair { region, name } => format!("key pair {name} in {region}"),
            Undo::DeleteSecurityGroup { region, id } => format!("security group {id} in {region}"),
            Undo::TerminateInstance { region, id } => format!("instance {id} in {region}"),
            Undo::DeleteVolume { region, id } => format!("volume {id} in {region}"),
            Undo::DeregisterImage { region, id } => format!("AMI {id} in {region}"),
            Undo::DeleteSnapshot { region, id } => format!("snapshot {id} in {region}"),
        }
    }
}

/// Identifies an entry of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Exists and will be undone when the ledger unwinds.
    Created,
    /// Part of the result: not undone.
    Kept,
    /// Removed.
    Undone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: EntryId,
    pub undo: Undo,
    pub state: State,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run started (first line of every journal).
    Started {
        run_id: String,
        build: String,
        pid: u32,
        at: i64,
        /// `custom_endpoint_ec2`, so that `imgbuild cleanup` talks to the same EC2.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Snapshot IDs the template names (block device mappings): the user's, never deleted
        /// along with an image.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        protected_snapshots: Vec<String>,
    },
    /// A create call is about to be sent; if the process dies before `Created`, the resource may
    /// exist without its ID being known: it is found by this client token (RunInstances), by
    /// `name` (CopyImage: EC2 cannot look images up by client token) or by the run-id tag.
    Intent {
        seq: u64,
        call: String,
        region: String,
        client_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Created {
        seq: u64,
        /// The `Intent` this creation resolves, if one was written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<u64>,
        #[serde(flatten)]
        undo: Undo,
    },
    /// EC2 refused the `Intent`'s call (an error answer): it created nothing.
    Refused {
        intent: u64,
    },
    Kept {
        seq: u64,
    },
    Undone {
        seq: u64,
    },
    /// The run ended; `clean` is true when nothing it created remains except what it kept.
    Finished {
        clean: bool,
        at: i64,
    },
}

/// The journal of one run, appended and flushed line by line.
///
/// The writing build holds an exclusive `flock` on its journal for as long as it runs (the kernel
/// drops it when the process dies, also by `kill -9`), so that `imgbuild cleanup` can tell a
/// running build from a dead one; cleanup holds a shared one while it appends.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// Whether a journal's writer still runs, as its lock tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Held by a running build.
    Held,
    /// Free: no build writes it any more.
    Free,
    /// The file system does not support locks (or the file could not be opened).
    Unknown,
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor owned by `file`, valid for the call.
    let r = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn would_block(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK) || e.raw_os_error() == Some(libc::EAGAIN)
}

impl Journal {
    /// Creates the journal file (and its directory) for a run, and locks it for this process.
    pub fn create(dir: &Path, run_id: &str) -> std::io::Result<Journal> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        // Owner only: a journal names the account's resources, endpoint and client tokens.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        // Best effort: where locks are not supported, cleanup falls back to the pid.
        let _ = flock(&file, libc::LOCK_EX);
        // The file's name is on disk too (a power cut right after must not lose the journal).
        File::open(dir)?.sync_all()?;
        Ok(Journal { path, file })
    }

    /// Opens an existing journal to append to it (`imgbuild cleanup` records what it removed),
    /// with a shared lock: refused (`WouldBlock`) while the build that writes it runs.
    pub fn open_append(path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new().append(true).open(path)?;
        match flock(&file, libc::LOCK_SH) {
            Err(e) if would_block(&e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the journal is locked by a running build",
                ))
            }
            _ => {}
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Whether a running build holds this journal.
    pub fn lock_state(path: &Path) -> LockState {
        let Ok(file) = File::open(path) else {
            return LockState::Unknown;
        };
        match flock(&file, libc::LOCK_SH) {
            Ok(()) => LockState::Free, // dropped (and unlocked) with `file`
            Err(e) if would_block(&e) => LockState::Held,
            Err(_) => LockState::Unknown,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it to disk (`fdatasync`) before returning: a `Created`
    /// line is durable before the caller uses the resource's ID, so a crash at any later point
    /// leaves the resource findable.
    pub fn append(&mut self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Reads a journal; a torn or garbled line (a crash mid-write) is skipped, not fatal.
    pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
        let reader = BufReader::new(File::open(path)?);
        let mut events = Vec::new();
        for line in reader.split(b'\n') {
            let line = line?;
            if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                events.push(e);
            }
        }
        Ok(events)
    }
}

/// The default journal directory: `$IMGBUILD_JOURNAL_DIR`, else `$XDG_STATE_HOME/imgbuild/journal`,
/// else `~/.local/state/imgbuild/journal`.
pub fn default_journal_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMGBUILD_JOURNAL_DIR") {
        return PathBuf::from(d);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("imgbuild/journal")
}

/// The ledger behind a build's lock, shared by the steps that record and the teardown that
/// unwinds. A poisoned lock (a thread panicked holding it) still yields the ledger: what was
/// created must be undone all the same.
pub fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    match l.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What one build created. Entries are only ever added, then marked kept or undone.
#[derive(Debug)]
pub struct Ledger {
    entries: Vec<Entry>,
    next: u64,
    journal: Option<Journal>,
    /// Intents written whose create call has not recorded a resource (yet): the resource may
    /// exist without its ID being known, so the journal must stay for `imgbuild cleanup`.
    unanswered: Vec<u64>,
}

impl Ledger {
    /// A ledger that journals to `journal` (None: in memory only, for tests of pure logic).
    pub fn new(journal: Option<Journal>) -> Ledger {
        Ledger {
            entries: Vec::new(),
            next: 1,
            journal,
            unanswered: Vec::new(),
        }
    }

    pub fn journal_path(&self) -> Option<&Path> {
        self.journal.as_ref().map(Journal::path)
    }

    fn write(&mut self, e: &Event) -> std::io::Result<()> {
        match &mut self.journal {
            Some(j) => j.append(e),
            None => Ok(()),
        }
    }

    /// Writes a free-form event (start, intent, finish).
    pub fn note(&mut self, e: &Event) -> std::io::Result<()> {
        self.write(e)
    }

    /// Writes an intent before a create call; pass its number to [`Ledger::record`] when the call
    /// returns the resource's ID. `name`: the name the resource gets, where EC2 cannot look it up
    /// by client token (CopyImage).
    pub fn intent(
        &mut self,
        call: &str,
        region: &str,
        client_token: &str,
        name: Option<&str>,
    ) -> std::io::Result<u64> {
        let seq = self.next;
        self.next += 1;
        self.unanswered.push(seq);
        self.write(&Event::Intent {
            seq,
            call: call.into(),
            region: region.into(),
            client_token: client_token.into(),
            name: name.map(str::to_string),
        })?;
        Ok(seq)
    }

    /// A ledger that goes on from a journal (`imgbuild cleanup`): `entries` are what still exists
    /// (with their numbers from the journal), new entries are numbered after `max_seq`, and
    /// removals are appended to `journal`.
    pub fn resume(journal: Option<Journal>, entries: Vec<Entry>, max_seq: u64) -> Ledger {
        let next = entries
            .iter()
            .map(|e| e.id.0)
            .max()
            .unwrap_or(0)
            .max(max_seq)
            + 1;
        Ledger {
            entries: entries
                .into_iter()
                .map(|e| Entry {
                    state: State::Created,
                    ..e
                })
                .collect(),
            next,
            journal,
            unanswered: Vec::new(),
        }
    }

    /// Records a created resource; the journal line is on disk when this returns. The entry is
    /// in the ledger even if journaling fails (the caller reports that error, and unwinding still
    /// removes the resource).
    pub fn record(&mut self, undo: Undo, intent: Option<u64>) -> (EntryId, std::io::Result<()>) {
        let id = EntryId(self.next);
        self.next += 1;
        self.unanswered.retain(|i| Some(*i) != intent);
        self.entries.push(Entry {
            id,
            undo: undo.clone(),
            state: State::Created,
        });
        let r = self.write(&Event::Created {
            seq: id.0,
            intent,
            undo,
        });
        (id, r)
    }

    /// Notes that EC2 refused the call of `intent` (an error answer, so nothing was created): the
    /// intent no longer keeps the journal from being archived.
    pub fn refused(&mut self, intent: u64) -> std::io::Result<()> {
        self.unanswered.retain(|i| *i != intent);
        self.write(&Event::Refused { intent })
    }

    /// Marks an entry as part of the result (not undone on success).
    pub fn keep(&mut self, id: EntryId) -> std::io::Result<()> {
        self.set(id, State::Kept)?;
        self.write(&Event::Kept { seq: id.0 })
    }

    /// Marks an entry as removed.
    pub fn undone(&mut self, id: EntryId) -> std::io::Result<()> {
        self.set(id, State::Undone)?;
        self.write(&Event::Undone { seq: id.0 })
    }

    fn set(&mut self, id: EntryId, state: State) -> std::io::Result<()> {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.state = state;
                Ok(())
            }
            None => Err(std::io::Error::other(format!("no ledger entry {}", id.0))),
        }
    }

    /// What to undo, newest first: everything created and not kept. On failure the caller first
    /// un-keeps nothing: kept entries stay kept only on success, see [`Ledger::to_unwind`].
    pub fn to_unwind(&self, success: bool) -> Vec<Entry> {
        self.entries
            .iter()
            .rev()
            .filter(|e| match e.state {
                State::Created => true,
                State::Kept => !success,
                State::Undone => false,
            })
            .cloned()
            .collect()
    }

    /// Everything that still exists and is not part of the result.
    pub fn remaining(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.state == State::Created)
            .collect()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Writes the run's end (`clean`: nothing it created remains but its product). When the
    /// build `succeeded`, left nothing and every create call it sent was answered, the journal
    /// has nothing more to tell `imgbuild cleanup` and is moved to `done/` beside it; its new
    /// place is returned. A failed run's journal stays: cleanup looks up what it may have left.
    pub fn finish(&mut self, clean: bool, succeeded: bool) -> std::io::Result<Option<PathBuf>> {
        self.write(&Event::Finished {
            clean,
            at: chrono::Utc::now().timestamp(),
        })?;
        let done = clean && succeeded && self.unanswered.is_empty() && self.remaining().is_empty();
        match &mut self.journal {
            Some(j) if done => {
                let to = archive(&j.path)?;
                j.path.clone_from(&to);
                Ok(Some(to))
            }
            _ => Ok(None),
        }
    }
}

/// Moves a finished journal to `done/` beside it, created owner-only (0700) like the journal
/// directory; already moved (by a concurrent cleanup) is fine. Returns its new path.
pub fn archive(path: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new(".")).join("done");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let to = dir.join(path.file_name().unwrap_or_default());
    match std::fs::rename(path, &to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(to),
        r => r.map(|()| to),
    }
}

/// A create call whose result never came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIntent {
    pub seq: u64,
    pub call: String,
    pub region: String,
    pub client_token: String,
    pub name: Option<String>,
}

/// A run reconstructed from its journal: what it created and whether it finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub run_id: Option<String>,
    pub build: Option<String>,
    pub pid: Option<u32>,
    /// When the run started (Unix seconds).
    pub started_at: Option<i64>,
    pub endpoint: Option<String>,
    pub protected_snapshots: Vec<String>,
    /// `Some(clean)` once the run ended.
    pub finished: Option<bool>,
    /// Resources created and neither undone nor kept, newest first (for an unfinished run, kept
    /// ones too: a run killed after keeping its AMI did not deliver it). Their `id` is their
    /// number in the journal.
    pub leftovers: Vec<Entry>,
    /// The product of a finished run (kept AMIs and snapshots): never removed.
    pub kept: Vec<Undo>,
    /// Create calls sent whose result never came back (to look up by client token or name).
    pub unresolved_intents: Vec<PendingIntent>,
    /// The highest entry number in the journal.
    pub max_seq: u64,
    /// Every region the journal names.
    pub regions: Vec<String>,
}

impl Undo {
    pub fn region(&self) -> &str {
        match self {
            Undo::DeleteKeyPair { region, .. }
            | Undo::DeleteSecurityGroup { region, .. }
            | Undo::TerminateInstance { region, .. }
            | Undo::DeleteVolume { region, .. }
            | Undo::DeregisterImage { region, .. }
            | Undo::DeleteSnapshot { region, .. } => region,
        }
    }

    /// The resource's ID (a key pair's name).
    pub fn id(&self) -> &str {
        match self {
            Undo::DeleteKeyPair { name, .. } => name,
            Undo::DeleteSecurityGroup { id, .. }
            | Undo::TerminateInstance { id, .. }
            | Undo::DeleteVolume { id, .. }
            | Undo::DeregisterImage { id, .. }
            | Undo::DeleteSnapshot { id, .. } => id,
        }
    }

    /// `instance`, `volume`, `snapshot`, `ami`, `key-pair`, `security-group`.
    pub fn kind(&self) -> &'static str {
        match self {
            Undo::DeleteKeyPair { .. } => "key-pair",
            Undo::DeleteSecurityGroup { .. } => "security-group",
            Undo::TerminateInstance { .. } => "instance",
            Undo::DeleteVolume { .. } => "volume",
            Undo::DeregisterImage { .. } => "ami",
            Undo::DeleteSnapshot { .. } => "snapshot",
        }
    }
}

/// Replays a journal's events.
pub fn replay(events: &[Event]) -> Replay {
    let mut r = Replay::default();
    let mut live: Vec<(u64, Undo, State)> = Vec::new();
    let mut intents: Vec<PendingIntent> = Vec::new();
    let region = |r: &mut Replay, name: &str| {
        if !r.regions.iter().any(|x| x == name) {
            r.regions.push(name.to_string());
        }
    };
    for e in events {
        match e {
            Event::Started {
                run_id,
                build,
                pid,
                at,
                endpoint,
                protected_snapshots,
            } => {
                r.run_id = Some(run_id.clone());
                r.build = Some(build.clone());
                r.pid = Some(*pid);
                r.started_at = Some(*at);
                r.endpoint.clone_from(endpoint);
                r.protected_snapshots.clone_from(protected_snapshots);
            }
            Event::Intent {
                seq,
                call,
                region: reg,
                client_token,
                name,
            } => {
                r.max_seq = r.max_seq.max(*seq);
                region(&mut r, reg);
                intents.push(PendingIntent {
                    seq: *seq,
                    call: call.clone(),
                    region: reg.clone(),
                    client_token: client_token.clone(),
                    name: name.clone(),
                });
            }
            Event::Created { seq, intent, undo } => {
                r.max_seq = r.max_seq.max(*seq);
                region(&mut r, undo.region());
                intents.retain(|i| Some(i.seq) != *intent);
                live.push((*seq, undo.clone(), State::Created));
            }
            Event::Refused { intent } => intents.retain(|i| i.seq != *intent),
            Event::Kept { seq } | Event::Undone { seq } => {
                let state = if matches!(e, Event::Kept { .. }) {
                    State::Kept
                } else {
                    State::Undone
                };
                // The same resource may be recorded twice (a build and then cleanup, or two
                // cleanups at once): what happens to one entry happens to the resource.
                if let Some(undo) = live.iter().find(|(s, ..)| s == seq).map(|x| x.1.clone()) {
                    for x in live.iter_mut().filter(|x| x.1 == undo) {
                        x.2 = state;
                    }
                }
            }
            Event::Finished { clean, .. } => r.finished = Some(*clean),
        }
    }
    let mut seen: Vec<Undo> = Vec::new();
    live.retain(|(_, u, _)| {
        if seen.contains(u) {
            false
        } else {
            seen.push(u.clone());
            true
        }
    });
    let finished = r.finished.is_some();
    r.kept = live
        .iter()
        .filter(|(_, _, st)| *st == State::Kept && finished)
        .map(|(_, u, _)| u.clone())
        .collect();
    r.leftovers = live
        .into_iter()
        .rev()
        .filter(|(_, _, st)| *st == State::Created || (*st == State::Kept && !finished))
        .map(|(seq, undo, state)| Entry {
            id: EntryId(seq),
            undo,
            state,
        })
        .collect();
    r.unresolved_intents = intents;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sg(id: &str) -> Undo {
        Undo::DeleteSecurityGroup {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    fn undos(r: &Replay) -> Vec<Undo> {
        r.leftovers.iter().map(|e| e.undo.clone()).collect()
    }

    #[test]
    fn unwinds_newest_first_and_keeps_the_product_on_success() {
        let mut l = Ledger::new(None);
        let (k, _) = l.record(
            Undo::DeleteKeyPair {
                region: "r".into(),
                name: "imgbuild_1".into(),
            },
            None,
        );
        let (g, _) = l.record(sg("sg-1"), None);
        let (i, _) = l.record(
            Undo::TerminateInstance {
                region: "r".into(),
                id: "i-1".into(),
            },
            None,
        );
        let (a, _) = l.record(
            Undo::DeregisterImage {
                region: "r".into(),
                id: "ami-1".into(),
            },
            None,
        );
        l.keep(a).unwrap();
        let ids: Vec<EntryId> = l.to_unwind(true).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![i, g, k]);
        let ids: Vec<EntryId> = l.to_unwind(false).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![a, i, g, k]);
        l.undone(i).unwrap();
        assert_eq!(l.remaining().len(), 2);
        assert!(l.undone(EntryId(99)).is_err());
    }

    #[test]
    fn journal_file_and_the_directory_it_creates_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("state/imgbuild/journal");
        let j = Journal::create(&jdir, "run-m").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(j.path()), 0o600);
        assert_eq!(mode(&jdir), 0o700);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
    }

    #[test]
    fn a_refused_intent_is_resolved_and_lets_the_journal_be_archived() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), "run-r").unwrap();
        let path = j.path().to_path_buf();
        let mut l = Ledger::new(Some(j));
        let first = l
            .intent("RunInstances", "us-east-1", "tok-1", None)
            .unwrap();
        let second = l
            .intent("RunInstances", "us-east-1", "tok-2", None)
            .unwrap();
        l.refused(first).unwrap();
        let rp = replay(&Journal::read(&path).unwrap());
        let left: Vec<u64> = rp.unresolved_intents.iter().map(|i| i.seq).collect();
        assert_eq!(left, vec![second]);
        let (id, r) = l.record(sg("i-1"), Some(second));
        r.unwrap();
        l.undone(id).unwrap();
        assert!(l.finish(true, true).unwrap().is_some(), "archived");
    }

    #[test]
    fn journal_round_trips_and_replays_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), "run-1").unwrap();
        let path = j.path().to_path_buf();
        let mut l = Ledger::new(Some(j));
        l.note(&Event::Started {
            run_id: "run-1".into(),
            build: "web".into(),
            pid: 1,
            at: 0,
            endpoint: Some("http://127.0.0.1:1".into()),
            protected_snapshots: vec!["snap-user".into()],
        })
        .unwrap();
        let seq = l
            .intent("CreateSecurityGroup", "us-east-1", "tok-1", None)
            .unwrap();
        let (_, r) = l.record(sg("sg-1"), Some(seq));
        r.unwrap();
        let _ = l
            .intent("CopyImage", "us-west-2", "tok-2", Some("web-1"))
            .unwrap();
        let events = Journal::read(&path).unwrap();
        assert_eq!(events.len(), 4);
        let rp = replay(&events);
        assert_eq!(rp.run_id.as_deref(), Some("run-1"));
        assert_eq!(rp.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(rp.protected_snapshots, vec!["snap-user".to_string()]);
        assert_eq!(rp.finished, None);
        assert_eq!(undos(&rp), vec![sg("sg-1")]);
        assert_eq!(rp.max_seq, 3);
        assert_eq!(rp.regions, vec!["us-east-1", "us-west-2"]);
        assert_eq!(
            rp.unresolved_intents,
            vec![PendingIntent {
                seq: 3,
                call: "CopyImage".into(),
                region: "us-west-2".into(),
                client_token: "tok-2".into(),
                name: Some("web-1".into()),
            }]
        );
        // The writer holds the journal: cleanup sees it as running and cannot append.
        assert_eq!(Journal::lock_state(&path), LockState::Held);
        let e = Journal::open_append(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        drop(l);
        assert_eq!(Journal::lock_state(&path), LockState::Free);
        // Cleanup goes on from the journal: resolves the intent, then removes both.
        let rp2 = replay(&Journal::read(&path).unwrap());
        let mut l = Ledger::resume(
            Some(Journal::open_append(&path).unwrap()),
            rp2.leftovers.clone(),
            rp2.max_seq,
        );
        let copy = Undo::DeregisterImage {
            region: "us-west-2".into(),
            id: "ami-9".into(),
        };
        let (cid, r) = l.record(copy.clone(), Some(3));
        r.unwrap();
        assert_eq!(cid, EntryId(4));
        // A second cleanup at once records the same resource again: still one resource.
        let (cid2, r) = l.record(copy.clone(), Some(3));
        r.unwrap();
        let mid = replay(&Journal::read(&path).unwrap());
        assert!(mid.unresolved_intents.is_empty());
        assert_eq!(undos(&mid), vec![copy.clone(), sg("sg-1")]);
        for e in l.to_unwind(false) {
            l.undone(e.id).unwrap();
        }
        let _ = cid2;
        let done = replay(&Journal::read(&path).unwrap());
        assert!(done.leftovers.is_empty(), "{done:?}");
        // A second journal for the same run id is refused (never two writers on one file).
        assert!(Journal::create(dir.path(), "run-1").is_err());
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let good = serde_json::to_string(&Event::Created {
            seq: 1,
            intent: None,
            undo: sg("sg-9"),
        })
        .unwrap();
        let full = format!("{good}\n{}", &good[..good.len() / 2]);
        // Every prefix of the file (a crash at any byte) reads without error.
        for cut in 0..=full.len() {
            std::fs::write(&path, &full.as_bytes()[..cut]).unwrap();
            let events = Journal::read(&path).unwrap();
            assert!(events.len() <= 1);
        }
        std::fs::write(&path, &full).unwrap();
        assert_eq!(
            undos(&replay(&Journal::read(&path).unwrap())),
            vec![sg("sg-9")]
        );
    }

    /// A crash at any byte of a real journal: what is read is exactly the records before the cut
    /// (a torn record is dropped, never misread), and replaying it never fails.
    #[test]
    fn a_journal_cut_at_any_byte_replays_the_records_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), "run-cut").unwrap();
        let path = j.path().to_path_buf();
        let mut l = Ledger::new(Some(j));
        l.note(&Event::Started {
            run_id: "run-cut".into(),
            build: "b".into(),
            pid: 7,
            at: 1,
            endpoint: None,
            protected_snapshots: vec![],
        })
        .unwrap();
        let i = l.intent("RunInstances", "us-east-1", "tok", None).unwrap();
        let (inst, _) = l.record(
            Undo::TerminateInstance {
                region: "us-east-1".into(),
                id: "i-1".into(),
            },
            Some(i),
        );
        let (img, _) = l.record(
            Undo::DeregisterImage {
                region: "us-east-1".into(),
                id: "ami-1".into(),
            },
            None,
        );
        l.keep(img).unwrap();
        l.undone(inst).unwrap();
        l.note(&Event::Finished { clean: true, at: 2 }).unwrap();
        drop(l);
        let full = std::fs::read(&path).unwrap();
        let all = Journal::read(&path).unwrap();
        assert_eq!(all.len(), 7);
        let ends: Vec<usize> = full
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        for cut in 0..=full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let events = Journal::read(&path).unwrap();
            // Complete records: those whose text (without its newline) lies before the cut.
            let complete = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(events, all[..complete], "cut at byte {cut}");
            let r = replay(&events);
            match complete {
                0 => assert_eq!(r.run_id, None),
                1 => assert!(r.leftovers.is_empty() && r.unresolved_intents.is_empty()),
                2 => assert_eq!(r.unresolved_intents.len(), 1, "cut at byte {cut}"),
                3..=5 => assert!(!r.leftovers.is_empty(), "cut at byte {cut}"),
                _ => {}
            }
        }
        let r = replay(&all);
        assert!(r.leftovers.is_empty() && r.finished == Some(true));
    }

    #[test]
    fn a_finished_run_leaves_its_kept_product_out_of_leftovers() {
        let events = vec![
            Event::Created {
                seq: 1,
                intent: None,
                undo: sg("sg-1"),
            },
            Event::Created {
                seq: 2,
                intent: None,
                undo: Undo::DeregisterImage {
                    region: "r".into(),
                    id: "ami-1".into(),
                },
            },
            Event::Kept { seq: 2 },
            Event::Undone { seq: 1 },
            Event::Finished { clean: true, at: 0 },
        ];
        let done = replay(&events);
        assert!(done.leftovers.is_empty());
        assert_eq!(done.kept.len(), 1);
        // Unfinished: the kept AMI may be half-made (e.g. killed mid-copy), so it is listed.
        let rp = replay(&events[..4]);
        assert_eq!(rp.leftovers.len(), 1);
        assert!(rp.kept.is_empty());
    }

    /// A ledger journaling into `dir`, with an instance recorded and undone and an AMI kept.
    fn built(dir: &Path, run: &str) -> Ledger {
        let mut l = Ledger::new(Some(Journal::create(dir, run).unwrap()));
        let t = l.intent("RunInstances", "r", "tok", None).unwrap();
        let (i, _) = l.record(
            Undo::TerminateInstance {
                region: "r".into(),
                id: "i-1".into(),
            },
            Some(t),
        );
        let (a, _) = l.record(
            Undo::DeregisterImage {
                region: "r".into(),
                id: "ami-1".into(),
            },
            None,
        );
        l.keep(a).unwrap();
        l.undone(i).unwrap();
        l
    }

    #[test]
    fn a_successful_clean_run_archives_its_own_journal_in_an_owner_only_done_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut l = built(dir.path(), "run-ok");
        let from = l.journal_path().unwrap().to_path_buf();
        let to = l.finish(true, true).unwrap().expect("archived");
        assert_eq!(to, dir.path().join("done/run-ok.jsonl"));
        assert!(!from.exists());
        assert_eq!(l.journal_path(), Some(to.as_path()));
        let mode = std::fs::metadata(dir.path().join("done"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let r = replay(&Journal::read(&to).unwrap());
        assert_eq!(r.finished, Some(true));
        assert!(r.leftovers.is_empty() && r.unresolved_intents.is_empty());
        // Archiving again (a concurrent cleanup got there first) is fine.
        assert_eq!(archive(&from).unwrap(), to);
    }

    #[test]
    fn a_journal_stays_when_the_run_failed_left_something_or_a_call_went_unanswered() {
        let dir = tempfile::tempdir().unwrap();
        let kept = |l: &Ledger| l.journal_path().unwrap().parent() == Some(dir.path());
        // Failed, although clean.
        let mut l = built(dir.path(), "run-failed");
        assert_eq!(l.finish(true, false).unwrap(), None);
        assert!(kept(&l));
        // Succeeded, but something is still recorded as existing.
        let mut l = built(dir.path(), "run-left");
        l.record(sg("sg-1"), None).1.unwrap();
        assert_eq!(l.finish(false, true).unwrap(), None);
        assert!(kept(&l));
        // Succeeded and clean, but a create call's answer never came.
        let mut l = built(dir.path(), "run-lost");
        l.intent("CopyImage", "r2", "tok2", Some("name")).unwrap();
        assert_eq!(l.finish(true, true).unwrap(), None);
        assert!(kept(&l));
        assert!(!dir.path().join("done").exists());
    }
}
