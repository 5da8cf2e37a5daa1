//! Evaluating HCL2 bodies into the JSON model (`template::json::Node`) the decoders read, with
//! spans that point into the HCL source: attributes become members, nested blocks become objects
//! (a single block) or arrays of objects (a repeatable one) as Packer's per-field schema says,
//! `dynamic` blocks are expanded, and `try`/`can` see their arguments unevaluated.

use std::sync::Arc;

use hcl::edit::structure::{Block, Body, Structure};
use hcl::edit::Span as _;
use hcl::eval::{Context, ErrorKind, Evaluate};

/// The evaluation context every part of the HCL2 front end uses.
pub type Ctx = Context<'static>;
use hcl::{Expression, Value};

use crate::template::diag::{closest, Diagnostic, Diagnostics, JsonPath, SourceFile};
use crate::template::json::{Kind, Member, Node, Span};

/// Where problems go: the (joined) source and the offset of the file being read in it.
pub struct Cx<'a> {
    pub file: &'a Arc<SourceFile>,
    pub diags: &'a mut Diagnostics,
    /// Byte offset of the current file within `file` (a folder's files are joined).
    pub base: usize,
    /// For a `.pkr.json` file (by its `base`): native-text positions back to its JSON text.
    pub maps: std::collections::BTreeMap<usize, super::json_syntax::SpanMap>,
}

impl Cx<'_> {
    pub fn span(&self, r: Option<std::ops::Range<usize>>) -> Span {
        let r = r.unwrap_or(0..0);
        if let Some(m) = self.maps.get(&self.base) {
            let s = m.map(r.start);
            return Span::new(self.base + s.start, self.base + s.end);
        }
        Span::new(self.base + r.start, self.base + r.end)
    }

    pub fn error(
        &mut self,
        span: Span,
        path: &JsonPath,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        let mut d = Diagnostic::error(msg).at(self.file, span);
        if !path.is_root() {
            d = d.path(path);
        }
        self.diags.push(d);
        self.diags.items.last_mut().expect("just pushed")
    }
}

/// Block names whose blocks are single objects in the JSON model (Packer's `BlockSpec`); every
/// other nested block is repeatable and becomes an array (`BlockListSpec`).
pub const SINGLE_BLOCKS: &[&str] = &[
    "source_ami_filter",
    "subnet_filter",
    "vpc_filter",
    "security_group_filter",
    "metadata_options",
    "fast_launch",
    "assume_role",
    "aws_polling",
    "temporary_iam_instance_profile_policy_document",
    "placement",
    "ssh_bastion",
];

/// Repeatable `key`/`value` blocks that Packer folds into a map attribute.
const TAG_BLOCKS: &[(&str, &str)] = &[("tag", "tags"), ("run_tag", "run_tags")];

/// Evaluates an expression (`try`/`can` first, see the module doc).
pub fn eval(expr: &hcl::edit::expr::Expression, ctx: &Ctx) -> Result<Value, String> {
    let mut e = Expression::from(expr.clone());
    resolve_try(&mut e, ctx);
    e.evaluate(ctx)
        .map_err(|e| describe(e.kind(), e.expr(), &e.to_string()))
}

/// The evaluator's error in the words of a template author.
fn describe(kind: &ErrorKind, expr: Option<&Expression>, whole: &str) -> String {
    match kind {
        ErrorKind::UndefinedFunc(f) => {
            let name = f.to_string();
            let mut m = format!("there is no function `{name}` in imgbuild's HCL2");
            if let Some(c) = closest(&name, super::funcs::NAMES.iter().copied()) {
                m.push_str(&format!(" (did you mean `{c}`?)"));
            }
            m
        }
        ErrorKind::UndefinedVar(v) => format!(
            "unknown name `{v}`: use var.NAME, local.NAME, data.TYPE.NAME, path.root, path.cwd, build.*, source.* or packer.version"
        ),
        ErrorKind::NoSuchKey(k) => {
            let e = expr.map(|e| e.to_string()).unwrap_or_default();
            if e.contains(&format!("var.{k}")) {
                format!("there is no variable `{k}`; declare it with variable \"{k}\" {{ type = string }}")
            } else if e.contains(&format!("local.{k}")) {
                format!("there is no local `{k}`")
            } else if e.is_empty() {
                format!("there is no attribute or key `{k}`")
            } else {
                format!("`{e}` has no attribute or key `{k}`")
            }
        }
        _ => whole.to_string(),
    }
}

