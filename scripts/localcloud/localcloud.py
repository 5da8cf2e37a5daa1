#!/usr/bin/env python3
"""localcloud.py: real Linux-root instances for the local cloud (scripts/testworld.sh --real-instances).

An instance is a Debian root booted with systemd as PID 1 by `systemd-nspawn --boot`, on an overlayfs
(copy-on-write) root: the lower layers are the Debian base root (built once with debootstrap and cached in
CACHE_DIR, keyed by a hash of its configuration) plus the image layers of the AMI it was launched from; the
upper layer is the instance's disk. It shares the host's network namespace and has a loopback address of its
own (127.A.B.x) where its sshd (and Apache, if installed) listen.

A first-boot unit in the base (localcloud-init.service) does cloud-init's job from /etc/localcloud/meta.env,
written by the host before every boot: the launch key pair's public key into the image user's
authorized_keys, host keys, hostname, /etc/hosts, sshd's and Apache's listen address. A small `cloud-init`
command answers `cloud-init status [--wait]`.

User data: the host writes the instance's user data (RunInstances' UserData) to /etc/localcloud/user-data
before every boot, with a unit that runs it once per instance, late in boot, as cloud-init's scripts-user does
(a `#!` script, as root; its output in /var/log/cloud-init-output.log); first boot, and so `cloud-init status
--wait`, ends after it. Other kinds (#cloud-config, MIME multipart) are logged there as not run. These files are
written into each instance's disk at start (not into the cached base, so that the base stays as it is).

Usage (as root):
    localcloud.py base                    build (or reuse) the cached base root; prints its path
    localcloud.py teardown STATE_DIR      stop and remove every instance, mount and process of a cloud
    localcloud.py _supervise STATE_DIR ID (internal) run one instance's nspawn, restarting it on reboot

Everything a cloud mounts or writes lives under its STATE_DIR (plus the shared base cache and
/run/systemd/nspawn entries nspawn itself makes, removed on teardown).
"""

import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

CACHE_DIR = os.environ.get("IMGBUILD_LOCALCLOUD_CACHE", "/var/cache/imgbuild-localcloud")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "python3", "ca-certificates",
    "iproute2", "procps", "less", "curl",
]
USERS = ["ubuntu", "admin", "ec2-user"]
CGROUP_V2 = "/sys/fs/cgroup/unified"
CGROUP_NAMED = "/sys/fs/cgroup/systemd"
CGROUP_PARENT = "imgbuild-localcloud"
NSPAWN_REBOOT = 133
STOP_TIMEOUT_S = 20
KILL_TIMEOUT_S = 10

# Runs in the guest before sshd at every boot: cloud-init's job, from the host-written meta.env.
FIRSTBOOT_SH = r"""#!/bin/sh
# localcloud-init: what cloud-init does on EC2, from /etc/localcloud/meta.env (written by the host).
set -eu
. /etc/localcloud/meta.env
mkdir -p /var/lib/localcloud
echo "$LC_HOSTNAME" >/etc/hostname
hostname "$LC_HOSTNAME" || true
printf '127.0.0.1 localhost\n%s %s\n' "$LC_IP" "$LC_HOSTNAME" >/etc/hosts
# sshd (and Apache) listen on this instance's own address only: the host network is shared.
mkdir -p /etc/ssh/sshd_config.d
printf 'ListenAddress %s\nHostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n' \
    "$LC_IP" >/etc/ssh/sshd_config.d/00-localcloud.conf
mkdir -p /etc/apache2
if [ ! -e /etc/apache2/ports.conf ] || grep -q '^# localcloud' /etc/apache2/ports.conf; then
    printf '# localcloud: Apache listens on this instance address only (shared host network)\nListen %s:80\n' \
        "$LC_IP" >/etc/apache2/ports.conf
fi
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
[ -s /etc/ssh/ssh_host_ecdsa_key ] || ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key
if [ "$(cat /var/lib/localcloud/instance-id 2>/dev/null || true)" != "$LC_INSTANCE_ID" ]; then
    # A new instance (first boot, or launched from an image): only the launch key logs in.
    home=$(getent passwd "$LC_USER" | cut -d: -f6)
    if [ -n "$home" ] && [ -n "$LC_PUBLIC_KEY" ]; then
        install -d -m 0700 -o "$LC_USER" -g "$LC_USER" "$home/.ssh"
        printf '%s\n' "$LC_PUBLIC_KEY" >"$home/.ssh/authorized_keys"
        chown "$LC_USER:$LC_USER" "$home/.ssh/authorized_keys"
        chmod 0600 "$home/.ssh/authorized_keys"
    fi
    echo "$LC_INSTANCE_ID" >/var/lib/localcloud/instance-id
fi
mkdir -p /run/localcloud
touch /run/localcloud/boot-finished
"""

