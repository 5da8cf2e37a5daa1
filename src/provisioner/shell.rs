//! The `shell` provisioner's configuration (Packer 1.6.6 `provisioner/shell`): upload scripts
//! (or the `inline` commands as one script) to the instance and run them.

use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{
    env_vars, error_at, flag, ints, is_deferred, local_path_problem, opt_string,
    relative_path_help, strings_at, warning_at, Want,
};
use crate::template::decode::{Dx, Obj};

/// What a shell provisioner runs: exactly one of `inline` or `script`/`scripts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellSource {
    /// `inline`: commands, written to one script after `#!{inline_shebang}`.
    Inline(Vec<String>),
    /// `script` or `scripts`: local files, in order (relative paths are resolved against the
    /// current directory, as in Packer).
    Scripts(Vec<PathBuf>),
}

/// `shell`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellConfig {
    /// `inline` | `script` | `scripts`.
    pub source: ShellSource,
    /// `environment_vars`: `KEY=VALUE` pairs set for the scripts (besides `PACKER_BUILD_NAME`
    /// and `PACKER_BUILDER_TYPE`). Values may hold build-time values.
    pub environment_vars: Vec<(String, String)>,
    /// `env_var_format`: how one variable is written (`printf` style, key then value). Default
    /// `%s='%s' `, or `export %s='%s'\n` with `use_env_var_file`.
    pub env_var_format: String,
    /// `use_env_var_file`: write the variables to a file on the instance that the command
    /// sources, instead of the command line. Default false.
    pub use_env_var_file: bool,
    /// `execute_command`: how a script is run; `{{.Path}}`, `{{.Vars}}` and `{{.EnvVarFile}}`
    /// are filled in at build time (kept verbatim here). Default
    /// `chmod +x {{.Path}}; {{.Vars}} {{.Path}}`, or with `use_env_var_file`
    /// `chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}`.
    pub execute_command: String,
    /// `inline_shebang`: interpreter line of the `inline` script. Default `/bin/sh -e`.
    pub inline_shebang: String,
    /// `remote_folder`: where scripts are uploaded. Default `/tmp`.
    pub remote_folder: String,
    /// `remote_file`: the uploaded script's name. Default unset: `script_<random 0-9999>.sh`,
    /// chosen at build time.
    pub remote_file: Option<String>,
    /// `remote_path`: the full upload path; wins over `remote_folder`/`remote_file`.
    pub remote_path: Option<String>,
    /// `skip_clean`: leave the uploaded scripts on the instance. Default false.
    pub skip_clean: bool,
    /// `start_retry_timeout`: how long to retry starting a script (e.g. while the instance
    /// reboots). Default 5m.
    pub start_retry_timeout: Duration,
    /// `expect_disconnect`: a dropped connection (e.g. a reboot) is not an error. Default false.
    pub expect_disconnect: bool,
    /// `valid_exit_codes`: exit codes that count as success. Default `[0]`.
    pub valid_exit_codes: Vec<i64>,
    /// `pause_after`: wait this long after the scripts ran. Default none.
    pub pause_after: Option<Duration>,
    /// `binary`: the scripts are binary: do not convert CRLF line endings to LF on upload.
    /// Default false.
    pub binary: bool,
}

pub const DEFAULT_EXECUTE_COMMAND: &str = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}";
pub const DEFAULT_EXECUTE_COMMAND_ENV_FILE: &str =
    "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}";
pub const DEFAULT_ENV_VAR_FORMAT: &str = "%s='%s' ";
pub const DEFAULT_ENV_VAR_FORMAT_ENV_FILE: &str = "export %s='%s'\n";
pub const DEFAULT_INLINE_SHEBANG: &str = "/bin/sh -e";

