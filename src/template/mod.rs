//! Packer JSON templates: load, validate, render, inspect.
//!
//! Loading happens in two stages, both synchronous and free of side effects:
//! 1. [`Template::parse`]: the file's JSON and its structure (root keys, builder names and types,
//!    provisioner and post-processor shapes). This is all `validate -syntax-only` checks.
//! 2. [`crate::prepare::prepare`]: variables bound and rendered, every builder, provisioner and
//!    post-processor decoded into typed configuration for each build. `validate` and `build` run it.
//!
//! All problems of both stages are collected into [`diag::Diagnostics`] before anything prints.

pub mod decode;
pub mod diag;
pub mod fix;
pub mod funcs;
pub mod hcl2;
pub mod inspect;
pub mod json;
pub mod leniency;
pub mod location;
pub mod timefmt;
pub mod variables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use decode::{Dx, Obj};
use diag::{Diagnostic, Diagnostics, JsonPath, SourceFile};
use funcs::{Clock, Engine, Phase, Scope};
use json::{Kind, Node, Span};

/// Largest template or var file read (hostile input is refused before parsing).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A declared variable.
#[derive(Debug, Clone)]
pub struct VarDecl {
    pub name: String,
    /// The default as written (unrendered); `None` for a required variable (`null` in JSON).
    pub default: Option<String>,
    pub key_span: Span,
    /// The default's JSON value, for locating errors inside it.
    pub value: Node,
}

#[derive(Debug, Clone)]
pub struct RawBuilder {
    /// The name as written (it may contain template functions), defaulting to the type.
    pub name: String,
    pub kind: String,
    pub index: usize,
    pub node: Node,
    pub path: JsonPath,
}

/// A name in `only`/`except`/`override`, with where it was written.
#[derive(Debug, Clone)]
pub struct NameRef {
    pub name: String,
    pub span: Span,
    pub path: JsonPath,
}

#[derive(Debug, Clone)]
pub struct RawProvisioner {
    pub kind: String,
    pub index: usize,
    pub only: Vec<NameRef>,
    pub except: Vec<NameRef>,
    /// Per-build settings merged over the provisioner's own.
    pub overrides: Vec<(NameRef, Node)>,
    pub pause_before: Option<Duration>,
    pub max_retries: u32,
    pub timeout: Option<Duration>,
    pub node: Node,
    pub path: JsonPath,
}

#[derive(Debug, Clone)]
pub struct RawPostProcessor {
    pub kind: String,
    pub name: Option<String>,
    pub only: Vec<NameRef>,
    pub except: Vec<NameRef>,
    pub keep_input_artifact: Option<bool>,
    pub node: Node,
    pub path: JsonPath,
}

/// A template after stage 1.
#[derive(Debug, Clone)]
pub struct Template {
    pub file: Arc<SourceFile>,
    /// Absolute directory of the template (the current directory for stdin).
    pub template_dir: String,
    pub description: Option<String>,
    pub min_packer_version: Option<(String, Span)>,
    pub variables: Vec<VarDecl>,
    pub sensitive: Vec<NameRef>,
    pub builders: Vec<RawBuilder>,
    pub provisioners: Vec<RawProvisioner>,
    /// Each inner list is a chain run in sequence.
    pub post_processors: Vec<Vec<RawPostProcessor>>,
    pub error_cleanup: Option<RawProvisioner>,
}

/// Reads a template from a path, or from stdin when the path is `-`.
pub fn read_source(path: &str) -> Result<(Arc<SourceFile>, String), Diagnostic> {
    if path == "-" {
        let mut text = String::new();
        use std::io::Read;
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| {
                Diagnostic::error(format!("cannot read the template from standard input: {e}"))
            })?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(Diagnostic::error(format!(
                "the template on standard input is larger than {} MiB; no template needs that",
                MAX_FILE_BYTES / 1024 / 1024
            )));
        }
        let dir = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return Ok((SourceFile::new("<stdin>", text), dir));
    }
    let text = read_text_file(Path::new(path), "template")?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    let dir = abs
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok((SourceFile::new(path, text), dir))
}

