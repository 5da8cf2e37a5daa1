//! The configurations of `puppet-masterless`, `chef-solo` and `salt-masterless` (Packer 1.6.6's
//! options and defaults), and the files and commands they produce on the instance, as pure
//! functions; [`crate::provisioner::runtime::config_mgmt`] stages and runs them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::checks::{error_at, flag, opt_string};
use crate::provisioner::ansible::{local_dir, local_file};
use crate::provisioner::ansible_local::paths;
use crate::template::decode::{Dx, Obj};

/// `puppet-masterless`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetConfig {
    /// `manifest_file` (required): a file (or a directory of manifests).
    pub manifest_file: PathBuf,
    pub manifest_dir: Option<PathBuf>,
    pub module_paths: Vec<PathBuf>,
    pub hiera_config_path: Option<PathBuf>,
    /// `facter`: `FACTER_<k>='<v>'` (plus `packer_build_name`, `packer_builder_type`).
    pub facter: BTreeMap<String, String>,
    pub extra_arguments: Vec<String>,
    pub execute_command: Option<String>,
    pub puppet_bin_dir: Option<String>,
    pub prevent_sudo: bool,
    /// Default `/tmp/packer-puppet-masterless`.
    pub staging_directory: String,
    /// Default the staging directory.
    pub working_directory: Option<String>,
    pub clean_staging_directory: bool,
    /// Every exit code is success (default: 0 and 2, `--detailed-exitcodes`).
    pub ignore_exit_codes: bool,
}

/// `chef-solo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChefConfig {
    pub cookbook_paths: Vec<PathBuf>,
    pub remote_cookbook_paths: Vec<String>,
    pub roles_path: Option<PathBuf>,
    pub data_bags_path: Option<PathBuf>,
    pub environments_path: Option<PathBuf>,
    pub encrypted_data_bag_secret_path: Option<PathBuf>,
    pub chef_environment: Option<String>,
    /// Default `accept-silent`.
    pub chef_license: String,
    pub run_list: Vec<String>,
    /// `json`, with `json_string`'s keys over it: node.json with `run_list`.
    pub json: serde_json::Map<String, serde_json::Value>,
    /// `json_string` when it holds a template rendered at build time (else merged into `json`).
    pub json_string: Option<String>,
    pub config_template: Option<PathBuf>,
    pub execute_command: Option<String>,
    pub install_command: Option<String>,
    pub prevent_sudo: bool,
    pub skip_install: bool,
    /// Default `/tmp/packer-chef-solo`.
    pub staging_directory: String,
    pub version: Option<String>,
}

/// `salt-masterless`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltConfig {
    pub local_state_tree: Option<PathBuf>,
    pub local_pillar_roots: Option<PathBuf>,
    /// Default `/srv/salt`.
    pub remote_state_tree: String,
    /// Default `/srv/pillar`.
    pub remote_pillar_roots: String,
    pub minion_config: Option<PathBuf>,
    pub grains_file: Option<PathBuf>,
    pub custom_state: Option<String>,
    pub skip_bootstrap: bool,
    pub bootstrap_args: String,
    pub disable_sudo: bool,
    /// Default `/tmp/salt`.
    pub temp_config_dir: String,
    pub no_exit_on_failure: bool,
    /// Default `info`.
    pub log_level: String,
    pub salt_call_args: String,
    pub salt_bin_dir: Option<String>,
    /// `formulas`: git repositories' formula directories, added to the state tree.
    pub formulas: Vec<Formula>,
}

/// One `formulas` entry (`<repository>.git//<directory>[?ref=<ref>]`, as Packer requires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    /// As written.
    pub url: String,
    /// What `git clone` gets: `git::` dropped, `github.com/...` as `https://github.com/...`.
    pub repo: String,
    /// The formula's directory in the repository, and its name in the state tree.
    pub dir: String,
    /// `?ref=`: a branch or tag.
    pub git_ref: Option<String>,
}

