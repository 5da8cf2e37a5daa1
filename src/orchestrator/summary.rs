//! The end of a run: Packer's lines and records for each build (for people each AMI once, and
//! "reused" when it existed already; `-machine-readable` keeps Packer's artifact per
//! post-processor), the table of outcomes, and the run's typed error (what failed, what was
//! left behind) from the builds' outcomes.

use std::collections::BTreeSet;

use super::outcome::Outcome;
use crate::builder::Artifact;
use crate::duration::{human as human_duration, short as short_duration};
use crate::error::{BuildFailure, Error};
use crate::ui::Ui;

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub build: String,
    pub outcome: String,
    pub duration: String,
    pub artifacts: Vec<String>,
}

/// The final table: a header, then a line per build (and per further artifact), columns padded
/// to their widest cell. `paint(build, outcome, cell)` may color a cell (the padding is
/// computed on the plain text).
pub fn table(rows: &[Row], paint: &dyn Fn(usize, &str, &str) -> String) -> Vec<String> {
    let head = ["BUILD", "OUTCOME", "DURATION", "ARTIFACTS"];
    let w = |f: &dyn Fn(&Row) -> usize, h: &str| rows.iter().map(f).max().unwrap_or(0).max(h.len());
    let wb = w(&|r| r.build.chars().count(), head[0]);
    let wo = w(&|r| r.outcome.chars().count(), head[1]);
    let wd = w(&|r| r.duration.chars().count(), head[2]);
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let mut out = vec![format!(
        "    {}  {}  {}  {}",
        pad(head[0], wb),
        pad(head[1], wo),
        pad(head[2], wd),
        head[3]
    )];
    for r in rows {
        let first = r.artifacts.first().map_or("-", String::as_str);
        out.push(format!(
            "    {}  {}  {}  {first}",
            paint(0, &r.build, &pad(&r.build, wb)),
            paint(1, &r.outcome, &pad(&r.outcome, wo)),
            pad(&r.duration, wd),
        ));
        for more in r.artifacts.iter().skip(1) {
            out.push(format!("    {}  {more}", " ".repeat(wb + wo + wd + 4)));
        }
    }
    out
}

/// Packer's end of a run: a line per build, the errors, the artifacts (and their records), the
/// table of outcomes; the run's error, by kind, when a build did not end cleanly.
pub(super) fn summary(outcomes: &[Outcome], ui: &Ui) -> Result<(), Error> {
    ui.end_live();
    for o in outcomes {
        match &o.result {
            Ok(_) => ui.say(&format!(
                "Build '{}' finished after {}.",
                o.name,
                human_duration(o.took)
            )),
            Err(e) => ui.error(&format!(
                "Build '{}' errored after {}: {e}",
                o.name,
                human_duration(o.took)
            )),
        }
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    if !failed.is_empty() {
        // Packer's records: `error-count`, then an `error` per build.
        ui.record("", "error-count", &[&failed.len().to_string()]);
        ui.error("\n==> Some builds didn't complete successfully and had errors:");
        for o in &failed {
            if let Err(e) = &o.result {
                ui.record(&o.name, "error", &[&e.to_string()]);
                ui.error(&format!("--> {}: {e}", o.name));
            }
        }
    }
    let ok: Vec<(&Outcome, &Vec<Artifact>)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|a| (o, a)))
        .collect();
    if !ok.is_empty() {
        ui.say("\n==> Builds finished. The artifacts of successful builds are:");
        for (o, artifacts) in &ok {
            if artifacts.is_empty() {
                ui.say(&format!(
                    "--> {}: no AMI was created (skip_create_ami)",
                    o.name
                ));
                continue;
            }
            // Packer's machine-readable artifact records (`-machine-readable`), and its line
            // per artifact there; people get each AMI once.
            ui.record(&o.name, "artifact-count", &[&artifacts.len().to_string()]);
            for (i, a) in artifacts.iter().enumerate() {
                let i = i.to_string();
                ui.record(&o.name, "artifact", &[&i, "builder-id", a.builder_id()]);
                ui.record(&o.name, "artifact", &[&i, "id", &a.id()]);
                ui.record(&o.name, "artifact", &[&i, "string", &a.describe()]);
                ui.record(&o.name, "artifact", &[&i, "files-count", "0"]);
                ui.record(&o.name, "artifact", &[&i, "end"]);
                if ui.machine {
                    ui.say(&format!(
                        "--> {}: {}",
                        o.name,
                        a.describe_human().trim_end()
                    ));
                }
            }
            if !ui.machine {
                for line in human_listing(&o.name, artifacts) {
                    ui.say(&line);
                }
            }
        }
    }
    if !ui.machine {
        outcome_table(outcomes, ui);
    }
    let failures: Vec<BuildFailure> = outcomes.iter().filter_map(Outcome::failure).collect();
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::Builds {
        failures,
        total: outcomes.len(),
    })
}

