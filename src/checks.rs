//! Small helpers shared by the configuration decoders of the builder, the communicator, the
//! provisioners and the post-processors: where a key is, one-of values, files that must exist,
//! `KEY=VALUE` lists, and Packer options that are accepted only while they are empty.
//!
//! Everything here reports through [`Dx`]; nothing reads configuration on its own.

use std::path::{Path, PathBuf};

use crate::template::decode::{parse_bool, Dx, Obj};
use crate::template::diag::JsonPath;
use crate::template::json::{Kind, Span};

/// A decoded value with the place it came from, for checks that point at one list item.
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub value: T,
    pub span: Span,
    pub path: JsonPath,
}

/// Where to point for a problem with `key`: its value if present, else the object's opening
/// brace. Only for keys the decoder has already taken (taking marks a key as known).
pub(crate) fn loc(obj: &mut Obj, key: &'static str) -> (Span, JsonPath) {
    match obj.take(key) {
        Some((node, path)) => (node.span, path),
        None => (obj.head(), obj.path.clone()),
    }
}

/// An error at `key` (or at the object when the key is absent), with optional help.
pub(crate) fn error_at(
    obj: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    message: impl Into<String>,
    help: Option<&str>,
) {
    let (span, path) = loc(obj, key);
    let d = dx.error(span, &path, message);
    if let Some(h) = help {
        d.notes.push(format!("help: {h}"));
    }
}

/// A warning at `key`, with an optional note.
pub(crate) fn warning_at(
    obj: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    message: impl Into<String>,
    note: Option<&str>,
) {
    let (span, path) = loc(obj, key);
    let d = dx.warning(span, &path, message);
    if let Some(n) = note {
        d.notes.push(format!("note: {n}"));
    }
}

/// A string where Packer treats the empty string as unset.
/// `null` is unset too, as in Packer.
pub(crate) fn opt_string(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<String> {
    if is_null(obj, key) {
        return None;
    }
    obj.string(dx, key).filter(|s| !s.is_empty())
}

/// True when `key` is present with the value `null` (Packer decodes it as unset).
fn is_null(obj: &mut Obj, key: &'static str) -> bool {
    obj.has(key)
        && obj
            .take(key)
            .is_some_and(|(n, _)| matches!(n.kind, Kind::Null))
}

/// A string that must be present and not empty (after rendering). Returns "" when it is not,
/// after reporting it; `note` is added to the "missing" error.
pub(crate) fn required_nonempty(
    obj: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    note: Option<&str>,
) -> String {
    let present = obj.has(key);
    match obj.required_string(dx, key) {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            error_at(obj, dx, key, format!("`{key}` must not be empty"), note);
            String::new()
        }
        None => {
            if !present {
                if let (Some(n), Some(d)) = (note, dx.diags.items.last_mut()) {
                    d.notes.push(format!("help: {n}"));
                }
            }
            String::new()
        }
    }
}

/// A string that must be one of `allowed` (when present and not empty). The error lists the
/// allowed values.
pub(crate) fn one_of(
    obj: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
    allowed: &[&str],
) -> Option<String> {
    let v = opt_string(obj, dx, key)?;
    if allowed.contains(&v.as_str()) {
        return Some(v);
    }
    let list = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    error_at(
        obj,
        dx,
        key,
        format!("`{key}` must be one of {list}, found \"{v}\""),
        None,
    );
    None
}

/// A whole number that Packer treats as unset when 0; negative values and values above `max`
/// are errors.
pub(crate) fn opt_count(obj: &mut Obj, dx: &mut Dx, key: &'static str, max: i64) -> Option<u32> {
    let v = num(obj, dx, key)?;
    if v == 0 {
        return None;
    }
    if v < 0 || v > max {
        error_at(
            obj,
            dx,
            key,
            format!("`{key}` must be between 0 and {max}, found {v}"),
            None,
        );
        return None;
    }
    u32::try_from(v).ok()
}

