//! All terminal output. Human text goes to stdout, problems to stderr; with `-machine-readable`,
//! everything is Packer's line format on stdout. Every line passes through the redactor.
//!
//! Human lines are rendered by [`render`]: with `-timestamp-ui` each line gets Packer's RFC 3339
//! prefix (`2024-08-06T22:13:10Z: ==> web: ...`), and on a terminal with color the prefix of each
//! build (`==> web:`, `    web:`, `--> web:`) gets a color of its own and errors are red. When
//! stdout is a terminal, a build's waits show a spinner with the elapsed time and transfers a
//! byte progress bar ([`Activity`]), drawn by indicatif below the lines; when it is not, lines
//! are plain (no spinners, no escape codes), exactly as pipelines read them.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::redact::Redactor;
use crate::template::diag::{Diagnostics, Severity};

#[derive(Debug, Clone, Default)]
pub struct Ui {
    pub machine: bool,
    /// Color on stderr (only when it is a terminal, color was not turned off and NO_COLOR is unset).
    pub color: bool,
    pub redactor: Redactor,
    /// `-timestamp-ui`: an RFC 3339 time before every human line, on stdout and stderr.
    pub timestamps: bool,
    /// Color on stdout (a terminal, color not turned off, NO_COLOR unset).
    pub out_color: bool,
    /// Spinners and progress bars (stdout is a terminal).
    live: Option<Live>,
    /// The builds' names in template order: each prefix gets the color of its position.
    builds: Arc<Vec<String>>,
}

/// What a line is, for its color.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A status line (`==> build: ...`).
    Say,
    /// A line of a command's output (`    build: ...`).
    Message,
    /// A problem (stderr).
    Error,
}

