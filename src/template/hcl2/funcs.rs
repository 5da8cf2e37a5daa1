//! Packer's HCL2 function library (the part real templates use), declared into an hcl-rs
//! evaluation context. hcl-rs has no function library of its own and takes plain `fn` pointers,
//! so the run's clock and the template's directory are thread-local state set by the loader.
//!
//! `try` and `can` need their arguments unevaluated: `eval` rewrites those calls before hcl-rs
//! sees them; the declarations here are the fallback for calls inside string templates.

use std::cell::RefCell;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Value};

use crate::template::timefmt;
use crate::template::timefmt::MONTHS;

thread_local! {
    static NOW: RefCell<Option<DateTime<Utc>>> = const { RefCell::new(None) };
}

/// Fixes the instant `timestamp()` and the legacy time functions return for this thread.
pub fn set_now(t: DateTime<Utc>) {
    NOW.with(|n| *n.borrow_mut() = Some(t));
}

fn now() -> DateTime<Utc> {
    NOW.with(|n| *n.borrow()).unwrap_or_else(Utc::now)
}

/// The functions imgbuild has, by name (for "did you mean" and the README).
pub const NAMES: &[&str] = &[
    "abspath",
    "base64decode",
    "base64encode",
    "basename",
    "can",
    "chomp",
    "coalesce",
    "compact",
    "concat",
    "contains",
    "dirname",
    "distinct",
    "element",
    "env",
    "file",
    "flatten",
    "formatdate",
    "format",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "legacy_isotime",
    "legacy_strftime",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "regex",
    "regex_replace",
    "replace",
    "reverse",
    "sha256",
    "sort",
    "split",
    "startswith",
    "substr",
    "templatefile",
    "timestamp",
    "title",
    "tolist",
    "tonumber",
    "toset",
    "tostring",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "upper",
    "uuidv4",
    "values",
    "yamldecode",
];

type F = fn(FuncArgs) -> Result<Value, String>;

/// Declares every function into `ctx`.
pub fn declare(ctx: &mut Context) {
    let any = || ParamType::Any;
    let var = |f: F| FuncDef::builder().variadic_param(ParamType::Any).build(f);
    let fixed = |n: usize, f: F| {
        FuncDef::builder()
            .params((0..n).map(|_| ParamType::Any))
            .build(f)
    };
    let _ = any;
    let table: &[(&str, usize, F)] = &[
        ("abspath", 1, abspath),
        ("base64decode", 1, base64decode),
        ("base64encode", 1, base64encode),
        ("basename", 1, basename),
        ("chomp", 1, chomp),
        ("contains", 2, contains),
        ("dirname", 1, dirname),
        ("distinct", 1, distinct),
        ("element", 2, element),
        ("env", 1, env),
        ("file", 1, file),
        ("flatten", 1, flatten),
        ("formatdate", 2, formatdate),
        ("join", 2, join),
        ("jsondecode", 1, jsondecode),
        ("jsonencode", 1, jsonencode),
        ("keys", 1, keys),
        ("legacy_isotime", 1, legacy_isotime),
        ("legacy_strftime", 1, legacy_strftime),
        ("length", 1, length),
        ("lower", 1, lower),
        ("regex", 2, regex),
        ("regex_replace", 3, regex_replace),
        ("replace", 3, replace),
        ("reverse", 1, reverse),
        ("sha256", 1, sha256),
        ("sort", 1, sort),
        ("split", 2, split),
        ("startswith", 2, startswith),
        ("substr", 3, substr),
        ("templatefile", 2, templatefile),
        ("timestamp", 0, timestamp),
        ("title", 1, title),
        ("tolist", 1, tolist),
        ("tonumber", 1, tonumber),
        ("toset", 1, toset),
        ("tostring", 1, tostring),
        ("trim", 2, trim),
        ("trimprefix", 2, trimprefix),
        ("trimspace", 1, trimspace),
        ("trimsuffix", 2, trimsuffix),
        ("upper", 1, upper),
        ("uuidv4", 0, uuidv4),
        ("values", 1, values),
        ("yamldecode", 1, yamldecode),
    ];
    for (name, n, f) in table {
        ctx.declare_func(*name, fixed(*n, *f));
    }
    let variadic: &[(&str, F)] = &[
        ("can", can),
        ("coalesce", coalesce),
        ("compact", compact),
        ("concat", concat),
        ("format", format),
        ("lookup", lookup),
        ("max", max),
        ("merge", merge),
        ("min", min),
        ("try", try_),
    ];
    for (name, f) in variadic {
        ctx.declare_func(*name, var(*f));
    }
}

