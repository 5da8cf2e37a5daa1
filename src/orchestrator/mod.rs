//! Orchestration of builds: one task per build (at most `-parallel-builds` at once), each with
//! its own run journal and [`Ledger`]; Ctrl-C/SIGTERM cancel every build at once and teardown
//! runs; a second one skips teardown and says what was left behind. At the end, Packer's summary
//! of artifacts, and an error that says whether anything was left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::builder::amazon::teardown::{self, lock};
use crate::builder::amazon::wait::Polling;
use crate::builder::amazon::{aws::Aws, human_duration, Artifact, Ctx};
use crate::builder::null::NullBuild;
use crate::builder::BuilderConfig;
use crate::cancel::{self, Cancel, Canceller};
use crate::error::Error;
use crate::interact::OnError;
use crate::interact::{Choice, Interact};
use crate::ledger::{default_journal_dir, Event, Journal, Ledger, Undo};
use crate::post_processor::run::{self as post_process, PpContext};
use crate::prepare::{Prepared, PreparedBuild};
use crate::provisioner::runtime::ProvisionError;
use crate::template::funcs::Engine;
use crate::ui::Ui;

/// The `build` command's flags that matter here.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-force`: deregister an AMI of the same name first.
    pub force: bool,
    /// `-on-error`.
    pub on_error: OnError,
    /// `-parallel-builds` (0: all at once).
    pub parallel_builds: usize,
    /// `-debug`: one build at a time, a pause before each step on a terminal, the temporary
    /// private key saved in `ec2_<build>.pem`.
    pub debug: bool,
    /// `-timeout`: the whole-build deadline (with `build_timeout`, the smaller wins).
    pub timeout: Option<Duration>,
    /// `-skip-unchanged`: reuse an AMI whose fingerprint matches (every amazon-ebs build).
    pub skip_unchanged: bool,
}

/// What templates are rendered against at build time.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub user: &'a BTreeMap<String, String>,
    pub template_dir: &'a str,
    /// The names in `sensitive-variables` (their values go into the reuse fingerprint only as
    /// a keyed hash).
    pub sensitive: &'a BTreeSet<String>,
}

/// How one build ended.
#[derive(Debug)]
struct Outcome {
    name: String,
    took: Duration,
    /// The artifacts to report (Packer's list after post-processing: the builder's AMIs and what
    /// each post-processor passed on); empty when no AMI was made (`skip_create_ami`).
    result: Result<Vec<Artifact>, String>,
    /// What still exists and is not the product, with why it could not be removed.
    left: Vec<(Undo, String)>,
    journal: Option<PathBuf>,
    /// The artifact id of AMIs that exist although the build failed (its post-processing did).
    kept: Option<String>,
}

impl Outcome {
    /// How the build ended, in the words of the final table.
    fn outcome(&self) -> &'static str {
        match (&self.result, self.left.is_empty()) {
            (Ok(_), true) => "succeeded",
            (Ok(_), false) => "succeeded and left resources",
            (Err(_), true) => "failed and cleaned up",
            (Err(_), false) => "failed and left resources",
        }
    }

    /// The artifact ids of the build (each once), or the AMIs kept after a failure.
    fn artifact_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        match &self.result {
            Ok(artifacts) => {
                for a in artifacts {
                    let id = a.id();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            Err(_) => {
                if let Some(k) = &self.kept {
                    ids.push(format!("{k} (kept)"));
                }
            }
        }
        ids
    }
}

/// A duration for the table: `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub build: String,
    pub outcome: String,
    pub duration: String,
    pub artifacts: Vec<String>,
}