/// Packer's colors for the builds of a template, in order (then again from the first).
const PALETTE: [&str; 5] = ["32", "36", "35", "33", "34"];
const RED: &str = "31";
const RESET: &str = "\x1b[0m";

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Ui {
    pub fn new(machine: bool, color_flag: bool) -> Ui {
        let wanted = color_flag && !machine && !no_color_env();
        Ui {
            machine,
            color: wanted && std::io::stderr().is_terminal(),
            out_color: wanted && std::io::stdout().is_terminal(),
            ..Ui::default()
        }
    }

    /// `-timestamp-ui` (human output only: machine-readable lines have their own timestamp).
    pub fn with_timestamps(mut self, on: bool) -> Ui {
        self.timestamps = on && !self.machine;
        self
    }

    /// Spinners and progress bars, when stdout is a terminal that can draw them (not
    /// `TERM=dumb`) and logs do not go to the same terminal (they would tear the bars).
    pub fn with_live(mut self) -> Ui {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if !self.machine
            && std::io::stdout().is_terminal()
            && !dumb
            && !crate::log::writes_to_terminal()
        {
            self.live = Some(Live::new());
        }
        self
    }

    /// True when spinners and bars are drawn.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The builds of the run, in template order (for the colors of their prefixes).
    pub fn set_builds(&mut self, names: Vec<String>) {
        self.builds = Arc::new(names);
    }

    /// The color (ANSI SGR code) of a build's prefix.
    fn build_color(&self, name: &str) -> &'static str {
        let i = self.builds.iter().position(|b| b == name).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    /// `name` in its build's color (when stdout has color).
    pub fn paint_build(&self, name: &str, shown: &str) -> String {
        if self.out_color {
            format!("\x1b[{}m{shown}{RESET}", self.build_color(name))
        } else {
            shown.to_string()
        }
    }

    fn stamp(&self) -> Option<String> {
        self.timestamps
            .then(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    /// Writes a human line (already masked) to stdout.
    fn out_line(&self, text: &str, kind: Kind) {
        tracing::debug!(target: "imgbuild::ui", "{}", text.trim_start_matches('\n'));
        let line = render(
            text,
            kind,
            &self.builds,
            self.out_color,
            self.stamp().as_deref(),
        );
        match &self.live {
            Some(l) => l.println(&line),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
            }
        }
    }

    /// A line of normal output (stdout).
    pub fn say(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.machine {
            self.record("", "ui", &["say", &text]);
        } else {
            self.out_line(&text, Kind::Say);
        }
    }

    /// A line of a command's output (stdout; `ui,message` records when machine-readable), as
    /// Packer prints what a script writes.
    pub fn message(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.machine {
            self.record("", "ui", &["message", &text]);
        } else {
            self.out_line(&text, Kind::Message);
        }
    }

    /// A machine-readable record (only printed with `-machine-readable`).
    pub fn record(&self, target: &str, kind: &str, data: &[&str]) {
        if !self.machine {
            return;
        }
        let data: Vec<String> = data.iter().map(|d| self.redactor.redact(d)).collect();
        let refs: Vec<&str> = data.iter().map(String::as_str).collect();
        let line = machine_line(chrono::Utc::now().timestamp(), target, kind, &refs);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// A problem (stderr; `ui,error` records when machine-readable).
    pub fn error(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.machine {
            self.record("", "ui", &["error", &text]);
        } else {
            tracing::debug!(target: "imgbuild::ui", "{}", text.trim_matches('\n'));
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let line = render(
                text,
                Kind::Error,
                &self.builds,
                self.color,
                self.stamp().as_deref(),
            );
            let write = || {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            };
            match &self.live {
                Some(l) => l.suspend(write),
                None => write(),
            }
        }
    }

    /// A spinner with the elapsed time for a wait of `build` (nothing when stdout is not a
    /// terminal). It disappears when the [`Activity`] is dropped.
    pub fn spinner(&self, build: &str, what: &str) -> Activity {
        let Some(live) = &self.live else {
            return Activity::none();
        };
        let style = if self.out_color {
            "{spinner:.cyan} {prefix} {wide_msg} {elapsed:>4}"
        } else {
            "{spinner} {prefix} {wide_msg} {elapsed:>4}"
        };
        self.start(live, style, None, build, what)
    }

    /// A byte progress bar for a transfer of `build` (nothing when stdout is not a terminal);
    /// set its length and position through [`Activity::status`].
    pub fn bytes(&self, build: &str, what: &str) -> Activity {
        let Some(live) = &self.live else {
            return Activity::none();
        };
        let style = if self.out_color {
            "{prefix} {wide_msg} [{bar:24.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed:>4}"
        } else {
            "{prefix} {wide_msg} [{bar:24}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed:>4}"
        };
        self.start(live, style, Some(0), build, what)
    }

    fn start(
        &self,
        live: &Live,
        style: &str,
        length: Option<u64>,
        build: &str,
        what: &str,
    ) -> Activity {
        // Into the MultiProgress before anything is set: a bar draws on its own target (stderr)
        // until then, and that frame would stay on the screen.
        let bar = live.mp.add(ProgressBar::with_draw_target(
            length,
            ProgressDrawTarget::hidden(),
        ));
        if let Ok(s) = ProgressStyle::with_template(style) {
            bar.set_style(s.progress_chars("=> "));
        }
        bar.set_prefix(self.paint_build(build, &format!("    {build}:")));
        bar.set_message(self.redactor.redact(what));
        bar.enable_steady_tick(Duration::from_millis(120));
        Activity {
            bar: Some(bar),
            mp: Some(live.mp.clone()),
            redactor: self.redactor.clone(),
        }
    }

    /// Hides spinners and bars while the user answers a prompt (lines printed meanwhile go
    /// straight to stdout); they come back when the [`Hold`] is dropped.
    pub fn hold(&self) -> Hold {
        if let Some(l) = &self.live {
            l.hold(true);
        }
        Hold(self.live.clone())
    }

    /// Ends spinners and bars for good (before the final summary, so that it is printed as
    /// plain lines with nothing drawn below them).
    pub fn end_live(&self) {
        if let Some(l) = &self.live {
            l.hold(true);
        }
    }

    /// Prints every diagnostic, warnings first, each rendered with its location.
    /// Within each severity, problems are in file order (files in the order they were met), so
    /// they read top to bottom like the template.
    pub fn diagnostics(&self, diags: &Diagnostics) {
        let mut files: Vec<&str> = Vec::new();
        for d in &diags.items {
            if let Some(f) = &d.file {
                if !files.contains(&f.name.as_str()) {
                    files.push(&f.name);
                }
            }
        }
        let mut ordered: Vec<_> = diags.items.iter().collect();
        ordered.sort_by_key(|d| {
            let file = d
                .file
                .as_ref()
                .and_then(|f| files.iter().position(|n| *n == f.name))
                .unwrap_or(usize::MAX);
            (
                d.severity == Severity::Error,
                file,
                d.span.map_or(usize::MAX, |s| s.start),
            )
        });
        for d in ordered {
            self.error(&d.render(&self.redactor, self.color));
        }
    }
}

/// Packer's machine-readable line: `timestamp,target,type,data...`, with commas in data written
/// as `%!(PACKER_COMMA)` and newlines as `\n`.
pub fn machine_line(timestamp: i64, target: &str, kind: &str, data: &[&str]) -> String {
    let mut line = format!("{timestamp},{},{}", escape(target), escape(kind));
    for d in data {
        line.push(',');
        line.push_str(&escape(d));
    }
    line
}

fn escape(s: &str) -> String {
    s.replace(',', "%!(PACKER_COMMA)")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// Renders a human line: each line of `text` with its build's colored prefix (and red when it
/// is an error), and the timestamp before every line that is not empty.
pub fn render(
    text: &str,
    kind: Kind,
    builds: &[String],
    color: bool,
    stamp: Option<&str>,
) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.is_empty() {
            continue;
        }
        if let Some(s) = stamp {
            out.push_str(s);
            out.push_str(": ");
        }
        if !color || line.contains('\x1b') {
            out.push_str(line);
            continue;
        }
        match build_prefix(line, builds) {
            Some((len, index)) => {
                let (head, rest) = line.split_at(len);
                let bold = if head.starts_with("==>") { "1;" } else { "" };
                out.push_str(&format!(
                    "\x1b[{bold}{}m{head}{RESET}",
                    PALETTE[index % PALETTE.len()]
                ));
                if kind == Kind::Error && !rest.is_empty() {
                    out.push_str(&format!("\x1b[{RED}m{rest}{RESET}"));
                } else {
                    out.push_str(rest);
                }
            }
            None if kind == Kind::Error => out.push_str(&format!("\x1b[{RED}m{line}{RESET}")),
            None if line.starts_with("==> ") => out.push_str(&format!("\x1b[1m{line}{RESET}")),
            None => out.push_str(line),
        }
    }
    out
}

/// The length of a build's prefix at the start of `line` (`==> web:`, `    web:`, `--> web:`,
/// `==> web (manifest):`) and the build's position, when the line has one.
fn build_prefix(line: &str, builds: &[String]) -> Option<(usize, usize)> {
    let marker = ["==> ", "--> ", "    "]
        .into_iter()
        .find(|m| line.starts_with(m))?;
    let rest = &line[marker.len()..];
    let (index, name) = builds
        .iter()
        .enumerate()
        .filter(|(_, b)| {
            rest.strip_prefix(b.as_str())
                .is_some_and(|r| r.starts_with(':') || r.starts_with(" ("))
        })
        .max_by_key(|(_, b)| b.len())?;
    let after = &rest[name.len()..];
    let colon = after.find(':')?;
    Some((marker.len() + name.len() + colon + 1, index))
}

/// The drawing of spinners and bars on stdout.
#[derive(Clone)]
struct Live {
    mp: MultiProgress,
    /// A prompt is shown: bars are hidden and lines go straight to stdout.
    held: Arc<AtomicBool>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    fn new() -> Live {
        Live {
            mp: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            held: Arc::new(AtomicBool::new(false)),
        }
    }

    fn println(&self, line: &str) {
        if self.held.load(Ordering::SeqCst) || self.mp.println(line).is_err() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.held.load(Ordering::SeqCst) {
            f()
        } else {
            self.mp.suspend(f)
        }
    }

    fn hold(&self, on: bool) {
        if on {
            let _ = self.mp.clear();
            self.mp.set_draw_target(ProgressDrawTarget::hidden());
            self.held.store(true, Ordering::SeqCst);
        } else {
            self.held.store(false, Ordering::SeqCst);
            self.mp.set_draw_target(ProgressDrawTarget::stdout());
        }
    }
}

/// Spinners and bars are hidden while this lives (see [`Ui::hold`]).
pub struct Hold(Option<Live>);

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(l) = &self.0 {
            l.hold(false);
        }
    }
}

