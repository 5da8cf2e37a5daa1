//! imgbuild: builds Amazon Machine Images from Packer JSON templates.
//!
//! What exists: the command line (`build`, `validate`, `inspect`, `version`, with Packer's
//! single-dash flags), Packer's legacy JSON template language (located errors for every problem,
//! variables, template functions through handlebars) and typed configuration of the amazon-ebs
//! builder, the shell, file, shell-local and breakpoint provisioners, and the manifest,
//! shell-local, ami-outputs, cloudformation-update (the AMI handed to a stack's parameter),
//! ssm-parameter (the AMI ID in Parameter Store), ami-retention and boot-test (the new AMI
//! started and checked over SSH, deregistered when a check fails) post-processors. Before the
//! first provisioner the build waits for first boot (cloud-init, apt locks: `wait_for_boot`). HCL2
//! templates (`.pkr.hcl`, `.pkr.json`, a folder of them; `template::hcl2`) are read into the same model, so
//! one decoder per component serves both languages; `hcl2_upgrade` writes a JSON template's twin.
//!
//! The amazon-ebs build runs end to end (`orchestrator`, `builder::amazon`, `communicator::ssh`,
//! `provisioner::runtime`), recording what it creates in a journaled `ledger` and undoing it on
//! every path, then runs the post-processors (`post_processor`: manifest, shell-local,
//! ami-outputs, ami-retention, boot-test). Every builder runs on one orchestration path through the
//! `builder::Builder` trait; a run ends in a typed `error::Error` whose kind gives the exit code;
//! one cancellation mechanism (`cancel`) reaches every wait. With `-skip-unchanged` or
//! `reuse_unchanged` a build fingerprints its inputs (`builder::fingerprint`) and reuses an AMI
//! that carries the same fingerprint (`builder::amazon::reuse`), launching nothing. The `null`
//! builder (`builder::null`) runs the provisioners against an existing machine, with no cloud.
//! `imgbuild cleanup` (`cleanup`) removes what interrupted or crashed runs left behind, from their
//! journals and the run-id tags. A build itself survives EC2 API faults (SDK retries; a create
//! call whose answer was lost is resolved by client token or by adopting its result by name and
//! run tag) and notices a source instance terminated while it provisions; the fault tests
//! (`tests/integration/fault_tests.rs`, `cleanup_tests.rs`) check that nothing is left after
//! each fault.
//!
//! Security defaults (README "Security"): the temporary private key stays in memory; the temporary
//! security group opens only the SSH port, to configured or VPC blocks or, when SSH goes to the
//! instance's public address, to this machine's public address alone (`builder::amazon::public_ip`);
//! remote scripts are 0700 and env-var files 0600, removed unless `skip_clean`; `shell-local`
//! keeps values off command lines; `ssh_host_key_fingerprint` pins the host key
//! (`communicator::ssh::hostkey`).
//!
//! Not yet: data sources other than amazon-ami (as `source_ami`) and amazon-parameterstore
//! (`datasource`), builders other than amazon-ebs and null, provisioners other than those in
//! `provisioner::PROVISIONER_TYPES`, winrm, SSH certificates and proxies (README "How imgbuild
//! differs from Packer" lists every option that `validate` refuses by name). Spot instances are
//! requested with `RunInstances` market options (`builder::amazon::config::spot`).
//!
//! Configuration comes from the template, `-var`/`-var-file`, and for AWS access the standard AWS
//! chain.

pub mod artifact;
pub mod aws;
pub mod builder;
pub mod cancel;
pub(crate) mod checks;
pub mod cleanup;
pub mod cli;
pub mod communicator;
pub mod completions;
pub mod datasource;
pub mod duration;
pub mod error;
pub mod fix;
pub mod interact;
pub mod ledger;
pub mod log;
pub mod orchestrator;
pub mod post_processor;
pub mod prepare;
pub mod provisioner;
pub mod redact;
pub mod template;
pub mod testhook;
pub mod timeline;
pub mod ui;

