//! Where the time of a build went. A [`Timeline`] is a row of phases that follow each other:
//! the orchestrator starts it (phase `prepare`) and each step marks where its phase begins
//! ([`Timeline::mark`]); a phase ends where the next one begins, and the last one where the
//! build ends, so the phases add up to the build's wall time exactly. What runs side by side
//! inside a phase (the region copies) is recorded as its parts ([`Timeline::part`]), which are
//! shown under the phase and do not add up to anything.
//!
//! Adding a phase is one line where it begins: `timeline.mark("first boot")`.
//!
//! Imports nothing of the crate: every layer that marks a phase can use it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The phases of one build so far. Cheap to share: the steps get `&Timeline`.
#[derive(Debug)]
pub struct Timeline {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Each phase with the moment it began, in order.
    phases: Vec<(String, Instant)>,
    /// Parts: the index of their phase, their name, how long they took, when they began.
    parts: Vec<(usize, String, Took, Instant)>,
    end: Option<Instant>,
}

/// How long a part took, once it has ended (`None`: running).
type Took = Arc<Mutex<Option<Duration>>>;

/// One phase of a finished (or running) build.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub took: Duration,
    /// What ran side by side in this phase (each region copy), with how long each took.
    pub parts: Vec<(String, Duration)>,
}

/// The timeline as it stands: its phases, which add up to `total`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub phases: Vec<Phase>,
    pub total: Duration,
}

/// A part of a phase that runs side by side with others; it ends when [`Part::end`] is called
/// or it is dropped (a failed copy ends too).
#[derive(Debug)]
pub struct Part {
    took: Took,
    start: Instant,
}

impl Part {
    pub fn end(self) {}
}

impl Drop for Part {
    fn drop(&mut self) {
        let mut t = lock(&self.took);
        if t.is_none() {
            *t = Some(self.start.elapsed());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::start()
    }
}

impl Timeline {
    /// A timeline that starts now, in the phase `prepare`.
    pub fn start() -> Timeline {
        let now = Instant::now();
        Timeline {
            inner: Mutex::new(Inner {
                start: now,
                phases: vec![("prepare".to_string(), now)],
                parts: Vec::new(),
                end: None,
            }),
        }
    }

    /// The phase `name` begins now (the current one ends). Marking the phase that is already
    /// current changes nothing; after [`Timeline::finish`], nothing either.
    pub fn mark(&self, name: impl Into<String>) {
        let name = name.into();
        let mut i = lock(&self.inner);
        if i.end.is_some() || i.phases.last().is_some_and(|(n, _)| *n == name) {
            return;
        }
        i.phases.push((name, Instant::now()));
    }

    /// A part of the current phase that begins now (one region copy of several at once).
    pub fn part(&self, name: impl Into<String>) -> Part {
        let now = Instant::now();
        let took = Arc::new(Mutex::new(None));
        let mut i = lock(&self.inner);
        let phase = i.phases.len() - 1;
        i.parts.push((phase, name.into(), took.clone(), now));
        Part { took, start: now }
    }

    /// The build has ended: the last phase ends now. The report of the whole build.
    pub fn finish(&self) -> Report {
        {
            let mut i = lock(&self.inner);
            if i.end.is_none() {
                i.end = Some(Instant::now());
            }
        }
        self.report()
    }

    /// The phases so far; a running phase (or part) counts until now.
    pub fn report(&self) -> Report {
        let i = lock(&self.inner);
        let end = i.end.unwrap_or_else(Instant::now);
        let mut phases: Vec<Phase> = i
            .phases
            .iter()
            .enumerate()
            .map(|(k, (name, began))| {
                let until = i.phases.get(k + 1).map_or(end, |(_, t)| *t);
                Phase {
                    name: name.clone(),
                    took: until.saturating_duration_since(*began),
                    parts: Vec::new(),
                }
            })
            .collect();
        for (phase, name, took, began) in &i.parts {
            let took = lock(took).unwrap_or_else(|| end.saturating_duration_since(*began));
            phases[*phase].parts.push((name.clone(), took));
        }
        Report {
            phases,
            total: end.saturating_duration_since(i.start),
        }
    }
}

/// Seconds with millisecond precision, as the figures are printed and recorded.
pub fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Width of the longest bar (the whole build) on a terminal.
const BAR_WIDTH: usize = 40;

impl Report {
    /// The lines people read: with `bars` (a terminal), each phase with its seconds and a bar
    /// drawn to the scale of the whole build; without, plain `phase seconds` lines. Parts are
    /// indented under their phase; the last line is the total.
    pub fn lines(&self, bars: bool) -> Vec<String> {
        let name_width = self
            .phases
            .iter()
            .flat_map(|p| {
                std::iter::once(p.name.chars().count())
                    .chain(p.parts.iter().map(|(n, _)| n.chars().count() + 2))
            })
            .max()
            .unwrap_or(0)
            .max("total".len());
        let line = |indent: &str, name: &str, took: Duration| {
            let s = format!("{:.2}", took.as_secs_f64());
            if bars {
                let pad = name_width - indent.len();
                format!(
                    "{indent}{name:<pad$} {s:>8}s {}",
                    bar(took, self.total, BAR_WIDTH)
                )
            } else {
                format!("{indent}{name} {s}")
            }
        };
        let mut out = Vec::new();
        for p in &self.phases {
            out.push(line("", &p.name, p.took));
            for (n, t) in &p.parts {
                out.push(line("  ", n, *t));
            }
        }
        let total = format!("{:.2}", self.total.as_secs_f64());
        out.push(if bars {
            format!("{:<name_width$} {total:>8}s", "total")
        } else {
            format!("total {total}")
        });
        out
    }

