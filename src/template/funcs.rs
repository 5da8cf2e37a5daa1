//! Template functions: Packer's `{{user `name`}}` syntax, evaluated by handlebars helpers.
//!
//! Packer's JSON templates use Go's text/template syntax (backtick strings, pipelines,
//! `.Field`s). Handlebars cannot read that directly, so each `{{ ... }}` action is parsed here into
//! a small expression tree, translated into one handlebars expression whose literal arguments are
//! passed through the render context (so no quoting of user text is ever needed), and rendered by
//! a registry whose helpers are Packer's functions. HTML escaping is off.
//!
//! Values that exist only while a build runs (`{{build `ID`}}`, `{{ .SourceAMI }}`, the
//! `{{.Vars}}` of `execute_command`) are *deferred* in the [`Phase::Prepare`] phase: the action is
//! kept verbatim and rendered again at build time, so `ami_name` and `tags` can mix both kinds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::{json, Value};

use super::diag::closest;
use super::timefmt;

mod syntax;
pub use syntax::*;

/// The Packer version whose JSON template language imgbuild implements; `packer_version` returns
/// it and `min_packer_version` is checked against it.
pub const PACKER_COMPAT_VERSION: &str = "1.6.6";

/// Where a string is being rendered, which decides what is allowed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Variable defaults: `env` is allowed; nothing about builds exists yet.
    Variables,
    /// Builder, provisioner and post-processor configuration before the build: build-time values
    /// are deferred (kept verbatim for the build phase).
    Prepare,
    /// During a build: `build` data and dot fields are known.
    Build,
}

/// The values a string is rendered against.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub phase: Phase,
    pub user: &'a BTreeMap<String, String>,
    pub template_dir: &'a str,
    pub build_name: Option<&'a str>,
    pub build_type: Option<&'a str>,
    /// `{{build `Key`}}` values, in the build phase.
    pub build: Option<&'a BTreeMap<String, String>>,
    /// `{{ .Field }}` values (e.g. `Vars` and `Path` in `execute_command`), in the build phase.
    pub fields: Option<&'a BTreeMap<String, String>>,
}

