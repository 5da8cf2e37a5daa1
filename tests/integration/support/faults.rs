//! The fault tables of the fault-injection tests (cleanup and fault tests): how many rounds of
//! each fault (`IMGBUILD_FAULT_ROUNDS`) and the printed tally.

/// Rounds of every fault: 1, or `IMGBUILD_FAULT_ROUNDS` (at most 20).
pub fn rounds() -> usize {
    std::env::var("IMGBUILD_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 20)
}

/// One fault's counts over its rounds.
#[derive(Default)]
pub struct Tally {
    pub runs: usize,
    pub succeeded: usize,
    pub leaked: usize,
}

/// The tally as a table: one row per fault (runs, builds succeeded, resources leaked).
pub fn print_table(rows: &[(&str, Tally)]) -> String {
    let mut s = format!(
        "{:<48} {:>5} {:>16} {:>17}\n",
        "fault", "runs", "builds succeeded", "resources leaked"
    );
    for (f, t) in rows {
        s.push_str(&format!(
            "{:<48} {:>5} {:>16} {:>17}\n",
            f, t.runs, t.succeeded, t.leaked
        ));
    }
    s
}