use cli::{Command, Invocation};
use error::{Error, Exit};
use prepare::{prepare, Selection};
use template::diag::{Diagnostic, Diagnostics};
use template::funcs::{Clock, Engine};
use template::variables::{bind, VarArg};
use template::Template;
use ui::Ui;

/// Runs imgbuild with these arguments (program name first); returns the exit status.
pub fn run(args: Vec<String>) -> Exit {
    log::init();
    let inv = match cli::parse(args) {
        Ok(inv) => inv,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
        }
    };
    let Invocation { command, var_args } = inv;
    match command {
        Command::Version => {
            println!(
                "imgbuild {} (Packer JSON template language {})",
                env!("CARGO_PKG_VERSION"),
                template::funcs::PACKER_COMPAT_VERSION
            );
            Exit::Success
        }
        Command::Completions(a) => {
            print!("{}", completions::script(a.shell));
            Exit::Success
        }
        Command::Fix(a) => fix::run(&a.template, a.write, &Ui::new(false, true)),
        Command::Inspect(a) => {
            let ui = Ui::new(a.output.machine_readable, a.output.color);
            inspect(&a.template, &var_args, ui)
        }
        Command::Validate(a) => {
            let ui = Ui::new(a.output.machine_readable, a.output.color);
            let sel = Selection {
                only: a.select.only,
                except: a.select.except,
                strict: a.select.strict,
            };
            validate(&a.template, a.syntax_only, &var_args, &sel, ui)
        }
        Command::Build(a) => {
            let ui = Ui::new(a.output.machine_readable, a.output.color)
                .with_timestamps(a.timestamp_ui)
                .with_live();
            let sel = Selection {
                only: a.select.only,
                except: a.select.except,
                strict: a.select.strict,
            };
            let opts = orchestrator::Options {
                force: a.force,
                on_error: a.on_error,
                parallel_builds: a.parallel_builds,
                debug: a.debug,
                timeout: a.timeout,
                skip_unchanged: a.skip_unchanged,
            };
            build(&a.template, &var_args, &sel, &opts, ui)
        }
        Command::Hcl2Upgrade(a) => {
            let ui = Ui::new(false, true);
            hcl2_upgrade(&a.template, a.output_file, &ui)
        }
        Command::Cleanup(a) => {
            let ui = Ui::new(a.output.machine_readable, a.output.color);
            let opts = cleanup::Options {
                journals: a.journals,
                run_id: a.run_id,
                regions: a.regions,
                all_regions: a.all_regions,
                older_than: a.older_than,
                dry_run: a.dry_run,
                endpoint: a.endpoint_url,
            };
            cleanup::run(&opts, &ui)
        }
    }
}