/// A problem in one template string: where in the string, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmplError {
    /// Byte range in the template string.
    pub range: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl TmplError {
    /// A problem at `range` of the string, for locating it ([`super::decode::span_in_string`]).
    pub fn at(range: Range<usize>) -> TmplError {
        TmplError::new(range, "")
    }

    fn new(range: Range<usize>, message: impl Into<String>) -> TmplError {
        TmplError {
            range,
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> TmplError {
        self.help = Some(help.into());
        self
    }
}

/// The run's clock: `timestamp`, `isotime` and `strftime` all read this one instant, so every
/// string of a run (e.g. `ami_name` and a tag) agrees.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub init: DateTime<Utc>,
}

impl Clock {
    pub fn now() -> Clock {
        Clock { init: Utc::now() }
    }
}

// ---------------------------------------------------------------------------------------------
// Translation to handlebars and rendering

/// The template engine: a handlebars registry whose helpers are Packer's functions.
pub struct Engine {
    hb: Handlebars<'static>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

struct Translation {
    expr: String,
    args: Vec<Value>,
    /// Source range of each function call, indexed by its `at=` number.
    calls: Vec<(String, Range<usize>)>,
}

impl Engine {
    pub fn new(clock: Clock) -> Engine {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let shared = Arc::new(Shared {
            clock,
            pwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        });
        for (name, _, _) in FUNCS {
            hb.register_helper(
                name,
                Box::new(Func {
                    name,
                    shared: shared.clone(),
                }),
            );
        }
        for name in ["lit", "field"] {
            hb.register_helper(
                name,
                Box::new(Func {
                    name,
                    shared: shared.clone(),
                }),
            );
        }
        Engine { hb }
    }

    /// Renders a template string. In [`Phase::Prepare`], actions that need build-time data are
    /// kept verbatim.
    pub fn render(&self, src: &str, scope: &Scope) -> Result<String, TmplError> {
        if !src.contains("{{") {
            return Ok(src.to_string());
        }
        let pieces = parse(src)?;
        let mut out = String::with_capacity(src.len());
        let mut base: Option<serde_json::Map<String, Value>> = None;
        for p in &pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action(a) => {
                    let deferred = is_deferred(&a.pipe);
                    if deferred && scope.phase == Phase::Prepare {
                        out.push_str(&src[a.range.clone()]);
                        continue;
                    }
                    let tr = translate(&a.pipe, a.range.clone())?;
                    let ctx = base.get_or_insert_with(|| scope_json(scope));
                    for (k, v) in tr.args.iter().enumerate() {
                        ctx.insert(format!("a{k}"), v.clone());
                    }
                    let ctx_value = Value::Object(ctx.clone());
                    let context = Context::wraps(&ctx_value)
                        .map_err(|e| TmplError::new(a.range.clone(), format!("internal: {e}")))?;
                    match self.hb.render_template_with_context(&tr.expr, &context) {
                        Ok(s) => out.push_str(&s),
                        Err(e) => return Err(map_render_error(e, &tr, a.range.clone())),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Checks the syntax and function names of a string without rendering it.
    pub fn check(&self, src: &str) -> Result<(), TmplError> {
        if !src.contains("{{") {
            return Ok(());
        }
        for p in parse(src)? {
            if let Piece::Action(a) = p {
                translate(&a.pipe, a.range)?;
            }
        }
        Ok(())
    }
}

fn scope_json(scope: &Scope) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("phase".into(), json!(format!("{:?}", scope.phase)));
    m.insert("user".into(), json!(scope.user));
    m.insert("template_dir".into(), json!(scope.template_dir));
    m.insert("build_name".into(), json!(scope.build_name));
    m.insert("build_type".into(), json!(scope.build_type));
    m.insert("build".into(), json!(scope.build));
    m.insert("fields".into(), json!(scope.fields));
    m
}

fn translate(pipe: &Pipe, range: Range<usize>) -> Result<Translation, TmplError> {
    let mut tr = Translation {
        expr: String::new(),
        args: Vec::new(),
        calls: Vec::new(),
    };
    let inner = translate_pipe(pipe, &mut tr, &range)?;
    tr.expr = format!("{{{{{inner}}}}}");
    Ok(tr)
}

/// A pipeline as the inside of a handlebars expression: `f a0 (g a1 at=1) at=0`.
fn translate_pipe(
    pipe: &Pipe,
    tr: &mut Translation,
    range: &Range<usize>,
) -> Result<String, TmplError> {
    let mut prev: Option<String> = None;
    for cmd in &pipe.cmds {
        let mut args = cmd.args.iter();
        let first = args
            .next()
            .ok_or_else(|| TmplError::new(range.clone(), "empty command"))?;
        let rest: Vec<&Arg> = args.collect();
        let expr = match first {
            Arg::Func(name, r) => {
                let (min, max) = arity(name, r)?;
                let n = rest.len() + usize::from(prev.is_some());
                if n < min || n > max {
                    let want = if min == max {
                        format!("{min}")
                    } else {
                        format!("{min} or {max}")
                    };
                    return Err(TmplError::new(
                        r.clone(),
                        format!(
                            "`{name}` takes {want} argument{}, got {n}",
                            if max == 1 && min == 1 { "" } else { "s" }
                        ),
                    )
                    .help(usage(name)));
                }
                let mut parts = vec![name.clone()];
                for a in rest {
                    parts.push(operand(a, tr, range)?);
                }
                if let Some(p) = prev.take() {
                    parts.push(format!("({p})"));
                }
                let at = tr.calls.len();
                tr.calls.push((name.clone(), r.clone()));
                parts.push(format!("at={at}"));
                parts.join(" ")
            }
            other => {
                if !rest.is_empty() || prev.is_some() {
                    return Err(TmplError::new(
                        range.clone(),
                        "only a function can take arguments or receive a pipeline value",
                    ));
                }
                let o = operand(other, tr, range)?;
                let at = tr.calls.len();
                tr.calls.push(("lit".into(), range.clone()));
                format!("lit {o} at={at}")
            }
        };
        prev = Some(expr);
    }
    prev.ok_or_else(|| TmplError::new(range.clone(), "empty action"))
}

fn operand(a: &Arg, tr: &mut Translation, range: &Range<usize>) -> Result<String, TmplError> {
    let mut literal = |v: Value| {
        tr.args.push(v);
        format!("a{}", tr.args.len() - 1)
    };
    Ok(match a {
        Arg::Str(s) => literal(json!(s)),
        Arg::Num(n) => literal(Value::Number(n.clone())),
        Arg::Bool(b) => literal(json!(b)),
        Arg::Field(f, r) => {
            let name = literal(json!(f));
            let at = tr.calls.len();
            tr.calls.push((format!(".{f}"), r.clone()));
            format!("(field {name} at={at})")
        }
        Arg::Func(name, r) => {
            let (min, _) = arity(name, r)?;
            if min > 0 {
                return Err(TmplError::new(
                    r.clone(),
                    format!(
                        "`{name}` needs arguments here: wrap the call in parentheses, e.g. ({})",
                        usage(name)
                    ),
                ));
            }
            let at = tr.calls.len();
            tr.calls.push((name.clone(), r.clone()));
            format!("({name} at={at})")
        }
        Arg::Sub(p) => format!("({})", translate_pipe(p, tr, range)?),
    })
}

fn arity(name: &str, r: &Range<usize>) -> Result<(usize, usize), TmplError> {
    if let Some((_, min, max)) = FUNCS.iter().find(|(n, _, _)| *n == name) {
        return Ok((*min, *max));
    }
    if let Some((_, what)) = UNSUPPORTED_FUNCS.iter().find(|(n, _)| *n == name) {
        return Err(TmplError::new(
            r.clone(),
            format!("the function `{name}` is not supported by imgbuild"),
        )
        .help(*what));
    }
    let mut e = TmplError::new(r.clone(), format!("unknown function `{name}`"));
    e = match closest(name, FUNCS.iter().map(|(n, _, _)| *n)) {
        Some(c) => e.help(format!("did you mean `{c}`? ({})", usage(c))),
        None => e.help("see the template function list in README.md"),
    };
    Err(e)
}

fn usage(name: &str) -> String {
    match name {
        "user" => "{{user `name`}}".into(),
        "env" => "{{env `NAME`}}".into(),
        "build" => "{{build `ID`}}".into(),
        "isotime" => "{{isotime}} or {{isotime `2006-01-02`}}".into(),
        "strftime" => "{{strftime `%Y%m%d`}}".into(),
        "split" => "{{split `a,b` `,` 0}}".into(),
        "replace" => "{{replace `old` `new` 1 `string`}}".into(),
        "replace_all" => "{{replace_all `old` `new` `string`}}".into(),
        n @ ("lower" | "upper" | "clean_resource_name" | "clean_ami_name") => {
            format!("{{{{{n} `text`}}}}")
        }
        n => format!("{{{{{n}}}}}"),
    }
}

const AT_MARK: char = '\u{1}';

/// The value of a declared variable whose own error is already reported; a diagnostic that
/// mentions it is a follow-on error and is dropped ([`crate::template::diag::Diagnostics::push`]).
pub const UNSET: &str = "\u{2}unset\u{2}";

fn map_render_error(e: RenderError, tr: &Translation, action: Range<usize>) -> TmplError {
    let reason = e.reason().to_string();
    // Helper errors carry the call they came from: "\u{1}<at>\u{1}<message>\u{1}<help>".
    let mut parts = reason.split(AT_MARK);
    if let (Some(_), Some(at), Some(msg)) = (parts.next(), parts.next(), parts.next()) {
        let help = parts.next().filter(|h| !h.is_empty());
        let range = at
            .parse::<usize>()
            .ok()
            .and_then(|i| tr.calls.get(i))
            .map_or(action.clone(), |(_, r)| r.clone());
        let mut err = TmplError::new(range, msg);
        if let Some(h) = help {
            err = err.help(h);
        }
        return err;
    }
    TmplError::new(action, format!("cannot render: {reason}"))
}

struct Shared {
    clock: Clock,
    pwd: String,
}

struct Func {
    name: &'static str,
    shared: Arc<Shared>,
}

fn fail(at: u64, msg: impl Into<String>, help: impl Into<String>) -> RenderError {
    RenderErrorReason::Other(format!(
        "{AT_MARK}{at}{AT_MARK}{}{AT_MARK}{}",
        msg.into(),
        help.into()
    ))
    .into()
}

/// A function's arguments, with where the call is and the function's name (for errors).
struct Args<'a> {
    name: &'static str,
    at: u64,
    params: &'a [&'a Value],
}

impl Args<'_> {
    /// Argument `i` as text (numbers and booleans as written).
    fn string(&self, i: usize) -> Result<String, RenderError> {
        let (name, at) = (self.name, self.at);
        match self.params.get(i) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(v) => Err(fail(
                at,
                format!("`{name}` expects text as argument {}, got {v}", i + 1),
                usage(name),
            )),
            None => Err(fail(
                at,
                format!("`{name}` is missing argument {}", i + 1),
                usage(name),
            )),
        }
    }

    /// Argument `i` as a whole number (or text that is one).
    fn int(&self, i: usize) -> Result<i64, RenderError> {
        let (name, at) = (self.name, self.at);
        match self.params.get(i) {
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => Ok(s.parse::<i64>().unwrap_or(0)),
            Some(v) => Err(fail(
                at,
                format!(
                    "`{name}` expects a whole number as argument {}, got {v}",
                    i + 1
                ),
                usage(name),
            )),
            None => Err(fail(
                at,
                format!("`{name}` is missing argument {}", i + 1),
                usage(name),
            )),
        }
    }
}

