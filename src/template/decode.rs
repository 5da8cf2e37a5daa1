//! Typed decoding of located JSON: the one place that turns template objects into configuration
//! structs, with Packer's weak typing ("true" is a boolean, a single string is a one-item list),
//! template rendering of every string, and located errors for wrong types, missing keys and
//! unknown keys (with the closest known key).
//!
//! A config type decodes itself by asking an [`Obj`] for its keys; the keys it asks for *are* the
//! known keys, so the suggestion list can never drift from the decoder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::diag::{closest, Diagnostic, Diagnostics, JsonPath, SourceFile};
use super::funcs::{Engine, Scope, TmplError, UNSET};
use super::json::{Kind, Member, Node, Span};

/// Everything decoding needs: where errors go, the file they point into, and how strings render.
pub struct Dx<'a> {
    pub diags: &'a mut Diagnostics,
    pub file: &'a Arc<SourceFile>,
    pub engine: &'a Engine,
    pub scope: Scope<'a>,
}

impl Dx<'_> {
    pub fn error(
        &mut self,
        span: Span,
        path: &JsonPath,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(message).at(self.file, span).path(path));
        self.diags.items.last_mut().expect("just pushed")
    }

    pub fn warning(
        &mut self,
        span: Span,
        path: &JsonPath,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(message).at(self.file, span).path(path));
        self.diags.items.last_mut().expect("just pushed")
    }

    fn type_error(&mut self, node: &Node, path: &JsonPath, key: &str, expected: &str) {
        let d = self.error(
            node.span,
            path,
            format!("`{key}` must be {expected}, found {}", node.type_name()),
        );
        if node.type_name() == "a number" && expected.contains("string") {
            d.notes.push("help: put the value in double quotes".into());
        }
    }

    /// Renders a string value; a template error points at the action inside the string.
    pub fn render(&mut self, node: &Node, path: &JsonPath, key: &str) -> Option<String> {
        let Kind::String(s) = &node.kind else {
            self.type_error(node, path, key, "a string");
            return None;
        };
        let scope = self.scope.clone();
        match self.engine.render(s, &scope) {
            Ok(v) => Some(v),
            // A variable without a value (its error is reported): go on with the text as
            // written, so that the checks of this option do not report errors of their own.
            Err(e) if e.message.contains(UNSET) => Some(s.clone()),
            Err(e) => {
                self.template_error(node, path, key, &e);
                None
            }
        }
    }

    /// Reports a component (`what`: "provisioner", "post-processor") whose `"type"` imgbuild
    /// does not know, at its `type` key, with the closest known type or the list of them.
    pub fn unknown_type(
        &mut self,
        node: &Node,
        path: &JsonPath,
        what: &str,
        kind: &str,
        known: &[&str],
    ) {
        let span = node.get("type").map_or(node.span, |m| m.value.span);
        let d = self.error(
            span,
            &path.key("type"),
            format!("{what} type `{kind}` is not supported by imgbuild"),
        );
        d.notes.push(match closest(kind, known.iter().copied()) {
            Some(c) => format!("help: did you mean `{c}`?"),
            None => format!("help: supported {what}s: {}", known.join(", ")),
        });
    }

    pub fn template_error(&mut self, node: &Node, path: &JsonPath, key: &str, e: &TmplError) {
        if e.message.contains(UNSET) {
            // A use of a variable whose own error is reported already.
            return;
        }
        let span = span_in_string(&self.file.text, node, e);
        let d = self.error(span, path, format!("in `{key}`: {}", e.message));
        if let Some(h) = &e.help {
            d.notes.push(format!("help: {h}"));
        }
    }
}

/// The span of a template error inside a JSON string literal, when the literal has no escapes (so
/// byte offsets in the value equal offsets in the file); otherwise the whole string.
pub fn span_in_string(text: &str, node: &Node, e: &TmplError) -> Span {
    let Kind::String(value) = &node.kind else {
        return node.span;
    };
    let inner = text.get(node.span.start + 1..node.span.end.saturating_sub(1));
    if inner == Some(value.as_str()) && e.range.end <= value.len() {
        let base = node.span.start + 1;
        Span::new(
            base + e.range.start,
            base + e.range.end.max(e.range.start + 1),
        )
    } else {
        node.span
    }
}

