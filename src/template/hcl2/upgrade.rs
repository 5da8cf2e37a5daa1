//! `imgbuild hcl2_upgrade TEMPLATE.json`: the HCL2 twin of a JSON template.
//!
//! What has an HCL2 translation is translated (`{{user `x`}}` to `${var.x}`, `{{env `X`}}` to
//! `${env("X")}`, `{{template_dir}}` to `${path.root}`, `{{pwd}}` to `${path.cwd}`); everything
//! else inside `{{ }}` (build data such as `{{ .SourceAMIName }}`, `{{timestamp}}`, `{{isotime}}`)
//! is kept as Go-template text, which imgbuild renders in HCL2 templates as Packer's plugins do,
//! and the first such string gets a comment saying so. Packer's own command leaves `{{user}}` in
//! some places; this one translates it everywhere.

use std::fmt::Write as _;

use super::eval::SINGLE_BLOCKS;
use crate::template::json::{Kind, Node};
use crate::template::{RawPostProcessor, RawProvisioner, Template};

/// Keys of the JSON model that are not configuration (handled by the build block).
const META: &[&str] = &["type", "only", "except", "name", "keep_input_artifact"];

/// Repeatable blocks in Packer's schema (everything else that is a list of objects is an
/// attribute).
const LIST_BLOCKS: &[&str] = &["launch_block_device_mappings", "ami_block_device_mappings"];

/// Options Packer types as lists, which JSON's weak decoding lets a template write as one value
/// (`"inline": "echo"`) and HCL2 does not (hashicorp/packer#10261: Packer's command copies the
/// single value, and the result fails with "list of string required"): written as `[value]`.
const LIST_KEYS: &[&str] = &[
    "inline",
    "scripts",
    "environment_vars",
    "valid_exit_codes",
    "ami_regions",
    "ami_users",
    "ami_groups",
    "ami_product_codes",
    "snapshot_users",
    "snapshot_groups",
    "security_group_ids",
    "owners",
    "spot_instance_types",
    "extra_arguments",
    "ansible_env_vars",
    "ansible_ssh_extra_args",
    "groups",
    "empty_groups",
    "inventory_groups",
    "remote_cookbook_paths",
    "run_list",
    "sources",
    "only_on",
    "capabilities",
    "regions",
    "policy_arns",
    "transitive_tag_keys",
];

/// The HCL2 text for a parsed JSON template.
pub fn upgrade(t: &Template) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `imgbuild hcl2_upgrade` from {}.",
        t.file.name
    );
    out.push_str("# Go-template text left in strings (e.g. {{ .SourceAMIName }}, {{timestamp}}) is build data\n");
    out.push_str("# that imgbuild (like Packer's plugins) renders when the build runs.\n\n");
    if t.builders.iter().any(|b| b.kind == "amazon-ebs") || t.min_packer_version.is_some() {
        out.push_str("packer {\n");
        if let Some((v, _)) = &t.min_packer_version {
            let _ = writeln!(out, "  required_version = \">= {v}\"");
        }
        if t.builders.iter().any(|b| b.kind == "amazon-ebs") {
            out.push_str("  required_plugins {\n    amazon = {\n      source  = \"github.com/hashicorp/amazon\"\n      version = \">= 1.0.0\"\n    }\n  }\n");
        }
        out.push_str("}\n\n");
    }
    for v in &t.variables {
        let _ = writeln!(out, "variable {} {{", quote(&v.name));
        out.push_str("  type = string\n");
        match &v.default {
            Some(d) if !d.contains("{{") => {
                let _ = writeln!(out, "  default = {}", quote(d));
            }
            Some(d) => {
                // Packer allows only `env` in defaults; other template calls are translated too
                // and work as long as they are functions.
                let _ = writeln!(out, "  default = {}", string(d));
            }
            None => {}
        }
        if t.sensitive.iter().any(|s| s.name == v.name) {
            out.push_str("  sensitive = true\n");
        }
        out.push_str("}\n\n");
    }
    let sources: Vec<String> = t
        .builders
        .iter()
        .map(|b| {
            let name = b.name.replace(' ', "_");
            let _ = writeln!(out, "source {} {} {{", quote(&b.kind), quote(&name));
            body(&mut out, &b.node, 1, META);
            out.push_str("}\n\n");
            format!("source.{}.{name}", b.kind)
        })
        .collect();
    out.push_str("build {\n");
    if let Some(d) = &t.description {
        let _ = writeln!(out, "  description = {}", string(d));
    }
    let list: Vec<String> = sources.iter().map(|s| quote(s)).collect();
    let _ = writeln!(out, "  sources = [{}]", list.join(", "));
    for p in &t.provisioners {
        provisioner(&mut out, p, "provisioner", t);
    }
    if let Some(p) = &t.error_cleanup {
        provisioner(&mut out, p, "error-cleanup-provisioner", t);
    }
    for chain in &t.post_processors {
        if chain.len() == 1 {
            post_processor(&mut out, &chain[0], 1, t);
        } else {
            out.push_str("\n  post-processors {\n");
            for p in chain {
                post_processor(&mut out, p, 2, t);
            }
            out.push_str("  }\n");
        }
    }
    out.push_str("}\n");
    out
}

