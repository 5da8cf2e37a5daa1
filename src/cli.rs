//! Command-line interface. Packer users type `-var k=v`, `-only=a,b`, `-color=false`: those
//! single-dash long flags are rewritten to clap's `--` form before parsing, so both spellings work.

use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use crate::interact::OnError;
use crate::template::variables::{parse_var_pair, VarArg};

#[derive(Debug, Parser)]
#[command(
    name = "imgbuild",
    version,
    about = "Build Amazon Machine Images from Packer JSON templates",
    long_about = "Build Amazon Machine Images from Packer JSON templates: fast, leak-free, pipeline-ready.\n\n\
                  Packer's single-dash flags work as typed (-var k=v, -var-file=f.json, -only=a,b, -color=false).",
    after_help = "Exit codes: 0 success; 1 build failed, everything cleaned up; 2 usage or template error; \
                  3 build failed or interrupted and resources were left behind.",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the images a template describes
    Build(BuildArgs),
    /// Check that a template is valid (all problems at once; exit 0 valid, 2 invalid)
    Validate(ValidateArgs),
    /// Show the variables, builders, provisioners and post-processors of a template
    Inspect(InspectArgs),
    /// Remove what interrupted or crashed builds left behind (from the run journals and the
    /// imgbuild:run-id tags)
    #[command(
        long_about = "Remove what interrupted or crashed builds left behind.\n\n\
            Two sources cover each other: the run journals on disk (IMGBUILD_JOURNAL_DIR, else \
            $XDG_STATE_HOME/imgbuild/journal, else ~/.local/state/imgbuild/journal; or --journal) \
            and the imgbuild:run-id tags on instances, volumes, snapshots, AMIs, key pairs and \
            security groups in the regions the journals name, --region, or --all-regions. A build \
            that still runs is never touched, nor a finished build's AMIs.",
        after_help = "Exit codes: 0 nothing left; 2 usage; 3 something could not be removed (listed)."
    )]
    Cleanup(CleanupArgs),
    /// Rewrite the deprecated options of a template as `packer fix` does (printed, or in place
    /// with -w); untouched parts keep their bytes
    Fix(FixArgs),
    /// Print a shell completion script (README "Shell completions" says how to install it)
    Completions(CompletionsArgs),
    /// Write the HCL2 twin of a JSON template (TEMPLATE.pkr.hcl next to it, or -output-file)
    #[command(name = "hcl2_upgrade")]
    Hcl2Upgrade(UpgradeArgs),
    /// Print the version
    Version,
}