impl Formula {
    /// Packer's check (`^(.*).git//[a-zA-Z0-9-_]+(\?.*)?$`), then the parts; `None` when it fails.
    pub fn parse(url: &str) -> Option<Formula> {
        let at = url.rfind("git//")?;
        if at < 1 {
            return None;
        }
        let (dir, query) = match url[at + 5..].split_once('?') {
            Some((d, q)) => (d, Some(q)),
            None => (&url[at + 5..], None),
        };
        let name_ok = |d: &str| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(dir) {
            return None;
        }
        let git_ref = query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("ref=").map(str::to_string))
        });
        let repo = url[..at + 3].trim_start_matches("git::");
        let repo = if repo.starts_with("github.com/") {
            format!("https://{repo}")
        } else {
            repo.to_string()
        };
        Some(Formula {
            url: url.to_string(),
            repo,
            dir: dir.to_string(),
            git_ref,
        })
    }
}

fn guest_os(o: &mut Obj, dx: &mut Dx) {
    if let Some(os) = opt_string(o, dx, "guest_os_type") {
        if os != "unix" {
            error_at(
                o,
                dx,
                "guest_os_type",
                format!("guest_os_type \"{os}\" is not supported: imgbuild provisions Unix guests over SSH only"),
                Some("remove it, or write \"unix\""),
            );
        }
    }
}

impl PuppetConfig {
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> PuppetConfig {
        let o = &mut obj;
        let manifest_file = match o.has("manifest_file") {
            true => paths(o, dx, "manifest_file", false).pop(),
            false => None,
        };
        if manifest_file.is_none() {
            error_at(
                o,
                dx,
                "manifest_file",
                "A manifest_file must be specified.",
                None,
            );
        }
        let c = PuppetConfig {
            manifest_file: manifest_file.unwrap_or_default(),
            manifest_dir: local_dir(o, dx, "manifest_dir"),
            module_paths: paths(o, dx, "module_paths", true),
            hiera_config_path: local_file(o, dx, "hiera_config_path", false),
            facter: o.string_map(dx, "facter").unwrap_or_default(),
            extra_arguments: o.strings(dx, "extra_arguments").unwrap_or_default(),
            execute_command: opt_string(o, dx, "execute_command"),
            puppet_bin_dir: opt_string(o, dx, "puppet_bin_dir"),
            prevent_sudo: flag(o, dx, "prevent_sudo").unwrap_or(false),
            staging_directory: opt_string(o, dx, "staging_directory")
                .unwrap_or_else(|| "/tmp/packer-puppet-masterless".into()),
            working_directory: opt_string(o, dx, "working_directory"),
            clean_staging_directory: flag(o, dx, "clean_staging_directory").unwrap_or(false),
            ignore_exit_codes: flag(o, dx, "ignore_exit_codes").unwrap_or(false),
        };
        for k in ["elevated_user", "elevated_password"] {
            if o.has(k) {
                o.ignored(dx, k, "it only applies to Windows guests");
            }
        }
        guest_os(o, dx);
        obj.finish(dx);
        c
    }

    /// The remote manifest: `<staging>/<name>` (a directory of manifests: `<staging>/manifests`).
    pub fn remote_manifest(&self) -> String {
        if self.manifest_file.is_dir() {
            format!("{}/manifests", self.staging_directory)
        } else {
            format!("{}/{}", self.staging_directory, base(&self.manifest_file))
        }
    }

    /// Packer's default execute_command, filled in.
    pub fn command(&self, build_name: &str, build_type: &str) -> String {
        let st = &self.staging_directory;
        let mut facts: Vec<String> = vec![
            format!("FACTER_packer_build_name='{build_name}'"),
            format!("FACTER_packer_builder_type='{build_type}'"),
        ];
        facts.extend(self.facter.iter().map(|(k, v)| format!("FACTER_{k}='{v}'")));
        let mut cmd = format!(
            "cd {} && {} ",
            self.working_directory.as_deref().unwrap_or(st),
            facts.join(" ")
        );
        if !self.prevent_sudo {
            cmd.push_str("sudo -E ");
        }
        if let Some(d) = &self.puppet_bin_dir {
            cmd.push_str(&format!("{d}/"));
        }
        cmd.push_str("puppet apply --detailed-exitcodes ");
        if !self.module_paths.is_empty() {
            let mods: Vec<String> = (0..self.module_paths.len())
                .map(|i| format!("{st}/module-{i}"))
                .collect();
            cmd.push_str(&format!("--modulepath='{}' ", mods.join(":")));
        }
        if self.hiera_config_path.is_some() {
            cmd.push_str(&format!("--hiera_config='{st}/hiera.yaml' "));
        }
        if self.manifest_dir.is_some() {
            cmd.push_str(&format!("--manifestdir='{st}/manifests' "));
        }
        if !self.extra_arguments.is_empty() {
            cmd.push_str(&format!("{} ", self.extra_arguments.join(" ")));
        }
        cmd.push_str(&self.remote_manifest());
        cmd
    }
}

