//! HCL2 input variables and locals.
//!
//! Precedence (Packer's, hcl_templates/variables.mdx): the `default`, then `PKR_VAR_name` from
//! the environment, then `*.auto.pkrvars.hcl` files in lexical order, then every `-var` and
//! `-var-file` in command-line order; a later one wins.

use std::collections::BTreeMap;
use std::path::Path;

use hcl::edit::structure::{Block, Body};
use hcl::edit::Span as _;
use hcl::eval::Context;

use super::eval::Ctx;
use hcl::{Map, Value};

use super::eval::{eval, labels, Cx};
use super::types::{self, Ty};
use crate::template::diag::{closest, Diagnostic, JsonPath};
use crate::template::json::Span;
use crate::template::variables::VarArg;

/// A declared `variable`.
#[derive(Debug, Clone)]
pub struct Var {
    pub name: String,
    pub ty: Ty,
    pub sensitive: bool,
    pub span: Span,
    pub value: Option<Value>,
    /// The declared default, after type conversion.
    pub default: Option<Value>,
    /// The default as `inspect` shows it: its value when written as a constant, else the
    /// expression as written (e.g. `env("HOME")`).
    pub shown: Option<String>,
    /// `validation` blocks: condition and error message, evaluated once values are bound.
    pub validations: Vec<(hcl::edit::expr::Expression, String, Span)>,
}

/// Reads a `variable "name" { ... }` block.
pub fn declare(b: &Block, cx: &mut Cx, out: &mut Vec<Var>) {
    let span = cx.span(b.ident.span());
    let ls = labels(b);
    let [name] = ls.as_slice() else {
        cx.error(
            span,
            &JsonPath::root(),
            "a `variable` block needs one label: its name",
        );
        return;
    };
    let p = JsonPath::root().key("variable").key(name);
    if out.iter().any(|v| &v.name == name) {
        cx.error(span, &p, format!("the variable `{name}` is declared twice"));
        return;
    }
    // Defaults are constants, but may call functions (`env` above all), as in Packer.
    let mut empty = Context::new();
    super::funcs::declare(&mut empty);
    let mut v = Var {
        name: name.clone(),
        ty: Ty::Any,
        sensitive: false,
        span,
        value: None,
        default: None,
        shown: None,
        validations: Vec::new(),
    };
    let mut default_expr = None;
    for a in b.body.attributes() {
        let key = a.key.as_str();
        let vspan = cx.span(a.value.span());
        match key {
            "type" => match types::parse(&hcl::Expression::from(a.value.clone())) {
                Ok(t) => v.ty = t,
                Err(e) => {
                    cx.error(vspan, &p.key(key), e);
                }
            },
            "default" => match eval(&a.value, &empty) {
                Ok(x) => {
                    default_expr = Some(&a.value);
                    let literal = matches!(
                        a.value,
                        hcl::edit::expr::Expression::String(_)
                            | hcl::edit::expr::Expression::Number(_)
                            | hcl::edit::expr::Expression::Bool(_)
                    );
                    v.shown = Some(match (&x, literal) {
                        (Value::String(s), true) => s.clone(),
                        (other, true) => other.to_string(),
                        _ => a.value.to_string().trim().to_string(),
                    });
                    v.value = Some(x);
                }
                Err(e) => {
                    cx.error(
                        vspan,
                        &p.key(key),
                        format!("a variable's default must be a constant: {e}"),
                    );
                }
            },
            "sensitive" => v.sensitive = matches!(eval(&a.value, &empty), Ok(Value::Bool(true))),
            "description" | "nullable" => {}
            other => {
                let hint = closest(other, ["type", "default", "sensitive", "description"]);
                let d = cx.error(
                    cx.span(a.key.span()),
                    &p.key(other),
                    format!("unknown argument `{other}` in a variable block"),
                );
                if let Some(h) = hint {
                    d.notes.push(format!("help: did you mean `{h}`?"));
                }
            }
        }
    }
    for vb in b.body.get_blocks("validation") {
        let cond = vb.body.get_attribute("condition");
        let msg = vb
            .body
            .get_attribute("error_message")
            .and_then(|a| eval(&a.value, &empty).ok())
            .and_then(|m| m.as_str().map(str::to_string));
        match (cond, msg) {
            (Some(c), Some(m)) => v
                .validations
                .push((c.value.clone(), m, cx.span(c.value.span()))),
            _ => {
                cx.error(
                    cx.span(vb.ident.span()),
                    &p.key("validation"),
                    "a validation block needs `condition` and `error_message`",
                );
            }
        }
    }
    if let (Some(x), Some(expr)) = (&v.value, default_expr) {
        match types::convert(x.clone(), &v.ty) {
            Ok(x) => {
                v.value = Some(x.clone());
                v.default = Some(x);
            }
            Err(e) => {
                // At the part of the default that is wrong.
                let at = cx.span(types::locate(expr, &e.path).span());
                cx.error(
                    at,
                    &p.key("default"),
                    format!("the default of `{name}` is not a valid {}: {e}", v.ty),
                );
            }
        }
    }
    out.push(v);
}