/// `{{user `k`}}`: the variable's value; an undeclared one is an error naming the closest.
fn user_variable(data: &Value, k: &str, at: u64) -> Result<String, RenderError> {
    match data
        .get("user")
        .and_then(|u| u.get(k))
        .and_then(Value::as_str)
    {
        // A variable that has no value because of an error already reported
        // (required and not set, or its default failed): no second error here.
        Some(UNSET) => Err(fail(at, UNSET, "")),
        Some(v) => Ok(v.to_string()),
        None => {
            let names: Vec<&str> = data
                .get("user")
                .and_then(Value::as_object)
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let help = match closest(k, names.iter().copied()) {
                Some(c) => format!(
                    "did you mean `{c}`? Declared variables: {}",
                    names.join(", ")
                ),
                None if names.is_empty() => {
                    "the template declares no variables: add it under \"variables\"".into()
                }
                None => format!(
                    "declare it under \"variables\"; declared: {}",
                    names.join(", ")
                ),
            };
            Err(fail(at, format!("variable `{k}` is not declared"), help))
        }
    }
}

/// `{{build `k`}}` (`name` "build") and `{{ .k }}` (`name` "field"): a value of the running
/// build; outside a build, or a key it does not have, is an error.
fn build_value(data: &Value, name: &str, k: &str, at: u64) -> Result<String, RenderError> {
    let (key, shown) = if name == "build" {
        ("build", format!("build `{k}`"))
    } else {
        ("fields", format!(".{k}"))
    };
    match data.get(key) {
        Some(Value::Object(m)) => match m.get(k).and_then(Value::as_str) {
            Some(v) => Ok(v.to_string()),
            None => {
                let names: Vec<&str> = m.keys().map(String::as_str).collect();
                let help = match closest(k, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? Available: {}", names.join(", ")),
                    None => format!("available here: {}", names.join(", ")),
                };
                Err(fail(at, format!("`{shown}` is not available here"), help))
            }
        },
        _ => Err(fail(
            at,
            format!("`{shown}` is only known while a build runs"),
            "use it in a builder, provisioner or post-processor, not in a variable default",
        )),
    }
}

