//! HCL2 variable types (`string`, `list(object({a = string, b = optional(number, 1)}))`, ...)
//! and the conversion of a value to one, as cty converts (Packer's HCL2 is cty underneath):
//! numbers and bools become strings, text becomes a number or a bool where it reads as one,
//! lists, sets and tuples convert element by element, maps and objects attribute by attribute;
//! an object's attributes are required unless `optional(...)`, and attributes the type does not
//! name are dropped. A failed conversion says where in the value (`[0].a`) and what it wanted.

use std::fmt;

use hcl::{Expression, Map, ObjectKey, Value};

/// A declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Any,
    String,
    Number,
    Bool,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>),
    Tuple(Vec<Ty>),
    Object(Vec<Attr>),
}

/// An object type's attribute: `name = TYPE` or `name = optional(TYPE[, DEFAULT])`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: String,
    pub ty: Ty,
    /// `Some` for `optional(...)`: the default when absent (null without one).
    pub optional: Option<Value>,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Any => f.write_str("any"),
            Ty::String => f.write_str("string"),
            Ty::Number => f.write_str("number"),
            Ty::Bool => f.write_str("bool"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Set(t) => write!(f, "set({t})"),
            Ty::Map(t) => write!(f, "map({t})"),
            Ty::Tuple(ts) => {
                let items: Vec<String> = ts.iter().map(Ty::to_string).collect();
                write!(f, "tuple([{}])", items.join(", "))
            }
            Ty::Object(attrs) => {
                let items: Vec<String> = attrs
                    .iter()
                    .map(|a| match &a.optional {
                        Some(_) => format!("{}=optional({})", a.name, a.ty),
                        None => format!("{}={}", a.name, a.ty),
                    })
                    .collect();
                write!(f, "object({{{}}})", items.join(", "))
            }
        }
    }
}

/// Parses a type expression (the value of a variable's `type`).
pub fn parse(e: &Expression) -> Result<Ty, String> {
    parse_in(e, false).map(|(t, _)| t)
}

/// A type, and (inside an object type, `in_object`) its `optional(...)` default.
fn parse_in(e: &Expression, in_object: bool) -> Result<(Ty, Option<Value>), String> {
    let bad = || {
        format!(
            "`{e}` is not a type: use string, number, bool, any, list(T), set(T), map(T), tuple([T, ...]) or object({{name = T, ...}})"
        )
    };
    match e {
        Expression::Variable(v) => match v.as_str() {
            "string" => Ok((Ty::String, None)),
            "number" => Ok((Ty::Number, None)),
            "bool" => Ok((Ty::Bool, None)),
            "any" => Ok((Ty::Any, None)),
            // Terraform 0.11's bare collection types.
            "list" => Ok((Ty::List(Box::new(Ty::Any)), None)),
            "map" => Ok((Ty::Map(Box::new(Ty::Any)), None)),
            _ => Err(bad()),
        },
        Expression::FuncCall(fc) if fc.name.namespace.is_empty() => {
            let name = fc.name.name.as_str();
            let one = |args: &[Expression]| -> Result<Ty, String> {
                match args {
                    [a] => parse_in(a, false).map(|(t, _)| t),
                    _ => Err(format!("`{name}(...)` takes one type, e.g. {name}(string)")),
                }
            };
            match (name, fc.args.as_slice()) {
                ("list", args) => Ok((Ty::List(Box::new(one(args)?)), None)),
                ("set", args) => Ok((Ty::Set(Box::new(one(args)?)), None)),
                ("map", args) => Ok((Ty::Map(Box::new(one(args)?)), None)),
                ("tuple", [Expression::Array(items)]) => {
                    let ts = items
                        .iter()
                        .map(|i| parse_in(i, false).map(|(t, _)| t))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((Ty::Tuple(ts), None))
                }
                ("object", [Expression::Object(o)]) => {
                    let mut attrs = Vec::new();
                    for (k, v) in o.iter() {
                        let name = match k {
                            ObjectKey::Identifier(i) => i.to_string(),
                            ObjectKey::Expression(Expression::String(s)) => s.clone(),
                            ObjectKey::Expression(other) => {
                                return Err(format!("`{other}` is not an attribute name"))
                            }
                            _ => return Err(bad()),
                        };
                        let (ty, optional) = parse_in(v, true)?;
                        attrs.push(Attr { name, ty, optional });
                    }
                    Ok((Ty::Object(attrs), None))
                }
                ("optional", args) if in_object => match args {
                    [t] => Ok((parse_in(t, false)?.0, Some(Value::Null))),
                    [t, d] => {
                        let ty = parse_in(t, false)?.0;
                        let d = hcl::eval::Evaluate::evaluate(d, &hcl::eval::Context::new())
                            .map_err(|e| format!("the default of `optional(...)`: {e}"))?;
                        let d = convert(d, &ty).map_err(|e| {
                            format!(
                                "the default of `optional(...)` is not a {ty}: {}",
                                e.message
                            )
                        })?;
                        Ok((ty, Some(d)))
                    }
                    _ => Err("`optional(TYPE)` or `optional(TYPE, DEFAULT)`".into()),
                },
                ("optional", _) => {
                    Err("`optional(...)` is only allowed for an attribute of an object type".into())
                }
                _ => Err(bad()),
            }
        }
        // Terraform 0.11's quoted types (`type = "string"`) are not types in HCL2.
        Expression::String(s)
            if s.parse::<Expression>()
                .is_ok_and(|t| !matches!(t, Expression::String(_)) && parse(&t).is_ok()) =>
        {
            Err(format!(
                "`\"{s}\"` is a string, not a type: write it without quotes, type = {s}"
            ))
        }
        _ => Err(bad()),
    }
}

