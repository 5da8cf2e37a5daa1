//! Parsing Go template actions (`{{ user `x` | lower }}`) into pieces, pipes and commands.

use super::*;

// ---------------------------------------------------------------------------------------------
// Parsing Go template actions

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Action(Action),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The whole `{{ ... }}` in the source string.
    pub range: Range<usize>,
    pub pipe: Pipe,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Func(String, Range<usize>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Field(String, Range<usize>),
    Sub(Pipe),
}

/// Packer's functions and how many arguments each takes.
pub(super) const FUNCS: &[(&str, usize, usize)] = &[
    ("user", 1, 1),
    ("env", 1, 1),
    ("timestamp", 0, 0),
    ("isotime", 0, 1),
    ("strftime", 1, 1),
    ("uuid", 0, 0),
    ("pwd", 0, 0),
    ("template_dir", 0, 0),
    ("build_name", 0, 0),
    ("build_type", 0, 0),
    ("packer_version", 0, 0),
    ("clean_resource_name", 1, 1),
    ("clean_ami_name", 1, 1),
    ("split", 3, 3),
    ("replace", 4, 4),
    ("replace_all", 3, 3),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("build", 1, 1),
];

/// Packer functions imgbuild knows of but does not offer.
pub(super) const UNSUPPORTED_FUNCS: &[(&str, &str)] = &[
    ("consul_key", "read the value outside imgbuild and pass it with -var"),
    ("vault", "read the secret outside imgbuild and pass it with -var (and list it in sensitive-variables)"),
    ("aws_secretsmanager", "read the secret outside imgbuild and pass it with -var (and list it in sensitive-variables)"),
    ("aws_secretsmanager_raw", "read the secret outside imgbuild and pass it with -var (and list it in sensitive-variables)"),
    ("sed", "Packer deprecated `sed`; use `replace` or `replace_all`"),
];

pub(super) const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Splits a template string into text and actions. Strings without `{{` are one text piece.
pub fn parse(src: &str) -> Result<Vec<Piece>, TmplError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let b = src.as_bytes();
    while i < b.len() {
        let Some(rel) = src[i..].find("{{") else {
            text.push_str(&src[i..]);
            break;
        };
        text.push_str(&src[i..i + rel]);
        let open = i + rel;
        let mut j = open + 2;
        // `{{- ` trims the whitespace before the action.
        if src[j..].starts_with('-') && b.get(j + 1).is_some_and(|c| c.is_ascii_whitespace()) {
            let trimmed = text.trim_end().len();
            text.truncate(trimmed);
            j += 1;
        }
        let (pipe, close, trim_after) = parse_action(src, j, open)?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        if let Some(pipe) = pipe {
            pieces.push(Piece::Action(Action {
                range: open..close,
                pipe,
            }));
        }
        i = close;
        if trim_after {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    open: usize,
}

#[derive(Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Field(String),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Pipe,
    LParen,
    RParen,
    /// End of the action, and whether it was ` -}}`.
    Close(bool),
}

