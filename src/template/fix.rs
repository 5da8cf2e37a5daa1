//! `imgbuild fix`: the deprecated options that Packer 1.6.6's `packer fix` rewrites (the fixers
//! that apply to amazon-ebs, shell, file and manifest), rewritten as byte edits of the template's
//! text. The located parser says where each key and value is; everything no fixer touches keeps
//! its bytes (key order, indentation, escapes), and a template with nothing to fix comes back
//! unchanged. [`FIXES`] is the list README shows.

use super::json::{self, Kind, Member, Node, SyntaxError};

/// Each fix: Packer's fixer name, and what it does.
pub const FIXES: &[(&str, &str)] = &[
    ("createtime", "`{{.CreateTime}}` in `ami_name`, `bundle_prefix`, `snapshot_name` becomes `{{timestamp}}`"),
    ("clean-image-name", "`clean_ami_name` and `clean_image_name` in builder strings (and their maps' strings) become `clean_resource_name`"),
    ("sshkeypath", "`ssh_key_path` becomes `ssh_private_key_file` (dropped when that is set)"),
    ("sshdisableagent", "`ssh_disable_agent` becomes `ssh_disable_agent_forwarding` (dropped when that is set)"),
    ("ssh-wait-timeout", "`ssh_wait_timeout` becomes `ssh_timeout` (its value wins when both are set, as it does in a build)"),
    ("amazon-shutdown_behavior", "`shutdown_behaviour` becomes `shutdown_behavior`"),
    ("amazon-enhanced-networking", "`enhanced_networking` becomes `ena_support`"),
    ("amazon-private-ip", "`ssh_private_ip: true` becomes `ssh_interface: \"private_ip\"` (`false`: `\"public_ip\"`)"),
    ("amazon-temp-sec-cidrs", "`temporary_security_group_source_cidr: \"c\"` becomes `temporary_security_group_source_cidrs: [\"c\"]`"),
    ("spot-price-auto-product", "`spot_price_auto_product` is removed"),
    ("manifest-filename", "the manifest post-processor's `filename` becomes `output` (dropped when that is set)"),
    ("ssh-host-port", "imgbuild's own: `ssh_host_port_min`, `ssh_host_port_max`, `ssh_skip_nat_mapping` of amazon builders are removed (they belong to local virtual machine builders)"),
];

/// One change: the fixer, and the JSON path of the key it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub fixer: &'static str,
    pub path: String,
}

/// The fixed text and what changed (empty: the text is the input's).
#[derive(Debug)]
pub struct Fixed {
    pub text: String,
    pub applied: Vec<Applied>,
}

/// A byte range of the input and what replaces it.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// The fixes of one object (a builder, a post-processor).
struct Obj<'a> {
    src: &'a str,
    node: &'a Node,
    members: &'a [Member],
    path: String,
    edits: Vec<Edit>,
    deleted: Vec<usize>,
    applied: Vec<Applied>,
}

