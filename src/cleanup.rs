//! `imgbuild cleanup`: finds what earlier runs left behind and removes it.
//!
//! Two sources cover each other:
//! - the run journals on disk ([`crate::ledger`]; the default directory, or `--journal FILE`):
//!   what a run created and did not remove, and the create calls whose answer never came back
//!   (looked up by client token, or by name for region copies);
//! - the `imgbuild:run-id` tags on instances, volumes, snapshots, AMIs, key pairs and security
//!   groups in each region (the regions the journals name, `--region`, `--all-regions`).
//!
//! What is never touched: a run whose process still runs (it holds its journal's lock, or its
//! pid is alive and started before the run), a run found by tags only whose newest resource or
//! run id is younger than `--older-than` (it may be running on another machine), the product of
//! a finished run (its kept AMIs and snapshots), an AMI or snapshot found by tags only that is
//! not marked `imgbuild:temporary` (it was delivered), and snapshots the template named.
//!
//! Removal reuses the builder's teardown (dependency order, waits, already-gone = done), one
//! ledger per run, resumed from its journal so that every removal is journaled; a journal is
//! moved to `done/` beside it once nothing of its run is left (a successful build moves its own,
//! [`crate::ledger::Ledger::finish`]). Two cleanups may run at once: every step is idempotent.
//!
//! Exit codes ([`exit_code`]): 3 when something cleanup knows of is still there (a resource it
//! could not remove, an unanswered create call it could not look up, a run skipped for its age);
//! 1 when only a search failed; 0 otherwise. A run whose process still runs is skipped without
//! changing the exit code.
//!
//! The decisions are a pure function ([`plan`]) of what was read, unit-tested below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::aws::wait::Polling;
use crate::aws::{AccessConfig, Aws, AwsError};
use crate::builder::amazon::sweep::{self, Found};
use crate::builder::amazon::teardown;
use crate::cancel::{self, Cancel};
use crate::duration::age as human_age;
use crate::error::Exit;
use crate::ledger::{Entry, EntryId, Journal, Ledger, LockState, Replay, Undo};
use crate::ui::Ui;

mod decide;
pub use decide::*;

/// The command's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--journal FILE`: only these journals (default: every journal in the journal directory).
    pub journals: Vec<PathBuf>,
    /// `--run-id ID`: only this run.
    pub run_id: Option<String>,
    /// `--region R`: look for tagged resources here too.
    pub regions: Vec<String>,
    /// `--all-regions`: in every region DescribeRegions lists.
    pub all_regions: bool,
    /// `--older-than`: a run found by tags only is removed when it is at least this old.
    pub older_than: Duration,
    pub dry_run: bool,
    /// `--endpoint-url`: the EC2 endpoint for tag searches (journals carry their own).
    pub endpoint: Option<String>,
}

/// The default of `--older-than`.
pub const DEFAULT_OLDER_THAN: &str = "2h";

/// A journal with no record at all (torn at its first line) is removed once this old.
const EMPTY_JOURNAL_AGE: Duration = Duration::from_secs(600);

/// The table `--dry-run` prints: one row per resource.
pub fn table(plan: &Plan, now: i64) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    for r in &plan.runs {
        for i in &r.items {
            let age = i
                .created
                .or(r.started_at)
                .map(|t| human_age(now - t))
                .unwrap_or_else(|| "?".into());
            rows.push([
                i.undo.region().to_string(),
                i.undo.kind().to_string(),
                i.undo.id().to_string(),
                r.run_id.clone(),
                r.build.clone().unwrap_or_else(|| "-".into()),
                age,
                i.source.as_str().to_string(),
            ]);
        }
    }
    rows
}

fn render_table(rows: &[[String; 7]]) -> String {
    let head = ["REGION", "KIND", "ID", "RUN", "BUILD", "AGE", "SOURCE"];
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s
    };
    let mut out = line(&head);
    for r in rows {
        out.push('\n');
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    out
}

// ------------------------------------------------------------------ journals on disk ---

fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// When process `pid` started (Unix seconds); None when there is no such process (or a zombie).
fn process_started(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    // Field 22 of stat: start time in clock ticks after boot (index 19 after the name).
    let ticks: i64 = fields.get(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| btime + ticks / hz as i64)
}