// ---- argument helpers ----

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A string argument; numbers and bools convert as HCL converts them.
fn s(a: &FuncArgs, i: usize) -> Result<String, String> {
    match a.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(v) => Err(format!(
            "argument {} must be a string, found {}",
            i + 1,
            type_name(v)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn list(a: &FuncArgs, i: usize) -> Result<Vec<Value>, String> {
    match a.get(i) {
        Some(Value::Array(v)) => Ok(v.clone()),
        Some(v) => Err(format!(
            "argument {} must be a list, found {}",
            i + 1,
            type_name(v)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn map(a: &FuncArgs, i: usize) -> Result<Map<String, Value>, String> {
    match a.get(i) {
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(v) => Err(format!(
            "argument {} must be a map or object, found {}",
            i + 1,
            type_name(v)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn int(a: &FuncArgs, i: usize) -> Result<i64, String> {
    match a.get(i) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("argument {} must be a whole number", i + 1)),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| format!("argument {} must be a whole number", i + 1)),
        Some(v) => Err(format!(
            "argument {} must be a number, found {}",
            i + 1,
            type_name(v)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

/// A value as a string for `format`, `join` and string templates.
pub fn display(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("a null value cannot be used as a string".into()),
        other => Err(format!("a {} cannot be used as a string", type_name(other))),
    }
}

fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

// ---- strings ----

fn lower(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a, 0)?.to_lowercase().into())
}

fn upper(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a, 0)?.to_uppercase().into())
}

fn title(a: FuncArgs) -> Result<Value, String> {
    let text = s(&a, 0)?;
    let mut out = String::new();
    let mut start = true;
    for c in text.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(out.into())
}

fn trimspace(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a, 0)?.trim().to_string().into())
}

fn chomp(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a, 0)?.trim_end_matches(['\n', '\r']).to_string().into())
}

fn trim(a: FuncArgs) -> Result<Value, String> {
    let cut: Vec<char> = s(&a, 1)?.chars().collect();
    Ok(s(&a, 0)?.trim_matches(cut.as_slice()).to_string().into())
}

fn trimprefix(a: FuncArgs) -> Result<Value, String> {
    let (t, p) = (s(&a, 0)?, s(&a, 1)?);
    Ok(t.strip_prefix(&p).unwrap_or(&t).to_string().into())
}

fn trimsuffix(a: FuncArgs) -> Result<Value, String> {
    let (t, p) = (s(&a, 0)?, s(&a, 1)?);
    Ok(t.strip_suffix(&p).unwrap_or(&t).to_string().into())
}

fn startswith(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a, 0)?.starts_with(&s(&a, 1)?).into())
}

fn substr(a: FuncArgs) -> Result<Value, String> {
    let chars: Vec<char> = s(&a, 0)?.chars().collect();
    let n = chars.len() as i64;
    let mut off = int(&a, 1)?;
    if off < 0 {
        off += n;
    }
    let off = off.clamp(0, n) as usize;
    let len = int(&a, 2)?;
    let end = if len < 0 {
        chars.len()
    } else {
        (off + len as usize).min(chars.len())
    };
    Ok(chars[off..end].iter().collect::<String>().into())
}

/// Packer's `replace` (cty's): plain substring replacement; `regex_replace` takes patterns.
fn replace(a: FuncArgs) -> Result<Value, String> {
    let (text, search, with) = (s(&a, 0)?, s(&a, 1)?, s(&a, 2)?);
    Ok(text.replace(&search, &with).into())
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression `{pattern}`: {e}"))
}

/// Go's `$1`/`${name}` replacement syntax is Rust regex's too; only `$$` differs in nothing.
fn go_replacement(with: &str) -> String {
    with.to_string()
}

fn regex_replace(a: FuncArgs) -> Result<Value, String> {
    let (text, pattern, with) = (s(&a, 0)?, s(&a, 1)?, s(&a, 2)?);
    let re = compile(&pattern)?;
    Ok(re
        .replace_all(&text, go_replacement(&with))
        .into_owned()
        .into())
}

/// `regex(pattern, string)`: the match; the capture groups as a list, or as an object when they
/// are named.
fn regex(a: FuncArgs) -> Result<Value, String> {
    let (pattern, text) = (s(&a, 0)?, s(&a, 1)?);
    let re = compile(&pattern)?;
    let caps = re
        .captures(&text)
        .ok_or_else(|| format!("pattern `{pattern}` did not match `{text}`"))?;
    if re.captures_len() == 1 {
        return Ok(caps[0].to_string().into());
    }
    let named: Vec<&str> = re.capture_names().flatten().collect();
    if !named.is_empty() {
        let mut m = Map::new();
        for n in named {
            let v = caps.name(n).map_or(Value::Null, |m| m.as_str().into());
            m.insert(n.to_string(), v);
        }
        return Ok(Value::Object(m));
    }
    Ok(Value::Array(
        (1..re.captures_len())
            .map(|i| caps.get(i).map_or(Value::Null, |m| m.as_str().into()))
            .collect(),
    ))
}

fn split(a: FuncArgs) -> Result<Value, String> {
    let (sep, text) = (s(&a, 0)?, s(&a, 1)?);
    if text.is_empty() {
        return Ok(Value::Array(vec![Value::from("")]));
    }
    Ok(Value::Array(
        text.split(sep.as_str()).map(Value::from).collect(),
    ))
}

fn join(a: FuncArgs) -> Result<Value, String> {
    let sep = s(&a, 0)?;
    let parts = list(&a, 1)?
        .iter()
        .map(display)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(&sep).into())
}

