//! Where Packer 1.6.6 is lenient, imgbuild is too, with a warning (an error under `-strict`):
//! `{{user `x`}}` of a variable the template never declares renders empty (Packer says
//! nothing); the names in `only`, `except` and `override` are rendered with the user variables
//! before they are matched against the builds' (rendered) names.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::span_in_string;
use super::diag::{closest, Diagnostic, Diagnostics, JsonPath};
use super::funcs::{self, Engine, Phase, Scope, TmplError};
use super::json::{Kind, Node};
use super::{NameRef, Template};

/// The variables that `{{user}}` refers to anywhere in the template but that are neither
/// declared nor set with `-var`/`-var-file` (`known`). Each is reported once, at its first use
/// (file:line:col and JSON path), naming the closest declared variable and how many other places
/// use it; Packer renders them empty, and so does the caller.
pub fn undeclared_user_refs(
    t: &Template,
    known: &BTreeSet<String>,
    diags: &mut Diagnostics,
) -> BTreeSet<String> {
    let mut uses: BTreeMap<String, Vec<(Node, JsonPath)>> = BTreeMap::new();
    let root = JsonPath::root();
    for v in &t.variables {
        let p = root.key("variables").key(&v.name);
        walk(&v.value, &p, known, &mut uses);
    }
    for b in &t.builders {
        walk(&b.node, &b.path, known, &mut uses);
    }
    for p in t.provisioners.iter().chain(t.error_cleanup.as_ref()) {
        walk(&p.node, &p.path, known, &mut uses);
    }
    for pp in t.post_processors.iter().flatten() {
        walk(&pp.node, &pp.path, known, &mut uses);
    }
    let declared: Vec<&str> = t.variables.iter().map(|v| v.name.as_str()).collect();
    for (name, places) in &uses {
        let (node, path) = &places[0];
        let span = match &node.kind {
            Kind::String(s) => {
                let start = s
                    .find(&format!("`{name}`"))
                    .or_else(|| s.find(name.as_str()));
                let range = start.map_or(0..s.len(), |i| i..i + name.len() + 2);
                span_in_string(&t.file.text, node, &TmplError::at(range))
            }
            _ => node.span,
        };
        let mut d = Diagnostic::warning(format!(
            "variable `{name}` is not declared: {{{{user `{name}`}}}} renders as empty text, as in Packer 1.6.6"
        ))
        .at(&t.file, span)
        .path(path);
        if places.len() > 1 {
            d = d.note(format!("used in {} more place(s)", places.len() - 1));
        }
        d = match closest(name, declared.iter().copied()) {
            Some(c) => d.help(format!("did you mean `{c}`? Or declare `{name}` under \"variables\" (or pass -var {name}=...)")),
            None => d.help(format!("declare `{name}` under \"variables\", or pass -var {name}=...")),
        };
        diags.lenient(d);
    }
    uses.into_keys().collect()
}

fn walk(
    node: &Node,
    path: &JsonPath,
    known: &BTreeSet<String>,
    uses: &mut BTreeMap<String, Vec<(Node, JsonPath)>>,
) {
    match &node.kind {
        Kind::String(s) if s.contains("{{") => {
            let Ok(pieces) = funcs::parse(s) else { return };
            for r in funcs::user_refs(&pieces) {
                if !known.contains(&r) {
                    uses.entry(r)
                        .or_default()
                        .push((node.clone(), path.clone()));
                }
            }
        }
        Kind::Array(items) => {
            for (i, n) in items.iter().enumerate() {
                walk(n, &path.index(i), known, uses);
            }
        }
        Kind::Object(members) => {
            for m in members {
                walk(&m.value, &path.key(&m.key), known, uses);
            }
        }
        _ => {}
    }
}

/// The template with every `only`, `except` and `override` name rendered with the user
/// variables (Packer renders build names before matching them). A name that does not render is
/// kept as written; the name check then reports it.
pub fn render_name_refs(
    t: &Template,
    user: &BTreeMap<String, String>,
    engine: &Engine,
) -> Template {
    let scope = Scope {
        phase: Phase::Prepare,
        user,
        template_dir: &t.template_dir,
        build_name: None,
        build_type: None,
        build: None,
        fields: None,
    };
    let render = |refs: &mut Vec<NameRef>| {
        for r in refs.iter_mut().filter(|r| r.name.contains("{{")) {
            if let Ok(n) = engine.render(&r.name, &scope) {
                r.name = n;
            }
        }
    };
    let mut out = t.clone();
    for p in out
        .provisioners
        .iter_mut()
        .chain(out.error_cleanup.as_mut())
    {
        render(&mut p.only);
        render(&mut p.except);
        for (r, _) in p.overrides.iter_mut() {
            if r.name.contains("{{") {
                if let Ok(n) = engine.render(&r.name, &scope) {
                    r.name = n;
                }
            }
        }
    }
    for pp in out.post_processors.iter_mut().flatten() {
        render(&mut pp.only);
        render(&mut pp.except);
    }
    out
}
