//! What post-processors run with ([`PpContext`]): the build's names, the run id, the UI, the
//! template engine for rendering options against the artifact, and AWS access. Below the
//! post-processors and [`super::run`].

use std::collections::BTreeMap;

use super::error::PpError;
use crate::artifact::Artifact;
use crate::aws::Aws;
use crate::builder::amazon::config::AmazonEbsConfig;
use crate::cancel::Cancel;
use crate::template::funcs::{Engine, Phase, Scope};
use crate::ui::Ui;

/// What post-processors run with.
pub struct PpContext<'a> {
    pub build_name: &'a str,
    pub build_type: &'a str,
    /// The run's id (`packer_run_uuid` in the manifest).
    pub run_id: &'a str,
    /// `-force`: a manifest last written by another run starts over.
    pub force: bool,
    pub ui: &'a Ui,
    pub engine: &'a Engine,
    pub user: &'a BTreeMap<String, String>,
    pub template_dir: &'a str,
    pub cancel: &'a Cancel,
    /// The second Ctrl-C: a boot test's teardown stops too.
    pub abort: &'a Cancel,
    /// The amazon-ebs builder's configuration (the boot test launches with it); `None` for the
    /// null builder.
    pub amazon: Option<&'a AmazonEbsConfig>,
    /// The build's AWS access (credentials, retry, endpoints), for the post-processors that
    /// call AWS; `None` for the null builder.
    pub aws: Option<&'a Aws>,
    /// The amazon-ebs build's `ami_name` as written in the template (not rendered).
    pub ami_name: Option<&'a str>,
    /// The build's timeline: each post-processor is a phase; the manifest records it.
    pub timeline: &'a crate::timeline::Timeline,
}

impl PpContext<'_> {
    /// Renders a post-processor option against the artifact's build data (`{{ build `ID` }}`,
    /// `{{ .SourceAMI }}`); `fields` replaces the dot fields (`execute_command`'s `.Vars`).
    pub fn render(
        &self,
        what: &str,
        src: &str,
        artifact: &Artifact,
        fields: Option<&BTreeMap<String, String>>,
    ) -> Result<String, PpError> {
        let scope = Scope {
            phase: Phase::Build,
            user: self.user,
            template_dir: self.template_dir,
            build_name: Some(self.build_name),
            build_type: Some(self.build_type),
            build: Some(&artifact.build_data),
            fields: Some(fields.unwrap_or(&artifact.build_data)),
        };
        self.engine
            .render(src, &scope)
            .map_err(|e| PpError::Render {
                what: what.to_string(),
                message: e.message,
            })
    }

    /// A status line under a post-processor's prefix (`==> web (manifest): ...`).
    pub fn say(&self, target: &str, text: &str) {
        self.ui.say(&format!("==> {target}: {text}"));
    }
}