/// A JSON object being decoded; remembers which keys were asked for.
pub struct Obj<'n> {
    pub span: Span,
    pub path: JsonPath,
    /// How the object is named in messages, e.g. "builder `web_worker` (amazon-ebs)".
    pub what: String,
    members: &'n [Member],
    used: Vec<bool>,
    asked: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    /// Views `node` as an object, or reports that it is not one.
    pub fn new(
        node: &'n Node,
        path: JsonPath,
        what: impl Into<String>,
        dx: &mut Dx,
    ) -> Option<Obj<'n>> {
        let what = what.into();
        match &node.kind {
            Kind::Object(members) => Some(Obj {
                span: node.span,
                path,
                what,
                members,
                used: vec![false; members.len()],
                asked: Vec::new(),
            }),
            _ => {
                dx.error(
                    node.span,
                    &path,
                    format!("{what} must be an object, found {}", node.type_name()),
                );
                None
            }
        }
    }

    /// The span to point at for "missing key" errors: the opening brace.
    pub fn head(&self) -> Span {
        Span::new(self.span.start, self.span.start + 1)
    }

    /// Takes a key: marks it known and used; returns its value and path if present.
    pub fn take(&mut self, key: &'static str) -> Option<(&'n Node, JsonPath)> {
        self.asked.push(key);
        let idx = self.members.iter().position(|m| m.key == key)?;
        // A repeated key is reported once, as a duplicate, not again as unknown.
        for (m, used) in self.members.iter().zip(self.used.iter_mut()) {
            if m.key == key {
                *used = true;
            }
        }
        Some((&self.members[idx].value, self.path.key(key)))
    }

    pub fn has(&self, key: &str) -> bool {
        self.members.iter().any(|m| m.key == key)
    }

    pub fn string(&mut self, dx: &mut Dx, key: &'static str) -> Option<String> {
        let (node, path) = self.take(key)?;
        match &node.kind {
            // Packer decodes weakly: numbers and booleans become strings.
            Kind::Number(n) => Some(n.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => dx.render(node, &path, key),
        }
    }

    /// A string that must be present (after rendering it may still be empty: callers check).
    pub fn required_string(&mut self, dx: &mut Dx, key: &'static str) -> Option<String> {
        if !self.has(key) {
            let what = self.what.clone();
            let head = self.head();
            let path = self.path.clone();
            dx.error(
                head,
                &path,
                format!("{what} is missing the required key `{key}`"),
            );
            self.asked.push(key);
            return None;
        }
        self.string(dx, key)
    }

    /// The value as written, not rendered (for values rendered later, e.g. variable defaults).
    pub fn raw_string(&mut self, dx: &mut Dx, key: &'static str) -> Option<String> {
        let (node, path) = self.take(key)?;
        match &node.kind {
            Kind::String(s) => Some(s.clone()),
            _ => {
                dx.type_error(node, &path, key, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, dx: &mut Dx, key: &'static str) -> Option<bool> {
        let (node, path) = self.take(key)?;
        let hcl = dx.file.is_hcl();
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Number(n) if !hcl => Some(n != "0"),
            // HCL2 converts as cty does: only "true", "false", "1" and "0" are booleans.
            Kind::String(_) if hcl => {
                let s = dx.render(node, &path, key)?;
                match s.as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => {
                        let d = dx.error(
                            node.span,
                            &path,
                            format!("`{key}` must be true or false, found \"{s}\""),
                        );
                        if matches!(s.to_lowercase().as_str(), "true" | "false") {
                            d.notes.push(format!(
                                "help: HCL2 converts only lowercase text: write {}",
                                s.to_lowercase()
                            ));
                        }
                        None
                    }
                }
            }
            Kind::String(_) => {
                let s = dx.render(node, &path, key)?;
                match parse_bool(&s) {
                    Some(b) => Some(b),
                    None => {
                        dx.error(
                            node.span,
                            &path,
                            format!("`{key}` must be true or false, found \"{s}\""),
                        );
                        None
                    }
                }
            }
            _ => {
                dx.type_error(node, &path, key, "true or false");
                None
            }
        }
    }

    pub fn int(&mut self, dx: &mut Dx, key: &'static str) -> Option<i64> {
        let (node, path) = self.take(key)?;
        let text = match &node.kind {
            Kind::Number(n) => n.clone(),
            Kind::String(_) => dx.render(node, &path, key)?,
            _ => {
                dx.type_error(node, &path, key, "a whole number");
                return None;
            }
        };
        match text.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                dx.error(
                    node.span,
                    &path,
                    format!("`{key}` must be a whole number, found {text}"),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn int_in(&mut self, dx: &mut Dx, key: &'static str, min: i64, max: i64) -> Option<i64> {
        let v = self.int(dx, key)?;
        if v < min || v > max {
            let (node, path) = self.node_of(key)?;
            dx.error(
                node.span,
                &path,
                format!("`{key}` must be between {min} and {max}, found {v}"),
            );
            return None;
        }
        Some(v)
    }

    fn node_of(&self, key: &str) -> Option<(&'n Node, JsonPath)> {
        self.members
            .iter()
            .find(|m| m.key == key)
            .map(|m| (&m.value, self.path.key(key)))
    }

    /// A Go duration such as "5m", "1h30m", "300ms".
    pub fn duration(&mut self, dx: &mut Dx, key: &'static str) -> Option<Duration> {
        let (node, path) = self.take(key)?;
        let text = match &node.kind {
            Kind::String(_) => dx.render(node, &path, key)?,
            _ => {
                let d = dx.error(
                    node.span,
                    &path,
                    format!(
                        "`{key}` must be a duration string, found {}",
                        node.type_name()
                    ),
                );
                d.notes
                    .push("help: write it with a unit, e.g. \"30s\", \"5m\" or \"1h30m\"".into());
                return None;
            }
        };
        match crate::duration::parse(&text) {
            Ok(d) => Some(d),
            Err(why) => {
                let d = dx.error(
                    node.span,
                    &path,
                    format!("`{key}`: \"{text}\" is not a duration: {why}"),
                );
                d.notes.push(
                    "help: write it like \"30s\", \"5m\" or \"1h30m\" (units: ns, us, ms, s, m, h)"
                        .into(),
                );
                None
            }
        }
    }

    /// A list of strings; a single string counts as a one-item list, as in Packer.
    pub fn strings(&mut self, dx: &mut Dx, key: &'static str) -> Option<Vec<String>> {
        let (node, path) = self.take(key)?;
        match &node.kind {
            Kind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let p = path.index(i);
                    match &item.kind {
                        Kind::Number(n) => out.push(n.clone()),
                        Kind::Bool(b) => out.push(b.to_string()),
                        _ => match dx.render(item, &p, key) {
                            Some(s) => out.push(s),
                            None => ok = false,
                        },
                    }
                }
                ok.then_some(out)
            }
            // HCL2 types strictly (cty has no string-to-list conversion), as Packer 1.7+:
            // "Inappropriate value for attribute: list of string required".
            Kind::String(_) if dx.file.is_hcl() && !ONE_STRING_KEYS.contains(&key) => {
                dx.type_error(node, &path, key, "a list of strings");
                let d = dx.diags.items.last_mut().expect("just pushed");
                d.notes.push(format!(
                    "help: HCL2 takes no single string for a list: write {key} = [\"...\"]"
                ));
                None
            }
            Kind::String(_) => dx.render(node, &path, key).map(|s| vec![s]),
            _ => {
                dx.type_error(node, &path, key, "a list of strings");
                None
            }
        }
    }

    /// An object of string values (e.g. `tags`); keys and values are rendered.
    pub fn string_map(
        &mut self,
        dx: &mut Dx,
        key: &'static str,
    ) -> Option<BTreeMap<String, String>> {
        let (node, path) = self.take(key)?;
        decode_string_map(dx, node, &path, key)
    }

    /// A nested object, decoded by the caller.
    pub fn object(&mut self, dx: &mut Dx, key: &'static str, what: &str) -> Option<Obj<'n>> {
        let (node, path) = self.take(key)?;
        Obj::new(node, path, format!("`{key}` of {} ({what})", self.what), dx)
    }

    /// A list of nodes with their paths, decoded by the caller.
    pub fn array(&mut self, dx: &mut Dx, key: &'static str) -> Option<Vec<(&'n Node, JsonPath)>> {
        let (node, path) = self.take(key)?;
        match &node.kind {
            Kind::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n, path.index(i)))
                    .collect(),
            ),
            _ => {
                dx.type_error(node, &path, key, "a list");
                None
            }
        }
    }

    /// Any JSON value, passed on as is.
    pub fn any(&mut self, key: &'static str) -> Option<(&'n Node, JsonPath)> {
        self.take(key)
    }

    /// A Packer option imgbuild knows but does not implement: an error naming it, so that a
    /// build never silently differs from what the template asks.
    pub fn unsupported(&mut self, dx: &mut Dx, key: &'static str, why: &str) {
        if let Some((node, path)) = self.take(key) {
            let what = self.what.clone();
            let d = dx.error(
                Span::new(node.span.start, node.span.start),
                &path,
                format!("`{key}` of {what} is a Packer option imgbuild does not support"),
            );
            d.span = Some(key_span(self.members, key).unwrap_or(node.span));
            d.notes.push(format!("help: {why}"));
        }
    }

    /// A Packer option that makes no difference to imgbuild: accepted with a warning that says why.
    pub fn ignored(&mut self, dx: &mut Dx, key: &'static str, why: &str) {
        if let Some((node, path)) = self.take(key) {
            let what = self.what.clone();
            let span = key_span(self.members, key).unwrap_or(node.span);
            let d = dx.warning(
                span,
                &path,
                format!("`{key}` of {what} has no effect in imgbuild"),
            );
            d.notes.push(format!("note: {why}"));
        }
    }

    /// Reports every key nobody asked for, with the closest known key. Keys starting with `_` are
    /// comments.
    pub fn finish(self, dx: &mut Dx) {
        for (m, used) in self.members.iter().zip(&self.used) {
            if *used || m.key.starts_with('_') {
                continue;
            }
            let path = self.path.key(&m.key);
            let what = self.what.clone();
            let d = dx.error(
                m.key_span,
                &path,
                format!("unknown key `{}` in {what}", m.key),
            );
            match closest(&m.key, self.asked.iter().copied()) {
                Some(c) => d.notes.push(format!("help: did you mean `{c}`?")),
                None => d.notes.push(
                    "help: see the template reference in README.md for the keys imgbuild knows"
                        .into(),
                ),
            }
        }
    }
}

