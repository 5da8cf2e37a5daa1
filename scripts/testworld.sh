#!/usr/bin/env bash
# testworld.sh: the local "test world" imgbuild's integration tests run against.
#
# It stands in for AWS with real programs, on loopback (127.0.0.1) only:
#   * the EC2 API:        moto's server mode (moto_server), on a free port;
#   * the instance's SSH: a real OpenSSH sshd on another free port, with its own
#     host key and config in STATE_DIR, letting in ONE test user, and accepting
#     only the public keys of the key pairs that exist in the emulator at that
#     moment (AuthorizedKeysCommand), so a wrong or deleted key is refused as on
#     EC2;
#   * "what is my public IP": python3's http.server on a third free port, answering
#     GET /ip with 198.51.100.7 (IMGBUILD_PUBLIC_IP_URL in the env file), so the
#     temporary security group's lookup of this machine's address never asks the
#     internet.
#
# Usage:
#   scripts/testworld.sh install                 install what is missing (idempotent)
#   scripts/testworld.sh start [STATE_DIR] [--owner-pid PID] [--real-instances [--no-security-groups]]
#                                                start a world; prints its env file
#   scripts/testworld.sh stop [STATE_DIR]        stop it, remove STATE_DIR and its sandbox
#   scripts/testworld.sh status [STATE_DIR]      show its env and whether it runs
#
# --real-instances (root only): the local cloud (scripts/localcloud/): the EC2 endpoint is moto
# with hooks, and every instance launched through it is a real Debian root booted by
# systemd-nspawn on its own loopback address (127.A.B.x, sshd on port 22). `stop` stops and
# removes every instance, mount and process it made. Instances' security groups are enforced
# with nftables on their addresses (scripts/localcloud/localcloud_sg.py; this machine counts as
# the world's public address 198.51.100.7); --no-security-groups turns that off.
#
# STATE_DIR defaults to ${TMPDIR:-/tmp}/imgbuild-testworld. After `start`, use it
# from a shell with:  set -a; . "$STATE_DIR/env"; set +a
#
# --owner-pid PID starts a watchdog that stops the world (within ~1 s) once
# process PID has exited, or after IMGBUILD_TESTWORLD_MAX_LIFETIME seconds
# (default 3 h) at the latest; the Rust test fixture passes its own PID so that
# nothing is left behind even if the test process is killed.
#
# Users:
#   * as root (the normal case here and in CI): a dedicated user `imgbuild-test`
#     with a home directory and passwordless sudo (/etc/sudoers.d/imgbuild-test);
#     sshd runs as root with privilege separation, AuthorizedKeysCommandUser is
#     `nobody`.
#   * not root (fallback): the current user is the test user; sshd runs as that
#     user (OpenSSH then works without privilege separation and can only log in
#     as the user running it); `sudo -n` works on the "instance" only if it does
#     for that user on this machine. The AuthorizedKeysCommand must still live in
#     a root-owned directory (sshd insists), so `install` needs root or a
#     passwordless sudo once.
#
# Exit codes: 0 ok; 1 failure; 2 usage; 3 a dependency is missing and could not
# be installed (the Rust fixture turns 3 into "skipped" unless CI=true).
#
# Every wait is bounded in time; processes are stopped by the PIDs recorded in
# STATE_DIR (checked against their command line first), never by name.

set -euo pipefail

# ---------------------------------------------------------------- settings ---

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
SCRIPT_PATH="$SCRIPT_DIR/$(basename -- "${BASH_SOURCE[0]}")"
AUTHKEYS_SRC="$SCRIPT_DIR/testworld-authorized-keys"

# The AuthorizedKeysCommand must be in a directory chain owned by root and not
# group/world writable (sshd checks), so it cannot live in the repo or in /tmp.
LIBEXEC_DIR=/usr/local/libexec/imgbuild-testworld
AUTHKEYS_CMD="$LIBEXEC_DIR/authorized-keys"
# sshd runs the command as an unprivileged user, who may not be able to read a
# Python installed under /root (pyenv): the command uses the system Python and
# its standard library only.
SYSTEM_PYTHON=/usr/bin/python3

ROOT_TEST_USER=imgbuild-test
# Root only: a user for the password-login test (`ansible` with `ssh_password`). Its password
# is `*` (none) except while that test runs, which sets a random one and resets it.
ROOT_PW_USER=imgbuild-pw
MOTO_SPEC='moto[server]>=5.1,<6'
DEFAULT_STATE_DIR="${TMPDIR:-/tmp}/imgbuild-testworld"
# Lock files (per user: another user cannot open ours).
LOCK_DIR=/tmp
REGION=us-east-1
# Regions whose key pairs sshd accepts (first one is the tests' region).
AUTH_REGIONS=${IMGBUILD_TESTWORLD_REGIONS:-"us-east-1 us-west-2"}
# How long one service may take to listen: moto imports for seconds when idle and many times
# that on a loaded machine (2 cores at load 14), where 30 s failed all three attempts.
READY_TIMEOUT_S=${IMGBUILD_TESTWORLD_READY_TIMEOUT:-120}
STOP_TIMEOUT_S=10
MAX_LIFETIME_S=${IMGBUILD_TESTWORLD_MAX_LIFETIME:-10800}
INSTALL_TIMEOUT_S=900

