//! Stage 2: from a parsed template and bound variables to [`PreparedBuild`]s, one per builder
//! selected by `-only`/`-except`, each with its typed builder configuration, the provisioners
//! that apply to it (with `override` merged) and its post-processor chains.
//!
//! This is the whole of `imgbuild validate` without `-syntax-only`, and what `build` runs before
//! any AWS call: a build never starts from a template that is not known to be valid.

use crate::builder::amazon::config::AmazonEbsConfig;
use crate::builder::null::NullConfig;
use crate::builder::BuilderConfig;
use crate::communicator::ssh::Communicator;
use crate::post_processor::PreparedPostProcessor;
use crate::provisioner::PreparedProvisioner;
use crate::template::decode::{Dx, Obj};
use crate::template::diag::{closest, Diagnostic, Diagnostics, JsonPath};
use crate::template::funcs::{Clock, Engine, Phase, Scope, PACKER_COMPAT_VERSION};
use crate::template::variables::Variables;
use crate::template::{NameRef, RawBuilder, RawPostProcessor, RawProvisioner, Template};

/// The builder types imgbuild runs.
pub const BUILDER_TYPES: &[&str] = &["amazon-ebs", "null"];

/// Which builds to prepare (`-only`, `-except` by build name).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub except: Vec<String>,
    /// `-strict`: Packer's leniencies are errors.
    pub strict: bool,
}

#[derive(Debug)]
pub struct PreparedBuild {
    pub name: String,
    pub kind: String,
    pub builder: BuilderConfig,
    pub provisioners: Vec<PreparedProvisioner>,
    pub error_cleanup: Option<PreparedProvisioner>,
    pub post_processors: Vec<Vec<PreparedPostProcessor>>,
    /// The builder object as written (for the reuse fingerprint).
    pub definition: serde_json::Value,
}

/// Everything a run needs, known to be valid.
#[derive(Debug)]
pub struct Prepared {
    pub builds: Vec<PreparedBuild>,
    pub clock: Clock,
}

/// Prepares the selected builds. Every problem goes to `diags`; the result is only meaningful
/// when `diags` has no errors.
pub fn prepare(
    t: &Template,
    vars: &Variables,
    selection: &Selection,
    engine: &Engine,
    clock: Clock,
    diags: &mut Diagnostics,
) -> Prepared {
    check_min_version(t, diags);
    let user = &vars.values;
    // Packer renders the names in only/except/override before matching them.
    let t = &crate::template::leniency::render_name_refs(t, user, engine);
    let names = build_names(t, user, engine, diags);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    check_selection(selection, &all, diags);
    check_name_refs(t, &all, diags);

    let mut builds = Vec::new();
    for (b, name) in t.builders.iter().zip(&names) {
        let selected = (selection.only.is_empty() || selection.only.contains(name))
            && !selection.except.contains(name);
        if !selected {
            continue;
        }
        let mut dx = Dx {
            diags: &mut *diags,
            file: &t.file,
            engine,
            scope: scope(Phase::Prepare, user, t, Some(name), Some(&b.kind)),
        };
        if let Some(build) = prepare_build(t, b, name, &mut dx) {
            builds.push(build);
        }
    }
    report_unapplied(t, &names, user, engine, diags);
    for d in crate::post_processor::check_builds(
        &builds
            .iter()
            .map(|b| (b.name.as_str(), b.post_processors.as_slice()))
            .collect::<Vec<_>>(),
    ) {
        diags.push(d.in_file(&t.file));
    }
    if builds.is_empty() && !t.builders.is_empty() && !diags.has_errors() {
        diags.push(
            Diagnostic::error("no builds to run: -only/-except left none of the template's builds")
                .help(format!("builds in this template: {}", all.join(", "))),
        );
    }
    dedupe(diags);
    Prepared { builds, clock }
}

