//! Logs through `tracing`, off unless asked for: `IMGBUILD_LOG` is a filter (`debug`,
//! `info`, `imgbuild=trace,aws=info`, or `1` for `debug`), and `PACKER_LOG=1` (any value but
//! empty and `0`) means `debug`, for Packer users' habit. They go to stderr, or appended to the
//! file `IMGBUILD_LOG_PATH` (or `PACKER_LOG_PATH`), created 0600 — never to stdout.
//!
//! Every event passes through the redactor before it is written: the writer buffers one event,
//! masks it with the run's [`Redactor`] (updated by [`set_redactor`] as soon as the template's
//! secrets are known; the AWS secrets of the environment from the start) and writes it whole.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use tracing_subscriber::fmt::MakeWriter;

use crate::redact::Redactor;

/// Where logs go and what is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// An `EnvFilter` directive.
    pub filter: String,
    /// A file to append to, else stderr.
    pub path: Option<PathBuf>,
}

/// The settings from the environment (`get` reads a variable); `None` when logging is off.
pub fn settings_from(get: impl Fn(&str) -> Option<String>) -> Option<Settings> {
    let set = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let filter = match set("IMGBUILD_LOG") {
        Some(v) if v == "0" || v.eq_ignore_ascii_case("off") => return None,
        Some(v) if v == "1" || v.eq_ignore_ascii_case("true") => "debug".to_string(),
        Some(v) => v,
        None => match set("PACKER_LOG") {
            Some(v) if v != "0" => "debug".to_string(),
            _ => return None,
        },
    };
    let path = set("IMGBUILD_LOG_PATH")
        .or_else(|| set("PACKER_LOG_PATH"))
        .map(PathBuf::from);
    Some(Settings { filter, path })
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

static SINK: OnceLock<Sink> = OnceLock::new();
static TO_TERMINAL: AtomicBool = AtomicBool::new(false);

fn redactor() -> &'static RwLock<Redactor> {
    static R: OnceLock<RwLock<Redactor>> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Redactor::default();
        for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Ok(v) = std::env::var(key) {
                r.add(&v);
            }
        }
        RwLock::new(r)
    })
}

/// Makes the logs mask what `r` masks (call whenever the run learns a secret).
pub fn set_redactor(r: &Redactor) {
    let mut g = match redactor().write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *g = r.clone();
}

/// True when logs are written to stderr and stderr is a terminal (then spinners stay off).
pub fn writes_to_terminal() -> bool {
    TO_TERMINAL.load(Ordering::SeqCst)
}

/// Starts logging when the environment asks for it. Problems (a bad filter, a log file that
/// cannot be opened) are said on stderr; the run goes on.
pub fn init() {
    let Some(settings) = settings_from(|k| std::env::var(k).ok()) else {
        return;
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&settings.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "imgbuild: IMGBUILD_LOG={:?} is not a log filter ({e}); logging at debug",
                settings.filter
            );
            tracing_subscriber::EnvFilter::new("debug")
        }
    };
    let sink = match &settings.path {
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(p)
            {
                Ok(f) => Sink::File(Mutex::new(f)),
                Err(e) => {
                    eprintln!(
                        "imgbuild: cannot open the log file {} ({e}); logging to stderr",
                        p.display()
                    );
                    Sink::Stderr
                }
            }
        }
        None => Sink::Stderr,
    };
    if matches!(sink, Sink::Stderr) {
        use std::io::IsTerminal;
        TO_TERMINAL.store(std::io::stderr().is_terminal(), Ordering::SeqCst);
    }
    if SINK.set(sink).is_err() {
        return;
    }
    // Reads the environment's secrets now, before any event.
    let _ = redactor();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Redacting)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Makes a writer per event.
struct Redacting;

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = EventBuf;

    fn make_writer(&'a self) -> EventBuf {
        EventBuf(Vec::with_capacity(256))
    }
}

/// One event's text, masked and written when dropped.
struct EventBuf(Vec<u8>);

impl Write for EventBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuf {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let masked = match redactor().read() {
            Ok(r) => r.redact(&text),
            Err(p) => p.into_inner().redact(&text),
        };
        match SINK.get() {
            Some(Sink::File(f)) => {
                let mut f = match f.lock() {
                    Ok(f) => f,
                    Err(p) => p.into_inner(),
                };
                let _ = f.write_all(masked.as_bytes());
            }
            _ => {
                let _ = std::io::stderr().lock().write_all(masked.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn logging_is_off_unless_asked_for() {
        assert_eq!(settings_from(env(&[])), None);
        assert_eq!(settings_from(env(&[("IMGBUILD_LOG_PATH", "/tmp/x")])), None);
        assert_eq!(settings_from(env(&[("PACKER_LOG", "0")])), None);
        assert_eq!(settings_from(env(&[("PACKER_LOG", "")])), None);
        assert_eq!(
            settings_from(env(&[("IMGBUILD_LOG", "0"), ("PACKER_LOG", "1")])),
            None
        );
    }

    #[test]
    fn imgbuild_log_is_a_filter_and_packer_log_means_debug() {
        assert_eq!(
            settings_from(env(&[("IMGBUILD_LOG", "imgbuild=trace,info")])),
            Some(Settings {
                filter: "imgbuild=trace,info".into(),
                path: None
            })
        );
        assert_eq!(
            settings_from(env(&[("IMGBUILD_LOG", "1")])).map(|s| s.filter),
            Some("debug".into())
        );
        assert_eq!(
            settings_from(env(&[("PACKER_LOG", "1"), ("PACKER_LOG_PATH", "p.log")])),
            Some(Settings {
                filter: "debug".into(),
                path: Some("p.log".into())
            })
        );
        // imgbuild's own variables win.
        assert_eq!(
            settings_from(env(&[
                ("IMGBUILD_LOG", "info"),
                ("PACKER_LOG", "1"),
                ("IMGBUILD_LOG_PATH", "i.log"),
                ("PACKER_LOG_PATH", "p.log")
            ])),
            Some(Settings {
                filter: "info".into(),
                path: Some("i.log".into())
            })
        );
    }
}
