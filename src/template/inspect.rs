//! `imgbuild inspect`: what a template declares, laid out as Packer 1.6.6's `inspect` does
//! (description, required and optional variables with sensitive defaults masked, builders,
//! provisioners), plus the post-processor chains, which Packer 1.6.6 leaves out.

use super::Template;
use crate::redact::MASK;

/// One line of inspect output: text for people, and for `-machine-readable` the same record
/// types Packer emits (`template-variable`, `template-builder`, `template-provisioner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Say(String),
    Record(&'static str, Vec<String>),
}

pub fn inspect(t: &Template) -> Vec<Line> {
    let mut out = Vec::new();
    let say = |out: &mut Vec<Line>, s: &str| out.push(Line::Say(s.to_string()));
    if let Some(d) = &t.description {
        say(&mut out, "Description:\n");
        say(&mut out, &format!("{d}\n"));
    }
    let sensitive = |name: &str| t.sensitive.iter().any(|s| s.name == name);
    let mut vars: Vec<_> = t.variables.iter().collect();
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    if vars.is_empty() {
        say(&mut out, "Variables:\n");
        say(&mut out, "  <No variables>");
        say(&mut out, "");
    } else {
        let width = vars
            .iter()
            .map(|v| v.name.chars().count())
            .max()
            .unwrap_or(0);
        let required: Vec<_> = vars.iter().filter(|v| v.default.is_none()).collect();
        if !required.is_empty() {
            say(&mut out, "Required variables:\n");
            for v in &required {
                out.push(Line::Record(
                    "template-variable",
                    vec![v.name.clone(), String::new(), "1".into()],
                ));
                say(&mut out, &format!("  {}", v.name));
            }
            say(&mut out, "");
        }
        say(&mut out, "Optional variables and their defaults:\n");
        for v in vars.iter().filter(|v| v.default.is_some()) {
            let shown = if sensitive(&v.name) && !v.default.as_deref().unwrap_or("").is_empty() {
                MASK.to_string()
            } else {
                v.default.clone().unwrap_or_default()
            };
            out.push(Line::Record(
                "template-variable",
                vec![v.name.clone(), shown.clone(), "0".into()],
            ));
            say(
                &mut out,
                format!("  {:<width$} = {shown}", v.name).trim_end(),
            );
        }
        say(&mut out, "");
    }

    say(&mut out, "Builders:\n");
    let mut builders: Vec<_> = t.builders.iter().collect();
    builders.sort_by(|a, b| a.name.cmp(&b.name));
    if builders.is_empty() {
        say(&mut out, "  <No builders>");
    }
    let width = builders
        .iter()
        .map(|b| b.name.chars().count())
        .max()
        .unwrap_or(0);
    for b in &builders {
        out.push(Line::Record(
            "template-builder",
            vec![b.name.clone(), b.kind.clone()],
        ));
        if b.name == b.kind {
            say(&mut out, &format!("  {}", b.name));
        } else {
            say(&mut out, &format!("  {:<width$} ({})", b.name, b.kind));
        }
    }
    say(&mut out, "");

    say(&mut out, "Provisioners:\n");
    if t.provisioners.is_empty() {
        say(&mut out, "  <No provisioners>");
    }
    for p in &t.provisioners {
        out.push(Line::Record("template-provisioner", vec![p.kind.clone()]));
        say(&mut out, &format!("  {}", p.kind));
    }
    say(&mut out, "");

    say(&mut out, "Post-processors:\n");
    if t.post_processors.is_empty() {
        say(&mut out, "  <No post-processors>");
    }
    for chain in &t.post_processors {
        let names: Vec<String> = chain
            .iter()
            .map(|pp| match &pp.name {
                Some(n) if n != &pp.kind => format!("{n} ({})", pp.kind),
                _ => pp.kind.clone(),
            })
            .collect();
        out.push(Line::Record(
            "template-post-processor",
            chain.iter().map(|pp| pp.kind.clone()).collect(),
        ));
        say(&mut out, &format!("  {}", names.join(" -> ")));
    }
    say(&mut out, "");
    say(
        &mut out,
        "Note: If your build names contain user variables or template\n\
         functions such as 'timestamp', these are processed at build time,\n\
         and therefore only show in their raw form here.",
    );
    out
}

/// The human form: the `Say` lines, one per line.
pub fn render_human(lines: &[Line]) -> String {
    let mut s = String::new();
    for l in lines {
        if let Line::Say(text) = l {
            s.push_str(text);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::diag::{Diagnostics, SourceFile};

    fn template(text: &str) -> Template {
        let mut d = Diagnostics::default();
        let t = Template::parse(SourceFile::new("t.json", text), "/t".into(), &mut d).unwrap();
        assert!(!d.has_errors(), "{d:?}");
        t
    }

    #[test]
    fn lays_out_like_packer_and_masks_sensitive_defaults() {
        let t = template(
            r#"{"description": "demo",
                "variables": {"region": "us-east-1", "pw": "hunter2", "req": null, "empty": ""},
                "sensitive-variables": ["pw", "empty"],
                "builders": [{"type": "amazon-ebs", "name": "web"}, {"type": "amazon-ebs"}],
                "provisioners": [{"type": "shell"}, {"type": "file"}],
                "post-processors": ["manifest", [{"type": "shell-local", "name": "notify"}, "manifest"]]}"#,
        );
        let text = render_human(&inspect(&t));
        assert_eq!(
            text,
            "Description:\n\ndemo\n\n\
             Required variables:\n\n  req\n\n\
             Optional variables and their defaults:\n\n  empty  =\n  pw     = <sensitive>\n  region = us-east-1\n\n\
             Builders:\n\n  amazon-ebs\n  web        (amazon-ebs)\n\n\
             Provisioners:\n\n  shell\n  file\n\n\
             Post-processors:\n\n  manifest\n  notify (shell-local) -> manifest\n\n\
             Note: If your build names contain user variables or template\n\
             functions such as 'timestamp', these are processed at build time,\n\
             and therefore only show in their raw form here.\n"
        );
        assert!(!text.contains("hunter2"));
        let records: Vec<_> = inspect(&t)
            .into_iter()
            .filter(|l| matches!(l, Line::Record(..)))
            .collect();
        assert_eq!(
            records[1],
            Line::Record(
                "template-variable",
                vec!["empty".into(), "".into(), "0".into()]
            )
        );
        assert_eq!(
            records[2],
            Line::Record(
                "template-variable",
                vec!["pw".into(), "<sensitive>".into(), "0".into()]
            )
        );
    }

    #[test]
    fn empty_sections_say_so() {
        let t = template(r#"{"builders": [{"type": "amazon-ebs"}]}"#);
        let text = render_human(&inspect(&t));
        assert!(
            text.starts_with("Variables:\n\n  <No variables>\n\nBuilders:"),
            "{text}"
        );
        assert!(text.contains("  <No provisioners>"));
        assert!(text.contains("  <No post-processors>"));
    }
}
