//! HCL2 in JSON syntax (`.pkr.json`): the JSON object is rewritten as HCL native text by
//! Packer's JSON-syntax rules (hashicorp/hcl's json spec with Packer's schema), and a
//! [`SpanMap`] takes every position in that text back to the JSON value it came from, so every
//! diagnostic is located in the `.pkr.json` file.
//!
//! Rules: a block is a key whose value is an object nested once per label (`"source":
//! {"amazon-ebs": {"web": {...}}}`), or an array of such objects (which keeps the order of
//! `"provisioner": [{"shell": {...}}, {"file": {...}}]`); every other key is an attribute; a
//! string is a template (`"${var.x}"`), except a variable's `type`, which is a type expression;
//! `"//"` keys are comments.

use super::super::json::{self, Kind, Member, Node, Span};

/// Where each piece of the native text came from in the JSON text.
#[derive(Debug, Default, Clone)]
pub struct SpanMap {
    /// (offset in the native text, span in the JSON text), in text order.
    marks: Vec<(usize, Span)>,
}

impl SpanMap {
    /// The JSON span of the piece of native text that holds `start`.
    pub fn map(&self, start: usize) -> Span {
        let i = self.marks.partition_point(|(o, _)| *o <= start);
        i.checked_sub(1)
            .map_or(Span::new(0, 0), |i| self.marks[i].1)
    }
}

/// What a body is: which of its keys are blocks, with how many labels.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    Top,
    Variable,
    Packer,
    Build,
    PostProcessors,
    /// A source, provisioner, post-processor or data source.
    Component,
    Dynamic,
    /// Attributes only (`locals`, `required_plugins`, ...).
    Attrs,
}

fn block_kind(body: Body, key: &str) -> Option<(usize, Body)> {
    Some(match (body, key) {
        (Body::Top, "variable") => (1, Body::Variable),
        (Body::Top, "locals") => (0, Body::Attrs),
        (Body::Top, "local") => (1, Body::Attrs),
        (Body::Top, "packer") => (0, Body::Packer),
        (Body::Top, "source" | "data") => (2, Body::Component),
        (Body::Top, "build") => (0, Body::Build),
        (Body::Variable, "validation") => (0, Body::Attrs),
        (Body::Packer, "required_plugins") => (0, Body::Attrs),
        (
            Body::Build,
            "source" | "provisioner" | "post-processor" | "error-cleanup-provisioner",
        ) => (1, Body::Component),
        (Body::Build, "post-processors") => (0, Body::PostProcessors),
        (Body::PostProcessors, "post-processor") => (1, Body::Component),
        (Body::Build | Body::Component, "dynamic") => (1, Body::Dynamic),
        (Body::Component, "tag" | "run_tag") => (0, Body::Attrs),
        (Body::Dynamic, "content") => (0, Body::Component),
        _ => return None,
    })
}

/// A problem: where in the JSON text, and what.
pub type Problem = (Span, String);

struct Out {
    text: String,
    map: SpanMap,
    problems: Vec<Problem>,
}

impl Out {
    fn at(&mut self, span: Span) {
        self.map.marks.push((self.text.len(), span));
    }
}

/// The JSON text as HCL native text and its span map, or every problem found.
pub fn to_native(text: &str) -> Result<(String, SpanMap), Vec<Problem>> {
    let parsed =
        json::parse(text).map_err(|e| vec![(e.span, format!("invalid JSON: {}", e.message))])?;
    let mut out = Out {
        text: String::new(),
        map: SpanMap::default(),
        problems: parsed
            .duplicates
            .iter()
            .map(|d| {
                (
                    d.again,
                    format!("the key `{}` is given twice in this object", d.key),
                )
            })
            .collect(),
    };
    match &parsed.root.kind {
        Kind::Object(ms) => body(ms, Body::Top, &mut out),
        _ => out.problems.push((
            parsed.root.span,
            "an HCL2 template in JSON syntax is one JSON object of blocks (variable, source, build, ...)".into(),
        )),
    }
    if out.problems.is_empty() {
        Ok((out.text, out.map))
    } else {
        Err(out.problems)
    }
}

fn body(ms: &[Member], kind: Body, out: &mut Out) {
    for m in ms {
        if m.key == "//" {
            continue;
        }
        if let Some((labels, inner)) = block_kind(kind, &m.key) {
            blocks(m, &m.value, labels, &mut Vec::new(), inner, out);
            continue;
        }
        if !is_ident(&m.key) {
            out.problems.push((m.key_span, format!("`{}` is not an HCL name: names are letters, digits, `_` and `-`, starting with a letter", m.key)));
            continue;
        }
        out.at(m.key_span);
        out.text.push_str(&m.key);
        out.text.push_str(" = ");
        if kind == Body::Variable && m.key == "type" {
            if let Kind::String(s) = &m.value.kind {
                out.at(m.value.span);
                out.text.push_str(s);
                out.text.push('\n');
                continue;
            }
        }
        expr(&m.value, out);
        out.text.push('\n');
    }
}

