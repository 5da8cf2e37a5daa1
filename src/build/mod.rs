//! Orchestration of builds: one task per build (at most `-parallel-builds` at once), each with
//! its own run journal and [`Ledger`]; Ctrl-C/SIGTERM cancel every build at once and teardown
//! runs; a second one skips teardown and says what was left behind. At the end, Packer's summary
//! of artifacts, and an error that says whether anything was left behind.

pub mod provision;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::builder::amazon::teardown::{self, lock};
use crate::builder::amazon::wait::Polling;
use crate::builder::amazon::{aws::Aws, human_duration, Artifact, Ctx};
use crate::builder::null::NullBuild;
use crate::cancel::{self, Cancel};
use crate::cli::OnError;
use crate::error::Error;
use crate::ledger::{default_journal_dir, Event, Journal, Ledger, Undo};
use crate::post_processor::run::{self as post_process, PpContext};
use crate::template::funcs::Engine;
use crate::template::prepare::{BuilderConfig, Prepared, PreparedBuild};
use crate::ui::Ui;
use provision::ProvisionError;

/// The `build` command's flags that matter here.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-force`: deregister an AMI of the same name first.
    pub force: bool,
    /// `-on-error`.
    pub on_error: OnError,
    /// `-parallel-builds` (0: all at once).
    pub parallel_builds: usize,
    /// `-debug` (not implemented yet: said so).
    pub debug: bool,
}

/// What templates are rendered against at build time.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub user: &'a BTreeMap<String, String>,
    pub template_dir: &'a str,
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
    let ui = &ui;
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
        if opts.debug {
            ui.error("==> -debug is not implemented yet: the build runs without pausing and the temporary private key stays in memory only.");
        }
        let run_id = uuid::Uuid::now_v7().to_string();
        let engine = Engine::new(prepared.clock);
        let slots = tokio::sync::Semaphore::new(if opts.parallel_builds == 0 {
            prepared.builds.len().max(1)
        } else {
            opts.parallel_builds
        });
        let futures = prepared.builds.iter().map(|b| {
            let (cancel, abort, engine, run_id, slots) = (&cancel, &abort, &engine, &run_id, &slots);
            async move {
                let _slot = slots.acquire().await;
                one(b, inputs, opts, ui, engine, run_id, cancel, abort).await
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
) -> Outcome {
    let start = Instant::now();
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
            let null = NullBuild {
                name: &b.name,
                cfg,
                provisioners: &b.provisioners,
                error_cleanup: b.error_cleanup.as_ref(),
                run_id,
                ui,
                cancel,
            };
            let result = match null.run().await {
                Ok(()) => Ok(Artifact::null(null.build_data())),
                Err(ProvisionError::Cancelled) => Err("cancelled (interrupted)".to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &result {
                ui.error(&format!("==> {}: {e}", b.name));
            }
            let pp = Post {
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
    // A build's own cancellation: the run's, or its build_timeout.
    let (btx, bcancel) = cancel::channel();
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
        cancel: bcancel,
        test_pause: test_pause(),
    };
    let timeout = cfg.build_timeout;
    let watcher = async {
        match timeout {
            Some(t) => tokio::select! {
                _ = cancel.cancelled() => false,
                _ = tokio::time::sleep(t) => true,
            },
            None => {
                cancel.cancelled().await;
                false
            }
        }
    };
    tokio::pin!(watcher);
    let run = ctx.run();
    tokio::pin!(run);
    let mut timed_out = false;
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            t = &mut watcher, if !btx.is_cancelled() => {
                timed_out = t;
                btx.cancel();
            }
        }
    };
    let result = result.map_err(|e| {
        if timed_out {
            format!(
                "build_timeout of {} passed",
                human_duration(timeout.unwrap_or_default())
            )
        } else if e.is_cancelled() {
            "cancelled (interrupted)".to_string()
        } else {
            e.to_string()
        }
    });
    let success = result.is_ok();
    if let Err(e) = &result {
        ui.error(&format!("==> {}: {e}", b.name));
    }
    let skip = !success && opts.on_error == OnError::Abort && !cancel.is_cancelled();
    if skip {
        say("-on-error=abort: leaving what the build created in place".into());
    } else {
        if !success && opts.on_error == OnError::Ask {
            say("-on-error=ask: asking is not implemented yet; cleaning up".into());
        }
        if let Some((at, d)) = test_pause().filter(|(at, _)| at == "teardown") {
            say(format!(
                "test hook: pausing {} before {at}",
                human_duration(d)
            ));
            abort.sleep(d).await;
        }
        let protected = ctx.protected_snapshots();
        let failures =
            teardown::run(&aws, &ledger, success, polling, &protected, abort, &say).await;
        out.left = failures;
    }
    // Whatever is still recorded as existing (and not the product) is left behind.
    let remaining = lock(&ledger).to_unwind(success);
    for e in remaining {
        if !out.left.iter().any(|(u, _)| *u == e.undo) {
            out.left.push((
                e.undo.clone(),
                if skip {
                    "left by -on-error=abort".into()
                } else {
                    "not removed".into()
                },
            ));
        }
    }
    finish(&ledger, out.left.is_empty());
    let pp = Post {
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

/// `IMGBUILD_TEST_PAUSE=<step>:<seconds>` (tests only).
fn test_pause() -> Option<(String, Duration)> {
    let v = std::env::var("IMGBUILD_TEST_PAUSE").ok()?;
    let (step, secs) = v.split_once(':')?;
    Some((
        step.to_string(),
        Duration::from_secs_f64(secs.parse().ok()?),
    ))
}

fn summary(outcomes: &[Outcome], ui: &Ui) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_are_safe_file_names() {
        assert_eq!(
            journal_name("0190-ab", "web worker/1"),
            "0190-ab.web_worker_1"
        );
    }
}
