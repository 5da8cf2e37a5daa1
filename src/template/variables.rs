//! User variables: defaults from the template, values from `-var` and `-var-file`, rendering of
//! values that use other variables or `{{env}}`, required variables, and secrets.
//!
//! Precedence (one rule, documented in README.md): template default, then every `-var` and
//! `-var-file` in the order they appear on the command line; a later one wins. (Packer 1.6.6's
//! code lets any `-var` beat any `-var-file` while its docs say "later wins"; imgbuild does what
//! the docs say.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::decode::span_in_string;
use super::diag::{closest, Diagnostic, Diagnostics, JsonPath, SourceFile};
use super::funcs::{self, Engine, Phase, Scope};
use super::json::Kind;
use super::{parse_json, read_text_file, Template, VarDecl};
use crate::redact::Redactor;

/// One `-var` or `-var-file`, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarArg {
    Pair { key: String, value: String },
    File(PathBuf),
}

/// Splits `-var` text at the first `=`, as Packer does.
pub fn parse_var_pair(text: &str) -> Result<VarArg, String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok(VarArg::Pair {
            key: k.trim().to_string(),
            value: v.to_string(),
        }),
        Some(_) => Err(format!("`-var {text}` has no variable name before `=`")),
        None => Err(format!(
            "`-var {text}` must be KEY=VALUE (e.g. -var region=us-west-2)"
        )),
    }
}

/// The bound variables of a run.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    /// Rendered value of every variable (declared, or set on the command line).
    pub values: BTreeMap<String, String>,
    /// Names listed in `sensitive-variables`.
    pub sensitive: BTreeSet<String>,
    /// Masks the values of sensitive variables (and credentials from the environment).
    pub redactor: Redactor,
}

/// A variable's value as given (unrendered) and where it came from (for messages).
type RawValues = BTreeMap<String, (String, Origin)>;

/// Binds and renders the variables. Problems (missing required variables, bad var files,
/// rendering errors, cycles) go to `diags`, all of them at once.
pub fn bind(t: &Template, args: &[VarArg], engine: &Engine, diags: &mut Diagnostics) -> Variables {
    let declared: BTreeSet<&str> = t.variables.iter().map(|v| v.name.as_str()).collect();
    let raw = raw_values(t, args, &declared, diags);

    let mut out = Variables::default();
    for s in &t.sensitive {
        if !declared.contains(s.name.as_str()) {
            diags.push(
                Diagnostic::warning(format!(
                    "`{}` is listed in sensitive-variables but is not a declared variable",
                    s.name
                ))
                .at(&t.file, s.span)
                .path(&s.path),
            );
        }
        out.sensitive.insert(s.name.clone());
    }
    // Secret values are masked from here on, including in the messages below.
    for name in &out.sensitive {
        if let Some((v, _)) = raw.get(name) {
            out.redactor.add(v);
        }
    }
    for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(v) = std::env::var(key) {
            out.redactor.add(&v);
        }
    }

    let missing = check_required(t, &raw, diags);
    let missing_names: BTreeSet<&str> = missing.iter().map(|v| v.name.as_str()).collect();
    // Packer renders `{{user}}` of a variable nobody declared or set as empty text.
    let known: BTreeSet<String> = declared
        .iter()
        .map(|n| n.to_string())
        .chain(raw.keys().cloned())
        .collect();
    let empty: BTreeMap<String, String> = super::leniency::undeclared_user_refs(t, &known, diags)
        .into_iter()
        .map(|n| (n, String::new()))
        .collect();
    let (mut rendered, failed) = render_all(t, engine, &raw, empty, &missing_names, diags);
    for name in &out.sensitive {
        if let Some(v) = rendered.get(name) {
            out.redactor.add(v);
            let n = v.chars().count();
            if n > 0 && n < crate::redact::MIN_SECRET_LEN {
                diags.push(Diagnostic::warning(format!(
                    "the sensitive variable `{name}` is only {n} character(s) long: too short to mask in output"
                )));
            }
        }
    }
    // Declared but without a value (reported above): later uses are not errors of their own.
    for name in missing_names.iter().map(|n| n.to_string()).chain(failed) {
        rendered
            .entry(name)
            .or_insert_with(|| funcs::UNSET.to_string());
    }
    out.values = rendered;
    out
}

/// The values before rendering: template defaults, then every `-var` and `-var-file` in
/// command-line order (a later one wins). A variable the template does not declare is reported.
fn raw_values(
    t: &Template,
    args: &[VarArg],
    declared: &BTreeSet<&str>,
    diags: &mut Diagnostics,
) -> RawValues {
    let mut raw: RawValues = BTreeMap::new();
    for v in &t.variables {
        if let Some(d) = &v.default {
            raw.insert(v.name.clone(), (d.clone(), Origin::Default));
        }
    }
    for a in args {
        match a {
            VarArg::Pair { key, value } => {
                if !declared.contains(key.as_str()) {
                    diags.lenient(undeclared(key, "-var", declared));
                }
                raw.insert(key.clone(), (value.clone(), Origin::Cli));
            }
            VarArg::File(path) => {
                for (k, v) in read_var_file(path, diags) {
                    if !declared.contains(k.as_str()) {
                        diags.lenient(undeclared(
                            &k,
                            &format!("-var-file {}", path.display()),
                            declared,
                        ));
                    }
                    raw.insert(k, (v, Origin::File(path.clone())));
                }
            }
        }
    }
    raw
}