/// The builds' names, rendered (they may use variables); a name that does not render is
/// reported and kept as written.
fn build_names(
    t: &Template,
    user: &std::collections::BTreeMap<String, String>,
    engine: &Engine,
    diags: &mut Diagnostics,
) -> Vec<String> {
    t.builders
        .iter()
        .map(|b| {
            let scope = scope(Phase::Prepare, user, t, None, None);
            match engine.render(&b.name, &scope) {
                Ok(n) => n,
                Err(e) if e.message.contains(crate::template::funcs::UNSET) => b.name.clone(),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "in the name of builder {}: {}",
                            b.index + 1,
                            e.message
                        ))
                        .in_file(&t.file)
                        .path(&b.path.key("name")),
                    );
                    b.name.clone()
                }
            }
        })
        .collect()
}

/// `-only` and `-except` name builds of the template; a name that is none is a warning (Packer
/// accepts it), an error under `-strict`.
fn check_selection(selection: &Selection, all: &[&str], diags: &mut Diagnostics) {
    for (flag, list) in [("-only", &selection.only), ("-except", &selection.except)] {
        for n in list {
            if !all.contains(&n.as_str()) {
                let mut d = Diagnostic::warning(format!(
                    "{flag} names `{n}`, which is not a build in this template"
                ));
                d = match closest(n, all.iter().copied()) {
                    Some(c) => d.help(format!("did you mean `{c}`? Builds: {}", all.join(", "))),
                    None => d.help(format!("builds in this template: {}", all.join(", "))),
                };
                diags.lenient(d);
            }
        }
    }
}

