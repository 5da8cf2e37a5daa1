//! Packer HCL2 templates (`*.pkr.hcl`, `*.pkr.json` through `json_syntax`, or a folder of
//! them): parsed with spans (hcl-edit),
//! evaluated (hcl-rs with Packer's function library, `funcs`), and turned into the JSON model
//! the JSON front end produces, so one decoder per component reads both languages (`build`,
//! `eval`). Variables follow Packer's precedence (`vars`).
//!
//! The result is a [`Template`] whose spans point into the HCL source: every later diagnostic
//! (decoding, validation) is located in the `.pkr.hcl` file.

pub mod build;
pub mod eval;
pub mod funcs;
pub mod json_syntax;
pub mod params;
pub mod types;
pub mod upgrade;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::edit::Span as _;
use hcl::eval::Context;
use hcl::{Map, Value};

use super::diag::{closest, Diagnostic, Diagnostics, JsonPath, SourceFile};
use super::json::{Kind, Member, Node, Span};
use super::variables::{VarArg, Variables};
use super::{read_text_file, Template};
use eval::{Ctx, Cx};

/// Whether `path` names an HCL2 template: a `.pkr.hcl` file or a folder.
pub fn is_hcl2(path: &str) -> bool {
    path.ends_with(".pkr.hcl") || path.ends_with(".pkr.json") || Path::new(path).is_dir()
}

/// Top-level blocks of an HCL2 template.
const TOP: &[&str] = &[
    "variable", "locals", "local", "packer", "source", "build", "data",
];

/// Plugins whose components imgbuild has built in (`required_plugins` naming only these needs
/// no `packer init`).
const BUILT_IN_PLUGINS: &[&str] = &["github.com/hashicorp/amazon"];

/// The files of a template: the file itself, or every `*.pkr.hcl` of a folder (sorted), and the
/// `*.auto.pkrvars.hcl` files next to them.
fn files(path: &str) -> Result<(Vec<PathBuf>, Vec<PathBuf>, PathBuf), Diagnostic> {
    let p = Path::new(path);
    let dir = if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let listing = |suffix: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &dir
        })
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
        v.sort();
        v
    };
    let mut auto = listing(".auto.pkrvars.hcl");
    auto.extend(listing(".auto.pkrvars.json"));
    let main = if p.is_dir() {
        let mut v = listing(".pkr.hcl");
        v.extend(listing(".pkr.json"));
        if v.is_empty() {
            return Err(Diagnostic::error(format!(
                "the folder `{path}` has no *.pkr.hcl files"
            ))
            .help("name a JSON template file, or a folder that holds an HCL2 template's .pkr.hcl files"));
        }
        v
    } else {
        vec![p.to_path_buf()]
    };
    Ok((main, auto, dir))
}

/// The values an HCL2 template's variables were bound to while loading, as the rest of
/// imgbuild keeps them (text, sensitive names, the redactor).
pub fn variables(t: &Loaded, diags: &mut Diagnostics) -> Variables {
    let mut out = Variables {
        values: t.values.clone(),
        sensitive: t.sensitive.iter().cloned().collect(),
        redactor: Default::default(),
    };
    for name in &t.sensitive {
        if let Some(v) = t.values.get(name) {
            out.redactor.add(v);
            let n = v.chars().count();
            if n > 0 && n < crate::redact::MIN_SECRET_LEN {
                diags.push(Diagnostic::warning(format!(
                    "the sensitive variable `{name}` is only {n} character(s) long: too short to mask in output"
                )));
            }
        }
    }
    for v in params::secrets() {
        out.redactor.add(&v);
    }
    for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(v) = std::env::var(key) {
            out.redactor.add(&v);
        }
    }
    out
}

/// A loaded HCL2 template: the JSON model and the bound values.
pub struct Loaded {
    pub template: Template,
    pub values: BTreeMap<String, String>,
    pub sensitive: Vec<String>,
    /// The `amazon-parameterstore` data sources' parameters (fetched by `build` only).
    pub params: Vec<params::Request>,
}