impl Lexer<'_> {
    fn err(&self, range: Range<usize>, msg: impl Into<String>) -> TmplError {
        TmplError::new(range, msg)
    }

    fn unterminated(&self) -> TmplError {
        self.err(
            self.open..self.open + 2,
            "unterminated `{{`: the closing `}}` is missing",
        )
        .help("close the action with }}, or write a literal {{ as {{\"{{\"}}")
    }

    fn next(&mut self) -> Result<(Tok, Range<usize>), TmplError> {
        let b = self.src.as_bytes();
        while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
            if self.src[self.pos..].starts_with(" -}}") {
                break;
            }
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&c) = b.get(self.pos) else {
            return Err(self.unterminated());
        };
        if self.src[self.pos..].starts_with("}}") {
            self.pos += 2;
            return Ok((Tok::Close(false), start..self.pos));
        }
        if self.src[self.pos..].starts_with(" -}}") {
            self.pos += 4;
            return Ok((Tok::Close(true), start..self.pos));
        }
        match c {
            b'|' => {
                self.pos += 1;
                Ok((Tok::Pipe, start..self.pos))
            }
            b'(' => {
                self.pos += 1;
                Ok((Tok::LParen, start..self.pos))
            }
            b')' => {
                self.pos += 1;
                Ok((Tok::RParen, start..self.pos))
            }
            b'`' => {
                let Some(end) = self.src[self.pos + 1..].find('`') else {
                    return Err(self.err(
                        start..start + 1,
                        "unterminated `raw string`: the closing backtick is missing",
                    ));
                };
                let s = self.src[self.pos + 1..self.pos + 1 + end].to_string();
                self.pos += end + 2;
                Ok((Tok::Str(s), start..self.pos))
            }
            b'"' => {
                let (s, end) = go_quoted(self.src, self.pos).map_err(|(r, m)| self.err(r, m))?;
                self.pos = end;
                Ok((Tok::Str(s), start..self.pos))
            }
            b'.' => {
                self.pos += 1;
                let name_start = self.pos;
                while self.pos < b.len()
                    && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_')
                {
                    self.pos += 1;
                }
                if name_start == self.pos {
                    return Err(self.err(
                        start..self.pos,
                        "`.` alone is not supported: name a field, such as {{ .Path }}",
                    ));
                }
                Ok((
                    Tok::Field(self.src[name_start..self.pos].to_string()),
                    start..self.pos,
                ))
            }
            b'-' | b'0'..=b'9' => {
                let mut end = self.pos + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                    end += 1;
                }
                let word = &self.src[self.pos..end];
                match word
                    .parse::<i64>()
                    .ok()
                    .map(serde_json::Number::from)
                    .or_else(|| {
                        word.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                    }) {
                    Some(n) => {
                        self.pos = end;
                        Ok((Tok::Num(n), start..end))
                    }
                    None => Err(self.err(start..end, format!("`{word}` is not a number"))),
                }
            }
            b'$' => Err(self.err(
                start..start + 1,
                "template variables ($x) are not supported in Packer JSON templates",
            )),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = self.pos;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                let word = &self.src[self.pos..end];
                self.pos = end;
                Ok(match word {
                    "true" => (Tok::Bool(true), start..end),
                    "false" => (Tok::Bool(false), start..end),
                    _ => (Tok::Ident(word.to_string()), start..end),
                })
            }
            _ => {
                let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                Err(self.err(
                    start..start + ch.len_utf8(),
                    format!("unexpected `{ch}` in a template action"),
                ))
            }
        }
    }
}

/// Decodes a Go double-quoted string starting at `start`; returns it and the end offset.
pub(super) fn go_quoted(
    src: &str,
    start: usize,
) -> Result<(String, usize), (Range<usize>, String)> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let at = start + 1 + k;
        match c {
            '"' => return Ok((out, at + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) if hex.len() == n => out.push(ch),
                            _ => {
                                return Err((
                                    at..at + 2 + hex.len(),
                                    format!("invalid escape `\\{e}{hex}`"),
                                ))
                            }
                        }
                    }
                    other => {
                        return Err((
                            at..at + 1 + other.len_utf8(),
                            format!("unknown escape `\\{other}` in a quoted string"),
                        ))
                    }
                }
            }
            _ => out.push(c),
        }
    }
    Err((
        start..start + 1,
        "unterminated quoted string in a template action".into(),
    ))
}

