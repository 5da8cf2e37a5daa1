//! Orchestration of builds: one task per build (at most `-parallel-builds` at once), each on the
//! same path whatever its builder ([`one`]); Ctrl-C/SIGTERM cancel every build at once and
//! teardown runs; a second one skips teardown and says what was left behind. At the end, Packer's
//! summary of artifacts, and an error whose kind says whether anything was left behind
//! ([`summary`]).
//!
//! - [`one`]: one build: get ready, run under its own cancellation, `-on-error`, undo or leave,
//!   post-process;
//! - [`outcome`]: how one build ended, and the kind of its failure;
//! - [`summary`]: Packer's end of a run, the final table, the run's typed error.

mod one;
mod outcome;
mod summary;

pub use one::deadline;
pub use summary::{table, Row};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::cancel::{self, Canceller};
use crate::error::Error;
use crate::interact::{Interact, OnError};
use crate::prepare::Prepared;
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

/// Runs the prepared builds. `Err` when any failed; its kind says whether anything was left
/// behind (the exit code).
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
        on_signals(ui, cancel_tx, abort_tx);
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
        let run = one::Run {
            inputs,
            opts,
            ui,
            engine: &engine,
            run_id: &run_id,
            cancel: &cancel,
            abort: &abort,
        };
        let slots = tokio::sync::Semaphore::new(if limit == 0 {
            prepared.builds.len().max(1)
        } else {
            limit
        });
        let futures = prepared.builds.iter().map(|b| {
            let (run, slots) = (&run, &slots);
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
                let work = one::one(b, run, &interact);
                let out = crate::ui::scoped(ui.clone(), b.name.clone(), work).await;
                tracing::info!(build = %out.name, outcome = out.outcome(), took = ?out.took, "build ended");
                out
            }
        });
        futures_util::future::join_all(futures).await
    });
    summary::summary(&outcomes, ui)
}

/// Ctrl-C and SIGTERM: the first cancels every build (they tear down), the second aborts the
/// teardown (what is left is listed). Without signal handlers (they could not be registered),
/// nothing.
fn on_signals(ui: &Ui, cancel: Canceller, abort: Canceller) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let ui = ui.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            n += 1;
            if n == 1 {
                ui.error("==> Interrupt received: cancelling the builds and removing what they created. Interrupt again to skip the cleanup (and leave resources behind).");
                cancel.cancel();
            } else {
                ui.error("==> Second interrupt: skipping the cleanup.");
                abort.cancel();
                break;
            }
        }
    });
}