/// A boolean as Packer's weak decoding reads it: absent or a string that renders empty is
/// unset (`None`; mapstructure reads `""` as false, and Packer's tri-states as unset), so that
/// `"{{user `flag`}}"` with an empty default works as in Packer.
pub(crate) fn flag(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<bool> {
    if is_null(obj, key) {
        return None;
    }
    let (node, path) = obj.take(key)?;
    // HCL2 converts text to a bool as cty does (`Obj::bool`), not as mapstructure does.
    if let (Kind::String(_), false) = (&node.kind, dx.file.is_hcl()) {
        let s = dx.render(node, &path, key)?;
        if s.trim().is_empty() {
            return None;
        }
        return match parse_bool(&s) {
            Some(b) => Some(b),
            None => {
                dx.error(
                    node.span,
                    &path,
                    format!("`{key}` must be true or false, found \"{s}\""),
                );
                None
            }
        };
    }
    obj.bool(dx, key)
}

/// A whole number as Packer's weak decoding reads it: a string that renders empty is 0, which
/// callers treat as unset (`None`).
pub(crate) fn num(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<i64> {
    if is_null(obj, key) {
        return None;
    }
    let (node, path) = obj.take(key)?;
    if let Kind::String(_) = &node.kind {
        let s = dx.render(node, &path, key)?;
        if s.trim().is_empty() {
            return None;
        }
        return match s.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                dx.error(
                    node.span,
                    &path,
                    format!("`{key}` must be a whole number, found {s}"),
                );
                None
            }
        };
    }
    obj.int(dx, key)
}

/// A list of strings with the location of each item.
pub(crate) fn strings_at(
    obj: &mut Obj,
    dx: &mut Dx,
    key: &'static str,
) -> Option<Vec<Located<String>>> {
    let values = obj.strings(dx, key)?;
    let (node, path) = obj.take(key)?;
    let places: Vec<(Span, JsonPath)> = match &node.kind {
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n.span, path.index(i)))
            .collect(),
        _ => vec![(node.span, path.clone())],
    };
    Some(
        values
            .into_iter()
            .zip(places)
            .map(|(value, (span, path))| Located { value, span, path })
            .collect(),
    )
}

