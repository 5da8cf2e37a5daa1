//! A bounded, deterministic fuzz test over template loading and rendering: thousands of
//! mutations of the repository's real templates go through parse, variable binding and
//! prepare; none may panic, and each must finish quickly. (A coverage-guided `cargo fuzz` target
//! can reuse `load_all`; this one runs in every `cargo test` within a few seconds.)

use std::time::{Duration, Instant};

use crate::template::diag::{Diagnostics, SourceFile};
use crate::template::funcs::{Clock, Engine};
use super::{prepare, Selection};
use crate::template::variables::{bind, VarArg};
use crate::template::Template;

/// Loads a template text all the way through stage 2, as `imgbuild validate` does.
pub fn load_all(text: &str, vars: &[VarArg]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let file = SourceFile::new("fuzz.json", text);
    if let Some(t) = Template::parse(file, "/nonexistent".into(), &mut diags) {
        let clock = Clock::now();
        let engine = Engine::new(clock);
        let v = bind(&t, vars, &engine, &mut diags);
        prepare(&t, &v, &Selection::default(), &engine, clock, &mut diags);
    }
    diags
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "`",
    "\\",
    "null",
    "true",
    "1e999",
    "-",
    "{{user `x`}}",
    "{{ .Path }}",
    "{{build `ID`}}",
    "{{env `HOME`}}",
    "{{timestamp",
    "|",
    "(",
    ")",
    "\u{0}",
    "é",
    "\n",
    "{{split `a` `,` 99}}",
    "{{isotime `2006`}}",
    "{{strftime `%`}}",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut s: Vec<u8> = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 if !s.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(s.len());
                s.drain(at.min(s.len())..end);
            }
            1 if at < s.len() => s[at] = (rng.next() & 0x7f) as u8,
            _ => {
                let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.splice(at..at, tok.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[test]
fn mutated_templates_never_panic_and_stay_fast() {
    let root = env!("CARGO_MANIFEST_DIR");
    let seeds: Vec<String> = ["images/web_worker.json", "images/local_example.json"]
        .iter()
        .map(|p| std::fs::read_to_string(format!("{root}/{p}")).expect("repository template"))
        .collect();
    let vars: Vec<VarArg> = [
        "django_db_password",
        "django_db_host",
        "django_secret",
        "email_host",
        "web_domain",
    ]
    .iter()
    .map(|k| VarArg::Pair {
        key: (*k).into(),
        value: "v'\"$ {{x}}".into(),
    })
    .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut invalid = 0;
    let rounds = 1500;
    for i in 0..rounds {
        let seed = &seeds[i % seeds.len()];
        let text = mutate(&mut rng, seed);
        let t0 = Instant::now();
        let diags = load_all(&text, &vars);
        slowest = slowest.max(t0.elapsed());
        if diags.has_errors() {
            invalid += 1;
            // Every error renders (with its caret) without panicking.
            for d in diags.errors() {
                let _ = d.render(&crate::redact::Redactor::default(), false);
            }
        }
    }
    // Mutations mostly break the template; a fuzzer that never produced an error found nothing.
    assert!(
        invalid > rounds / 2,
        "only {invalid} of {rounds} mutants were invalid"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a mutant took {slowest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn hostile_templates_are_refused_quickly() {
    let deep = format!(
        "{{\"builders\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let storm = format!("{{\"description\": \"{}\", \"builders\": [{{\"type\": \"amazon-ebs\", \"ami_name\": \"{}\"}}]}}", "{{".repeat(100_000), "{{".repeat(100_000));
    let long = format!(
        "{{\"builders\": [{{\"type\": \"amazon-ebs\", \"ami_name\": \"{}\"}}]}}",
        "x".repeat(4_000_000)
    );
    let recursive = r#"{"variables": {"a": "{{user `b`}}{{user `b`}}", "b": "{{user `c`}}{{user `c`}}", "c": "{{user `a`}}"}, "builders": [{"type": "amazon-ebs"}]}"#;
    for (name, text) in [
        ("deep", deep),
        ("storm", storm),
        ("long", long),
        ("recursive", recursive.to_string()),
    ] {
        let t0 = Instant::now();
        let diags = load_all(&text, &[]);
        assert!(diags.has_errors(), "{name} was accepted");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            t0.elapsed()
        );
    }
}
