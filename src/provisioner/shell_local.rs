//! The `shell-local` configuration (Packer 1.6.6 `packer-plugin-sdk/shell-local`), shared by the
//! provisioner and the post-processor: run commands or scripts on the machine running imgbuild.

use crate::checks::{env_vars, error_at, flag, opt_string, strings_at, warning_at};
use crate::provisioner::shell::{checked_scripts, exit_codes, ShellSource};
use crate::template::decode::{Dx, Obj};

/// `shell-local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellLocalConfig {
    /// `inline` (or its deprecated form `command`, one command) | `script` | `scripts`.
    pub source: ShellSource,
    /// `environment_vars`: `KEY=VALUE` pairs (besides `PACKER_BUILD_NAME` and
    /// `PACKER_BUILDER_TYPE`).
    pub environment_vars: Vec<(String, String)>,
    /// `env_var_format`: how one variable is written in `{{.Vars}}`. Default `%s='%s' `.
    pub env_var_format: String,
    /// `execute_command`: the program and its arguments; `{{.Vars}}` and `{{.Script}}` are
    /// filled in at run time (kept verbatim here). Default
    /// `["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]`.
    pub execute_command: Vec<String>,
    /// `inline_shebang`: interpreter line of the `inline` script. Default `/bin/sh -e`.
    pub inline_shebang: String,
    /// `only_on`: run only on these host operating systems (Go names: `linux`, `darwin`,
    /// `freebsd`, `openbsd`, `solaris`, `windows`); elsewhere the step is skipped. Default: all.
    pub only_on: Vec<String>,
    /// `tempfile_extension`: extension of the temporary script file. Default none.
    pub tempfile_extension: Option<String>,
    /// `valid_exit_codes`: exit codes that count as success. Default `[0]`.
    pub valid_exit_codes: Vec<i64>,
}

/// Operating system names `only_on` accepts (Packer 1.6.6's list).
pub const ONLY_ON_OS: &[&str] = &[
    "darwin", "freebsd", "linux", "openbsd", "solaris", "windows",
];

pub const DEFAULT_EXECUTE_COMMAND: &[&str] = &["/bin/sh", "-c", "{{.Vars}} {{.Script}}"];

const ONE_OF: &str = "You may only specify one of the following options: Command, Inline, Script or Scripts. Please consolidate these options in your config.";

