//! Orchestration of builds. The amazon-ebs builder itself is not implemented yet: `build`
//! validates and prepares every selected build, reports what it would run, and stops before any
//! AWS call, saying so (exit 1, nothing created).

pub mod provision;

use crate::error::Error;
use crate::template::decode::format_duration;
use crate::template::prepare::Prepared;
use crate::ui::Ui;

pub fn run(prepared: &Prepared, ui: &Ui) -> Result<(), Error> {
    for b in &prepared.builds {
        ui.say(&format!("==> {}: prepared ({} build)", b.name, b.kind));
        for p in &b.provisioners {
            let mut extra = Vec::new();
            if let Some(d) = p.pause_before {
                extra.push(format!("pause_before {}", format_duration(d)));
            }
            if p.max_retries > 0 {
                extra.push(format!("max_retries {}", p.max_retries));
            }
            if let Some(d) = p.timeout {
                extra.push(format!("timeout {}", format_duration(d)));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            };
            ui.say(&format!(
                "    {}: provisioner {}: {}{extra}",
                b.name,
                p.index + 1,
                p.kind
            ));
        }
        for chain in &b.post_processors {
            let kinds: Vec<&str> = chain.iter().map(|p| p.kind.as_str()).collect();
            ui.say(&format!(
                "    {}: post-processors: {}",
                b.name,
                kinds.join(" -> ")
            ));
        }
    }
    Err(Error::NotImplemented {
        what: "the amazon-ebs builder (launching, provisioning and imaging)".into(),
        version: env!("CARGO_PKG_VERSION"),
    })
}