/// Reads a text file with a size bound and a message that says what the file was for.
pub fn read_text_file(path: &Path, what: &str) -> Result<String, Diagnostic> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        let d = Diagnostic::error(format!(
            "cannot read the {what} `{shown}`: {}",
            io_reason(&e)
        ));
        if e.kind() == std::io::ErrorKind::NotFound {
            d.help("check the path; relative paths are relative to the current directory")
        } else {
            d
        }
    })?;
    if meta.is_dir() {
        return Err(
            Diagnostic::error(format!("the {what} `{shown}` is a directory, not a file"))
                .help("name the JSON file itself, e.g. images/web_worker.json"),
        );
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(format!(
            "the {what} `{shown}` is {} MiB, larger than the {} MiB imgbuild reads",
            meta.len() / 1024 / 1024,
            MAX_FILE_BYTES / 1024 / 1024
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::error(format!(
            "cannot read the {what} `{shown}`: {}",
            io_reason(&e)
        ))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Diagnostic::error(format!(
            "the {what} `{shown}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parses JSON text into a tree, reporting syntax errors and duplicate keys.
pub fn parse_json(file: &Arc<SourceFile>, diags: &mut Diagnostics) -> Option<Node> {
    match json::parse(&file.text) {
        Ok(p) => {
            for d in p.duplicates {
                let mut diag = Diagnostic::error(format!("duplicate key `{}`", d.key))
                    .at(file, d.again)
                    .path(&d.path.key(&d.key))
                    .help("JSON keys must be unique in an object; remove or rename one of them");
                let (l, c) = file.line_col(d.first.start);
                diag.notes
                    .insert(0, format!("note: first defined at {}:{l}:{c}", file.name));
                diags.push(diag);
            }
            Some(p.root)
        }
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("invalid JSON: {}", e.message))
                    .at(file, e.span)
                    .note("a template is one JSON object; check the brackets, commas and quotes around here"),
            );
            None
        }
    }
}

/// A scope for stage 1, where no string is rendered.
fn syntax_scope(user: &BTreeMap<String, String>) -> Scope<'_> {
    Scope {
        phase: Phase::Prepare,
        user,
        template_dir: "",
        build_name: None,
        build_type: None,
        build: None,
        fields: None,
    }
}

impl Template {
    /// Stage 1: parse and check the structure. Returns `None` only when the structure is too
    /// broken to go on (not JSON, or not an object); every problem is in `diags`.
    pub fn parse(
        file: Arc<SourceFile>,
        template_dir: String,
        diags: &mut Diagnostics,
    ) -> Option<Template> {
        let root = parse_json(&file, diags)?;
        Template::from_root(file, template_dir, &root, diags)
    }

    /// Stage 1 from a JSON tree: the JSON front end's parse, and the HCL2 front end's template
    /// turned into the same model (`hcl2`), so both go through one set of decoders.
    pub fn from_root(
        file: Arc<SourceFile>,
        template_dir: String,
        root: &Node,
        diags: &mut Diagnostics,
    ) -> Option<Template> {
        let engine = Engine::new(Clock::now());
        let user = BTreeMap::new();
        let mut dx = Dx {
            diags,
            file: &file,
            engine: &engine,
            scope: syntax_scope(&user),
        };
        if root.as_object().is_none() {
            dx.error(
                root.span,
                &JsonPath::root(),
                format!(
                    "a template must be a JSON object, found {}",
                    root.type_name()
                ),
            )
            .notes
            .push("help: start from {\"builders\": [{\"type\": \"amazon-ebs\", ...}]}".into());
            return None;
        }
        let mut obj = Obj::new(root, JsonPath::root(), "the template", &mut dx)?;
        for m in root.as_object().unwrap_or(&[]) {
            if m.key.starts_with('_') && m.value.as_str().is_none() {
                dx.error(
                    m.value.span,
                    &JsonPath::root().key(&m.key),
                    format!(
                        "the comment `{}` must be a string, found {}",
                        m.key,
                        m.value.type_name()
                    ),
                )
                .notes
                .push(
                    "help: keys starting with _ are comments; write their value in double quotes"
                        .into(),
                );
            }
        }
        let description = obj.raw_string(&mut dx, "description");
        let min_packer_version = obj
            .take("min_packer_version")
            .and_then(|(n, p)| match &n.kind {
                Kind::String(s) => Some((s.clone(), n.span)),
                _ => {
                    dx.error(
                        n.span,
                        &p,
                        format!(
                            "`min_packer_version` must be a string, found {}",
                            n.type_name()
                        ),
                    );
                    None
                }
            });
        let variables = parse_variables(&mut obj, &mut dx);
        let sensitive = obj
            .take("sensitive-variables")
            .map(|(n, p)| name_list(n, &p, "sensitive-variables", &mut dx))
            .unwrap_or_default();
        let builders = parse_builders(&mut obj, &mut dx);
        let provisioners = match obj.array(&mut dx, "provisioners") {
            Some(items) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, (n, p))| parse_provisioner(n, p, i, "provisioner", &mut dx))
                .collect(),
            None => Vec::new(),
        };
        let error_cleanup = obj
            .take("error-cleanup-provisioner")
            .and_then(|(n, p)| parse_provisioner(n, p, 0, "error-cleanup-provisioner", &mut dx));
        let post_processors = match obj.take("post-processors") {
            Some((n, p)) => parse_post_processors(n, &p, &mut dx),
            None => Vec::new(),
        };
        obj.ignored(
            &mut dx,
            "push",
            "`push` sent builds to the retired Atlas service",
        );
        obj.finish(&mut dx);
        // Packer rejects unknown root keys that are not `_` comments: the same rule, applied by
        // `finish` above, which also suggests the closest root key.
        Some(Template {
            file,
            template_dir,
            description,
            min_packer_version,
            variables,
            sensitive,
            builders,
            provisioners,
            post_processors,
            error_cleanup,
        })
    }

    pub fn builder_names(&self) -> Vec<&str> {
        self.builders.iter().map(|b| b.name.as_str()).collect()
    }
}