/// Loads a template through stage 1; on failure prints the problems.
fn load(path: &str, var_args: &[VarArg], ui: &Ui, diags: &mut Diagnostics) -> Option<Template> {
    if template::hcl2::is_hcl2(path) {
        return template::hcl2::load(path, var_args, true, diags).map(|l| l.template);
    }
    let (file, dir) = match template::read_source(path) {
        Ok(v) => v,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let _ = ui;
    Template::parse(file, dir, diags)
}

fn report(ui: &Ui, diags: &Diagnostics) -> Exit {
    ui.diagnostics(diags);
    if diags.has_errors() {
        let n = diags.error_count();
        ui.error(&format!(
            "imgbuild: the template is not valid: {n} error{}",
            if n == 1 { "" } else { "s" }
        ));
        Exit::Usage
    } else {
        Exit::Success
    }
}

/// Stage 1 and stage 2, shared by validate and build.
/// A template ready to build: the prepared builds, the bound variables and the template's
/// directory (both needed to render build-time values).
struct Loaded {
    prepared: prepare::Prepared,
    vars: template::variables::Variables,
    template_dir: String,
}

fn load_and_prepare(
    path: &str,
    var_args: &[VarArg],
    sel: &Selection,
    ui: &mut Ui,
    diags: &mut Diagnostics,
) -> Option<Loaded> {
    diags.strict = sel.strict;
    let clock = Clock::now();
    template::hcl2::funcs::set_now(clock.init);
    let engine = Engine::new(clock);
    // An HCL2 template's variables are bound while it loads, in Packer's HCL2 precedence.
    let (t, vars) = if template::hcl2::is_hcl2(path) {
        let l = template::hcl2::load(path, var_args, false, diags)?;
        let vars = template::hcl2::variables(&l, diags);
        (l.template, vars)
    } else {
        let t = load(path, var_args, ui, diags)?;
        let vars = bind(&t, var_args, &engine, diags);
        (t, vars)
    };
    ui.redactor = vars.redactor.clone();
    log::set_redactor(&ui.redactor);
    let prepared = if template::hcl2::is_hcl2(path) {
        let hsel = hcl2_selection(&t, sel, diags)?;
        prepare(&t, &vars, &hsel, &engine, clock, diags)
    } else {
        prepare(&t, &vars, sel, &engine, clock, diags)
    };
    (!diags.has_errors()).then(|| Loaded {
        prepared,
        vars,
        template_dir: t.template_dir.clone(),
    })
}

/// HCL2 names builds `TYPE.NAME` in -only/-except (the bare NAME works too); the model names
/// them NAME. A name that is neither is an error that lists the builds as HCL2 names them.
fn hcl2_selection(t: &Template, sel: &Selection, diags: &mut Diagnostics) -> Option<Selection> {
    let full: Vec<String> = t
        .builders
        .iter()
        .map(|b| format!("{}.{}", b.kind, b.name))
        .collect();
    let mut ok = true;
    let mut map = |flag: &str, names: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            match t
                .builders
                .iter()
                .zip(&full)
                .find(|(b, f)| *f == n || b.name == *n)
            {
                Some((b, _)) => out.push(b.name.clone()),
                None => {
                    ok = false;
                    diags.push(
                        Diagnostic::error(format!(
                            "-{flag} names `{n}`, which is not a build in this template"
                        ))
                        .help(format!("builds in this template: {}", full.join(", "))),
                    );
                }
            }
        }
        out
    };
    let only = map("only", &sel.only);
    let except = map("except", &sel.except);
    ok.then_some(Selection {
        only,
        except,
        strict: sel.strict,
    })
}

fn validate(
    path: &str,
    syntax_only: bool,
    var_args: &[VarArg],
    sel: &Selection,
    mut ui: Ui,
) -> Exit {
    let mut diags = Diagnostics::default();
    if syntax_only {
        load(path, var_args, &ui, &mut diags);
    } else {
        load_and_prepare(path, var_args, sel, &mut ui, &mut diags);
    }
    let exit = report(&ui, &diags);
    if exit == Exit::Success {
        ui.say(if syntax_only {
            "Syntax-only check passed. Everything looks okay."
        } else {
            "Template validated successfully."
        });
    }
    exit
}

fn inspect(path: &str, var_args: &[VarArg], mut ui: Ui) -> Exit {
    let mut diags = Diagnostics::default();
    let loaded = if template::hcl2::is_hcl2(path) {
        // HCL2 evaluates its variables: their sensitive values are masked from here on.
        template::hcl2::load(path, var_args, true, &mut diags).map(|l| {
            ui.redactor = template::hcl2::variables(&l, &mut diags).redactor;
            l.template
        })
    } else {
        load(path, var_args, &ui, &mut diags)
    };
    let Some(t) = loaded else {
        return report(&ui, &diags);
    };
    if diags.has_errors() {
        return report(&ui, &diags);
    }
    // Sensitive defaults are shown as <sensitive>; mask them anywhere else they appear too.
    for v in &t.variables {
        if t.sensitive.iter().any(|s| s.name == v.name) {
            if let Some(d) = &v.default {
                ui.redactor.add(d);
            }
        }
    }
    log::set_redactor(&ui.redactor);
    ui.diagnostics(&diags);
    for line in template::inspect::inspect(&t) {
        match line {
            template::inspect::Line::Say(s) => ui.say(&s),
            template::inspect::Line::Record(kind, data) => {
                let refs: Vec<&str> = data.iter().map(String::as_str).collect();
                ui.record("", kind, &refs);
            }
        }
    }
    Exit::Success
}