/// A list of whole numbers (e.g. `valid_exit_codes`); a single number is a one-item list.
pub(crate) fn ints(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Option<Vec<i64>> {
    let (node, path) = obj.take(key)?;
    let items: Vec<(&crate::template::json::Node, JsonPath)> = match &node.kind {
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, path.index(i)))
            .collect(),
        // HCL2 has no number-to-list conversion (Packer: "list of number required").
        Kind::Number(_) | Kind::String(_) if !dx.file.is_hcl() => vec![(node, path.clone())],
        _ => {
            let hcl = dx.file.is_hcl();
            let d = dx.error(
                node.span,
                &path,
                format!(
                    "`{key}` must be a list of whole numbers, found {}",
                    node.type_name()
                ),
            );
            if hcl && !matches!(node.kind, Kind::Object(_)) {
                d.notes.push(format!(
                    "help: HCL2 takes no single value for a list: write {key} = [0]"
                ));
            }
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (item, p) in items {
        let text = match &item.kind {
            Kind::Number(n) => Some(n.clone()),
            Kind::String(_) => dx.render(item, &p, key),
            _ => {
                dx.error(
                    item.span,
                    &p,
                    format!(
                        "`{key}` must be a list of whole numbers, found {} in it",
                        item.type_name()
                    ),
                );
                None
            }
        };
        match text.map(|t| (t.trim().parse::<i64>(), t)) {
            Some((Ok(v), _)) => out.push(v),
            Some((Err(_), t)) => {
                dx.error(
                    item.span,
                    &p,
                    format!("`{key}` must be a list of whole numbers, found {t}"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// True when a value means "not set" the way Packer's zero values do: null, false, 0, "",
/// "false", "0", an empty list or an empty object (strings are rendered first).
fn is_zero(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> bool {
    let Some((node, path)) = obj.take(key) else {
        return true;
    };
    match &node.kind {
        Kind::Null => true,
        Kind::Bool(b) => !b,
        Kind::Number(n) => n.parse::<f64>().is_ok_and(|v| v == 0.0),
        Kind::String(_) => {
            let s = dx.render(node, &path, key).unwrap_or_default();
            matches!(s.trim(), "" | "false" | "0")
        }
        Kind::Array(items) => items.is_empty(),
        Kind::Object(members) => members.is_empty(),
    }
}

/// A Packer option imgbuild does not implement, reported only when it is set to something
/// (templates often carry `"spot_price": ""` or `"enable_t2_unlimited": false` from a variable).
pub(crate) fn unsupported_if_set(obj: &mut Obj, dx: &mut Dx, key: &'static str, why: &str) {
    if !obj.has(key) {
        obj.take(key);
        return;
    }
    if !is_zero(obj, dx, key) {
        obj.unsupported(dx, key, why);
    }
}

/// A Packer option that was renamed; Packer 1.6.6 rejects it too and `packer fix` rewrites it.
pub(crate) fn deprecated(obj: &mut Obj, dx: &mut Dx, key: &'static str, instead: &str) {
    if let Some((node, path)) = obj.take(key) {
        let what = obj.what.clone();
        let d = dx.error(
            node.span,
            &path,
            format!("`{key}` of {what} is a deprecated Packer option"),
        );
        d.notes.push(format!(
            "help: {instead}; Packer 1.6.6 rejects it too (`imgbuild fix` updates old templates, as `packer fix` does)"
        ));
    }
}

/// True when a rendered string still holds a build-time action (`{{ .SourceAMI }}`,
/// `{{ build `ID` }}`), so it cannot be checked before the build.
pub(crate) fn is_deferred(s: &str) -> bool {
    s.contains("{{")
}

/// Packer's `pathing.ExpandUser`: a leading `~` or `~/` is the home directory.
pub(crate) fn expand_user(p: &str) -> PathBuf {
    if p == "~" || p.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            let mut out = PathBuf::from(home);
            if p.len() > 2 {
                out.push(&p[2..]);
            }
            return out;
        }
    }
    PathBuf::from(p)
}

/// What a local path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// A regular file that can be opened for reading.
    File,
    /// A file or a directory (file provisioner sources).
    FileOrDir,
}

/// Why a local path is not usable, in words (never the file's content).
pub(crate) fn local_path_problem(p: &Path, want: Want) -> Option<String> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => return Some(io_reason(&e)),
    };
    if meta.is_dir() {
        return match want {
            Want::File => Some("it is a directory, not a file".into()),
            Want::FileOrDir => std::fs::read_dir(p).err().map(|e| io_reason(&e)),
        };
    }
    std::fs::File::open(p).err().map(|e| io_reason(&e))
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// The help line for a local path that does not exist or cannot be read.
pub(crate) fn relative_path_help(p: &Path) -> String {
    if p.is_absolute() {
        "check the path and its permissions".into()
    } else {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current directory".into());
        format!(
            "relative paths are resolved against the current directory ({cwd}), not the \
             template's; write `{{{{template_dir}}}}/...` to make it relative to the template"
        )
    }
}

/// `KEY=VALUE` strings as Packer's shell provisioners take them: split at the first `=`, key
/// not empty. Errors use Packer's wording.
pub(crate) fn env_vars(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in strings_at(obj, dx, key).unwrap_or_default() {
        match item.value.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                let d = dx.error(
                    item.span,
                    &item.path,
                    format!(
                        "Environment variable not in format 'key=value': {}",
                        item.value
                    ),
                );
                d.notes
                    .push("help: write it as \"NAME=value\" (the value may be empty)".into());
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! Decoding a JSON text as a builder/provisioner object in tests.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::template::decode::{Dx, Obj};
    use crate::template::diag::{Diagnostics, JsonPath, SourceFile};
    use crate::template::funcs::{Clock, Engine, Phase, Scope};
    use crate::template::json;

    /// Decodes `text` (a JSON object) with `f`; user variables: `yes`=true, `n`=7, `empty`="".
    /// Returns the value and every diagnostic.
    pub fn decode<T>(text: &str, f: impl FnOnce(Obj, &mut Dx) -> T) -> (T, Diagnostics) {
        let file: Arc<SourceFile> = SourceFile::new("t.json", text);
        let root = json::parse(text).expect("test JSON parses").root;
        let engine = Engine::new(Clock::now());
        let mut user = BTreeMap::new();
        user.insert("yes".to_string(), "true".to_string());
        user.insert("n".to_string(), "7".to_string());
        user.insert("empty".to_string(), String::new());
        let mut diags = Diagnostics::default();
        let mut dx = Dx {
            diags: &mut diags,
            file: &file,
            engine: &engine,
            scope: Scope {
                phase: Phase::Prepare,
                user: &user,
                template_dir: "/t",
                build_name: Some("b"),
                build_type: Some("amazon-ebs"),
                build: None,
                fields: None,
            },
        };
        let obj = Obj::new(
            &root,
            JsonPath::root().key("builders").index(0),
            "builder `b`",
            &mut dx,
        )
        .expect("test JSON is an object");
        let v = f(obj, &mut dx);
        (v, diags)
    }

    /// Parses `text` as a whole template and hands it to `f` with a decoding context for the
    /// build `b` (no user variables). Returns the value and every diagnostic after parsing.
    pub fn template<T>(
        text: &str,
        f: impl FnOnce(&crate::template::Template, &mut Dx) -> T,
    ) -> (T, Diagnostics) {
        let file: Arc<SourceFile> = SourceFile::new("t.json", text);
        let mut diags = Diagnostics::default();
        let t = crate::template::Template::parse(file.clone(), "/t".into(), &mut diags)
            .expect("test template parses");
        assert!(!diags.has_errors(), "test template is valid: {diags:?}");
        let engine = Engine::new(Clock::now());
        let user = BTreeMap::new();
        let mut diags = Diagnostics::default();
        let mut dx = Dx {
            diags: &mut diags,
            file: &file,
            engine: &engine,
            scope: Scope {
                phase: Phase::Prepare,
                user: &user,
                template_dir: "/t",
                build_name: Some("b"),
                build_type: Some("null"),
                build: None,
                fields: None,
            },
        };
        let v = f(&t, &mut dx);
        (v, diags)
    }

    pub fn errors(d: &Diagnostics) -> Vec<String> {
        d.errors().map(|e| e.message.clone()).collect()
    }

    pub fn warnings(d: &Diagnostics) -> Vec<String> {
        d.warnings().map(|e| e.message.clone()).collect()
    }

    /// Every message and note of every diagnostic, for "mentions X" assertions.
    pub fn all_text(d: &Diagnostics) -> String {
        d.items
            .iter()
            .flat_map(|i| std::iter::once(i.message.clone()).chain(i.notes.iter().cloned()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A JSON string literal for a path (quotes and escapes).
    pub fn js(s: impl AsRef<str>) -> String {
        serde_json::to_string(s.as_ref()).expect("string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn unsupported_only_when_set() {
        let (_, d) = decode(
            r#"{"spot_price": "", "a": false, "b": "{{user `empty`}}", "c": [], "d": "auto", "e": 0}"#,
            |mut o, dx| {
                for k in ["spot_price", "a", "b", "c", "d", "e", "absent"] {
                    unsupported_if_set(&mut o, dx, k, "do something else");
                }
                o.finish(dx);
            },
        );
        assert_eq!(
            errors(&d),
            vec!["`d` of builder `b` is a Packer option imgbuild does not support"]
        );
    }

    #[test]
    fn ints_accept_numbers_strings_and_single_values() {
        let (v, d) = decode(
            r#"{"a": [0, "1", "{{user `n`}}"], "b": 3, "c": ["x"], "d": {"k": 1}}"#,
            |mut o, dx| {
                let r = (
                    ints(&mut o, dx, "a"),
                    ints(&mut o, dx, "b"),
                    ints(&mut o, dx, "c"),
                    ints(&mut o, dx, "d"),
                );
                o.finish(dx);
                r
            },
        );
        assert_eq!(v.0, Some(vec![0, 1, 7]));
        assert_eq!(v.1, Some(vec![3]));
        assert_eq!(v.2, None);
        assert_eq!(v.3, None);
        assert_eq!(
            errors(&d),
            vec![
                "`c` must be a list of whole numbers, found x",
                "`d` must be a list of whole numbers, found an object",
            ]
        );
    }

    #[test]
    fn env_vars_split_at_the_first_equals() {
        let (v, d) = decode(
            r#"{"environment_vars": ["A=1", "B=x=y", "C=", "NOPE", "=v"]}"#,
            |mut o, dx| {
                let v = env_vars(&mut o, dx, "environment_vars");
                o.finish(dx);
                v
            },
        );
        assert_eq!(
            v,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x=y".to_string()),
                ("C".to_string(), String::new()),
            ]
        );
        assert_eq!(
            errors(&d),
            vec![
                "Environment variable not in format 'key=value': NOPE",
                "Environment variable not in format 'key=value': =v",
            ]
        );
        // Each error points at its own list item.
        let e: Vec<_> = d.errors().collect();
        assert_eq!(
            e[0].path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("builders[0].environment_vars[3]")
        );
    }

    #[test]
    fn empty_strings_are_unset_like_packer_weak_decoding() {
        let (v, d) = decode(
            r#"{"a": "{{user `empty`}}", "b": "{{user `yes`}}", "c": false, "d": "", "e": "{{user `n`}}", "f": "x", "g": "maybe"}"#,
            |mut o, dx| {
                let r = (
                    flag(&mut o, dx, "a"),
                    flag(&mut o, dx, "b"),
                    flag(&mut o, dx, "c"),
                    num(&mut o, dx, "d"),
                    num(&mut o, dx, "e"),
                    num(&mut o, dx, "f"),
                    flag(&mut o, dx, "g"),
                );
                o.finish(dx);
                r
            },
        );
        assert_eq!(
            v,
            (None, Some(true), Some(false), None, Some(7), None, None)
        );
        assert_eq!(
            errors(&d),
            vec![
                "`f` must be a whole number, found x",
                "`g` must be true or false, found \"maybe\"",
            ]
        );
        let (nulls, d) = decode(r#"{"a": null, "b": null, "c": null}"#, |mut o, dx| {
            let r = (
                flag(&mut o, dx, "a"),
                num(&mut o, dx, "b"),
                opt_string(&mut o, dx, "c"),
            );
            o.finish(dx);
            r
        });
        assert_eq!(nulls, (None, None, None));
        assert!(d.items.is_empty(), "null is unset, as in Packer: {d:?}");
    }

    #[test]
    fn local_paths() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(local_path_problem(&f, Want::File), None);
        assert_eq!(
            local_path_problem(dir.path(), Want::File).as_deref(),
            Some("it is a directory, not a file")
        );
        assert_eq!(local_path_problem(dir.path(), Want::FileOrDir), None);
        assert_eq!(
            local_path_problem(&dir.path().join("nope"), Want::FileOrDir).as_deref(),
            Some("no such file or directory")
        );
        assert!(relative_path_help(Path::new("rel/x")).contains("{{template_dir}}"));
    }

    #[test]
    fn expand_user_like_packer() {
        let home = std::env::var("HOME").unwrap_or_default();
        if !home.is_empty() {
            assert_eq!(expand_user("~/k"), Path::new(&home).join("k"));
            assert_eq!(expand_user("~"), PathBuf::from(&home));
        }
        assert_eq!(expand_user("/a/~/b"), PathBuf::from("/a/~/b"));
        assert_eq!(expand_user("~other/x"), PathBuf::from("~other/x"));
    }
}