/// One selected build: its builder decoded, the provisioners, error-cleanup provisioner and
/// post-processor chains that apply to it. `None` when its builder cannot be decoded or its
/// type is unknown (reported to `dx`).
fn prepare_build(t: &Template, b: &RawBuilder, name: &str, dx: &mut Dx) -> Option<PreparedBuild> {
    let builder = decode_builder(b, name, dx)?;
    let provisioners: Vec<PreparedProvisioner> = t
        .provisioners
        .iter()
        .filter(|p| applies(&p.only, &p.except, name))
        .filter_map(|p| PreparedProvisioner::decode(p, name, dx))
        .collect();
    let error_cleanup = t
        .error_cleanup
        .as_ref()
        .filter(|p| applies(&p.only, &p.except, name))
        .and_then(|p| PreparedProvisioner::decode(p, name, dx));
    let applied = t
        .provisioners
        .iter()
        .chain(t.error_cleanup.as_ref())
        .filter(|p| applies(&p.only, &p.except, name));
    check_communicator(&builder, name, applied, dx);
    let boot_tests = t
        .post_processors
        .iter()
        .flatten()
        .filter(|pp| pp.kind == "boot-test" && applies(&pp.only, &pp.except, name));
    check_boot_tests(&builder, name, boot_tests, dx);
    let post_processors = t
        .post_processors
        .iter()
        .map(|chain| {
            chain
                .iter()
                .filter(|pp| applies(&pp.only, &pp.except, name))
                .filter_map(|pp| PreparedPostProcessor::decode(pp, dx))
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect();
    Some(PreparedBuild {
        name: name.to_string(),
        kind: b.kind.clone(),
        builder,
        provisioners,
        error_cleanup,
        post_processors,
        definition: b.node.to_json(),
    })
}

/// The builder's configuration, decoded by its type; an unknown type is reported.
fn decode_builder(b: &RawBuilder, name: &str, dx: &mut Dx) -> Option<BuilderConfig> {
    let what = format!("builder `{name}` ({})", b.kind);
    let mut obj = Obj::new(&b.node, b.path.clone(), what, dx)?;
    obj.take("type");
    obj.take("name");
    match b.kind.as_str() {
        "amazon-ebs" => Some(BuilderConfig::AmazonEbs(Box::new(AmazonEbsConfig::decode(
            obj, dx,
        )))),
        "null" => Some(BuilderConfig::Null(Box::new(NullConfig::decode(obj, dx)))),
        other => {
            let (node, path) = (b.node.get("type").map(|m| &m.value), b.path.key("type"));
            let span = node.map_or(b.node.span, |n| n.span);
            let d = dx.error(
                span,
                &path,
                format!("builder type `{other}` is not supported by imgbuild"),
            );
            d.notes
                .push(match closest(other, BUILDER_TYPES.iter().copied()) {
                    Some(c) => format!("help: did you mean `{c}`?"),
                    None => format!(
                        "help: supported builders: {} (amazon-ebs builds AMIs; null runs the provisioners against an existing machine)",
                        BUILDER_TYPES.join(", ")
                    ),
                });
            None
        }
    }
}

/// The build would refuse a provisioner that needs SSH (`shell`, `file`) when its builder has
/// `"communicator": "none"` (after launching an instance, for amazon-ebs): refused here, at the
/// provisioner's `type`, before anything is created.
fn check_communicator<'p>(
    builder: &BuilderConfig,
    name: &str,
    provisioners: impl Iterator<Item = &'p RawProvisioner>,
    dx: &mut Dx,
) {
    let ssh = match builder {
        BuilderConfig::AmazonEbs(c) => &c.ssh,
        BuilderConfig::Null(c) => &c.ssh,
    };
    if ssh.communicator != Communicator::None {
        return;
    }
    for p in provisioners.filter(|p| {
        matches!(
            p.kind.as_str(),
            "shell"
                | "file"
                | "ansible"
                | "ansible-local"
                | "puppet-masterless"
                | "chef-solo"
                | "salt-masterless"
        )
    }) {
        let span = p.node.get("type").map_or(p.node.span, |m| m.value.span);
        let d = dx.error(
            span,
            &p.path.key("type"),
            format!(
                "the {} provisioner needs SSH, but this build has \"communicator\": \"none\" (build `{name}`)",
                p.kind
            ),
        );
        d.notes.push(format!(
            "help: give build `{name}` a communicator (remove \"communicator\": \"none\"), use `shell-local`, or leave this build out with the provisioner's `except`"
        ));
    }
}

/// A `boot-test` post-processor needs an amazon-ebs build (an AMI to boot) that connects over
/// SSH (its checks run over SSH).
fn check_boot_tests<'p>(
    builder: &BuilderConfig,
    name: &str,
    boot_tests: impl Iterator<Item = &'p RawPostProcessor>,
    dx: &mut Dx,
) {
    let problem = match builder {
        BuilderConfig::Null(_) => "the null builder makes no AMI to boot",
        BuilderConfig::AmazonEbs(c) if c.ssh.communicator == Communicator::None => {
            "its checks run over SSH, but this build has \"communicator\": \"none\""
        }
        BuilderConfig::AmazonEbs(_) => return,
    };
    for pp in boot_tests {
        let span = pp.node.get("type").map_or(pp.node.span, |m| m.value.span);
        let d = dx.error(
            span,
            &pp.path.key("type"),
            format!("boot-test cannot run for build `{name}`: {problem}"),
        );
        d.notes.push(format!(
            "help: give build `{name}` an SSH communicator, or leave it out with the post-processor's `except`"
        ));
    }
}

/// Provisioners and post-processors that apply to none of the template's builds (an `only`
/// that names no build: reported by [`check_name_refs`]) are decoded anyway, for the first
/// build, so that a typo in `only` does not hide their other errors.
fn report_unapplied(
    t: &Template,
    names: &[String],
    user: &std::collections::BTreeMap<String, String>,
    engine: &Engine,
    diags: &mut Diagnostics,
) {
    let (Some(b), Some(name)) = (t.builders.first(), names.first()) else {
        return;
    };
    let unapplied =
        |only: &[NameRef], except: &[NameRef]| !names.iter().any(|n| applies(only, except, n));
    let mut dx = Dx {
        diags,
        file: &t.file,
        engine,
        scope: scope(Phase::Prepare, user, t, Some(name), Some(&b.kind)),
    };
    for p in t.provisioners.iter().chain(t.error_cleanup.as_ref()) {
        if unapplied(&p.only, &p.except) {
            PreparedProvisioner::decode(p, name, &mut dx);
        }
    }
    for pp in t.post_processors.iter().flatten() {
        if unapplied(&pp.only, &pp.except) {
            PreparedPostProcessor::decode(pp, &mut dx);
        }
    }
}

