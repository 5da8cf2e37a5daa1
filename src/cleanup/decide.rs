//! What `imgbuild cleanup` decides, as a pure function of what it read ([`plan`]): which runs
//! and resources to remove, which to skip and why.

use super::*;

/// Where a resource was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Journal,
    Tag,
    ClientToken,
    Name,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Journal => "journal",
            Source::Tag => "tag",
            Source::ClientToken => "client-token",
            Source::Name => "name",
        }
    }
}

/// One journal file, read.
#[derive(Debug, Clone)]
pub struct JournalView {
    pub path: PathBuf,
    pub replay: Replay,
    /// Why its run is still running, if it is.
    pub alive: Option<String>,
    /// Last modified (Unix seconds).
    pub modified: i64,
}

/// A resource found in EC2 (by tag, or as the result of an unanswered create call).
#[derive(Debug, Clone)]
pub struct Hit {
    pub endpoint: Option<String>,
    pub found: Found,
    pub source: Source,
    /// The journal intent this resolves.
    pub intent: Option<u64>,
}

/// A resource to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub undo: Undo,
    pub source: Source,
    pub created: Option<i64>,
    /// Its entry in the run's journal, when it is there.
    pub entry: Option<EntryId>,
    pub intent: Option<u64>,
}

/// What to do about one run (one build of one `imgbuild build`).
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub endpoint: Option<String>,
    pub run_id: String,
    pub build: Option<String>,
    pub journal: Option<PathBuf>,
    pub max_seq: u64,
    pub started_at: Option<i64>,
    pub protected_snapshots: Vec<String>,
    pub items: Vec<Item>,
}

/// A run left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub run_id: String,
    pub build: Option<String>,
    pub why: String,
    /// Skipped for its age (found by tags alone, younger than `--older-than`), not because its
    /// process still runs: what it has is left behind as far as this cleanup can tell.
    pub young: bool,
    /// Its resources that were found.
    pub resources: Vec<Undo>,
}

/// Everything cleanup decided.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub runs: Vec<RunPlan>,
    pub skipped: Vec<Skipped>,
    /// Journals with nothing left: moved to `done/`.
    pub archive: Vec<PathBuf>,
}

pub(super) type RunKey = (Option<String>, String, Option<String>);

/// The run's start, from its id (imgbuild's run ids are UUIDv7, which carry their time).
pub fn run_id_time(run_id: &str) -> Option<i64> {
    let u = uuid::Uuid::parse_str(run_id).ok()?;
    let (secs, _) = u.get_timestamp()?.to_unix();
    i64::try_from(secs).ok()
}

pub(super) fn is_image_or_snapshot(u: &Undo) -> bool {
    matches!(
        u,
        Undo::DeregisterImage { .. } | Undo::DeleteSnapshot { .. }
    )
}

/// Decides what to remove. `endpoint`: the one tag searches used when a journal names none;
/// `failed_journals`: journals whose unanswered calls could not be looked up (kept on disk).
pub fn plan(
    journals: &[JournalView],
    hits: &[Hit],
    endpoint: Option<&str>,
    failed_journals: &BTreeSet<PathBuf>,
    now: i64,
    older_than: Duration,
) -> Plan {
    let mut p = Planner::new(journals, endpoint);
    for j in journals {
        p.journal(j, now);
    }
    for h in hits {
        p.hit(h);
    }
    p.decide(failed_journals, now, older_than)
}

/// What [`plan`] gathers before it decides: the runs, what finished runs kept, and the runs
/// left alone because their process still runs.
pub(super) struct Planner<'a> {
    endpoint: Option<&'a str>,
    /// Why each running run (by run id) still runs.
    alive: BTreeMap<&'a str, &'a str>,
    runs: BTreeMap<RunKey, RunPlan>,
    kept: BTreeMap<RunKey, Vec<Undo>>,
    finished: BTreeSet<RunKey>,
    /// The newest sign of life of each run found by tags alone.
    newest: BTreeMap<RunKey, Option<i64>>,
    running: BTreeMap<(String, Option<String>), Skipped>,
    archive: Vec<PathBuf>,
}

