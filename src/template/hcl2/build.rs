//! `source`, `build` and `data` blocks into the JSON model: one builder per source a build uses
//! (named by the source's name, as Packer's manifest and `PACKER_BUILD_NAME` name HCL2 builds;
//! `only`/`except` and `-only` take `TYPE.NAME`), and each build block's provisioners and
//! post-processors evaluated once per source (so `source.name` and `build.name` have their value)
//! and limited to it with `only`.

use hcl::edit::structure::{Block, Body};
use hcl::edit::Span as _;

use hcl::{Map, Value};

use super::eval::{body_node, dynamic_name, eval, labels, Ctx, Cx};
use crate::template::diag::{closest, JsonPath};
use crate::template::json::{Kind, Member, Node, Span};

/// Marks a data source output that is only known when the build runs.
pub const DATA_MARK: &str = "\u{1}imgbuild-data:";

/// Build data Packer's HCL2 exposes as `build.X`; each is the JSON front end's `{{ build `X` }}`.
const BUILD_KEYS: &[&str] = &[
    "ID",
    "Host",
    "Port",
    "User",
    "Password",
    "ConnType",
    "PackerRunUUID",
    "PackerHTTPAddr",
    "PackerHTTPIP",
    "PackerHTTPPort",
    "SSHPublicKey",
    "SSHPrivateKey",
    "WinRMPassword",
    "SourceAMI",
    "SourceAMIName",
    "SourceAMIOwner",
    "SourceAMIOwnerName",
    "SourceAMICreationDate",
    "Region",
];

pub struct Source<'b> {
    pub kind: String,
    pub name: String,
    pub block: &'b Block,
    pub span: Span,
}

pub struct Data<'b> {
    pub kind: String,
    pub name: String,
    pub block: &'b Block,
}

/// Reads `source "TYPE" "NAME"` blocks.
pub fn sources<'b>(body: &'b Body, cx: &mut Cx, out: &mut Vec<Source<'b>>) {
    for b in body.get_blocks("source") {
        let span = cx.span(b.ident.span());
        let ls = labels(b);
        let [kind, name] = ls.as_slice() else {
            cx.error(span, &JsonPath::root().key("source"), "a `source` block needs two labels: its type and its name, e.g. source \"amazon-ebs\" \"web\"");
            continue;
        };
        if out.iter().any(|s| &s.kind == kind && &s.name == name) {
            cx.error(
                span,
                &JsonPath::root().key("source"),
                format!("the source `{kind}.{name}` is defined twice"),
            );
            continue;
        }
        out.push(Source {
            kind: kind.clone(),
            name: name.clone(),
            block: b,
            span,
        });
    }
}

/// Reads `data "TYPE" "NAME"` blocks: `amazon-ami` and `amazon-parameterstore` are known; their
/// outputs are marks resolved when the build runs (see `resolve_data`).
pub fn data<'b>(body: &'b Body, cx: &mut Cx, out: &mut Vec<Data<'b>>) -> Value {
    let mut by_type: Map<String, Value> = Map::new();
    for b in body.get_blocks("data") {
        let span = cx.span(b.ident.span());
        let ls = labels(b);
        let [kind, name] = ls.as_slice() else {
            cx.error(
                span,
                &JsonPath::root().key("data"),
                "a `data` block needs two labels: its type and its name",
            );
            continue;
        };
        let outputs: &[&str] = match kind.as_str() {
            "amazon-ami" => &["id", "name", "creation_date", "owner", "owner_name", "tags"],
            "amazon-parameterstore" => &["value", "version", "arn"],
            other => {
                let d = cx.error(
                    span,
                    &JsonPath::root().key("data").key(other),
                    format!("imgbuild has no data source `{other}`"),
                );
                d.notes.push(
                    "help: imgbuild has the data sources amazon-ami and amazon-parameterstore"
                        .into(),
                );
                continue;
            }
        };
        let mut o = Map::new();
        for k in outputs {
            o.insert(
                k.to_string(),
                Value::from(format!("{DATA_MARK}{kind}.{name}.{k}\u{1}")),
            );
        }
        if let Value::Object(m) = by_type
            .entry(kind.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            m.insert(name.clone(), Value::Object(o));
        }
        out.push(Data {
            kind: kind.clone(),
            name: name.clone(),
            block: b,
        });
    }
    Value::Object(by_type)
}

