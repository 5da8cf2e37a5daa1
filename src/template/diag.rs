//! Diagnostics: what is wrong, where (file, line:column, JSON path), with a caret under the
//! offending text and, where we can guess, what to do.
//!
//! Every problem of a template is collected into [`Diagnostics`] before anything is printed, so a
//! user fixes all of them in one round. Rendering goes through the redactor so that a secret
//! quoted in a template line never reaches the terminal.

use std::sync::Arc;

pub use super::location::JsonPath;
use super::location::Span;
use crate::redact::Redactor;

/// A file (or stdin) whose text diagnostics point into.
#[derive(Debug)]
pub struct SourceFile {
    /// The name as the user gave it (relative paths stay relative), or `<stdin>`.
    pub name: String,
    pub text: String,
    /// For several files read as one template (an HCL2 folder): where each starts in `text`
    /// and its name. Empty for one file.
    pub parts: Vec<(usize, String)>,
    /// For an HCL2 template: how the JSON model's paths read in HCL terms (model prefix, HCL
    /// prefix), set once the model is built. Unset for a JSON template.
    pub hcl_paths: std::sync::OnceLock<Vec<(String, String)>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            name: name.into(),
            text: text.into(),
            parts: Vec::new(),
            hcl_paths: std::sync::OnceLock::new(),
        })
    }

    /// Several files as one source (joined with a newline); diagnostics name the file a span
    /// is in and count lines within it.
    pub fn joined(name: &str, files: &[(String, String)]) -> Arc<SourceFile> {
        let mut text = String::new();
        let mut parts = Vec::new();
        for (n, t) in files {
            parts.push((text.len(), n.clone()));
            text.push_str(t);
            text.push('\n');
        }
        if files.len() < 2 {
            parts.clear();
        }
        Arc::new(SourceFile {
            name: files
                .first()
                .map_or(name, |f| if files.len() < 2 { f.0.as_str() } else { name })
                .to_string(),
            text,
            parts,
            hcl_paths: std::sync::OnceLock::new(),
        })
    }

    /// Whether the source is an HCL2 template (its paths read in HCL terms; its values are
    /// typed strictly, as Packer's HCL2 decoder types them).
    pub fn is_hcl(&self) -> bool {
        self.hcl_paths.get().is_some()
    }

    /// A path as the user reads it: a JSON path for a JSON template; for an HCL2 template, the
    /// block path (`source.amazon-ebs.web.ami_name`, `build.provisioner[1].inline`).
    pub fn shown_path(&self, path: &JsonPath) -> String {
        let s = path.to_string();
        let Some(table) = self.hcl_paths.get() else {
            return s;
        };
        let best = table
            .iter()
            .filter(|(model, _)| {
                s.strip_prefix(model.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(model, _)| model.len());
        match best {
            Some((model, hcl)) => format!("{hcl}{}", &s[model.len()..]),
            None => s,
        }
    }

    /// A decoder's message as the user reads it: HCL2 has arguments where JSON has keys.
    pub fn shown_message(&self, message: &str) -> String {
        if !self.is_hcl() {
            return message.to_string();
        }
        static NAMES: std::sync::LazyLock<[(regex::Regex, &str); 2]> =
            std::sync::LazyLock::new(|| {
                let re = |p: &str| regex::Regex::new(p).expect("a valid pattern");
                [
                    // The JSON model's `builder `NAME` (TYPE)` is the source `TYPE.NAME`.
                    (re(r"builder `([^`]*)` \(([^)]*)\)"), "source `$2.$1`"),
                    // `provisioner 2 (shell)` counts the model's provisioners; the path has
                    // the block's place.
                    (re(r"provisioner \d+ \(([^)]*)\)"), "provisioner `$1`"),
                ]
            });
        let mut m = message
            .replace("the required key `", "the required argument `")
            .replace("unknown key `", "unknown argument `");
        for (re, with) in NAMES.iter() {
            m = re.replace_all(&m, *with).into_owned();
        }
        m
    }

    /// A note as the user reads it: for an HCL2 template, the JSON examples of the decoders'
    /// help (`"generated": true`) written as HCL (`generated = true`).
    pub fn shown_note(&self, note: &str) -> String {
        if !self.is_hcl() {
            return note.to_string();
        }
        static KEY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r#""([A-Za-z_][A-Za-z0-9_]*)": "#).expect("a valid pattern")
        });
        if note == "help: give each builder a unique \"name\" (it defaults to its type)" {
            return "help: give one of the builds another name where it uses the source: source \"TYPE.NAME\" { name = \"other\" }".into();
        }
        KEY.replace_all(note, "$1 = ").into_owned()
    }

    /// Where the `i`th joined file starts.
    pub fn part_start(&self, i: usize) -> usize {
        self.parts.get(i).map_or(0, |p| p.0)
    }

    /// The file name and line to show for an offset at absolute line `line`.
    pub fn shown(&self, offset: usize, line: usize) -> (&str, usize) {
        match self.parts.iter().rev().find(|p| p.0 <= offset) {
            Some((start, name)) => (name, line - self.line_col(*start).0 + 1),
            None => (&self.name, line),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }
}