/// A spinner or progress bar on the terminal, removed when dropped; does nothing when stdout is
/// not a terminal.
pub struct Activity {
    bar: Option<ProgressBar>,
    mp: Option<MultiProgress>,
    redactor: Redactor,
}

impl Activity {
    /// An activity that shows nothing.
    pub fn none() -> Activity {
        Activity {
            bar: None,
            mp: None,
            redactor: Redactor::default(),
        }
    }

    /// True when something is drawn (stdout is a terminal).
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// A handle that updates this activity from elsewhere (another thread, a callback).
    pub fn status(&self) -> Status {
        Status {
            bar: self.bar.clone(),
            redactor: self.redactor.clone(),
        }
    }

    pub fn set_message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.set_message(self.redactor.redact(text));
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Some(mp) = &self.mp {
                mp.remove(&b);
            }
        }
    }
}

/// Updates an [`Activity`] (cheap to clone, `Send`).
#[derive(Clone)]
pub struct Status {
    bar: Option<ProgressBar>,
    redactor: Redactor,
}

impl Status {
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    pub fn set_message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.set_message(self.redactor.redact(text));
        }
    }

    /// Bytes done and, when known, the total.
    pub fn set_bytes(&self, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            } else if b.length().unwrap_or(0) < done {
                b.set_length(done);
            }
            b.set_position(done);
        }
    }
}

