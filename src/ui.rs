//! All terminal output. Human text goes to stdout, problems to stderr; with `-machine-readable`,
//! everything is Packer's line format on stdout. Every line passes through the redactor.

use std::io::{IsTerminal, Write};

use crate::redact::Redactor;
use crate::template::diag::{Diagnostics, Severity};

#[derive(Debug, Clone, Default)]
pub struct Ui {
    pub machine: bool,
    /// Color on stderr (only when it is a terminal, color was not turned off and NO_COLOR is unset).
    pub color: bool,
    pub redactor: Redactor,
}

impl Ui {
    pub fn new(machine: bool, color_flag: bool) -> Ui {
        let color = color_flag
            && !machine
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stderr().is_terminal();
        Ui {
            machine,
            color,
            redactor: Redactor::default(),
        }
    }

    /// A line of normal output (stdout).
    pub fn say(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.machine {
            self.record("", "ui", &["say", &text]);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    /// A line of a command's output (stdout; `ui,message` records when machine-readable), as
    /// Packer prints what a script writes.
    pub fn message(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.machine {
            self.record("", "ui", &["message", &text]);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
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
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{text}");
            if !text.ends_with('\n') {
                let _ = writeln!(err);
            }
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
}