#[derive(Debug, Args)]
pub struct FixArgs {
    /// Write the fixed template back to the file (atomically) instead of printing it
    #[arg(short = 'w', long = "write")]
    pub write: bool,
    /// The template (a file, or - for standard input)
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub template: String,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Where to write the HCL2 template (default: the template's path with .json replaced by
    /// .pkr.hcl)
    #[arg(long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// The JSON template
    pub template: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells imgbuild writes completion scripts for (`completions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct VarArgs {
    /// Set a template variable (repeatable); later -var/-var-file win
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub var: Vec<String>,
    /// JSON file of variable values (repeatable); later -var/-var-file win
    #[arg(long = "var-file", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub var_file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only these builds (comma-separated build names)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// All builds except these (comma-separated build names)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub except: Vec<String>,
    /// What Packer 1.6.6 accepts with a warning (an undeclared variable, a -only/-except name
    /// that is no build) is an error
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Packer's machine-readable line output (timestamp,target,type,data...)
    #[arg(long)]
    pub machine_readable: bool,
    /// Color output (-color=false to disable)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub color: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Deregister an existing AMI of the same name first (force_deregister)
    #[arg(long)]
    pub force: bool,
    /// What to do when a build fails
    #[arg(long, value_enum, default_value_t = OnError::Cleanup)]
    pub on_error: OnError,
    /// How many builds run at once (0 = all)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub parallel_builds: usize,
    /// Prefix every output line with an RFC 3339 timestamp
    #[arg(long)]
    pub timestamp_ui: bool,
    /// One build at a time; on a terminal, pause before each step; keep the temporary private
    /// key in ec2_<build>.pem (0600) in the current directory
    #[arg(long)]
    pub debug: bool,
    /// Whole-build deadline (Go duration: 90m, 1h30m); with the builder's build_timeout, the
    /// smaller wins. On expiry the build is cancelled and what it created is removed
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    /// Reuse an existing AMI when nothing that determines the image changed (the amazon-ebs
    /// builder's reuse_unchanged for every build): launch nothing, report that AMI, run the
    /// post-processors
    #[arg(long)]
    pub skip_unchanged: bool,
    /// The template (a file, or - for standard input)
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub template: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only check syntax and structure; do not check configuration or variables
    #[arg(long)]
    pub syntax_only: bool,
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The template (a file, or - for standard input)
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub template: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Variables (HCL2 templates evaluate them; a JSON template's inspect shows defaults)
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The template (a file, or - for standard input)
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub template: String,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Only the runs of this journal file (repeatable); default: every journal in the journal
    /// directory
    #[arg(long = "journal", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub journals: Vec<PathBuf>,
    /// Only this run (the imgbuild:run-id tag, the journal's run id)
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Look for tagged resources in this region too (repeatable)
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Look for tagged resources in every region (DescribeRegions)
    #[arg(long)]
    pub all_regions: bool,
    /// Resources found by tags alone (no journal on this machine) are removed only when their
    /// run is at least this old, so that a build running elsewhere is never touched
    #[arg(long, default_value = crate::cleanup::DEFAULT_OLDER_THAN, value_name = "DURATION",
          value_parser = parse_older_than)]
    pub older_than: std::time::Duration,
    /// List what would be removed, in a table, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// EC2 endpoint for the tag search (as custom_endpoint_ec2; journals carry their own)
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("{e} (e.g. 90m, 1h30m, 45s)"))
}

fn parse_older_than(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("{e} (e.g. 2h, 90m, 0s)"))
}

/// Long flags Packer users type with one dash.
pub const PACKER_FLAGS: &[&str] = &[
    "var",
    "var-file",
    "only",
    "except",
    "strict",
    "force",
    "on-error",
    "parallel-builds",
    "machine-readable",
    "timestamp-ui",
    "color",
    "debug",
    "timeout",
    "skip-unchanged",
    "syntax-only",
    "journal",
    "run-id",
    "region",
    "all-regions",
    "older-than",
    "dry-run",
    "endpoint-url",
    "output-file",
];

/// Rewrites `-var` to `--var`, `-only=a` to `--only=a`, and so on. `-` alone (stdin) and
/// everything after `--` stay as they are.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest || a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        if let Some(body) = a.strip_prefix('-') {
            if !body.starts_with('-') {
                let name = body.split('=').next().unwrap_or("");
                if PACKER_FLAGS.contains(&name) {
                    out.push(format!("-{a}"));
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

/// A parsed command line: the command, and the `-var`/`-var-file` values in command-line order.
#[derive(Debug)]
pub struct Invocation {
    pub command: Command,
    pub var_args: Vec<VarArg>,
}

/// Parses the command line (program name first). Errors are clap's, already formatted.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Invocation, clap::Error> {
    let argv = normalize(args);
    let matches = Cli::command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let var_args = match matches.subcommand() {
        Some(("build" | "validate" | "inspect", sub)) => ordered_vars(sub)?,
        _ => Vec::new(),
    };
    Ok(Invocation {
        command: cli.command,
        var_args,
    })
}

/// `-var` and `-var-file` interleaved as they appeared, so "later wins" holds across both.
fn ordered_vars(m: &ArgMatches) -> Result<Vec<VarArg>, clap::Error> {
    let mut items: Vec<(usize, VarArg)> = Vec::new();
    if let Ok(Some(vals)) = m.try_get_many::<String>("var") {
        for (v, i) in vals.zip(m.indices_of("var").into_iter().flatten()) {
            let arg = parse_var_pair(v).map_err(|msg| {
                Cli::command().error(clap::error::ErrorKind::ValueValidation, msg)
            })?;
            items.push((i, arg));
        }
    }
    if let (Ok(Some(vals)), Some(idx)) = (
        m.try_get_many::<PathBuf>("var_file"),
        m.indices_of("var_file"),
    ) {
        for (v, i) in vals.zip(idx) {
            items.push((i, VarArg::File(v.clone())));
        }
    }
    items.sort_by_key(|(i, _)| *i);
    Ok(items.into_iter().map(|(_, a)| a).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("imgbuild".to_string())
            .chain(s.split_whitespace().map(String::from))
            .collect()
    }

    #[test]
    fn packer_single_dash_flags_are_accepted() {
        let inv = parse(argv(
            "build -var a=1 -var-file=v.json --var b=x=y -only=web,db -except x -force -on-error=abort \
             -parallel-builds=2 -machine-readable -timestamp-ui -color=false -debug -timeout=1h30m t.json",
        ))
        .unwrap();
        let Command::Build(b) = inv.command else {
            panic!("not build")
        };
        assert_eq!(b.select.only, vec!["web", "db"]);
        assert_eq!(b.select.except, vec!["x"]);
        assert!(b.force && b.debug && b.timestamp_ui && b.output.machine_readable);
        assert!(!b.output.color);
        assert_eq!(b.on_error, OnError::Abort);
        assert_eq!(b.parallel_builds, 2);
        assert_eq!(b.timeout, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(b.template, "t.json");
        assert_eq!(
            inv.var_args,
            vec![
                VarArg::Pair {
                    key: "a".into(),
                    value: "1".into()
                },
                VarArg::File("v.json".into()),
                VarArg::Pair {
                    key: "b".into(),
                    value: "x=y".into()
                },
            ]
        );
    }

    #[test]
    fn cleanup_flags_with_one_dash_or_two() {
        let inv = parse(argv(
            "cleanup -journal a.jsonl --journal b.jsonl -run-id r1 -region us-east-1 --region=us-west-2 \
             -older-than=90m -dry-run -machine-readable -endpoint-url http://127.0.0.1:5000",
        ))
        .unwrap();
        let Command::Cleanup(c) = inv.command else {
            panic!("not cleanup")
        };
        assert_eq!(
            c.journals,
            vec![PathBuf::from("a.jsonl"), PathBuf::from("b.jsonl")]
        );
        assert_eq!(c.run_id.as_deref(), Some("r1"));
        assert_eq!(c.regions, vec!["us-east-1", "us-west-2"]);
        assert_eq!(c.older_than, std::time::Duration::from_secs(5400));
        assert!(c.dry_run && c.output.machine_readable && !c.all_regions);
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let Command::Cleanup(c) = parse(argv("cleanup")).unwrap().command else {
            panic!()
        };
        assert_eq!(c.older_than, std::time::Duration::from_secs(7200));
        let e = parse(argv("cleanup -older-than soon")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("e.g. 2h"), "{e}");
    }

    #[test]
    fn stdin_template_and_syntax_only() {
        let inv = parse(argv("validate -syntax-only -")).unwrap();
        let Command::Validate(v) = inv.command else {
            panic!()
        };
        assert!(v.syntax_only);
        assert_eq!(v.template, "-");
    }

    #[test]
    fn var_without_equals_is_a_usage_error() {
        let e = parse(argv("validate -var novalue t.json")).unwrap_err();
        assert!(e.to_string().contains("must be KEY=VALUE"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn unknown_flags_are_usage_errors() {
        let e = parse(argv("build -bogus t.json")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(argv("build -on-error=explode t.json")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(argv("build -timeout=soon t.json")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("e.g. 90m"), "{e}");
    }

    #[test]
    fn normalize_leaves_other_args_alone() {
        assert_eq!(normalize(argv("build - -- -var")), argv("build - -- -var"));
        assert_eq!(normalize(argv("-h")), argv("-h"));
    }
}