CLOUD_INIT_SH = r"""#!/bin/sh
# cloud-init stand-in of the local cloud: `cloud-init status [--wait]` as on EC2.
case "${1:-}" in
  status)
    if [ "${2:-}" = --wait ]; then
        i=0
        while [ ! -e /run/localcloud/boot-finished ] && [ "$i" -lt 600 ]; do
            printf .; sleep 0.5; i=$((i + 1))
        done
        [ "$i" -eq 0 ] || echo
    fi
    if [ -e /run/localcloud/boot-finished ]; then echo "status: done"; exit 0; fi
    if systemctl is-failed -q localcloud-init.service; then echo "status: error"; exit 1; fi
    echo "status: running"; exit 0 ;;
  --version|-v) echo "/usr/bin/cloud-init 23.4 (imgbuild local cloud stand-in)" ;;
  *) echo "usage: cloud-init status [--wait]" >&2; exit 2 ;;
esac
"""

FIRSTBOOT_UNIT = """[Unit]
Description=localcloud first boot (what cloud-init does on EC2)
DefaultDependencies=no
After=local-fs.target systemd-tmpfiles-setup.service
Before=ssh.service apache2.service sysinit.target
ConditionPathExists=/etc/localcloud/meta.env

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/localcloud-init

[Install]
WantedBy=sysinit.target
"""

# The user-data runner, written into each instance's disk at every start (see start()).
USER_DATA_SH = r"""#!/bin/sh
# localcloud: runs the instance's user data once per instance, as cloud-init's scripts-user does on EC2.
# `hold` (after the first-boot unit): first boot is not finished until the user data has run.
set -u
ud=/etc/localcloud/user-data
ran=/var/lib/localcloud/user-data-ran
log=/var/log/cloud-init-output.log
id=$(. /etc/localcloud/meta.env; echo "$LC_INSTANCE_ID")
pending() { [ -s "$ud" ] && [ "$(cat "$ran" 2>/dev/null || true)" != "$id" ]; }
if [ "${1:-}" = hold ]; then
    if pending; then rm -f /run/localcloud/boot-finished; fi
    exit 0
fi
if pending; then
    mkdir -p /var/lib/localcloud/scripts
    if [ "$(head -c 2 "$ud")" = "#!" ]; then
        install -m 0700 "$ud" /var/lib/localcloud/scripts/part-001
        echo "localcloud: running the user data script" >>"$log"
        /var/lib/localcloud/scripts/part-001 </dev/null >>"$log" 2>&1
        rc=$?
        echo "localcloud: the user data script exited $rc" >>"$log"
    else
        echo "localcloud: user data is not a #! script: not run (the local cloud runs only scripts)" >>"$log"
    fi
    echo "$id" >"$ran"
fi
mkdir -p /run/localcloud
touch /run/localcloud/boot-finished
"""

USER_DATA_UNIT = """[Unit]
Description=localcloud user data (what cloud-init's scripts-user does on EC2)
After=network-online.target ssh.service localcloud-init.service
ConditionPathExists=/etc/localcloud/meta.env

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=0
ExecStart=/usr/local/sbin/localcloud-user-data

[Install]
WantedBy=multi-user.target
"""

USER_DATA_HOLD = """[Service]
ExecStartPost=/usr/local/sbin/localcloud-user-data hold
"""

