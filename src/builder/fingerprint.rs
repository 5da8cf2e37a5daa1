//! The reuse fingerprint (`-skip-unchanged`, `reuse_unchanged`): one SHA-256 over a canonical
//! serialisation of everything that determines a build's image, stored as the
//! `imgbuild:fingerprint` tag of the AMIs it makes. A later build with the same fingerprint
//! launches nothing and reports the AMI that carries it.
//!
//! What goes in (version [`VERSION`], canonical JSON: object keys sorted, no whitespace):
//! - the builder object **as written** (template text, not rendered values), minus the keys
//!   that say how to reach AWS and the instance rather than what the image is
//!   ([`NOT_IMAGE_KEYS`]: credentials, endpoint, retries, polling, timeouts, SSH connection
//!   details, `reuse_unchanged` itself). As written, `{{timestamp}}` in `ami_name` or a tag is
//!   the same text every night, so it does not defeat reuse; what the text renders to is
//!   determined by the variable values, which go in separately;
//! - the resolved source AMI ID (a new base image rebuilds);
//! - the provisioners that apply to the build, in order, as written with this build's
//!   `override` merged;
//! - the bytes of every file and script they upload or run (`file` sources, `shell` and
//!   `shell-local` scripts) and of `user_data_file`: a SHA-256 per file, directories walked in
//!   sorted order with relative paths, the executable bit, symlink targets and empty
//!   directories;
//! - every variable value; values of `sensitive-variables` only as HMAC-SHA-256 under a key
//!   the tag reader does not have ([`SecretKey`]).
//!
//! Left out on purpose: `error-cleanup-provisioner` (it runs only when a build fails, so it
//! never shapes a delivered image), post-processors (they still run on a reused AMI), and
//! the absolute paths of uploaded files (a CI checkout lives in a different directory every
//! night; the template's source strings are in the definitions).
//!
//! The secret key: `IMGBUILD_FINGERPRINT_KEY` (at least 16 characters; set it as a CI secret
//! so that ephemeral runners agree), else a random 256-bit key created once in
//! `$XDG_CONFIG_HOME/imgbuild/fingerprint.key` (else `~/.config/imgbuild/`), mode 0600. It is
//! read only when a sensitive variable has a non-empty value. With a keyed hash, a person who
//! reads the tag and knows the template cannot test guesses of a secret (a plain hash of a
//! password would fall to a dictionary); the limit is that a build with another key (a new
//! runner without the variable) computes another fingerprint and rebuilds. That errs on the
//! safe side: a different key never makes a false reuse.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::provisioner::PreparedProvisioner;
use crate::provisioner::{Direction, ProvisionerConfig, ShellSource};

/// The tag that carries the fingerprint on AMIs (and their region copies).
pub const TAG_FINGERPRINT: &str = "imgbuild:fingerprint";
/// Bumped whenever what goes into the fingerprint changes (an old tag then never matches).
pub const VERSION: u32 = 1;
/// The environment variable that holds the secret key (instead of the key file).
pub const KEY_ENV: &str = "IMGBUILD_FINGERPRINT_KEY";

/// Builder keys that say how to reach AWS and the instance, not what the image is.
pub const NOT_IMAGE_KEYS: &[&str] = &[
    // Credentials, endpoint and API behaviour.
    "access_key",
    "secret_key",
    "token",
    "profile",
    "shared_credentials_file",
    "mfa_code",
    "assume_role",
    "custom_endpoint_ec2",
    "decode_authorization_messages",
    "max_retries",
    "skip_metadata_api_check",
    "skip_credential_validation",
    "skip_region_validation",
    "skip_profile_validation",
    "aws_polling",
    // Deadlines, and what to do with an AMI of the same name.
    "build_timeout",
    "force_deregister",
    "force_delete_snapshot",
    "reuse_unchanged",
    // How the build connects to the instance.
    "ssh_host",
    "ssh_port",
    "ssh_password",
    "ssh_private_key_file",
    "ssh_keypair_name",
    "ssh_agent_auth",
    "ssh_timeout",
    "ssh_handshake_attempts",
    "ssh_keep_alive_interval",
    "ssh_read_write_timeout",
    "ssh_pty",
    "ssh_ciphers",
    "ssh_key_exchange_algorithms",
    "ssh_bastion_host",
    "ssh_bastion_port",
    "ssh_bastion_username",
    "ssh_bastion_password",
    "ssh_bastion_private_key_file",
    "ssh_bastion_agent_auth",
    "ssh_proxy_host",
    "ssh_proxy_port",
    "ssh_proxy_username",
    "ssh_proxy_password",
    "ssh_interface",
    "pause_before_connecting",
    "temporary_key_pair_name",
    "temporary_key_pair_type",
    "temporary_key_pair_bits",
    "temporary_security_group_source_cidrs",
    "temporary_security_group_source_public_ip",
    "temporary_security_group_source_public_ip_url",
];

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("reading {} for the reuse fingerprint: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the reuse fingerprint cannot cover {}: it is created during the build (`generated`)",
        path
    )]
    Generated { path: String },
    #[error("the reuse fingerprint's secret key: {0}")]
    Key(String),
}