fn scope<'a>(
    phase: Phase,
    user: &'a std::collections::BTreeMap<String, String>,
    t: &'a Template,
    build_name: Option<&'a str>,
    build_type: Option<&'a str>,
) -> Scope<'a> {
    Scope {
        phase,
        user,
        template_dir: &t.template_dir,
        build_name,
        build_type,
        build: None,
        fields: None,
    }
}

fn applies(only: &[NameRef], except: &[NameRef], build: &str) -> bool {
    (only.is_empty() || only.iter().any(|n| n.name == build))
        && !except.iter().any(|n| n.name == build)
}

/// `only`, `except` and `override` name builds; a name that is no build is a mistake.
fn check_name_refs(t: &Template, builds: &[&str], diags: &mut Diagnostics) {
    let mut check = |what: &str, key: &str, refs: &[NameRef]| {
        for r in refs {
            if builds.contains(&r.name.as_str()) {
                continue;
            }
            let mut d = Diagnostic::error(format!(
                "{what}: `{key}` names `{}`, which is not a build in this template",
                r.name
            ))
            .at(&t.file, r.span)
            .path(&r.path);
            d = match closest(&r.name, builds.iter().copied()) {
                Some(c) => d.help(format!("did you mean `{c}`? (`{key}` takes build names, which default to the builder type)")),
                None => d.help(format!("builds in this template: {}", builds.join(", "))),
            };
            diags.push(d);
        }
    };
    let provs = t
        .provisioners
        .iter()
        .map(|p| (format!("provisioner {} ({})", p.index + 1, p.kind), p));
    let cleanup = t
        .error_cleanup
        .iter()
        .map(|p| ("error-cleanup-provisioner".to_string(), p));
    for (what, p) in provs.chain(cleanup) {
        check(&what, "only", &p.only);
        check(&what, "except", &p.except);
        let ov: Vec<NameRef> = p.overrides.iter().map(|(n, _)| n.clone()).collect();
        check(&what, "override", &ov);
    }
    for pp in t.post_processors.iter().flatten() {
        let what = format!("post-processor `{}`", pp.kind);
        check(&what, "only", &pp.only);
        check(&what, "except", &pp.except);
    }
}