    /// The timeline as the manifest records it (`imgbuild_timeline`).
    pub fn to_json(&self) -> serde_json::Value {
        let phases: Vec<serde_json::Value> = self
            .phases
            .iter()
            .map(|p| {
                let mut v = serde_json::json!({"phase": p.name, "seconds": seconds(p.took)});
                if !p.parts.is_empty() {
                    v["parts"] = p
                        .parts
                        .iter()
                        .map(|(n, t)| serde_json::json!({"part": n, "seconds": seconds(*t)}))
                        .collect();
                }
                v
            })
            .collect();
        serde_json::json!({"seconds": seconds(self.total), "phases": phases})
    }
}

/// A bar of `took` on the scale where `total` is `width` cells, in eighths of a cell.
fn bar(took: Duration, total: Duration, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if total.is_zero() {
        return String::new();
    }
    let eighths = (took.as_secs_f64() / total.as_secs_f64() * (width * 8) as f64).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if eighths % 8 != 0 {
        s.push(EIGHTHS[eighths % 8]);
    }
    if s.is_empty() {
        s.push('▏');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(phases: &[(&str, u64)], parts: &[(usize, &str, u64)]) -> Report {
        let ms = Duration::from_millis;
        let mut r = Report {
            phases: phases
                .iter()
                .map(|(n, t)| Phase {
                    name: n.to_string(),
                    took: ms(*t),
                    parts: Vec::new(),
                })
                .collect(),
            total: ms(phases.iter().map(|(_, t)| t).sum()),
        };
        for (i, n, t) in parts {
            r.phases[*i].parts.push((n.to_string(), ms(*t)));
        }
        r
    }

    #[test]
    fn phases_follow_each_other_and_add_up_to_the_whole() {
        let t = Timeline::start();
        t.mark("source image");
        t.mark("source image");
        std::thread::sleep(Duration::from_millis(5));
        t.mark("launch");
        let part = t.part("us-west-2");
        t.mark("teardown");
        part.end();
        let r = t.finish();
        t.mark("after the end");
        let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["prepare", "source image", "launch", "teardown"]);
        let sum: Duration = r.phases.iter().map(|p| p.took).sum();
        assert_eq!(sum, r.total);
        assert!(r.phases[1].took >= Duration::from_millis(5));
        assert_eq!(r.phases[2].parts.len(), 1);
        assert_eq!(t.finish(), r, "finishing twice changes nothing");
    }

    #[test]
    fn a_running_part_counts_until_the_end() {
        let t = Timeline::start();
        t.mark("region copies");
        let _a = t.part("eu-west-1");
        let r = t.finish();
        assert_eq!(r.phases[1].parts[0].0, "eu-west-1");
        assert!(r.phases[1].parts[0].1 <= r.total);
    }

    #[test]
    fn plain_lines_are_phase_and_seconds() {
        let r = report(
            &[("prepare", 250), ("region copies", 1500), ("teardown", 750)],
            &[(1, "region copy us-west-2", 1250)],
        );
        assert_eq!(
            r.lines(false),
            [
                "prepare 0.25",
                "region copies 1.50",
                "  region copy us-west-2 1.25",
                "teardown 0.75",
                "total 2.50"
            ]
        );
    }

    #[test]
    fn bars_are_drawn_to_the_scale_of_the_whole_build() {
        let r = report(&[("prepare", 1000), ("launch", 3000)], &[]);
        let lines = r.lines(true);
        assert_eq!(lines[0], format!("prepare     1.00s {}", "█".repeat(10)));
        assert_eq!(lines[1], format!("launch      3.00s {}", "█".repeat(30)));
        assert_eq!(lines[2], "total       4.00s");
        assert_eq!(
            bar(Duration::from_millis(1), Duration::from_secs(100), 40),
            "▏"
        );
        assert_eq!(
            bar(Duration::from_millis(1875), Duration::from_secs(10), 8),
            "█▌"
        );
    }

    #[test]
    fn the_manifest_form_has_seconds_and_parts() {
        let r = report(
            &[("prepare", 1234), ("region copies", 2000)],
            &[(1, "region copy us-west-2", 1999)],
        );
        assert_eq!(
            r.to_json(),
            serde_json::json!({"seconds": 3.234, "phases": [
                {"phase": "prepare", "seconds": 1.234},
                {"phase": "region copies", "seconds": 2.0,
                 "parts": [{"part": "region copy us-west-2", "seconds": 1.999}]}
            ]})
        );
    }
}