/// `imgbuild hcl2_upgrade`: the JSON template's HCL2 twin, written next to it.
fn hcl2_upgrade(path: &str, output: Option<std::path::PathBuf>, ui: &Ui) -> Exit {
    let mut diags = Diagnostics::default();
    if template::hcl2::is_hcl2(path) {
        diags.push(Diagnostic::error(format!(
            "`{path}` is already an HCL2 template"
        )));
        return report(ui, &diags);
    }
    let Some(t) = load(path, &[], ui, &mut diags) else {
        return report(ui, &diags);
    };
    if diags.has_errors() {
        return report(ui, &diags);
    }
    let out = output.unwrap_or_else(|| {
        std::path::PathBuf::from(format!(
            "{}.pkr.hcl",
            path.strip_suffix(".json").unwrap_or(path)
        ))
    });
    match std::fs::write(&out, template::hcl2::upgrade::upgrade(&t)) {
        Ok(()) => {
            ui.say(&format!("Successfully created {}", out.display()));
            Exit::Success
        }
        Err(e) => {
            diags.push(Diagnostic::error(format!(
                "cannot write `{}`: {e}",
                out.display()
            )));
            report(ui, &diags)
        }
    }
}

/// Tells, in one line, that earlier runs did not finish or left resources behind.
fn note_unfinished_runs(ui: &Ui) {
    let dir = ledger::default_journal_dir();
    let n = cleanup::unfinished_runs(&dir);
    if n > 0 {
        ui.error(&format!(
            "==> Note: {n} earlier run(s) did not finish or left resources behind (journals in {}): see them with `imgbuild cleanup --dry-run`",
            dir.display()
        ));
    }
}

/// HCL2 `amazon-parameterstore` data sources: a first load finds the parameters and the
/// builder's AWS access, they are fetched, and the build's own load puts their values in place.
fn fetch_parameters(
    path: &str,
    var_args: &[VarArg],
    sel: &Selection,
    ui: &mut Ui,
) -> Result<(), Exit> {
    if !template::hcl2::is_hcl2(path) {
        return Ok(());
    }
    let mut diags = Diagnostics::default();
    let Some(l) = template::hcl2::load(path, var_args, false, &mut diags) else {
        return Err(report(ui, &diags));
    };
    if l.params.is_empty() {
        return Ok(());
    }
    let Some(first) = load_and_prepare(path, var_args, sel, ui, &mut diags) else {
        return Err(report(ui, &diags));
    };
    let access = first.prepared.builds.iter().find_map(|b| match &b.builder {
        builder::BuilderConfig::AmazonEbs(c) => Some(c.access.clone()),
        _ => None,
    });
    match datasource::fetch(&l.params, access.as_ref()) {
        Ok(v) => {
            template::hcl2::params::set_fetched(v);
            Ok(())
        }
        Err(d) => {
            ui.error(&d.render(&ui.redactor, ui.color));
            Err(Exit::BuildFailed)
        }
    }
}

fn build(
    path: &str,
    var_args: &[VarArg],
    sel: &Selection,
    opts: &orchestrator::Options,
    mut ui: Ui,
) -> Exit {
    if let Err(exit) = fetch_parameters(path, var_args, sel, &mut ui) {
        return exit;
    }
    let mut diags = Diagnostics::default();
    let Some(loaded) = load_and_prepare(path, var_args, sel, &mut ui, &mut diags) else {
        return report(&ui, &diags);
    };
    ui.diagnostics(&diags);
    note_unfinished_runs(&ui);
    let inputs = orchestrator::Inputs {
        user: &loaded.vars.values,
        template_dir: &loaded.template_dir,
        sensitive: &loaded.vars.sensitive,
    };
    match orchestrator::run(&loaded.prepared, &inputs, opts, &ui) {
        Ok(()) => Exit::Success,
        Err(e) => {
            let exit = e.exit();
            match &e {
                Error::Template(d) => {
                    report(&ui, d);
                }
                other => {
                    ui.error(&Diagnostic::error(other.to_string()).render(&ui.redactor, ui.color))
                }
            }
            exit
        }
    }
}