/// The final table: a header, then a line per build (and per further artifact), columns padded
/// to their widest cell. `paint(build, outcome, cell)` may color a cell (the padding is
/// computed on the plain text).
pub fn table(rows: &[Row], paint: &dyn Fn(usize, &str, &str) -> String) -> Vec<String> {
    let head = ["BUILD", "OUTCOME", "DURATION", "ARTIFACTS"];
    let w = |f: &dyn Fn(&Row) -> usize, h: &str| rows.iter().map(f).max().unwrap_or(0).max(h.len());
    let wb = w(&|r| r.build.chars().count(), head[0]);
    let wo = w(&|r| r.outcome.chars().count(), head[1]);
    let wd = w(&|r| r.duration.chars().count(), head[2]);
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let mut out = vec![format!(
        "    {}  {}  {}  {}",
        pad(head[0], wb),
        pad(head[1], wo),
        pad(head[2], wd),
        head[3]
    )];
    for r in rows {
        let first = r.artifacts.first().map_or("-", String::as_str);
        out.push(format!(
            "    {}  {}  {}  {first}",
            paint(0, &r.build, &pad(&r.build, wb)),
            paint(1, &r.outcome, &pad(&r.outcome, wo)),
            pad(&r.duration, wd),
        ));
        for more in r.artifacts.iter().skip(1) {
            out.push(format!("    {}  {more}", " ".repeat(wb + wo + wd + 4)));
        }
    }
    out
}

/// Runs the prepared builds. `Err` when any failed; its exit code says whether anything was left
/// behind.
pub fn run(prepared: &Prepared, inputs: &Inputs, opts: &Options, ui: &Ui) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let mut ui = ui.clone();
    for b in &prepared.builds {
        for s in b.builder.secrets() {
            ui.redactor.add(s);
        }
    }
    if let Ok(k) = std::env::var(crate::builder::fingerprint::KEY_ENV) {
        ui.redactor.add(&k);
    }
    crate::log::set_redactor(&ui.redactor);
    ui.set_builds(prepared.builds.iter().map(|b| b.name.clone()).collect());
    let ui = &ui;
    let terminal = crate::interact::terminal_attached();
    let outcomes = rt.block_on(async {
        let (cancel_tx, cancel) = cancel::channel();
        let (abort_tx, abort) = cancel::channel();
        // Signals are registered before any work starts.
        let signals = match (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        ) {
            (Ok(i), Ok(t)) => Some((i, t)),
            _ => None,
        };
        if let Some((mut int, mut term)) = signals {
            let sig_ui = ui.clone();
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    n += 1;
                    if n == 1 {
                        sig_ui.error("==> Interrupt received: cancelling the builds and removing what they created. Interrupt again to skip the cleanup (and leave resources behind).");
                        cancel_tx.cancel();
                    } else {
                        sig_ui.error("==> Second interrupt: skipping the cleanup.");
                        abort_tx.cancel();
                        break;
                    }
                }
            });
        }
        let mut limit = opts.parallel_builds;
        if opts.debug {
            // As Packer: one build at a time, so that pauses and prompts make sense.
            limit = 1;
            ui.say("==> Debug mode enabled. Builds will not be parallelized.");
            if !terminal {
                ui.say("==> -debug: no terminal is attached, so the builds do not pause between steps; temporary private keys are still saved (ec2_<build>.pem in the current directory).");
            }
        }
        let run_id = uuid::Uuid::now_v7().to_string();
        tracing::info!(%run_id, builds = prepared.builds.len(), parallel_builds = limit, on_error = ?opts.on_error, debug = opts.debug, "run started");
        let engine = Engine::new(prepared.clock);
        let slots = tokio::sync::Semaphore::new(if limit == 0 {
            prepared.builds.len().max(1)
        } else {
            limit
        });
        let futures = prepared.builds.iter().map(|b| {
            let (cancel, abort, engine, run_id, slots) = (&cancel, &abort, &engine, &run_id, &slots);
            async move {
                let _slot = match slots.try_acquire() {
                    Ok(p) => Ok(p),
                    Err(_) => {
                        ui.say(&format!(
                            "==> {}: waiting for a free build slot (-parallel-builds={limit})",
                            b.name
                        ));
                        slots.acquire().await
                    }
                };
                let interact = Interact::new(&b.name, opts.on_error, opts.debug, terminal, ui);
                let work = one(b, inputs, opts, ui, engine, run_id, cancel, abort, &interact);
                let out = crate::ui::scoped(ui.clone(), b.name.clone(), work).await;
                tracing::info!(build = %out.name, outcome = out.outcome(), took = ?out.took, "build ended");
                out
            }
        });
        futures_util::future::join_all(futures).await
    });
    summary(&outcomes, ui)
}

