//! A JSON parser that keeps where every value and key came from.
//!
//! serde_json answers "is this valid JSON" but forgets where a value was and silently keeps the
//! last of two duplicate keys. Templates need both: every diagnostic points at a line and column,
//! and Packer rejects duplicate keys. The tree here is small and only used while loading a
//! template; typed configuration is decoded from it by `template::decode`.
//!
//! Bounds (hostile input): nesting deeper than [`MAX_DEPTH`] is refused; the caller bounds the
//! input size before parsing.

use std::fmt;

use super::location::JsonPath;
pub use super::location::Span;

/// Deepest nesting accepted. Real templates stay under 8; this keeps recursion far from the stack
/// limit on any thread.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// The number as written; decoding decides whether it must be an integer.
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    /// The JSON type name as users know it, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[Member]> {
        match &self.kind {
            Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The member with this key (the first one, should the object repeat it).
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.as_object()?.iter().find(|m| m.key == key)
    }

    /// Plain serde_json value, for data that is passed on as is (e.g. `custom_data`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Number(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            Kind::String(s) => Value::String(s.clone()),
            Kind::Array(a) => Value::Array(a.iter().map(Node::to_json).collect()),
            Kind::Object(m) => Value::Object(
                m.iter()
                    .map(|m| (m.key.clone(), m.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A key repeated within one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    pub first: Span,
    pub again: Span,
    /// JSON path of the object holding the key, e.g. `builders[0]`.
    pub path: JsonPath,
}

/// The parsed document and the duplicate keys found on the way (reported, not fatal, so that
/// every problem of a template is shown at once).
#[derive(Debug)]
pub struct Parsed {
    pub root: Node,
    pub duplicates: Vec<DuplicateKey>,
}

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        duplicates: Vec::new(),
        path: Vec::new(),
    };
    p.skip_ws();
    if p.pos == p.s.len() {
        return Err(SyntaxError {
            span: Span::new(0, 0),
            message: "the file is empty: a template is a JSON object such as {\"builders\": [...]}"
                .into(),
        });
    }
    let root = p.value(0)?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.err_here("unexpected text after the end of the JSON document"));
    }
    Ok(Parsed {
        root,
        duplicates: p.duplicates,
    })
}

enum Seg {
    Key(String),
    Index(usize),
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    duplicates: Vec<DuplicateKey>,
    path: Vec<Seg>,
}

impl<'a> Parser<'a> {
    fn err_here(&self, message: &str) -> SyntaxError {
        let end = next_char_end(self.text, self.pos);
        SyntaxError {
            span: Span::new(self.pos, end),
            message: message.to_string(),
        }
    }