/// The `build` object of one build: its name and the JSON front end's build data.
fn build_object(name: &str) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(name));
    for k in BUILD_KEYS {
        m.insert(k.to_string(), Value::from(format!("{{{{ build `{k}` }}}}")));
    }
    Value::Object(m)
}

fn source_object(kind: &str, name: &str) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    m.insert("name".into(), Value::from(name));
    Value::Object(m)
}

fn member(key: &str, span: Span, kind: Kind) -> Member {
    Member {
        key: key.into(),
        key_span: span,
        value: Node { span, kind },
    }
}

fn string(span: Span, s: &str) -> Kind {
    let _ = span;
    Kind::String(s.to_string())
}

/// The JSON model's `builders`, `provisioners`, `post-processors` and
/// `error-cleanup-provisioner` of every `build` block.
#[derive(Default)]
pub struct Out {
    pub builders: Vec<Node>,
    pub provisioners: Vec<Node>,
    /// Each provisioner's place among its `build` block's provisioners (0-based, counting
    /// those `only`/`except` leave out of this source's build, as the JSON template's list
    /// does), with the block's span: what the model's numbering is set back to.
    pub positions: Vec<(Span, usize)>,
    pub post_processors: Vec<Node>,
    pub error_cleanup: Option<Node>,
    pub description: Option<String>,
    /// The model's paths in HCL terms (see `SourceFile::hcl_paths`).
    pub paths: Vec<(String, String)>,
    /// How many `build` blocks the template has, and how many were read so far: with more than
    /// one, a build block's path is `build[i]`.
    pub build_count: usize,
    pub builds_seen: usize,
}

impl Out {
    /// For a template of these bodies (counts their `build` blocks).
    pub fn new<'a>(bodies: impl Iterator<Item = &'a Body>) -> Out {
        Out {
            build_count: bodies.map(|b| b.get_blocks("build").count()).sum(),
            ..Default::default()
        }
    }

    /// The model's paths in HCL terms, variables included.
    pub fn take_paths(&mut self) -> Vec<(String, String)> {
        let mut v = std::mem::take(&mut self.paths);
        v.push(("variables".into(), "variable".into()));
        v.push(("sensitive-variables".into(), "variable".into()));
        v
    }

    fn map(&mut self, model: JsonPath, hcl: &JsonPath) {
        // `type` comes from the block's label (and a builder's `name` from the source's).
        let labels: &[&str] = if model.to_string().starts_with("builders") {
            &["type", "name"]
        } else {
            &["type"]
        };
        for key in labels {
            self.paths
                .push((model.key(key).to_string(), hcl.to_string()));
        }
        self.paths.push((model.to_string(), hcl.to_string()));
    }
}

/// Each structure of a build block: its path in HCL terms when it is a block
/// (`build.provisioner[1]`, `build.post-processors[0]`, `build.error-cleanup-provisioner`),
/// counting the blocks of each kind.
fn block_paths(b: &Block, bpath: &JsonPath) -> Vec<Option<JsonPath>> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    b.body
        .iter()
        .map(|s| {
            let pb = s.as_block()?;
            let kind = pb.ident.as_str();
            if kind == "error-cleanup-provisioner" {
                return Some(bpath.key(kind));
            }
            let n = match counts.iter_mut().find(|c| c.0 == kind) {
                Some(c) => {
                    c.1 += 1;
                    c.1
                }
                None => {
                    counts.push((kind.to_string(), 0));
                    0
                }
            };
            Some(bpath.key(kind).index(n))
        })
        .collect()
}

/// One source a build uses: the source, the name of the build (`TYPE.NAME`) and the override
/// block, if any.
struct Use<'s, 'b> {
    src: &'s Source<'b>,
    name: String,
    over: Option<&'b Block>,
    span: Span,
}