impl<'a> Obj<'a> {
    fn new(src: &'a str, node: &'a Node, path: String) -> Option<Obj<'a>> {
        Some(Obj {
            src,
            node,
            members: node.as_object()?,
            path,
            edits: Vec::new(),
            deleted: Vec::new(),
            applied: Vec::new(),
        })
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|m| m.key == key)
    }

    fn raw(&self, n: &Node) -> &'a str {
        &self.src[n.span.start..n.span.end]
    }

    fn did(&mut self, fixer: &'static str, key: &str) {
        self.applied.push(Applied {
            fixer,
            path: format!("{}.{key}", self.path),
        });
    }

    fn set_value(&mut self, i: usize, text: String) {
        let span = self.members[i].value.span;
        self.edits.push(Edit {
            start: span.start,
            end: span.end,
            text,
        });
    }

    fn rename_key(&mut self, i: usize, new: &str) {
        let span = self.members[i].key_span;
        self.edits.push(Edit {
            start: span.start,
            end: span.end,
            text: format!("\"{new}\""),
        });
    }

    /// `old` becomes `new` with the value `value` (the old value's text when `None`). When
    /// `new` is set already: with `old_wins` it takes the old value; without, the old key is
    /// dropped.
    fn replace(
        &mut self,
        fixer: &'static str,
        old: &str,
        new: &str,
        value: Option<String>,
        old_wins: bool,
    ) {
        let Some(i) = self.find(old) else { return };
        match self.find(new) {
            None => {
                self.rename_key(i, new);
                if let Some(v) = value {
                    self.set_value(i, v);
                }
            }
            Some(j) => {
                if old_wins {
                    let v = value.unwrap_or_else(|| self.raw(&self.members[i].value).to_string());
                    self.set_value(j, v);
                }
                self.deleted.push(i);
            }
        }
        self.did(fixer, old);
    }

    fn remove(&mut self, fixer: &'static str, key: &str) {
        if let Some(i) = self.find(key) {
            self.deleted.push(i);
            self.did(fixer, key);
        }
    }

    /// Substring replacements in a string value (its text as written, so escapes stay).
    fn rewrite_string(
        &mut self,
        fixer: &'static str,
        n: &Node,
        key: &str,
        from: &[&str],
        to: &str,
    ) {
        if !matches!(n.kind, Kind::String(_)) {
            return;
        }
        let raw = self.raw(n);
        let mut text = raw.to_string();
        for f in from {
            text = text.replace(f, to);
        }
        if text != raw {
            self.edits.push(Edit {
                start: n.span.start,
                end: n.span.end,
                text,
            });
            self.did(fixer, key);
        }
    }

    /// The edits that delete the members in `deleted`, with the separators around them: a run
    /// of deleted members followed by a kept one goes up to that one; a run at the end from the
    /// kept member before it.
    fn deletions(&mut self) {
        let mut del = std::mem::take(&mut self.deleted);
        del.sort_unstable();
        del.dedup();
        let mut k = 0;
        while k < del.len() {
            let first = del[k];
            let mut last = first;
            while k + 1 < del.len() && del[k + 1] == last + 1 {
                k += 1;
                last = del[k];
            }
            k += 1;
            let m = self.members;
            let (start, end) = if let Some(next) = m.get(last + 1) {
                let start = line_start_or(self.src, m[first].key_span.start);
                let end = if start < m[first].key_span.start {
                    line_start_or(self.src, next.key_span.start)
                } else {
                    next.key_span.start
                };
                (start, end)
            } else if first > 0 {
                (m[first - 1].value.span.end, m[last].value.span.end)
            } else {
                (self.node.span.start + 1, m[last].value.span.end)
            };
            self.edits.push(Edit {
                start,
                end,
                text: String::new(),
            });
        }
    }
}

/// The start of `pos`'s line when only blanks come before it there; else `pos`.
fn line_start_or(src: &str, pos: usize) -> usize {
    let before = &src[..pos];
    let ls = before.rfind('\n').map_or(0, |i| i + 1);
    if before[ls..].chars().all(|c| c == ' ' || c == '\t') {
        ls
    } else {
        pos
    }
}

/// The fixes of one builder.
fn builder(o: &mut Obj<'_>) {
    let kind = o
        .node
        .get("type")
        .and_then(|m| m.value.as_str())
        .unwrap_or("")
        .to_string();
    let amazon = kind.starts_with("amazon-");
    let members = o.members;
    for key in ["ami_name", "bundle_prefix", "snapshot_name"] {
        if let Some(i) = o.find(key) {
            let n = &members[i].value;
            o.rewrite_string("createtime", n, key, &["{{.CreateTime}}"], "{{timestamp}}");
        }
    }
    let clean = ["clean_ami_name", "clean_image_name"];
    for m in members {
        o.rewrite_string(
            "clean-image-name",
            &m.value,
            &m.key,
            &clean,
            "clean_resource_name",
        );
        for inner in m.value.as_object().unwrap_or_default() {
            let key = format!("{}.{}", m.key, inner.key);
            o.rewrite_string(
                "clean-image-name",
                &inner.value,
                &key,
                &clean,
                "clean_resource_name",
            );
        }
    }
    o.replace(
        "sshkeypath",
        "ssh_key_path",
        "ssh_private_key_file",
        None,
        false,
    );
    o.replace(
        "sshdisableagent",
        "ssh_disable_agent",
        "ssh_disable_agent_forwarding",
        None,
        false,
    );
    o.replace(
        "ssh-wait-timeout",
        "ssh_wait_timeout",
        "ssh_timeout",
        None,
        true,
    );
    if !amazon {
        return;
    }
    o.replace(
        "amazon-shutdown_behavior",
        "shutdown_behaviour",
        "shutdown_behavior",
        None,
        true,
    );
    o.replace(
        "amazon-enhanced-networking",
        "enhanced_networking",
        "ena_support",
        None,
        true,
    );
    if let Some(i) = o.find("ssh_private_ip") {
        let private = match &members[i].value.kind {
            Kind::Bool(b) => Some(*b),
            Kind::String(s) => s.parse::<bool>().ok(),
            _ => None,
        };
        if let Some(p) = private {
            let v = if p { "\"private_ip\"" } else { "\"public_ip\"" };
            o.replace(
                "amazon-private-ip",
                "ssh_private_ip",
                "ssh_interface",
                Some(v.into()),
                true,
            );
        }
    }
    if let Some(i) = o.find("temporary_security_group_source_cidr") {
        let n = &members[i].value;
        if matches!(n.kind, Kind::String(_)) {
            let v = format!("[{}]", o.raw(n));
            o.replace(
                "amazon-temp-sec-cidrs",
                "temporary_security_group_source_cidr",
                "temporary_security_group_source_cidrs",
                Some(v),
                true,
            );
        }
    }
    o.remove("spot-price-auto-product", "spot_price_auto_product");
    for key in [
        "ssh_host_port_min",
        "ssh_host_port_max",
        "ssh_skip_nat_mapping",
    ] {
        o.remove("ssh-host-port", key);
    }
}