/// `min_packer_version` is checked against the Packer version whose template language imgbuild
/// implements.
fn check_min_version(t: &Template, diags: &mut Diagnostics) {
    let Some((v, span)) = &t.min_packer_version else {
        return;
    };
    let path = JsonPath::root().key("min_packer_version");
    match (parse_version(v), parse_version(PACKER_COMPAT_VERSION)) {
        (Some(want), Some(have)) if want > have => diags.push(
            Diagnostic::error(format!(
                "This template requires Packer version {v} or higher; imgbuild implements the template language of Packer {PACKER_COMPAT_VERSION}"
            ))
            .at(&t.file, *span)
            .path(&path)
            .help("if the template uses nothing newer, lower min_packer_version"),
        ),
        (None, _) => diags.push(
            Diagnostic::error(format!("`min_packer_version` \"{v}\" is not a version such as \"1.6.0\""))
                .at(&t.file, *span)
                .path(&path),
        ),
        _ => {}
    }
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// The same provisioner decoded for several builds reports the same problem once.
fn dedupe(diags: &mut Diagnostics) {
    let mut seen = std::collections::HashSet::new();
    diags.items.retain(|d| {
        let key = (
            d.severity == crate::template::diag::Severity::Error,
            d.message.clone(),
            d.span.map(|s| (s.start, s.end)),
            d.file.as_ref().map(|f| f.name.clone()),
        );
        seen.insert(key)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::diag::SourceFile;

    /// The errors `prepare` reports for a template (all builds selected).
    fn prepare_errors(text: &str) -> Vec<String> {
        let file = SourceFile::new("t.json", text);
        let mut diags = Diagnostics::default();
        let t = Template::parse(file, "/t".into(), &mut diags).expect("parses");
        let engine = Engine::new(Clock::now());
        let vars = Variables::default();
        prepare(
            &t,
            &vars,
            &Selection::default(),
            &engine,
            Clock::now(),
            &mut diags,
        );
        crate::checks::testing::errors(&diags)
    }

    #[test]
    fn ssh_provisioners_are_refused_for_a_build_without_a_communicator() {
        let errs = prepare_errors(
            r#"{"builders": [{"type": "null", "communicator": "none"},
                             {"type": "null", "name": "ssh", "ssh_host": "h", "ssh_username": "u", "ssh_password": "p"}],
                "provisioners": [{"type": "shell", "inline": ["true"]},
                                 {"type": "shell-local", "inline": ["true"]},
                                 {"type": "file", "source": "/etc/hostname", "destination": "/tmp/x"},
                                 {"type": "shell", "inline": ["true"], "only": ["ssh"]}]}"#,
        );
        assert_eq!(
            errs,
            vec![
                "the shell provisioner needs SSH, but this build has \"communicator\": \"none\" (build `null`)",
                "the file provisioner needs SSH, but this build has \"communicator\": \"none\" (build `null`)",
            ]
        );
        let amazon = prepare_errors(
            r#"{"builders": [{"type": "amazon-ebs", "region": "us-east-1", "source_ami": "ami-1",
                              "instance_type": "t3.micro", "ami_name": "x-{{timestamp}}", "communicator": "none"}],
                "provisioners": [{"type": "shell", "inline": ["true"]}]}"#,
        );
        assert_eq!(
            amazon,
            vec!["the shell provisioner needs SSH, but this build has \"communicator\": \"none\" (build `amazon-ebs`)"]
        );
    }

    #[test]
    fn boot_test_needs_an_amazon_ebs_build_with_ssh() {
        let errs = prepare_errors(
            r#"{"builders": [{"type": "null", "communicator": "none"},
                             {"type": "amazon-ebs", "region": "us-east-1", "source_ami": "ami-1",
                              "instance_type": "t3.micro", "ami_name": "x-{{timestamp}}", "communicator": "none"},
                             {"type": "amazon-ebs", "name": "ssh", "region": "us-east-1", "source_ami": "ami-1",
                              "instance_type": "t3.micro", "ami_name": "y-{{timestamp}}", "ssh_username": "u"}],
                "post-processors": [{"type": "boot-test", "inline": ["true"]}]}"#,
        );
        assert_eq!(
            errs,
            vec![
                "boot-test cannot run for build `null`: the null builder makes no AMI to boot",
                "boot-test cannot run for build `amazon-ebs`: its checks run over SSH, but this build has \"communicator\": \"none\"",
            ]
        );
    }

    #[test]
    fn a_typo_in_only_does_not_hide_the_provisioners_other_errors() {
        let errs = prepare_errors(
            r#"{"builders": [{"type": "null", "communicator": "none"}],
                "provisioners": [{"type": "shell-local", "only": ["nul"], "inline": ["true"], "no_such_key": 1}],
                "post-processors": [{"type": "manifest", "only": ["nul"], "bogus": true}]}"#,
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("`only` names `nul`"), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("no_such_key")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("bogus")), "{errs:?}");
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("1.6.6"), Some((1, 6, 6)));
        assert_eq!(parse_version("v1.10"), Some((1, 10, 0)));
        assert_eq!(parse_version("1.7.0-beta"), Some((1, 7, 0)));
        assert!(parse_version("1.10.0") > parse_version("1.9.9"));
        assert_eq!(parse_version("one"), None);
    }
}