/// The required variables (default `null`) that were given no value, each reported.
fn check_required<'t>(
    t: &'t Template,
    raw: &RawValues,
    diags: &mut Diagnostics,
) -> Vec<&'t VarDecl> {
    let mut missing = Vec::new();
    for v in &t.variables {
        if v.default.is_none() && !raw.contains_key(&v.name) {
            missing.push(v);
        }
    }
    for v in &missing {
        diags.push(
            Diagnostic::error(format!("required variable `{}` is not set", v.name))
                .at(&t.file, v.key_span)
                .path(&JsonPath::root().key("variables").key(&v.name))
                .help(format!(
                    "pass -var '{}=VALUE' or set it in a -var-file (its default is null, which makes it required)",
                    v.name
                )),
        );
    }
    missing
}

/// Renders the values in dependency order (`rendered` starts with the undeclared variables,
/// empty): a value is rendered once everything it refers to is. Returns the rendered values and the names that failed (their own error, or one of what
/// they refer to failed or is missing); a cycle is reported once.
fn render_all(
    t: &Template,
    engine: &Engine,
    raw: &RawValues,
    mut rendered: BTreeMap<String, String>,
    missing_names: &BTreeSet<&str>,
    diags: &mut Diagnostics,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut pending: Vec<String> = raw.keys().cloned().collect();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    while !pending.is_empty() {
        let mut progress = false;
        let mut still = Vec::new();
        for name in pending {
            let (text, origin) = &raw[&name];
            let refs = match funcs::parse(text) {
                Ok(p) => funcs::user_refs(&p),
                Err(_) => Vec::new(), // reported when rendered below
            };
            let blocked_by_failure = refs
                .iter()
                .any(|r| failed.contains(r) || missing_names.contains(r.as_str()));
            if blocked_by_failure {
                failed.insert(name);
                progress = true;
                continue;
            }
            let waiting = refs
                .iter()
                .any(|r| r != &name && raw.contains_key(r) && !rendered.contains_key(r));
            if waiting {
                still.push(name);
                continue;
            }
            progress = true;
            let scope = Scope {
                phase: Phase::Variables,
                user: &rendered,
                template_dir: &t.template_dir,
                build_name: None,
                build_type: None,
                build: None,
                fields: None,
            };
            match engine.render(text, &scope) {
                Ok(v) => {
                    rendered.insert(name, v);
                }
                Err(e) => {
                    diags.push(render_error(t, &name, origin, &e));
                    failed.insert(name);
                }
            }
        }
        if !progress {
            // Everything left waits on something else that is left: a cycle.
            diags.push(cycle_error(t, still));
            break;
        }
        pending = still;
    }
    (rendered, failed)
}

/// A variable's value that did not render, pointing at the default or naming the `-var` or
/// `-var-file` it came from.
fn render_error(t: &Template, name: &str, origin: &Origin, e: &funcs::TmplError) -> Diagnostic {
    let mut d = Diagnostic::error(format!("in variable `{name}`: {}", e.message));
    match origin {
        Origin::Default => {
            let path = JsonPath::root().key("variables").key(name);
            if let Some(m) = find_default_node(t, name) {
                d = d
                    .at(&t.file, span_in_string(&t.file.text, m, e))
                    .path(&path);
            }
        }
        Origin::Cli => d = d.note(format!("the value comes from -var {name}=...")),
        Origin::File(p) => d = d.note(format!("the value comes from -var-file {}", p.display())),
    }
    if let Some(h) = &e.help {
        d = d.help(h.clone());
    }
    d
}

/// The variables left waiting on each other (`still`, not empty), reported at the first one.
fn cycle_error(t: &Template, mut still: Vec<String>) -> Diagnostic {
    still.sort();
    let first = still[0].clone();
    let mut d = Diagnostic::error(format!(
        "variables refer to each other in a cycle: {}",
        still.join(", ")
    ))
    .help("break the cycle: one of them needs a plain default");
    if let Some(v) = t.variables.iter().find(|v| v.name == first) {
        d = d
            .at(&t.file, v.key_span)
            .path(&JsonPath::root().key("variables").key(&first));
    }
    d
}

#[derive(Debug, Clone)]
enum Origin {
    Default,
    Cli,
    File(PathBuf),
}

fn find_default_node<'t>(t: &'t Template, name: &str) -> Option<&'t super::json::Node> {
    t.variables
        .iter()
        .find(|v| v.name == name)
        .map(|v| &v.value)
}

fn undeclared(key: &str, from: &str, declared: &BTreeSet<&str>) -> Diagnostic {
    let d = Diagnostic::warning(format!(
        "`{key}` is set by {from} but the template declares no such variable"
    ));
    match closest(key, declared.iter().copied()) {
        Some(c) => d.help(format!("did you mean `{c}`?")),
        None => d.note("the value is still available to {{user}}, as in Packer"),
    }
}

/// Reads a `-var-file`: a JSON object whose values are strings.
fn read_var_file(path: &std::path::Path, diags: &mut Diagnostics) -> Vec<(String, String)> {
    let text = match read_text_file(path, "variable file") {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return Vec::new();
        }
    };
    let file = SourceFile::new(path.display().to_string(), text);
    let Some(root) = parse_json(&file, diags) else {
        return Vec::new();
    };
    let Some(members) = root.as_object() else {
        diags.push(
            Diagnostic::error(format!(
                "a variable file must be a JSON object, found {}",
                root.type_name()
            ))
            .at(&file, root.span)
            .help("write {\"name\": \"value\", ...}"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in members {
        match &m.value.kind {
            Kind::String(s) => out.push((m.key.clone(), s.clone())),
            _ => diags.push(
                Diagnostic::error(format!(
                    "the value of `{}` in a variable file must be a string, found {}",
                    m.key,
                    m.value.type_name()
                ))
                .at(&file, m.value.span)
                .path(&JsonPath::root().key(&m.key))
                .help("put the value in double quotes: JSON templates only have string variables"),
            ),
        }
    }
    out
}