/// Loads an HCL2 template with its variables bound (`lenient`: required variables may lack a
/// value, for `inspect` and `validate -syntax-only`). Every problem goes to `diags`.
pub fn load(path: &str, args: &[VarArg], lenient: bool, diags: &mut Diagnostics) -> Option<Loaded> {
    let (main, auto, dir) = match files(path) {
        Ok(v) => v,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let mut parts = Vec::new();
    for f in &main {
        match read_text_file(f, "template") {
            Ok(t) => parts.push((f.display().to_string(), t)),
            Err(d) => diags.push(d),
        }
    }
    if parts.len() != main.len() {
        return None;
    }
    let file = SourceFile::joined(
        if Path::new(path).is_dir() {
            path
        } else {
            &parts[0].0
        },
        &parts,
    );
    let mut cx = Cx {
        file: &file,
        diags,
        base: 0,
        maps: BTreeMap::new(),
    };
    let mut bodies = Vec::new();
    for (i, (_, text)) in parts.iter().enumerate() {
        cx.base = file.part_start(i);
        let native;
        let text = if parts[i].0.ends_with(".pkr.json") {
            match json_syntax::to_native(text) {
                Ok((t, map)) => {
                    cx.maps.insert(cx.base, map);
                    native = t;
                    &native
                }
                Err(problems) => {
                    for (s, m) in problems {
                        let span = Span::new(cx.base + s.start, cx.base + s.end);
                        cx.error(span, &JsonPath::root(), m);
                    }
                    continue;
                }
            }
        } else {
            text
        };
        match hcl::edit::parser::parse_body(text) {
            Ok(b) => bodies.push((cx.base, b)),
            Err(e) => {
                let off = e.location().offset();
                cx.error(
                    cx.span(Some(off..off + 1)),
                    &JsonPath::root(),
                    format!("invalid HCL: {}", e.message()),
                )
                .notes
                .push("help: check the braces, quotes and `=` around here".into());
            }
        }
    }
    if bodies.len() != parts.len() {
        return None;
    }
    // As the JSON front end: the absolute directory of the template (or the folder itself).
    let abs = if Path::new(path).is_dir() {
        std::path::absolute(path).unwrap_or(dir)
    } else {
        std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(dir)
    };
    let template_dir = abs.display().to_string();
    let mut bound = Bound::default();
    let root = model(
        &bodies,
        &auto,
        args,
        &template_dir,
        lenient,
        &mut bound,
        &mut cx,
    )?;
    // From here on, paths read in HCL terms and values are typed as HCL2 types them.
    let _ = file.hcl_paths.set(std::mem::take(&mut bound.paths));
    let mut template = Template::from_root(file.clone(), template_dir, &root, diags)?;
    number_provisioners(&mut template, &bound.positions);
    Some(Loaded {
        template,
        values: bound.values,
        sensitive: bound.sensitive,
        params: bound.params,
    })
}

#[derive(Default)]
struct Bound {
    values: BTreeMap<String, String>,
    sensitive: Vec<String>,
    params: Vec<params::Request>,
    /// The model's paths in HCL terms.
    paths: Vec<(String, String)>,
    /// [`build::Out::positions`].
    positions: Vec<(Span, usize)>,
}

/// The model lists each source's provisioners one after the other; a provisioner's number
/// (timeline, errors) is its place in its `build` block, as in the JSON template's list.
fn number_provisioners(t: &mut Template, positions: &[(Span, usize)]) {
    let mut at = 0;
    for p in &mut t.provisioners {
        let Some(k) = positions[at..].iter().position(|(s, _)| *s == p.node.span) else {
            continue;
        };
        p.index = positions[at + k].1;
        at += k + 1;
    }
}

/// A value as variable text: strings as they are, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(&funcs::hcl_to_json(other)).unwrap_or_default(),
    }
}

/// All files' bodies into the JSON model's root object.
fn model(
    bodies: &[(usize, hcl::edit::structure::Body)],
    auto: &[PathBuf],
    args: &[VarArg],
    template_dir: &str,
    lenient: bool,
    bound: &mut Bound,
    cx: &mut Cx,
) -> Option<Node> {
    let mut decls = Vec::new();
    let mut locals = Vec::new();
    let mut srcs = Vec::new();
    let mut data = Vec::new();
    let mut data_obj = Map::new();
    for (base, body) in bodies {
        cx.base = *base;
        check_top(body, cx);
        for b in body.get_blocks("variable") {
            vars::declare(b, cx, &mut decls);
        }
        vars::collect_locals(body, cx, &mut locals);
        build::sources(body, cx, &mut srcs);
        if let Value::Object(m) = build::data(body, cx, &mut data) {
            data_obj.extend(m);
        }
        for p in body.get_blocks("packer") {
            packer_block(p, cx);
        }
    }
    vars::bind(&mut decls, auto, args, cx);
    let var_obj = vars::object(&decls, lenient, cx);
    let mut ctx = context(template_dir);
    ctx.declare_var("var", var_obj.clone());
    params::apply(&mut data_obj);
    ctx.declare_var("data", Value::Object(data_obj));
    vars::validate(&decls, &ctx, cx);
    let local_values = vars::eval_locals(&locals, &mut ctx, cx);
    // As Packer 1.12+ (one dependency graph): data sources may use locals.
    bound.params = params::requests(&data, &ctx, cx);
    let mut out = build::Out::new(bodies.iter().map(|(_, b)| b));
    for (base, body) in bodies {
        cx.base = *base;
        build::builds(body, &srcs, &data, &ctx, cx, &mut out);
    }
    if bodies
        .iter()
        .all(|(_, b)| b.get_blocks("build").next().is_none())
    {
        cx.error(
            Span::new(0, 0),
            &JsonPath::root(),
            "the template has no `build` block",
        )
        .notes
        .push("help: add build { sources = [\"source.amazon-ebs.NAME\"] }".into());
    }
    bound.paths = out.take_paths();
    let span = Span::new(0, 0);
    let mut ms = Vec::new();
    let mut vars_m = Vec::new();
    let mut sensitive = Vec::new();
    for d in &decls {
        // The model's variables are what inspect shows: the declared defaults.
        let kind = match (&d.default, &d.shown) {
            (Some(_), Some(shown)) => Kind::String(shown.clone()),
            (Some(v), None) => Kind::String(text(v)),
            _ => Kind::Null,
        };
        vars_m.push(member(&d.name, d.span, kind));
        if let Some(v) = &d.value {
            bound.values.insert(d.name.clone(), text(v));
        }
        if d.sensitive {
            sensitive.push(Node {
                span: d.span,
                kind: Kind::String(d.name.clone()),
            });
            bound.sensitive.push(d.name.clone());
        }
    }
    for l in locals.iter().filter(|l| l.sensitive) {
        if let Some(v) = local_values.get(&l.name) {
            let name = format!("local.{}", l.name);
            bound.values.insert(name.clone(), text(v));
            bound.sensitive.push(name);
        }
    }
    ms.push(member("variables", span, Kind::Object(vars_m)));
    ms.push(member("sensitive-variables", span, Kind::Array(sensitive)));
    if let Some(d) = &out.description {
        ms.push(member("description", span, Kind::String(d.clone())));
    }
    if !out.builders.is_empty() {
        ms.push(member("builders", span, Kind::Array(out.builders)));
    }
    bound.positions = std::mem::take(&mut out.positions);
    ms.push(member("provisioners", span, Kind::Array(out.provisioners)));
    ms.push(member(
        "post-processors",
        span,
        Kind::Array(out.post_processors),
    ));
    if let Some(e) = out.error_cleanup {
        ms.push(member("error-cleanup-provisioner", e.span, e.kind));
    }
    let root = Node {
        span,
        kind: Kind::Object(ms),
    };
    build::check_marks(&root, &JsonPath::root(), cx);
    if cx.diags.has_errors() && root.get("builders").is_none() {
        return None;
    }
    Some(root)
}