/// Replaces `try(...)` and `can(...)` calls by their values, evaluating each argument alone.
fn resolve_try(e: &mut Expression, ctx: &Ctx) {
    match e {
        Expression::FuncCall(fc) => {
            for a in fc.args.iter_mut() {
                resolve_try(a, ctx);
            }
            if !fc.name.namespace.is_empty() {
                return;
            }
            match fc.name.name.as_str() {
                "try" => {
                    if let Some(v) = fc.args.iter().find_map(|a| a.evaluate(ctx).ok()) {
                        *e = Expression::from(v);
                    }
                }
                "can" if fc.args.len() == 1 => {
                    *e = Expression::Bool(fc.args[0].evaluate(ctx).is_ok());
                }
                _ => {}
            }
        }
        Expression::Array(items) => items.iter_mut().for_each(|a| resolve_try(a, ctx)),
        Expression::Object(m) => m.iter_mut().for_each(|(_, v)| resolve_try(v, ctx)),
        Expression::Parenthesis(inner) => resolve_try(inner, ctx),
        Expression::Conditional(c) => {
            resolve_try(&mut c.cond_expr, ctx);
            resolve_try(&mut c.true_expr, ctx);
            resolve_try(&mut c.false_expr, ctx);
        }
        Expression::Operation(op) => match op.as_mut() {
            hcl::expr::Operation::Unary(u) => resolve_try(&mut u.expr, ctx),
            hcl::expr::Operation::Binary(b) => {
                resolve_try(&mut b.lhs_expr, ctx);
                resolve_try(&mut b.rhs_expr, ctx);
            }
        },
        Expression::Traversal(t) => resolve_try(&mut t.expr, ctx),
        Expression::ForExpr(fe) => {
            let text = Expression::ForExpr(fe.clone()).to_string();
            if !(text.contains("try(") || text.contains("can(")) {
                return;
            }
            if let Some(v) = for_with_try(fe, ctx) {
                *e = Expression::from(v);
            }
        }
        Expression::TemplateExpr(t) => {
            let text = t.to_string();
            if !(text.contains("try(") || text.contains("can(")) {
                return;
            }
            let Ok(mut tmpl) = hcl::Template::from_expr(t) else {
                return;
            };
            resolve_try_in_template(&mut tmpl, ctx);
            // `"${x}"` alone is `x` itself (HCL's interpolation unwrapping); any other
            // template is a string. What still fails is reported by the caller's evaluation.
            match tmpl.elements() {
                [hcl::template::Element::Interpolation(i)] => *e = i.expr.clone(),
                _ => {
                    if let Ok(s) = tmpl.evaluate(ctx) {
                        *e = Expression::String(s);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A `for` expression whose body uses `try`/`can`, evaluated here with each element bound, so
/// that `[for d in var.disks : try(d.size, 8)]` catches as `try` does anywhere else. `None`
/// when anything fails: the caller's evaluation then reports the error as usual.
fn for_with_try(fe: &hcl::expr::ForExpr, ctx: &Ctx) -> Option<Value> {
    let items: Vec<(Value, Value)> = match fe.collection_expr.evaluate(ctx).ok()? {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v))
            .collect(),
        Value::Object(m) => m.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        _ => return None,
    };
    let mut list = Vec::new();
    let mut obj = hcl::Map::new();
    for (k, v) in items {
        let mut inner = ctx.clone();
        if let Some(kv) = &fe.key_var {
            inner.declare_var(kv.clone(), k);
        }
        inner.declare_var(fe.value_var.clone(), v);
        let ev = |x: &Expression| {
            let mut x = x.clone();
            resolve_try(&mut x, &inner);
            x.evaluate(&inner).ok()
        };
        if let Some(c) = &fe.cond_expr {
            match ev(c)? {
                Value::Bool(true) => {}
                Value::Bool(false) => continue,
                _ => return None,
            }
        }
        let val = ev(&fe.value_expr)?;
        let Some(ke) = &fe.key_expr else {
            list.push(val);
            continue;
        };
        let key = match ev(ke)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        if fe.grouping {
            let group = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
            group.as_array_mut()?.push(val);
        } else if obj.insert(key, val).is_some() {
            return None;
        }
    }
    Some(match fe.key_expr {
        Some(_) => Value::Object(obj),
        None => Value::Array(list),
    })
}

/// `try`/`can` inside a template's interpolations and `%{ if }` directives. A `%{ for }`
/// directive's body is left alone: its iteration variables are bound only while it runs.
fn resolve_try_in_template(t: &mut hcl::Template, ctx: &Ctx) {
    use hcl::template::{Directive, Element};
    for el in t.elements_mut() {
        match el {
            Element::Literal(_) => {}
            Element::Interpolation(i) => resolve_try(&mut i.expr, ctx),
            Element::Directive(d) => match d.as_mut() {
                Directive::If(d) => {
                    resolve_try(&mut d.cond_expr, ctx);
                    resolve_try_in_template(&mut d.true_template, ctx);
                    if let Some(f) = &mut d.false_template {
                        resolve_try_in_template(f, ctx);
                    }
                }
                Directive::For(d) => resolve_try(&mut d.collection_expr, ctx),
            },
        }
    }
}

/// A value as a JSON-model node located at `span`.
pub fn to_node(v: &Value, span: Span) -> Node {
    let kind = match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => Kind::Number(n.to_string()),
        Value::String(s) => Kind::String(s.clone()),
        Value::Array(a) => Kind::Array(a.iter().map(|x| to_node(x, span)).collect()),
        Value::Object(m) => Kind::Object(
            m.iter()
                .map(|(k, x)| Member {
                    key: k.clone(),
                    key_span: span,
                    value: to_node(x, span),
                })
                .collect(),
        ),
    };
    Node { span, kind }
}

/// A block's label text.
pub fn labels(b: &Block) -> Vec<String> {
    b.labels.iter().map(|l| l.as_str().to_string()).collect()
}

/// A block body as an object node: attributes evaluated, nested blocks by the schema, `dynamic`
/// blocks expanded. Keys in `skip` are left out (the caller reads them itself).
pub fn body_node(body: &Body, ctx: &Ctx, cx: &mut Cx, path: &JsonPath, skip: &[&str]) -> Node {
    let mut members: Vec<Member> = Vec::new();
    let mut lists: Vec<(String, Span, Vec<Node>)> = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let key = a.key.as_str().to_string();
                if skip.contains(&key.as_str()) {
                    continue;
                }
                let key_span = cx.span(a.key.span());
                let vspan = cx.span(a.value.span());
                let p = path.key(&key);
                if let Some(first) = members.iter().find(|m| m.key == key) {
                    let (l, c) = cx.file.line_col(first.key_span.start);
                    cx.error(key_span, &p, format!("`{key}` is set twice"))
                        .notes
                        .push(format!("note: first set at line {l}, column {c}"));
                    continue;
                }
                match eval(&a.value, ctx) {
                    Ok(v) => members.push(Member {
                        key,
                        key_span,
                        value: to_node(&v, vspan),
                    }),
                    Err(e) => {
                        cx.error(vspan, &p, format!("cannot evaluate `{key}`: {e}"));
                    }
                }
            }
            Structure::Block(b) => {
                let name = b.ident.as_str();
                if skip.contains(&name) {
                    continue;
                }
                let span = cx.span(b.ident.span());
                if name == "dynamic" {
                    for (n, node) in dynamic(b, ctx, cx, path) {
                        push_block(&mut members, &mut lists, &n, span, node);
                    }
                    continue;
                }
                if !b.labels.is_empty() {
                    cx.error(
                        span,
                        &path.key(name),
                        format!("the block `{name}` takes no labels here"),
                    );
                    continue;
                }
                let node = body_node(&b.body, ctx, cx, &path.key(name), &[]);
                let node = Node { span, ..node };
                push_block(&mut members, &mut lists, name, span, node);
            }
        }
    }
    for (name, span, items) in lists {
        if let Some((_, map_key)) = TAG_BLOCKS.iter().find(|(b, _)| *b == name) {
            fold_tags(&mut members, map_key, &items, span, cx, path);
            continue;
        }
        members.push(Member {
            key: name,
            key_span: span,
            value: Node {
                span,
                kind: Kind::Array(items),
            },
        });
    }
    let span = cx.span(body.span());
    Node {
        span,
        kind: Kind::Object(members),
    }
}