/// A value given as text (`-var`, `PKR_VAR_*`): the text for a primitive (and untyped) variable,
/// else parsed as an HCL expression, as Packer does; then converted to the variable's type.
fn from_text(text: &str, ty: &Ty) -> Result<Value, String> {
    // A primitive type takes the text itself (converted: "3" is a number).
    if matches!(ty, Ty::String | Ty::Any | Ty::Number | Ty::Bool) {
        return types::convert(text.into(), ty).map_err(|e| e.to_string());
    }
    let e: hcl::Expression = text.parse().map_err(|e: hcl::Error| e.to_string())?;
    use hcl::eval::Evaluate;
    let v = e.evaluate(&Ctx::new()).map_err(|e| e.to_string())?;
    types::convert(v, ty).map_err(|e| e.to_string())
}

/// Binds values in Packer's precedence (module doc). `auto_files` are the `*.auto.pkrvars.hcl`
/// files found next to the template, sorted.
pub fn bind(vars: &mut [Var], auto_files: &[std::path::PathBuf], args: &[VarArg], cx: &mut Cx) {
    for v in vars.iter_mut() {
        if let Ok(text) = std::env::var(format!("PKR_VAR_{}", v.name)) {
            match from_text(&text, &v.ty) {
                Ok(x) => v.value = Some(x),
                Err(e) => cx.diags.push(Diagnostic::error(format!(
                    "PKR_VAR_{} is not a valid {}: {e}",
                    v.name, v.ty
                ))),
            }
        }
    }
    for f in auto_files {
        var_file(vars, f, cx);
    }
    for a in args {
        match a {
            VarArg::Pair { key, value } => match vars.iter_mut().find(|v| &v.name == key) {
                Some(v) => match from_text(value, &v.ty) {
                    Ok(x) => v.value = Some(x),
                    Err(e) => cx.diags.push(Diagnostic::error(format!(
                        "-var {key}: not a valid {}: {e}",
                        v.ty
                    ))),
                },
                None => {
                    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
                    let mut d = Diagnostic::error(format!(
                        "-var {key}: the template declares no variable `{key}`"
                    ));
                    if let Some(c) = closest(key, names.iter().copied()) {
                        d = d.help(format!("did you mean `{c}`?"));
                    }
                    cx.diags.push(d.help(format!(
                        "declare it: variable \"{key}\" {{ type = string }}"
                    )));
                }
            },
            VarArg::File(p) => var_file(vars, p, cx),
        }
    }
}

