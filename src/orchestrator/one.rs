//! One build, the same path for every builder: get ready, run under the build's own
//! cancellation (the run's Ctrl-C or SIGTERM, or the build's deadline), decide after a failure
//! (`-on-error`), undo or leave what the build created, then run its post-processors.

use std::path::Path;
use std::time::{Duration, Instant};

use super::outcome::{Failure, Outcome};
use super::{Inputs, Options};
use crate::builder::{Artifact, Build, Builder, BuilderConfig, Env, RunError};
use crate::cancel::{Cancel, Canceller};
use crate::interact::{step_after, Choice, Interact, OnError};
use crate::ledger::Undo;
use crate::post_processor::run::{self as post_process, PpContext};
use crate::prepare::PreparedBuild;
use crate::template::funcs::Engine;
use crate::timeline::{seconds, Report as TimelineReport, Timeline};
use crate::ui::Ui;

/// What every build of a run shares.
pub(super) struct Run<'a> {
    pub inputs: &'a Inputs<'a>,
    pub opts: &'a Options,
    pub ui: &'a Ui,
    pub engine: &'a Engine,
    pub run_id: &'a str,
    /// The first Ctrl-C or SIGTERM: every build stops and tears down.
    pub cancel: &'a Cancel,
    /// The second: teardown stops too, and says what it left.
    pub abort: &'a Cancel,
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