# What start() writes into an instance's disk, relative to its root.
USER_DATA_FILES = [
    ("usr/local/sbin/localcloud-user-data", USER_DATA_SH, 0o755),
    ("etc/systemd/system/localcloud-user-data.service", USER_DATA_UNIT, 0o644),
    ("etc/systemd/system/localcloud-init.service.d/user-data.conf", USER_DATA_HOLD, 0o644),
]

CONFIG_VERSION = "5"
PIP_CACHE = "/var/cache/localcloud-pip"


def discard(path):
    """Removes a directory tree. Deleting a gigabyte of small files takes minutes on a disk that
    discards on unlink, so the tree is first moved out of the way (a rename: instant) into
    CACHE_DIR/trash, and deleted there by a detached `rm` (also what a later call finds left)."""
    if not os.path.lexists(path):
        return
    trash = os.path.join(CACHE_DIR, "trash")
    os.makedirs(trash, exist_ok=True)
    target = os.path.join(trash, "%d-%d-%s" % (os.getpid(), time.monotonic_ns(), os.path.basename(path)))
    try:
        os.rename(path, target)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    delete_in_background(target)


def delete_in_background(path):
    # Through a shell that exits at once, so that `rm` is no descendant of a process that a stop
    # kills with its descendants (the EC2 server, testworld.sh's watchdog).
    subprocess.run(["sh", "-c", 'rm -rf --one-file-system -- "$1" </dev/null >/dev/null 2>&1 &', "sh", path],
                   start_new_session=True, check=False)


def sweep_trash():
    """Deletes what an earlier run left in the trash (its `rm` killed, the machine rebooted)."""
    trash = os.path.join(CACHE_DIR, "trash")
    if os.path.isdir(trash):
        for name in os.listdir(trash):
            delete_in_background(os.path.join(trash, name))


def log(msg):
    print("localcloud: " + msg, file=sys.stderr, flush=True)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# ------------------------------------------------------------------------------------------ base root ---

def host_ca_certs():
    d = "/usr/local/share/ca-certificates"
    out = []
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if name.endswith(".crt") and os.path.isfile(p):
                with open(p) as f:
                    out.append((name, f.read()))
    return out


def base_key():
    h = hashlib.sha256()
    h.update(json.dumps([SUITE, MIRROR, INCLUDE, USERS, CONFIG_VERSION, FIRSTBOOT_SH, CLOUD_INIT_SH,
                         FIRSTBOOT_UNIT, host_ca_certs()]).encode())
    return h.hexdigest()[:16]


def configure_base(root):
    """Turns a debootstrap root into what a cloud image carries."""
    def chroot(*argv):
        run(["chroot", root] + list(argv), stdout=subprocess.DEVNULL)

    for user in USERS:
        chroot("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", user)
        chroot("usermod", "-p", "*", user)
    write(root + "/etc/sudoers.d/90-cloud-users",
          "".join("%s ALL=(ALL) NOPASSWD:ALL\n" % u for u in USERS), 0o440)
    # Identity is per instance: machine-id and host keys are made at boot.
    write(root + "/etc/machine-id", "")
    for name in os.listdir(root + "/etc/ssh"):
        if name.startswith("ssh_host_"):
            os.unlink(root + "/etc/ssh/" + name)
    # Pre-seeded config files (Apache's ports.conf) survive package installs.
    write(root + "/etc/apt/apt.conf.d/90localcloud",
          'Dpkg::Options { "--force-confdef"; "--force-confold"; };\n'
          'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n')
    write(root + "/etc/apt/sources.list",
          "deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n"
          % (MIRROR, SUITE, MIRROR, SUITE, SUITE))
    # No fsync per unpacked file (as Debian's container images do): the disk is a throwaway layer,
    # and fsyncs on a loaded machine made apt-get install of the web worker's packages take minutes.
    write(root + "/etc/dpkg/dpkg.cfg.d/localcloud-unsafe-io", "force-unsafe-io\n")
    # The host's extra CAs (an egress proxy's), for apt and pip in the guest.
    for name, text in host_ca_certs():
        write(root + "/usr/local/share/ca-certificates/" + name, text)
    chroot("update-ca-certificates")
    # pip's cache in a directory every user may write, where the host binds its shared cache.
    write(root + "/etc/pip.conf", "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ncache-dir = %s\n" % PIP_CACHE)
    os.makedirs(root + PIP_CACHE, exist_ok=True)
    os.chmod(root + PIP_CACHE, 0o1777)
    # cloud-init's job at first boot, and its status command.
    write(root + "/usr/local/sbin/localcloud-init", FIRSTBOOT_SH, 0o755)
    write(root + "/usr/bin/cloud-init", CLOUD_INIT_SH, 0o755)
    write(root + "/etc/systemd/system/localcloud-init.service", FIRSTBOOT_UNIT)
    os.makedirs(root + "/etc/systemd/system/sysinit.target.wants", exist_ok=True)
    os.symlink("../localcloud-init.service", root + "/etc/systemd/system/sysinit.target.wants/localcloud-init.service")
    # No console getty in a container; quicker boots.
    for unit in ["getty@tty1.service", "console-getty.service"]:
        p = root + "/etc/systemd/system/" + unit
        if not os.path.lexists(p):
            os.symlink("/dev/null", p)
    write(root + "/etc/hostname", "localhost\n")
    run(["chroot", root, "apt-get", "clean"], stdout=subprocess.DEVNULL)