impl ChefConfig {
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> ChefConfig {
        let o = &mut obj;
        let json = match o.any("json") {
            Some((n, _)) => match n.to_json() {
                serde_json::Value::Object(m) => m,
                _ => {
                    error_at(
                        o,
                        dx,
                        "json",
                        "json must be an object (the node attributes)",
                        None,
                    );
                    serde_json::Map::new()
                }
            },
            None => serde_json::Map::new(),
        };
        let mut c = ChefConfig {
            cookbook_paths: paths(o, dx, "cookbook_paths", true),
            remote_cookbook_paths: o.strings(dx, "remote_cookbook_paths").unwrap_or_default(),
            roles_path: local_dir(o, dx, "roles_path"),
            data_bags_path: local_dir(o, dx, "data_bags_path"),
            environments_path: local_dir(o, dx, "environments_path"),
            encrypted_data_bag_secret_path: local_file(
                o,
                dx,
                "encrypted_data_bag_secret_path",
                false,
            ),
            chef_environment: opt_string(o, dx, "chef_environment"),
            chef_license: opt_string(o, dx, "chef_license")
                .unwrap_or_else(|| "accept-silent".into()),
            run_list: o.strings(dx, "run_list").unwrap_or_default(),
            json,
            json_string: None,
            config_template: local_file(o, dx, "config_template", false),
            execute_command: opt_string(o, dx, "execute_command"),
            install_command: opt_string(o, dx, "install_command"),
            prevent_sudo: flag(o, dx, "prevent_sudo").unwrap_or(false),
            skip_install: flag(o, dx, "skip_install").unwrap_or(false),
            staging_directory: opt_string(o, dx, "staging_directory")
                .unwrap_or_else(|| "/tmp/packer-chef-solo".into()),
            version: opt_string(o, dx, "version"),
        };
        if let Some(js) = opt_string(o, dx, "json_string") {
            if crate::checks::is_deferred(&js) {
                c.json_string = Some(js);
            } else {
                match merge_json_string(&mut c.json, &js) {
                    Ok(()) => {}
                    Err(e) => error_at(
                        o,
                        dx,
                        "json_string",
                        e,
                        Some("write the node attributes as a JSON object, e.g. \"{\\\"nginx\\\": {\\\"port\\\": 80}}\""),
                    ),
                }
            }
        }
        if c.environments_path.is_some() && c.chef_environment.is_none() {
            error_at(
                o,
                dx,
                "chef_environment",
                "You must specify a chef_environment if you specify an environments_path.",
                None,
            );
        }
        guest_os(o, dx);
        obj.finish(dx);
        c
    }