impl ShellConfig {
    /// Decodes and checks a `shell` provisioner whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> ShellConfig {
        let o = &mut obj;
        let source = script_source(o, dx);
        let environment_vars = env_vars(o, dx, "environment_vars");
        let use_env_var_file = flag(o, dx, "use_env_var_file").unwrap_or(false);
        let env_var_format = opt_string(o, dx, "env_var_format").unwrap_or_else(|| {
            if use_env_var_file {
                DEFAULT_ENV_VAR_FORMAT_ENV_FILE
            } else {
                DEFAULT_ENV_VAR_FORMAT
            }
            .to_string()
        });
        let execute_command = opt_string(o, dx, "execute_command").unwrap_or_else(|| {
            if use_env_var_file {
                DEFAULT_EXECUTE_COMMAND_ENV_FILE
            } else {
                DEFAULT_EXECUTE_COMMAND
            }
            .to_string()
        });
        if !execute_command.contains(".Path") {
            warning_at(
                o,
                dx,
                "execute_command",
                "`execute_command` does not use {{.Path}}, so it does not run the script",
                Some("{{.Path}} is the uploaded script, e.g. \"sudo sh -c '{{.Vars}} {{.Path}}'\""),
            );
        } else if !environment_vars.is_empty()
            && !execute_command.contains(".Vars")
            && !execute_command.contains(".EnvVarFile")
        {
            warning_at(
                o,
                dx,
                "execute_command",
                "`execute_command` uses neither {{.Vars}} nor {{.EnvVarFile}}, so `environment_vars` are not set",
                None,
            );
        }
        let inline_shebang = opt_string(o, dx, "inline_shebang")
            .unwrap_or_else(|| DEFAULT_INLINE_SHEBANG.to_string());
        let remote_folder = opt_string(o, dx, "remote_folder").unwrap_or_else(|| "/tmp".into());
        let remote_file = opt_string(o, dx, "remote_file");
        let remote_path = opt_string(o, dx, "remote_path");
        let skip_clean = flag(o, dx, "skip_clean").unwrap_or(false);
        let start_retry_timeout = o
            .duration(dx, "start_retry_timeout")
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(300));
        let expect_disconnect = flag(o, dx, "expect_disconnect").unwrap_or(false);
        let valid_exit_codes = exit_codes(o, dx);
        let pause_after = o.duration(dx, "pause_after").filter(|d| !d.is_zero());
        let binary = flag(o, dx, "binary").unwrap_or(false);
        obj.finish(dx);
        ShellConfig {
            source,
            environment_vars,
            env_var_format,
            use_env_var_file,
            execute_command,
            inline_shebang,
            remote_folder,
            remote_file,
            remote_path,
            skip_clean,
            start_retry_timeout,
            expect_disconnect,
            valid_exit_codes,
            pause_after,
            binary,
        }
    }
}

/// `valid_exit_codes`, default `[0]` (also for an empty list, as Packer's nil check does).
pub(crate) fn exit_codes(o: &mut Obj, dx: &mut Dx) -> Vec<i64> {
    match ints(o, dx, "valid_exit_codes") {
        Some(v) if !v.is_empty() => v,
        _ => vec![0],
    }
}

/// `inline` / `script` / `scripts` of the shell provisioner, with Packer 1.6.6's messages.
fn script_source(o: &mut Obj, dx: &mut Dx) -> ShellSource {
    // A value that failed to decode was reported already; "must be specified" would only repeat it.
    let errors_before = dx.diags.error_count();
    let inline = o.strings(dx, "inline").unwrap_or_default();
    let script = checked_scripts(o, dx, "script");
    let scripts = checked_scripts(o, dx, "scripts");
    if !script.is_empty() && !scripts.is_empty() {
        error_at(
            o,
            dx,
            "script",
            "Only one of script or scripts can be specified.",
            None,
        );
    }
    let scripts = if script.is_empty() { scripts } else { script };
    if inline.is_empty() && scripts.is_empty() && dx.diags.error_count() == errors_before {
        error_at(
            o,
            dx,
            "inline",
            "Either a script file or inline script must be specified.",
            Some("give the commands in \"inline\": [...], or a local file in \"script\" or \"scripts\""),
        );
    } else if !inline.is_empty() && !scripts.is_empty() {
        error_at(
            o,
            dx,
            "inline",
            "Only a script file or an inline script can be specified, not both.",
            Some("use two provisioners"),
        );
    }
    if scripts.is_empty() {
        ShellSource::Inline(inline)
    } else {
        ShellSource::Scripts(scripts)
    }
}