/// A build's own cancellation: a child of the run's (Ctrl-C, SIGTERM), also cancelled when the
/// build's deadline passes.
struct BuildCancel {
    tx: Canceller,
    rx: Cancel,
    limit: Option<(Duration, &'static str)>,
}

impl BuildCancel {
    fn new(run: &Cancel, limit: Option<(Duration, &'static str)>) -> BuildCancel {
        let (tx, rx) = run.child();
        BuildCancel { tx, rx, limit }
    }

    /// Runs `fut` until it ends; cancels the build when the deadline passes (the future then
    /// ends early and undoes nothing itself). True when the deadline expired (before the run
    /// was cancelled).
    async fn drive<F: std::future::Future>(&self, fut: F) -> (F::Output, bool) {
        let Some((limit, _)) = self.limit else {
            return (fut.await, false);
        };
        tokio::pin!(fut);
        tokio::select! {
            r = &mut fut => (r, false),
            _ = tokio::time::sleep(limit) => {
                let expired = !self.rx.is_cancelled();
                self.tx.cancel();
                (fut.await, expired)
            }
        }
    }

    /// The error of a build whose deadline expired.
    fn expired(&self) -> Failure {
        let (limit, origin) = self.limit.unwrap_or((Duration::ZERO, "-timeout"));
        Failure::Expired { limit, origin }
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

/// Runs one build to its outcome.
pub(super) async fn one(b: &PreparedBuild, run: &Run<'_>, interact: &Interact) -> Outcome {
    let timeline = Timeline::start();
    let mut out = steps(b, run, interact, &timeline).await;
    let report = timeline.finish();
    out.took = report.total;
    // A build that could not get ready did nothing worth a timeline.
    if !matches!(out.result, Err(Failure::Setup(_))) {
        show_timeline(&b.name, &report, run.ui);
    }
    out
}

/// Prints where the build's time went: bars on a terminal, plain `phase seconds` lines
/// otherwise, `timeline` records with `-machine-readable`.
fn show_timeline(name: &str, report: &TimelineReport, ui: &Ui) {
    if ui.machine {
        for p in &report.phases {
            ui.record(
                name,
                "timeline",
                &[&p.name, &format!("{:.3}", seconds(p.took))],
            );
            for (part, took) in &p.parts {
                let s = format!("{:.3}", seconds(*took));
                ui.record(name, "timeline-part", &[&p.name, part, &s]);
            }
        }
        let total = format!("{:.3}", seconds(report.total));
        ui.record(name, "timeline-total", &[&total]);
        return;
    }
    let bars = ui.is_live();
    let mut text = format!("==> {name}: Timeline (seconds):");
    for l in report.lines(bars) {
        text.push_str("\n    ");
        text.push_str(&l);
    }
    ui.say(&text);
}

/// The build from start to end, its timeline marked on the way.
async fn steps(
    b: &PreparedBuild,
    run: &Run<'_>,
    interact: &Interact,
    timeline: &Timeline,
) -> Outcome {
    let start = Instant::now();
    tracing::info!(build = %b.name, kind = %b.kind, "build started");
    let (inputs, opts, ui) = (run.inputs, run.opts, run.ui);
    let env = Env {
        name: &b.name,
        kind: &b.kind,
        definition: &b.definition,
        provisioners: &b.provisioners,
        error_cleanup: b.error_cleanup.as_ref(),
        run_id: run.run_id,
        ui,
        engine: run.engine,
        interact,
        user: inputs.user,
        sensitive: inputs.sensitive,
        template_dir: inputs.template_dir,
        force: opts.force,
        skip_unchanged: opts.skip_unchanged,
        timeline,
    };
    let mut builder = b.builder.builder(env);
    let mut out = Outcome {
        name: b.name.clone(),
        took: Duration::ZERO,
        result: Ok(Vec::new()),
        left: Vec::new(),
        journal: None,
        kept: None,
    };
    let prepared = builder.prepare(run.cancel).await;
    out.journal = builder.journal().map(Path::to_path_buf);
    if let Err(e) = prepared {
        out.result = Err(e.into());
        out.took = start.elapsed();
        return out;
    }
    let own = BuildCancel::new(run.cancel, deadline(opts.timeout, builder.build_timeout()));
    let (result, expired) = own.drive(builder.run(&own.rx)).await;
    let result = match result {
        Ok(a) => Ok(a),
        Err(_) if expired => Err(own.expired()),
        Err(RunError::Cancelled) => Err(Failure::Cancelled),
        Err(RunError::Failed(e)) => Err(Failure::Builder(e)),
    };
    let choice = match &result {
        Ok(_) => Choice::Cleanup,
        Err(e) => {
            timeline.mark("on-error");
            let e = e.to_string();
            ui.error(&format!("==> {}: {e}", b.name));
            let interrupted = run.cancel.is_cancelled() || expired;
            decide(interact, opts, &e, interrupted, run.cancel).await
        }
    };
    if builder.creates_resources() {
        timeline.mark("teardown");
        out.left = undo_or_leave(&b.name, &builder, run, interact, result.is_ok(), choice).await;
    }
    out.result = post_process(b, run, &builder, result, &mut out.kept, timeline).await;
    out.took = start.elapsed();
    out
}

/// After the run: undoes what the build created (keeping the product when it succeeded), or
/// leaves it in place (`abort` chosen, and not interrupted); what is left, with why. The
/// build's journal then says how it ended.
async fn undo_or_leave(
    name: &str,
    builder: &Build<'_>,
    run: &Run<'_>,
    interact: &Interact,
    success: bool,
    choice: Choice,
) -> Vec<(Undo, String)> {
    let say = |m: String| run.ui.say(&format!("==> {name}: {m}"));
    let on_error = if run.opts.on_error == OnError::Abort {
        "abort"
    } else {
        "ask"
    };
    let skip = !success && choice == Choice::Abort && !run.cancel.is_cancelled();
    let mut left = Vec::new();
    if skip {
        say(format!(
            "-on-error={on_error}: leaving what the build created in place"
        ));
        if let Some(key) = interact.saved_key() {
            say(format!(
                "-debug: the temporary private key stays in {} (remove it when done with the instance)",
                key.display()
            ));
        }
    } else {
        if let Some(d) = crate::testhook::pause_at("teardown") {
            run.abort.run(crate::testhook::held(d)).await;
        }
        if !run.cancel.is_cancelled() {
            interact.pause(step_after("teardown"), run.abort).await;
        }
        left = builder.teardown(success, run.abort).await;
        interact.remove_saved_key();
    }
    // Whatever is still recorded as existing (and not the product) is left behind.
    for undo in builder.remaining(success) {
        if !left.iter().any(|(u, _)| *u == undo) {
            let why = if skip {
                format!("left by -on-error={on_error}")
            } else {
                "not removed".into()
            };
            left.push((undo, why));
        }
    }
    builder.finish(left.is_empty(), success);
    left
}

/// Runs the build's post-processors on its artifact (Packer runs them on the null builder's
/// artifact too); the artifacts to report, or why the build failed. `kept` gets the id of
/// AMIs that exist although the build failed.
async fn post_process(
    b: &PreparedBuild,
    run: &Run<'_>,
    builder: &Build<'_>,
    result: Result<Artifact, Failure>,
    kept: &mut Option<String>,
    run_timeline: &Timeline,
) -> Result<Vec<Artifact>, Failure> {
    let say = |m: &str| run.ui.say(&format!("==> {}: {m}", b.name));
    match result {
        Err(e) => Err(e),
        Ok(a) if a.amis.is_empty() && !a.null => {
            if !b.post_processors.is_empty() {
                say("no AMI was created, so the post-processors do not run");
            }
            Ok(Vec::new())
        }
        Ok(a) if run.cancel.is_cancelled() => {
            say("Build was cancelled. Skipping post-processors.");
            *kept = (!a.null).then(|| a.id());
            Err(Failure::CancelledBeforePostProcessing)
        }
        Ok(a) => {
            let pctx = PpContext {
                build_name: &b.name,
                build_type: &b.kind,
                run_id: run.run_id,
                force: run.opts.force,
                ui: run.ui,
                engine: run.engine,
                user: run.inputs.user,
                template_dir: run.inputs.template_dir,
                cancel: run.cancel,
                abort: run.abort,
                amazon: match &b.builder {
                    BuilderConfig::AmazonEbs(c) => Some(c.as_ref()),
                    BuilderConfig::Null(_) => None,
                },
                aws: builder.aws(),
                ami_name: builder.ami_name(),
                timeline: run_timeline,
            };
            let done = post_process::run(&b.post_processors, &a, &pctx).await;
            if done.errors.is_empty() {
                Ok(done.artifacts)
            } else {
                *kept = (!a.null && !done.removed).then(|| a.id());
                Err(Failure::PostProcessing(done.errors))
            }
        }
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

    #[tokio::test]
    async fn a_deadline_cancels_the_build_but_not_the_run() {
        let (_run_tx, run) = crate::cancel::channel();
        let own = BuildCancel::new(&run, Some((Duration::from_millis(10), "build_timeout")));
        let rx = own.rx.clone();
        let (cancelled, expired) = own
            .drive(async move {
                rx.cancelled().await;
                true
            })
            .await;
        assert!(cancelled && expired);
        assert!(!run.is_cancelled());
        assert_eq!(
            own.expired().to_string(),
            "the whole-build deadline expired: build_timeout of 10 milliseconds (the smaller of -timeout and build_timeout applies); the build was cancelled"
        );
    }

    #[tokio::test]
    async fn an_interrupt_cancels_the_build_and_is_not_an_expiry() {
        let (run_tx, run) = crate::cancel::channel();
        let own = BuildCancel::new(&run, Some((Duration::from_secs(3600), "-timeout")));
        run_tx.cancel();
        let rx = own.rx.clone();
        let (_, expired) = own.drive(async move { rx.cancelled().await }).await;
        assert!(!expired);
        let none = BuildCancel::new(&Cancel::never(), None);
        assert_eq!(none.drive(async { 7 }).await, (7, false));
    }
}