/// Longest excerpt line shown whole, in characters.
const EXCERPT_MAX: usize = 120;

/// The part of `line` to show for a span that starts `start` characters in and is `width`
/// characters wide: the whole line when it is short, else a window of [`EXCERPT_MAX`] characters
/// around the span with `...` where it was cut. Returns the excerpt, how many characters before
/// the span it keeps, and the span's width within it.
fn window(line: &str, start: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= EXCERPT_MAX {
        return (line.to_string(), start, width);
    }
    let lo = start.saturating_sub(EXCERPT_MAX / 3);
    let hi = (lo + EXCERPT_MAX).min(chars.len());
    let mut shown = String::new();
    if lo > 0 {
        shown.push_str("...");
    }
    shown.extend(&chars[lo..hi]);
    if hi < chars.len() {
        shown.push_str("...");
    }
    let width = width.min(hi.saturating_sub(start)).max(1);
    (shown, start - lo, width)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One located problem.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub file: Option<Arc<SourceFile>>,
    pub span: Option<Span>,
    pub path: Option<JsonPath>,
    /// Extra lines: what to do, or where the other half of a conflict is.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            span: None,
            path: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn at(mut self, file: &Arc<SourceFile>, span: Span) -> Diagnostic {
        self.file = Some(file.clone());
        self.span = Some(span);
        self
    }

    pub fn in_file(mut self, file: &Arc<SourceFile>) -> Diagnostic {
        self.file = Some(file.clone());
        self
    }

    pub fn path(mut self, path: &JsonPath) -> Diagnostic {
        if !path.is_root() {
            self.path = Some(path.clone());
        }
        self
    }

    pub fn help(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("help: {}", note.into()));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("note: {}", note.into()));
        self
    }

    /// The notes as the user reads them (`SourceFile::shown_note`); for an HCL2 template, never
    /// a suggestion of `type`: a block's type is its label.
    fn shown_notes(&self) -> Vec<String> {
        let Some(f) = &self.file else {
            return self.notes.clone();
        };
        self.notes
            .iter()
            .filter(|n| !(f.is_hcl() && n.as_str() == "help: did you mean `type`?"))
            .map(|n| f.shown_note(n))
            .collect()
    }

    /// Renders the diagnostic, masking secrets, in the style of rustc and just:
    ///
    /// ```text
    /// error: unknown key `ami_nmae` in builder `web_worker` (amazon-ebs)
    ///   --> images/web_worker.json:12:7 at builders[0].ami_nmae
    ///    |
    /// 12 |       "ami_nmae": "web-{{timestamp}}",
    ///    |       ^^^^^^^^^^
    ///    = help: did you mean `ami_name`?
    /// ```
    pub fn render(&self, redactor: &Redactor, color: bool) -> String {
        let (label, code) = match self.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        out.push_str(&paint(code, label));
        out.push_str(": ");
        let message = match &self.file {
            Some(f) => f.shown_message(&self.message),
            None => self.message.clone(),
        };
        out.push_str(&redactor.redact(&message));
        out.push('\n');
        let mut gutter = 1;
        match (&self.file, self.span) {
            (Some(file), Some(span)) => {
                let (line, col) = file.line_col(span.start);
                let (name, shown_line) = file.shown(span.start, line);
                gutter = shown_line.to_string().len();
                let pad = " ".repeat(gutter);
                out.push_str(&format!(
                    "{pad}{} {name}:{shown_line}:{col}",
                    paint("1;34", "-->"),
                ));
                if let Some(p) = &self.path {
                    out.push_str(&format!(" at {}", file.shown_path(p)));
                }
                out.push('\n');
                let text = file.line_text(line);
                let excerpt = redactor.redact(text);
                // The caret sits under the span's characters on this line; a span that goes on to
                // later lines is underlined to the end of this one.
                let line_start = file.text[..floor_boundary(&file.text, span.start)]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                let start_in_line = span.start - line_start;
                let end_in_line = (span.end.max(span.start + 1) - line_start).min(text.len());
                let before: Vec<char> = text
                    .get(..floor_boundary(text, start_in_line.min(text.len())))
                    .unwrap_or("")
                    .chars()
                    .collect();
                let width = text
                    .get(
                        floor_boundary(text, start_in_line.min(text.len()))
                            ..floor_boundary(text, end_in_line),
                    )
                    .map_or(1, |s| s.chars().count())
                    .max(1);
                // A long line (a minified template) is shown as a window around the span.
                let (shown, lead, width) = window(text, before.len(), width);
                let caret_pad: String = before[before.len() - lead..]
                    .iter()
                    .map(|&c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let caret_pad = if shown.starts_with("...") {
                    format!("   {caret_pad}")
                } else {
                    caret_pad
                };
                if excerpt == text {
                    let excerpt = shown;
                    out.push_str(&format!("{pad} {}\n", paint("1;34", "|")));
                    out.push_str(&format!(
                        "{} {} {excerpt}\n",
                        paint("1;34", &shown_line.to_string()),
                        paint("1;34", "|")
                    ));
                    out.push_str(&format!(
                        "{pad} {} {caret_pad}{}\n",
                        paint("1;34", "|"),
                        paint(code, &"^".repeat(width))
                    ));
                } else {
                    // The line holds a secret: show it masked, without a caret that would count
                    // the secret's characters.
                    let excerpt = window(&excerpt, 0, 1).0;
                    out.push_str(&format!("{pad} {}\n", paint("1;34", "|")));
                    out.push_str(&format!(
                        "{} {} {excerpt}\n",
                        paint("1;34", &shown_line.to_string()),
                        paint("1;34", "|")
                    ));
                }
            }
            (Some(file), None) => {
                out.push_str(&format!(" {} {}", paint("1;34", "-->"), file.name));
                if let Some(p) = &self.path {
                    out.push_str(&format!(" at {}", file.shown_path(p)));
                }
                out.push('\n');
            }
            (None, _) => {
                if let Some(p) = &self.path {
                    out.push_str(&format!(" {} at {p}\n", paint("1;34", "-->")));
                }
            }
        }
        for n in self.shown_notes() {
            out.push_str(&format!(
                "{} {} {}\n",
                " ".repeat(gutter),
                paint("1;34", "="),
                redactor.redact(&n)
            ));
        }
        out
    }
}