/// The key of the keyed hash of secrets. Never shown.
pub struct SecretKey(Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(b: &[u8]) -> SecretKey {
        SecretKey(b.to_vec())
    }

    /// `IMGBUILD_FINGERPRINT_KEY`, else the key file (created on first use).
    pub fn load() -> Result<SecretKey, FingerprintError> {
        if let Ok(v) = std::env::var(KEY_ENV) {
            if v.chars().count() < 16 {
                return Err(FingerprintError::Key(format!(
                    "{KEY_ENV} is shorter than 16 characters (use e.g. `openssl rand -hex 32`)"
                )));
            }
            return Ok(SecretKey(v.into_bytes()));
        }
        let path = key_path().ok_or_else(|| {
            FingerprintError::Key(format!(
                "neither {KEY_ENV}, XDG_CONFIG_HOME nor HOME is set"
            ))
        })?;
        Self::load_or_create(&path)
    }

    /// Reads the key file, or creates it (mode 0600, 32 random bytes as hex) when it does not
    /// exist. A file others can read is refused.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, FingerprintError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let err = |what: &str, e: std::io::Error| {
            FingerprintError::Key(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| err("creating the directory of", e))?;
            }
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let mut raw = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut raw))
                    .map_err(|e| err("random bytes for", e))?;
                let text = hex(&raw);
                f.write_all(text.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err("writing", e))?;
                Ok(SecretKey(text.into_bytes()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = std::fs::metadata(path).map_err(|e| err("reading", e))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(FingerprintError::Key(format!(
                        "{} can be read by other users: `chmod 600` it",
                        path.display()
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| err("reading", e))?;
                let text = text.trim();
                if text.len() < 32 {
                    return Err(FingerprintError::Key(format!(
                        "{} holds fewer than 32 characters",
                        path.display()
                    )));
                }
                Ok(SecretKey(text.as_bytes().to_vec()))
            }
            Err(e) => Err(err("creating", e)),
        }
    }

    /// HMAC-SHA-256 of a named secret value, hex.
    fn mac(&self, name: &str, value: &str) -> String {
        // The key is any length: HMAC hashes long keys, so `new_from_slice` cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(b"imgbuild fingerprint secret\0");
        m.update(name.as_bytes());
        m.update(b"\0");
        m.update(value.as_bytes());
        hex(&m.finalize().into_bytes())
    }
}

/// `$XDG_CONFIG_HOME/imgbuild/fingerprint.key`, else `~/.config/imgbuild/fingerprint.key`.
pub fn key_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("imgbuild").join("fingerprint.key"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one build's fingerprint is made of, apart from the source AMI (known only once the
/// build has looked it up).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub builder_type: &'a str,
    /// The builder object as written.
    pub builder: &'a Value,
    pub provisioners: &'a [PreparedProvisioner],
    /// `user_data_file`, when given.
    pub user_data_file: Option<&'a Path>,
    /// Every variable's value.
    pub variables: &'a BTreeMap<String, String>,
    /// The names in `sensitive-variables`.
    pub sensitive: &'a BTreeSet<String>,
}

/// The fingerprint: lower-case hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes the fingerprint of `inputs` with `source_ami`; `key` is asked for only when a
/// sensitive variable has a non-empty value. Reads files (call it off the async threads).
pub fn compute(
    inputs: &Inputs,
    source_ami: &str,
    key: impl FnOnce() -> Result<SecretKey, FingerprintError>,
) -> Result<Fingerprint, FingerprintError> {
    let material = material(inputs, source_ami, key)?;
    Ok(Fingerprint(hex(&Sha256::digest(
        canonical(&material).as_bytes(),
    ))))
}