/// `TYPE.NAME` for a JSON build name (HCL2's `only`/`except`).
fn full_name(t: &Template, name: &str) -> String {
    match t.builders.iter().find(|b| b.name == name) {
        Some(b) => format!("{}.{}", b.kind, b.name.replace(' ', "_")),
        None => name.to_string(),
    }
}

fn names(t: &Template, refs: &[crate::template::NameRef]) -> String {
    let v: Vec<String> = refs.iter().map(|r| quote(&full_name(t, &r.name))).collect();
    format!("[{}]", v.join(", "))
}

fn provisioner(out: &mut String, p: &RawProvisioner, block: &str, t: &Template) {
    let _ = writeln!(out, "\n  {block} {} {{", quote(&p.kind));
    if !p.only.is_empty() {
        let _ = writeln!(out, "    only = {}", names(t, &p.only));
    }
    if !p.except.is_empty() {
        let _ = writeln!(out, "    except = {}", names(t, &p.except));
    }
    body(out, &p.node, 2, META);
    out.push_str("  }\n");
}

fn post_processor(out: &mut String, p: &RawPostProcessor, depth: usize, t: &Template) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "\n{pad}post-processor {} {{", quote(&p.kind));
    if let Some(n) = &p.name {
        let _ = writeln!(out, "{pad}  name = {}", quote(n));
    }
    if let Some(k) = p.keep_input_artifact {
        let _ = writeln!(out, "{pad}  keep_input_artifact = {k}");
    }
    if !p.only.is_empty() {
        let _ = writeln!(out, "{pad}  only = {}", names(t, &p.only));
    }
    if !p.except.is_empty() {
        let _ = writeln!(out, "{pad}  except = {}", names(t, &p.except));
    }
    body(out, &p.node, depth + 1, META);
    let _ = writeln!(out, "{pad}}}");
}

/// An object's members as attributes and blocks (by Packer's schema) at `depth`.
fn body(out: &mut String, node: &Node, depth: usize, skip: &[&str]) {
    let pad = "  ".repeat(depth);
    for m in node.as_object().unwrap_or(&[]) {
        if skip.contains(&m.key.as_str()) || m.key.starts_with('_') {
            continue;
        }
        match &m.value.kind {
            Kind::Object(_) if SINGLE_BLOCKS.contains(&m.key.as_str()) => {
                let _ = writeln!(out, "{pad}{} {{", m.key);
                body(out, &m.value, depth + 1, &[]);
                let _ = writeln!(out, "{pad}}}");
            }
            Kind::Array(items) if LIST_BLOCKS.contains(&m.key.as_str()) => {
                for i in items {
                    let _ = writeln!(out, "{pad}{} {{", m.key);
                    body(out, i, depth + 1, &[]);
                    let _ = writeln!(out, "{pad}}}");
                }
            }
            _ => {
                let mut v = value(&m.value, depth);
                if LIST_KEYS.contains(&m.key.as_str())
                    && matches!(m.value.kind, Kind::String(_) | Kind::Number(_))
                {
                    v = format!("[{v}]");
                }
                let kept = untranslated(&v);
                if !kept.is_empty() {
                    let _ = writeln!(
                        out,
                        "{pad}# no HCL2 translation of {}: kept as Go-template text, which imgbuild renders",
                        kept.join(", ")
                    );
                }
                let _ = writeln!(out, "{pad}{} = {v}", key(&m.key));
            }
        }
    }
}