/// All problems found so far.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    /// `-strict`: what Packer accepts with a warning ([`Diagnostics::lenient`]) is an error.
    pub strict: bool,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Something Packer 1.6.6 accepts: a warning, or an error under `-strict`.
    pub fn lenient(&mut self, mut d: Diagnostic) {
        if self.strict {
            d.severity = Severity::Error;
            d = d.note("an error because of -strict (without it, a warning: Packer accepts this)");
        }
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&w, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    // Allow about one edit in three characters; "nmae" → "name" is two edits in four.
    let limit = (word.chars().count().max(c.chars().count()) / 3).max(2);
    (d <= limit).then_some(c)
}

pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            // A swap of two neighbours ("nmae") counts as one edit.
            let swap = if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                prev[j - 1]
            } else {
                usize::MAX
            };
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1).min(swap);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl2_paths_and_messages_read_in_hcl_terms_and_json_ones_do_not_change() {
        let json = SourceFile::new("t.json", "{}");
        let hcl = SourceFile::new("t.pkr.hcl", "");
        let table = vec![
            (
                "builders[0]".to_string(),
                "source.amazon-ebs.web".to_string(),
            ),
            (
                "post-processors[1]".to_string(),
                "build.post-processors[0]".to_string(),
            ),
            (
                "post-processors[1][0]".to_string(),
                "build.post-processors[0].post-processor[0]".to_string(),
            ),
        ];
        hcl.hcl_paths.set(table).expect("unset");
        let p = |s: &[&str], i: Option<usize>| {
            let mut p = JsonPath::root();
            for k in s {
                p = p.key(k);
            }
            i.map_or(p.clone(), |i| p.index(1).index(i))
        };
        let cases = [
            (
                p(&["builders"], None).index(0).key("ami_name"),
                "source.amazon-ebs.web.ami_name",
            ),
            (
                p(&["post-processors"], Some(0)).key("output"),
                "build.post-processors[0].post-processor[0].output",
            ),
            // `builders[0]` is no prefix of `builders[01]`-like keys, nor of other roots.
            (p(&["builders0"], None), "builders0"),
        ];
        for (path, want) in cases {
            assert_eq!(hcl.shown_path(&path), want);
            assert_eq!(json.shown_path(&path), path.to_string());
        }
        let m = "unknown key `x` in builder `web` (amazon-ebs); provisioner 2 (shell) is missing the required key `inline`";
        assert_eq!(
            hcl.shown_message(m),
            "unknown argument `x` in source `amazon-ebs.web`; provisioner `shell` is missing the required argument `inline`"
        );
        assert_eq!(json.shown_message(m), m);
        let n = r#"help: e.g. "source_ami_filter": {"owners": ["self"]}, or add "generated": true"#;
        assert_eq!(
            hcl.shown_note(n),
            r#"help: e.g. source_ami_filter = {owners = ["self"]}, or add generated = true"#
        );
        assert_eq!(json.shown_note(n), n);
        let dup = "help: give each builder a unique \"name\" (it defaults to its type)";
        assert!(hcl
            .shown_note(dup)
            .contains("source \"TYPE.NAME\" { name = \"other\" }"));
        assert_eq!(json.shown_note(dup), dup);
    }

    #[test]
    fn line_and_column_count_characters() {
        let f = SourceFile::new("t.json", "{\n  \"é\": 1,\n\t\"x\": 2\n}");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(4), (2, 3));
        let x = f.text.find("\"x\"").unwrap();
        assert_eq!(f.line_col(x), (3, 2));
    }

    #[test]
    fn renders_caret_under_span_with_path_and_help() {
        let text = "{\n  \"builders\": [{\"type\": \"amazon-ebs\", \"ami_nmae\": \"x\"}]\n}";
        let f = SourceFile::new("images/t.json", text);
        let start = text.find("\"ami_nmae\"").unwrap();
        let d = Diagnostic::error("unknown key `ami_nmae`")
            .at(&f, Span::new(start, start + 10))
            .path(&JsonPath::root().key("builders").index(0).key("ami_nmae"))
            .help("did you mean `ami_name`?");
        let out = d.render(&Redactor::default(), false);
        assert_eq!(
            out,
            "error: unknown key `ami_nmae`\n \
             --> images/t.json:2:39 at builders[0].ami_nmae\n  \
             |\n\
             2 |   \"builders\": [{\"type\": \"amazon-ebs\", \"ami_nmae\": \"x\"}]\n  \
             |                                       ^^^^^^^^^^\n  \
             = help: did you mean `ami_name`?\n"
        );
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_span() {
        let pad = "x".repeat(500);
        let text = format!(r#"{{"a": "{pad}", "ami_nmae": "web", "b": "{pad}"}}"#);
        let at = text.find("\"ami_nmae\"").expect("key");
        let file = SourceFile::new("t.json", text);
        let d = Diagnostic::error("unknown key").at(&file, Span::new(at, at + 10));
        let out = d.render(&Redactor::default(), false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("t.json:1:"), "{out}");
        let excerpt = lines[3].trim_start_matches("1 | ");
        assert!(
            excerpt.starts_with("...") && excerpt.ends_with("..."),
            "{out}"
        );
        assert!(excerpt.chars().count() <= EXCERPT_MAX + 6, "{out}");
        // The caret is under the key.
        let caret = lines[4].find('^').expect("caret");
        assert_eq!(&lines[3][caret..caret + 10], "\"ami_nmae\"", "{out}");
        assert_eq!(lines[4].matches('^').count(), 10, "{out}");
        // Short lines are unchanged.
        assert_eq!(window("abc", 1, 1), ("abc".to_string(), 1, 1));
    }

    #[test]
    fn a_line_with_a_secret_is_masked_and_gets_no_caret() {
        let text = "{\"variables\": {\"pw\": \"hunter2\"}, \"bogus\": 1}";
        let f = SourceFile::new("t.json", text);
        let start = text.find("\"bogus\"").unwrap();
        let mut r = Redactor::default();
        r.add("hunter2");
        let out = Diagnostic::error("unknown key")
            .at(&f, Span::new(start, start + 7))
            .render(&r, false);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("<sensitive>"), "{out}");
        assert!(!out.contains('^'), "{out}");
    }

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["ami_name", "ami_description", "instance_type", "region"];
        assert_eq!(closest("ami_nmae", keys), Some("ami_name"));
        assert_eq!(closest("regoin", keys), Some("region"));
        assert_eq!(closest("instance-type", keys), Some("instance_type"));
        assert_eq!(closest("zzzzzzzz", keys), None);
    }
}