/// Script paths of `key`: each must be a readable file (unless it holds a build-time value).
pub(crate) fn checked_scripts(o: &mut Obj, dx: &mut Dx, key: &'static str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for item in strings_at(o, dx, key).unwrap_or_default() {
        if item.value.is_empty() {
            continue;
        }
        let path = PathBuf::from(&item.value);
        if !is_deferred(&item.value) {
            if let Some(why) = local_path_problem(&path, Want::File) {
                let d = dx.error(
                    item.span,
                    &item.path,
                    format!("Bad script '{}': {why}", item.value),
                );
                d.notes.push(format!("help: {}", relative_path_help(&path)));
            }
        }
        out.push(path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;
    use crate::template::diag::Diagnostics;

    fn shell(text: &str) -> (ShellConfig, Diagnostics) {
        decode(text, ShellConfig::decode)
    }

    fn script_in(dir: &tempfile::TempDir, name: &str) -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, "echo hi\n").unwrap();
        p.display().to_string()
    }

    #[test]
    fn defaults_are_packers() {
        let (c, d) = shell(r#"{"inline": ["echo hi", "uname -a"]}"#);
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.source,
            ShellSource::Inline(vec!["echo hi".into(), "uname -a".into()])
        );
        assert_eq!(c.execute_command, "chmod +x {{.Path}}; {{.Vars}} {{.Path}}");
        assert_eq!(c.env_var_format, "%s='%s' ");
        assert_eq!(c.inline_shebang, "/bin/sh -e");
        assert_eq!(c.remote_folder, "/tmp");
        assert_eq!(c.remote_file, None);
        assert_eq!(c.remote_path, None);
        assert_eq!(c.start_retry_timeout, Duration::from_secs(300));
        assert!(!c.expect_disconnect && !c.skip_clean && !c.use_env_var_file && !c.binary);
        assert_eq!(c.valid_exit_codes, vec![0]);
        assert_eq!(c.pause_after, None);
    }

    #[test]
    fn env_var_file_changes_two_defaults() {
        let (c, d) = shell(r#"{"inline": ["true"], "use_env_var_file": true}"#);
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.execute_command,
            "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}"
        );
        assert_eq!(c.env_var_format, "export %s='%s'\n");
    }

    #[test]
    fn execute_command_keeps_build_time_fields_and_renders_user_variables() {
        let (c, d) = shell(
            r#"{"inline": ["true"], "execute_command": "echo {{user `n`}} | {{ .Vars }} sudo -S -E sh -eux '{{ .Path }}'"}"#,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.execute_command,
            "echo 7 | {{ .Vars }} sudo -S -E sh -eux '{{ .Path }}'"
        );
    }

    #[test]
    fn execute_command_without_path_or_vars_warns() {
        let (_, d) = shell(r#"{"inline": ["true"], "execute_command": "sudo bash"}"#);
        assert!(!d.has_errors());
        assert_eq!(
            warnings(&d),
            vec!["`execute_command` does not use {{.Path}}, so it does not run the script"]
        );
        let (_, d) = shell(
            r#"{"inline": ["true"], "environment_vars": ["A=1"], "execute_command": "sudo sh {{.Path}}"}"#,
        );
        assert_eq!(
            warnings(&d),
            vec!["`execute_command` uses neither {{.Vars}} nor {{.EnvVarFile}}, so `environment_vars` are not set"]
        );
    }

    #[test]
    fn exactly_one_source_with_packers_messages() {
        let dir = tempfile::tempdir().unwrap();
        let s = js(script_in(&dir, "a.sh"));
        for (text, msg) in [
            (
                r#"{}"#.to_string(),
                "Either a script file or inline script must be specified.",
            ),
            (
                r#"{"inline": []}"#.to_string(),
                "Either a script file or inline script must be specified.",
            ),
            (
                format!(r#"{{"inline": ["x"], "script": {s}}}"#),
                "Only a script file or an inline script can be specified, not both.",
            ),
            (
                format!(r#"{{"inline": ["x"], "scripts": [{s}]}}"#),
                "Only a script file or an inline script can be specified, not both.",
            ),
            (
                format!(r#"{{"script": {s}, "scripts": [{s}]}}"#),
                "Only one of script or scripts can be specified.",
            ),
        ] {
            let (_, d) = shell(&text);
            assert_eq!(errors(&d), vec![msg], "{text}");
        }
        let (c, d) = shell(&format!(r#"{{"scripts": [{s}, {s}]}}"#));
        assert!(!d.has_errors());
        assert!(matches!(c.source, ShellSource::Scripts(v) if v.len() == 2));
        let (c, d) = shell(&format!(r#"{{"script": {s}}}"#));
        assert!(!d.has_errors());
        assert!(matches!(c.source, ShellSource::Scripts(v) if v.len() == 1));
        // A single inline string is a one-command list (weak decoding).
        let (c, _) = shell(r#"{"inline": "echo hi"}"#);
        assert_eq!(c.source, ShellSource::Inline(vec!["echo hi".into()]));
    }

    #[test]
    fn scripts_must_exist_and_be_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = script_in(&dir, "a.sh");
        let missing = dir.path().join("nope.sh").display().to_string();
        let (_, d) = shell(&format!(
            r#"{{"scripts": [{}, {}]}}"#,
            js(&good),
            js(&missing)
        ));
        assert_eq!(
            errors(&d),
            vec![format!("Bad script '{missing}': no such file or directory")]
        );
        let e = d.errors().next().unwrap();
        assert_eq!(
            e.path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("builders[0].scripts[1]")
        );
        let (_, d) = shell(&format!(
            r#"{{"script": {}}}"#,
            js(dir.path().display().to_string())
        ));
        assert_eq!(
            errors(&d),
            vec![format!(
                "Bad script '{}': it is a directory, not a file",
                dir.path().display()
            )]
        );
        let (_, d) = shell(r#"{"script": "scripts/does-not-exist.sh"}"#);
        assert!(all_text(&d).contains("relative paths are resolved against the current directory"));
    }

    #[test]
    fn environment_vars_need_key_equals_value() {
        let (c, d) = shell(
            r#"{"inline": ["x"], "environment_vars": ["A=1", "B=", "NOEQ", "=v", "C={{ build `ID` }}"]}"#,
        );
        assert_eq!(
            errors(&d),
            vec![
                "Environment variable not in format 'key=value': NOEQ",
                "Environment variable not in format 'key=value': =v",
            ]
        );
        assert_eq!(
            c.environment_vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), String::new()),
                ("C".into(), "{{ build `ID` }}".into())
            ]
        );
    }

    #[test]
    fn other_options_and_weak_typing() {
        let (c, d) = shell(
            r#"{"inline": ["x"], "valid_exit_codes": [0, "2300218"], "expect_disconnect": "true",
                "start_retry_timeout": "10m", "pause_after": "30s", "remote_folder": "/var/tmp",
                "remote_file": "setup.sh", "remote_path": "/opt/setup.sh", "skip_clean": 1,
                "binary": false, "inline_shebang": "/bin/bash -eux", "env_var_format": "%s=%s "}"#,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.valid_exit_codes, vec![0, 2300218]);
        assert!(c.expect_disconnect && c.skip_clean && !c.binary);
        assert_eq!(c.start_retry_timeout, Duration::from_secs(600));
        assert_eq!(c.pause_after, Some(Duration::from_secs(30)));
        assert_eq!(c.remote_folder, "/var/tmp");
        assert_eq!(c.remote_file.as_deref(), Some("setup.sh"));
        assert_eq!(c.remote_path.as_deref(), Some("/opt/setup.sh"));
        assert_eq!(c.inline_shebang, "/bin/bash -eux");
        assert_eq!(c.env_var_format, "%s=%s ");
        let (_, d) = shell(r#"{"inline": ["x"], "start_retry_timeout": "x", "foo": 1}"#);
        assert_eq!(
            errors(&d),
            vec![
                "`start_retry_timeout`: \"x\" is not a duration: expected a number at \"x\"",
                "unknown key `foo` in builder `b`",
            ]
        );
    }
}