impl HelperDef for Func {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let at = h
            .hash_get("at")
            .and_then(|v| v.value().as_u64())
            .unwrap_or(u64::MAX);
        let data = ctx.data();
        let name = self.name;
        let params: Vec<&Value> = h.params().iter().map(|p| p.value()).collect();
        let args = Args {
            name,
            at,
            params: &params,
        };
        let string = |i: usize| args.string(i);
        let int = |i: usize| args.int(i);
        let phase = data.get("phase").and_then(Value::as_str).unwrap_or("");
        let t = &self.shared.clock.init;
        let out: String = match name {
            "lit" => {
                return Ok(ScopedJson::Derived(
                    params.first().map(|v| (*v).clone()).unwrap_or(Value::Null),
                ))
            }
            "user" => user_variable(data, &string(0)?, at)?,
            "env" => {
                let k = string(0)?;
                if phase != "Variables" {
                    return Err(fail(
                        at,
                        "`env` is only allowed in variable defaults",
                        format!("declare a variable with the default \"{{{{env `{k}`}}}}\" and use {{{{user `name`}}}} here"),
                    ));
                }
                std::env::var(&k).unwrap_or_default()
            }
            "timestamp" => t.timestamp().to_string(),
            "isotime" => {
                let layout = if params.is_empty() {
                    timefmt::RFC3339.to_string()
                } else {
                    string(0)?
                };
                timefmt::go_format(t, &layout)
            }
            "strftime" => {
                timefmt::strftime(t, &string(0)?).map_err(|m| fail(at, m, usage(name)))?
            }
            "uuid" => uuid::Uuid::now_v7().to_string(),
            "pwd" => self.shared.pwd.clone(),
            "template_dir" => data
                .get("template_dir")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            "packer_version" => PACKER_COMPAT_VERSION.to_string(),
            "build_name" | "build_type" => match data.get(name).and_then(Value::as_str) {
                Some(v) => v.to_string(),
                None => {
                    return Err(fail(
                        at,
                        format!("`{name}` is not available in variable defaults"),
                        "use it in a builder, provisioner or post-processor",
                    ))
                }
            },
            "clean_resource_name" | "clean_ami_name" => clean_resource_name(&string(0)?),
            "lower" => string(0)?.to_lowercase(),
            "upper" => string(0)?.to_uppercase(),
            "split" => {
                let (s, sep, i) = (string(0)?, string(1)?, int(2)?);
                let parts: Vec<&str> = s.split(sep.as_str()).collect();
                match usize::try_from(i).ok().and_then(|i| parts.get(i)) {
                    Some(p) => p.to_string(),
                    None => {
                        return Err(fail(
                            at,
                            format!("the substring {i} was unavailable using the separator value, {sep}, only {} values were found", parts.len()),
                            usage(name),
                        ))
                    }
                }
            }
            "replace" => {
                let (old, new, n, s) = (string(0)?, string(1)?, int(2)?, string(3)?);
                if n < 0 {
                    s.replace(&old, &new)
                } else {
                    s.replacen(&old, &new, usize::try_from(n).unwrap_or(usize::MAX))
                }
            }
            "replace_all" => {
                let (old, new, s) = (string(0)?, string(1)?, string(2)?);
                s.replace(&old, &new)
            }
            "build" | "field" => build_value(data, name, &string(0)?, at)?,
            other => return Err(fail(at, format!("unknown function `{other}`"), "")),
        };
        Ok(ScopedJson::Derived(Value::String(out)))
    }
}