    fn sudo(&self) -> &'static str {
        if self.prevent_sudo {
            ""
        } else {
            "sudo "
        }
    }

    /// The install command (Packer's default: Chef's omnitruck installer).
    pub fn install(&self) -> String {
        self.install_command.clone().unwrap_or_else(|| {
            format!(
                "curl -L https://omnitruck.chef.io/install.sh | {}bash -s --{}",
                self.sudo(),
                self.version
                    .as_ref()
                    .map(|v| format!(" -v {v}"))
                    .unwrap_or_default()
            )
        })
    }

    /// The remote cookbook paths: each staged `cookbook_paths` entry, then `remote_cookbook_paths`.
    fn cookbooks(&self) -> Vec<String> {
        let st = &self.staging_directory;
        (0..self.cookbook_paths.len())
            .map(|i| format!("{st}/cookbooks-{i}"))
            .chain(self.remote_cookbook_paths.iter().cloned())
            .collect()
    }

    /// solo.rb (Packer's default template).
    pub fn solo_rb(&self) -> String {
        let st = &self.staging_directory;
        let quoted: Vec<String> = self
            .cookbooks()
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect();
        let mut s = format!("cookbook_path \t[{}]\n", quoted.join(","));
        if self.data_bags_path.is_some() {
            s.push_str(&format!("data_bag_path \"{st}/data_bags\"\n"));
        }
        if self.roles_path.is_some() {
            s.push_str(&format!("role_path \"{st}/roles\"\n"));
        }
        if self.encrypted_data_bag_secret_path.is_some() {
            s.push_str(&format!(
                "encrypted_data_bag_secret \"{st}/encrypted_data_bag_secret\"\n"
            ));
        }
        if self.environments_path.is_some() {
            s.push_str(&format!(
                "environment_path \"{st}/environments\"\nenvironment \"{}\"\n",
                self.chef_environment.as_deref().unwrap_or_default()
            ));
        }
        s.push_str(&format!("chef_license \"{}\"\n", self.chef_license));
        s
    }

    /// node.json: `json` (with `json_string`, `rendered` when it was a template) and `run_list`.
    pub fn node_json(&self, rendered: Option<&str>) -> Result<String, String> {
        let mut m = self.json.clone();
        if let Some(js) = rendered {
            merge_json_string(&mut m, js)?;
        }
        if !self.run_list.is_empty() {
            m.insert("run_list".into(), serde_json::json!(self.run_list));
        }
        Ok(serde_json::Value::Object(m).to_string())
    }

    /// Packer's default execute_command, filled in.
    pub fn command(&self) -> String {
        let st = &self.staging_directory;
        format!(
            "{}chef-solo --no-color -c {st}/solo.rb -j {st}/node.json",
            self.sudo()
        )
    }
}

impl SaltConfig {
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> SaltConfig {
        let o = &mut obj;
        let mut c = SaltConfig {
            local_state_tree: local_dir(o, dx, "local_state_tree"),
            local_pillar_roots: local_dir(o, dx, "local_pillar_roots"),
            remote_state_tree: opt_string(o, dx, "remote_state_tree")
                .unwrap_or_else(|| "/srv/salt".into()),
            remote_pillar_roots: opt_string(o, dx, "remote_pillar_roots")
                .unwrap_or_else(|| "/srv/pillar".into()),
            minion_config: local_file(o, dx, "minion_config", false),
            grains_file: local_file(o, dx, "grains_file", false),
            custom_state: opt_string(o, dx, "custom_state"),
            skip_bootstrap: flag(o, dx, "skip_bootstrap").unwrap_or(false),
            bootstrap_args: opt_string(o, dx, "bootstrap_args").unwrap_or_default(),
            disable_sudo: flag(o, dx, "disable_sudo").unwrap_or(false),
            temp_config_dir: opt_string(o, dx, "temp_config_dir")
                .unwrap_or_else(|| "/tmp/salt".into()),
            no_exit_on_failure: flag(o, dx, "no_exit_on_failure").unwrap_or(false),
            log_level: opt_string(o, dx, "log_level").unwrap_or_else(|| "info".into()),
            salt_call_args: opt_string(o, dx, "salt_call_args").unwrap_or_default(),
            salt_bin_dir: opt_string(o, dx, "salt_bin_dir"),
            formulas: Vec::new(),
        };
        if c.local_state_tree.is_none() && c.minion_config.is_none() {
            error_at(
                o,
                dx,
                "local_state_tree",
                "local_state_tree must be supplied unless minion_config is given",
                None,
            );
        }
        let formulas = o.strings(dx, "formulas").unwrap_or_default();
        c.formulas = formulas.iter().filter_map(|f| Formula::parse(f)).collect();
        if c.formulas.len() < formulas.len() {
            error_at(
                o,
                dx,
                "formulas",
                "Invalid formula URL. Please verify the git URLs also contain a '//' subdir",
                Some("write <repository>.git//<formula directory>[?ref=<tag>], e.g. git::https://github.com/saltstack-formulas/nginx-formula.git//nginx?ref=v2.8.1"),
            );
        } else if !c.formulas.is_empty() && c.local_state_tree.is_none() {
            error_at(
                o,
                dx,
                "formulas",
                "formulas need local_state_tree: they are added to it",
                None,
            );
        }
        guest_os(o, dx);
        obj.finish(dx);
        c
    }

