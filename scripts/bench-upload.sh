#!/usr/bin/env bash
# Benchmark uploads to the same sshd (the local test world's, scripts/testworld.sh) in one run:
#   imgbuild's file provisioner (through the null builder), scp -r (legacy SCP protocol, -O,
#   Packer's protocol, and the default SFTP mode), rsync -a, tar c | ssh tar x, and Packer
#   1.6.6's file provisioner (through its null builder).
# Two cases: a tree of small files (default 2,000 files, about 10 MB, in 40 directories) and
# one large file (default 200 MB), both random (incompressible), generated in a temporary
# directory, uploaded into the world's sandbox and removed after each run.
# Prints, per case and tool, the median over the runs of the wall time (a fresh SSH connection
# included, as a user pays it) and the throughput; for imgbuild and Packer also the transfer
# phase alone (from the "Uploading" line to the next line of their output), and imgbuild's CPU
# time per MB. Tools run round-robin within each run, so drift hits all of them alike.
#
# Usage: scripts/bench-upload.sh [-n RUNS] [--files N] [--tree-mb MB] [--big-mb MB] [--rtt-ms MS]
#                                [--no-netns]
#   -n RUNS       runs per tool and case (default 5, at most 50)
#   --files N     files in the tree (default 2000)
#   --tree-mb MB  total size of the tree (default 10)
#   --big-mb MB   size of the large file (default 200)
#   --rtt-ms MS   add MS of round-trip latency (default 0): every tool then connects through a
#                 small local TCP proxy (Python, asyncio) that holds each chunk for MS/2 in each
#                 direction, as a network between a CI runner and an EC2 instance would; loopback
#                 has next to no latency, which hides the cost of per-file acknowledgements
#   --no-netns    do not re-run inside a new network namespace (unshare -n)
#
# Environment: IMGBUILD_BIN (default target/release/imgbuild; build it with
# `cargo build --release` and copy it somewhere private when worktrees share target/),
# PACKER_BIN (default /usr/bin/packer; its column is skipped when missing).
#
# Loopback only: the run re-executes itself inside `unshare -n` (only a loopback interface)
# when it can; in any case HTTP(S) proxies point at the closed port 127.0.0.1:9 for anything
# that is not loopback, AWS credentials are dummy and the instance metadata service is off.
# rsync and GNU time are installed with apt-get before isolating, when missing.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORIG_ARGS=("$@")
RUNS=5
FILES=2000
TREE_MB=10
BIG_MB=200
RTT_MS=0
NETNS=1
die() { echo "bench-upload.sh: $*" >&2; exit 1; }
note() { echo "bench-upload.sh: $*" >&2; }
while (($#)); do
    case $1 in
        -n) RUNS=${2:?}; shift 2 ;;
        --files) FILES=${2:?}; shift 2 ;;
        --tree-mb) TREE_MB=${2:?}; shift 2 ;;
        --big-mb) BIG_MB=${2:?}; shift 2 ;;
        --rtt-ms) RTT_MS=${2:?}; shift 2 ;;
        --no-netns) NETNS=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "-n must be 1..50"
[[ $FILES =~ ^[0-9]+$ ]] && ((FILES >= 1 && FILES <= 100000)) || die "--files must be 1..100000"
[[ $TREE_MB =~ ^[0-9]+$ ]] && ((TREE_MB >= 1 && TREE_MB <= 1000)) || die "--tree-mb must be 1..1000"
[[ $BIG_MB =~ ^[0-9]+$ ]] && ((BIG_MB >= 1 && BIG_MB <= 4000)) || die "--big-mb must be 1..4000"
[[ $RTT_MS =~ ^[0-9]+$ ]] && ((RTT_MS <= 200)) || die "--rtt-ms must be 0..200"