/// The summary's lines for one build's artifacts, for people: each AMI named once (Packer
/// repeats the builder's AMIs once per post-processor chain that passes them on; that
/// repetition stays in `-machine-readable`), "reused" for AMIs that existed already, and the
/// null builder's "nothing" once.
pub fn human_listing(build: &str, artifacts: &[Artifact]) -> Vec<String> {
    let mut named: BTreeSet<(&String, &String)> = BTreeSet::new();
    let mut null_said = false;
    let mut out = Vec::new();
    for a in artifacts {
        if a.null {
            if !null_said {
                out.push(format!("--> {build}: {}", a.describe_human()));
                null_said = true;
            }
            continue;
        }
        let new: Vec<(&String, &String)> = a.amis.iter().filter(|p| !named.contains(p)).collect();
        if new.is_empty() {
            continue;
        }
        named.extend(new.iter().copied());
        let text = Artifact::listing(a.reused, new);
        out.push(format!("--> {build}: {}", text.trim_end()));
    }
    out
}

/// Each build's outcome, duration and artifacts, as a table (colored on a terminal).
fn outcome_table(outcomes: &[Outcome], ui: &Ui) {
    let rows: Vec<Row> = outcomes
        .iter()
        .map(|o| Row {
            build: o.name.clone(),
            outcome: o.outcome().to_string(),
            duration: short_duration(o.took),
            artifacts: o.artifact_ids(),
        })
        .collect();
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    ui.say(&format!(
        "\n==> Build outcomes: {ok} succeeded, {} failed",
        outcomes.len() - ok
    ));
    let paint = |col: usize, text: &str, cell: &str| -> String {
        match col {
            0 => ui.paint_build(text, cell),
            _ if !ui.out_color => cell.to_string(),
            _ => {
                let code = match text {
                    "succeeded" => "32",
                    "failed and cleaned up" => "31",
                    _ => "33",
                };
                format!("\x1b[{code}m{cell}\x1b[0m")
            }
        }
    };
    for line in table(&rows, &paint) {
        ui.say(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pads_columns_and_lists_every_artifact() {
        let rows = vec![
            Row {
                build: "web".into(),
                outcome: "succeeded".into(),
                duration: "4m05s".into(),
                artifacts: vec!["us-east-1:ami-1".into(), "Null".into()],
            },
            Row {
                build: "database".into(),
                outcome: "failed and cleaned up".into(),
                duration: "2.0s".into(),
                artifacts: vec![],
            },
        ];
        let plain = |_: usize, _: &str, cell: &str| cell.to_string();
        assert_eq!(
            table(&rows, &plain),
            vec![
                "    BUILD     OUTCOME                DURATION  ARTIFACTS",
                "    web       succeeded              4m05s     us-east-1:ami-1",
                "                                               Null",
                "    database  failed and cleaned up  2.0s      -",
            ]
        );
        let painted = |col: usize, _: &str, cell: &str| {
            if col == 0 {
                format!("<{cell}>")
            } else {
                cell.to_string()
            }
        };
        assert_eq!(
            table(&rows, &painted)[1],
            "    <web     >  succeeded              4m05s     us-east-1:ami-1"
        );
    }

    fn amis(pairs: &[(&str, &str)], reused: bool) -> Artifact {
        Artifact {
            amis: pairs
                .iter()
                .map(|(r, a)| (r.to_string(), a.to_string()))
                .collect(),
            reused,
            ..Artifact::default()
        }
    }

    #[test]
    fn people_see_each_ami_once_however_many_post_processors_passed_it_on() {
        let built = amis(&[("us-east-1", "ami-e"), ("us-west-2", "ami-w")], false);
        // The builder's artifact, then what three chains passed on: Packer's list.
        let list = vec![built.clone(), built.clone(), built.clone(), built];
        assert_eq!(
            human_listing("web", &list),
            vec!["--> web: AMIs were created:\nus-east-1: ami-e\nus-west-2: ami-w"]
        );
        // A chain that passes on another AMI: only what was not named yet.
        let more = amis(&[("us-east-1", "ami-e"), ("eu-west-1", "ami-x")], false);
        let list = vec![amis(&[("us-east-1", "ami-e")], false), more];
        assert_eq!(
            human_listing("web", &list),
            vec![
                "--> web: AMIs were created:\nus-east-1: ami-e",
                "--> web: AMIs were created:\neu-west-1: ami-x",
            ]
        );
    }

    #[test]
    fn a_reused_ami_is_called_reused_and_the_null_builders_nothing_is_said_once() {
        let reused = amis(&[("us-east-1", "ami-e")], true);
        assert_eq!(
            human_listing("db", &[reused.clone(), reused]),
            vec!["--> db: AMIs were reused:\nus-east-1: ami-e"]
        );
        let null = Artifact::null(Default::default());
        assert_eq!(
            human_listing("rehearsal", &[null.clone(), null]),
            vec!["--> rehearsal: Did not export anything. This is the null builder"]
        );
        assert!(human_listing("none", &[]).is_empty());
    }
}