/// A `.pkrvars.hcl` (attributes) or JSON (an object) var file. A value that does not convert
/// to its variable's type is located in the var file, at the part that is wrong.
fn var_file(vars: &mut [Var], path: &Path, cx: &mut Cx) {
    let shown = path.display().to_string();
    let text = match crate::template::read_text_file(path, "var file") {
        Ok(t) => t,
        Err(d) => return cx.diags.push(d),
    };
    let file = crate::template::diag::SourceFile::new(shown.clone(), text);
    // Each value with where it was written: (name, value, where the name is, where a part is).
    type Locate<'a> = Box<dyn Fn(&[types::Seg]) -> Span + 'a>;
    let body;
    let parsed;
    let mut values: Vec<(String, Result<Value, String>, Span, Locate)> = Vec::new();
    if shown.ends_with(".json") {
        parsed = match crate::template::json::parse(&file.text) {
            Ok(p) if p.root.as_object().is_some() => p,
            Ok(p) => {
                return cx.diags.push(
                    Diagnostic::error(format!("the var file `{shown}` is not a JSON object"))
                        .at(&file, p.root.span),
                )
            }
            Err(e) => {
                return cx.diags.push(
                    Diagnostic::error(format!(
                        "the var file `{shown}` is not valid JSON: {}",
                        e.message
                    ))
                    .at(&file, e.span),
                )
            }
        };
        for d in &parsed.duplicates {
            let (l, c) = file.line_col(d.first.start);
            cx.diags.push(
                Diagnostic::error(format!("the var file sets `{}` twice", d.key))
                    .at(&file, d.again)
                    .note(format!("first set at {shown}:{l}:{c}")),
            );
        }
        for m in parsed.root.as_object().unwrap_or(&[]) {
            let v = super::funcs::json_to_hcl(&m.value.to_json());
            let node = &m.value;
            values.push((
                m.key.clone(),
                Ok(v),
                m.key_span,
                Box::new(move |p| types::locate_json(node, p).span),
            ));
        }
    } else {
        body = match hcl::edit::parser::parse_body(&file.text) {
            Ok(b) => b,
            Err(e) => {
                let off = e.location().offset();
                return cx.diags.push(
                    Diagnostic::error(format!(
                        "the var file `{shown}` is not valid HCL: {}",
                        e.message()
                    ))
                    .at(&file, Span::new(off, off + 1)),
                );
            }
        };
        for a in body.attributes() {
            let r = a.key.span().unwrap_or(0..0);
            values.push((
                a.key.as_str().to_string(),
                eval(&a.value, &Ctx::new()),
                Span::new(r.start, r.end),
                Box::new(move |p| {
                    let r = types::locate(&a.value, p).span().unwrap_or(0..0);
                    Span::new(r.start, r.end)
                }),
            ));
        }
    }
    for (k, v, key_span, locate) in values {
        let Some(var) = vars.iter_mut().find(|x| x.name == k) else {
            cx.diags.push(
                Diagnostic::warning(format!(
                    "the var file `{shown}` sets `{k}`, which the template does not declare"
                ))
                .at(&file, key_span)
                .help("Packer ignores it too; remove it or declare the variable"),
            );
            continue;
        };
        let (message, span) = match v {
            Ok(x) => match types::convert(x, &var.ty) {
                Ok(x) => {
                    var.value = Some(x);
                    continue;
                }
                Err(e) => (e.to_string(), locate(&e.path)),
            },
            Err(e) => (e, locate(&[])),
        };
        cx.diags.push(
            Diagnostic::error(format!(
                "the var file sets `{k}` to a value that is not a valid {}: {message}",
                var.ty
            ))
            .at(&file, span),
        );
    }
}

/// Required variables without a value are errors (unless `lenient`: `inspect` and
/// `validate -syntax-only` read a template without its values); the rest becomes the `var`
/// object.
pub fn object(vars: &[Var], lenient: bool, cx: &mut Cx) -> Value {
    let mut m = Map::new();
    for v in vars {
        match &v.value {
            Some(x) => {
                m.insert(v.name.clone(), x.clone());
            }
            None if lenient => {
                m.insert(v.name.clone(), Value::from(""));
            }
            None => {
                let p = JsonPath::root().key("variable").key(&v.name);
                cx.error(
                    v.span,
                    &p,
                    format!("the variable `{}` has no value", v.name),
                )
                .notes
                .push(format!(
                    "help: pass -var {0}=..., set PKR_VAR_{0}, or give it a default",
                    v.name
                ));
                m.insert(v.name.clone(), Value::Null);
            }
        }
    }
    Value::Object(m)
}

