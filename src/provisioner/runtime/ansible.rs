//! The `ansible` provisioner at run time: `ansible-playbook` on this machine, connected
//! straight to the instance with Ansible's own OpenSSH (through the communicator's bastion with
//! a `ProxyCommand`), never through an SSH proxy.
//!
//! * The temporary private key reaches Ansible without touching the disk: it is written to an
//!   anonymous memory file (`memfd_create`, mode 0600) that Ansible's ssh opens as
//!   `/proc/<imgbuild's pid>/fd/<n>`; it is gone when imgbuild closes it or dies, `kill -9`
//!   included.
//! * `ssh_password` reaches Ansible as `ansible_password` in a 0600 extra-vars file in the step's
//!   private directory (on /dev/shm when there is one), removed when the step ends and by
//!   `imgbuild cleanup` after `kill -9`; Ansible passes it to `sshpass` on a pipe.
//! * Ansible's SSH multiplexing masters (`ControlPersist`) live in a control directory of this
//!   run and are told to exit when the playbook ends, so no ssh process outlives the step.
//! * Output is streamed line by line with the build's prefix, through the redactor; a failing
//!   play is reported with the play and task that failed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::hostpin::{self, sh_quote};
use super::local::{run_local, LocalError};
use super::remote::{print_line, Line};
use super::shell::Tail;
use super::{Failure, Runtime};
use crate::provisioner::ansible::AnsibleConfig;

/// The default `--ssh-extra-args` (Packer's).
const DEFAULT_SSH_EXTRA: &str = "-o IdentitiesOnly=yes";

/// A secret handed to a child process as a path, without a file on disk: an anonymous memory
/// file of this process, read by the child as `/proc/<pid>/fd/<n>`. Closed on drop.
pub(crate) struct MemFile {
    fd: OwnedFd,
}

