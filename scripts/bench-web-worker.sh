#!/usr/bin/env bash
# Benchmark a whole web worker build: the web-worker-shaped test template
# (tests/fixtures/web_worker/template.json: amazon-ebs with source_ami_filter, a timestamped
# name, tags and snapshot tags with {{ .SourceAMI }}, a copy to us-west-2, ami_users, and the
# web worker's provisioners over SSH: 2 shell scripts, 5 uploads including the real
# provisioners/ trees, an inline command, 4 scripts with environment variables) built by imgbuild
# and by Packer 1.6.6 against one local test world (moto as EC2 through custom_endpoint_ec2,
# the world's sshd as the instance through ssh_host/ssh_port), each with its own temporary key
# pair, several times, alternating.
#
# Prints the median wall time of each tool and of each phase (from the time stamps of their
# output lines), the peak memory, and the tool's own overhead: wall time minus the time spent
# in remote commands (the scripts record their own run time in the sandbox) and transfers (each
# upload from its "Uploading" line to the next line).
#
# Usage: scripts/bench-web-worker.sh [-n RUNS] [--no-netns]
#   -n RUNS      builds per tool (default 5, at most 30)
#   --no-netns   do not re-run inside a new network namespace (unshare -n)
#
# Environment: IMGBUILD_BIN (default target/release/imgbuild: build it with `cargo build
# --release`; copy it somewhere private when worktrees share target/), PACKER_BIN (default
# /usr/bin/packer; skipped when missing).
#
# Loopback only: the run re-executes itself inside `unshare -n` (only a loopback interface)
# when it can; in any case HTTP(S) proxies point at the closed port 127.0.0.1:9 for anything not
# on loopback, AWS credentials are dummy and the instance metadata service is off.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORIG_ARGS=("$@")
RUNS=5
NETNS=1
die() { echo "bench-web-worker.sh: $*" >&2; exit 1; }
note() { echo "bench-web-worker.sh: $*" >&2; }
while (($#)); do
    case $1 in
        -n) RUNS=${2:?}; shift 2 ;;
        --no-netns) NETNS=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 30)) || die "-n must be 1..30"

if [[ -z ${BENCH_IN_NETNS:-} ]]; then
    if ! [[ -x /usr/bin/time ]]; then
        note "GNU time not found: apt-get install -y time"
        { ((EUID == 0)) && apt-get install -y time >&2; } || die "could not install GNU time"
    fi
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
[[ -x $PACKER_BIN ]] || { note "packer not found at $PACKER_BIN: skipped"; PACKER_BIN=; }
TEMPLATE=$ROOT/tests/fixtures/web_worker/template.json

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EC2 \
      PACKER_LOG PACKER_LOG_PATH SSH_AUTH_SOCK IMGBUILD_LOG