/// One step into a value: a list element or an object attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Index(usize),
    Key(String),
}

/// A failed conversion: where in the value, and what was wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvError {
    pub path: Vec<Seg>,
    pub message: String,
}

impl ConvError {
    fn new(message: String) -> ConvError {
        ConvError {
            path: Vec::new(),
            message,
        }
    }

    fn under(mut self, seg: Seg) -> ConvError {
        self.path.insert(0, seg);
        self
    }

    /// `[0].a` (empty for the whole value).
    pub fn at(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
                Seg::Key(k) if is_ident(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Key(k) => s.push_str(&format!("[{k:?}]")),
            }
        }
        s
    }
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at() {
            at if at.is_empty() => f.write_str(&self.message),
            at => write!(f, "at `{at}`: {}", self.message),
        }
    }
}

fn is_ident(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// What a value is, in a message.
fn found(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the bool {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `v` converted to `ty` (module doc).
pub fn convert(v: Value, ty: &Ty) -> Result<Value, ConvError> {
    let want = |what: &str, v: &Value| {
        Err(ConvError::new(format!(
            "{what} is required, found {}",
            found(v)
        )))
    };
    match (ty, v) {
        (_, Value::Null) => Ok(Value::Null),
        (Ty::Any, v) => Ok(v),
        (Ty::String, v @ Value::String(_)) => Ok(v),
        (Ty::String, Value::Number(n)) => Ok(Value::from(n.to_string())),
        (Ty::String, Value::Bool(b)) => Ok(Value::from(b.to_string())),
        (Ty::Number, v @ Value::Number(_)) => Ok(v),
        (Ty::Number, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Value::from(x)),
                _ => want("a number", &Value::String(s)),
            },
        },
        (Ty::Bool, v @ Value::Bool(_)) => Ok(v),
        (Ty::Bool, Value::String(s)) => match s.as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => match s.to_lowercase().as_str() {
                lower @ ("true" | "false") => Err(ConvError::new(format!(
                    "a bool is required; to convert from string, use lowercase \"{lower}\""
                ))),
                _ => want("a bool", &Value::String(s)),
            },
        },
        (Ty::List(t) | Ty::Set(t), Value::Array(items)) => {
            let mut out: Vec<Value> = items
                .into_iter()
                .enumerate()
                .map(|(i, x)| convert(x, t).map_err(|e| e.under(Seg::Index(i))))
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(ty, Ty::Set(_)) {
                // A set holds each value once.
                let mut seen = Vec::new();
                out.retain(|x| {
                    let new = !seen.contains(x);
                    if new {
                        seen.push(x.clone());
                    }
                    new
                });
            }
            Ok(Value::Array(out))
        }
        (Ty::Tuple(ts), Value::Array(items)) if ts.len() == items.len() => items
            .into_iter()
            .zip(ts)
            .enumerate()
            .map(|(i, (x, t))| convert(x, t).map_err(|e| e.under(Seg::Index(i))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (Ty::Tuple(ts), Value::Array(items)) => Err(ConvError::new(format!(
            "a tuple of {} element(s) is required, found a list of {}",
            ts.len(),
            items.len()
        ))),
        (Ty::Map(t), Value::Object(m)) => {
            let mut out = Map::new();
            for (k, x) in m {
                let x = convert(x, t).map_err(|e| e.under(Seg::Key(k.clone())))?;
                out.insert(k, x);
            }
            Ok(Value::Object(out))
        }
        (Ty::Object(attrs), Value::Object(mut m)) => {
            let mut out = Map::new();
            for a in attrs {
                match (m.shift_remove(&a.name), &a.optional) {
                    (Some(x), _) => {
                        let x = convert(x, &a.ty).map_err(|e| e.under(Seg::Key(a.name.clone())))?;
                        out.insert(a.name.clone(), x);
                    }
                    (None, Some(d)) => {
                        out.insert(a.name.clone(), d.clone());
                    }
                    (None, None) => {
                        return Err(ConvError::new(format!(
                            "attribute \"{}\" is required (the type is {ty})",
                            a.name
                        )))
                    }
                }
            }
            // Attributes the type does not name are dropped, as cty drops them.
            Ok(Value::Object(out))
        }
        (Ty::List(t), v) => want(&format!("a list of {t}"), &v),
        (Ty::Set(t), v) => want(&format!("a set of {t}"), &v),
        (Ty::Map(t), v) => want(&format!("a map of {t}"), &v),
        (Ty::Tuple(_), v) => want("a tuple", &v),
        (Ty::Object(_), v) => want("an object", &v),
        (Ty::String, v) => want("a string", &v),
        (Ty::Number, v) => want("a number", &v),
        (Ty::Bool, v) => want("a bool", &v),
    }
}

/// Where in an HCL expression the value at `path` was written (the deepest part found).
pub fn locate<'e>(
    e: &'e hcl::edit::expr::Expression,
    path: &[Seg],
) -> &'e hcl::edit::expr::Expression {
    use hcl::edit::expr::{Expression as E, ObjectKey as K};
    let Some((first, rest)) = path.split_first() else {
        return e;
    };
    let inner = match (e, first) {
        (E::Array(a), Seg::Index(i)) => a.get(*i),
        (E::Object(o), Seg::Key(k)) => o
            .iter()
            .find(|(key, _)| match key {
                K::Ident(i) => i.as_str() == k,
                K::Expression(E::String(s)) => s.value() == k,
                K::Expression(_) => false,
            })
            .map(|(_, v)| v.expr()),
        (E::Parenthesis(p), _) => return locate(p.inner(), path),
        _ => None,
    };
    inner.map_or(e, |i| locate(i, rest))
}