/// The canonical material (what is hashed), as a JSON value.
pub fn material(
    inputs: &Inputs,
    source_ami: &str,
    key: impl FnOnce() -> Result<SecretKey, FingerprintError>,
) -> Result<Value, FingerprintError> {
    let mut builder = inputs.builder.clone();
    if let Some(o) = builder.as_object_mut() {
        for k in NOT_IMAGE_KEYS {
            o.remove(*k);
        }
    }
    let mut provisioners = Vec::new();
    for p in inputs.provisioners {
        provisioners.push(json!({
            "definition": p.definition,
            "files": files_of(&p.config)?,
        }));
    }
    let user_data = match inputs.user_data_file {
        Some(p) => Value::Array(hash_path(p)?),
        None => Value::Null,
    };
    let mut key = Some(key);
    let mut loaded: Option<SecretKey> = None;
    let mut variables = serde_json::Map::new();
    for (name, value) in inputs.variables {
        let v = if inputs.sensitive.contains(name) && !value.is_empty() {
            if loaded.is_none() {
                let k = key
                    .take()
                    .ok_or_else(|| FingerprintError::Key("the key could not be loaded".into()))?;
                loaded = Some(k()?);
            }
            let k = loaded
                .as_ref()
                .ok_or_else(|| FingerprintError::Key("the key could not be loaded".into()))?;
            json!({"hmac-sha256": k.mac(name, value)})
        } else {
            Value::String(value.clone())
        };
        variables.insert(name.clone(), v);
    }
    Ok(json!({
        "imgbuild-fingerprint": VERSION,
        "builder_type": inputs.builder_type,
        "builder": builder,
        "source_ami": source_ami,
        "provisioners": provisioners,
        "user_data_file": user_data,
        "variables": Value::Object(variables),
    }))
}

/// The local files a provisioner uploads or runs, hashed.
fn files_of(c: &ProvisionerConfig) -> Result<Value, FingerprintError> {
    let mut out = Vec::new();
    match c {
        ProvisionerConfig::File(f) if f.direction == Direction::Upload => {
            for s in &f.sources {
                if f.generated {
                    return Err(FingerprintError::Generated { path: s.clone() });
                }
                out.push(Value::Array(hash_path(Path::new(s))?));
            }
        }
        ProvisionerConfig::Shell(s) => {
            if let ShellSource::Scripts(paths) = &s.source {
                for p in paths {
                    out.push(Value::Array(hash_path(p)?));
                }
            }
        }
        ProvisionerConfig::ShellLocal(s) => {
            if let ShellSource::Scripts(paths) = &s.source {
                for p in paths {
                    out.push(Value::Array(hash_path(p)?));
                }
            }
        }
        ProvisionerConfig::Ansible(a) => {
            for p in std::iter::once(&a.playbook_file).chain(&a.galaxy_file) {
                out.push(Value::Array(hash_path(p)?));
            }
        }
        _ => {}
    }
    Ok(Value::Array(out))
}