export CHECKPOINT_DISABLE=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench-ww.XXXXXX")
STATE=$WORK/world
cleanup() {
    bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null \
    || die "the test world did not start (scripts/testworld.sh start)"
set -a; . "$STATE/env"; set +a
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY all_proxy=$ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export IMGBUILD_JOURNAL_DIR=$WORK/journal
mkdir -p "$WORK/res" "$WORK/cwd"

# A sandbox directory of the run's own, writable by the test user.
sandbox_dir() {
    local d=$IMGBUILD_TEST_SANDBOX/$1
    mkdir -p "$d"
    if ((EUID == 0)); then chown "$IMGBUILD_TEST_SSH_USER:" "$d"; fi
    echo "$d"
}

stamp() { perl -MTime::HiRes=time -ne 'BEGIN{$|=1; $t0=time} printf "%.4f %s", time-$t0, $_'; }
now() { date +%s%N; }

# The phases, as "name|imgbuild line|packer line" (the line that starts the next phase).
PHASES=(
    "prepare: source AMI, name check, key pair, security group|Launching a source instance|Launching a source AWS instance"
    "launch, wait until running|Waiting for SSH to become available|Waiting for SSH to become available"
    "SSH connect|Connected to SSH!|Connected to SSH!"
    "provisioning (11 provisioner steps)|Stopping the source instance|Stopping the source instance"
    "stop, wait until stopped|Creating AMI |Creating AMI "
    "AMI, copy to us-west-2, share, tags|Cleaning up: |Terminating the source AWS instance"
    "teardown (Packer: + manifest)|Build 'web_worker' finished|Build 'web_worker' finished"
)

# analyse TOOL OUT WALL TIMINGS -> one line of numbers: phases..., exit, transfers, remote
analyse() {
    local tool=$1 out=$2 wall=$3 timings=$4 col=2
    [[ $tool == packer ]] && col=3
    local marks=() p m prev=0 t
    for p in "${PHASES[@]}"; do
        m=$(cut -d'|' -f"$col" <<<"$p")
        t=$(awk -v m="$m" 'index($0, m) {print $1; exit}' "$out")
        [[ -n $t ]] || die "$tool: no line with '$m' in its output ($out)"
        marks+=("$(awk -v a="$t" -v b="$prev" 'BEGIN {printf "%.3f", a-b}')")
        prev=$t
    done
    marks+=("$(awk -v a="$wall" -v b="$prev" 'BEGIN {printf "%.3f", a-b}')")
    # Transfers: from each "Uploading" line to the line after it.
    local tr
    tr=$(awk '/==> web_worker: Uploading / {if (s) t+=$1-s; s=$1; next} s {t+=$1-s; s=0} END {printf "%.3f", t}' "$out")
    # Remote commands: the scripts' own run time (nanosecond stamps), plus nothing for the
    # one-line inline command.
    local rem
    rem=$(awk '{t+=($3-$2)/1e9} END {printf "%.3f", t}' "$timings")
    echo "${marks[*]} $tr $rem"
}

build_once() { # TOOL I
    local tool=$1 i=$2 bin=$IMGBUILD_BIN
    [[ $tool == packer ]] && bin=$PACKER_BIN
    local sb out=$WORK/out.$tool.$i tf=$WORK/time.$tool.$i t0 t1 rc=0
    sb=$(sandbox_dir "$tool-$i")
    t0=$(now)
    (cd "$WORK/cwd" && /usr/bin/time -f "%M %U %S" -o "$tf" "$bin" build -color=false \
        -var "sandbox=$sb" -var "ami_suffix=-$tool-$i" \
        -var 'django_db_password=bench pa$$word' -var django_db_host=db.internal.example \
        -var 'django_secret=bench-secret-key' -var email_host=smtp.example.com \
        -var email_host_password=bench-mail-pass -var web_domain=mailape.example.com \
        "$TEMPLATE" 2>&1 | stamp > "$out") || rc=$?
    t1=$(now)
    if ((rc != 0)) || ! grep -q '^[0-9.]* us-west-2: ami-' "$out"; then
        echo "$tool build $i failed ($rc):" >&2; tail -30 "$out" >&2; exit 1
    fi
    [[ -s $sb/.timings ]] || die "$tool build $i: the scripts recorded no run time in $sb/.timings"
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b-a)/1e9}')
    if ((i > 0)); then
        echo "$wall $(awk '{printf "%d %.3f", $1, $2+$3}' "$tf") $(analyse "$tool" "$out" "$wall" "$sb/.timings")" \
            >> "$WORK/res/$tool"
    fi
    rm -rf -- "$sb"
}

# A plain login to this sshd, for reference: its AuthorizedKeysCommand looks the key up in the
# emulator, which every tool's "SSH connect" phase pays too.
ssh-keygen -q -t ed25519 -N "" -C bench-login -f "$WORK/key" >/dev/null
python3 - "$IMGBUILD_TEST_EC2_ENDPOINT" "$WORK/key.pub" <<'EOF'
import base64, sys, urllib.parse, urllib.request
endpoint, pub = sys.argv[1], open(sys.argv[2]).read().strip()
data = urllib.parse.urlencode({"Action": "ImportKeyPair", "Version": "2016-11-15",
    "KeyName": "bench-login", "PublicKeyMaterial": base64.b64encode(pub.encode()).decode()}).encode()
# moto takes the region from the credential scope of the (unchecked) signature.
auth = "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(urllib.request.Request(endpoint + "/", data=data, headers={"Authorization": auth}), timeout=30).read()
EOF
login() {
    local t0 t1
    t0=$(now)
    timeout 60 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o IdentitiesOnly=yes -o IdentityAgent=none -o LogLevel=ERROR -i "$WORK/key" \
        -p "$IMGBUILD_TEST_SSH_PORT" "$IMGBUILD_TEST_SSH_USER@$IMGBUILD_TEST_SSH_HOST" true \
        || die "cannot log in to the world's sshd with an imported key"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)/1e9}'
}