/// Where in a JSON value the value at `path` was written (the deepest part found).
pub fn locate_json<'n>(
    n: &'n crate::template::json::Node,
    path: &[Seg],
) -> &'n crate::template::json::Node {
    let Some((first, rest)) = path.split_first() else {
        return n;
    };
    let inner = match first {
        Seg::Index(i) => n.as_array().and_then(|a| a.get(*i)),
        Seg::Key(k) => n.get(k).map(|m| &m.value),
    };
    inner.map_or(n, |i| locate_json(i, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Ty {
        parse(&s.parse::<Expression>().expect("expression")).expect("type")
    }

    fn val(s: &str) -> Value {
        let e: Expression = s.parse().expect("value");
        hcl::eval::Evaluate::evaluate(&e, &hcl::eval::Context::new()).expect("evaluates")
    }

    fn conv(v: &str, t: &str) -> Result<Value, String> {
        convert(val(v), &ty(t)).map_err(|e| e.to_string())
    }

    #[test]
    fn values_convert_deeply_as_cty_converts_them() {
        let ok: &[(&str, &str, &str)] = &[
            ("\"x\"", "string", "\"x\""),
            ("3", "string", "\"3\""),
            ("true", "string", "\"true\""),
            ("\"3\"", "number", "3"),
            ("\"1\"", "bool", "true"),
            ("\"false\"", "bool", "false"),
            ("[1, \"2\"]", "list(string)", "[\"1\", \"2\"]"),
            ("[\"1\", 1, 2]", "set(number)", "[1, 2]"),
            ("{a = 1}", "map(string)", "{a = \"1\"}"),
            ("[1, \"x\"]", "tuple([number, string])", "[1, \"x\"]"),
            (
                "[{a = \"x\", extra = 1}]",
                "list(object({a=string}))",
                "[{a = \"x\"}]",
            ),
            (
                "{}",
                "object({a=optional(string), b=optional(number, 7)})",
                "{a = null, b = 7}",
            ),
            ("{a = [1]}", "any", "{a = [1]}"),
            ("[{a = {}}]", "list(any)", "[{a = {}}]"),
            ("null", "list(string)", "null"),
            ("[1]", "list", "[1]"),
        ];
        for (v, t, want) in ok {
            assert_eq!(conv(v, t), Ok(val(want)), "{v} as {t}");
        }
        let bad: &[(&str, &str, &str)] = &[
            (
                "[{a = {}}]",
                "list(object({a=string}))",
                "at `[0].a`: a string is required, found an object",
            ),
            (
                "[{b = 1}]",
                "list(object({a=string}))",
                "at `[0]`: attribute \"a\" is required (the type is object({a=string}))",
            ),
            (
                "\"x\"",
                "list(string)",
                "a list of string is required, found the string \"x\"",
            ),
            (
                "\"x\"",
                "number",
                "a number is required, found the string \"x\"",
            ),
            (
                "\"True\"",
                "bool",
                "a bool is required; to convert from string, use lowercase \"true\"",
            ),
            ("1", "bool", "a bool is required, found the number 1"),
            (
                "{a = [1]}",
                "map(number)",
                "at `a`: a number is required, found a list",
            ),
            (
                "[1, 2, 3]",
                "tuple([number, number])",
                "a tuple of 2 element(s) is required, found a list of 3",
            ),
            (
                "{\"a b\" = {c = \"x\"}}",
                "map(object({c=number}))",
                "at `[\"a b\"].c`: a number is required, found the string \"x\"",
            ),
        ];
        for (v, t, want) in bad {
            assert_eq!(conv(v, t), Err(want.to_string()), "{v} as {t}");
        }
    }

    #[test]
    fn types_parse_and_print_as_written() {
        for t in [
            "list(object({a=string, b=optional(number)}))",
            "map(set(bool))",
            "tuple([string, any])",
        ] {
            assert_eq!(ty(t).to_string(), t);
        }
        let e: Expression = "strin".parse().expect("expression");
        assert!(parse(&e).unwrap_err().starts_with("`strin` is not a type"));
        let e: Expression = "\"string\"".parse().expect("expression");
        assert_eq!(
            parse(&e).unwrap_err(),
            "`\"string\"` is a string, not a type: write it without quotes, type = string"
        );
        let e: Expression = "optional(string)".parse().expect("expression");
        assert!(parse(&e)
            .unwrap_err()
            .contains("only allowed for an attribute"));
    }
}