/// Runs every `validation` block; a false condition is an error with the author's message.
pub fn validate(vars: &[Var], ctx: &Ctx, cx: &mut Cx) {
    for v in vars {
        for (cond, msg, span) in &v.validations {
            let p = JsonPath::root()
                .key("variable")
                .key(&v.name)
                .key("validation");
            match eval(cond, ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    cx.error(
                        *span,
                        &p,
                        format!("invalid value for variable `{}`: {msg}", v.name),
                    );
                }
                Ok(_) => {
                    cx.error(*span, &p, "a validation `condition` must be true or false");
                }
                Err(e) => {
                    cx.error(*span, &p, format!("cannot evaluate the condition: {e}"));
                }
            }
        }
    }
}

/// A local: its expression and whether it is sensitive.
pub struct Local<'b> {
    pub name: String,
    pub expr: &'b hcl::edit::expr::Expression,
    pub span: Span,
    pub sensitive: bool,
}

/// Collects `locals { a = ... }` and `local "a" { expression = ..., sensitive = true }`.
pub fn collect_locals<'b>(body: &'b Body, cx: &mut Cx, out: &mut Vec<Local<'b>>) {
    for b in body.blocks() {
        match b.ident.as_str() {
            "locals" => {
                for a in b.body.attributes() {
                    out.push(Local {
                        name: a.key.as_str().to_string(),
                        expr: &a.value,
                        span: cx.span(a.value.span()),
                        sensitive: false,
                    })
                }
            }
            "local" => {
                let span = cx.span(b.ident.span());
                let (ls, e) = (labels(b), b.body.get_attribute("expression"));
                match (ls.as_slice(), e) {
                    ([name], Some(a)) => out.push(Local {
                        name: name.clone(),
                        expr: &a.value,
                        span: cx.span(a.value.span()),
                        sensitive: b
                            .body
                            .get_attribute("sensitive")
                            .is_some_and(|s| s.value.to_string().trim() == "true"),
                    }),
                    _ => {
                        cx.error(
                            span,
                            &JsonPath::root().key("local"),
                            "a `local` block needs one label and an `expression`",
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Evaluates locals in dependency order (each round evaluates what it can); what never
/// evaluates is reported with its last error. Returns the `local` object.
pub fn eval_locals(locals: &[Local], ctx: &mut Ctx, cx: &mut Cx) -> BTreeMap<String, Value> {
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for l in locals {
        if locals.iter().filter(|x| x.name == l.name).count() > 1 && !errors.contains_key(&l.name) {
            errors.insert(l.name.clone(), String::new());
            cx.error(
                l.span,
                &JsonPath::root().key("local").key(&l.name),
                format!("the local `{}` is defined twice", l.name),
            );
        }
    }
    for _round in 0..=locals.len() {
        let mut progress = false;
        for l in locals {
            if done.contains_key(&l.name) {
                continue;
            }
            let obj: Map<String, Value> = done.clone().into_iter().collect();
            ctx.declare_var("local", Value::Object(obj));
            match eval(l.expr, ctx) {
                Ok(v) => {
                    done.insert(l.name.clone(), v);
                    progress = true;
                }
                Err(e) => {
                    errors.insert(l.name.clone(), e);
                }
            }
        }
        if !progress {
            break;
        }
    }
    for l in locals {
        if !done.contains_key(&l.name) {
            let e = errors.get(&l.name).cloned().unwrap_or_default();
            if !e.is_empty() {
                cx.error(
                    l.span,
                    &JsonPath::root().key("local").key(&l.name),
                    format!("cannot evaluate the local `{}`: {e}", l.name),
                );
            }
        }
    }
    let obj: Map<String, Value> = done.clone().into_iter().collect();
    ctx.declare_var("local", Value::Object(obj));
    done
}
