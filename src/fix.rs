//! `imgbuild fix [-w] TEMPLATE`: the template with its deprecated options rewritten
//! (`template::fix`), printed on stdout, or written back in place atomically with `-w`. What
//! changed is listed on stderr, one line per key, so that the printed template stays clean.

use std::path::Path;

use crate::error::Exit;
use crate::post_processor::output::write_atomic;
use crate::template::diag::{Diagnostic, Diagnostics};
use crate::template::{self, fix};
use crate::ui::Ui;

/// Runs `imgbuild fix`: 0 fixed or nothing to fix, 2 unreadable or not JSON, 1 not written.
pub fn run(path: &str, write: bool, ui: &Ui) -> Exit {
    let mut diags = Diagnostics::default();
    let (file, _) = match template::read_source(path) {
        Ok(v) => v,
        Err(d) => {
            diags.push(d);
            ui.diagnostics(&diags);
            return Exit::Usage;
        }
    };
    if write && path == "-" {
        diags.push(
            Diagnostic::error("-w writes the template back to its file: standard input has none")
                .help("leave out -w to print the fixed template, or name the file"),
        );
        ui.diagnostics(&diags);
        return Exit::Usage;
    }
    let fixed = match fix::fix(&file.text) {
        Ok(f) => f,
        Err(e) => {
            // The loader's message and caret, the same as `validate` shows.
            template::parse_json(&file, &mut diags);
            if !diags.has_errors() {
                diags.push(Diagnostic::error(e.message).at(&file, e.span));
            }
            ui.diagnostics(&diags);
            return Exit::Usage;
        }
    };
    for a in &fixed.applied {
        ui.error(&format!("{}: fixed {} ({})", file.name, a.path, a.fixer));
    }
    if !write {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(fixed.text.as_bytes());
        let _ = out.flush();
        return Exit::Success;
    }
    if fixed.applied.is_empty() {
        return Exit::Success;
    }
    match write_atomic(Path::new(path), fixed.text.as_bytes()) {
        Ok(()) => Exit::Success,
        Err(e) => {
            ui.error(&format!(
                "imgbuild: {e}; the template was not changed (check the directory's permissions)"
            ));
            Exit::BuildFailed
        }
    }
}