/// Go's fmt verbs as Terraform's `format` supports them: %s %d %f %q %v %t %%.
fn format(a: FuncArgs) -> Result<Value, String> {
    let spec = s(&a, 0)?;
    let mut out = String::new();
    let mut next = 1;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == '#' {
                flags.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("the format ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = a
            .get(next)
            .ok_or_else(|| format!("not enough arguments for the format `{spec}`"))?;
        next += 1;
        let text = match verb {
            's' | 'v' => display(v)?,
            'q' => serde_json::to_string(&display(v)?).unwrap_or_default(),
            't' => match v {
                Value::Bool(b) => b.to_string(),
                _ => return Err("%t needs a bool".into()),
            },
            'd' => match v {
                Value::Number(n) => n
                    .as_i64()
                    .map(|i| i.to_string())
                    .ok_or("%d needs a whole number")?,
                _ => return Err("%d needs a number".into()),
            },
            'f' => {
                let x = match v {
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    _ => return Err("%f needs a number".into()),
                };
                let prec = flags
                    .split_once('.')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(6);
                format!("{x:.prec$}")
            }
            other => return Err(format!("the verb %{other} is not supported")),
        };
        let width: usize = flags
            .trim_start_matches(['-', '+', '#'])
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        if flags.starts_with('-') {
            out.push_str(&format!("{text:<width$}"));
        } else {
            out.push_str(&format!("{text:>width$}"));
        }
    }
    Ok(out.into())
}

// ---- collections ----

fn length(a: FuncArgs) -> Result<Value, String> {
    let n = match a.first() {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(v)) => v.len(),
        Some(Value::Object(m)) => m.len(),
        Some(v) => return Err(format!("cannot take the length of a {}", type_name(v))),
        None => 0,
    };
    Ok(Value::from(n as u64))
}

fn concat(a: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for i in 0..a.len() {
        out.extend(list(&a, i)?);
    }
    Ok(Value::Array(out))
}

fn merge(a: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for i in 0..a.len() {
        if a[i].is_null() {
            continue;
        }
        for (k, v) in map(&a, i)? {
            out.insert(k, v);
        }
    }
    Ok(Value::Object(out))
}

fn lookup(a: FuncArgs) -> Result<Value, String> {
    let m = map(&a, 0)?;
    let key = s(&a, 1)?;
    match (m.get(&key), a.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(format!(
            "the map has no key `{key}` and no default was given"
        )),
    }
}

