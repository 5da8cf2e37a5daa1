//! Where something is in a template: a byte range of the source ([`Span`]) and a JSON path
//! ([`JsonPath`]). Below both the parser (`json`, which records them) and the diagnostics
//! (`diag`, which print them).

use std::fmt;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// A JSON path such as `builders[0].tags["Name tag"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> JsonPath {
        JsonPath(String::new())
    }

    pub fn key(&self, k: &str) -> JsonPath {
        let simple = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut s = self.0.clone();
        if simple {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(k);
        } else {
            s.push('[');
            s.push_str(&serde_json::to_string(k).unwrap_or_default());
            s.push(']');
        }
        JsonPath(s)
    }

    pub fn index(&self, i: usize) -> JsonPath {
        JsonPath(format!("{}[{i}]", self.0))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_jq() {
        let p = JsonPath::root()
            .key("builders")
            .index(0)
            .key("tags")
            .key("Name tag");
        assert_eq!(p.to_string(), r#"builders[0].tags["Name tag"]"#);
        assert_eq!(JsonPath::root().to_string(), "(top level)");
    }
}