/// A file or directory as a list of entries `[relative path, kind, detail]`: `file` with
/// `x`/`-` (executable bit) and the SHA-256 of its bytes, `dir`, `link` with its target. A
/// directory is walked in byte order of its names; the top path is followed if it is a link
/// (as an upload reads it).
pub fn hash_path(path: &Path) -> Result<Vec<Value>, FingerprintError> {
    let read_err = |p: &Path, source| FingerprintError::ReadFile {
        path: p.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        walk(path, Path::new(""), &mut out)?;
    } else {
        out.push(file_entry(path, "", &meta)?);
    }
    Ok(out)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Value>) -> Result<(), FingerprintError> {
    let dir = root.join(rel);
    let read_err = |p: &Path, source| FingerprintError::ReadFile {
        path: p.to_path_buf(),
        source,
    };
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&dir)
        .map_err(|e| read_err(&dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    out.push(json!([rel_text(rel), "dir"]));
    for e in entries {
        let p = e.path();
        let r = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(&p).map_err(|e| read_err(&p, e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(|e| read_err(&p, e))?;
            out.push(json!([rel_text(&r), "link", target.to_string_lossy()]));
        } else if meta.is_dir() {
            walk(root, &r, out)?;
        } else {
            out.push(file_entry(&p, &rel_text(&r), &meta)?);
        }
    }
    Ok(())
}

fn rel_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn file_entry(path: &Path, rel: &str, meta: &std::fs::Metadata) -> Result<Value, FingerprintError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| FingerprintError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let exec = if meta.permissions().mode() & 0o111 != 0 {
        "x"
    } else {
        "-"
    };
    Ok(json!([rel, "file", exec, hex(&h.finalize())]))
}

/// Canonical JSON text: object keys in byte order, no whitespace, serde_json's escaping of
/// strings and numbers. Independent of whether serde_json preserves insertion order.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioner::PreparedProvisioner;
    use crate::provisioner::{FileConfig, ShellConfig};

    fn no_key() -> Result<SecretKey, FingerprintError> {
        panic!("the key is not needed")
    }

    fn key(b: &[u8]) -> impl FnOnce() -> Result<SecretKey, FingerprintError> + '_ {
        move || Ok(SecretKey::from_bytes(b))
    }

    fn file_prov(source: &Path) -> PreparedProvisioner {
        PreparedProvisioner {
            index: 0,
            kind: "file".into(),
            pause_before: None,
            max_retries: 0,
            timeout: None,
            config: ProvisionerConfig::File(FileConfig {
                sources: vec![source.display().to_string()],
                content: None,
                destination: "/tmp/x".into(),
                direction: Direction::Upload,
                generated: false,
            }),
            definition: json!({"type": "file", "source": "{{template_dir}}/up", "destination": "/tmp/x"}),
        }
    }

    struct Case {
        builder: Value,
        provs: Vec<PreparedProvisioner>,
        vars: BTreeMap<String, String>,
        sensitive: BTreeSet<String>,
    }

    impl Case {
        fn new(provs: Vec<PreparedProvisioner>) -> Case {
            Case {
                builder: json!({"type": "amazon-ebs", "ami_name": "web-{{timestamp}}",
                                "instance_type": "t3.micro", "region": "us-east-1"}),
                provs,
                vars: BTreeMap::from([("project".into(), "mailape".into())]),
                sensitive: BTreeSet::new(),
            }
        }
        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                builder_type: "amazon-ebs",
                builder: &self.builder,
                provisioners: &self.provs,
                user_data_file: None,
                variables: &self.vars,
                sensitive: &self.sensitive,
            }
        }
        fn fp(&self, source: &str) -> String {
            compute(&self.inputs(), source, no_key).unwrap().0
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_has_no_whitespace() {
        let a: Value = serde_json::from_str(
            r#"{"b": 1, "a": {"z": [1, {"y": "x", "c": null}], "m": "é\"\n"}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"a": {"m": "é\"\n", "z": [1, {"c": null, "y": "x"}]}, "b": 1}"#,
        )
        .unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"a":{"m":"é\"\n","z":[1,{"c":null,"y":"x"}]},"b":1}"#
        );
        // Array order matters (provisioners run in order).
        assert_ne!(canonical(&json!([1, 2])), canonical(&json!([2, 1])));
    }

    #[test]
    fn the_fingerprint_is_stable_and_covers_source_ami_definitions_and_variables() {
        let c = Case::new(vec![]);
        let base = c.fp("ami-1");
        assert_eq!(base.len(), 64);
        assert!(base.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(c.fp("ami-1"), base, "same inputs, same fingerprint");
        assert_ne!(c.fp("ami-2"), base, "a new source AMI rebuilds");
        let mut c2 = Case::new(vec![]);
        c2.vars.insert("project".into(), "other".into());
        assert_ne!(c2.fp("ami-1"), base, "a variable value counts");
        let mut c3 = Case::new(vec![]);
        c3.builder["instance_type"] = json!("t3.large");
        assert_ne!(c3.fp("ami-1"), base, "the builder definition counts");
        // Keys about access and connection do not.
        let mut c4 = Case::new(vec![]);
        c4.builder["custom_endpoint_ec2"] = json!("http://127.0.0.1:5000");
        c4.builder["ssh_timeout"] = json!("10m");
        c4.builder["reuse_unchanged"] = json!(true);
        c4.builder["access_key"] = json!("AKIA...");
        assert_eq!(c4.fp("ami-1"), base);
        // Key order in the template does not.
        let mut c5 = Case::new(vec![]);
        c5.builder = json!({"region": "us-east-1", "instance_type": "t3.micro",
                            "ami_name": "web-{{timestamp}}", "type": "amazon-ebs"});
        assert_eq!(c5.fp("ami-1"), base);
    }

    #[test]
    fn uploaded_files_count_by_bytes_mode_and_tree_not_by_absolute_path() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        for d in [&d1, &d2] {
            std::fs::create_dir_all(d.path().join("up/sub")).unwrap();
            std::fs::create_dir_all(d.path().join("up/empty")).unwrap();
            std::fs::write(d.path().join("up/a.conf"), "port=80\n").unwrap();
            std::fs::write(d.path().join("up/sub/b.sh"), "#!/bin/sh\n").unwrap();
            std::os::unix::fs::symlink("a.conf", d.path().join("up/link")).unwrap();
        }
        let fp = |d: &Path| Case::new(vec![file_prov(&d.join("up"))]).fp("ami-1");
        let one = fp(d1.path());
        assert_eq!(fp(d2.path()), one, "same tree elsewhere: same fingerprint");
        // One byte.
        std::fs::write(d2.path().join("up/a.conf"), "port=81\n").unwrap();
        assert_ne!(fp(d2.path()), one);
        std::fs::write(d2.path().join("up/a.conf"), "port=80\n").unwrap();
        assert_eq!(fp(d2.path()), one);
        // The executable bit.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d2.path().join("up/sub/b.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(fp(d2.path()), one);
        std::fs::set_permissions(
            d2.path().join("up/sub/b.sh"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(fp(d2.path()), one);
        // A renamed file, an empty directory, a symlink target.
        std::fs::remove_dir(d2.path().join("up/empty")).unwrap();
        assert_ne!(fp(d2.path()), one);
        std::fs::create_dir(d2.path().join("up/empty")).unwrap();
        std::fs::remove_file(d2.path().join("up/link")).unwrap();
        std::os::unix::fs::symlink("sub/b.sh", d2.path().join("up/link")).unwrap();
        assert_ne!(fp(d2.path()), one);
        // A missing file is an error that names it.
        let e = Case::new(vec![file_prov(&d1.path().join("nope"))]);
        let err = compute(&e.inputs(), "ami-1", no_key).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn scripts_count_and_generated_sources_cannot_be_fingerprinted() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("s.sh");
        std::fs::write(&script, "echo 1\n").unwrap();
        let shell = |p: &Path| {
            let mut s = Case::new(vec![]).provs;
            let (cfg, _) = crate::checks::testing::decode(
                &format!(r#"{{"script": {}}}"#, json!(p.display().to_string())),
                ShellConfig::decode,
            );
            s.push(PreparedProvisioner {
                index: 0,
                kind: "shell".into(),
                pause_before: None,
                max_retries: 0,
                timeout: None,
                config: ProvisionerConfig::Shell(cfg),
                definition: json!({"type": "shell", "script": "s.sh"}),
            });
            Case::new(s).fp("ami-1")
        };
        let a = shell(&script);
        std::fs::write(&script, "echo 2\n").unwrap();
        assert_ne!(shell(&script), a);
        let mut p = file_prov(&script);
        if let ProvisionerConfig::File(f) = &mut p.config {
            f.generated = true;
        }
        let err = compute(&Case::new(vec![p]).inputs(), "ami-1", no_key).unwrap_err();
        assert!(matches!(err, FingerprintError::Generated { .. }), "{err}");
    }

    #[test]
    fn secrets_go_in_only_as_a_keyed_hash() {
        let mut c = Case::new(vec![]);
        c.vars.insert("db_password".into(), "hunter2-secret".into());
        c.sensitive.insert("db_password".into());
        let m = material(&c.inputs(), "ami-1", key(b"k1-0123456789abcdef")).unwrap();
        let text = canonical(&m);
        assert!(!text.contains("hunter2-secret"), "{text}");
        let plain = hex(&Sha256::digest(b"hunter2-secret"));
        assert!(!text.contains(&plain));
        let a = compute(&c.inputs(), "ami-1", key(b"k1-0123456789abcdef")).unwrap();
        assert_eq!(
            compute(&c.inputs(), "ami-1", key(b"k1-0123456789abcdef")).unwrap(),
            a
        );
        // Another key: another fingerprint (a rebuild, never a false reuse).
        assert_ne!(
            compute(&c.inputs(), "ami-1", key(b"k2-0123456789abcdef")).unwrap(),
            a
        );
        // Another secret: another fingerprint.
        c.vars.insert("db_password".into(), "hunter3-secret".into());
        assert_ne!(
            compute(&c.inputs(), "ami-1", key(b"k1-0123456789abcdef")).unwrap(),
            a
        );
        // An empty sensitive value needs no key.
        c.vars.insert("db_password".into(), String::new());
        compute(&c.inputs(), "ami-1", no_key).unwrap();
    }

    #[test]
    fn the_key_file_is_created_0600_reused_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cfg/imgbuild/fingerprint.key");
        let k1 = SecretKey::load_or_create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap().len(), 64);
        let k2 = SecretKey::load_or_create(&p).unwrap();
        assert_eq!(k1.mac("a", "b"), k2.mac("a", "b"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretKey::load_or_create(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(format!("{k1:?}"), "SecretKey(..)");
    }
}