def prune_old_bases(current):
    """Deletes base roots of an older configuration that no mounted instance uses."""
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    for name in os.listdir(CACHE_DIR):
        path = os.path.join(CACHE_DIR, name)
        if name.startswith("base-") and path != current and path + "/root" not in mounts:
            discard(path)


def build_base():
    """Returns the cached base root's path, building it once (serialised by a lock)."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    key = base_key()
    final = os.path.join(CACHE_DIR, "base-" + key)
    if os.path.exists(final + "/.complete"):
        return final + "/root"
    with open(os.path.join(CACHE_DIR, "build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(final + "/.complete"):
            return final + "/root"
        for missing in ["debootstrap", "systemd-nspawn"]:
            if not shutil.which(missing, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
                raise SystemExit("localcloud: %s is missing; run: scripts/testworld.sh install (as root)" % missing)
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        t0 = time.monotonic()
        log("building the Debian base root (debootstrap %s; once, cached in %s)" % (SUITE, final))
        run(["timeout", "1200", "debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE),
             SUITE, tmp + "/root", MIRROR], stdout=subprocess.DEVNULL)
        t1 = time.monotonic()
        configure_base(tmp + "/root")
        t2 = time.monotonic()
        size = run(["du", "-sm", tmp + "/root"], capture_output=True, text=True).stdout.split()[0]
        write(tmp + "/.complete", json.dumps({"debootstrap_s": round(t1 - t0, 1),
                                              "configure_s": round(t2 - t1, 1), "size_mb": int(size)}) + "\n")
        os.rename(tmp, final)
        log("base root built: debootstrap %.1f s, configuration %.1f s, %s MB" % (t1 - t0, t2 - t1, size))
        prune_old_bases(final)
    return final + "/root"


# ------------------------------------------------------------------------------------------ instances ---

class Cloud:
    """One cloud's instances and image layers, all under STATE_DIR."""

    def __init__(self, state_dir):
        self.dir = os.path.abspath(state_dir)
        os.makedirs(self.dir + "/instances", exist_ok=True)
        os.makedirs(self.dir + "/images", exist_ok=True)

    def idir(self, iid):
        return os.path.join(self.dir, "instances", iid)

    def meta(self, iid):
        with open(self.idir(iid) + "/instance.json") as f:
            return json.load(f)

    def create(self, iid, ip, layers, user, public_key, hostname, user_data=b""):
        """Makes an instance's disk (not started). layers: image layer dirs, topmost first;
        user_data: RunInstances' UserData, decoded."""
        d = self.idir(iid)
        for sub in ["upper", "work", "merged"]:
            os.makedirs(os.path.join(d, sub))
        write(d + "/instance.json", json.dumps({
            "id": iid, "ip": ip, "layers": layers + [build_base()], "user": user,
            "public_key": public_key, "hostname": hostname, "machine": "lc-" + iid,
            "user_data": base64.b64encode(user_data or b"").decode()}))

    def mounted(self, path):
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)

    def mount(self, iid):
        d, m = self.idir(iid), self.meta(iid)
        if self.mounted(d + "/merged"):
            return
        opts = "lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (":".join(m["layers"]), d, d)
        run(["mount", "-t", "overlay", "overlay", "-o", opts, d + "/merged"])
        # nspawn's lock file is named after the mounted root's inode: note it for the teardown.
        st = os.stat(d + "/merged")
        write(d + "/nspawn-lock", "/run/systemd/nspawn/locks/inode-%d:%d" % (st.st_dev, st.st_ino))

    def umount(self, iid):
        merged = self.idir(iid) + "/merged"
        for _ in range(50):
            if not self.mounted(merged):
                return
            if subprocess.run(["umount", merged], stderr=subprocess.DEVNULL).returncode != 0:
                time.sleep(0.1)

    def start(self, iid):
        d, m = self.idir(iid), self.meta(iid)
        if self.supervisor_alive(iid):
            return
        self.mount(iid)
        merged = d + "/merged"
        write(merged + "/etc/localcloud/meta.env",
              "LC_INSTANCE_ID='%s'\nLC_IP='%s'\nLC_HOSTNAME='%s'\nLC_USER='%s'\nLC_PUBLIC_KEY='%s'\n"
              % (m["id"], m["ip"], m["hostname"], m["user"], m["public_key"].replace("'", "")))
        self.write_user_data(merged, base64.b64decode(m.get("user_data", "")))
        # A machine-id of its own (an empty one would make systemd derive the same from the host).
        with open(merged + "/etc/machine-id") as f:
            if not f.read().strip():
                write(merged + "/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
        for f in ["stop-requested", "nspawn.pid"]:
            if os.path.exists(d + "/" + f):
                os.unlink(d + "/" + f)
        with open(d + "/console.log", "ab") as out:
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_supervise", self.dir, iid],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                 close_fds=True)
        write(d + "/supervisor.pid", str(p.pid))

    def write_user_data(self, merged, user_data):
        """The instance's user data (root only, as cloud-init keeps it) and its runner."""
        path = merged + "/etc/localcloud/user-data"
        if user_data:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(user_data)
        elif os.path.lexists(path):
            os.unlink(path)
        for rel, text, mode in USER_DATA_FILES:
            write(os.path.join(merged, rel), text, mode)
        wants = merged + "/etc/systemd/system/multi-user.target.wants/localcloud-user-data.service"
        if not os.path.lexists(wants):
            os.makedirs(os.path.dirname(wants), exist_ok=True)
            os.symlink("../localcloud-user-data.service", wants)

    def supervisor_alive(self, iid):
        try:
            with open(self.idir(iid) + "/supervisor.pid") as f:
                pid = int(f.read())
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
            return stat.rsplit(")", 1)[1].split()[0] != "Z" and "_supervise" in open(
                "/proc/%d/cmdline" % pid).read()
        except (OSError, ValueError):
            return False

    def cgroups(self, iid):
        name = "%s/%s" % (CGROUP_PARENT, self.meta(iid)["machine"])
        return os.path.join(CGROUP_V2, name), os.path.join(CGROUP_NAMED, name)

    def populated(self, iid):
        v2, _ = self.cgroups(iid)
        try:
            with open(v2 + "/cgroup.events") as f:
                return "populated 1" in f.read()
        except OSError:
            return False

    def stop(self, iid, force=False):
        """Halts the guest (SIGTERM to nspawn, as a clean shutdown), then kills what is left by cgroup."""
        d = self.idir(iid)
        write(d + "/stop-requested", "")
        deadline = time.monotonic() + (0 if force else STOP_TIMEOUT_S)
        sent = False
        while self.populated(iid) and time.monotonic() < deadline:
            if not sent:
                try:
                    with open(d + "/nspawn.pid") as f:
                        os.kill(int(f.read()), signal.SIGTERM)
                    sent = True
                except (OSError, ValueError):
                    pass
            time.sleep(0.1)
        self.kill_cgroup(iid)
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while self.supervisor_alive(iid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.umount(iid)
        self.remove_nspawn_leftovers(iid)

    def kill_cgroup(self, iid):
        v2, named = self.cgroups(iid)
        if os.path.exists(v2 + "/cgroup.kill"):
            deadline = time.monotonic() + KILL_TIMEOUT_S
            while self.populated(iid) and time.monotonic() < deadline:
                try:
                    write(v2 + "/cgroup.kill", "1")
                except OSError:
                    pass
                time.sleep(0.05)
        for root in (v2, named):
            # Children first (nspawn splits its cgroup into supervisor/ and payload/ ...).
            for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -t[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass

    def remove_nspawn_leftovers(self, iid):
        name = self.meta(iid)["machine"]
        shutil.rmtree("/run/systemd/nspawn/propagate/" + name, ignore_errors=True)
        try:
            with open(self.idir(iid) + "/nspawn-lock") as f:
                lock = f.read().strip()
            if lock.startswith("/run/systemd/nspawn/locks/inode-") and os.path.exists(lock):
                os.unlink(lock)
        except OSError:
            pass

    def terminate(self, iid):
        if not os.path.exists(self.idir(iid) + "/instance.json"):
            return
        self.stop(iid, force=True)
        discard(self.idir(iid))
        self.collect()

    def create_image(self, iid, image_id):
        """Freezes the instance's disk as it is now into an image layer; returns the image's layer
        list (topmost first, without the base). A running instance's disk is copied; a stopped
        one's becomes the layer as it is (a rename), and the instance goes on over a fresh upper
        layer on top of it, with its own identity (machine-id, host keys) copied into that."""
        m, d = self.meta(iid), self.idir(iid)
        image_layers = [os.path.join(self.dir, "images", image_id)] + m["layers"][:-1]
        layer, tmp = image_layers[0], image_layers[0] + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if self.supervisor_alive(iid) or self.mounted(d + "/merged"):
            run(["cp", "-a", d + "/upper", tmp])
        else:
            os.rename(d + "/upper", tmp)
            os.makedirs(d + "/upper")
            shutil.rmtree(d + "/work", ignore_errors=True)
            os.makedirs(d + "/work")
            for rel in identity_files(tmp):
                dst = os.path.join(d, "upper", rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(os.path.join(tmp, rel), dst)
                st = os.lstat(os.path.join(tmp, rel))
                os.chown(dst, st.st_uid, st.st_gid)
            m["layers"] = [layer] + m["layers"]
            write(d + "/instance.json", json.dumps(m))
        # Identity is per instance (as cloud-init's instance-id and ssh_deletekeys do on EC2).
        for rel in identity_files(tmp) + ["etc/localcloud/meta.env", "etc/localcloud/user-data"]:
            if os.path.lexists(os.path.join(tmp, rel)):
                os.unlink(os.path.join(tmp, rel))
        write(tmp + "/etc/machine-id", "")
        os.rename(tmp, layer)
        write(layer + ".json", json.dumps({"layers": image_layers}))
        return image_layers

    def copy_image(self, source_id, image_id, layers):
        """CopyImage: the copy shares the source's disk (kept while either is registered)."""
        write(os.path.join(self.dir, "images", image_id + ".json"), json.dumps({"layers": layers}))

    def delete_image(self, image_id):
        """Deletes the image's disk once no instance and no other image is built on it."""
        write(os.path.join(self.dir, "images", image_id + ".deleted"), "")
        self.collect()

    def collect(self):
        images = os.path.join(self.dir, "images")
        names = os.listdir(images)
        used = set()
        for iid in self.instances():
            try:
                used.update(self.meta(iid)["layers"])
            except (OSError, ValueError):
                pass
        for name in names:
            if name.endswith(".json") and name[:-5] + ".deleted" not in names:
                with open(os.path.join(images, name)) as f:
                    # Every layer but the image's own (a copy's first layer is its source's).
                    used.update(l for l in json.load(f)["layers"] if l != os.path.join(images, name[:-5]))
        for name in names:
            layer = os.path.join(images, name[:-len(".deleted")])
            if name.endswith(".deleted") and layer not in used:
                discard(layer)
                for suffix in [".json", ".deleted"]:
                    if os.path.exists(layer + suffix):
                        os.unlink(layer + suffix)

    def instances(self):
        return sorted(os.listdir(self.dir + "/instances"))

    def teardown(self):
        for iid in self.instances():
            if os.path.exists(self.idir(iid) + "/instance.json"):
                self.stop(iid, force=True)
        for iid in self.instances():
            if not self.mounted(self.idir(iid) + "/merged"):
                discard(self.idir(iid))
        discard(self.dir + "/images")


def identity_files(root):
    """What makes a disk one machine: its machine-id, host keys and cloud-init instance-id."""
    rels = ["etc/machine-id", "var/lib/localcloud/instance-id", "var/lib/localcloud/user-data-ran"]
    if os.path.isdir(root + "/etc/ssh"):
        rels += ["etc/ssh/" + n for n in sorted(os.listdir(root + "/etc/ssh")) if n.startswith("ssh_host_")]
    return [r for r in rels if os.path.isfile(os.path.join(root, r))]


# --------------------------------------------------------------------------------------- supervisor ---

def enter_cgroups(cloud, iid):
    for path in cloud.cgroups(iid):
        os.makedirs(path, exist_ok=True)
        write(path + "/cgroup.procs", str(os.getpid()))


def supervise(state_dir, iid):
    """Runs nspawn for one instance; restarts it after an in-guest reboot unless a stop was asked."""
    cloud = Cloud(state_dir)
    d, m = cloud.idir(iid), cloud.meta(iid)
    enter_cgroups(cloud, iid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    extra = []
    apt_cache = os.environ.get("IMGBUILD_LOCALCLOUD_APT_CACHE")
    if apt_cache:
        # Downloaded .debs kept between runs on this machine (never part of an instance's disk or
        # image). One running instance at a time has it: apt refuses to run while another apt
        # holds the archives' lock, so a second instance downloads on its own instead.
        os.makedirs(apt_cache, exist_ok=True)
        cache_lock = open(apt_cache.rstrip("/") + ".lock", "w")
        try:
            fcntl.flock(cache_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            extra.append("--bind=%s:/var/cache/apt/archives" % apt_cache)
        except OSError:
            cache_lock.close()
    pip_cache = os.environ.get("IMGBUILD_LOCALCLOUD_PIP_CACHE")
    if pip_cache:
        # pip's downloads and built wheels (psycopg2, pycurl) kept between runs; pip's cache is
        # safe to share between concurrent installs.
        os.makedirs(pip_cache, exist_ok=True)
        os.chmod(pip_cache, 0o1777)
        extra.append("--bind=%s:%s" % (pip_cache, PIP_CACHE))
    for _ in range(100):
        p = subprocess.Popen(["systemd-nspawn", "--quiet", "--boot", "--directory=" + d + "/merged",
                              "--machine=" + m["machine"], "--register=no", "--keep-unit",
                              "--console=read-only", "--link-journal=no", "--resolv-conf=copy-host",
                              "--timezone=off"] + extra, stdin=subprocess.DEVNULL)
        write(d + "/nspawn.pid", str(p.pid))
        rc = p.wait()
        print("localcloud: nspawn exited %d" % rc, flush=True)
        if rc != NSPAWN_REBOOT or os.path.exists(d + "/stop-requested"):
            break
    try:
        os.unlink(d + "/nspawn.pid")
    except OSError:
        pass


def delete_firewall_tables(state_dir):
    """Deletes the security-group tables of the networks this cloud claimed (a server killed
    with -9 left them)."""
    import localcloud_sg
    nets = os.path.join(CACHE_DIR, "nets")
    if not os.path.isdir(nets):
        return
    for name in os.listdir(nets):
        try:
            with open(os.path.join(nets, name)) as f:
                owner = f.read().strip()
        except OSError:
            continue
        if owner == os.path.abspath(state_dir):
            localcloud_sg.delete_table(name)


def main(argv):
    if len(argv) >= 1 and argv[0] == "base":
        print(build_base())
        sweep_trash()
    elif len(argv) == 2 and argv[0] == "teardown":
        if os.path.isdir(argv[1]):
            Cloud(argv[1]).teardown()
        delete_firewall_tables(argv[1])
    elif len(argv) == 3 and argv[0] == "_supervise":
        supervise(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
