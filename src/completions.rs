//! `imgbuild completions SHELL`: the completion script of clap_complete for the command line
//! of `cli`, with Packer's single-dash spellings (`-var-file`, `-only`) added next to clap's
//! `--` ones, so that both complete. Template and variable files complete as file names.

use clap::CommandFactory;

pub use crate::cli::Shell;
use crate::cli::{Cli, PACKER_FLAGS};

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    clap_complete::generate(generator, &mut cmd, "imgbuild", &mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .flat_map(|l| single_dash(shell, l))
        .map(|l| l + "\n")
        .collect()
}

/// One line of clap_complete's script, and, for a line that offers a Packer flag, what offers
/// its single-dash spelling too.
fn single_dash(shell: Shell, line: &str) -> Vec<String> {
    let mut out = vec![line.to_string()];
    match shell {
        // `opts="-h --var --var-file ..."` lists the words; `--var-file)` the flags whose
        // value is completed.
        Shell::Bash => {
            let t = line.trim_start();
            if t.starts_with("opts=\"") {
                let words: Vec<String> = line
                    .split(' ')
                    .flat_map(|w| match flag_of(w.trim_end_matches('"'), "--") {
                        Some(f) if w.ends_with('"') => {
                            vec![format!("--{f}"), format!("-{f}\"")]
                        }
                        Some(f) => vec![w.to_string(), format!("-{f}")],
                        None => vec![w.to_string()],
                    })
                    .collect();
                out[0] = words.join(" ");
            } else if let Some(f) = t.strip_suffix(')').and_then(|w| flag_of(w, "--")) {
                out[0] = line.replacen(&format!("--{f})"), &format!("--{f}|-{f})"), 1);
            }
        }
        // `'*--var=[...]:KEY=VALUE:_default' \` and `'--force[...]' \`
        Shell::Zsh => {
            if let Some(rest) = line.trim_start().strip_prefix('\'') {
                let (star, rest) = match rest.strip_prefix('*') {
                    Some(r) => ("*", r),
                    None => ("", rest),
                };
                let name: String = rest
                    .strip_prefix("--")
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if PACKER_FLAGS.contains(&name.as_str()) {
                    let from = format!("'{star}--{name}");
                    out.push(line.replacen(&from, &format!("'{star}-{name}"), 1));
                }
            }
        }
        // `complete -c imgbuild ... -l var-file ...`: fish's `-o` is the single-dash form.
        Shell::Fish => {
            if let Some(f) = line
                .split(' ')
                .skip_while(|w| *w != "-l")
                .nth(1)
                .filter(|f| PACKER_FLAGS.contains(f))
            {
                out.push(line.replacen(&format!(" -l {f} "), &format!(" -o {f} "), 1));
            }
        }
        // `[CompletionResult]::new('--var-file', '--var-file', ...)`: the text inserted, and
        // the text listed.
        Shell::Powershell => {
            if let Some(f) = line
                .split_once("::new('--")
                .and_then(|(_, r)| r.split_once('\''))
                .map(|(f, _)| f)
                .filter(|f| PACKER_FLAGS.contains(f))
            {
                out.push(line.replace(&format!("'--{f}'"), &format!("'-{f}'")));
            }
        }
    }
    out
}

/// `--var-file` is the Packer flag `var-file`; anything else is none.
fn flag_of<'a>(word: &'a str, dashes: &str) -> Option<&'a str> {
    word.strip_prefix(dashes)
        .filter(|f| PACKER_FLAGS.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_offers_both_spellings() {
        for (shell, single) in [
            (Shell::Bash, " -var-file "),
            (Shell::Zsh, "'*-var-file="),
            (Shell::Fish, " -o var-file "),
            (Shell::Powershell, "'-var-file'"),
        ] {
            let s = script(shell);
            assert!(s.contains(single), "{shell:?}: no {single:?} in\n{s}");
            assert!(s.contains("var-file"), "{shell:?}");
            assert!(
                s.contains("build") && s.contains("completions"),
                "{shell:?}"
            );
        }
    }

    #[test]
    fn bash_value_flags_match_both_spellings() {
        let s = script(Shell::Bash);
        assert!(s.contains("--var-file|-var-file)"), "{s}");
        assert!(
            !s.contains("--h "),
            "only Packer's flags get a single-dash twin"
        );
    }
}