/// Packer's `clean_resource_name`: every character outside `[A-Za-z0-9()[] ./-'@_]` becomes `-`,
/// so that a name is a valid AMI name.
pub fn clean_resource_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn engine() -> Engine {
        Engine::new(Clock {
            init: Utc.with_ymd_and_hms(2026, 3, 7, 14, 5, 9).unwrap(),
        })
    }

    fn vars() -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("name".to_string(), "web <&> \"x\"".to_string());
        m.insert("csv".to_string(), "a,b,c".to_string());
        m
    }

    fn scope(phase: Phase, user: &BTreeMap<String, String>) -> Scope<'_> {
        Scope {
            phase,
            user,
            template_dir: "/tpl",
            build_name: Some("web_worker"),
            build_type: Some("amazon-ebs"),
            build: None,
            fields: None,
        }
    }

    fn render(src: &str) -> Result<String, TmplError> {
        let v = vars();
        engine().render(src, &scope(Phase::Prepare, &v))
    }

    #[test]
    fn packer_functions_render_without_html_escaping() {
        assert_eq!(render("{{user `name`}}").unwrap(), "web <&> \"x\"");
        assert_eq!(render("{{ user \"name\" }}").unwrap(), "web <&> \"x\"");
        assert_eq!(render("web-{{timestamp}}").unwrap(), "web-1772892309");
        assert_eq!(render("{{isotime}}").unwrap(), "2026-03-07T14:05:09Z");
        assert_eq!(render("{{isotime `2006-01-02`}}").unwrap(), "2026-03-07");
        assert_eq!(render("{{strftime `%Y%m%d`}}").unwrap(), "20260307");
        assert_eq!(render("{{template_dir}}/x").unwrap(), "/tpl/x");
        assert_eq!(
            render("{{build_name}}:{{build_type}}").unwrap(),
            "web_worker:amazon-ebs"
        );
        assert_eq!(render("{{split (user `csv`) `,` 1}}").unwrap(), "b");
        assert_eq!(render("{{replace `a` `x` 1 `aaa`}}").unwrap(), "xaa");
        assert_eq!(render("{{replace_all `a` `x` `aaa`}}").unwrap(), "xxx");
        assert_eq!(render("{{lower `AbC`}}{{upper `d`}}").unwrap(), "abcD");
        assert_eq!(
            render("{{clean_resource_name `a:b/c*d`}}").unwrap(),
            "a-b/c-d"
        );
        assert_eq!(render("{{clean_ami_name `x y!`}}").unwrap(), "x y-");
        assert_eq!(render("{{packer_version}}").unwrap(), PACKER_COMPAT_VERSION);
        assert_eq!(render("no actions").unwrap(), "no actions");
        assert_eq!(render("{{/* comment */}}x").unwrap(), "x");
        assert_eq!(render("a  {{- `b` -}}  c").unwrap(), "abc");
        assert_eq!(render("{{ \"}}\" }}").unwrap(), "}}");
        let u = render("{{uuid}}").unwrap();
        assert_eq!(u.len(), 36);
        assert_ne!(u, render("{{uuid}}").unwrap());
    }

    #[test]
    fn pipelines_pass_the_value_as_last_argument() {
        assert_eq!(
            render("{{ user `name` | lower | clean_resource_name }}").unwrap(),
            "web --- -x-"
        );
        assert_eq!(
            render("{{ `a-b-c` | replace_all `-` `_` }}").unwrap(),
            "a_b_c"
        );
        assert_eq!(
            render("{{ timestamp | clean_resource_name }}").unwrap(),
            "1772892309"
        );
    }

    #[test]
    fn build_time_values_are_deferred_in_prepare_and_rendered_in_build() {
        let v = vars();
        let e = engine();
        let src = "web-{{timestamp}}-{{ .SourceAMIName | clean_resource_name }}-{{build `ID`}}";
        let prepared = e.render(src, &scope(Phase::Prepare, &v)).unwrap();
        assert_eq!(
            prepared,
            "web-1772892309-{{ .SourceAMIName | clean_resource_name }}-{{build `ID`}}"
        );
        let mut build = BTreeMap::new();
        build.insert("ID".to_string(), "i-123".to_string());
        let mut fields = BTreeMap::new();
        fields.insert("SourceAMIName".to_string(), "ubuntu/jammy:1".to_string());
        let mut s = scope(Phase::Build, &v);
        s.build = Some(&build);
        s.fields = Some(&fields);
        assert_eq!(
            e.render(&prepared, &s).unwrap(),
            "web-1772892309-ubuntu/jammy-1-i-123"
        );
        let err = e.render("{{build `Nope`}}", &s).unwrap_err();
        assert!(
            err.message.contains("`build `Nope`` is not available"),
            "{err:?}"
        );
    }

    #[test]
    fn env_only_in_variable_defaults() {
        let v = vars();
        // A variable the process already has: `std::env::set_var` here would race with the
        // other unit tests reading the environment on their threads (undefined behaviour).
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(!path.is_empty(), "the test process has a PATH");
        let e = engine();
        let mut s = scope(Phase::Variables, &v);
        s.build_name = None;
        assert_eq!(e.render("{{env `PATH`}}", &s).unwrap(), path);
        let err = e
            .render("x {{env `HOME`}}", &scope(Phase::Prepare, &v))
            .unwrap_err();
        assert_eq!(err.range, 4..7);
        assert!(err.message.contains("only allowed in variable defaults"));
        let err = e.render("{{build_name}}", &s).unwrap_err();
        assert!(
            err.message.contains("not available in variable defaults"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_calls_name_the_place_and_suggest() {
        let err = render("web-{{timestmp}}").unwrap_err();
        assert_eq!(err.range, 6..14);
        assert_eq!(err.message, "unknown function `timestmp`");
        assert!(err.help.unwrap().contains("did you mean `timestamp`"));
        let err = render("{{user `nmae`}}").unwrap_err();
        assert_eq!(err.message, "variable `nmae` is not declared");
        assert!(err.help.unwrap().contains("did you mean `name`"));
        let err = render("abc {{ user `x`").unwrap_err();
        assert_eq!(err.range, 4..6);
        assert!(err.message.contains("unterminated `{{`"));
        let err = render("{{split `a` `,` 5}}").unwrap_err();
        assert!(err.message.contains("only 1 values were found"), "{err:?}");
        let err = render("{{lower}}").unwrap_err();
        assert!(err.message.contains("takes 1 argument, got 0"), "{err:?}");
        let err = render("{{vault `a` `b`}}").unwrap_err();
        assert!(err.message.contains("not supported by imgbuild"), "{err:?}");
        assert!(render("{{if true}}x{{end}}")
            .unwrap_err()
            .message
            .contains("not supported"));
        assert!(render("{{}}").unwrap_err().message.contains("empty action"));
        assert!(render("{{ `a` `b` }}")
            .unwrap_err()
            .message
            .contains("only a function"));
        assert!(render("{{ (lower `a` }}")
            .unwrap_err()
            .message
            .contains("missing `)`"));
        assert!(render("{{strftime `%Q`}}")
            .unwrap_err()
            .message
            .contains("not a valid strftime"));
        assert!(render("{{ $x }}")
            .unwrap_err()
            .message
            .contains("not supported"));
        assert!(render("{{ lower `a` | }}")
            .unwrap_err()
            .message
            .contains("missing command"));
    }

    #[test]
    fn user_refs_finds_literal_references() {
        let p = parse("{{user `a`}}-{{ lower (user `b`) }}-{{ timestamp }}").unwrap();
        assert_eq!(user_refs(&p), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn a_storm_of_braces_is_an_error_not_a_hang() {
        let storm = "{{".repeat(50_000);
        let err = render(&storm).unwrap_err();
        assert!(
            err.message.contains("unexpected") || err.message.contains("unterminated"),
            "{err:?}"
        );
    }
}