fn journal_name(run_id: &str, build: &str) -> String {
    let clean: String = build
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{run_id}.{clean}")
}

/// The whole-build deadline: the smaller of `-timeout` and `build_timeout` (zero is no limit),
/// and which of the two it is.
pub fn deadline(
    cli: Option<Duration>,
    build_timeout: Option<Duration>,
) -> Option<(Duration, &'static str)> {
    let cli = cli.filter(|d| !d.is_zero());
    let own = build_timeout.filter(|d| !d.is_zero());
    match (cli, own) {
        (Some(c), Some(b)) if b < c => Some((b, "build_timeout")),
        (Some(c), _) => Some((c, "-timeout")),
        (None, Some(b)) => Some((b, "build_timeout")),
        (None, None) => None,
    }
}

/// A build's own cancellation: the run's (Ctrl-C, SIGTERM) or its deadline's.
struct BuildCancel {
    tx: Canceller,
    rx: Cancel,
    limit: Option<(Duration, &'static str)>,
}

impl BuildCancel {
    fn new(limit: Option<(Duration, &'static str)>) -> BuildCancel {
        let (tx, rx) = cancel::channel();
        BuildCancel { tx, rx, limit }
    }

    /// Runs `fut` until it ends; cancels the build when the run is cancelled or the deadline
    /// passes (the future then ends early and undoes nothing itself). True when the deadline
    /// expired.
    async fn drive<F: std::future::Future>(&self, run: &Cancel, fut: F) -> (F::Output, bool) {
        let limit = self.limit;
        let watcher = async {
            match limit {
                Some((t, _)) => tokio::select! {
                    _ = run.cancelled() => false,
                    _ = tokio::time::sleep(t) => true,
                },
                None => {
                    run.cancelled().await;
                    false
                }
            }
        };
        tokio::pin!(watcher);
        tokio::pin!(fut);
        let mut expired = false;
        let out = loop {
            tokio::select! {
                r = &mut fut => break r,
                t = &mut watcher, if !self.tx.is_cancelled() => {
                    expired = t;
                    self.tx.cancel();
                }
            }
        };
        (out, expired)
    }

    /// The error of a build whose deadline expired.
    fn expired_message(&self) -> String {
        let (d, origin) = self.limit.unwrap_or((Duration::ZERO, "-timeout"));
        format!(
            "the whole-build deadline expired: {origin} of {} (the smaller of -timeout and build_timeout applies); the build was cancelled",
            human_duration(d)
        )
    }
}

/// What to do with what a failed build created: `-on-error`, asked when it is `ask` (unless the
/// person already chose inside the build, or the build was interrupted or ran out of time:
/// then it is torn down).
async fn decide(
    interact: &Interact,
    opts: &Options,
    error: &str,
    interrupted: bool,
    cancel: &Cancel,
) -> Choice {
    if interrupted {
        return Choice::Cleanup;
    }
    match opts.on_error {
        OnError::Cleanup => Choice::Cleanup,
        OnError::Abort => Choice::Abort,
        OnError::Ask => match interact.chosen() {
            Some(c) => c,
            None => interact.on_failure("the build", error, false, cancel).await,
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn one(
    b: &PreparedBuild,
    inputs: &Inputs<'_>,
    opts: &Options,
    ui: &Ui,
    engine: &Engine,
    run_id: &str,
    cancel: &Cancel,
    abort: &Cancel,
    interact: &Interact,
) -> Outcome {
    let start = Instant::now();
    tracing::info!(build = %b.name, kind = %b.kind, "build started");
    let mut out = Outcome {
        name: b.name.clone(),
        took: Duration::ZERO,
        result: Err(String::new()),
        left: Vec::new(),
        journal: None,
        kept: None,
    };
    let cfg = match &b.builder {
        BuilderConfig::AmazonEbs(cfg) => cfg,
        BuilderConfig::Null(cfg) => {
            // No cloud: nothing is created, so there is no ledger, journal or teardown.
            let own = BuildCancel::new(deadline(opts.timeout, None));
            let null = NullBuild {
                name: &b.name,
                cfg,
                provisioners: &b.provisioners,
                error_cleanup: b.error_cleanup.as_ref(),
                run_id,
                ui,
                cancel: &own.rx,
            };
            let work = async {
                loop {
                    let r = null.run().await;
                    match &r {
                        Err(e) if interact.asks() && !matches!(e, ProvisionError::Cancelled) => {
                            let error = ui.redactor.redact(&e.to_string());
                            let c = interact
                                .on_failure("provisioning", &error, true, &own.rx)
                                .await;
                            if c != Choice::Retry {
                                break r;
                            }
                        }
                        _ => break r,
                    }
                }
            };
            let (r, expired) = own.drive(cancel, work).await;
            let result = match r {
                Ok(()) => Ok(Artifact::null(null.build_data())),
                Err(_) if expired => Err(own.expired_message()),
                Err(ProvisionError::Cancelled) => Err("cancelled (interrupted)".to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &result {
                ui.error(&format!("==> {}: {e}", b.name));
                // Nothing to clean up or leave; asked only to say what was chosen.
                decide(interact, opts, e, cancel.is_cancelled() || expired, cancel).await;
            }
            let pp = Post {
                aws: None,
                ami_name: None,
                inputs,
                opts,
                ui,
                engine,
                run_id,
                cancel,
            };
            out.result = pp.run(b, result, &mut out.kept).await;
            out.took = start.elapsed();
            return out;
        }
    };
    let say = |m: String| ui.say(&format!("==> {}: {m}", b.name));
    let fail = |mut out: Outcome, e: String| {
        out.took = start.elapsed();
        out.result = Err(e);
        out
    };
    let polling = match Polling::resolve(
        cfg.access.aws_polling,
        std::env::var("AWS_POLL_DELAY_SECONDS").ok().as_deref(),
        std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
    ) {
        Ok(p) => p,
        Err(e) => return fail(out, e),
    };
    let dir = default_journal_dir();
    let journal = match Journal::create(&dir, &journal_name(run_id, &b.name)) {
        Ok(j) => j,
        Err(e) => {
            return fail(out, format!("cannot create the run journal in {} (set IMGBUILD_JOURNAL_DIR to a writable directory): {e}", dir.display()))
        }
    };
    out.journal = Some(journal.path().to_path_buf());
    let ledger = Mutex::new(Ledger::new(Some(journal)));
    let started = Event::Started {
        run_id: run_id.to_string(),
        build: b.name.clone(),
        pid: std::process::id(),
        at: chrono::Utc::now().timestamp(),
        endpoint: cfg.access.custom_endpoint_ec2.clone(),
        protected_snapshots: crate::builder::amazon::steps::protected_snapshots(cfg),
    };
    if let Err(e) = lock(&ledger).note(&started) {
        return fail(out, format!("writing the run journal: {e}"));
    }
    let finish = |ledger: &Mutex<Ledger>, clean: bool| {
        let _ = lock(ledger).note(&Event::Finished {
            clean,
            at: chrono::Utc::now().timestamp(),
        });
    };
    let aws = match cancel.run(Aws::connect(&cfg.access)).await {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            finish(&ledger, true);
            return fail(out, e.to_string());
        }
        None => {
            finish(&ledger, true);
            return fail(out, "cancelled".into());
        }
    };
    // A build's own cancellation: the run's, or its deadline (-timeout, build_timeout).
    let own = BuildCancel::new(deadline(opts.timeout, cfg.build_timeout));
    let ctx = Ctx {
        name: &b.name,
        cfg,
        provisioners: &b.provisioners,
        error_cleanup: b.error_cleanup.as_ref(),
        aws: &aws,
        run_id,
        ledger: &ledger,
        ui,
        engine,
        user: inputs.user,
        template_dir: inputs.template_dir,
        force: opts.force,
        polling,
        cancel: own.rx.clone(),
        interact,
        reuse: (opts.skip_unchanged || cfg.reuse_unchanged).then(|| {
            crate::builder::fingerprint::Inputs {
                builder_type: &b.kind,
                builder: &b.definition,
                provisioners: &b.provisioners,
                user_data_file: cfg.run.user_data_file.as_deref(),
                variables: inputs.user,
                sensitive: inputs.sensitive,
            }
        }),
    };
    let work = async {
        // -debug: a pause before the first step too.
        if !interact
            .pause(crate::interact::step_after("start"), &own.rx)
            .await
        {
            return Err(crate::builder::amazon::BuildError::Cancelled);
        }
        ctx.run().await
    };
    let (result, timed_out) = own.drive(cancel, work).await;
    let result = result.map_err(|e| {
        if timed_out {
            own.expired_message()
        } else if e.is_cancelled() {
            "cancelled (interrupted)".to_string()
        } else {
            e.to_string()
        }
    });
    let success = result.is_ok();
    let choice = match &result {
        Ok(_) => Choice::Cleanup,
        Err(e) => {
            ui.error(&format!("==> {}: {e}", b.name));
            decide(
                interact,
                opts,
                e,
                cancel.is_cancelled() || timed_out,
                cancel,
            )
            .await
        }
    };
    let skip = !success && choice == Choice::Abort && !cancel.is_cancelled();
    if skip {
        say(format!(
            "{}: leaving what the build created in place",
            if opts.on_error == OnError::Abort {
                "-on-error=abort"
            } else {
                "-on-error=ask"
            }
        ));
        if let Some(key) = interact.saved_key() {
            say(format!(
                "-debug: the temporary private key stays in {} (remove it when done with the instance)",
                key.display()
            ));
        }
    } else {
        if let Some(d) = crate::testhook::pause_at("teardown") {
            abort.sleep(d).await;
        }
        if !cancel.is_cancelled() {
            interact
                .pause(crate::interact::step_after("teardown"), abort)
                .await;
        }
        let protected = ctx.protected_snapshots();
        let failures =
            teardown::run(&aws, &ledger, success, polling, &protected, abort, &say).await;
        out.left = failures;
        interact.remove_saved_key();
    }
    // Whatever is still recorded as existing (and not the product) is left behind.
    let remaining = lock(&ledger).to_unwind(success);
    for e in remaining {
        if !out.left.iter().any(|(u, _)| *u == e.undo) {
            out.left.push((
                e.undo.clone(),
                if skip {
                    format!(
                        "left by -on-error={}",
                        if opts.on_error == OnError::Abort {
                            "abort"
                        } else {
                            "ask"
                        }
                    )
                } else {
                    "not removed".into()
                },
            ));
        }
    }
    // A successful build that left nothing archives its journal (ledger::Ledger::finish).
    let _ = lock(&ledger).finish(out.left.is_empty(), success);
    let pp = Post {
        aws: Some(&aws),
        // As written: its static prefix finds the build's AMIs of other runs.
        ami_name: b.definition.get("ami_name").and_then(|v| v.as_str()),
        inputs,
        opts,
        ui,
        engine,
        run_id,
        cancel,
    };
    out.result = pp.run(b, result, &mut out.kept).await;
    out.took = start.elapsed();
    out
}

/// What post-processing needs of the run.
struct Post<'a> {
    /// The build's AWS access; `None` for the null builder.
    aws: Option<&'a Aws>,
    /// The amazon-ebs build's `ami_name` as written in the template.
    ami_name: Option<&'a str>,
    inputs: &'a Inputs<'a>,
    opts: &'a Options,
    ui: &'a Ui,
    engine: &'a Engine,
    run_id: &'a str,
    cancel: &'a Cancel,
}

impl Post<'_> {
    /// Runs the build's post-processors on its artifact (Packer runs them on the null builder's
    /// artifact too); the artifacts to report, or why the build failed. `kept` gets the id of
    /// AMIs that exist although the build failed.
    async fn run(
        &self,
        b: &PreparedBuild,
        result: Result<Artifact, String>,
        kept: &mut Option<String>,
    ) -> Result<Vec<Artifact>, String> {
        let Post {
            aws,
            ami_name,
            inputs,
            opts,
            ui,
            engine,
            run_id,
            cancel,
        } = *self;
        let say = |m: String| ui.say(&format!("==> {}: {m}", b.name));
        match result {
            Err(e) => Err(e),
            Ok(a) if a.amis.is_empty() && !a.null => {
                if !b.post_processors.is_empty() {
                    say("no AMI was created, so the post-processors do not run".into());
                }
                Ok(Vec::new())
            }
            Ok(a) if cancel.is_cancelled() => {
                say("Build was cancelled. Skipping post-processors.".into());
                *kept = (!a.null).then(|| a.id());
                Err("cancelled (interrupted) before post-processing".into())
            }
            Ok(a) => {
                let pctx = PpContext {
                    build_name: &b.name,
                    build_type: &b.kind,
                    run_id,
                    force: opts.force,
                    ui,
                    engine,
                    user: inputs.user,
                    template_dir: inputs.template_dir,
                    cancel,
                    aws,
                    ami_name,
                };
                let done = post_process::run(&b.post_processors, &a, &pctx).await;
                if done.errors.is_empty() {
                    Ok(done.artifacts)
                } else {
                    *kept = (!a.null).then(|| a.id());
                    Err(done.errors.join("; "))
                }
            }
        }
    }
}

fn summary(outcomes: &[Outcome], ui: &Ui) -> Result<(), Error> {
    ui.end_live();
    for o in outcomes {
        match &o.result {
            Ok(_) => ui.say(&format!(
                "Build '{}' finished after {}.",
                o.name,
                human_duration(o.took)
            )),
            Err(e) => ui.error(&format!(
                "Build '{}' errored after {}: {e}",
                o.name,
                human_duration(o.took)
            )),
        }
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    if !failed.is_empty() {
        // Packer's records: `error-count`, then an `error` per build.
        ui.record("", "error-count", &[&failed.len().to_string()]);
        ui.error("\n==> Some builds didn't complete successfully and had errors:");
        for o in &failed {
            if let Err(e) = &o.result {
                ui.record(&o.name, "error", &[e]);
                ui.error(&format!("--> {}: {e}", o.name));
            }
        }
    }
    let ok: Vec<(&Outcome, &Vec<Artifact>)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|a| (o, a)))
        .collect();
    if !ok.is_empty() {
        ui.say("\n==> Builds finished. The artifacts of successful builds are:");
        for (o, artifacts) in &ok {
            if artifacts.is_empty() {
                ui.say(&format!(
                    "--> {}: no AMI was created (skip_create_ami)",
                    o.name
                ));
                continue;
            }
            // Packer's machine-readable artifact records (`-machine-readable`).
            ui.record(&o.name, "artifact-count", &[&artifacts.len().to_string()]);
            for (i, a) in artifacts.iter().enumerate() {
                let i = i.to_string();
                ui.record(&o.name, "artifact", &[&i, "builder-id", a.builder_id()]);
                ui.record(&o.name, "artifact", &[&i, "id", &a.id()]);
                ui.record(&o.name, "artifact", &[&i, "string", &a.describe()]);
                ui.record(&o.name, "artifact", &[&i, "files-count", "0"]);
                ui.record(&o.name, "artifact", &[&i, "end"]);
                ui.say(&format!("--> {}: {}", o.name, a.describe().trim_end()));
            }
        }
    }
    if !ui.machine {
        outcome_table(outcomes, ui);
    }
    let left: Vec<&Outcome> = outcomes.iter().filter(|o| !o.left.is_empty()).collect();
    if !left.is_empty() {
        let mut msg = String::from("resources were left behind:");
        for o in &left {
            for (u, why) in &o.left {
                msg.push_str(&format!("\n  {}: {} ({why})", o.name, u.describe()));
            }
            if let Some(j) = &o.journal {
                msg.push_str(&format!("\n  {}: journal: {}", o.name, j.display()));
            }
        }
        msg.push_str("\nremove them with `imgbuild cleanup` (they are tagged imgbuild:run-id)");
        return Err(Error::Build {
            message: msg,
            left_behind: true,
        });
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|o| o.name.as_str()).collect();
        let kept: Vec<String> = failed
            .iter()
            .filter_map(|o| o.kept.as_ref().map(|id| format!("{}: {id}", o.name)))
            .collect();
        let tail = if kept.is_empty() {
            "everything they created was removed".to_string()
        } else {
            format!(
                "the AMIs of builds that failed after creating them were kept ({}); everything else they created was removed",
                kept.join(", ")
            )
        };
        return Err(Error::Build {
            message: format!(
                "{} of {} build(s) failed ({}); {tail}",
                failed.len(),
                outcomes.len(),
                names.join(", ")
            ),
            left_behind: false,
        });
    }
    Ok(())
}

/// Each build's outcome, duration and artifacts, as a table (colored on a terminal).
fn outcome_table(outcomes: &[Outcome], ui: &Ui) {
    let rows: Vec<Row> = outcomes
        .iter()
        .map(|o| Row {
            build: o.name.clone(),
            outcome: o.outcome().to_string(),
            duration: short_duration(o.took),
            artifacts: o.artifact_ids(),
        })
        .collect();
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    ui.say(&format!(
        "\n==> Build outcomes: {ok} succeeded, {} failed",
        outcomes.len() - ok
    ));
    let paint = |col: usize, text: &str, cell: &str| -> String {
        match col {
            0 => ui.paint_build(text, cell),
            _ if !ui.out_color => cell.to_string(),
            _ => {
                let code = match text {
                    "succeeded" => "32",
                    "failed and cleaned up" => "31",
                    _ => "33",
                };
                format!("\x1b[{code}m{cell}\x1b[0m")
            }
        }
    };
    for line in table(&rows, &paint) {
        ui.say(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_deadline_wins_and_says_which() {
        let s = Duration::from_secs;
        assert_eq!(deadline(None, None), None);
        assert_eq!(deadline(Some(s(0)), None), None);
        assert_eq!(deadline(Some(s(60)), None), Some((s(60), "-timeout")));
        assert_eq!(deadline(None, Some(s(7))), Some((s(7), "build_timeout")));
        assert_eq!(
            deadline(Some(s(60)), Some(s(7))),
            Some((s(7), "build_timeout"))
        );
        assert_eq!(deadline(Some(s(5)), Some(s(7))), Some((s(5), "-timeout")));
        assert_eq!(deadline(Some(s(5)), Some(s(5))), Some((s(5), "-timeout")));
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_table_pads_columns_and_lists_every_artifact() {
        let rows = vec![
            Row {
                build: "web".into(),
                outcome: "succeeded".into(),
                duration: "4m05s".into(),
                artifacts: vec!["us-east-1:ami-1".into(), "Null".into()],
            },
            Row {
                build: "database".into(),
                outcome: "failed and cleaned up".into(),
                duration: "2.0s".into(),
                artifacts: vec![],
            },
        ];
        let plain = |_: usize, _: &str, cell: &str| cell.to_string();
        assert_eq!(
            table(&rows, &plain),
            vec![
                "    BUILD     OUTCOME                DURATION  ARTIFACTS",
                "    web       succeeded              4m05s     us-east-1:ami-1",
                "                                               Null",
                "    database  failed and cleaned up  2.0s      -",
            ]
        );
        let painted = |col: usize, _: &str, cell: &str| {
            if col == 0 {
                format!("<{cell}>")
            } else {
                cell.to_string()
            }
        };
        assert_eq!(
            table(&rows, &painted)[1],
            "    <web     >  succeeded              4m05s     us-east-1:ami-1"
        );
    }

    #[test]
    fn journal_names_are_safe_file_names() {
        assert_eq!(
            journal_name("0190-ab", "web worker/1"),
            "0190-ab.web_worker_1"
        );
    }
}