impl<'a> Planner<'a> {
    fn new(journals: &'a [JournalView], endpoint: Option<&'a str>) -> Planner<'a> {
        Planner {
            endpoint,
            alive: journals
                .iter()
                .filter_map(|j| Some((j.replay.run_id.as_deref()?, j.alive.as_deref()?)))
                .collect(),
            runs: BTreeMap::new(),
            kept: BTreeMap::new(),
            finished: BTreeSet::new(),
            newest: BTreeMap::new(),
            running: BTreeMap::new(),
            archive: Vec::new(),
        }
    }

    /// Notes `undo` of a run that still runs, when it does; true then.
    fn still_running(&mut self, run_id: &str, build: &Option<String>, undo: &[Undo]) -> bool {
        let Some(why) = self.alive.get(run_id) else {
            return false;
        };
        let s = self
            .running
            .entry((run_id.to_string(), build.clone()))
            .or_insert_with(|| Skipped {
                run_id: run_id.to_string(),
                build: build.clone(),
                why: why.to_string(),
                young: false,
                resources: Vec::new(),
            });
        for u in undo {
            if !s.resources.contains(u) {
                s.resources.push(u.clone());
            }
        }
        true
    }

    /// A journal: its run's leftovers (but the snapshots the template named), what it kept.
    fn journal(&mut self, j: &JournalView, now: i64) {
        let Some(run_id) = j.replay.run_id.clone() else {
            if j.alive.is_none() && now - j.modified >= EMPTY_JOURNAL_AGE.as_secs() as i64 {
                self.archive.push(j.path.clone());
            }
            return;
        };
        let leftovers: Vec<Undo> = j.replay.leftovers.iter().map(|e| e.undo.clone()).collect();
        if self.still_running(&run_id, &j.replay.build, &leftovers) {
            return;
        }
        let key: RunKey = (
            j.replay
                .endpoint
                .clone()
                .or(self.endpoint.map(str::to_string)),
            run_id.clone(),
            j.replay.build.clone(),
        );
        if j.replay.finished.is_some() {
            self.finished.insert(key.clone());
        }
        self.kept
            .entry(key.clone())
            .or_default()
            .extend(j.replay.kept.iter().cloned());
        let run = self.runs.entry(key.clone()).or_insert_with(|| RunPlan {
            endpoint: key.0.clone(),
            run_id: run_id.clone(),
            build: j.replay.build.clone(),
            journal: Some(j.path.clone()),
            max_seq: j.replay.max_seq,
            started_at: j.replay.started_at,
            protected_snapshots: j.replay.protected_snapshots.clone(),
            items: Vec::new(),
        });
        for e in &j.replay.leftovers {
            if is_protected(run, &e.undo) {
                continue;
            }
            run.items.push(Item {
                undo: e.undo.clone(),
                source: Source::Journal,
                created: None,
                entry: Some(e.id),
                intent: None,
            });
        }
    }

    /// A resource found in EC2 (by tag or as the answer to a lost call).
    fn hit(&mut self, h: &Hit) {
        let f = &h.found;
        if self.still_running(&f.run_id, &f.build, std::slice::from_ref(&f.undo)) {
            return;
        }
        let key: RunKey = (h.endpoint.clone(), f.run_id.clone(), f.build.clone());
        let journaled = self.runs.get(&key).is_some_and(|r| r.journal.is_some());
        if !journaled {
            let n = self
                .newest
                .entry(key.clone())
                .or_insert(run_id_time(&f.run_id));
            *n = match (*n, f.created) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if self.kept.get(&key).is_some_and(|k| k.contains(&f.undo)) {
            return; // the product of a finished run
        }
        // An image or snapshot is removed by its tags alone only when it was never delivered:
        // it says so itself (`imgbuild:temporary`), or its run's journal never finished.
        let undelivered = f.temporary || (journaled && !self.finished.contains(&key));
        let run = self.runs.entry(key.clone()).or_insert_with(|| RunPlan {
            endpoint: key.0.clone(),
            run_id: f.run_id.clone(),
            build: f.build.clone(),
            journal: None,
            max_seq: 0,
            started_at: run_id_time(&f.run_id),
            protected_snapshots: Vec::new(),
            items: Vec::new(),
        });
        if is_protected(run, &f.undo) || (is_image_or_snapshot(&f.undo) && !undelivered) {
            return;
        }
        if let Some(i) = run.items.iter_mut().find(|i| i.undo == f.undo) {
            i.created = i.created.or(f.created);
            if i.intent.is_none() && h.intent.is_some() {
                i.intent = h.intent;
            }
            // Found by its tag and as the answer to a lost call: say the latter.
            if i.source == Source::Tag {
                i.source = h.source;
            }
            return;
        }
        run.items.push(Item {
            undo: f.undo.clone(),
            source: h.source,
            created: f.created,
            entry: None,
            intent: h.intent,
        });
    }

    /// Each run: removed, skipped (found by tags alone and too young), or its journal archived.
    fn decide(self, failed_journals: &BTreeSet<PathBuf>, now: i64, older_than: Duration) -> Plan {
        let mut out = Plan {
            archive: self.archive,
            ..Plan::default()
        };
        for (key, run) in self.runs {
            if run.journal.is_none() {
                let age = self
                    .newest
                    .get(&key)
                    .copied()
                    .flatten()
                    .map(|t| Duration::from_secs(now.saturating_sub(t).max(0) as u64));
                let young = match age {
                    Some(a) => a < older_than,
                    None => !older_than.is_zero(),
                };
                if !young {
                    if !run.items.is_empty() {
                        out.runs.push(run);
                    }
                } else if !run.items.is_empty() {
                    out.skipped.push(too_young(&run, age));
                }
                continue;
            }
            if !run.items.is_empty() {
                out.runs.push(run);
            } else if let Some(p) = run.journal.filter(|p| !failed_journals.contains(p)) {
                out.archive.push(p);
            }
        }
        out.skipped.extend(self.running.into_values());
        out
    }
}

/// A snapshot the template named (the user's): never removed with its run.
pub(super) fn is_protected(run: &RunPlan, u: &Undo) -> bool {
    run.protected_snapshots
        .iter()
        .any(|p| matches!(u, Undo::DeleteSnapshot { id, .. } if id == p))
}

/// A run found by tags alone, younger than `--older-than` (`age`: of its newest sign of life).
pub(super) fn too_young(run: &RunPlan, age: Option<Duration>) -> Skipped {
    Skipped {
        run_id: run.run_id.clone(),
        build: run.build.clone(),
        why: match age {
            Some(a) => format!(
                "found by tags only and younger than --older-than ({} old): it may still be running elsewhere",
                human_age(a.as_secs() as i64)
            ),
            None => "found by tags only and of unknown age".to_string(),
        },
        young: true,
        resources: run.items.iter().map(|i| i.undo.clone()).collect(),
    }
}
