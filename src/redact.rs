//! The one place secrets are masked. Every output path (terminal, logs, machine-readable lines,
//! diagnostics, `inspect`) passes its text through a [`Redactor`].
//!
//! Packer masks by exact value only, so a secret that was shell-quoted, JSON-escaped or
//! URL-encoded on its way to the output leaks. The redactor registers each secret together with
//! those transformed forms and replaces the longest match first.

/// What a masked secret is shown as, as in Packer.
pub const MASK: &str = "<sensitive>";

/// The shortest value masked (see [`Redactor::add`]).
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Every form of every secret, longest first.
    needles: Vec<String>,
}

impl Redactor {
    /// Registers a secret and the forms it takes when quoted or escaped. Values shorter than
    /// [`MIN_SECRET_LEN`] are not masked: masking `x` would turn every `x` of the output into
    /// `<sensitive>` and hide everything else (callers warn about such values).
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut forms = vec![
            secret.to_string(),
            shell_single_quoted_body(secret),
            secret.replace('\'', r"'\''"),
            shell_double_quoted_body(secret),
            shell_backslash_escaped(secret),
            json_escaped_body(secret),
            url_encoded(secret),
            url_encoded(secret).replace("%20", "+"),
        ];
        // A multi-line secret (a private key) printed line by line, as streamed output is, never
        // shows up whole: each of its lines is masked too.
        if secret.contains('\n') {
            forms.extend(
                secret
                    .lines()
                    .map(|l| l.trim_end_matches('\r').trim())
                    .filter(|l| l.chars().count() >= MIN_SECRET_LEN)
                    .map(str::to_string),
            );
        }
        for f in forms {
            if !f.is_empty() && !self.needles.contains(&f) {
                self.needles.push(f);
            }
        }
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// True when `text` contains a secret in any registered form.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }
}

/// The inside of a single-quoted shell word: `'` becomes `'"'"'` (how Packer's shell provisioner
/// quotes environment values).
fn shell_single_quoted_body(s: &str) -> String {
    s.replace('\'', r#"'"'"'"#)
}

/// The inside of a double-quoted shell word: `\`, `"`, `$` and `` ` `` are backslash-escaped.
fn shell_double_quoted_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A shell word with every special character backslash-escaped (bash's `printf %q`: all but
/// letters, digits and `_@%+=:./-`, and `~` and `#` only at the start).
fn shell_backslash_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        let plain = c.is_ascii_alphanumeric()
            || "_@%+=:./-".contains(c)
            || (i > 0 && matches!(c, '~' | '#'));
        if !plain {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inside of a JSON string literal.
fn json_escaped_body(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or("")
        .to_string()
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
fn url_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_quoted_escaped_and_encoded_forms() {
        let mut r = Redactor::default();
        let secret = r#"p@ss 'w"$rd"#;
        r.add(secret);
        let lines = [
            format!("DB_PASSWORD={secret}"),
            format!("DB_PASSWORD='{}'", shell_single_quoted_body(secret)),
            serde_json::to_string(&serde_json::json!({ "pw": secret })).unwrap(),
            format!("https://x/?pw={}", url_encoded(secret)),
            format!("https://x/?pw={}", url_encoded(secret).replace("%20", "+")),
        ];
        for l in &lines {
            let out = r.redact(l);
            assert!(out.contains(MASK), "{l} -> {out}");
            assert!(
                !out.contains("w\"$rd") && !out.contains("w\\\"$rd"),
                "{out}"
            );
            assert!(!out.contains("ss%20%27"), "{out}");
        }
    }

    #[test]
    fn masks_other_shell_quotings_and_lines_of_multi_line_secrets() {
        let mut r = Redactor::default();
        let secret = r#"it's "$HOME" `x`"#;
        r.add(secret);
        for l in [
            r#"PW='it'\''s "$HOME" `x`'"#.to_string(),
            r#"PW="it's \"\$HOME\" \`x\`""#.to_string(),
            r#"PW=it\'s\ \"\$HOME\"\ \`x\`"#.to_string(),
        ] {
            assert_eq!(r.redact(&l).matches(MASK).count(), 1, "{l}");
            assert!(!r.redact(&l).contains("HOME"), "{l}");
        }
        // bash escapes `,` and a leading `~` or `#`.
        assert_eq!(shell_backslash_escaped("~a,b#c d~"), r"\~a\,b#c\ d~");
        let mut r = Redactor::default();
        r.add("-----BEGIN KEY-----\r\nb3BlbnNzaC1rZXk\nAAAA\nxy\n-----END KEY-----\n");
        assert_eq!(r.redact("    web: b3BlbnNzaC1rZXk"), "    web: <sensitive>");
        assert_eq!(r.redact("AAAA"), "<sensitive>");
        // Lines too short to mask on their own are left.
        assert_eq!(r.redact("xy"), "xy");
    }

    #[test]
    fn empty_and_tiny_values_mask_nothing() {
        let mut r = Redactor::default();
        r.add("");
        r.add("x");
        r.add("abc");
        assert!(r.is_empty());
        assert_eq!(r.redact("xabc"), "xabc");
        assert_eq!(r.redact("abc"), "abc");
    }

    #[test]
    fn longest_form_wins_so_no_fragment_is_left() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("abcdef");
        assert_eq!(r.redact("xabcdefx"), "x<sensitive>x");
    }
}