/// Parses one action after `{{` (and a trim marker); returns its pipeline (None for a comment),
/// the offset after `}}`, and whether `-}}` asked to trim what follows.
pub(super) fn parse_action(
    src: &str,
    start: usize,
    open: usize,
) -> Result<(Option<Pipe>, usize, bool), TmplError> {
    let rest = &src[start..];
    let ws = rest.len() - rest.trim_start().len();
    if rest[ws..].starts_with("/*") {
        let Some(end) = rest.find("*/") else {
            return Err(TmplError::new(
                open..open + 2,
                "unterminated comment `{{/*`: `*/}}` is missing",
            ));
        };
        let after = &rest[end + 2..];
        let trim = after.starts_with(" -}}");
        let skip = if trim { 4 } else { 2 };
        if !(after.starts_with("}}") || trim) {
            return Err(TmplError::new(
                open..start + end + 2,
                "a comment must end with `*/}}`",
            ));
        }
        return Ok((None, start + end + 2 + skip, trim));
    }
    let mut lx = Lexer {
        src,
        pos: start,
        open,
    };
    let (pipe, close) = parse_pipe(&mut lx, false)?;
    let trim = matches!(close, Tok::Close(true));
    if pipe.cmds.is_empty() {
        return Err(TmplError::new(
            open..lx.pos,
            "empty action `{{}}`: name a function, e.g. {{timestamp}}",
        ));
    }
    Ok((Some(pipe), lx.pos, trim))
}

pub(super) fn parse_pipe(lx: &mut Lexer, nested: bool) -> Result<(Pipe, Tok), TmplError> {
    let mut cmds = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    loop {
        let (tok, range) = lx.next()?;
        match tok {
            Tok::Close(_) if nested => {
                return Err(TmplError::new(
                    range,
                    "missing `)`: a parenthesis is not closed",
                ))
            }
            Tok::RParen if !nested => return Err(TmplError::new(range, "unexpected `)`")),
            Tok::Close(_) | Tok::RParen => {
                if !args.is_empty() {
                    cmds.push(Cmd { args });
                } else if !cmds.is_empty() {
                    return Err(TmplError::new(range, "missing command after `|`"));
                }
                return Ok((Pipe { cmds }, tok));
            }
            Tok::Pipe => {
                if args.is_empty() {
                    return Err(TmplError::new(range, "missing command before `|`"));
                }
                cmds.push(Cmd {
                    args: std::mem::take(&mut args),
                });
            }
            Tok::LParen => {
                let (sub, _) = parse_pipe(lx, true)?;
                if sub.cmds.is_empty() {
                    return Err(TmplError::new(range, "empty parentheses"));
                }
                args.push(Arg::Sub(sub));
            }
            Tok::Ident(name) => {
                if KEYWORDS.contains(&name.as_str()) {
                    return Err(TmplError::new(
                        range,
                        format!("`{name}` blocks are not supported in Packer JSON templates"),
                    ));
                }
                args.push(Arg::Func(name, range));
            }
            Tok::Field(f) => args.push(Arg::Field(f, range)),
            Tok::Str(s) => args.push(Arg::Str(s)),
            Tok::Num(n) => args.push(Arg::Num(n)),
            Tok::Bool(v) => args.push(Arg::Bool(v)),
        }
    }
}

/// Names of the user variables a string refers to by literal name (`{{user `x`}}`), for ordering
/// variable defaults that use other variables.
pub fn user_refs(pieces: &[Piece]) -> Vec<String> {
    fn walk(p: &Pipe, out: &mut Vec<String>) {
        for c in &p.cmds {
            if let [Arg::Func(f, _), Arg::Str(name), ..] = c.args.as_slice() {
                if f == "user" {
                    out.push(name.clone());
                }
            }
            for a in &c.args {
                if let Arg::Sub(s) = a {
                    walk(s, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for p in pieces {
        if let Piece::Action(a) = p {
            walk(&a.pipe, &mut out);
        }
    }
    out
}

/// True when the pipe needs build-time data (`build` or a `.Field`).
pub(super) fn is_deferred(p: &Pipe) -> bool {
    p.cmds.iter().any(|c| {
        c.args.iter().any(|a| match a {
            Arg::Func(f, _) => f == "build",
            Arg::Field(..) => true,
            Arg::Sub(s) => is_deferred(s),
            _ => false,
        })
    })
}