/// The post-processors of the template, whichever of Packer's three forms: a name, an object,
/// or a list of those (a chain).
fn post_processors(root: &Node) -> Vec<(&Node, String)> {
    let mut out = Vec::new();
    let Some(list) = root.get("post-processors").and_then(|m| m.value.as_array()) else {
        return out;
    };
    for (i, pp) in list.iter().enumerate() {
        match &pp.kind {
            Kind::Object(_) => out.push((pp, format!("post-processors[{i}]"))),
            Kind::Array(chain) => {
                for (j, p) in chain.iter().enumerate() {
                    out.push((p, format!("post-processors[{i}][{j}]")));
                }
            }
            _ => {}
        }
    }
    out
}

/// Fixes `src`. A syntax error is the parser's (the caller shows it with its location).
pub fn fix(src: &str) -> Result<Fixed, SyntaxError> {
    let parsed = json::parse(src)?;
    let root = &parsed.root;
    let mut objs = Vec::new();
    if let Some(list) = root.get("builders").and_then(|m| m.value.as_array()) {
        for (i, b) in list.iter().enumerate() {
            if let Some(mut o) = Obj::new(src, b, format!("builders[{i}]")) {
                builder(&mut o);
                objs.push(o);
            }
        }
    }
    for (pp, path) in post_processors(root) {
        let is_manifest = pp.get("type").and_then(|m| m.value.as_str()) == Some("manifest");
        if let Some(mut o) = Obj::new(src, pp, path).filter(|_| is_manifest) {
            o.replace("manifest-filename", "filename", "output", None, false);
            objs.push(o);
        }
    }
    let mut edits = Vec::new();
    let mut applied = Vec::new();
    for mut o in objs {
        o.deletions();
        edits.append(&mut o.edits);
        applied.append(&mut o.applied);
    }
    edits.sort_by_key(|e| (e.start, e.end));
    let mut text = String::with_capacity(src.len());
    let mut at = 0;
    for e in edits {
        // Edits never overlap (each touches one key or value, or separators of deleted
        // members); one that would is dropped rather than corrupt the text.
        if e.start < at {
            continue;
        }
        text.push_str(&src[at..e.start]);
        text.push_str(&e.text);
        at = e.end;
    }
    text.push_str(&src[at..]);
    Ok(Fixed { text, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(src: &str) -> (String, Vec<&'static str>) {
        let f = fix(src).expect("JSON");
        (f.text, f.applied.iter().map(|a| a.fixer).collect())
    }

    #[test]
    fn amazon_fixes_leave_other_builders_alone_but_ssh_fixes_do_not() {
        let (text, applied) = fixed(
            r#"{"builders": [{"type": "null", "enhanced_networking": true, "ssh_key_path": "k"}]}"#,
        );
        assert_eq!(
            text,
            r#"{"builders": [{"type": "null", "enhanced_networking": true, "ssh_private_key_file": "k"}]}"#
        );
        assert_eq!(applied, ["sshkeypath"]);
    }

    #[test]
    fn removing_every_member_but_one_and_runs_of_members() {
        let src = "{\"builders\": [{\n  \"spot_price_auto_product\": \"a\",\n  \"ssh_host_port_min\": 1,\n  \"type\": \"amazon-ebs\",\n  \"ssh_host_port_max\": 2,\n  \"ssh_skip_nat_mapping\": true\n}]}";
        let (text, applied) = fixed(src);
        assert_eq!(text, "{\"builders\": [{\n  \"type\": \"amazon-ebs\"\n}]}");
        assert_eq!(applied.len(), 4);
        let (text, _) = fixed(
            r#"{"post-processors": [{"filename": "m.json", "output": "o.json", "type": "manifest"}]}"#,
        );
        assert_eq!(
            text,
            r#"{"post-processors": [{"output": "o.json", "type": "manifest"}]}"#
        );
    }

    #[test]
    fn values_a_fix_cannot_decide_stay_and_bad_json_is_an_error() {
        let src = r#"{"builders": [{"type": "amazon-ebs", "ssh_private_ip": "{{user `p`}}", "temporary_security_group_source_cidr": 7}]}"#;
        assert_eq!(fixed(src), (src.to_string(), vec![]));
        assert_eq!(fixed("[1, 2]"), ("[1, 2]".to_string(), vec![]));
        assert!(fix("{\"builders\": [}").is_err());
    }
}