/// Reads every `build` block.
pub fn builds(body: &Body, srcs: &[Source], data: &[Data], ctx: &Ctx, cx: &mut Cx, out: &mut Out) {
    for b in body.get_blocks("build") {
        let bpath = if out.build_count > 1 {
            JsonPath::root().key("build").index(out.builds_seen)
        } else {
            JsonPath::root().key("build")
        };
        out.builds_seen += 1;
        let bname = string_attr(b, "name", ctx, cx, &bpath).unwrap_or_default();
        if let Some(d) = string_attr(b, "description", ctx, cx, &bpath) {
            out.description = Some(d);
            out.map(
                JsonPath::root().key("description"),
                &bpath.key("description"),
            );
        }
        let uses = uses(b, srcs, ctx, cx, &bpath);
        for u in &uses {
            let mut sctx = ctx.clone();
            sctx.declare_var("source", source_object(&u.src.kind, &u.name));
            sctx.declare_var("build", build_object(&bname));
            let model = JsonPath::root().key("builders").index(out.builders.len());
            let hcl = JsonPath::root()
                .key("source")
                .key(&u.src.kind)
                .key(&u.src.name);
            override_paths(u, &model, &bpath, out);
            out.map(model, &hcl);
            out.builders.push(builder(u, data, &sctx, cx));
        }
        let hpaths = block_paths(b, &bpath);
        for u in &uses {
            let mut sctx = ctx.clone();
            sctx.declare_var("source", source_object(&u.src.kind, &u.name));
            sctx.declare_var("build", build_object(&bname));
            let limit = (uses.len() > 1 || srcs.len() > 1).then_some(u.name.as_str());
            let mut position = 0;
            for (s, hp) in b.body.iter().zip(&hpaths) {
                let (Some(pb), Some(path)) = (s.as_block(), hp) else {
                    continue;
                };
                let kind = pb.ident.as_str();
                let provs = JsonPath::root().key("provisioners");
                let pps = JsonPath::root().key("post-processors");
                match kind {
                    "provisioner" => {
                        if let Some(n) = component(pb, &u.full(), limit, &sctx, cx, path) {
                            out.map(provs.index(out.provisioners.len()), path);
                            out.positions.push((n.span, position));
                            out.provisioners.push(n);
                        }
                        position += 1;
                    }
                    "error-cleanup-provisioner" => {
                        out.map(JsonPath::root().key(kind), path);
                        out.error_cleanup = component(pb, &u.full(), limit, &sctx, cx, path);
                    }
                    "post-processor" => {
                        if let Some(n) = component(pb, &u.full(), limit, &sctx, cx, path) {
                            out.map(pps.index(out.post_processors.len()), path);
                            out.post_processors.push(n);
                        }
                    }
                    "post-processors" => {
                        let model = pps.index(out.post_processors.len());
                        let mut chain = Vec::new();
                        for (m, p) in pb.body.get_blocks("post-processor").enumerate() {
                            let hp = path.key("post-processor").index(m);
                            if let Some(n) = component(p, &u.full(), limit, &sctx, cx, &hp) {
                                out.map(model.index(chain.len()), &hp);
                                chain.push(n);
                            }
                        }
                        if !chain.is_empty() {
                            out.map(model, path);
                            out.post_processors.push(Node {
                                span: cx.span(pb.ident.span()),
                                kind: Kind::Array(chain),
                            });
                        }
                    }
                    "dynamic" => {
                        for (name, n) in dynamic_components(pb, &u.full(), limit, &sctx, cx, path) {
                            if name == "provisioner" {
                                position += 1;
                            }
                            let Some(n) = n else { continue };
                            match name.as_str() {
                                "provisioner" => {
                                    out.map(provs.index(out.provisioners.len()), path);
                                    out.positions.push((n.span, position - 1));
                                    out.provisioners.push(n);
                                }
                                "post-processor" => {
                                    out.map(pps.index(out.post_processors.len()), path);
                                    out.post_processors.push(n);
                                }
                                other => {
                                    cx.error(n.span, path, format!("a dynamic block in a build makes provisioner or post-processor blocks, not `{other}`"));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        check_build_keys(b, cx, &bpath);
        check_only(b, srcs, ctx, cx, &hpaths);
    }
}

/// What the build's `source "TYPE.NAME" { }` block sets is located there.
fn override_paths(u: &Use, model: &JsonPath, bpath: &JsonPath, out: &mut Out) {
    let Some(o) = u.over else { return };
    let over = bpath.key("source").key(&u.src.kind).key(&u.src.name);
    for s in o.body.iter() {
        let k = match s {
            hcl::edit::structure::Structure::Attribute(a) => a.key.as_str(),
            hcl::edit::structure::Structure::Block(b) => b.ident.as_str(),
        };
        if k != "name" {
            out.paths
                .push((model.key(k).to_string(), over.key(k).to_string()));
        }
    }
}

impl Use<'_, '_> {
    /// How `only`/`except` name this build: `TYPE.NAME`.
    fn full(&self) -> String {
        format!("{}.{}", self.src.kind, self.name)
    }
}

/// Names in provisioners' and post-processors' `only`/`except` must be sources (`TYPE.NAME`):
/// a typo would otherwise silently leave the component out.
fn check_only(b: &Block, srcs: &[Source], ctx: &Ctx, cx: &mut Cx, hpaths: &[Option<JsonPath>]) {
    let known: Vec<String> = srcs
        .iter()
        .map(|s| format!("{}.{}", s.kind, s.name))
        .collect();
    let mut blocks: Vec<(&Block, JsonPath)> = Vec::new();
    for (s, hp) in b.body.iter().zip(hpaths) {
        let (Some(s), Some(hp)) = (s.as_block(), hp) else {
            continue;
        };
        match s.ident.as_str() {
            "provisioner" | "post-processor" | "error-cleanup-provisioner" => {
                blocks.push((s, hp.clone()))
            }
            "post-processors" => blocks.extend(
                s.body
                    .get_blocks("post-processor")
                    .enumerate()
                    .map(|(m, p)| (p, hp.key("post-processor").index(m))),
            ),
            _ => {}
        }
    }
    for (pb, bp) in blocks {
        for key in ["only", "except"] {
            let Some(a) = pb.body.get_attribute(key) else {
                continue;
            };
            let span = cx.span(a.value.span());
            let path = bp.key(key);
            let names = match eval(&a.value, ctx) {
                Ok(Value::Array(v)) if v.iter().all(|x| x.as_str().is_some()) => v,
                _ => {
                    cx.error(
                        span,
                        &path,
                        format!(
                            "`{key}` must be a list of source names, e.g. [\"amazon-ebs.web\"]"
                        ),
                    );
                    continue;
                }
            };
            for n in names.iter().filter_map(|x| x.as_str()) {
                if known.iter().any(|k| k == n) {
                    continue;
                }
                let d = cx.error(
                    span,
                    &path,
                    format!("`{key}` names `{n}`, which is not a source of this template"),
                );
                match closest(n, known.iter().map(String::as_str)) {
                    Some(c) => d.notes.push(format!(
                        "help: did you mean `{c}`? (sources are named TYPE.NAME)"
                    )),
                    None => d.notes.push(format!(
                        "help: sources are named TYPE.NAME: {}",
                        known.join(", ")
                    )),
                }
            }
        }
    }
}

/// A build block's string attribute; a bad one is reported.
fn string_attr(b: &Block, key: &str, ctx: &Ctx, cx: &mut Cx, bpath: &JsonPath) -> Option<String> {
    let a = b.body.get_attribute(key)?;
    let span = cx.span(a.value.span());
    let path = bpath.key(key);
    match eval(&a.value, ctx) {
        Ok(Value::String(s)) => Some(s),
        Ok(other) => {
            cx.error(
                span,
                &path,
                format!("`{key}` must be a string, found `{other}`"),
            );
            None
        }
        Err(e) => {
            cx.error(span, &path, format!("cannot evaluate `{key}`: {e}"));
            None
        }
    }
}

fn check_build_keys(b: &Block, cx: &mut Cx, bpath: &JsonPath) {
    const KEYS: &[&str] = &[
        "name",
        "description",
        "sources",
        "source",
        "provisioner",
        "error-cleanup-provisioner",
        "post-processor",
        "post-processors",
        "hcp_packer_registry",
        "dynamic",
    ];
    for s in b.body.iter() {
        let (key, span) = match s {
            hcl::edit::structure::Structure::Attribute(a) => (a.key.as_str(), a.key.span()),
            hcl::edit::structure::Structure::Block(b) => (b.ident.as_str(), b.ident.span()),
        };
        if !KEYS.contains(&key) {
            let span = cx.span(span);
            let d = cx.error(
                span,
                bpath,
                format!("unknown argument or block `{key}` in a build block"),
            );
            if let Some(c) = closest(key, KEYS.iter().copied()) {
                d.notes.push(format!("help: did you mean `{c}`?"));
            }
        } else if key == "hcp_packer_registry" {
            let d = cx.error(span_of(cx, span), bpath, "`hcp_packer_registry` publishes to HCP Packer, a hosted service imgbuild does not talk to");
            d.notes.push(
                "help: remove the block; imgbuild's manifest post-processor records the AMIs"
                    .into(),
            );
        }
    }
}

fn span_of(cx: &Cx, r: Option<std::ops::Range<usize>>) -> Span {
    cx.span(r)
}

/// The sources a build block uses: `sources = [...]` and `source "TYPE.NAME" { ... }` blocks.
fn uses<'s, 'b>(
    b: &'b Block,
    srcs: &'s [Source<'b>],
    ctx: &Ctx,
    cx: &mut Cx,
    bpath: &JsonPath,
) -> Vec<Use<'s, 'b>> {
    let mut refs: Vec<(String, Span, Option<&'b Block>)> = Vec::new();
    if let Some(a) = b.body.get_attribute("sources") {
        let span = cx.span(a.value.span());
        match eval(&a.value, ctx) {
            Ok(Value::Array(items)) => {
                for i in items {
                    match i.as_str() {
                        Some(s) => refs.push((s.to_string(), span, None)),
                        None => {
                            cx.error(
                                span,
                                &bpath.key("sources"),
                                "`sources` lists names as strings, e.g. \"source.amazon-ebs.web\"",
                            );
                        }
                    }
                }
            }
            _ => {
                cx.error(
                    span,
                    &bpath.key("sources"),
                    "`sources` must be a list of names, e.g. [\"source.amazon-ebs.web\"]",
                );
            }
        }
    }
    for sb in b.body.get_blocks("source") {
        let span = cx.span(sb.ident.span());
        match labels(sb).as_slice() {
            [r] => refs.push((r.clone(), span, Some(sb))),
            _ => {
                cx.error(span, &bpath.key("source"), "a source block inside build takes one label, e.g. source \"amazon-ebs.web\" { ... }");
            }
        }
    }
    let mut out: Vec<Use> = Vec::new();
    for (r, span, over) in refs {
        let key = r.strip_prefix("source.").unwrap_or(&r);
        let Some(src) = srcs
            .iter()
            .find(|s| format!("{}.{}", s.kind, s.name) == key)
        else {
            let names: Vec<String> = srcs
                .iter()
                .map(|s| format!("source.{}.{}", s.kind, s.name))
                .collect();
            let d = cx.error(
                span,
                &bpath.key("sources"),
                format!("the build uses `{r}`, but no source of that name is defined"),
            );
            if let Some(c) = closest(&r, names.iter().map(String::as_str)) {
                d.notes.push(format!("help: did you mean `{c}`?"));
            } else {
                d.notes
                    .push("help: define it: source \"amazon-ebs\" \"NAME\" { ... }".into());
            }
            continue;
        };
        let renamed = over
            .and_then(|o| o.body.get_attribute("name"))
            .and_then(|a| eval(&a.value, ctx).ok())
            .and_then(|v| v.as_str().map(str::to_string));
        let name = renamed.unwrap_or_else(|| src.name.clone());
        out.push(Use {
            src,
            name,
            over,
            span,
        });
    }
    out
}

/// One builder: the source's body, the build's overrides over it, `type` and `name`.
fn builder(u: &Use, data: &[Data], ctx: &Ctx, cx: &mut Cx) -> Node {
    let path = JsonPath::root()
        .key("source")
        .key(&u.src.kind)
        .key(&u.src.name);
    let mut node = body_node(&u.src.block.body, ctx, cx, &path, &[]);
    if let Some(o) = u.over {
        let over = body_node(&o.body, ctx, cx, &path, &["name"]);
        if let (Kind::Object(base), Kind::Object(extra)) = (&mut node.kind, over.kind) {
            for m in extra {
                base.retain(|b| b.key != m.key);
                base.push(m);
            }
        }
    }
    node.span = u.src.span;
    if let Kind::Object(ms) = &mut node.kind {
        ms.retain(|m| m.key != "type" && m.key != "name");
        ms.insert(
            0,
            member("type", u.src.span, string(u.src.span, &u.src.kind)),
        );
        ms.insert(1, member("name", u.span, string(u.span, &u.name)));
        resolve_data(ms, data, ctx, cx);
    }
    node
}

/// `source_ami = data.amazon-ami.X.id` becomes the data source's filter as `source_ami_filter`,
/// which the builder resolves when the build runs with its own AWS access.
fn resolve_data(ms: &mut Vec<Member>, data: &[Data], ctx: &Ctx, cx: &mut Cx) {
    let Some(i) = ms.iter().position(|m| m.key == "source_ami") else {
        return;
    };
    let Some(s) = ms[i].value.as_str() else {
        return;
    };
    let Some(rest) = s.strip_prefix(DATA_MARK) else {
        return;
    };
    let rest = rest.trim_end_matches('\u{1}');
    let Some(d) = data
        .iter()
        .find(|d| rest == format!("amazon-ami.{}.id", d.name))
    else {
        return;
    };
    let span = ms[i].value.span;
    let dpath = JsonPath::root().key("data").key("amazon-ami").key(&d.name);
    let filter = body_node(&d.block.body, ctx, cx, &dpath, &[]);
    let mut fm: Vec<Member> = Vec::new();
    for m in filter.as_object().unwrap_or(&[]) {
        match m.key.as_str() {
            "filters" | "owners" | "most_recent" => fm.push(m.clone()),
            // The builder's own region and credentials are the data source's here.
            "region" | "access_key" | "secret_key" | "token" | "profile" | "assume_role" => {}
            other => {
                cx.error(m.key_span, &dpath.key(other), format!("imgbuild's amazon-ami data source has no argument `{other}` (it has filters, owners and most_recent)"));
            }
        }
    }
    ms.remove(i);
    ms.push(Member {
        key: "source_ami_filter".into(),
        key_span: span,
        value: Node {
            span,
            kind: Kind::Object(fm),
        },
    });
}

/// A provisioner or post-processor block: `type` from its label, its body, `only` narrowed to
/// this build when the template has several, and nothing when its own `only`/`except` exclude it.
fn component(
    b: &Block,
    build: &str,
    limit: Option<&str>,
    ctx: &Ctx,
    cx: &mut Cx,
    path: &JsonPath,
) -> Option<Node> {
    let span = cx.span(b.ident.span());
    let ls = labels(b);
    let [kind] = ls.as_slice() else {
        cx.error(
            span,
            path,
            format!(
                "a `{}` block needs one label: its type, e.g. \"shell\"",
                b.ident.as_str()
            ),
        );
        return None;
    };
    component_body(kind, &b.body, span, build, limit, ctx, cx, path)
}

#[allow(clippy::too_many_arguments)]
fn component_body(
    kind: &str,
    body: &Body,
    span: Span,
    build: &str,
    limit: Option<&str>,
    ctx: &Ctx,
    cx: &mut Cx,
    path: &JsonPath,
) -> Option<Node> {
    let names = |k: &str| -> Option<Vec<String>> {
        let a = body.get_attribute(k)?;
        match eval(&a.value, ctx) {
            Ok(Value::Array(v)) => Some(
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        }
    };
    let only = names("only");
    let except = names("except");
    if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == build))
        || except
            .as_ref()
            .is_some_and(|e| e.iter().any(|n| n == build))
    {
        return None;
    }
    let mut node = body_node(body, ctx, cx, path, &["only", "except"]);
    node.span = span;
    if let Kind::Object(ms) = &mut node.kind {
        // `override` is keyed by `TYPE.NAME` in HCL2, by build name in the model.
        for m in ms.iter_mut().filter(|m| m.key == "override") {
            if let Kind::Object(per) = &mut m.value.kind {
                for o in per.iter_mut() {
                    if let Some((_, name)) = o.key.split_once('.') {
                        o.key = name.to_string();
                    }
                }
            }
        }
        ms.insert(0, member("type", span, Kind::String(kind.to_string())));
        if let Some(l) = limit {
            let item = Node {
                span,
                kind: Kind::String(l.to_string()),
            };
            ms.push(member("only", span, Kind::Array(vec![item])));
        }
    }
    Some(node)
}

/// `dynamic "provisioner" { for_each = ..., labels = ["shell"], content { ... } }` in a build:
/// each generated block (None: left out of this build by `only`/`except`).
fn dynamic_components(
    b: &Block,
    build: &str,
    limit: Option<&str>,
    ctx: &Ctx,
    cx: &mut Cx,
    path: &JsonPath,
) -> Vec<(String, Option<Node>)> {
    let span = cx.span(b.ident.span());
    let Some(name) = dynamic_name(b, cx, path) else {
        return Vec::new();
    };
    let name = &name;
    let kind = b
        .body
        .get_attribute("labels")
        .and_then(|a| eval(&a.value, ctx).ok())
        .and_then(|v| match v {
            Value::Array(a) if a.len() == 1 => a[0].as_str().map(str::to_string),
            _ => None,
        });
    let Some(kind) = kind else {
        cx.error(
            span,
            path,
            format!(
                "the dynamic block `{name}` needs labels = [\"TYPE\"], e.g. labels = [\"shell\"]"
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    // Each generated block, or None where `only`/`except` leave it out of this build (it
    // still takes its place in the list).
    for (inner, content) in super::eval::dynamic_items(b, name, ctx, cx, path) {
        let n = component_body(&kind, &content.body, span, build, limit, &inner, cx, path);
        out.push((name.clone(), n));
    }
    out
}

/// Every data-source mark left anywhere but `source_ami` is an error: the value is only known
/// when the build runs.
pub fn check_marks(node: &Node, path: &JsonPath, cx: &mut Cx) {
    match &node.kind {
        // A parameter's outputs are fetched when the build runs and may be used anywhere.
        Kind::String(s)
            if s.contains(DATA_MARK)
                && s.split(DATA_MARK)
                    .skip(1)
                    .any(|r| !r.starts_with("amazon-parameterstore.")) =>
        {
            let what = s
                .split(DATA_MARK)
                .skip(1)
                .find(|r| !r.starts_with("amazon-parameterstore."))
                .and_then(|r| r.split('\u{1}').next())
                .unwrap_or("");
            let d = cx.error(node.span, path, format!("`data.{what}` is only known when the build runs, and imgbuild uses it only as a source's `source_ami` (data.amazon-ami.NAME.id)"));
            d.notes.push(
                "help: set source_ami = data.amazon-ami.NAME.id, or write the value directly"
                    .into(),
            );
        }
        Kind::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, n)| check_marks(n, &path.index(i), cx)),
        Kind::Object(m) => m
            .iter()
            .for_each(|m| check_marks(&m.value, &path.key(&m.key), cx)),
        _ => {}
    }
}