fn member(key: &str, span: Span, kind: Kind) -> Member {
    Member {
        key: key.into(),
        key_span: span,
        value: Node { span, kind },
    }
}

/// The evaluation context: functions, `path`, `packer`.
fn context(template_dir: &str) -> Ctx {
    let mut ctx = Context::new();
    funcs::declare(&mut ctx);
    let mut path = Map::new();
    path.insert("root".to_string(), Value::from(template_dir));
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    path.insert("cwd".to_string(), Value::from(cwd));
    ctx.declare_var("path", Value::Object(path));
    let mut packer = Map::new();
    packer.insert(
        "version".to_string(),
        Value::from(super::funcs::PACKER_COMPAT_VERSION),
    );
    ctx.declare_var("packer", Value::Object(packer));
    ctx
}

/// Unknown top-level blocks and attributes.
fn check_top(body: &hcl::edit::structure::Body, cx: &mut Cx) {
    for s in body.iter() {
        let (key, span, is_block) = match s {
            hcl::edit::structure::Structure::Attribute(a) => (a.key.as_str(), a.key.span(), false),
            hcl::edit::structure::Structure::Block(b) => (b.ident.as_str(), b.ident.span(), true),
        };
        if is_block && TOP.contains(&key) {
            continue;
        }
        let span = cx.span(span);
        let what = if is_block { "block" } else { "attribute" };
        let d = cx.error(
            span,
            &JsonPath::root(),
            format!("unknown top-level {what} `{key}`"),
        );
        if let Some(c) = closest(key, TOP.iter().copied()) {
            d.notes.push(format!("help: did you mean `{c}`?"));
        }
        d.notes.push("help: an HCL2 template has variable, locals, local, packer, data, source and build blocks".into());
    }
}

/// `packer { required_version, required_plugins }`: accepted; a plugin imgbuild does not have
/// built in is refused by name.
fn packer_block(b: &hcl::edit::structure::Block, cx: &mut Cx) {
    for rp in b.body.get_blocks("required_plugins") {
        let mut all_built_in = true;
        for a in rp.body.attributes() {
            let name = a.key.as_str();
            let src = eval::eval(&a.value, &Context::new())
                .ok()
                .and_then(|v| {
                    v.as_object()
                        .and_then(|o| o.get("source"))
                        .and_then(|s| s.as_str().map(str::to_string))
                })
                .unwrap_or_default();
            let src = src.trim_start_matches("https://").to_string();
            if !BUILT_IN_PLUGINS.contains(&src.as_str()) {
                all_built_in = false;
                let span = cx.span(a.key.span());
                let d = cx.error(span, &JsonPath::root().key("packer").key("required_plugins").key(name), format!("imgbuild has no plugin `{name}` ({src}): it runs only what it has built in"));
                d.notes.push("help: imgbuild has the amazon plugin's amazon-ebs builder and amazon-ami data source built in (github.com/hashicorp/amazon)".into());
            }
        }
        if all_built_in {
            cx.diags.push(Diagnostic::warning(
                "`required_plugins` names only plugins imgbuild has built in: `packer init` is not needed",
            ));
        }
    }
}