/// Why a journal's run still runs, or None when it does not.
fn alive(path: &Path, r: &Replay) -> Option<String> {
    let pid = r.pid.map_or("?".to_string(), |p| p.to_string());
    if Journal::lock_state(path) == LockState::Held {
        return Some(format!(
            "still running: a process (pid {pid}) holds its journal"
        ));
    }
    if r.finished.is_some() {
        return None;
    }
    // Where locks do not work: the pid, if that process started before the run did (a pid
    // reused later by another process does not count).
    let (p, at) = (r.pid?, r.started_at?);
    let started = process_started(p)?;
    (started <= at + 2).then(|| format!("still running: its process (pid {p}) is alive"))
}

/// Reads one journal.
pub fn view(path: &Path) -> std::io::Result<JournalView> {
    let events = Journal::read(path)?;
    let replay = crate::ledger::replay(&events);
    Ok(JournalView {
        path: path.to_path_buf(),
        alive: alive(path, &replay),
        modified: mtime(path),
        replay,
    })
}

/// The journals in `dir` (its `*.jsonl` files; `done/` holds the archived ones).
pub fn journals_in(dir: &Path) -> Vec<JournalView> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| view(p).ok()).collect()
}

/// Runs of earlier builds that did not finish or left resources behind (and whose process is
/// gone): for the note `imgbuild build` prints at start.
pub fn unfinished_runs(dir: &Path) -> usize {
    journals_in(dir)
        .iter()
        .filter(|j| j.replay.run_id.is_some() && j.alive.is_none())
        .filter(|j| {
            j.replay.finished.is_none()
                || !j.replay.leftovers.is_empty()
                || !j.replay.unresolved_intents.is_empty()
        })
        .count()
}

// ------------------------------------------------------------------------- running ---

pub(crate) fn access(endpoint: Option<String>, region: Option<String>) -> AccessConfig {
    AccessConfig {
        access_key: None,
        secret_key: None,
        token: None,
        region,
        profile: None,
        shared_credentials_file: None,
        mfa_code: None,
        assume_role: None,
        custom_endpoint_ec2: endpoint,
        decode_authorization_messages: false,
        max_retries: None,
        skip_metadata_api_check: false,
        skip_credential_validation: false,
        skip_region_validation: false,
        aws_polling: None,
    }
}

async fn connect(endpoint: Option<String>) -> Result<Aws, AwsError> {
    match Aws::connect(&access(endpoint.clone(), None)).await {
        // No region configured: regions are named per call anyway.
        Err(AwsError::NoRegion) => Aws::connect(&access(endpoint, Some("us-east-1".into()))).await,
        r => r,
    }
}

/// Runs `imgbuild cleanup`.
pub fn run(opts: &Options, ui: &Ui) -> Exit {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ui.error(&format!("error: cannot start the async runtime: {e}"));
            return Exit::BuildFailed;
        }
    };
    rt.block_on(run_async(opts, ui))
}

async fn run_async(opts: &Options, ui: &Ui) -> Exit {
    let (abort_tx, abort) = cancel::channel();
    if let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        let sig_ui = ui.clone();
        tokio::spawn(async move {
            if int.recv().await.is_some() {
                sig_ui.error("==> Interrupt received: stopping the cleanup.");
                abort_tx.cancel();
            }
        });
    }
    for p in crate::provisioner::runtime::ansible::sweep(opts.dry_run) {
        ui.say(&format!(
            "{} the private directory of a killed ansible step: {}",
            if opts.dry_run {
                "Would remove"
            } else {
                "Removed"
            },
            p.display()
        ));
    }
    let (journals, scope) = match read_journals(opts, ui) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let mut s = Survey::connect(opts, journals, scope).await;
    s.search_tags().await;
    s.look_up_unanswered(opts).await;
    let now = chrono::Utc::now().timestamp();
    let plan = plan(
        &s.journals,
        &s.hits,
        opts.endpoint.as_deref(),
        &s.failed_journals,
        now,
        opts.older_than,
    );
    report_skipped(&plan, ui);
    let rows = table(&plan, now);
    if opts.dry_run {
        return dry_run(&plan, &rows, &s, ui);
    }
    for p in &plan.archive {
        match crate::ledger::archive(p) {
            Ok(to) => ui.say(&format!(
                "==> cleanup: the run of {} left nothing: journal moved to {}",
                p.display(),
                to.display()
            )),
            Err(e) => ui.error(&format!(
                "warning: could not archive the journal {}: {e}",
                p.display()
            )),
        }
    }
    let young = plan.skipped.iter().any(|s| s.young);
    if rows.is_empty() && s.failures.is_empty() && !young {
        ui.say("==> cleanup: nothing to remove");
        return Exit::Success;
    }
    let left = remove_all(&plan, &s.clients, &abort, ui, &mut s.failures).await;
    finish(
        Outcome {
            left: left || !s.failed_journals.is_empty(),
            young: plan.skipped.iter().filter(|s| s.young).collect(),
            failures: &s.failures,
        },
        ui,
    )
}