TOOLS=(imgbuild)
[[ -n $PACKER_BIN ]] && TOOLS+=(packer)
note "world: EC2 at $IMGBUILD_TEST_EC2_ENDPOINT, sshd at $IMGBUILD_TEST_SSH_HOST:$IMGBUILD_TEST_SSH_PORT; $RUNS builds per tool after one warm-up build each"
for tool in "${TOOLS[@]}"; do build_once "$tool" 0; done
# One key lookup of sshd's AuthorizedKeysCommand (a login makes one or two).
KEYS_CMD=$(sed -n 's/^AuthorizedKeysCommand //p' "$STATE/sshd_config" | sed "s/%u/$IMGBUILD_TEST_SSH_USER/")
lookup() {
    local t0 t1
    t0=$(now)
    # shellcheck disable=SC2086
    timeout 60 $KEYS_CMD >/dev/null || die "the AuthorizedKeysCommand failed: $KEYS_CMD"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)/1e9}'
}
login >/dev/null
for i in $(seq "$RUNS"); do
    for tool in "${TOOLS[@]}"; do build_once "$tool" "$i"; done
    login >> "$WORK/res/login"
    lookup >> "$WORK/res/lookup"
done

# ---------------------------------------------------------------------------- report ---
# Columns of res/TOOL: wall rss_kib cpu phase1..phase7 exit transfers remote
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
med() { awk -v c="$1" '{print $c}' "$WORK/res/$2" | median; }
overhead() { awk '{printf "%.3f\n", $1-$(NF-1)-$NF}' "$WORK/res/$1" | median; }

echo
echo "web worker build (tests/fixtures/web_worker/template.json) against the test world; median of $RUNS builds per tool after a warm-up build each"
echo "network: $BENCH_IN_NETNS; imgbuild: $IMGBUILD_BIN; packer: ${PACKER_BIN:-not installed}"
echo
hdr="%-58s"; for t in "${TOOLS[@]}"; do hdr+=" %12s"; done; hdr+="\n"
# shellcheck disable=SC2059
printf "$hdr" "phase (s)" "${TOOLS[@]}"
n=4
for p in "${PHASES[@]}"; do
    row=("${p%%|*}")
    for t in "${TOOLS[@]}"; do row+=("$(med $n "$t")"); done
    # shellcheck disable=SC2059
    printf "$hdr" "${row[@]}"
    n=$((n + 1))
done
line() { # LABEL COLUMN-OR-FUNCTION
    local row=("$1") t
    for t in "${TOOLS[@]}"; do row+=("$($2 "$t")"); done
    # shellcheck disable=SC2059
    printf "$hdr" "${row[@]}"
}
exitcol() { med $n "$1"; }
line "exit (after the build's last line)" exitcol
wallcol() { med 1 "$1"; }
rsscol() { awk -v k="$(med 2 "$1")" 'BEGIN { printf "%d MiB", k / 1024 }'; }
cpucol() { med 3 "$1"; }
trcol() { med $((n + 1)) "$1"; }
remcol() { med $((n + 2)) "$1"; }
echo
line "wall time (s)" wallcol
line "  in transfers (5 uploads)" trcol
line "  in remote commands (5 scripts' own run time)" remcol
line "  the tool's own overhead (wall - both)" overhead
LOOKUP=$(median < "$WORK/res/lookup")
net() { awk -v o="$(overhead "$1")" -v l="$LOOKUP" 'BEGIN {printf "%.3f", o-l}'; }
line "  overhead without sshd's key lookup ($LOOKUP s)" net
line "CPU time, user+sys (s)" cpucol
line "peak RSS (largest process)" rsscol
echo "for reference: sshd's AuthorizedKeysCommand (a Python script asking the emulator for the key pairs of two regions) takes $LOOKUP s per lookup"
echo "for reference: a plain \`ssh host true\` login to this sshd takes $(median < "$WORK/res/login") s (OpenSSH client; the key is looked up in the emulator)"
echo
if [[ -n $PACKER_BIN ]]; then
    awk -v a="$(wallcol imgbuild)" -v b="$(wallcol packer)" \
        'BEGIN {printf "aim: imgbuild at most half of Packer'"'"'s wall time: %.2f of it (%.1fx faster)\n", a/b, b/a}'
fi
awk -v o="$(overhead imgbuild)" -v n="$(net imgbuild)" 'BEGIN {printf "aim: imgbuild'"'"'s own overhead under 1 s: %.3f s (%.3f s without the test world'"'"'s key lookup)\n", o, n}'