    fn sudo(&self) -> &'static str {
        if self.disable_sudo {
            ""
        } else {
            "sudo "
        }
    }

    /// The bootstrap commands (unless `skip_bootstrap`).
    pub fn bootstrap(&self) -> String {
        format!(
            "curl -L https://bootstrap.saltproject.io -o /tmp/install_salt.sh || wget -O /tmp/install_salt.sh https://bootstrap.saltproject.io; {}sh /tmp/install_salt.sh {}",
            self.sudo(),
            self.bootstrap_args
        )
    }

    /// Moves the staged tree into place (`temp_config_dir` -> /etc/salt, state tree, pillar).
    pub fn move_into_place(&self) -> Vec<String> {
        let (s, t) = (self.sudo(), &self.temp_config_dir);
        let mut out = Vec::new();
        if self.minion_config.is_some() {
            out.push(format!(
                "{s}mkdir -p /etc/salt && {s}mv {t}/minion /etc/salt/minion"
            ));
        }
        if self.grains_file.is_some() {
            out.push(format!(
                "{s}mkdir -p /etc/salt && {s}mv {t}/grains /etc/salt/grains"
            ));
        }
        if self.local_state_tree.is_some() {
            let r = &self.remote_state_tree;
            out.push(format!(
                "{s}rm -rf {r} && {s}mkdir -p $(dirname {r}) && {s}mv {t}/states {r}"
            ));
        }
        if self.local_pillar_roots.is_some() {
            let r = &self.remote_pillar_roots;
            out.push(format!(
                "{s}rm -rf {r} && {s}mkdir -p $(dirname {r}) && {s}mv {t}/pillar {r}"
            ));
        }
        out
    }

    /// The salt-call command.
    pub fn command(&self) -> String {
        let state = match &self.custom_state {
            Some(st) => format!("state.sls {st}"),
            None => "state.highstate".into(),
        };
        let roots = if self.minion_config.is_none() {
            format!(
                " --file-root={} --pillar-root={}",
                self.remote_state_tree, self.remote_pillar_roots
            )
        } else {
            String::new()
        };
        let bin = self
            .salt_bin_dir
            .as_ref()
            .map(|d| format!("{d}/"))
            .unwrap_or_default();
        let pass = if self.no_exit_on_failure {
            ""
        } else {
            " --retcode-passthrough"
        };
        let mut cmd = format!(
            "{}{bin}salt-call --local {state}{roots}{pass} -l {}",
            self.sudo(),
            self.log_level
        );
        if !self.salt_call_args.is_empty() {
            cmd.push_str(&format!(" {}", self.salt_call_args));
        }
        cmd
    }
}

/// `json_string` over `json` as Packer does it (`json.Unmarshal` into the `json` map): its
/// top-level keys replace `json`'s, the others stay.
fn merge_json_string(
    json: &mut serde_json::Map<String, serde_json::Value>,
    text: &str,
) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => {
            json.extend(m);
            Ok(())
        }
        Ok(_) => Err("Failed to unmarshal 'json_string': it is not a JSON object".into()),
        Err(e) => Err(format!("Failed to unmarshal 'json_string': {e}")),
    }
}

