//! The ledger: what a build created, as data, so that cleanup cannot be forgotten.
//!
//! The function that creates a resource records an [`Undo`] the moment the resource's ID exists.
//! The orchestrator owns the ledger and unwinds it in reverse on every path: on success the
//! product (the AMIs and their snapshots) is [`Ledger::keep`]t and everything else undone; on
//! failure or cancellation everything is undone.
//!
//! Every record is also appended to a journal file and flushed before `record` returns, so that
//! `imgbuild cleanup` can finish the job after `kill -9`, a power cut or a vanished CI runner. The
//! journal is JSON lines; a torn last line (a crash mid-write) is ignored when reading.
//!
//! This module is pure data and files; the calls that undo (EC2 API) live in the builder.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

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
    },
    /// A create call is about to be sent; if the process dies before `Created`, the resource may
    /// exist without its ID being known: it is found by this client token or the run-id tag.
    Intent {
        seq: u64,
        call: String,
        region: String,
        client_token: String,
    },
    Created {
        seq: u64,
        /// The `Intent` this creation resolves, if one was written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<u64>,
        #[serde(flatten)]
        undo: Undo,
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
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates the journal file (and its directory) for a run.
    pub fn create(dir: &Path, run_id: &str) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(Journal { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it to disk before returning.
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

/// What one build created. Entries are only ever added, then marked kept or undone.
#[derive(Debug)]
pub struct Ledger {
    entries: Vec<Entry>,
    next: u64,
    journal: Option<Journal>,
}

impl Ledger {
    /// A ledger that journals to `journal` (None: in memory only, for tests of pure logic).
    pub fn new(journal: Option<Journal>) -> Ledger {
        Ledger {
            entries: Vec::new(),
            next: 1,
            journal,
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
    /// returns the resource's ID.
    pub fn intent(&mut self, call: &str, region: &str, client_token: &str) -> std::io::Result<u64> {
        let seq = self.next;
        self.next += 1;
        self.write(&Event::Intent {
            seq,
            call: call.into(),
            region: region.into(),
            client_token: client_token.into(),
        })?;
        Ok(seq)
    }

    /// Records a created resource; the journal line is on disk when this returns. The entry is
    /// in the ledger even if journaling fails (the caller reports that error, and unwinding still
    /// removes the resource).
    pub fn record(&mut self, undo: Undo, intent: Option<u64>) -> (EntryId, std::io::Result<()>) {
        let id = EntryId(self.next);
        self.next += 1;
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
}

/// A run reconstructed from its journal: what it created and whether it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub run_id: Option<String>,
    pub build: Option<String>,
    pub finished: Option<bool>,
    /// Resources created and neither undone nor kept (for a finished run, kept ones are the
    /// product and not listed).
    pub leftovers: Vec<Undo>,
    /// Create calls sent whose result never came back (client tokens to look up).
    pub unresolved_intents: Vec<(String, String, String)>,
}

/// Replays a journal's events.
pub fn replay(events: &[Event]) -> Replay {
    let mut r = Replay {
        run_id: None,
        build: None,
        finished: None,
        leftovers: Vec::new(),
        unresolved_intents: Vec::new(),
    };
    let mut live: Vec<(u64, Undo, State)> = Vec::new();
    let mut intents: Vec<(u64, String, String, String)> = Vec::new();
    for e in events {
        match e {
            Event::Started { run_id, build, .. } => {
                r.run_id = Some(run_id.clone());
                r.build = Some(build.clone());
            }
            Event::Intent {
                seq,
                call,
                region,
                client_token,
            } => intents.push((*seq, call.clone(), region.clone(), client_token.clone())),
            Event::Created { seq, intent, undo } => {
                intents.retain(|(s, ..)| Some(*s) != *intent);
                live.push((*seq, undo.clone(), State::Created));
            }
            Event::Kept { seq } | Event::Undone { seq } => {
                let state = if matches!(e, Event::Kept { .. }) {
                    State::Kept
                } else {
                    State::Undone
                };
                if let Some(x) = live.iter_mut().find(|(s, ..)| s == seq) {
                    x.2 = state;
                }
            }
            Event::Finished { clean, .. } => r.finished = Some(*clean),
        }
    }
    let finished = r.finished.is_some();
    r.leftovers = live
        .into_iter()
        .rev()
        .filter(|(_, _, st)| *st == State::Created || (*st == State::Kept && !finished))
        .map(|(_, u, _)| u)
        .collect();
    r.unresolved_intents = intents
        .into_iter()
        .map(|(_, c, reg, t)| (c, reg, t))
        .collect();
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
        })
        .unwrap();
        let seq = l
            .intent("CreateSecurityGroup", "us-east-1", "tok-1")
            .unwrap();
        let (_, r) = l.record(sg("sg-1"), Some(seq));
        r.unwrap();
        let _ = l.intent("CreateImage", "us-east-1", "tok-2").unwrap();
        let events = Journal::read(&path).unwrap();
        assert_eq!(events.len(), 4);
        let rp = replay(&events);
        assert_eq!(rp.run_id.as_deref(), Some("run-1"));
        assert_eq!(rp.finished, None);
        assert_eq!(rp.leftovers, vec![sg("sg-1")]);
        assert_eq!(
            rp.unresolved_intents,
            vec![("CreateImage".into(), "us-east-1".into(), "tok-2".into())]
        );
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
            replay(&Journal::read(&path).unwrap()).leftovers,
            vec![sg("sg-9")]
        );
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
        assert!(replay(&events).leftovers.is_empty());
        // Unfinished: the kept AMI may be half-made (e.g. killed mid-copy), so it is listed.
        let rp = replay(&events[..4]);
        assert_eq!(rp.leftovers.len(), 1);
    }
}