impl ShellLocalConfig {
    /// Decodes and checks a `shell-local` object whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> ShellLocalConfig {
        let o = &mut obj;
        let command = opt_string(o, dx, "command");
        if command.is_some() {
            warning_at(
                o,
                dx,
                "command",
                "`command` is deprecated",
                Some("write \"inline\": [\"...\"] instead; it runs the same way"),
            );
        }
        let errors_before = dx.diags.error_count();
        let inline = o.strings(dx, "inline").unwrap_or_default();
        let script = checked_scripts(o, dx, "script");
        let scripts = checked_scripts(o, dx, "scripts");
        let given = [
            command.is_some(),
            !inline.is_empty(),
            !script.is_empty(),
            !scripts.is_empty(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given == 0 && dx.diags.error_count() == errors_before {
            error_at(
                o,
                dx,
                "inline",
                "Command, Inline, Script and Scripts options cannot all be empty.",
                Some("give the commands in \"inline\": [...], or a local file in \"script\" or \"scripts\""),
            );
        } else if given > 1 {
            let key = if command.is_some() {
                "command"
            } else {
                "inline"
            };
            error_at(o, dx, key, ONE_OF, None);
        }
        let source = if let Some(c) = command {
            ShellSource::Inline(vec![c])
        } else if !inline.is_empty() {
            ShellSource::Inline(inline)
        } else if !script.is_empty() {
            ShellSource::Scripts(script)
        } else if !scripts.is_empty() {
            ShellSource::Scripts(scripts)
        } else {
            ShellSource::Inline(Vec::new())
        };

        let environment_vars = env_vars(o, dx, "environment_vars");
        let env_var_format =
            opt_string(o, dx, "env_var_format").unwrap_or_else(|| "%s='%s' ".to_string());
        let execute_command = match o.strings(dx, "execute_command") {
            Some(v) if !v.is_empty() => v,
            _ => DEFAULT_EXECUTE_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        if !execute_command.iter().any(|a| a.contains(".Script")) {
            warning_at(
                o,
                dx,
                "execute_command",
                "`execute_command` does not use {{.Script}}, so it does not run the script",
                Some("e.g. [\"/bin/bash\", \"-c\", \"{{.Vars}} {{.Script}}\"]"),
            );
        }
        let inline_shebang =
            opt_string(o, dx, "inline_shebang").unwrap_or_else(|| "/bin/sh -e".to_string());
        let only_on = only_on(o, dx);
        let tempfile_extension = opt_string(o, dx, "tempfile_extension");
        let valid_exit_codes = exit_codes(o, dx);
        if flag(o, dx, "use_linux_pathing") == Some(true) {
            o.ignored(
                dx,
                "use_linux_pathing",
                "it only matters when Packer runs on Windows (WSL); imgbuild runs on Unix hosts, where paths are already Linux paths",
            );
        }
        obj.finish(dx);
        ShellLocalConfig {
            source,
            environment_vars,
            env_var_format,
            execute_command,
            inline_shebang,
            only_on,
            tempfile_extension,
            valid_exit_codes,
        }
    }

    /// False when `only_on` is given and does not list this host's operating system: the step
    /// is then skipped (with a message), as in Packer.
    pub fn runs_on_this_host(&self) -> bool {
        self.only_on.is_empty() || self.only_on.iter().any(|os| os == host_os())
    }

    /// How the inline script's file name ends: `tempfile_extension` with a leading dot (`.sh`),
    /// or nothing.
    pub fn script_extension(&self) -> String {
        match self.tempfile_extension.as_deref() {
            Some(e) if e.starts_with('.') => e.to_string(),
            Some(e) => format!(".{e}"),
            None => String::new(),
        }
    }
}

/// This host's operating system as Go's `runtime.GOOS` names it.
pub fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

fn only_on(o: &mut Obj, dx: &mut Dx) -> Vec<String> {
    let mut out = Vec::new();
    for item in strings_at(o, dx, "only_on").unwrap_or_default() {
        if ONLY_ON_OS.contains(&item.value.as_str()) {
            out.push(item.value);
        } else {
            let d = dx.error(
                item.span,
                &item.path,
                format!("Invalid OS specified in only_on: '{}'", item.value),
            );
            d.notes.push(format!(
                "help: Supported OS names: {}",
                ONLY_ON_OS.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;
    use crate::template::diag::Diagnostics;

    fn sl(text: &str) -> (ShellLocalConfig, Diagnostics) {
        decode(text, ShellLocalConfig::decode)
    }

    #[test]
    fn defaults_are_packers() {
        let (c, d) = sl(r#"{"inline": ["echo {{ build `ID` }}"]}"#);
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.source,
            ShellSource::Inline(vec!["echo {{ build `ID` }}".into()])
        );
        assert_eq!(
            c.execute_command,
            vec!["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]
        );
        assert_eq!(c.env_var_format, "%s='%s' ");
        assert_eq!(c.inline_shebang, "/bin/sh -e");
        assert!(c.only_on.is_empty());
        assert!(c.runs_on_this_host());
        assert_eq!(c.tempfile_extension, None);
        assert_eq!(c.valid_exit_codes, vec![0]);
    }

    #[test]
    fn command_is_a_deprecated_inline() {
        let (c, d) = sl(r#"{"command": "make image"}"#);
        assert!(!d.has_errors());
        assert_eq!(c.source, ShellSource::Inline(vec!["make image".into()]));
        assert_eq!(warnings(&d), vec!["`command` is deprecated"]);
    }

    #[test]
    fn exactly_one_source_with_packers_messages() {
        let (_, d) = sl("{}");
        assert_eq!(
            errors(&d),
            vec!["Command, Inline, Script and Scripts options cannot all be empty."]
        );
        let (_, d) = sl(r#"{"command": "a", "inline": ["b"]}"#);
        assert_eq!(errors(&d), vec![ONE_OF]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.sh");
        std::fs::write(&f, "true\n").unwrap();
        let s = js(f.display().to_string());
        let (_, d) = sl(&format!(r#"{{"script": {s}, "scripts": [{s}]}}"#));
        assert_eq!(errors(&d), vec![ONE_OF]);
        let (c, d) = sl(&format!(r#"{{"scripts": [{s}]}}"#));
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.source, ShellSource::Scripts(vec![f.clone()]));
        let (_, d) = sl(r#"{"script": "/nonexistent/s.sh"}"#);
        assert_eq!(
            errors(&d),
            vec!["Bad script '/nonexistent/s.sh': no such file or directory"]
        );
    }

    #[test]
    fn only_on_uses_go_os_names() {
        let (_, d) = sl(r#"{"inline": ["x"], "only_on": ["linux", "plan9"]}"#);
        assert_eq!(errors(&d), vec!["Invalid OS specified in only_on: 'plan9'"]);
        assert!(all_text(&d)
            .contains("Supported OS names: darwin, freebsd, linux, openbsd, solaris, windows"));
        let (c, _) = sl(r#"{"inline": ["x"], "only_on": ["windows"]}"#);
        assert_eq!(c.runs_on_this_host(), host_os() == "windows");
        let (c, _) = sl(&format!(
            r#"{{"inline": ["x"], "only_on": "{}"}}"#,
            host_os()
        ));
        assert!(c.runs_on_this_host());
    }

    #[test]
    fn execute_command_and_other_options() {
        let (c, d) = sl(
            r#"{"inline": ["x"], "execute_command": ["/bin/bash", "-c", "{{.Vars}} {{.Script}} {{user `n`}}"],
                "environment_vars": ["A=1", "bad"], "env_var_format": "%s=%s ", "tempfile_extension": ".sh",
                "valid_exit_codes": [0, 1], "inline_shebang": "/bin/bash"}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["Environment variable not in format 'key=value': bad"]
        );
        assert_eq!(
            c.execute_command,
            vec!["/bin/bash", "-c", "{{.Vars}} {{.Script}} 7"]
        );
        assert_eq!(c.environment_vars, vec![("A".into(), "1".into())]);
        assert_eq!(c.tempfile_extension.as_deref(), Some(".sh"));
        assert_eq!(c.valid_exit_codes, vec![0, 1]);
        let (_, d) = sl(r#"{"inline": ["x"], "execute_command": ["bash", "-c", "echo"]}"#);
        assert_eq!(
            warnings(&d),
            vec!["`execute_command` does not use {{.Script}}, so it does not run the script"]
        );
        let (_, d) = sl(r#"{"inline": ["x"], "use_linux_pathing": true}"#);
        assert!(!d.has_errors());
        assert_eq!(
            warnings(&d),
            vec!["`use_linux_pathing` of builder `b` has no effect in imgbuild"]
        );
    }
}