fn element(a: FuncArgs) -> Result<Value, String> {
    let l = list(&a, 0)?;
    if l.is_empty() {
        return Err("cannot use element on an empty list".into());
    }
    let i = int(&a, 1)?;
    if i < 0 {
        return Err("element's index must not be negative".into());
    }
    Ok(l[i as usize % l.len()].clone())
}

fn keys(a: FuncArgs) -> Result<Value, String> {
    let mut k: Vec<String> = map(&a, 0)?.keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::from).collect()))
}

fn values(a: FuncArgs) -> Result<Value, String> {
    let m = map(&a, 0)?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}

fn contains(a: FuncArgs) -> Result<Value, String> {
    let l = list(&a, 0)?;
    Ok(l.contains(&a[1]).into())
}

fn distinct(a: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in list(&a, 0)? {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

fn flatten(a: FuncArgs) -> Result<Value, String> {
    fn go(v: Vec<Value>, out: &mut Vec<Value>) {
        for x in v {
            match x {
                Value::Array(inner) => go(inner, out),
                other => out.push(other),
            }
        }
    }
    let mut out = Vec::new();
    go(list(&a, 0)?, &mut out);
    Ok(Value::Array(out))
}

fn reverse(a: FuncArgs) -> Result<Value, String> {
    let mut l = list(&a, 0)?;
    l.reverse();
    Ok(Value::Array(l))
}

fn sort(a: FuncArgs) -> Result<Value, String> {
    let mut l = list(&a, 0)?
        .iter()
        .map(display)
        .collect::<Result<Vec<_>, _>>()?;
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::from).collect()))
}

fn compact(a: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for i in 0..a.len() {
        for v in list(&a, i)? {
            if !matches!(&v, Value::String(s) if s.is_empty()) && !v.is_null() {
                out.push(v);
            }
        }
    }
    Ok(Value::Array(out))
}

fn coalesce(a: FuncArgs) -> Result<Value, String> {
    a.iter()
        .find(|v| !v.is_null() && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty argument".into())
}

fn numbers(a: &FuncArgs) -> Result<Vec<f64>, String> {
    if a.is_empty() {
        return Err("at least one number is needed".into());
    }
    a.iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| "not a number".to_string()),
            other => Err(format!("a {} is not a number", type_name(other))),
        })
        .collect()
}

fn max(a: FuncArgs) -> Result<Value, String> {
    Ok(num(numbers(&a)?.into_iter().fold(f64::MIN, f64::max)))
}

fn min(a: FuncArgs) -> Result<Value, String> {
    Ok(num(numbers(&a)?.into_iter().fold(f64::MAX, f64::min)))
}

fn tolist(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(list(&a, 0)?))
}

fn toset(a: FuncArgs) -> Result<Value, String> {
    let mut l = list(&a, 0)?;
    l.sort_by_key(|x| display(x).unwrap_or_default());
    l.dedup();
    Ok(Value::Array(l))
}

fn tostring(a: FuncArgs) -> Result<Value, String> {
    match a.first() {
        Some(Value::Null) => Ok(Value::Null),
        _ => Ok(s(&a, 0)?.into()),
    }
}

fn tonumber(a: FuncArgs) -> Result<Value, String> {
    match a.first() {
        Some(Value::Number(n)) => Ok(Value::Number(*n)),
        Some(Value::String(t)) => t
            .trim()
            .parse::<f64>()
            .map(num)
            .map_err(|_| format!("`{t}` is not a number")),
        Some(Value::Null) => Ok(Value::Null),
        Some(v) => Err(format!("cannot convert a {} to a number", type_name(v))),
        None => Err("argument 1 is missing".into()),
    }
}

// ---- errors as values (fallbacks; see the module doc) ----

fn try_(a: FuncArgs) -> Result<Value, String> {
    a.first()
        .cloned()
        .ok_or_else(|| "try needs at least one argument".into())
}

fn can(_: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(true))
}

// ---- encoding ----