/// Go-template functions left in `text` that are not build data or the run's time (those are
/// rendered the same way in both languages and need no comment).
fn untranslated(text: &str) -> Vec<String> {
    const SAME: &[&str] = &[
        "timestamp",
        "isotime",
        "strftime",
        "build",
        "build_name",
        "build_type",
        "uuid",
        "user",
    ];
    let mut out: Vec<String> = Vec::new();
    for part in text.split("{{").skip(1) {
        let call = part.split("}}").next().unwrap_or("").trim();
        let word = call
            .trim_start_matches('(')
            .split([' ', '(', '|'])
            .next()
            .unwrap_or("");
        if word.is_empty() || word.starts_with('.') || SAME.contains(&word) {
            continue;
        }
        let w = format!("`{word}`");
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

fn key(k: &str) -> String {
    let ident = !k.is_empty()
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ident {
        k.to_string()
    } else {
        quote(k)
    }
}

fn value(n: &Node, depth: usize) -> String {
    match &n.kind {
        Kind::Null => "null".into(),
        Kind::Bool(b) => b.to_string(),
        Kind::Number(x) => x.clone(),
        Kind::String(s) => string(s),
        Kind::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| value(x, depth + 1)).collect();
            let one = format!("[{}]", items.join(", "));
            if one.len() < 80 {
                return one;
            }
            let pad = "  ".repeat(depth + 1);
            let mut s = "[\n".to_string();
            for i in items {
                let _ = writeln!(s, "{pad}{i},");
            }
            s.push_str(&"  ".repeat(depth));
            s.push(']');
            s
        }
        Kind::Object(m) => {
            if m.is_empty() {
                return "{}".into();
            }
            let pad = "  ".repeat(depth + 1);
            let mut s = "{\n".to_string();
            for x in m {
                let _ = writeln!(s, "{pad}{} = {}", key(&x.key), value(&x.value, depth + 1));
            }
            s.push_str(&"  ".repeat(depth));
            s.push('}');
            s
        }
    }
}

/// A quoted HCL string with no interpolation.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.replace("${", "$${").replace("%{", "%%{") + "\""
}

/// A JSON template string as an HCL string: the Go-template calls that have an HCL2 translation
/// become interpolations; the rest stays as text.
pub fn string(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&inner(&rest[..i]));
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&inner(&rest[i..]));
            rest = "";
            break;
        };
        let call = &rest[i + 2..i + j];
        match translate(call.trim()) {
            Some(expr) => {
                let _ = write!(out, "${{{expr}}}");
            }
            None => out.push_str(&inner(&rest[i..i + j + 2])),
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(&inner(rest));
    // A string that is one interpolation is the expression itself.
    if let Some(e) = out.strip_prefix("${").and_then(|o| o.strip_suffix('}')) {
        if !e.contains("${") && !e.contains('}') {
            return e.to_string();
        }
    }
    format!("\"{out}\"")
}

/// The inside of a quoted HCL string (escapes, no quotes).
fn inner(s: &str) -> String {
    let q = quote(s);
    q[1..q.len() - 1].to_string()
}

/// `user `x``, `env `X``, `template_dir`, `pwd` into HCL2 expressions.
fn translate(call: &str) -> Option<String> {
    let arg = |name: &str| -> Option<String> {
        let rest = call.strip_prefix(name)?.trim();
        let a = rest
            .strip_prefix('`')
            .and_then(|r| r.strip_suffix('`'))
            .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
        Some(a.to_string())
    };
    if let Some(v) = arg("user") {
        let ident = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        return Some(if ident {
            format!("var.{v}")
        } else {
            format!("var[\"{v}\"]")
        });
    }
    if let Some(v) = arg("env") {
        return Some(format!("env(\"{v}\")"));
    }
    match call {
        "template_dir" => Some("path.root".into()),
        "pwd" => Some("path.cwd".into()),
        "packer_version" => Some("packer.version".into()),
        "uuid" => Some("uuidv4()".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_translate_what_has_a_translation_and_keep_build_data() {
        assert_eq!(string("{{user `region`}}"), "var.region");
        assert_eq!(string("{{user `region`}}-x"), "\"${var.region}-x\"");
        assert_eq!(string("{{template_dir}}/a.sh"), "\"${path.root}/a.sh\"");
        assert_eq!(string("{{ env `HOME` }}"), r#"env("HOME")"#);
        assert_eq!(string("a{{ env `HOME` }}"), r#""a${env("HOME")}""#);
        assert_eq!(string("web-{{timestamp}}"), "\"web-{{timestamp}}\"");
        assert_eq!(string("{{ .SourceAMIName }}"), "\"{{ .SourceAMIName }}\"");
        assert_eq!(string("a \"q\" ${x} %{y}"), "\"a \\\"q\\\" $${x} %%{y}\"");
        assert_eq!(
            untranslated("\"{{ .SourceAMI }}-{{timestamp}}\""),
            Vec::<String>::new()
        );
        assert_eq!(
            untranslated("\"{{ clean_resource_name `a` }}-{{split (user `x`) `,` 0}}\""),
            vec!["`clean_resource_name`".to_string(), "`split`".to_string()]
        );
    }

    #[test]
    fn a_single_value_for_a_list_option_becomes_a_list() {
        let n = crate::template::json::parse(
            r#"{"inline": "echo {{user `x`}}", "valid_exit_codes": 0, "scripts": ["a.sh"], "script": "b.sh"}"#,
        )
        .expect("json")
        .root;
        let mut out = String::new();
        body(&mut out, &n, 1, &[]);
        assert_eq!(
            out,
            "  inline = [\"echo ${var.x}\"]\n  valid_exit_codes = [0]\n  scripts = [\"a.sh\"]\n  script = \"b.sh\"\n"
        );
    }
}
