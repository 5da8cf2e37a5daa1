//! `imgbuild completions`: the scripts load in a real bash and zsh, and bash completes
//! subcommands, Packer's single-dash flags and file names.

use std::path::Path;
use std::process::Command;

use crate::support::cli::Scratch;
use crate::support::skip;

/// The completion script for `shell`, written to `s` as `imgbuild.<shell>`.
fn script(s: &Scratch, shell: &str) -> String {
    let r = s.run(&["completions", shell]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path = s.path(&format!("imgbuild.{shell}"));
    std::fs::write(&path, &r.stdout).expect("write the script");
    path.display().to_string()
}

/// What bash's completion function offers for the command line `words` (the cursor on the last
/// word), run in `dir` with the script loaded: `COMPREPLY`, one per line.
fn bash_complete(dir: &Path, script: &str, words: &[&str]) -> Vec<String> {
    let n = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{script}'\n\
         COMP_WORDS=({words}); COMP_CWORD={n}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _imgbuild imgbuild '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n\
         complete -p imgbuild >&2",
        words = quoted.join(" "),
        cur = words[n],
        prev = words[n.saturating_sub(1)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .current_dir(dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-o default"),
        "file names complete where nothing else does: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_subcommands_packer_flags_and_files() {
    let s = Scratch::new()
        .with("vars.json", "{}")
        .with("web.json", "{}");
    let sc = script(&s, "bash");
    let dir = s.dir.path();
    assert_eq!(bash_complete(dir, &sc, &["imgbuild", "b"]), ["build"]);
    assert_eq!(
        bash_complete(dir, &sc, &["imgbuild", "c"]),
        ["cleanup", "completions"]
    );
    assert_eq!(
        bash_complete(dir, &sc, &["imgbuild", "build", "-var-f"]),
        ["-var-file"]
    );
    assert_eq!(
        bash_complete(dir, &sc, &["imgbuild", "validate", "--var-f"]),
        ["--var-file"]
    );
    assert_eq!(
        bash_complete(dir, &sc, &["imgbuild", "build", "-var-file", "va"]),
        ["vars.json"]
    );
    assert_eq!(
        bash_complete(dir, &sc, &["imgbuild", "completions", "z"]),
        ["zsh"]
    );
}

#[test]
fn the_zsh_script_loads_and_registers_imgbuild() {
    if Command::new("zsh").arg("--version").output().is_err() {
        return skip("zsh is not installed (scripts/testworld.sh install installs it)");
    }
    let s = Scratch::new();
    let sc = script(&s, "zsh");
    let prog = format!(
        "autoload -U compinit && compinit -u -D && source '{sc}' && print -r -- \"$_comps[imgbuild]\""
    );
    let out = Command::new("zsh")
        .args(["-f", "-c", &prog])
        .current_dir(s.dir.path())
        .env("HOME", s.dir.path())
        .output()
        .expect("zsh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "_imgbuild");
    assert!(
        stderr.is_empty(),
        "the script loads without complaint: {stderr}"
    );
    let text = std::fs::read_to_string(&sc).expect("script");
    assert!(text.contains("'*-var-file=") && text.contains("'*--var-file="));
}

#[test]
fn every_shell_has_a_script_and_others_are_usage_errors() {
    let s = Scratch::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let r = s.run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains("var-file"), "{shell}");
    }
    let r = s.run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("bash, zsh, fish, powershell"),
        "{}",
        r.stderr
    );
}