/// The journals to read (every journal in the directory, or `--journal`s, narrowed by
/// `--run-id`) and the run ids the tag search is limited to (`None`: every run). A `--journal`
/// that cannot be read is a usage error.
type Journals = (Vec<JournalView>, Option<Vec<String>>);

fn read_journals(opts: &Options, ui: &Ui) -> Result<Journals, Exit> {
    let mut journals = Vec::new();
    if opts.journals.is_empty() {
        journals = journals_in(&crate::ledger::default_journal_dir());
    } else {
        for p in &opts.journals {
            match view(p) {
                Ok(j) => journals.push(j),
                Err(e) => {
                    ui.error(&format!(
                        "error: cannot read the journal {}: {e}",
                        p.display()
                    ));
                    return Err(Exit::Usage);
                }
            }
        }
    }
    if let Some(id) = &opts.run_id {
        journals.retain(|j| j.replay.run_id.as_deref() == Some(id.as_str()));
    }
    let scope = match (&opts.run_id, opts.journals.is_empty()) {
        (Some(id), _) => Some(vec![id.clone()]),
        (None, false) => Some(
            journals
                .iter()
                .filter_map(|j| j.replay.run_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        (None, true) => None,
    };
    Ok((journals, scope))
}

/// What cleanup found out before deciding: the journals, a client per EC2 endpoint, where to
/// search by tag, what the searches found, and what could not be looked at.
struct Survey {
    journals: Vec<JournalView>,
    scope: Option<Vec<String>>,
    clients: BTreeMap<Option<String>, Aws>,
    /// (endpoint, region) to search for `imgbuild:run-id` tags.
    targets: BTreeSet<(Option<String>, String)>,
    hits: Vec<Hit>,
    /// Journals whose unanswered create calls could not be looked up.
    failed_journals: BTreeSet<PathBuf>,
    /// What could not be connected to, searched or removed, for the final message.
    failures: Vec<String>,
}

impl Survey {
    /// Connects to every EC2 endpoint the journals and options name, and decides where to
    /// search: the journals' regions, `--region`, `--all-regions`, else the configured region.
    async fn connect(
        opts: &Options,
        journals: Vec<JournalView>,
        scope: Option<Vec<String>>,
    ) -> Survey {
        let mut targets: BTreeSet<(Option<String>, String)> = BTreeSet::new();
        for j in journals.iter().filter(|j| j.alive.is_none()) {
            let ep = j.replay.endpoint.clone().or(opts.endpoint.clone());
            for r in j.replay.regions.iter().chain(&opts.regions) {
                targets.insert((ep.clone(), r.clone()));
            }
        }
        for r in &opts.regions {
            targets.insert((opts.endpoint.clone(), r.clone()));
        }
        let mut s = Survey {
            journals,
            scope,
            clients: BTreeMap::new(),
            targets,
            hits: Vec::new(),
            failed_journals: BTreeSet::new(),
            failures: Vec::new(),
        };
        let mut endpoints: BTreeSet<Option<String>> =
            s.targets.iter().map(|t| t.0.clone()).collect();
        endpoints.insert(opts.endpoint.clone());
        for ep in endpoints {
            match connect(ep.clone()).await {
                Ok(a) => {
                    s.clients.insert(ep, a);
                }
                Err(e) => s.failures.push(format!(
                    "connecting to EC2{}: {e}",
                    ep.as_ref().map(|e| format!(" at {e}")).unwrap_or_default()
                )),
            }
        }
        if let Some(aws) = s.clients.get(&opts.endpoint) {
            if opts.all_regions {
                match sweep::regions(aws, &aws.region).await {
                    Ok(rs) => {
                        for r in rs {
                            s.targets.insert((opts.endpoint.clone(), r));
                        }
                    }
                    Err(e) => s.failures.push(e.to_string()),
                }
            }
            // No journal and no region named: the configured region.
            if s.targets.is_empty()
                && s.journals.is_empty()
                && s.scope.as_ref().is_none_or(|sc| !sc.is_empty())
            {
                s.targets
                    .insert((opts.endpoint.clone(), aws.region.clone()));
            }
        }
        if s.scope.as_ref().is_some_and(|sc| sc.is_empty()) {
            s.targets.clear(); // --journal/--run-id matched no run: nothing to look for by tag
        }
        s
    }

    /// Searches every target for resources tagged `imgbuild:run-id` (of the runs in scope).
    async fn search_tags(&mut self) {
        let searches =
            futures_util::future::join_all(self.targets.iter().filter_map(|(ep, region)| {
                let aws = self.clients.get(ep)?;
                let scope = self.scope.as_deref();
                Some(async move { (ep, sweep::tagged(aws, region, scope).await) })
            }))
            .await;
        for (ep, r) in searches {
            match r {
                Ok(found) => self.hits.extend(found.into_iter().map(|f| Hit {
                    endpoint: ep.clone(),
                    found: f,
                    source: Source::Tag,
                    intent: None,
                })),
                Err(e) => self.failures.push(e.to_string()),
            }
        }
    }

    /// Looks up the create calls whose answer never came back: instances by client token,
    /// region copies by name.
    async fn look_up_unanswered(&mut self, opts: &Options) {
        for j in self.journals.iter().filter(|j| j.alive.is_none()) {
            let Some(run_id) = &j.replay.run_id else {
                continue;
            };
            let ep = j.replay.endpoint.clone().or(opts.endpoint.clone());
            let Some(aws) = self.clients.get(&ep) else {
                self.failed_journals.insert(j.path.clone());
                continue;
            };
            for i in &j.replay.unresolved_intents {
                match unanswered(aws, j, run_id, i).await {
                    Ok(v) => self.hits.extend(v.into_iter().map(|(f, source)| Hit {
                        endpoint: ep.clone(),
                        found: f,
                        source,
                        intent: Some(i.seq),
                    })),
                    Err(e) => {
                        self.failures.push(e.to_string());
                        self.failed_journals.insert(j.path.clone());
                    }
                }
            }
        }
    }
}

/// What one unanswered create call of journal `j` made, if anything.
async fn unanswered(
    aws: &Aws,
    j: &JournalView,
    run_id: &str,
    i: &crate::ledger::PendingIntent,
) -> Result<Vec<(Found, Source)>, sweep::SweepError> {
    match (i.call.as_str(), &i.name) {
        ("RunInstances", _) => {
            let ids =
                sweep::instances_by_client_token(aws, &i.region, &i.client_token, run_id).await?;
            Ok(ids
                .into_iter()
                .map(|id| {
                    let found = Found {
                        undo: Undo::TerminateInstance {
                            region: i.region.clone(),
                            id,
                        },
                        run_id: run_id.to_string(),
                        build: j.replay.build.clone(),
                        created: None,
                        temporary: true,
                    };
                    (found, Source::ClientToken)
                })
                .collect())
        }
        ("CopyImage", Some(name)) => {
            let not_before = j.replay.started_at.unwrap_or(0);
            let copies = sweep::copies_named(aws, &i.region, name, not_before, run_id).await?;
            Ok(copies
                .into_iter()
                .map(|mut f| {
                    f.build = j.replay.build.clone();
                    (f, Source::Name)
                })
                .collect())
        }
        _ => Ok(Vec::new()), // nothing to look it up by: the run-id tag search covers it
    }
}

/// Says which runs were left alone and why, each with its resources.
fn report_skipped(plan: &Plan, ui: &Ui) {
    for s in &plan.skipped {
        ui.say(&format!(
            "==> cleanup: skipped run {} (build {}, {} resource(s) found): {}",
            s.run_id,
            s.build.as_deref().unwrap_or("-"),
            s.resources.len(),
            s.why
        ));
        ui.record(
            "",
            "cleanup-skipped",
            &[&s.run_id, s.build.as_deref().unwrap_or(""), &s.why],
        );
        for u in &s.resources {
            ui.say(&format!("==> cleanup:   {}", u.describe()));
            ui.record(
                "",
                "cleanup-skipped-resource",
                &[&s.run_id, u.region(), u.kind(), u.id()],
            );
        }
    }
}

/// `--dry-run`: what would go, changing nothing. Exit 0 unless something could not be looked
/// at (3 when it is a journal's unanswered call, 1 when only a search failed).
fn dry_run(plan: &Plan, rows: &[[String; 7]], s: &Survey, ui: &Ui) -> Exit {
    if rows.is_empty() {
        ui.say("==> cleanup: nothing to remove");
    } else {
        ui.say(&format!(
            "==> cleanup: would remove {} resource(s) of {} run(s) (dry run, nothing changed):",
            rows.len(),
            plan.runs.len()
        ));
        if !ui.machine {
            ui.say(&render_table(rows));
        }
    }
    for r in rows {
        ui.record("", "cleanup-resource", &r.each_ref().map(String::as_str));
    }
    for p in &plan.archive {
        ui.say(&format!(
            "==> cleanup: would archive the journal {} (its run left nothing)",
            p.display()
        ));
    }
    for f in &s.failures {
        ui.error(&format!("error: {f}"));
    }
    exit_code(!s.failed_journals.is_empty(), false, !s.failures.is_empty())
}

/// Removes every planned run's resources (at once); true when something could not be removed
/// (listed in `failures`).
async fn remove_all(
    plan: &Plan,
    clients: &BTreeMap<Option<String>, Aws>,
    abort: &Cancel,
    ui: &Ui,
    failures: &mut Vec<String>,
) -> bool {
    let polling = Polling::resolve(
        None,
        std::env::var("AWS_POLL_DELAY_SECONDS").ok().as_deref(),
        std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
    )
    .unwrap_or_default();
    let results = futures_util::future::join_all(plan.runs.iter().map(|r| {
        let aws = clients.get(&r.endpoint);
        async move { remove_run(r, aws, polling, abort, ui).await }
    }))
    .await;
    let (mut removed, mut left_any) = (0, false);
    for (r, res) in plan.runs.iter().zip(results) {
        match res {
            Ok(n) => {
                removed += n;
                ui.record("", "cleanup-run", &[&r.run_id, "clean"]);
            }
            Err(left) => {
                left_any = true;
                removed += r.items.len() - left.len();
                for (u, why) in left {
                    failures.push(format!(
                        "{} (run {}, build {}): {why}",
                        u.describe(),
                        r.run_id,
                        r.build.as_deref().unwrap_or("-")
                    ));
                }
                ui.record("", "cleanup-run", &[&r.run_id, "left"]);
            }
        }
    }
    ui.say(&format!(
        "==> cleanup: removed {removed} resource(s) of {} run(s)",
        plan.runs.len()
    ));
    left_any
}

/// How a cleanup that removed things ended.
struct Outcome<'a> {
    /// Something it knows of is still there: a resource it could not remove, or an unanswered
    /// create call it could not look up.
    left: bool,
    /// Runs skipped for their age (their resources are still there).
    young: Vec<&'a Skipped>,
    /// What could not be connected to, searched or removed.
    failures: &'a [String],
}

/// Prints what is left and why, and the exit code that says it.
fn finish(o: Outcome<'_>, ui: &Ui) -> Exit {
    if !o.failures.is_empty() {
        let mut msg = String::from("error: these could not be removed (or looked for):");
        for f in o.failures {
            msg.push_str(&format!("\n  {f}"));
        }
        if o.left {
            msg.push_str(
                "\nrun `imgbuild cleanup` again, or remove them with the AWS console or CLI",
            );
        } else {
            msg.push_str("\nnothing this cleanup knows of is left, but a search failed, so something it does not know of may be: fix the access (credentials, region, endpoint) and run `imgbuild cleanup` again");
        }
        ui.error(&msg);
    }
    if !o.young.is_empty() {
        let n: usize = o.young.iter().map(|s| s.resources.len()).sum();
        let mut msg = format!(
            "error: {n} resource(s) of {} run(s) found by tags only were left: younger than --older-than, they may belong to a build still running elsewhere; when you know a run is dead:",
            o.young.len()
        );
        for s in &o.young {
            msg.push_str(&format!(
                "\n  imgbuild cleanup --run-id {} --older-than 0s",
                s.run_id
            ));
        }
        ui.error(&msg);
    }
    exit_code(o.left, !o.young.is_empty(), !o.failures.is_empty())
}

/// The exit code: 3 when something cleanup knows of is still there (`left`, or a run skipped
/// for its age, `young`), else 1 when something could not be looked at (`failed`: nothing
/// known is left, but the search was not complete), else 0.
fn exit_code(left: bool, young: bool, failed: bool) -> Exit {
    if left || young {
        Exit::LeftBehind
    } else if failed {
        Exit::BuildFailed
    } else {
        Exit::Success
    }
}

/// Removes one run's resources through the builder's teardown, journaling each step; archives
/// its journal when nothing is left. `Ok(removed)`, or what is left with why.
async fn remove_run(
    r: &RunPlan,
    aws: Option<&Aws>,
    polling: Polling,
    abort: &Cancel,
    ui: &Ui,
) -> Result<usize, Vec<(Undo, String)>> {
    let Some(aws) = aws else {
        return Err(r
            .items
            .iter()
            .map(|i| {
                (
                    i.undo.clone(),
                    "no connection to its EC2 endpoint".to_string(),
                )
            })
            .collect());
    };
    let journal = match &r.journal {
        Some(p) => match Journal::open_append(p) {
            Ok(j) => Some(j),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(r
                    .items
                    .iter()
                    .map(|i| (i.undo.clone(), format!("{e}; not touched")))
                    .collect())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None, // archived meanwhile
            Err(e) => {
                ui.error(&format!(
                    "warning: cannot append to the journal {}: {e}",
                    p.display()
                ));
                None
            }
        },
        None => None,
    };
    let entries: Vec<Entry> = r
        .items
        .iter()
        .filter_map(|i| {
            Some(Entry {
                id: i.entry?,
                undo: i.undo.clone(),
                state: crate::ledger::State::Created,
            })
        })
        .collect();
    let journaled = journal.is_some();
    let mut ledger = Ledger::resume(journal, entries, r.max_seq);
    for i in r.items.iter().filter(|i| i.entry.is_none()) {
        let (_, res) = ledger.record(i.undo.clone(), i.intent);
        if let Err(e) = res {
            ui.error(&format!(
                "warning: cannot journal {}: {e}",
                i.undo.describe()
            ));
        }
    }
    let ledger = Mutex::new(ledger);
    let tag = format!(
        "==> cleanup: run {} ({}): ",
        r.run_id,
        r.build.as_deref().unwrap_or("-")
    );
    let say = |m: String| ui.say(&format!("{tag}{m}"));
    let failures = teardown::run(
        aws,
        &ledger,
        false,
        polling,
        &r.protected_snapshots,
        abort,
        &say,
    )
    .await;
    drop(ledger);
    if !failures.is_empty() {
        return Err(failures);
    }
    if let (Some(p), true) = (&r.journal, journaled) {
        match crate::ledger::archive(p) {
            Ok(to) => say(format!("nothing left: journal moved to {}", to.display())),
            Err(e) => ui.error(&format!(
                "warning: could not archive the journal {}: {e}",
                p.display()
            )),
        }
    }
    Ok(r.items.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{PendingIntent, State};

    const R1: &str = "0190c4a2-7b3e-7cc0-8000-000000000001";

    fn inst(id: &str) -> Undo {
        Undo::TerminateInstance {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }
    fn ami(id: &str) -> Undo {
        Undo::DeregisterImage {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }
    fn snap(id: &str) -> Undo {
        Undo::DeleteSnapshot {
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    fn journal(run: &str, finished: bool, leftovers: Vec<Undo>, kept: Vec<Undo>) -> JournalView {
        JournalView {
            path: PathBuf::from(format!("/j/{run}.b.jsonl")),
            replay: Replay {
                run_id: Some(run.into()),
                build: Some("b".into()),
                pid: Some(1),
                started_at: Some(1000),
                finished: finished.then_some(true),
                leftovers: leftovers
                    .into_iter()
                    .enumerate()
                    .map(|(n, undo)| Entry {
                        id: EntryId(n as u64 + 1),
                        undo,
                        state: State::Created,
                    })
                    .collect(),
                kept,
                max_seq: 9,
                regions: vec!["us-east-1".into()],
                ..Replay::default()
            },
            alive: None,
            modified: 1000,
        }
    }

    fn hit(run: &str, undo: Undo, created: i64, temporary: bool) -> Hit {
        Hit {
            endpoint: None,
            found: Found {
                undo,
                run_id: run.into(),
                build: Some("b".into()),
                created: Some(created),
                temporary,
            },
            source: Source::Tag,
            intent: None,
        }
    }

    fn ids(p: &Plan) -> Vec<(String, Source)> {
        p.runs
            .iter()
            .flat_map(|r| r.items.iter().map(|i| (i.undo.id().to_string(), i.source)))
            .collect()
    }

    const H2: Duration = Duration::from_secs(7200);

    #[test]
    fn a_finished_runs_product_is_never_removed_but_its_leftovers_are() {
        let j = journal(
            "r1",
            true,
            vec![inst("i-1")],
            vec![ami("ami-p"), snap("snap-p")],
        );
        let hits = vec![
            hit("r1", ami("ami-p"), 1000, false),
            hit("r1", snap("snap-p"), 1000, false),
            hit("r1", inst("i-1"), 1000, false),
            // Not in the journal, not temporary: delivered (e.g. by an older imgbuild): kept.
            hit("r1", ami("ami-x"), 1000, false),
            // Not in the journal and temporary: never delivered.
            hit("r1", ami("ami-t"), 1000, true),
        ];
        let p = plan(&[j], &hits, None, &BTreeSet::new(), 2000, H2);
        assert_eq!(
            ids(&p),
            vec![
                ("i-1".into(), Source::Journal),
                ("ami-t".into(), Source::Tag)
            ]
        );
        assert!(p.archive.is_empty());
    }

    #[test]
    fn an_unfinished_run_loses_everything_even_what_it_had_kept() {
        let mut j = journal("r1", false, vec![ami("ami-k"), inst("i-1")], vec![]);
        j.replay.protected_snapshots = vec!["snap-user".into()];
        let hits = vec![
            hit("r1", ami("ami-k"), 1000, false),
            hit("r1", snap("snap-k"), 1000, false),
            hit("r1", snap("snap-user"), 1000, false),
        ];
        let p = plan(&[j], &hits, None, &BTreeSet::new(), 1010, H2);
        assert_eq!(
            ids(&p),
            vec![
                ("ami-k".into(), Source::Journal),
                ("i-1".into(), Source::Journal),
                ("snap-k".into(), Source::Tag)
            ]
        );
        // A journal run is cleaned whatever its age: its process is known to be gone.
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn a_running_run_is_not_touched_at_all() {
        let mut j = journal("r1", false, vec![inst("i-1")], vec![]);
        j.alive = Some("still running".into());
        let hits = vec![
            hit("r1", inst("i-1"), 0, false),
            hit("r1", inst("i-2"), 0, true),
        ];
        let p = plan(&[j], &hits, None, &BTreeSet::new(), 100_000, Duration::ZERO);
        assert!(p.runs.is_empty() && p.archive.is_empty());
        assert_eq!(p.skipped.len(), 1);
        // i-1 is in the journal and found by its tag: one resource.
        assert_eq!(p.skipped[0].resources, vec![inst("i-1"), inst("i-2")]);
        assert!(!p.skipped[0].young);
        assert_eq!(p.skipped[0].why, "still running");
    }

    #[test]
    fn tag_only_runs_wait_for_older_than_and_keep_delivered_images() {
        let hits = vec![
            hit("r-tag", inst("i-1"), 1000, false),
            hit("r-tag", ami("ami-d"), 1000, false),
            hit("r-tag", ami("ami-t"), 5000, true),
        ];
        // The newest resource (5000) is under 2 h old at 10000: skipped.
        let p = plan(&[], &hits, None, &BTreeSet::new(), 10_000, H2);
        assert!(p.runs.is_empty());
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert!(p.skipped[0].why.contains("1h23m"), "{}", p.skipped[0].why);
        assert!(p.skipped[0].young);
        // Reported with its resources: the delivered AMI is not among them.
        assert_eq!(p.skipped[0].resources, vec![inst("i-1"), ami("ami-t")]);
        // Old enough: the instance and the temporary AMI go, the delivered one stays.
        let p = plan(&[], &hits, None, &BTreeSet::new(), 5000 + 7200, H2);
        assert_eq!(
            ids(&p),
            vec![("i-1".into(), Source::Tag), ("ami-t".into(), Source::Tag)]
        );
        // The run id's own time counts as a sign of life: a run that started 10 minutes ago is
        // left alone even though its resources look old.
        let started = run_id_time(R1).expect("a v7 UUID carries its time");
        assert!(started > 1_700_000_000, "{started}");
        let old = vec![hit(R1, inst("i-1"), 1000, false)];
        let p = plan(&[], &old, None, &BTreeSet::new(), started + 600, H2);
        assert!(p.runs.is_empty());
        let p = plan(&[], &old, None, &BTreeSet::new(), started + 7200, H2);
        assert_eq!(p.runs.len(), 1);
        // --older-than 0s: at once.
        let p = plan(&[], &old, None, &BTreeSet::new(), started, Duration::ZERO);
        assert_eq!(p.runs.len(), 1);
    }

    #[test]
    fn intents_resolved_and_finished_journals_with_nothing_left_are_archived() {
        let mut j = journal("r1", false, vec![], vec![]);
        j.replay.unresolved_intents = vec![PendingIntent {
            seq: 3,
            call: "RunInstances".into(),
            region: "us-east-1".into(),
            client_token: "t".into(),
            name: None,
        }];
        let mut h = hit("r1", inst("i-9"), 1000, true);
        h.source = Source::ClientToken;
        h.intent = Some(3);
        let tagged = hit("r1", inst("i-9"), 1000, false);
        let done = journal("r2", true, vec![], vec![ami("ami-p")]);
        let p = plan(
            &[j.clone(), done.clone()],
            &[h.clone(), tagged],
            None,
            &BTreeSet::new(),
            1010,
            H2,
        );
        assert_eq!(ids(&p), vec![("i-9".into(), Source::ClientToken)]);
        assert_eq!(p.runs[0].items[0].intent, Some(3));
        assert_eq!(p.archive, vec![done.path.clone()]);
        // Whatever the order the searches ended in.
        let p = plan(
            &[j.clone()],
            &[hit("r1", inst("i-9"), 1000, false), h.clone()],
            None,
            &BTreeSet::new(),
            1010,
            H2,
        );
        assert_eq!(ids(&p), vec![("i-9".into(), Source::ClientToken)]);
        assert_eq!(p.runs[0].items[0].intent, Some(3));
        // Its intent was found to have made nothing: archived too.
        let p = plan(&[j.clone()], &[], None, &BTreeSet::new(), 1010, H2);
        assert_eq!(p.archive, vec![j.path.clone()]);
        // ... unless it could not be looked up.
        let failed = BTreeSet::from([j.path.clone()]);
        let p = plan(&[j], &[], None, &failed, 1010, H2);
        assert!(p.archive.is_empty());
    }

    #[test]
    fn the_table_lists_every_resource_with_its_source() {
        let j = journal("r1", false, vec![inst("i-1")], vec![]);
        let p = plan(
            &[j],
            &[hit("r1", snap("snap-1"), 1500, true)],
            None,
            &BTreeSet::new(),
            1000 + 3 * 3600 + 120,
            H2,
        );
        let t = render_table(&table(&p, 1000 + 3 * 3600 + 120));
        assert_eq!(
            t,
            "REGION     KIND      ID      RUN  BUILD  AGE    SOURCE\n\
             us-east-1  instance  i-1     r1   b      3h2m   journal\n\
             us-east-1  snapshot  snap-1  r1   b      2h53m  tag"
        );
    }

    #[test]
    fn exit_3_only_when_something_known_is_left_and_1_when_only_a_search_failed() {
        assert_eq!(exit_code(false, false, false), Exit::Success);
        assert_eq!(exit_code(false, false, true), Exit::BuildFailed);
        assert_eq!(exit_code(true, false, true), Exit::LeftBehind);
        assert_eq!(exit_code(false, true, false), Exit::LeftBehind);
    }
}