EXIT_MISSING_DEP=3
LOCALCLOUD_DIR="$SCRIPT_DIR/localcloud"
REAL_INSTANCES=0
SECURITY_GROUPS=1

log() { echo "testworld: $*" >&2; }
die() { log "error: $*"; exit 1; }
missing() { log "missing dependency: $*"; exit "$EXIT_MISSING_DEP"; }
usage() { sed -n '2,/^$/p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2; exit 2; }

is_root() { [ "$(id -u)" -eq 0 ]; }
can_sudo() { command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; }

# Run a command as root: directly when we are root, else through passwordless sudo.
as_root() {
    if is_root; then "$@"; elif can_sudo; then sudo -n "$@"; else return 1; fi
}

test_user() { if is_root; then echo "$ROOT_TEST_USER"; else id -un; fi; }

user_home() { getent passwd "$1" | cut -d: -f6; }

# Parent of the per-world sandbox directories, inside the test user's home.
sandbox_root() {
    if is_root; then
        echo "$(user_home "$ROOT_TEST_USER")/sandboxes"
    else
        echo "${HOME:?}/.cache/imgbuild-testworld/sandboxes"
    fi
}

# Private venv used only when moto cannot be pip-installed into python3 itself.
moto_venv() {
    if is_root; then
        echo /usr/local/lib/imgbuild-testworld/venv
    else
        echo "${XDG_DATA_HOME:-${HOME:?}/.local/share}/imgbuild-testworld/venv"
    fi
}

find_moto_server() {
    if command -v moto_server 2>/dev/null; then return 0; fi
    local venv_bin
    venv_bin="$(moto_venv)/bin/moto_server"
    if [ -x "$venv_bin" ]; then echo "$venv_bin"; return 0; fi
    return 1
}

find_sshd() {
    # sshd must be started by absolute path (it re-executes itself).
    local p
    p=$(PATH="$PATH:/usr/sbin:/sbin" command -v sshd 2>/dev/null) || return 1
    case "$p" in /*) echo "$p" ;; *) return 1 ;; esac
}

# True if PID exists and is not a zombie.
alive() {
    local line rest
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${line##*) }
    [ "${rest%% *}" != Z ]
}

# True if PID is alive and its command line contains the fixed string $2: guards
# against killing an unrelated process that reused a recorded PID.
pid_matches() {
    local cmdline
    alive "$1" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]]
}

# Prints the given PIDs and all their descendants (children, grandchildren,
# ...), from one scan of /proc.
with_descendants() {
    local -A kids=()
    local f line rest pid ppid queue next
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }
        read -r _ ppid _ <<<"$rest"
        kids[$ppid]+="$pid "
    done
    queue="$*"
    while [ -n "${queue// /}" ]; do
        next=""
        for pid in $queue; do
            echo "$pid"
            next+="${kids[$pid]:-} "
        done
        queue=$next
    done
}

# A TCP port on 127.0.0.1 that is free right now (the kernel picks it).
free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ----------------------------------------------------------------- install ---

# Prints what is missing, one item a line; prints nothing when all is there.
missing_items() {
    find_sshd >/dev/null || echo sshd
    command -v ssh >/dev/null 2>&1 || echo ssh
    command -v ssh-keygen >/dev/null 2>&1 || echo ssh-keygen
    command -v python3 >/dev/null 2>&1 || echo python3
    [ -x "$SYSTEM_PYTHON" ] || echo system-python
    if is_root; then command -v sudo >/dev/null 2>&1 || echo sudo; fi
    find_moto_server >/dev/null || echo moto_server
    if ! [ -x "$AUTHKEYS_CMD" ] || ! cmp -s "$AUTHKEYS_SRC" "$AUTHKEYS_CMD"; then
        echo authorized-keys-command
    fi
    if is_root; then
        id "$ROOT_TEST_USER" >/dev/null 2>&1 || echo test-user
        [ -f "/etc/sudoers.d/$ROOT_TEST_USER" ] || echo sudoers
        [ "$(getent shadow "$ROOT_TEST_USER" | cut -d: -f2)" = '*' ] || echo test-user-password
    fi
    [ -d "$(sandbox_root)" ] || echo sandbox-root
    [ -x "$(ansible_venv)/bin/ansible-playbook" ] || echo ansible
    if is_root; then command -v puppet >/dev/null 2>&1 || echo puppet; fi
    if is_root; then id "$ROOT_PW_USER" >/dev/null 2>&1 || echo pw-user; fi
    command -v sshpass >/dev/null 2>&1 || echo sshpass
    command -v git >/dev/null 2>&1 || echo git
}

# ansible-core for the config-management tests, in a venv of its own (put on PATH by the
# tests: $(ansible_venv)/bin).
ANSIBLE_SPEC='ansible-core>=2.15,<2.18'
ansible_venv() {
    if is_root; then
        echo /usr/local/lib/imgbuild-testworld/ansible-venv
    else
        echo "${XDG_DATA_HOME:-${HOME:?}/.local/share}/imgbuild-testworld/ansible-venv"
    fi
}

install_ansible() {
    local venv
    venv=$(ansible_venv)
    log "pip install $ANSIBLE_SPEC into $venv"
    python3 -m venv "$venv" >&2 || { if is_root || can_sudo; then apt_install python3-venv; fi; python3 -m venv "$venv" >&2; }
    timeout "$INSTALL_TIMEOUT_S" "$venv/bin/pip" install -q "$ANSIBLE_SPEC" >&2
}

# What the local cloud (--real-instances) needs beyond the sandbox world; one item a line.
real_missing_items() {
    PATH="$PATH:/usr/sbin:/sbin" command -v debootstrap >/dev/null 2>&1 || echo debootstrap
    command -v systemd-nspawn >/dev/null 2>&1 || echo systemd-nspawn
    PATH="$PATH:/usr/sbin:/sbin" command -v nft >/dev/null 2>&1 || echo nft
}

# A python3 that can import moto (the local cloud runs moto in-process).
moto_python() {
    if python3 -c 'import moto' >/dev/null 2>&1; then command -v python3; return 0; fi
    local py
    py="$(moto_venv)/bin/python3"
    if [ -x "$py" ] && "$py" -c 'import moto' >/dev/null 2>&1; then echo "$py"; return 0; fi
    return 1
}

# apt-get install, without letting the packages start services (an
# openssh-server postinst would otherwise start the system sshd on port 22).
apt_install() {
    local created_policy=0 rc=0
    if ! [ -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d' \
            && created_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT_S" apt-get
        -y -q -o Dpkg::Options::=--force-confold install --no-install-recommends)
    log "apt-get install $*"
    if ! as_root "${apt[@]}" "$@" >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        as_root timeout "$INSTALL_TIMEOUT_S" apt-get -q update >&2 || true
        as_root "${apt[@]}" "$@" >&2 || rc=$?
    fi
    if [ "$created_policy" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d || true; fi
    return "$rc"
}

install_moto() {
    local user_flag=()
    is_root || user_flag=(--user)
    log "pip install $MOTO_SPEC"
    if timeout "$INSTALL_TIMEOUT_S" python3 -m pip install -q "${user_flag[@]}" "$MOTO_SPEC" >&2 \
        && find_moto_server >/dev/null; then
        return 0
    fi
    # E.g. Debian's externally managed Python: use a private venv instead.
    local venv
    venv=$(moto_venv)
    log "pip install failed or moto_server not on PATH; trying a venv in $venv"
    if ! python3 -m venv "$venv" >&2 2>&1; then
        if is_root || can_sudo; then apt_install python3-venv || true; fi
        python3 -m venv "$venv" >&2 || return 1
    fi
    timeout "$INSTALL_TIMEOUT_S" "$venv/bin/pip" install -q "$MOTO_SPEC" >&2
}

install_authkeys_cmd() {
    [ -f "$AUTHKEYS_SRC" ] || die "$AUTHKEYS_SRC not found"
    log "installing the AuthorizedKeysCommand as $AUTHKEYS_CMD"
    as_root install -d -o root -g root -m 0755 "$LIBEXEC_DIR" \
        && as_root install -o root -g root -m 0755 "$AUTHKEYS_SRC" "$AUTHKEYS_CMD"
}

install_test_user() {
    local u=$ROOT_TEST_USER
    if ! id "$u" >/dev/null 2>&1; then
        log "creating user $u"
        useradd --create-home --user-group --shell /bin/bash --comment "imgbuild test world" "$u"
    fi
    # `*` (no password, not locked): with UsePAM no, sshd refuses a locked (`!`) account.
    [ "$(getent shadow "$u" | cut -d: -f2)" = '*' ] || usermod -p '*' "$u"
    # Passwordless sudo, as on EC2 images (validated before it goes live).
    local want="$u ALL=(ALL:ALL) NOPASSWD: ALL"
    if [ "$(cat "/etc/sudoers.d/$u" 2>/dev/null)" != "$want" ]; then
        local tmp
        tmp=$(mktemp)
        echo "$want" >"$tmp"
        visudo -cqf "$tmp" >&2 || { rm -f "$tmp"; die "sudoers entry rejected by visudo"; }
        install -o root -g root -m 0440 "$tmp" "/etc/sudoers.d/$u"
        rm -f "$tmp"
    fi
}

install_sandbox_root() {
    local root owner
    root=$(sandbox_root)
    owner=$(test_user)
    mkdir -p "$root"
    if is_root; then chown "$owner:" "$root"; fi
    chmod 0755 "$root"
}

do_install() {
    local todo
    # zsh, for the completion tests (best effort: they skip without it, and fail with CI=true).
    if ! command -v zsh >/dev/null 2>&1 && { is_root || can_sudo; }; then
        apt_install zsh || log "zsh was not installed; the zsh completion test will skip"
    fi
    todo=$(missing_items)
    if is_root; then todo+=$(real_missing_items); fi
    [ -n "$todo" ] || { log "everything is installed"; return 0; }
    # Serialise concurrent installs (tests may start several worlds at once).
    exec 9>>"$LOCK_DIR/imgbuild-testworld.$(id -u).install.lock"
    flock -w "$INSTALL_TIMEOUT_S" 9 || die "timed out waiting for another install"
    todo=$(missing_items)

    # 1. Debian packages: sshd, ssh client, sudo, the system python3.
    local pkgs=()
    grep -qx sshd <<<"$todo" && pkgs+=(openssh-server)
    grep -qxE 'ssh|ssh-keygen' <<<"$todo" && pkgs+=(openssh-client)
    grep -qx sudo <<<"$todo" && pkgs+=(sudo)
    grep -qxE 'python3|system-python' <<<"$todo" && pkgs+=(python3)
    grep -qx sshpass <<<"$todo" && pkgs+=(sshpass)
    grep -qx git <<<"$todo" && pkgs+=(git)
    if [ "${#pkgs[@]}" -gt 0 ]; then
        if is_root || can_sudo; then
            apt_install "${pkgs[@]}" || missing "apt-get install ${pkgs[*]} failed"
        else
            missing "${pkgs[*]} (not root and no passwordless sudo to apt-get install them)"
        fi
    fi

    # 1b. The local cloud's tools (root only): debootstrap and systemd-nspawn.
    if is_root; then
        local real
        real=$(real_missing_items)
        if [ -n "$real" ]; then
            local rpkgs=()
            grep -qx debootstrap <<<"$real" && rpkgs+=(debootstrap)
            grep -qx systemd-nspawn <<<"$real" && rpkgs+=(systemd-container)
            grep -qx nft <<<"$real" && rpkgs+=(nftables)
            apt_install "${rpkgs[@]}" || missing "apt-get install ${rpkgs[*]} failed"
        fi
    fi

    # 2. moto's server mode, from PyPI.
    if ! find_moto_server >/dev/null; then
        install_moto || missing "moto_server (pip install '$MOTO_SPEC' failed)"
        find_moto_server >/dev/null || missing "moto_server (installed but not found on PATH)"
    fi

    # 3. The AuthorizedKeysCommand, into the root-owned directory.
    if ! [ -x "$AUTHKEYS_CMD" ] || ! cmp -s "$AUTHKEYS_SRC" "$AUTHKEYS_CMD"; then
        install_authkeys_cmd || missing "$AUTHKEYS_CMD (needs root once: sudo $SCRIPT_PATH install)"
    fi

    # 4. The test user (root only; otherwise the current user is the test user).
    if is_root; then install_test_user; fi
    if is_root && ! id "$ROOT_PW_USER" >/dev/null 2>&1; then
        log "creating user $ROOT_PW_USER (password logins test; no password until a test sets one)"
        useradd --create-home --user-group --shell /bin/bash --password '*' \
            --comment "imgbuild test world, password logins" "$ROOT_PW_USER" \
            || missing "user $ROOT_PW_USER (useradd failed)"
    fi

    # 5. The directory the per-world sandboxes go in.
    install_sandbox_root

    # 6. Ansible (a venv) and Puppet (Debian's package) for the config-management tests.
    if grep -qx ansible <<<"$todo"; then
        install_ansible || missing "ansible-core (pip install '$ANSIBLE_SPEC' failed)"
    fi
    if grep -qx puppet <<<"$todo"; then
        apt_install puppet || missing "puppet (apt-get install puppet failed)"
    fi

    flock -u 9
    exec 9>&-
    todo=$(missing_items)
    [ -z "$todo" ] || missing "still missing after install: ${todo//$'\n'/ }"
    if is_root; then
        todo=$(real_missing_items)
        [ -z "$todo" ] || missing "still missing after install: ${todo//$'\n'/ }"
    fi
    log "install complete"
}

# ------------------------------------------------------------------- start ---

# Stop a service that failed to come up, then say why.
start_failed() {
    log "$1 did not come up; last lines of its log:"
    tail -n 20 "$2" >&2 2>/dev/null || true
}

# Whether PID itself has a listening TCP socket on PORT. The port was free when chosen, but a
# test running in parallel can take it before PID binds it (`bind(0)` may pick a port that is
# merely not bound yet): then the port answers, and it is not PID that answers.
pid_listens_on() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
with open(f"/proc/{pid}/net/tcp") as f:
    for line in f.read().splitlines()[1:]:
        x = line.split()
        if x[3] == "0A" and int(x[1].split(":")[1], 16) == port and x[9] in inodes:
            sys.exit(0)
sys.exit(1)
PY
}

# Wait (bounded) until PID listens on PORT; $3 = extra readiness test (optional).
wait_listening() {
    local pid=$1 port=$2 extra=${3:-true}
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        alive "$pid" || return 1
        if tcp_open "$port" && pid_listens_on "$pid" "$port" && $extra; then return 0; fi
        sleep 0.2
    done
    return 1
}

start_moto() {
    local dir=$1 moto attempt port pid
    moto=$(find_moto_server) || missing moto_server
    for attempt in 1 2 3; do
        port=$(free_port)
        # setsid: own session, so a terminal's ^C reaches only the test process;
        # the watchdog (or `stop`) cleans up. fd 9 (a lock) must not leak into it.
        if [ "$REAL_INSTANCES" = 1 ]; then
            local sg=()
            [ "$SECURITY_GROUPS" = 0 ] || sg=(--security-groups "$TEST_PUBLIC_IP")
            setsid "$(moto_python)" "$LOCALCLOUD_DIR/localcloud_ec2.py" -H 127.0.0.1 -p "$port" --state "$dir/cloud" \
                "${sg[@]}" </dev/null >"$dir/moto.log" 2>&1 9>&- &
        else
            setsid "$moto" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.log" 2>&1 9>&- &
        fi
        pid=$!
        echo "moto $pid" >>"$dir/pids"
        echo "$port" >"$dir/moto.port"
        if wait_listening "$pid" "$port"; then
            MOTO_PORT=$port
            return 0
        fi
        start_failed "moto_server (attempt $attempt, port $port)" "$dir/moto.log"
        kill -KILL "$pid" 2>/dev/null || true
    done
    die "moto_server failed to start"
}

write_sshd_config() {
    local dir=$1 port=$2 moto_port=$3 user cmd_user
    user=$(test_user)
    if is_root; then cmd_user=nobody; else cmd_user=$user; fi
    cat >"$dir/sshd_config" <<EOF
# imgbuild test world sshd (generated by scripts/testworld.sh; loopback only)
ListenAddress 127.0.0.1
Port $port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
LogLevel VERBOSE
PermitRootLogin no
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
StrictModes yes
# Only the key pairs that exist in the EC2 emulator right now.
AuthorizedKeysFile none
AuthorizedKeysCommand $AUTHKEYS_CMD http://127.0.0.1:$moto_port $user %u $AUTH_REGIONS
AuthorizedKeysCommandUser $cmd_user
Subsystem sftp internal-sftp
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PermitTunnel no
# Tests connect in parallel; do not throttle them.
MaxStartups 100:30:200
MaxSessions 50
LoginGraceTime 60
EOF
    # Newer OpenSSH (9.8+) penalises sources with failed logins; tests refuse
    # keys on purpose from 127.0.0.1, so turn that off where it exists.
    local sshd
    sshd=$(find_sshd)
    if "$sshd" -t -f "$dir/sshd_config" -o PerSourcePenalties=no >/dev/null 2>&1; then
        echo "PerSourcePenalties no" >>"$dir/sshd_config"
    fi
}

start_sshd() {
    local dir=$1 moto_port=$2 sshd attempt port pid
    sshd=$(find_sshd) || missing sshd
    # The privilege separation directory (root only; /run is emptied at boot).
    if is_root; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi
    for attempt in 1 2 3; do
        port=$(free_port)
        write_sshd_config "$dir" "$port" "$moto_port"
        "$sshd" -t -f "$dir/sshd_config" || die "sshd rejects $dir/sshd_config"
        rm -f "$dir/sshd.pid"
        setsid "$sshd" -D -e -f "$dir/sshd_config" </dev/null >"$dir/sshd.log" 2>&1 9>&- &
        pid=$!
        echo "sshd $pid" >>"$dir/pids"
        # sshd writes its PidFile once its socket is bound.
        if wait_listening "$pid" "$port" "test -s $dir/sshd.pid"; then
            SSHD_PORT=$port
            return 0
        fi
        start_failed "sshd (attempt $attempt, port $port)" "$dir/sshd.log"
        kill -KILL "$pid" 2>/dev/null || true
    done
    die "sshd failed to start"
}

# The address the world's "what is my public IP" server answers (TEST-NET-2: never routed).
TEST_PUBLIC_IP=198.51.100.7

# A tiny HTTP server on 127.0.0.1 that answers every GET of /ip with TEST_PUBLIC_IP, so
# that imgbuild's lookup of this machine's public address (the temporary security group's
# default rule; IMGBUILD_PUBLIC_IP_URL in the env file) never asks the internet.
start_ipserver() {
    local dir=$1 attempt port pid
    mkdir -p "$dir/ipserver"
    echo "$TEST_PUBLIC_IP" >"$dir/ipserver/ip"
    for attempt in 1 2 3; do
        port=$(free_port)
        setsid python3 -m http.server --bind 127.0.0.1 --directory "$dir/ipserver" "$port" \
            </dev/null >"$dir/ipserver.log" 2>&1 9>&- &
        pid=$!
        echo "ipserver $pid" >>"$dir/pids"
        if wait_listening "$pid" "$port"; then
            IPSERVER_PORT=$port
            return 0
        fi
        start_failed "ipserver (attempt $attempt, port $port)" "$dir/ipserver.log"
        kill -KILL "$pid" 2>/dev/null || true
    done
    die "the public-address server failed to start"
}

# moto builds a region's backend (1000+ AMIs) on first use, which can take
# seconds; do it now, with a long timeout, instead of inside sshd's
# AuthorizedKeysCommand (whose timeout is short). Also proves EC2 answers.
warm_up_moto() {
    local port=$1 region
    for region in $AUTH_REGIONS; do
        python3 - "$port" "$region" <<'EOF' || die "moto does not answer DescribeKeyPairs in $region"
import sys, urllib.request
port, region = sys.argv[1], sys.argv[2]
req = urllib.request.Request(
    "http://127.0.0.1:%s/" % port,
    data=b"Action=DescribeKeyPairs&Version=2016-11-15&IncludePublicKey=true",
    headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/%s/ec2/aws4_request, "
        "SignedHeaders=host, Signature=0" % region,
    },
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
body = opener.open(req, timeout=60).read()
assert b"DescribeKeyPairsResponse" in body, body[:300]
EOF
    done
}

# Run the installed AuthorizedKeysCommand the way sshd will (as its user), so a
# broken install shows here rather than as mysterious login failures.
check_authkeys_cmd() {
    local port=$1 user
    user=$(test_user)
    local regions argv
    read -r -a regions <<<"$AUTH_REGIONS"
    argv=("$AUTHKEYS_CMD" "http://127.0.0.1:$port" "$user" "$user" "${regions[@]}")
    if is_root; then
        timeout 30 runuser -u nobody -- "${argv[@]}" >/dev/null \
            || die "$AUTHKEYS_CMD does not run as user nobody"
    else
        timeout 30 "${argv[@]}" >/dev/null || die "$AUTHKEYS_CMD does not run"
    fi
}

# The env file. AWS_ENDPOINT_URL sends every AWS SDK client without an endpoint of its own
# (imgbuild cleanup's tag search, the post-processors' CloudFormation and SSM) to the emulator,
# so a shell that sourced it never reaches real AWS; the integration tests leave it out
# (tests/integration/world.rs) so that a template must reach the emulator through its own
# custom_endpoint_ec2.
write_env() {
    local dir=$1 sandbox=$2
    cat >"$dir/env.tmp" <<EOF
IMGBUILD_TEST_EC2_ENDPOINT=http://127.0.0.1:$MOTO_PORT
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
IMGBUILD_TEST_SSH_HOST=127.0.0.1
IMGBUILD_TEST_SSH_PORT=$SSHD_PORT
IMGBUILD_TEST_SSH_USER=$(test_user)
IMGBUILD_TEST_SANDBOX=$sandbox
IMGBUILD_TEST_STATE_DIR=$dir
IMGBUILD_PUBLIC_IP_URL=http://127.0.0.1:$IPSERVER_PORT/ip
IMGBUILD_TEST_PUBLIC_IP=$TEST_PUBLIC_IP
IMGBUILD_TEST_REAL_INSTANCES=$REAL_INSTANCES
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_DEFAULT_REGION=$REGION
AWS_REGION=$REGION
AWS_EC2_METADATA_DISABLED=true
EOF
    mv "$dir/env.tmp" "$dir/env"
}

start_watchdog() {
    local dir=$1 owner=$2 pid
    setsid bash "$SCRIPT_PATH" _watch "$dir" "$owner" "$$" </dev/null >>"$dir/watch.log" 2>&1 9>&- &
    pid=$!
    echo "watch $pid" >>"$dir/pids"
}

do_start() {
    local dir=$DEFAULT_STATE_DIR owner=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --owner-pid) owner=${2:?--owner-pid needs a PID}; shift 2 ;;
            --real-instances) REAL_INSTANCES=1; shift ;;
            --security-groups) SECURITY_GROUPS=1; shift ;;
            --no-security-groups) SECURITY_GROUPS=0; shift ;;
            -*) usage ;;
            *) dir=$1; shift ;;
        esac
    done
    [ -z "$owner" ] || [[ "$owner" =~ ^[0-9]+$ ]] || die "bad --owner-pid $owner"

    # 1. Install whatever is missing (quick no-op when everything is there).
    if [ -n "$(missing_items)" ]; then do_install; fi
    if [ "$REAL_INSTANCES" = 1 ]; then
        # Real apt and pip downloads kept between runs on this machine (set empty to turn off).
        export IMGBUILD_LOCALCLOUD_APT_CACHE=${IMGBUILD_LOCALCLOUD_APT_CACHE-/var/cache/imgbuild-localcloud/apt-archives}
        export IMGBUILD_LOCALCLOUD_PIP_CACHE=${IMGBUILD_LOCALCLOUD_PIP_CACHE-/var/cache/imgbuild-localcloud/pip-cache}
        is_root || missing "root (the local cloud mounts overlays and runs systemd-nspawn; run as root)"
        if [ -n "$(real_missing_items)" ]; then do_install; fi
        moto_python >/dev/null || missing "a python3 that can import moto"
    fi

    # 2. The state directory: absolute, no whitespace (it goes into sshd_config),
    #    empty or new, private, and marked as ours so `stop` may remove it.
    [[ "$dir" != *[[:space:]]* ]] || die "STATE_DIR must not contain whitespace"
    mkdir -p -- "$dir"
    dir=$(cd -- "$dir" && pwd -P)
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty (a world running there? try: $0 stop $dir)"
    chmod 0700 "$dir"
    touch "$dir/.imgbuild-testworld"
    # From here on, a failure stops whatever was started.
    STARTING_DIR=$dir
    trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; cleaning up"; do_stop "$STARTING_DIR" >/dev/null 2>&1 || true; fi' EXIT

    # 3. The watchdog for an owner process comes first, so that whatever is
    #    started below is stopped even if this script is killed half-way.
    if [ -n "$owner" ]; then start_watchdog "$dir" "$owner"; fi

    # 3b. The local cloud's base root: built once (debootstrap, about a minute), then cached.
    if [ "$REAL_INSTANCES" = 1 ]; then
        timeout 1800 python3 "$LOCALCLOUD_DIR/localcloud.py" base >/dev/null \
            || die "could not build the local cloud's base root (see above)"
    fi

    # 4. sshd's own host key, in the state directory.
    ssh-keygen -q -t ed25519 -N '' -C imgbuild-testworld -f "$dir/ssh_host_ed25519_key"

    # 5. A fresh sandbox directory in the test user's home for this world.
    local sandbox
    sandbox=$(mktemp -d "$(sandbox_root)/world.XXXXXXXX")
    chown "$(test_user):" "$sandbox"
    chmod 0755 "$sandbox"
    echo "$sandbox" >"$dir/sandbox"

    # 6. moto_server and sshd on free ports. Choosing a port and binding it is
    #    serialised between concurrent starts, so two worlds never pick the same.
    exec 9>>"$LOCK_DIR/imgbuild-testworld.$(id -u).ports.lock"
    flock -w 120 9 || die "timed out waiting for the port lock"
    start_moto "$dir"
    start_sshd "$dir" "$MOTO_PORT"
    start_ipserver "$dir"
    flock -u 9
    exec 9>&-

    # 7. Readiness beyond "port open": EC2 answers in the regions sshd asks, and
    #    the AuthorizedKeysCommand runs as sshd will run it.
    warm_up_moto "$MOTO_PORT"
    check_authkeys_cmd "$MOTO_PORT"

    # 8. The env file.
    write_env "$dir" "$sandbox"
    trap - EXIT
    log "world started in $dir"
    cat "$dir/env"
}

# -------------------------------------------------------------------- stop ---

# The string a recorded process's command line must contain to be ours.
marker_for() {
    local name=$1 dir=$2
    case "$name" in
        moto) echo "127.0.0.1 -p $(cat "$dir/moto.port" 2>/dev/null || echo none)" ;;
        sshd) echo "$dir/sshd_config" ;;
        watch) echo "_watch $dir" ;;
        ipserver) echo "--directory $dir/ipserver" ;;
        *) echo "/nonexistent-marker" ;;
    esac
}

do_stop() {
    local dir=${1:-$DEFAULT_STATE_DIR}
    if ! [ -e "$dir" ]; then log "nothing to stop in $dir"; return 0; fi
    dir=$(cd -- "$dir" && pwd -P)
    [ -f "$dir/.imgbuild-testworld" ] || die "$dir is not a test world state directory"

    # 0. The local cloud's instances (machines, mounts, cgroups), before their supervisors go.
    if [ -d "$dir/cloud" ]; then
        timeout 120 python3 "$LOCALCLOUD_DIR/localcloud.py" teardown "$dir/cloud" \
            || log "warning: local cloud teardown failed"
    fi

    # 1. Our recorded processes (still ours by their command line) and their
    #    descendants (e.g. sshd's per-connection processes). Never this process:
    #    the watchdog execs into `stop`.
    local roots=() pids=() name pid p
    if [ -f "$dir/pids" ]; then
        while read -r name pid; do
            [[ "$pid" =~ ^[0-9]+$ ]] || continue
            [ "$pid" != "$$" ] || continue
            if pid_matches "$pid" "$(marker_for "$name" "$dir")"; then roots+=("$pid"); fi
        done <"$dir/pids"
    fi
    if [ "${#roots[@]}" -gt 0 ]; then
        for p in $(with_descendants "${roots[@]}"); do
            if [ "$p" != "$$" ]; then pids+=("$p"); fi
        done
    fi

    # 2. TERM, wait (bounded), then KILL whatever is left, and wait again.
    if [ "${#pids[@]}" -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT_S)) left
        while :; do
            left=()
            for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
            [ "${#left[@]}" -gt 0 ] || break
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "still running after ${STOP_TIMEOUT_S}s, sending KILL: ${left[*]}"
                kill -KILL "${left[@]}" 2>/dev/null || true
                deadline=$((SECONDS + 5))
                while [ "$SECONDS" -lt "$deadline" ]; do
                    left=()
                    for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
                    [ "${#left[@]}" -gt 0 ] || break
                    sleep 0.1
                done
                [ "${#left[@]}" -eq 0 ] || log "warning: could not stop: ${left[*]}"
                break
            fi
            sleep 0.1
        done
    fi

    # 3. The world's sandbox (only a world.* directory under the sandbox root).
    local sandbox
    sandbox=$(cat "$dir/sandbox" 2>/dev/null || true)
    if [ -n "$sandbox" ] && [[ "$sandbox" == "$(sandbox_root)"/world.* ]] && [ -d "$sandbox" ]; then
        rm -rf -- "$sandbox" || log "warning: could not remove $sandbox"
    fi

    # 4. The state directory itself (the local cloud again first: an instance launched while
    #    the processes were stopping).
    if [ -d "$dir/cloud" ]; then
        timeout 120 python3 "$LOCALCLOUD_DIR/localcloud.py" teardown "$dir/cloud" \
            || log "warning: local cloud teardown failed"
    fi
    rm -rf --one-file-system -- "$dir" || true
    log "world in $dir stopped"
}

# ------------------------------------------------------------ status/watch ---

do_status() {
    local dir=${1:-$DEFAULT_STATE_DIR} rc=0 name pid
    [ -f "$dir/.imgbuild-testworld" ] || { echo "no test world in $dir"; return 1; }
    dir=$(cd -- "$dir" && pwd -P)
    cat "$dir/env" 2>/dev/null || { echo "(no env file: starting or failed)"; rc=1; }
    while read -r name pid; do
        if pid_matches "$pid" "$(marker_for "$name" "$dir")"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running (pid $pid)"
            [ "$name" = watch ] || rc=1
        fi
    done <"$dir/pids"
    return "$rc"
}

# Watchdog: poll (1 s) until the owner process is gone, the world was stopped,
# or the maximum lifetime is over; then let the `start` that launched it finish
# (it may still be launching processes; bounded wait), and become `stop` (same
# PID, so `stop` does not kill it).
do_watch() {
    local dir=$1 owner=$2 starter=$3
    local deadline=$((SECONDS + MAX_LIFETIME_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ -f "$dir/.imgbuild-testworld" ] || exit 0
        kill -0 "$owner" 2>/dev/null || break
        sleep 1
    done
    deadline=$((SECONDS + 2 * READY_TIMEOUT_S + 120))
    while pid_matches "$starter" "testworld.sh start" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    [ -f "$dir/.imgbuild-testworld" ] || exit 0
    exec bash "$SCRIPT_PATH" stop "$dir"
}

# -------------------------------------------------------------------- main ---

main() {
    [ $# -ge 1 ] || usage
    local sub=$1
    shift
    case "$sub" in
        install) [ $# -eq 0 ] || usage; do_install ;;
        start) do_start "$@" ;;
        stop) [ $# -le 1 ] || usage; do_stop "$@" ;;
        status) [ $# -le 1 ] || usage; do_status "$@" ;;
        _watch) [ $# -eq 3 ] || usage; do_watch "$@" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