as_root() { if ((EUID == 0)); then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

# ------------------------------------------------------------------ tools (before isolating) ---
if [[ -z ${BENCH_IN_NETNS:-} ]]; then
    for t in rsync:rsync time:/usr/bin/time; do
        pkg=${t%%:*} bin=${t#*:}
        if ! command -v "$bin" >/dev/null; then
            note "$bin not found: apt-get install -y $pkg"
            as_root apt-get install -y "$pkg" >&2 \
                || { as_root apt-get update >&2 && as_root apt-get install -y "$pkg" >&2; } \
                || die "could not install $pkg"
        fi
    done
    if ((NETNS)) && command -v unshare >/dev/null; then
        for flags in -n -rn; do
            if unshare "$flags" true 2>/dev/null; then
                exec unshare "$flags" env BENCH_IN_NETNS="unshare $flags" "$BASH" "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}"
            fi
        done
    fi
    BENCH_IN_NETNS=none
fi
if [[ $BENCH_IN_NETNS != none ]] && command -v ip >/dev/null; then ip link set lo up 2>/dev/null || true; fi

IMGBUILD_BIN=${IMGBUILD_BIN:-$ROOT/target/release/imgbuild}
[[ -x $IMGBUILD_BIN ]] || die "no imgbuild binary at $IMGBUILD_BIN: cargo build --release, or set IMGBUILD_BIN"
PACKER_BIN=${PACKER_BIN:-/usr/bin/packer}
[[ -x $PACKER_BIN ]] || { note "packer not found at $PACKER_BIN: its column is skipped"; PACKER_BIN=; }

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EC2 \
      PACKER_LOG PACKER_LOG_PATH SSH_AUTH_SOCK
export CHECKPOINT_DISABLE=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench-upload.XXXXXX")
STATE=$WORK/world
PROXY_PID=
cleanup() {
    if [[ -n $PROXY_PID ]]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
    bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null \
    || die "the test world did not start (scripts/testworld.sh start)"
set -a; . "$STATE/env"; set +a
# Everything not on loopback goes to a closed port.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY all_proxy=$ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export AWS_EC2_METADATA_DISABLED=true IMGBUILD_JOURNAL_DIR=$WORK/journal
HOST=$IMGBUILD_TEST_SSH_HOST PORT=$IMGBUILD_TEST_SSH_PORT USER_=$IMGBUILD_TEST_SSH_USER
if ((RTT_MS > 0)); then
    # A latency proxy in front of sshd: every chunk is held RTT/2 in each direction.
    cat > "$WORK/delay.py" <<'EOF'
import asyncio, sys, time
listen, target, one_way = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 2000.0
async def pipe(reader, writer):
    q = asyncio.Queue(maxsize=256)
    async def rd():
        while True:
            data = await reader.read(65536)
            await q.put((time.monotonic() + one_way, data))
            if not data:
                return
    async def wr():
        while True:
            due, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()
    try:
        await asyncio.gather(rd(), wr())
    except (ConnectionError, OSError):
        pass
async def handle(cr, cw):
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
    cw.close(); sw.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
EOF
    PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 "$WORK/delay.py" "$PROXY_PORT" "$PORT" "$RTT_MS" > "$WORK/proxy.log" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 100); do grep -q ready "$WORK/proxy.log" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$WORK/proxy.log" || die "the latency proxy did not start: $(cat "$WORK/proxy.log")"
    PORT=$PROXY_PORT
fi
SANDBOX=$IMGBUILD_TEST_SANDBOX

# ------------------------------------------------------------------------------ inputs ---
note "generating $FILES files ($TREE_MB MB) and a $BIG_MB MB file in $WORK"
mkdir -p "$WORK/src"
python3 - "$WORK/src/tree" "$FILES" "$TREE_MB" <<'EOF'
import os, sys
root, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = max(1, mb * 1000 * 1000 // n)
dirs = max(1, n // 50)
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % dirs))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(per))
EOF
head -c $((BIG_MB * 1000 * 1000)) /dev/urandom > "$WORK/src/big.bin"
TREE_BYTES=$(find "$WORK/src/tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
TREE_FILES=$(find "$WORK/src/tree" -type f | wc -l)
BIG_BYTES=$(stat -c %s "$WORK/src/big.bin")
sync

# A key of the benchmark's own, imported into the emulator so that sshd accepts it.
ssh-keygen -q -t ed25519 -N "" -C bench-upload -f "$WORK/key" >/dev/null
python3 - "$IMGBUILD_TEST_EC2_ENDPOINT" "$WORK/key.pub" <<'EOF'
import base64, sys, urllib.parse, urllib.request
endpoint, pub = sys.argv[1], open(sys.argv[2]).read().strip()
data = urllib.parse.urlencode({"Action": "ImportKeyPair", "Version": "2016-11-15",
    "KeyName": "bench-upload", "PublicKeyMaterial": base64.b64encode(pub.encode()).decode()}).encode()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# moto takes the region from the credential scope of the (unchecked) signature.
auth = "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
opener.open(urllib.request.Request(endpoint + "/", data=data, headers={"Authorization": auth}), timeout=30).read()
EOF
SSH_OPTS=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o IdentityAgent=none
          -o ConnectTimeout=10 -o LogLevel=ERROR -i "$WORK/key")
SSH_CMD="ssh ${SSH_OPTS[*]} -p $PORT"
rsh() { timeout 120 ssh "${SSH_OPTS[@]}" -p "$PORT" "$USER_@$HOST" -- "$@"; }
rsh true || die "cannot log in to the world's sshd with the imported key"

# Templates: a null builder with one file provisioner; the destination is a variable.
template() { # SOURCE DESTINATION
    cat <<JSON
{
  "variables": {"dest": null},
  "builders": [{"type": "null", "ssh_host": "$HOST", "ssh_port": $PORT, "ssh_username": "$USER_",
                "ssh_private_key_file": "$WORK/key", "ssh_timeout": "1m"}],
  "provisioners": [{"type": "file", "source": "$1", "destination": "$2"}]
}
JSON
}
template "$WORK/src/tree" '{{user `dest`}}' > "$WORK/tree.json"
template "$WORK/src/big.bin" '{{user `dest`}}/big.bin' > "$WORK/big.json"
"$IMGBUILD_BIN" validate -var dest=/x "$WORK/tree.json" >/dev/null \
    || die "$IMGBUILD_BIN does not know the null builder (too old?)"

# ---------------------------------------------------------------------------- running ---
# Stamps each output line with the seconds since the start of the pipe.
stamp() { perl -MTime::HiRes=time -ne 'BEGIN{$|=1; $t0=time} printf "%.4f %s", time-$t0, $_'; }
now() { date +%s%N; }

# transfer <stamped output>: seconds from the "Uploading" line to the next line.
transfer() {
    awk '/Uploading / && !s {s=$1; next} s && !e {e=$1} END {if (s && e) printf "%.3f\n", e-s; else print "-"}' "$1"
}

# run CASE TOOL I: one timed upload; appends "wall transfer cpu" to $WORK/CASE.TOOL.
run() {
    local case=$1 tool=$2 i=$3 dest=$SANDBOX/$2-$1-$3 out=$WORK/out.$1.$2.$3 tf=$WORK/time
    rsh "mkdir -p '$dest'"
    local src=$WORK/src/tree
    [[ $case == big ]] && src=$WORK/src/big.bin
    local t0 t1 rc=0
    t0=$(now)
    case $tool in
        imgbuild)
            /usr/bin/time -f "%U %S" -o "$tf" "$IMGBUILD_BIN" build -color=false -var "dest=$dest" \
                "$WORK/$case.json" 2>&1 | stamp > "$out" || rc=$? ;;
        packer)
            (cd "$WORK" && /usr/bin/time -f "%U %S" -o "$tf" "$PACKER_BIN" build -color=false \
                -var "dest=$dest" "$WORK/$case.json" 2>&1 | stamp > "$out") || rc=$? ;;
        scp-O)
            if [[ $case == big ]]; then
                /usr/bin/time -f "%U %S" -o "$tf" scp -O -q "${SSH_OPTS[@]}" -P "$PORT" "$src" "$USER_@$HOST:$dest/big.bin" >"$out" 2>&1 || rc=$?
            else
                /usr/bin/time -f "%U %S" -o "$tf" scp -O -q -r "${SSH_OPTS[@]}" -P "$PORT" "$src" "$USER_@$HOST:$dest" >"$out" 2>&1 || rc=$?
            fi ;;
        scp-sftp)
            if [[ $case == big ]]; then
                /usr/bin/time -f "%U %S" -o "$tf" scp -q "${SSH_OPTS[@]}" -P "$PORT" "$src" "$USER_@$HOST:$dest/big.bin" >"$out" 2>&1 || rc=$?
            else
                /usr/bin/time -f "%U %S" -o "$tf" scp -q -r "${SSH_OPTS[@]}" -P "$PORT" "$src" "$USER_@$HOST:$dest" >"$out" 2>&1 || rc=$?
            fi ;;
        rsync)
            if [[ $case == big ]]; then
                /usr/bin/time -f "%U %S" -o "$tf" rsync -a -e "$SSH_CMD" "$src" "$USER_@$HOST:$dest/big.bin" >"$out" 2>&1 || rc=$?
            else
                /usr/bin/time -f "%U %S" -o "$tf" rsync -a -e "$SSH_CMD" "$src" "$USER_@$HOST:$dest/" >"$out" 2>&1 || rc=$?
            fi ;;
        tar-ssh)
            /usr/bin/time -f "%U %S" -o "$tf" bash -c 'set -o pipefail
                tar -C "$1" -cf - "$2" | ssh "${@:5}" -p "$3" "$4" -- "tar -C $0 -xf -"' \
                "$dest" "$(dirname "$src")" "$(basename "$src")" "$PORT" "$USER_@$HOST" "${SSH_OPTS[@]}" \
                >"$out" 2>&1 || rc=$? ;;
    esac
    t1=$(now)
    if ((rc != 0)); then
        echo "$tool ($case, run $i) failed with $rc:" >&2; tail -20 "$out" >&2; exit 1
    fi
    # The upload really happened: count and bytes on the server (the sandbox is on this machine).
    local got_files got_bytes
    got_files=$(find "$dest" -type f | wc -l)
    got_bytes=$(find "$dest" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    local want_files=$TREE_FILES want_bytes=$TREE_BYTES
    [[ $case == big ]] && want_files=1 want_bytes=$BIG_BYTES
    if [[ $got_files != "$want_files" || $got_bytes != "$want_bytes" ]]; then
        die "$tool ($case, run $i): the server has $got_files files / $got_bytes bytes, expected $want_files / $want_bytes"
    fi
    rm -rf -- "$dest"
    # Write back (and discard) now, not during the next tool's run.
    sync
    local wall tr cpu
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b-a)/1e9}')
    tr=-
    [[ $tool == imgbuild || $tool == packer ]] && tr=$(transfer "$out")
    cpu=$(awk '{printf "%.3f", $1+$2}' "$tf")
    echo "$wall $tr $cpu" >> "$WORK/res/$case.$tool"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v c="$1" '$c != "-" {print $c}' "$2" | median; }