fn push_block(
    members: &mut Vec<Member>,
    lists: &mut Vec<(String, Span, Vec<Node>)>,
    name: &str,
    span: Span,
    node: Node,
) {
    if SINGLE_BLOCKS.contains(&name) {
        members.push(Member {
            key: name.to_string(),
            key_span: span,
            value: node,
        });
    } else if let Some(l) = lists.iter_mut().find(|l| l.0 == name) {
        l.2.push(node);
    } else {
        lists.push((name.to_string(), span, vec![node]));
    }
}

/// `tag { key = "k"  value = "v" }` blocks into the `tags` map.
fn fold_tags(
    members: &mut Vec<Member>,
    map_key: &str,
    items: &[Node],
    span: Span,
    cx: &mut Cx,
    path: &JsonPath,
) {
    let mut pairs = Vec::new();
    for item in items {
        let get = |k: &str| {
            item.get(k)
                .and_then(|m| m.value.as_str().map(str::to_string))
        };
        match (get("key"), get("value")) {
            (Some(k), Some(v)) => pairs.push(Member {
                key: k,
                key_span: item.span,
                value: Node {
                    span: item.span,
                    kind: Kind::String(v),
                },
            }),
            _ => {
                cx.error(
                    item.span,
                    &path.key(map_key),
                    "a tag block needs `key` and `value` strings",
                );
            }
        }
    }
    match members.iter_mut().find(|m| m.key == map_key) {
        Some(m) => {
            if let Kind::Object(o) = &mut m.value.kind {
                o.extend(pairs);
            }
        }
        None => members.push(Member {
            key: map_key.to_string(),
            key_span: span,
            value: Node {
                span,
                kind: Kind::Object(pairs),
            },
        }),
    }
}