/// `m`'s block(s): one label per nesting level, arrays for several in order.
fn blocks(
    m: &Member,
    v: &Node,
    left: usize,
    labels: &mut Vec<(String, Span)>,
    kind: Body,
    out: &mut Out,
) {
    match &v.kind {
        Kind::Array(items) => {
            for it in items {
                blocks(m, it, left, labels, kind, out);
            }
        }
        Kind::Object(ms) if left == 0 => {
            out.at(m.key_span);
            out.text.push_str(&m.key);
            for (l, span) in labels.iter() {
                out.at(*span);
                out.text.push(' ');
                quoted(l, out);
            }
            out.at(v.span);
            out.text.push_str(" {\n");
            body(ms, kind, out);
            out.at(v.span);
            out.text.push_str("}\n");
        }
        Kind::Object(ms) => {
            for lm in ms {
                labels.push((lm.key.clone(), lm.key_span));
                blocks(m, &lm.value, left - 1, labels, kind, out);
                labels.pop();
            }
        }
        _ => out.problems.push((
            v.span,
            format!(
                "`{}` is a block here: its value is an object{}",
                m.key,
                if left == 0 {
                    String::new()
                } else {
                    format!(" keyed by its {left} label(s)")
                }
            ),
        )),
    }
}

fn expr(v: &Node, out: &mut Out) {
    out.at(v.span);
    match &v.kind {
        Kind::Null => out.text.push_str("null"),
        Kind::Bool(b) => out.text.push_str(if *b { "true" } else { "false" }),
        Kind::Number(n) => out.text.push_str(n),
        Kind::String(s) => quoted(s, out),
        Kind::Array(items) => {
            out.text.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.text.push_str(", ");
                }
                expr(it, out);
            }
            out.at(v.span);
            out.text.push(']');
        }
        Kind::Object(ms) => {
            out.text.push_str("{\n");
            for m in ms {
                out.at(m.key_span);
                quoted(&m.key, out);
                out.text.push_str(" = ");
                expr(&m.value, out);
                out.text.push('\n');
            }
            out.at(v.span);
            out.text.push('}');
        }
    }
}

/// A JSON string as an HCL quoted template: its `${ }`/`%{ }` stay templates, as in JSON syntax,
/// with the expression inside them copied as written (its quotes are expression syntax).
fn quoted(s: &str, out: &mut Out) {
    out.text.push('"');
    let cs: Vec<char> = s.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let opens = (c == '$' || c == '%') && cs.get(i + 1) == Some(&'{');
        if depth == 0 && opens && i > 0 && cs[i - 1] == c {
            // `$${` / `%%{`: an escaped, literal sequence (its first character already written).
            out.text.push(c);
        } else if depth == 0 && opens {
            out.text.push_str(if c == '$' { "${" } else { "%{" });
            depth = 1;
            i += 2;
            continue;
        } else if depth > 0 {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            out.text.push(c);
        } else {
            match c {
                '"' => out.text.push_str("\\\""),
                '\\' => out.text.push_str("\\\\"),
                '\n' => out.text.push_str("\\n"),
                '\r' => out.text.push_str("\\r"),
                '\t' => out.text.push_str("\\t"),
                c if c.is_control() => out.text.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.text.push(c),
            }
        }
        i += 1;
    }
    out.text.push('"');
}

fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && cs.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl2_json_syntax_becomes_native_text() {
        let j = r#"{
  "//": "a comment",
  "variable": {"n": {"type": "list(string)", "default": ["a"]}},
  "source": {"null": {"a": {"communicator": "none", "tag": [{"key": "k", "value": "v"}]}}},
  "build": {"sources": ["source.null.a"],
    "provisioner": [{"shell-local": {"inline": ["echo \"${var.n[0]}\""]}}, {"file": {"source": "x"}}]}
}"#;
        let (t, map) = to_native(j).expect("converts");
        assert_eq!(
            t,
            "variable \"n\" {\ntype = list(string)\ndefault = [\"a\"]\n}\nsource \"null\" \"a\" {\ncommunicator = \"none\"\ntag {\nkey = \"k\"\nvalue = \"v\"\n}\n}\nbuild {\nsources = [\"source.null.a\"]\nprovisioner \"shell-local\" {\ninline = [\"echo \\\"${var.n[0]}\\\"\"]\n}\nprovisioner \"file\" {\nsource = \"x\"\n}\n}\n"
        );
        let at = t.find("list(string)").expect("type");
        let s = map.map(at + 3);
        assert_eq!(&j[s.start..s.end], "\"list(string)\"");
        hcl::edit::parser::parse_body(&t).expect("parses");
        // Quotes inside an interpolation are expression syntax; `$${` stays literal.
        let mut out = Out {
            text: String::new(),
            map: SpanMap::default(),
            problems: Vec::new(),
        };
        quoted("a \"${[for s in [\"x\"] : \"${s}.sh\"]}\" $${b}", &mut out);
        assert_eq!(
            out.text,
            "\"a \\\"${[for s in [\"x\"] : \"${s}.sh\"]}\\\" $${b}\""
        );
    }

    #[test]
    fn hcl2_json_syntax_problems_are_located() {
        let j = "{\"source\": {\"null\": [1]}, \"bad key\": 1}";
        let ps = to_native(j).expect_err("problems");
        let got: Vec<(&str, &str)> = ps
            .iter()
            .map(|(s, m)| (&j[s.start..s.end], m.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1", "`source` is a block here: its value is an object keyed by its 1 label(s)"),
                ("\"bad key\"", "`bad key` is not an HCL name: names are letters, digits, `_` and `-`, starting with a letter"),
            ]
        );
        let e = to_native("{\"a\": ").expect_err("syntax");
        assert!(e[0].1.starts_with("invalid JSON: "), "{e:?}");
    }
}