pub(crate) fn base(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn puppet_chef_and_salt_commands_are_packers() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("site.pp");
        std::fs::write(&m, "").unwrap();
        let (p, d) = decode(
            &format!(
                r#"{{"manifest_file": {}, "facter": {{"role": "web"}}, "module_paths": [{}]}}"#,
                js(m.display().to_string()),
                js(dir.path().display().to_string())
            ),
            PuppetConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            p.command("b", "amazon-ebs"),
            "cd /tmp/packer-puppet-masterless && FACTER_packer_build_name='b' FACTER_packer_builder_type='amazon-ebs' FACTER_role='web' sudo -E puppet apply --detailed-exitcodes --modulepath='/tmp/packer-puppet-masterless/module-0' /tmp/packer-puppet-masterless/site.pp"
        );
        let (c, d) = decode(
            r#"{"run_list": ["recipe[web]"], "json": {"port": 80}}"#,
            ChefConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.command(), "sudo chef-solo --no-color -c /tmp/packer-chef-solo/solo.rb -j /tmp/packer-chef-solo/node.json");
        assert_eq!(
            c.node_json(None).unwrap(),
            r#"{"port":80,"run_list":["recipe[web]"]}"#
        );
        // json_string's keys replace json's; the others stay.
        let (c, d) = decode(
            r#"{"json": {"port": 80, "user": "www"}, "json_string": "{\"port\": 8080, \"tls\": {\"on\": true}}"}"#,
            ChefConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.node_json(None).unwrap(),
            r#"{"port":8080,"tls":{"on":true},"user":"www"}"#
        );
        let (_, d) = decode(r#"{"json_string": "[1, 2]"}"#, ChefConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["Failed to unmarshal 'json_string': it is not a JSON object"]
        );
        let (c, d) = decode(r#"{"json_string": "{{ .Foo }}"}"#, ChefConfig::decode);
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.node_json(Some(r#"{"a": 1}"#)).unwrap(), r#"{"a":1}"#);
        assert!(c
            .node_json(Some("nope"))
            .unwrap_err()
            .starts_with("Failed to unmarshal 'json_string': "));
        assert_eq!(
            c.solo_rb(),
            "cookbook_path \t[]\nchef_license \"accept-silent\"\n"
        );
        assert_eq!(
            c.install(),
            "curl -L https://omnitruck.chef.io/install.sh | sudo bash -s --"
        );
        let (s, d) = decode(
            &format!(
                r#"{{"local_state_tree": {}}}"#,
                js(dir.path().display().to_string())
            ),
            SaltConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(s.command(), "sudo salt-call --local state.highstate --file-root=/srv/salt --pillar-root=/srv/pillar --retcode-passthrough -l info");
        let (s, d) = decode(
            &format!(
                r#"{{"local_state_tree": {}, "formulas": ["github.com/saltstack-formulas/nginx-formula.git//nginx?ref=v2.8.1", "git::file:///r/users.git//users"]}}"#,
                js(dir.path().display().to_string())
            ),
            SaltConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        let parts: Vec<(&str, &str, Option<&str>)> = s
            .formulas
            .iter()
            .map(|f| (f.repo.as_str(), f.dir.as_str(), f.git_ref.as_deref()))
            .collect();
        assert_eq!(
            parts,
            [
                (
                    "https://github.com/saltstack-formulas/nginx-formula.git",
                    "nginx",
                    Some("v2.8.1")
                ),
                ("file:///r/users.git", "users", None)
            ]
        );
        for bad in [
            "https://example.com/f.git",
            "https://example.com/f//nginx",
            "git//x",
            "x.git//a/b",
        ] {
            assert_eq!(Formula::parse(bad), None, "{bad}");
        }
        let (_, d) = decode(
            &format!(
                r#"{{"local_state_tree": {}, "formulas": ["https://example.com/f"]}}"#,
                js(dir.path().display().to_string())
            ),
            SaltConfig::decode,
        );
        assert_eq!(
            errors(&d),
            vec!["Invalid formula URL. Please verify the git URLs also contain a '//' subdir"]
        );
        let (_, d) = decode("{}", SaltConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["local_state_tree must be supplied unless minion_config is given"]
        );
        let (_, d) = decode(r#"{"manifest_file": "nope.pp"}"#, PuppetConfig::decode);
        assert_eq!(
            errors(&d),
            vec!["manifest_file: nope.pp: no such file or directory"]
        );
    }
}