/// The one label of a `dynamic` block (the name of the blocks it makes), or a located error.
pub fn dynamic_name(b: &Block, cx: &mut Cx, path: &JsonPath) -> Option<String> {
    let ls = labels(b);
    match <[String; 1]>::try_from(ls) {
        Ok([name]) => Some(name),
        Err(_) => {
            let span = cx.span(b.ident.span());
            cx.error(
                span,
                path,
                "a `dynamic` block needs one label: the name of the blocks it makes",
            );
            None
        }
    }
}

/// Expands `dynamic "NAME" { for_each = ..., iterator = IT, content { ... } }` into NAME blocks.
pub fn dynamic(b: &Block, ctx: &Ctx, cx: &mut Cx, path: &JsonPath) -> Vec<(String, Node)> {
    let span = cx.span(b.ident.span());
    let Some(name) = dynamic_name(b, cx, path) else {
        return Vec::new();
    };
    let name = &name;
    let p = path.key(name);
    let mut out = Vec::new();
    for (inner, content) in dynamic_items(b, name, ctx, cx, path) {
        let node = body_node(&content.body, &inner, cx, &p, &[]);
        out.push((name.clone(), Node { span, ..node }));
    }
    out
}

/// A dynamic block's iterations: the context with the iterator bound, and the `content` block.
pub fn dynamic_items<'b>(
    b: &'b Block,
    name: &str,
    ctx: &Ctx,
    cx: &mut Cx,
    path: &JsonPath,
) -> Vec<(Ctx, &'b Block)> {
    let span = cx.span(b.ident.span());
    let p = path.key(name);
    let attr = |k: &str| b.body.get_attribute(k);
    let Some(fe) = attr("for_each") else {
        cx.error(
            span,
            &p,
            format!("the dynamic block `{name}` has no `for_each`"),
        );
        return Vec::new();
    };
    let it = match attr("iterator") {
        Some(a) => match Expression::from(a.value.clone()) {
            Expression::Variable(v) => v.to_string(),
            _ => {
                cx.error(
                    cx.span(a.value.span()),
                    &p,
                    "`iterator` must be a bare name, e.g. iterator = disk",
                );
                return Vec::new();
            }
        },
        None => name.to_string(),
    };
    let Some(content) = b.body.get_blocks("content").next() else {
        cx.error(
            span,
            &p,
            format!("the dynamic block `{name}` has no `content` block"),
        );
        return Vec::new();
    };
    let items: Vec<(Value, Value)> = match eval(&fe.value, ctx) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v))
            .collect(),
        Ok(Value::Object(m)) => m.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        Ok(other) => {
            cx.error(
                cx.span(fe.value.span()),
                &p,
                format!("`for_each` must be a list or a map, found `{other}`"),
            );
            return Vec::new();
        }
        Err(e) => {
            cx.error(
                cx.span(fe.value.span()),
                &p,
                format!("cannot evaluate `for_each`: {e}"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (key, value) in items {
        let mut inner = ctx.clone();
        let mut m = hcl::Map::new();
        m.insert("key".to_string(), key);
        m.insert("value".to_string(), value);
        inner.declare_var(it.clone(), Value::Object(m));
        out.push((inner, content));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(src: &str) -> Result<Value, String> {
        let mut ctx = Ctx::new();
        super::super::funcs::declare(&mut ctx);
        let mut var = hcl::Map::new();
        var.insert("a".to_string(), Value::from("v"));
        ctx.declare_var("var", Value::Object(var));
        let e = hcl::edit::parser::parse_expr(src).expect("parses");
        eval(&e, &ctx)
    }

    #[test]
    fn try_and_can_inside_templates_and_for_expressions_catch_errors_as_in_expressions() {
        let cases: &[(&str, Value)] = &[
            (r#""a-${try(var.nope, "d")}-b""#, Value::from("a-d-b")),
            (r#""${try(var.nope, 3)}""#, Value::from(3)),
            (r#""${try(var.a, "d")}""#, Value::from("v")),
            (r#""x${try(var.nope, "d") == "d"}""#, Value::from("xtrue")),
            (
                r#""%{ if can(var.nope) }y%{ else }n%{ endif }""#,
                Value::from("n"),
            ),
            (
                r#""%{ for s in ["a", "b"] }${try(s, "z")}%{ endfor }""#,
                Value::from("ab"),
            ),
            (r#"try(var.nope, "d") == "d""#, Value::from(true)),
            (
                r#"[for d in [{s = 1}, {}] : try(d.s, 8)]"#,
                Value::from(vec![Value::from(1), Value::from(8)]),
            ),
            (
                r#"{for i, d in ["a", "b"] : d => can(d.x) if i > 0}"#,
                Value::Object(
                    [("b".to_string(), Value::from(false))]
                        .into_iter()
                        .collect(),
                ),
            ),
            (
                r#"{for d in ["a", "b", "a"] : d => try(d, "") ...}"#,
                Value::Object(
                    [
                        ("a".to_string(), Value::from(vec!["a", "a"])),
                        ("b".to_string(), Value::from(vec!["b"])),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
            (r#"!can(var.nope)"#, Value::from(true)),
        ];
        for (src, want) in cases {
            assert_eq!(&ev(src).expect(src), want, "{src}");
        }
        // What no try catches is still an error.
        let e = ev(r#""a-${var.nope}-${try(var.nope, "d")}""#).unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