fn parse_variables(obj: &mut Obj, dx: &mut Dx) -> Vec<VarDecl> {
    let Some((node, path)) = obj.take("variables") else {
        return Vec::new();
    };
    let Some(members) = node.as_object() else {
        dx.error(
            node.span,
            &path,
            format!("`variables` must be an object, found {}", node.type_name()),
        )
        .notes
        .push("help: write \"variables\": {\"name\": \"default\", \"required_name\": null}".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in members {
        let p = path.key(&m.key);
        let default = match &m.value.kind {
            Kind::Null => None,
            Kind::String(s) => Some(s.clone()),
            // Packer decodes defaults weakly into strings.
            Kind::Number(n) => Some(n.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => {
                dx.error(
                    m.value.span,
                    &p,
                    format!("the default of variable `{}` must be a string or null, found {}", m.key, m.value.type_name()),
                )
                .notes
                .push("help: JSON templates only have string variables; encode lists as text, e.g. \"a,b\", and use {{split}}".into());
                continue;
            }
        };
        if m.key.is_empty() {
            dx.error(m.key_span, &p, "a variable needs a name");
            continue;
        }
        out.push(VarDecl {
            name: m.key.clone(),
            default,
            key_span: m.key_span,
            value: m.value.clone(),
        });
    }
    out
}

/// A list of names (a single string is a list of one, as Packer decodes weakly).
fn name_list(node: &Node, path: &JsonPath, key: &str, dx: &mut Dx) -> Vec<NameRef> {
    match &node.kind {
        Kind::String(s) => vec![NameRef {
            name: s.clone(),
            span: node.span,
            path: path.clone(),
        }],
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.kind {
                Kind::String(s) => Some(NameRef {
                    name: s.clone(),
                    span: n.span,
                    path: path.index(i),
                }),
                _ => {
                    dx.error(
                        n.span,
                        &path.index(i),
                        format!(
                            "`{key}` must list names as strings, found {}",
                            n.type_name()
                        ),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            dx.error(
                node.span,
                path,
                format!(
                    "`{key}` must be a list of names, found {}",
                    node.type_name()
                ),
            );
            Vec::new()
        }
    }
}

fn type_of(node: &Node, path: &JsonPath, what: &str, dx: &mut Dx) -> Option<String> {
    let Some(members) = node.as_object() else {
        dx.error(
            node.span,
            path,
            format!("{what} must be an object, found {}", node.type_name()),
        );
        return None;
    };
    match members.iter().find(|m| m.key == "type") {
        Some(m) => match &m.value.kind {
            Kind::String(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                dx.error(
                    m.value.span,
                    &path.key("type"),
                    format!("the `type` of {what} must be a non-empty string"),
                );
                None
            }
        },
        None => {
            dx.error(Span::new(node.span.start, node.span.start + 1), path, format!("{what} is missing its `type`"))
                .notes
                .push("help: add e.g. \"type\": \"amazon-ebs\" (builders) or \"type\": \"shell\" (provisioners)".into());
            None
        }
    }
}

fn parse_builders(obj: &mut Obj, dx: &mut Dx) -> Vec<RawBuilder> {
    let head = obj.head();
    let Some(items) = obj.array(dx, "builders") else {
        if !obj.has("builders") {
            dx.error(
                head,
                &JsonPath::root(),
                "the template has no `builders`: at least one builder is required",
            )
            .notes
            .push("help: add \"builders\": [{\"type\": \"amazon-ebs\", ...}]".into());
        }
        return Vec::new();
    };
    if items.is_empty() {
        let (node, path) = obj.any("builders").expect("just taken");
        dx.error(
            node.span,
            &path,
            "`builders` is empty: at least one builder is required",
        );
    }
    let mut out: Vec<RawBuilder> = Vec::new();
    for (index, (node, path)) in items.into_iter().enumerate() {
        let what = format!("builder {}", index + 1);
        let Some(kind) = type_of(node, &path, &what, dx) else {
            continue;
        };
        let name = match node.get("name") {
            Some(m) => match &m.value.kind {
                Kind::String(s) if !s.is_empty() => s.clone(),
                _ => {
                    dx.error(
                        m.value.span,
                        &path.key("name"),
                        "a builder `name` must be a non-empty string",
                    );
                    continue;
                }
            },
            None => kind.clone(),
        };
        if let Some(first) = out.iter().find(|b| b.name == name) {
            let span = node
                .get("name")
                .map_or(Span::new(node.span.start, node.span.start + 1), |m| {
                    m.value.span
                });
            let (l, c) = dx.file.line_col(first.node.span.start);
            let file_name = dx.file.name.clone();
            let d = dx.error(span, &path, format!("two builders are named `{name}`"));
            d.notes
                .push(format!("note: the first one starts at {file_name}:{l}:{c}"));
            d.notes
                .push("help: give each builder a unique \"name\" (it defaults to its type)".into());
            continue;
        }
        out.push(RawBuilder {
            name,
            kind,
            index,
            node: node.clone(),
            path,
        });
    }
    out
}

fn parse_provisioner(
    node: &Node,
    path: JsonPath,
    index: usize,
    what: &str,
    dx: &mut Dx,
) -> Option<RawProvisioner> {
    let label = if what == "provisioner" {
        format!("provisioner {}", index + 1)
    } else {
        what.to_string()
    };
    let kind = type_of(node, &path, &label, dx)?;
    let members = node.as_object()?;
    let get = |k: &str| members.iter().find(|m| m.key == k);
    let only = get("only")
        .map(|m| name_list(&m.value, &path.key("only"), "only", dx))
        .unwrap_or_default();
    let except = get("except")
        .map(|m| name_list(&m.value, &path.key("except"), "except", dx))
        .unwrap_or_default();
    let overrides = get("override")
        .map(|m| parse_overrides(m, &path.key("override"), dx))
        .unwrap_or_default();
    let pause_before = get("pause_before").and_then(|m| parse_duration_key(m, &path, dx));
    let timeout = get("timeout").and_then(|m| parse_duration_key(m, &path, dx));
    let max_retries = get("max_retries")
        .map(|m| parse_max_retries(m, &path, dx))
        .unwrap_or(0);
    // Settings merged from `override` must not carry the keys that only make sense once.
    for (name, ov) in &overrides {
        for k in ["type", "only", "except", "override"] {
            if let Some(m) = ov.get(k) {
                dx.error(
                    m.key_span,
                    &name.path.key(k),
                    format!("`{k}` cannot be overridden per build"),
                );
            }
        }
    }
    Some(RawProvisioner {
        kind,
        index,
        only,
        except,
        overrides,
        pause_before,
        max_retries,
        timeout,
        node: node.clone(),
        path,
    })
}

/// A provisioner's `override` (at `p`): per-build settings, each an object, keyed by build name.
fn parse_overrides(m: &json::Member, p: &JsonPath, dx: &mut Dx) -> Vec<(NameRef, Node)> {
    let mut overrides = Vec::new();
    let Some(ov) = m.value.as_object() else {
        dx.error(
            m.value.span,
            p,
            "`override` must be an object keyed by build name",
        );
        return overrides;
    };
    for o in ov {
        if o.value.as_object().is_none() {
            dx.error(
                o.value.span,
                &p.key(&o.key),
                format!(
                    "`override.{}` must be an object of settings for that build",
                    o.key
                ),
            );
            continue;
        }
        overrides.push((
            NameRef {
                name: o.key.clone(),
                span: o.key_span,
                path: p.key(&o.key),
            },
            o.value.clone(),
        ));
    }
    overrides
}

/// A provisioner's duration setting (`pause_before`, `timeout`) of the object at `path`.
fn parse_duration_key(m: &json::Member, path: &JsonPath, dx: &mut Dx) -> Option<Duration> {
    let k = m.key.as_str();
    let p = path.key(k);
    match &m.value.kind {
        Kind::String(s) => match crate::duration::parse(s) {
            Ok(d) => Some(d),
            Err(why) => {
                dx.error(
                    m.value.span,
                    &p,
                    format!("`{k}`: \"{s}\" is not a duration: {why}"),
                )
                .notes
                .push("help: write it like \"30s\", \"5m\" or \"1h30m\"".into());
                None
            }
        },
        _ => {
            dx.error(
                m.value.span,
                &p,
                format!(
                    "`{k}` must be a duration string such as \"30s\", found {}",
                    m.value.type_name()
                ),
            );
            None
        }
    }
}

/// A provisioner's `max_retries` (of the object at `path`): a whole number from 0 to 100.
fn parse_max_retries(m: &json::Member, path: &JsonPath, dx: &mut Dx) -> u32 {
    let p = path.key("max_retries");
    let text = match &m.value.kind {
        Kind::Number(n) => n.clone(),
        Kind::String(s) => s.clone(),
        _ => String::from("?"),
    };
    match text.trim().parse::<u32>() {
        Ok(v) if v <= 100 => v,
        _ => {
            dx.error(
                m.value.span,
                &p,
                format!("`max_retries` must be a whole number from 0 to 100, found {text}"),
            );
            0
        }
    }
}

fn parse_post_processors(node: &Node, path: &JsonPath, dx: &mut Dx) -> Vec<Vec<RawPostProcessor>> {
    let Some(items) = node.as_array() else {
        dx.error(
            node.span,
            path,
            format!(
                "`post-processors` must be a list, found {}",
                node.type_name()
            ),
        );
        return Vec::new();
    };
    let mut chains = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        match &item.kind {
            Kind::Array(chain) => {
                let parsed: Vec<RawPostProcessor> = chain
                    .iter()
                    .enumerate()
                    .filter_map(|(j, n)| parse_post_processor(n, p.index(j), dx))
                    .collect();
                if chain.is_empty() {
                    dx.error(
                        item.span,
                        &p,
                        "an empty post-processor chain does nothing; remove it",
                    );
                }
                if !parsed.is_empty() {
                    chains.push(parsed);
                }
            }
            _ => {
                if let Some(pp) = parse_post_processor(item, p, dx) {
                    chains.push(vec![pp]);
                }
            }
        }
    }
    chains
}

fn parse_post_processor(node: &Node, path: JsonPath, dx: &mut Dx) -> Option<RawPostProcessor> {
    if let Kind::String(kind) = &node.kind {
        // The bare-string form: just the type.
        return Some(RawPostProcessor {
            kind: kind.clone(),
            name: None,
            only: Vec::new(),
            except: Vec::new(),
            keep_input_artifact: None,
            node: Node {
                span: node.span,
                kind: Kind::Object(vec![json::Member {
                    key: "type".into(),
                    key_span: node.span,
                    value: node.clone(),
                }]),
            },
            path,
        });
    }
    let kind = type_of(node, &path, "a post-processor", dx)?;
    let members = node.as_object()?;
    let get = |k: &str| members.iter().find(|m| m.key == k);
    let only = get("only")
        .map(|m| name_list(&m.value, &path.key("only"), "only", dx))
        .unwrap_or_default();
    let except = get("except")
        .map(|m| name_list(&m.value, &path.key("except"), "except", dx))
        .unwrap_or_default();
    let name = get("name").and_then(|m| m.value.as_str().map(str::to_string));
    let keep_input_artifact = match get("keep_input_artifact") {
        None => None,
        Some(m) => match &m.value.kind {
            Kind::Bool(b) => Some(*b),
            Kind::String(s) => match decode::parse_bool(s) {
                Some(b) => Some(b),
                None => {
                    dx.error(
                        m.value.span,
                        &path.key("keep_input_artifact"),
                        "`keep_input_artifact` must be true or false",
                    );
                    None
                }
            },
            _ => {
                dx.error(
                    m.value.span,
                    &path.key("keep_input_artifact"),
                    "`keep_input_artifact` must be true or false",
                );
                None
            }
        },
    };
    Some(RawPostProcessor {
        kind,
        name,
        only,
        except,
        keep_input_artifact,
        node: node.clone(),
        path,
    })
}