impl MemFile {
    pub(crate) fn new(name: &str, content: &[u8]) -> std::io::Result<MemFile> {
        let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        // SAFETY: memfd_create with a valid C string; the result is checked.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut f = std::fs::File::from(fd.try_clone()?);
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(content)?;
        Ok(MemFile { fd })
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

/// The play and task Ansible is in, from its output, for the failure message.
#[derive(Debug, Default)]
pub(crate) struct PlayTracker {
    pub play: Option<String>,
    pub task: Option<String>,
    pub fatal: Option<String>,
}

impl PlayTracker {
    pub(crate) fn see(&mut self, text: &str) {
        let bracketed = |prefix: &str| {
            let rest = text.strip_prefix(prefix)?;
            let end = rest.rfind(']')?;
            Some(rest[..end].to_string())
        };
        if let Some(p) = bracketed("PLAY [") {
            self.play = Some(p);
            self.task = None;
        } else if let Some(t) = bracketed("TASK [").or_else(|| bracketed("RUNNING HANDLER [")) {
            self.task = Some(t);
        } else if (text.starts_with("fatal:") || text.starts_with("failed:"))
            && self.fatal.is_none()
        {
            self.fatal = Some(text.chars().take(400).collect());
        }
    }

    /// "play `web`, task `install nginx`" (what is known).
    pub(crate) fn describe(&self) -> String {
        match (&self.play, &self.task) {
            (Some(p), Some(t)) => format!("play `{p}`, task `{t}`"),
            (Some(p), None) => format!("play `{p}`"),
            (None, Some(t)) => format!("task `{t}`"),
            (None, None) => "before any play started".into(),
        }
    }
}

/// Files of one run that must not outlive it: the inventory (unless kept) and the control
/// directory (after its masters were told to exit).
struct Scratch {
    inventory: Option<PathBuf>,
    control_dir: Option<tempfile::TempDir>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.control_dir {
            stop_masters(dir.path());
        }
        if let Some(p) = self.inventory.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The name of a step's private directory starts with this and the pid of the imgbuild that
/// made it, so that `imgbuild cleanup` can remove those of processes that died ([`sweep`]).
pub const PRIVATE_PREFIX: &str = "imgbuild-ansible-";

/// Removes the private directories (SSH control sockets, extra-vars files) that an `ansible`
/// step of a killed imgbuild left behind: those whose imgbuild process is gone. Returns the
/// paths removed (or, with `dry_run`, that would be).
pub fn sweep(dry_run: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for parent in [private_dir_parent(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten().take(10_000) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PRIVATE_PREFIX)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            if alive || out.contains(&e.path()) {
                continue;
            }
            if dry_run || std::fs::remove_dir_all(e.path()).is_ok() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Where the step's private directory goes: /dev/shm (memory) when it is a writable directory,
/// else the temp directory.
fn private_dir_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    match std::fs::metadata(shm) {
        Ok(m) if m.is_dir() && tempfile::tempdir_in(shm).is_ok() => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// Tells every SSH multiplexing master in `dir` to exit (bounded: one `ssh -O exit` each).
fn stop_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    use std::os::unix::fs::FileTypeExt;
    let sockets = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()));
    for e in sockets.take(64) {
        let _ = std::process::Command::new("ssh")
            .args(["-o", &format!("ControlPath={}", e.path().display())])
            .args(["-O", "exit", "imgbuild-control"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The inventory file's text (Packer's format).
pub(crate) fn inventory_text(c: &AnsibleConfig, host: &str, user: &str, port: u16) -> String {
    let line = match &c.inventory_file_template {
        Some(t) => t
            .replace("{{ .HostAlias }}", &c.host_alias)
            .replace("{{.HostAlias}}", &c.host_alias)
            .replace("{{ .Host }}", host)
            .replace("{{.Host}}", host)
            .replace("{{ .User }}", user)
            .replace("{{.User}}", user)
            .replace("{{ .Port }}", &port.to_string())
            .replace("{{.Port}}", &port.to_string()),
        None => format!(
            "{} ansible_host={host} ansible_user={user} ansible_port={port}\n",
            c.host_alias
        ),
    };
    let mut out = line.clone();
    for g in &c.groups {
        out.push_str(&format!("[{g}]\n{line}"));
    }
    for g in &c.empty_groups {
        out.push_str(&format!("[{g}]\n"));
    }
    out
}

/// Runs the `ansible` provisioner.
pub(crate) async fn run(rt: &mut Runtime<'_, '_>, c: &AnsibleConfig) -> Result<(), Failure> {
    let ctx = rt.ctx;
    let ssh = ctx.ssh;
    if c.use_proxy_true {
        rt.say("ansible: `use_proxy: true` means nothing here: imgbuild connects Ansible straight to the instance with OpenSSH (Packer's proxy adapter was slow and broke with OpenSSH 8.8+ and 9), so Ansible's SSH settings apply as written");
    }
    let user = c.user.clone().unwrap_or_else(|| ssh.ssh_username.clone());
    let local = |what: String| move |source| Failure::Local { what, source };

    let (key_mem, key_path) = key_for_ansible(rt)?;
    if key_path.is_none() && !ssh.ssh_agent_auth && ssh.ssh_host_key_fingerprint.is_some() {
        return Err(Failure::Other(
            "the ansible provisioner cannot check ssh_host_key_fingerprint with an ssh_password login (its check logs in with a key): log in with a key, or remove ssh_host_key_fingerprint".into(),
        ));
    }
    let mut scratch = Scratch {
        inventory: None,
        control_dir: Some(
            tempfile::Builder::new()
                .prefix(&format!("{PRIVATE_PREFIX}{}-", std::process::id()))
                .tempdir_in(private_dir_parent())
                .map_err(local(
                    "cannot create Ansible's SSH control directory".into(),
                ))?,
        ),
    };
    let inventory = inventory_file(rt, c, &user, &mut scratch)?;
    let env = environment(rt, c, &scratch);
    if let Some(galaxy) = &c.galaxy_file {
        run_galaxy(rt, c, galaxy, &env).await?;
    }

    let mut ssh_extra = ssh_extra_args(c, ssh, key_path.as_deref());
    if let (Some(want), Some(dir)) = (&ssh.ssh_host_key_fingerprint, &scratch.control_dir) {
        let target = hostpin::Target {
            user: &user,
            host: &ctx.host,
            port: ctx.port,
            key: key_path.as_deref(),
            extra: &ssh_extra,
        };
        rt.say(&format!("ansible: checking the host key against {want}"));
        let pinned = hostpin::pin(&target, &dir.path().join("known_hosts"), want).await?;
        ssh_extra = format!("{pinned} {ssh_extra}");
    }
    let mut args: Vec<String> = vec![
        "-e".into(),
        format!("packer_build_name=\"{}\"", ctx.build_name),
        "-e".into(),
        format!("packer_builder_type={}", ctx.build_type),
        // No `packer_http_addr`: no builder of imgbuild serves HTTP (`http_directory` is not an
        // amazon-ebs or null key), and Packer passes it only when a builder does.
        format!("--ssh-extra-args={ssh_extra}"),
    ];
    let rendered: Vec<String> = c
        .extra_arguments
        .iter()
        .map(|a| rt.render_lenient(a))
        .collect();
    let dir = scratch.control_dir.as_ref().map(|d| d.path().to_path_buf());
    let login = password_for_ansible(rt, &rendered, &env, dir.as_deref())?;
    let extra = secrets_off_argv(rt, rendered, dir.as_deref().unwrap_or(Path::new(".")))?;
    args.extend(extra);
    args.extend(login);
    if let Some(k) = &key_path {
        args.push("-e".into());
        args.push(format!("ansible_ssh_private_key_file={}", k.display()));
    }
    args.push("-i".into());
    args.push(inventory.display().to_string());
    let playbook = std::path::absolute(&c.playbook_file).unwrap_or(c.playbook_file.clone());
    args.push(playbook.display().to_string());

    rt.say(&format!(
        "Executing Ansible: {}",
        rt.redact(&format!("{} {}", c.command, args.join(" ")))
    ));
    let mut tracker = PlayTracker::default();
    let mut tail = Tail::default();
    let status = run_local(&c.command, &args, &env, |l| {
        if let Line::Out(t) | Line::Err(t) = &l {
            tracker.see(t);
        }
        tail.push(&l);
        print_line(ctx.ui, ctx.build_name, &l);
    })
    .await
    .map_err(|LocalError { what, source }| Failure::Local { what, source })?;
    drop(key_mem);
    drop(scratch);
    if status.success() {
        return Ok(());
    }
    let mut tail: Vec<String> = tail.lines().iter().map(|l| rt.redact(l)).collect();
    if let Some(f) = &tracker.fatal {
        tail.insert(0, rt.redact(f));
    }
    Err(Failure::ExitStatus {
        what: format!("ansible-playbook ({} failed)", tracker.describe()),
        command: rt.redact(&format!("{} ... {}", c.command, playbook.display())),
        code: status.code().unwrap_or(-1),
        valid: vec![0],
        tail,
    })
}

/// The key Ansible logs in with: a key file as it is, the temporary key as a memory file;
/// `None` with agent authentication.
fn key_for_ansible(rt: &Runtime<'_, '_>) -> Result<(Option<MemFile>, Option<PathBuf>), Failure> {
    let (ssh, ctx) = (rt.ctx.ssh, rt.ctx);
    if let Some(p) = &ssh.ssh_private_key_file {
        Ok((None, Some(p.clone())))
    } else if let Some(k) = ctx.private_key {
        let m = MemFile::new("imgbuild-ansible-key", k.as_bytes()).map_err(|source| {
            Failure::Local {
                what: "cannot hold the private key for Ansible".into(),
                source,
            }
        })?;
        let p = m.path();
        Ok((Some(m), Some(p)))
    } else if ssh.ssh_agent_auth || ssh.ssh_password.is_some() {
        Ok((None, None))
    } else {
        Err(Failure::Other(
            "the ansible provisioner logs in with a key or a password: set ssh_private_key_file, ssh_agent_auth or ssh_password, or let imgbuild create a temporary key pair".into(),
        ))
    }
}

/// `ssh_password` logins (no key, no agent): Ansible gets `ansible_password` from a 0600
/// extra-vars file in the step's private directory (removed with it; never on the command line),
/// unless the template's own extra arguments set `ansible_password` (as Packer). Ansible hands it
/// to `sshpass` on a pipe, so `sshpass` must be on the PATH. Returns the `-e @file` arguments.
fn password_for_ansible(
    rt: &Runtime<'_, '_>,
    extra: &[String],
    env: &BTreeMap<String, String>,
    dir: Option<&Path>,
) -> Result<Vec<String>, Failure> {
    let ssh = rt.ctx.ssh;
    let Some(pw) = ssh.ssh_password.as_deref() else {
        return Ok(Vec::new());
    };
    if ssh.ssh_agent_auth
        || ssh.ssh_private_key_file.is_some()
        || rt.ctx.private_key.is_some()
        || extra.iter().any(|a| a.contains("ansible_password"))
    {
        return Ok(Vec::new());
    }
    let path = env.get("PATH").map(String::as_str).unwrap_or("");
    if !std::env::split_paths(path).any(|d| d.join("sshpass").is_file()) {
        return Err(Failure::Other(
            "the ansible provisioner logs in with ssh_password through sshpass (Ansible hands it the password on a pipe), which is not on the PATH: install it (Debian/Ubuntu: apt-get install sshpass) or log in with a key".into(),
        ));
    }
    let Some(dir) = dir else {
        return Err(Failure::Other(
            "no private directory to hand ssh_password to Ansible".into(),
        ));
    };
    let file = dir.join("login.json");
    let json = serde_json::json!({ "ansible_password": pw }).to_string();
    write_private(&file, json.as_bytes()).map_err(|source| Failure::Local {
        what: "cannot hand ssh_password to Ansible".into(),
        source,
    })?;
    Ok(vec!["-e".into(), format!("@{}", file.display())])
}

/// `inventory_file`, or a generated inventory in `inventory_directory` (removed with `scratch`
/// unless `keep_inventory_file`).
fn inventory_file(
    rt: &Runtime<'_, '_>,
    c: &AnsibleConfig,
    user: &str,
    scratch: &mut Scratch,
) -> Result<PathBuf, Failure> {
    if let Some(p) = &c.inventory_file {
        return Ok(p.clone());
    }
    let local = |what: String| move |source| Failure::Local { what, source };
    let dir = c
        .inventory_directory
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let mut f = tempfile::Builder::new()
        .prefix("packer-provisioner-ansible")
        .tempfile_in(&dir)
        .map_err(local(format!(
            "cannot create the inventory in {}",
            dir.display()
        )))?;
    f.write_all(inventory_text(c, &rt.ctx.host, user, rt.ctx.port).as_bytes())
        .map_err(local("cannot write the inventory".into()))?;
    let (_, path) = f.keep().map_err(|e| Failure::Local {
        what: "cannot keep the inventory".into(),
        source: e.error,
    })?;
    if c.keep_inventory_file {
        rt.say(&format!("ansible: inventory kept in {}", path.display()));
    } else {
        scratch.inventory = Some(path.clone());
    }
    Ok(path)
}

/// `--ssh-extra-args`: `ansible_ssh_extra_args` or Packer's default, no known-hosts file unless
/// the host key is pinned, and the bastion as a `ProxyCommand`.
fn ssh_extra_args(
    c: &AnsibleConfig,
    ssh: &crate::communicator::ssh::SshConfig,
    key_path: Option<&Path>,
) -> String {
    let mut ssh_extra = if c.ansible_ssh_extra_args.is_empty() {
        DEFAULT_SSH_EXTRA.to_string()
    } else {
        c.ansible_ssh_extra_args.join(" ")
    };
    if ssh.ssh_host_key_fingerprint.is_none() {
        ssh_extra.push_str(" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no");
    }
    if let Some(b) = &ssh.ssh_bastion {
        let key = match (&b.private_key_file, &key_path) {
            (Some(p), _) => format!(" -i {}", sh_quote(&p.display().to_string())),
            (None, Some(p)) if !b.agent_auth => {
                format!(" -i {}", sh_quote(&p.display().to_string()))
            }
            _ => String::new(),
        };
        let proxy = format!(
            "ssh -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes{key} -p {} -W %h:%p {}@{}",
            b.port, b.username, b.host
        );
        ssh_extra.push_str(&format!(" -o ProxyCommand={}", sh_quote(&proxy)));
    }

    ssh_extra
}

/// Keeps secrets off Ansible's command line (which every local user can read in `ps`): an
/// `-e`/`--extra-vars` value that holds a secret is handed over as `@<file>`, a 0600 file with
/// the same variables as JSON in the step's private directory (on /dev/shm, memory, when there
/// is one; removed when the step ends: Ansible resolves paths, so a memfd cannot be used here).
/// Another argument with a secret stays, with a warning.
fn secrets_off_argv(
    rt: &Runtime<'_, '_>,
    args: Vec<String>,
    dir: &Path,
) -> Result<Vec<String>, Failure> {
    let mut out = Vec::with_capacity(args.len());
    let mut warned = false;
    for a in args {
        let secret = rt.redact(&a) != a;
        let after_flag = matches!(out.last().map(String::as_str), Some("-e" | "--extra-vars"));
        let (prefix, value) = match a.strip_prefix("--extra-vars=") {
            Some(v) => ("--extra-vars=", v.to_string()),
            None if after_flag => ("", a.clone()),
            None => ("", String::new()),
        };
        if !secret || (prefix.is_empty() && !after_flag) || value.starts_with('@') {
            if secret && !warned {
                rt.say("ansible: an extra argument holds a secret and stays on Ansible's command line (only -e/--extra-vars values are passed as a file)");
                warned = true;
            }
            out.push(a);
            continue;
        }
        let json = extra_vars_json(&value);
        let path = dir.join(format!("vars-{}.json", out.len()));
        write_private(&path, json.as_bytes()).map_err(|source| Failure::Local {
            what: "cannot hand the extra variables to Ansible".into(),
            source,
        })?;
        out.push(format!("{prefix}@{}", path.display()));
    }
    Ok(out)
}

/// A new file readable by its owner only from the start.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// An `-e` value as JSON: JSON or YAML as written, `k=v k2='v 2'` as an object of strings.
pub(crate) fn extra_vars_json(value: &str) -> String {
    let t = value.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return value.to_string();
    }
    let mut map = serde_json::Map::new();
    for word in split_words(value) {
        if let Some((k, v)) = word.split_once('=') {
            map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    serde_json::Value::Object(map).to_string()
}

/// Splits at whitespace, honouring single and double quotes and backslashes (as Ansible's
/// `parse_kv` does for the simple cases).
fn split_words(s: &str) -> Vec<String> {
    let (mut words, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Ansible's environment: ours, then Packer's defaults, then `ansible_env_vars`.
fn environment(
    rt: &Runtime<'_, '_>,
    c: &AnsibleConfig,
    scratch: &Scratch,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    if let Some((k, v)) = crate::provisioner::ansible::utf8_locale() {
        env.insert(k.into(), v.into());
    }
    if rt.ctx.ssh.ssh_host_key_fingerprint.is_none() {
        env.insert("ANSIBLE_HOST_KEY_CHECKING".into(), "False".into());
    }
    if !c.use_sftp {
        env.insert("ANSIBLE_SCP_IF_SSH".into(), "True".into());
    }
    if let Some(d) = &scratch.control_dir {
        env.insert(
            "ANSIBLE_SSH_CONTROL_PATH_DIR".into(),
            d.path().display().to_string(),
        );
    }
    if let Some(p) = &c.roles_path {
        env.insert("ANSIBLE_ROLES_PATH".into(), p.clone());
    }
    if let Some(p) = &c.collections_path {
        env.insert("ANSIBLE_COLLECTIONS_PATH".into(), p.clone());
    }
    for (k, v) in &c.ansible_env_vars {
        env.insert(k.clone(), rt.render_lenient(v));
    }
    env
}

/// `ansible-galaxy install -r <file>` (roles) and `ansible-galaxy collection install -r <file>`
/// (collections), as Packer decides from the file's keys.
async fn run_galaxy(
    rt: &Runtime<'_, '_>,
    c: &AnsibleConfig,
    file: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file).map_err(|source| Failure::Local {
        what: format!("cannot read galaxy_file {}", file.display()),
        source,
    })?;
    let has = |k: &str| {
        text.lines()
            .any(|l| l.trim_start().starts_with(k) && !l.starts_with(' '))
    };
    let roles = has("roles:") || !has("collections:");
    let mut runs: Vec<Vec<String>> = Vec::new();
    let force = |v: &mut Vec<String>| {
        if c.galaxy_force_install {
            v.push("-f".into());
        }
        if c.galaxy_force_with_deps {
            v.push("--force-with-deps".into());
        }
    };
    if roles {
        let mut v = vec!["install".into(), "-r".into(), file.display().to_string()];
        force(&mut v);
        if let Some(p) = &c.roles_path {
            v.extend(["-p".into(), p.clone()]);
        }
        runs.push(v);
    }
    if has("collections:") {
        let mut v = vec![
            "collection".into(),
            "install".into(),
            "-r".into(),
            file.display().to_string(),
        ];
        force(&mut v);
        if let Some(p) = &c.collections_path {
            v.extend(["-p".into(), p.clone()]);
        }
        runs.push(v);
    }
    for args in runs {
        rt.say(&format!(
            "Executing Ansible Galaxy: {} {}",
            c.galaxy_command,
            args.join(" ")
        ));
        let mut tail = Tail::default();
        let status = run_local(&c.galaxy_command, &args, env, |l| {
            tail.push(&l);
            print_line(rt.ctx.ui, rt.ctx.build_name, &l);
        })
        .await
        .map_err(|LocalError { what, source }| Failure::Local { what, source })?;
        if !status.success() {
            return Err(Failure::ExitStatus {
                what: "ansible-galaxy".into(),
                command: format!("{} {}", c.galaxy_command, args.join(" ")),
                code: status.code().unwrap_or(-1),
                valid: vec![0],
                tail: tail.lines().iter().map(|l| rt.redact(l)).collect(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_names_the_play_and_task_that_failed() {
        let mut t = PlayTracker::default();
        assert_eq!(t.describe(), "before any play started");
        for l in [
            "PLAY [web servers] *****",
            "TASK [Gathering Facts] ****",
            "ok: [default]",
            "TASK [install nginx] ****",
            "fatal: [default]: FAILED! => {\"msg\": \"no\"}",
        ] {
            t.see(l);
        }
        assert_eq!(t.describe(), "play `web servers`, task `install nginx`");
        assert!(t.fatal.as_deref().unwrap().starts_with("fatal: [default]"));
    }

    #[test]
    fn a_memory_file_is_readable_by_path_with_mode_0600() {
        let m = MemFile::new("k", b"secret key").unwrap();
        let p = m.path();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(m);
        assert!(std::fs::read(&p).is_err());
    }

    #[test]
    fn sweep_removes_the_private_directories_of_dead_processes_only() {
        let dead = (1_000_000u32..4_000_000)
            .step_by(7919)
            .find(|p| !Path::new(&format!("/proc/{p}")).exists())
            .expect("a pid that is not running");
        let tmp = std::env::temp_dir();
        let gone = tmp.join(format!("{PRIVATE_PREFIX}{dead}-sweeptest"));
        let mine = tmp.join(format!("{PRIVATE_PREFIX}{}-sweeptest", std::process::id()));
        for d in [&gone, &mine] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
        }
        assert!(sweep(true).contains(&gone));
        assert!(gone.exists());
        let removed = sweep(false);
        assert!(
            removed.contains(&gone) && !removed.contains(&mine),
            "{removed:?}"
        );
        assert!(!gone.exists() && mine.exists());
        std::fs::remove_dir_all(&mine).unwrap();
    }

    #[test]
    fn extra_vars_become_json() {
        assert_eq!(
            extra_vars_json("secret=s3 out='/a b' x=\"q\\\"z\""),
            r#"{"out":"/a b","secret":"s3","x":"q\"z"}"#
        );
        assert_eq!(extra_vars_json(r#"{"a": 1}"#), r#"{"a": 1}"#);
    }

    #[test]
    fn the_inventory_is_packers() {
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("p.yml");
        std::fs::write(&pb, "").unwrap();
        let (mut c, _) = crate::checks::testing::decode(
            &format!(
                r#"{{"playbook_file": {}, "skip_version_check": true, "groups": ["web"], "empty_groups": ["db"]}}"#,
                crate::checks::testing::js(pb.display().to_string())
            ),
            AnsibleConfig::decode,
        );
        assert_eq!(
            inventory_text(&c, "10.0.0.5", "ubuntu", 22),
            "default ansible_host=10.0.0.5 ansible_user=ubuntu ansible_port=22\n[web]\ndefault ansible_host=10.0.0.5 ansible_user=ubuntu ansible_port=22\n[db]\n"
        );
        c.inventory_file_template = Some("{{ .HostAlias }} ansible_host={{ .Host }}\n".into());
        c.groups.clear();
        c.empty_groups.clear();
        assert_eq!(inventory_text(&c, "h", "u", 1), "default ansible_host=h\n");
    }
}