fn jsonencode(a: FuncArgs) -> Result<Value, String> {
    let v: serde_json::Value = hcl_to_json(&a[0]);
    // As Go's encoding/json (Packer's): <, > and & escaped, so the text is safe in HTML.
    let text = serde_json::to_string(&v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    Ok(text.into())
}

pub fn hcl_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or_default(),
        Value::String(s) => s.clone().into(),
        Value::Array(a) => a.iter().map(hcl_to_json).collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), hcl_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

pub fn json_to_hcl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().map_or(Value::Null, Value::from),
        },
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_to_hcl).collect()),
        serde_json::Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json_to_hcl(v))).collect())
        }
    }
}

fn jsondecode(a: FuncArgs) -> Result<Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(&s(&a, 0)?).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(json_to_hcl(&v))
}

fn yamldecode(a: FuncArgs) -> Result<Value, String> {
    let v: serde_json::Value =
        serde_yaml_ng::from_str(&s(&a, 0)?).map_err(|e| format!("invalid YAML: {e}"))?;
    Ok(json_to_hcl(&v))
}

fn base64encode(a: FuncArgs) -> Result<Value, String> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD
        .encode(s(&a, 0)?)
        .into())
}

fn base64decode(a: FuncArgs) -> Result<Value, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s(&a, 0)?.trim())
        .map_err(|e| format!("invalid base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "the decoded bytes are not UTF-8 text".into())
}

fn sha256(a: FuncArgs) -> Result<Value, String> {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s(&a, 0)?.as_bytes());
    Ok(d.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into())
}

fn uuidv4(_: FuncArgs) -> Result<Value, String> {
    Ok(uuid::Uuid::new_v4().to_string().into())
}

// ---- files and the environment ----

fn env(a: FuncArgs) -> Result<Value, String> {
    Ok(std::env::var(s(&a, 0)?).unwrap_or_default().into())
}

fn read(path: &str) -> Result<String, String> {
    crate::template::read_text_file(std::path::Path::new(path), "file").map_err(|d| d.message)
}

fn file(a: FuncArgs) -> Result<Value, String> {
    Ok(read(&s(&a, 0)?)?.into())
}

/// `templatefile(path, vars)`: the file rendered as an HCL string template with `vars` only.
fn templatefile(a: FuncArgs) -> Result<Value, String> {
    use hcl::eval::Evaluate;
    let text = read(&s(&a, 0)?)?;
    let vars = map(&a, 1)?;
    let tmpl: hcl::Template = text
        .parse()
        .map_err(|e| format!("the file is not a valid template: {e}"))?;
    let mut ctx = Context::new();
    declare(&mut ctx);
    for (k, v) in vars {
        ctx.declare_var(k, v);
    }
    tmpl.evaluate(&ctx)
        .map(Value::from)
        .map_err(|e| e.to_string())
}

fn abspath(a: FuncArgs) -> Result<Value, String> {
    let p = s(&a, 0)?;
    std::path::absolute(&p)
        .map(|p| p.display().to_string().into())
        .map_err(|e| format!("cannot make `{p}` absolute: {e}"))
}

fn basename(a: FuncArgs) -> Result<Value, String> {
    let p = s(&a, 0)?;
    Ok(std::path::Path::new(&p)
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        .into())
}

fn dirname(a: FuncArgs) -> Result<Value, String> {
    let p = s(&a, 0)?;
    let d = match p.trim_end_matches('/').rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => p[..i].to_string(),
        None => ".".to_string(),
    };
    Ok(d.into())
}

// ---- time ----

fn timestamp(_: FuncArgs) -> Result<Value, String> {
    Ok(now().to_rfc3339_opts(SecondsFormat::Secs, true).into())
}

fn legacy_isotime(a: FuncArgs) -> Result<Value, String> {
    let layout = s(&a, 0)?;
    Ok(timefmt::go_format(&now(), &layout).into())
}

fn legacy_strftime(a: FuncArgs) -> Result<Value, String> {
    Ok(timefmt::strftime(&now(), &s(&a, 0)?)?.into())
}