    fn err_at(&self, start: usize, end: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            span: Span::new(start, end),
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err_here(&format!(
                "nesting is deeper than {MAX_DEPTH} levels; no template needs that"
            )));
        }
        let start = self.pos;
        match self.peek() {
            None => Err(self.err_here("unexpected end of file: a value is missing")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let s = self.string()?;
                Ok(Node {
                    span: Span::new(start, self.pos),
                    kind: Kind::String(s),
                })
            }
            Some(b't') => self.literal("true", Kind::Bool(true)),
            Some(b'f') => self.literal("false", Kind::Bool(false)),
            Some(b'n') => self.literal("null", Kind::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'\'') => {
                Err(self.err_here("strings in JSON use double quotes (\"), not single quotes"))
            }
            Some(b'}' | b']' | b',') => Err(self.err_here("a value is missing here")),
            Some(_) => Err(self.err_here("unexpected character: expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Node, SyntaxError> {
        let start = self.pos;
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(Node {
                span: Span::new(start, self.pos),
                kind,
            })
        } else {
            let mut end = start;
            while end < self.s.len() && self.s[end].is_ascii_alphanumeric() {
                end += 1;
            }
            Err(self.err_at(
                start,
                end.max(start + 1),
                "unexpected word: expected a JSON value (strings need double quotes)",
            ))
        }
    }

    fn number(&mut self) -> Result<Node, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == int_start {
            return Err(self.err_at(start, self.pos + 1, "invalid number"));
        }
        if self.s[int_start] == b'0' && self.pos - int_start > 1 {
            return Err(self.err_at(start, self.pos, "numbers cannot start with 0"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let f = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if f == self.pos {
                return Err(self.err_at(start, self.pos, "invalid number: digits must follow '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let e = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if e == self.pos {
                return Err(self.err_at(start, self.pos, "invalid number: exponent has no digits"));
            }
        }
        Ok(Node {
            span: Span::new(start, self.pos),
            kind: Kind::Number(self.text[start..self.pos].to_string()),
        })
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the longest run without quote, backslash or control character at once.
            let run_start = self.pos;
            while let Some(&c) = self.s.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => {
                    return Err(self.err_at(
                        start,
                        start + 1,
                        "unterminated string: the closing \" is missing",
                    ))
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc = self.pos;
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(self.err_at(start, start + 1, "unterminated string"));
                    };
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4(esc)?;
                            let ch = if (0xD800..0xDC00).contains(&hi) {
                                if self.s[self.pos..].starts_with(b"\\u") {
                                    self.pos += 2;
                                    let lo = self.hex4(esc)?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self.err_at(
                                            esc,
                                            self.pos,
                                            "invalid \\u escape: unpaired surrogate",
                                        ));
                                    }
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            match ch {
                                Some(ch) => out.push(ch),
                                None => {
                                    return Err(self.err_at(
                                        esc,
                                        self.pos,
                                        "invalid \\u escape: unpaired surrogate",
                                    ))
                                }
                            }
                        }
                        _ => {
                            return Err(self.err_at(
                                esc,
                                self.pos,
                                "invalid escape in string: use \\\\ for a backslash",
                            ))
                        }
                    }
                }
                Some(b'\n') => {
                    return Err(self.err_here(
                        "line break inside a string: write \\n, or close the string with \"",
                    ))
                }
                Some(_) => {
                    return Err(self.err_here(
                        "control character inside a string: escape it (\\t, \\n, \\u0000)",
                    ))
                }
            }
        }
    }

    fn hex4(&mut self, esc: usize) -> Result<u32, SyntaxError> {
        let digits = self.s.get(self.pos..self.pos + 4);
        let v = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match v {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.err_at(
                esc,
                (self.pos + 4).min(self.s.len()),
                "invalid \\u escape: four hex digits must follow",
            )),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node {
                span: Span::new(start, self.pos),
                kind: Kind::Array(items),
            });
        }
        loop {
            self.skip_ws();
            self.path.push(Seg::Index(items.len()));
            let v = self.value(depth + 1);
            self.path.pop();
            items.push(v?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        return Err(
                            self.err_here("trailing comma: JSON does not allow a comma before ]")
                        );
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node {
                        span: Span::new(start, self.pos),
                        kind: Kind::Array(items),
                    });
                }
                None => return Err(self.err_at(start, start + 1, "unclosed array: ] is missing")),
                Some(_) => return Err(self.err_here("expected , or ] after an array element")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut members: Vec<Member> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node {
                span: Span::new(start, self.pos),
                kind: Kind::Object(members),
            });
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err_at(start, start + 1, "unclosed object: } is missing")),
                Some(b'}') => {
                    return Err(
                        self.err_here("trailing comma: JSON does not allow a comma before }")
                    )
                }
                Some(_) => {
                    return Err(self.err_here("expected a key in double quotes"));
                }
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = Span::new(key_start, self.pos);
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err_here("expected : after the key"));
            }
            self.pos += 1;
            self.skip_ws();
            self.path.push(Seg::Key(key.clone()));
            let value = self.value(depth + 1);
            self.path.pop();
            let value = value?;
            if let Some(first) = members.iter().find(|m| m.key == key) {
                self.duplicates.push(DuplicateKey {
                    key: key.clone(),
                    first: first.key_span,
                    again: key_span,
                    path: render_path(&self.path),
                });
            }
            members.push(Member {
                key,
                key_span,
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node {
                        span: Span::new(start, self.pos),
                        kind: Kind::Object(members),
                    });
                }
                None => return Err(self.err_at(start, start + 1, "unclosed object: } is missing")),
                Some(b'"') => return Err(self.err_here("missing comma between members")),
                Some(_) => return Err(self.err_here("expected , or } after a member")),
            }
        }
    }
}