tokio::task_local! {
    /// The output of the build whose task is running, for code deep inside a build that has no
    /// `Ui` at hand (the waits on EC2).
    static CURRENT: (Ui, String);
}

/// Runs `fut` as the work of `build`: [`current_spinner`] shows its spinners under that build.
pub async fn scoped<F: Future>(ui: Ui, build: String, fut: F) -> F::Output {
    CURRENT.scope((ui, build), fut).await
}

/// A spinner of the current build (see [`scoped`]); nothing outside a build or without a
/// terminal.
pub fn current_spinner(what: &str) -> Activity {
    CURRENT
        .try_with(|(ui, build)| ui.spinner(build, what))
        .unwrap_or_else(|_| Activity::none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_lines_escape_like_packer() {
        assert_eq!(
            machine_line(
                1539967803,
                "amazon-ebs",
                "artifact",
                &["0", "id", "eu-west-1:ami-1,us-east-1:ami-2"]
            ),
            "1539967803,amazon-ebs,artifact,0,id,eu-west-1:ami-1%!(PACKER_COMMA)us-east-1:ami-2"
        );
        assert_eq!(
            machine_line(1, "", "ui", &["say", "a\nb\r"]),
            "1,,ui,say,a\\nb\\r"
        );
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_rendering_is_the_text_and_timestamps_prefix_every_line() {
        let b = names(&["web", "db"]);
        assert_eq!(
            render("==> web: Launching", Kind::Say, &b, false, None),
            "==> web: Launching"
        );
        assert_eq!(
            render(
                "\n==> Builds finished.\n--> web: ok",
                Kind::Say,
                &b,
                false,
                Some("2024-08-06T22:13:10Z")
            ),
            "\n2024-08-06T22:13:10Z: ==> Builds finished.\n2024-08-06T22:13:10Z: --> web: ok"
        );
        assert!(!render("==> db: x", Kind::Error, &b, false, None).contains('\x1b'));
    }

    #[test]
    fn colored_rendering_colors_each_builds_prefix_and_errors() {
        let b = names(&["web", "web-2", "db"]);
        assert_eq!(
            render("==> web: Launching", Kind::Say, &b, true, None),
            "\x1b[1;32m==> web:\x1b[0m Launching"
        );
        // The longest name that matches wins; output lines are not bold.
        assert_eq!(
            render("    web-2: hello: world", Kind::Message, &b, true, None),
            "\x1b[36m    web-2:\x1b[0m hello: world"
        );
        assert_eq!(
            render("==> db (manifest): wrote", Kind::Say, &b, true, None),
            "\x1b[1;35m==> db (manifest):\x1b[0m wrote"
        );
        assert_eq!(
            render("==> db: boom", Kind::Error, &b, true, Some("T")),
            "T: \x1b[1;35m==> db:\x1b[0m\x1b[31m boom\x1b[0m"
        );
        // Not a build: bold status, red error, plain otherwise; never colored twice.
        assert_eq!(
            render("==> Builds finished.", Kind::Say, &b, true, None),
            "\x1b[1m==> Builds finished.\x1b[0m"
        );
        assert_eq!(
            render("error: x", Kind::Error, &b, true, None),
            "\x1b[31merror: x\x1b[0m"
        );
        assert_eq!(
            render("    webby: x", Kind::Say, &b, true, None),
            "    webby: x"
        );
        assert_eq!(render("\x1b[1mx", Kind::Error, &b, true, None), "\x1b[1mx");
    }

    #[test]
    fn without_a_terminal_activities_draw_nothing() {
        let ui = Ui::new(false, true).with_live();
        // cargo test's stdout is not a terminal here, or is captured.
        if !ui.is_live() {
            let a = ui.spinner("web", "waiting");
            assert!(!a.is_live());
            a.status().set_bytes(10, Some(20));
            assert!(!current_spinner("x").is_live());
        }
    }
}