/// Terraform's `formatdate(spec, timestamp)`.
fn formatdate(a: FuncArgs) -> Result<Value, String> {
    let spec = s(&a, 0)?;
    let ts = s(&a, 1)?;
    let t = DateTime::parse_from_rfc3339(&ts)
        .map_err(|_| format!("`{ts}` is not an RFC 3339 timestamp (e.g. 2006-01-02T15:04:05Z)"))?;
    let mut out = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\'' {
                out.push(chars[j]);
                j += 1;
            }
            if j == i + 1 && j < chars.len() {
                out.push('\'');
            }
            i = j + 1;
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        i += n;
        if !c.is_ascii_alphabetic() {
            (0..n).for_each(|_| out.push(c));
            continue;
        }
        out.push_str(&date_token(&t, c, n)?);
    }
    Ok(out.into())
}

fn date_token(t: &DateTime<chrono::FixedOffset>, c: char, n: usize) -> Result<String, String> {
    let h12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let off = t.offset().local_minus_utc();
    let zone = |colon: bool| {
        if off == 0 {
            return "Z".to_string();
        }
        let sign = if off < 0 { '-' } else { '+' };
        let (h, m) = (off.abs() / 3600, off.abs() % 3600 / 60);
        if colon {
            format!("{sign}{h:02}:{m:02}")
        } else {
            format!("{sign}{h:02}{m:02}")
        }
    };
    Ok(match (c, n) {
        ('Y', 4) => format!("{:04}", t.year()),
        ('Y', 2) => format!("{:02}", t.year() % 100),
        ('M', 4) => MONTHS[t.month0() as usize].to_string(),
        ('M', 3) => MONTHS[t.month0() as usize][..3].to_string(),
        ('M', 2) => format!("{:02}", t.month()),
        ('M', 1) => t.month().to_string(),
        ('D', 2) => format!("{:02}", t.day()),
        ('D', 1) => t.day().to_string(),
        ('E', 4) => t.format("%A").to_string(),
        ('E', 3) => t.format("%a").to_string(),
        ('h', 2) => format!("{:02}", t.hour()),
        ('h', 1) => t.hour().to_string(),
        ('H', 2) => format!("{h12:02}"),
        ('H', 1) => h12.to_string(),
        ('A', 2) => (if t.hour() < 12 { "AM" } else { "PM" }).to_string(),
        ('a', 2) => (if t.hour() < 12 { "am" } else { "pm" }).to_string(),
        ('m', 2) => format!("{:02}", t.minute()),
        ('m', 1) => t.minute().to_string(),
        ('s', 2) => format!("{:02}", t.second()),
        ('s', 1) => t.second().to_string(),
        ('Z', 5) => zone(true),
        ('Z', 4) => zone(false),
        ('Z', 3) => {
            if off == 0 {
                "UTC".into()
            } else {
                zone(false)
            }
        }
        ('Z', 1) => zone(false),
        _ => {
            return Err(format!(
                "invalid date format verb `{}`",
                std::iter::repeat_n(c, n).collect::<String>()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<Value, String> {
        set_now(
            DateTime::parse_from_rfc3339("2026-03-07T14:05:09Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let mut ctx = Context::new();
        declare(&mut ctx);
        let e: hcl::Expression = src.parse().map_err(|e: hcl::Error| e.to_string())?;
        e.evaluate(&ctx).map_err(|e| e.to_string())
    }

    fn ok(src: &str) -> String {
        match eval(src).unwrap_or_else(|e| panic!("{src}: {e}")) {
            Value::String(s) => s,
            other => show(&other),
        }
    }

    /// A value on one line: `["a", 1]`, `{a = "b"}`.
    fn show(v: &Value) -> String {
        match v {
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
            Value::Object(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{k} = {}", show(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }

    #[test]
    fn string_functions_match_packers_examples() {
        assert_eq!(ok(r#"lower("HELLO")"#), "hello");
        assert_eq!(ok(r#"upper("hello")"#), "HELLO");
        assert_eq!(ok(r#"title("hello world")"#), "Hello World");
        assert_eq!(ok(r#"trimspace("  hello\n\n")"#), "hello");
        assert_eq!(ok(r#"chomp("hello\n\n")"#), "hello");
        assert_eq!(ok(r#"trim("?!hello?!", "!?")"#), "hello");
        assert_eq!(ok(r#"trimprefix("helloworld", "hello")"#), "world");
        assert_eq!(ok(r#"trimsuffix("helloworld", "world")"#), "hello");
        assert_eq!(ok(r#"substr("hello world", 1, 4)"#), "ello");
        assert_eq!(ok(r#"replace("1 + 2 + 3", "+", "-")"#), "1 - 2 - 3");
        // As Packer 1.6.6: no regular expression in `replace`.
        assert_eq!(
            ok(r#"replace("hello world", "/w.*d/", "everybody")"#),
            "hello world"
        );
        assert_eq!(
            ok(r#"regex_replace("2026-03-07T14:05:09Z", "[- TZ:]", "")"#),
            "20260307140509"
        );
        assert_eq!(
            ok(r#"regex("[a-z]+", "53453453.345345aaabbbccc23454")"#),
            "aaabbbccc"
        );
        assert_eq!(
            ok(r#"regex("^(\\d+)-(\\d+)$", "12-34")"#),
            r#"["12", "34"]"#
        );
        assert_eq!(ok(r#"join(", ", ["foo", "bar", "baz"])"#), "foo, bar, baz");
        assert_eq!(
            ok(r#"split(",", "foo,bar,baz")"#),
            r#"["foo", "bar", "baz"]"#
        );
        assert_eq!(ok(r#"format("Hello, %s!", "Ander")"#), "Hello, Ander!");
        assert_eq!(
            ok(r#"format("There are %d lights", 4)"#),
            "There are 4 lights"
        );
        assert_eq!(
            ok(r#"format("%.2f|%5s|%-3s|%%", 3.14159, "ab", "c")"#),
            "3.14|   ab|c  |%"
        );
        assert_eq!(ok(r#"startswith("hello world", "hello")"#), "true");
    }

    #[test]
    fn collection_functions_match_packers_examples() {
        assert_eq!(
            ok(r#"concat(["a", ""], ["b", "c"])"#),
            r#"["a", "", "b", "c"]"#
        );
        assert_eq!(
            ok(r#"merge({a="b", c="d"}, {e="f", c="z"})"#),
            r#"{a = "b", c = "z", e = "f"}"#
        );
        assert_eq!(ok(r#"lookup({a="ay", b="bee"}, "a", "what?")"#), "ay");
        assert_eq!(ok(r#"lookup({a="ay", b="bee"}, "c", "what?")"#), "what?");
        assert_eq!(ok(r#"element(["a", "b", "c"], 1)"#), "b");
        assert_eq!(ok(r#"element(["a", "b", "c"], 3)"#), "a");
        assert_eq!(ok(r#"keys({a=1, c=2, d=3})"#), r#"["a", "c", "d"]"#);
        assert_eq!(ok(r#"values({a=3, c=2, d=1})"#), "[3, 2, 1]");
        assert_eq!(ok(r#"length([])"#), "0");
        assert_eq!(ok(r#"length(["a", "b"])"#), "2");
        assert_eq!(ok(r#"length({"a" = "b"})"#), "1");
        assert_eq!(ok(r#"length("hello")"#), "5");
        assert_eq!(ok(r#"coalesce("", "b")"#), "b");
        assert_eq!(ok(r#"coalesce(1, 2)"#), "1");
        assert_eq!(ok(r#"contains(["a", "b", "c"], "a")"#), "true");
        assert_eq!(
            ok(r#"distinct(["a", "b", "a", "c", "d", "b"])"#),
            r#"["a", "b", "c", "d"]"#
        );
        assert_eq!(
            ok(r#"flatten([["a", "b"], [], ["c"]])"#),
            r#"["a", "b", "c"]"#
        );
        assert_eq!(
            ok(r#"sort(["e", "d", "a", "x"])"#),
            r#"["a", "d", "e", "x"]"#
        );
        assert_eq!(ok(r#"reverse([1, 2, 3])"#), "[3, 2, 1]");
        assert_eq!(
            ok(r#"compact(["a", "", "b", null, "c"])"#),
            r#"["a", "b", "c"]"#
        );
        assert_eq!(ok(r#"max(12, 54, 3)"#), "54");
        assert_eq!(ok(r#"min(12, 54, 3)"#), "3");
        assert_eq!(ok(r#"tonumber("1")"#), "1");
        assert_eq!(ok(r#"tostring(2)"#), "2");
    }

    #[test]
    fn encoding_functions_match_packers_examples() {
        assert_eq!(
            ok(r#"jsonencode({"hello"="world"})"#),
            r#"{"hello":"world"}"#
        );
        assert_eq!(ok(r#"jsonencode("<a&b>")"#), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(ok(r#"jsondecode("{\"hello\": \"world\"}").hello"#), "world");
        assert_eq!(ok(r#"jsondecode("true")"#), "true");
        assert_eq!(ok(r#"yamldecode("hello: world").hello"#), "world");
        assert_eq!(ok(r#"yamldecode("- a\n- b")[1]"#), "b");
        assert_eq!(ok(r#"base64encode("Hello World")"#), "SGVsbG8gV29ybGQ=");
        assert_eq!(ok(r#"base64decode("SGVsbG8gV29ybGQ=")"#), "Hello World");
        assert_eq!(
            ok(r#"sha256("hello world")"#),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(ok("length(uuidv4())"), "36");
    }

    #[test]
    fn time_functions_match_packers_examples() {
        assert_eq!(ok("timestamp()"), "2026-03-07T14:05:09Z");
        assert_eq!(
            ok(r#"formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z")"#),
            "02 Jan 2018 23:12 UTC"
        );
        assert_eq!(
            ok(r#"formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2018-01-02T23:12:01Z")"#),
            "Tuesday, 02-Jan-18 23:12:01 UTC"
        );
        assert_eq!(
            ok(r#"formatdate("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00")"#),
            "Tue, 02 Jan 2018 23:12:01 -0800"
        );
        assert_eq!(
            ok(r#"formatdate("MMM DD, YYYY", "2018-01-02T23:12:01Z")"#),
            "Jan 02, 2018"
        );
        assert_eq!(
            ok(r#"formatdate("HH:mmaa", "2018-01-02T23:12:01Z")"#),
            "11:12pm"
        );
        assert_eq!(
            ok(r#"formatdate("h'h'mm", "2018-01-02T23:12:01-08:00")"#),
            "23h12"
        );
        assert_eq!(ok(r#"legacy_isotime("2006-01-02")"#), "2026-03-07");
        assert_eq!(ok(r#"legacy_strftime("%Y-%m-%d")"#), "2026-03-07");
    }

    #[test]
    fn path_and_environment_functions() {
        assert_eq!(ok(r#"basename("foo/bar/baz.txt")"#), "baz.txt");
        assert_eq!(ok(r#"dirname("foo/bar/baz.txt")"#), "foo/bar");
        assert_eq!(ok(r#"dirname("/baz.txt")"#), "/");
        assert!(ok(r#"abspath("a/b")"#).ends_with("/a/b"));
        assert_eq!(ok(r#"env("IMGBUILD_TEST_SURELY_UNSET_VARIABLE")"#), "");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.tpl");
        std::fs::write(&f, "%{ for a in list ~}\n${a}:${name}\n%{ endfor ~}\n").unwrap();
        let p = f.display().to_string();
        assert_eq!(
            ok(&format!(r#"file("{p}")"#)),
            "%{ for a in list ~}\n${a}:${name}\n%{ endfor ~}\n"
        );
        assert_eq!(
            ok(&format!(
                r#"templatefile("{p}", {{list = ["x", "y"], name = "n"}})"#
            )),
            "x:n\ny:n\n"
        );
    }

    #[test]
    fn bad_arguments_are_errors_that_say_what_is_wrong() {
        assert!(eval(r#"element([], 0)"#)
            .unwrap_err()
            .contains("empty list"));
        assert!(eval(r#"lookup({}, "k")"#)
            .unwrap_err()
            .contains("no key `k`"));
        assert!(eval(r#"formatdate("YYYY", "yesterday")"#)
            .unwrap_err()
            .contains("not an RFC 3339 timestamp"));
        assert!(eval(r#"regex_replace("a", "(", "")"#)
            .unwrap_err()
            .contains("invalid regular expression"));
        assert!(eval(r#"base64decode("%%%")"#)
            .unwrap_err()
            .contains("invalid base64"));
        assert!(eval(r#"upper([1])"#)
            .unwrap_err()
            .contains("must be a string, found list"));
    }
}