fn render_path(path: &[Seg]) -> JsonPath {
    let mut p = JsonPath::root();
    for s in path {
        p = match s {
            Seg::Key(k) => p.key(k),
            Seg::Index(i) => p.index(*i),
        };
    }
    p
}

fn next_char_end(text: &str, pos: usize) -> usize {
    if pos >= text.len() {
        return pos;
    }
    let mut end = pos + 1;
    while end < text.len() && !text.is_char_boundary(end) {
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Node {
        parse(s).expect("parses").root
    }

    fn err(s: &str) -> SyntaxError {
        parse(s).expect_err("fails")
    }

    #[test]
    fn parses_values_with_spans() {
        let n = ok(r#" {"a": [1, -2.5e3, true, null, "x\u00e9\n"]} "#);
        let a = &n.get("a").unwrap().value;
        let items = a.as_array().unwrap();
        assert_eq!(items[0].kind, Kind::Number("1".into()));
        assert_eq!(items[1].kind, Kind::Number("-2.5e3".into()));
        assert_eq!(items[2].kind, Kind::Bool(true));
        assert_eq!(items[3].kind, Kind::Null);
        assert_eq!(items[4].kind, Kind::String("xé\n".into()));
        assert_eq!(n.span, Span::new(1, 44));
        assert_eq!(n.get("a").unwrap().key_span, Span::new(2, 5));
    }

    #[test]
    fn surrogate_pairs_decode() {
        let n = ok(r#""\ud83d\ude00""#);
        assert_eq!(n.as_str(), Some("😀"));
        assert!(err(r#""\ud83d""#).message.contains("surrogate"));
    }

    #[test]
    fn duplicate_keys_are_collected_with_both_places_and_path() {
        let p = parse(r#"{"builders":[{"type":"a","type":"b"}]}"#).unwrap();
        assert_eq!(p.duplicates.len(), 1);
        let d = &p.duplicates[0];
        assert_eq!(d.key, "type");
        assert_eq!(d.path.to_string(), "builders[0]");
        assert_eq!(d.first, Span::new(14, 20));
        assert_eq!(d.again, Span::new(25, 31));
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let e = err(r#"{"a": 1,}"#);
        assert!(e.message.contains("trailing comma"), "{e}");
        assert_eq!(e.span.start, 8);
        let e = err(r#"{"a": 1 "b": 2}"#);
        assert!(e.message.contains("missing comma"), "{e}");
        assert_eq!(e.span.start, 8);
        let e = err("{\"a\": \"x\ny\"}");
        assert!(e.message.contains("line break"), "{e}");
        assert!(err("").message.contains("empty"));
        assert!(err("   \n").message.contains("empty"));
        assert!(err("{} x").message.contains("after the end"));
        assert!(err("{'a': 1}").message.contains("double quotes"));
        assert!(err("[1, 2").message.contains("unclosed array"));
        assert!(err(r#"{"a": tru}"#).message.contains("unexpected word"));
        assert!(err("01").message.contains("start with 0"));
        assert!(err(r#""\x""#).message.contains("invalid escape"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let e = err(&deep);
        assert!(e.message.contains("nesting is deeper"), "{e}");
        let ok_depth = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse(&ok_depth).unwrap();
    }

    #[test]
    fn errors_inside_multibyte_text_stay_on_char_boundaries() {
        let e = err("{\"é\": ü}");
        assert!(e.span.end <= "{\"é\": ü}".len());
        assert!("{\"é\": ü}".is_char_boundary(e.span.end));
    }

    #[test]
    fn to_json_round_trips() {
        let n = ok(r#"{"a":[1,"b",{"c":null}],"d":true}"#);
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a":[1,"b",{"c":null}],"d":true})
        );
    }
}