/// Keys Packer types as one string that decoders read as lists (with their plural twins,
/// `scripts`, `sources`): a single string is what HCL2 wants for them.
const ONE_STRING_KEYS: &[&str] = &["script", "source"];

fn key_span(members: &[Member], key: &str) -> Option<Span> {
    members.iter().find(|m| m.key == key).map(|m| m.key_span)
}

pub fn decode_string_map(
    dx: &mut Dx,
    node: &Node,
    path: &JsonPath,
    key: &str,
) -> Option<BTreeMap<String, String>> {
    let Kind::Object(members) = &node.kind else {
        dx.type_error(node, path, key, "an object of strings");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for m in members {
        let p = path.key(&m.key);
        let k = match dx.engine.render(&m.key, &dx.scope.clone()) {
            Ok(k) => k,
            Err(e) => {
                let key_node = Node {
                    span: m.key_span,
                    kind: Kind::String(m.key.clone()),
                };
                dx.template_error(&key_node, &p, key, &e);
                ok = false;
                continue;
            }
        };
        let v = match &m.value.kind {
            Kind::Number(n) => Some(n.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::String(_) => dx.render(&m.value, &p, key),
            _ => {
                dx.type_error(&m.value, &p, &format!("{key}.{}", m.key), "a string");
                None
            }
        };
        match v {
            Some(v) => {
                out.insert(k, v);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Go's strconv.ParseBool.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::funcs::{Clock, Phase};
    use crate::template::json;

    struct Fixture {
        file: Arc<SourceFile>,
        root: Node,
        engine: Engine,
        user: BTreeMap<String, String>,
    }

    fn fixture(text: &str) -> Fixture {
        let mut user = BTreeMap::new();
        user.insert("yes".to_string(), "true".to_string());
        user.insert("n".to_string(), "7".to_string());
        Fixture {
            file: SourceFile::new("t.json", text),
            root: json::parse(text).unwrap().root,
            engine: Engine::new(Clock::now()),
            user,
        }
    }

    fn with_obj(f: &Fixture, body: impl FnOnce(&mut Obj, &mut Dx)) -> Diagnostics {
        let mut diags = Diagnostics::default();
        let mut dx = Dx {
            diags: &mut diags,
            file: &f.file,
            engine: &f.engine,
            scope: Scope {
                phase: Phase::Prepare,
                user: &f.user,
                template_dir: "/t",
                build_name: Some("b"),
                build_type: Some("amazon-ebs"),
                build: None,
                fields: None,
            },
        };
        let mut obj = Obj::new(
            &f.root,
            JsonPath::root().key("builders").index(0),
            "builder `b`",
            &mut dx,
        )
        .unwrap();
        body(&mut obj, &mut dx);
        obj.finish(&mut dx);
        diags
    }

    #[test]
    fn weak_typing_like_packer() {
        let f = fixture(
            r#"{"a": "{{user `yes`}}", "b": 1, "c": "{{user `n`}}", "d": "x", "e": 5, "f": "90s"}"#,
        );
        let d = with_obj(&f, |o, dx| {
            assert_eq!(o.bool(dx, "a"), Some(true));
            assert_eq!(o.bool(dx, "b"), Some(true));
            assert_eq!(o.int(dx, "c"), Some(7));
            assert_eq!(o.strings(dx, "d"), Some(vec!["x".to_string()]));
            assert_eq!(o.string(dx, "e"), Some("5".to_string()));
            assert_eq!(o.duration(dx, "f"), Some(Duration::from_secs(90)));
            assert_eq!(o.string(dx, "absent"), None);
        });
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn unknown_keys_suggest_the_closest_asked_key() {
        let f = fixture(r#"{"ami_nmae": "x", "_comment": "fine"}"#);
        let d = with_obj(&f, |o, dx| {
            o.string(dx, "ami_name");
            o.string(dx, "region");
        });
        let e: Vec<_> = d.errors().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].message, "unknown key `ami_nmae` in builder `b`");
        assert_eq!(
            e[0].notes,
            vec!["help: did you mean `ami_name`?".to_string()]
        );
        assert_eq!(e[0].span, Some(Span::new(1, 11)));
        assert_eq!(
            e[0].path.as_ref().unwrap().to_string(),
            "builders[0].ami_nmae"
        );
    }

    #[test]
    fn wrong_types_and_bad_values_are_located() {
        let f = fixture(
            r#"{"a": [1], "b": "maybe", "c": "5 minutes", "d": 5, "e": {"k": []}, "f": "x {{nope}}"}"#,
        );
        let d = with_obj(&f, |o, dx| {
            o.string(dx, "a");
            o.bool(dx, "b");
            o.duration(dx, "c");
            o.duration(dx, "d");
            o.string_map(dx, "e");
            o.string(dx, "f");
        });
        let msgs: Vec<String> = d.errors().map(|e| e.message.clone()).collect();
        assert_eq!(
            msgs,
            vec![
                "`a` must be a string, found an array",
                "`b` must be true or false, found \"maybe\"",
                "`c`: \"5 minutes\" is not a duration: unknown unit \" minutes\"",
                "`d` must be a duration string, found a number",
                "`e.k` must be a string, found an array",
                "in `f`: unknown function `nope`",
            ]
        );
        // The template error points at the function name inside the string.
        let last = d.errors().last().unwrap();
        let text = &f.file.text;
        let at = text.find("nope").unwrap();
        assert_eq!(last.span, Some(Span::new(at, at + 4)));
    }

    #[test]
    fn required_and_unsupported_keys() {
        let f = fixture(r#"{"spot_price": "auto"}"#);
        let d = with_obj(&f, |o, dx| {
            o.required_string(dx, "ami_name");
            o.unsupported(dx, "spot_price", "use on-demand instances");
        });
        let msgs: Vec<String> = d.errors().map(|e| e.message.clone()).collect();
        assert_eq!(
            msgs,
            vec![
                "builder `b` is missing the required key `ami_name`",
                "`spot_price` of builder `b` is a Packer option imgbuild does not support",
            ]
        );
    }
}