TOOLS=(imgbuild scp-O scp-sftp rsync tar-ssh)
[[ -n $PACKER_BIN ]] && TOOLS+=(packer)
note "timing ${#TOOLS[@]} tools x 2 cases x $RUNS runs against sshd on $HOST:$PORT"
# One untimed round first: page cache, sshd's first AuthorizedKeysCommand, Packer's plugin scan.
mkdir -p "$WORK/res"
for case in tree big; do for tool in "${TOOLS[@]}"; do run "$case" "$tool" 0; done; done
rm -rf "$WORK/res"; mkdir -p "$WORK/res"
for i in $(seq "$RUNS"); do
    for case in tree big; do for tool in "${TOOLS[@]}"; do run "$case" "$tool" "$i"; done; done
    t0=$(now); rsh true; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)/1e9}' >> "$WORK/res/login"
done

# ---------------------------------------------------------------------------- report ---
label() {
    case $1 in
        imgbuild) echo "imgbuild file provisioner (null builder)" ;;
        packer) echo "packer 1.6.6 file provisioner (null builder)" ;;
        scp-O) echo "scp -O -r (SCP protocol)" ;;
        scp-sftp) echo "scp -r (SFTP protocol)" ;;
        rsync) echo "rsync -a" ;;
        tar-ssh) echo "tar c | ssh tar x" ;;
    esac
}
echo
echo "Uploads to the test world's sshd ($HOST, OpenSSH $(ssh -V 2>&1 | sed 's/^OpenSSH_\([^,]*\).*/\1/')); median of $RUNS runs, after one warm-up round."
echo "Wall time includes starting the tool and a fresh SSH connection: a plain \`ssh host true\` takes $(median < "$WORK/res/login") s here (the world's sshd looks the key up in the EC2 emulator at each login)."
echo "'transfer' is the upload phase alone (from the tool's 'Uploading' line to its next line); CPU is user+sys of the whole command."
echo "Network: $BENCH_IN_NETNS; added round-trip latency: ${RTT_MS} ms$( ((RTT_MS > 0)) && echo " (through a local delay proxy)"); imgbuild: $IMGBUILD_BIN; packer: ${PACKER_BIN:-not installed}"
for case in tree big; do
    if [[ $case == tree ]]; then
        bytes=$TREE_BYTES; title="tree: $TREE_FILES files, $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b/1e6}') MB"
    else
        bytes=$BIG_BYTES; title="one file: $(awk -v b="$bytes" 'BEGIN {printf "%.0f", b/1e6}') MB"
    fi
    echo
    printf '%-46s %9s %9s %12s %9s %10s\n' "$title" "wall (s)" "MB/s" "transfer (s)" "CPU (s)" "CPU ms/MB"
    for tool in "${TOOLS[@]}"; do
        f=$WORK/res/$case.$tool
        wall=$(col 1 "$f"); tr=$(col 2 "$f"); cpu=$(col 3 "$f")
        mbs=$(awk -v b="$bytes" -v w="$wall" 'BEGIN {printf "%.1f", b/1e6/w}')
        per=$(awk -v b="$bytes" -v c="$cpu" 'BEGIN {printf "%.2f", c*1000/(b/1e6)}')
        printf '%-46s %9s %9s %12s %9s %10s\n' "$(label "$tool")" "$wall" "$mbs" "$tr" "$cpu" "$per"
        echo "$wall" > "$WORK/res/median.$case.$tool"
    done
done
echo
ratio() { awk -v a="$(cat "$WORK/res/median.$1.$2")" -v b="$(cat "$WORK/res/median.$1.$3")" 'BEGIN {printf "%.2f", b/a}'; }
if [[ -n $PACKER_BIN ]]; then
    echo "aim: tree at least 5x faster than Packer's file provisioner: $(ratio tree imgbuild packer)x"
fi
echo "aim: tree no slower than tar | ssh: imgbuild takes $(ratio tree tar-ssh imgbuild)x the time of tar | ssh"
echo "aim: large file at least as fast as scp -O: imgbuild takes $(ratio big scp-O imgbuild)x the time of scp -O"
