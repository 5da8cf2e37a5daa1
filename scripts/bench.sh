#!/usr/bin/env bash
# Benchmark `imgbuild validate|inspect` against `packer validate|inspect` on
# the same templates and print a side-by-side table.
#
# Usage: scripts/bench.sh [options] [TEMPLATE.json ...]
#
#   -n N              timed runs per tool and command (default 20, or $BENCH_RUNS)
#   -r N              extra runs used only to measure peak RSS (default 3)
#   --mode MODE       auto (default): full validate, falling back to -syntax-only
#                     for BOTH tools on a template whose full packer validate fails
#                     under the network isolation; full: always full validate;
#                     syntax-only: always `validate -syntax-only`
#   -syntax-only      same as --mode syntax-only
#   -var k=v          extra variable passed to both tools' validate (repeatable;
#                     required variables, i.e. those whose default is null, are
#                     filled with dummy values automatically)
#   --no-net-check    skip the strace check for non-loopback connection attempts
#   --no-netns        do not re-run inside a new network namespace (`unshare -n`)
#   -h, --help        this text
#
# Templates: every images/*.json of the repository plus the ones given.
#
# Environment:
#   IMGBUILD_BIN   imgbuild binary to use; when unset, target/release/imgbuild is
#                  built with `cargo build --release` if missing or older than
#                  the sources (IMGBUILD_BIN=/bin/true exercises the Packer half)
#   PACKER_BIN     packer binary (default /usr/bin/packer, installed with
#                  `apt-get install -y packer` when missing)
#
# Nothing either tool does may leave 127.0.0.0/8: the runs happen in a new
# network namespace with only a loopback interface when `unshare -n` works, and
# in any case with dummy AWS credentials, no instance metadata service, no
# shared AWS config files and HTTP(S) proxies pointing at the closed port
# 127.0.0.1:9, so any stray request fails locally.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

RUNS=${BENCH_RUNS:-20}
RSS_RUNS=3
MODE=auto
NET_CHECK=1
NETNS=1
USER_VARS=()
ARG_TEMPLATES=()
ORIG_ARGS=("$@")

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "bench.sh: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }

while (($#)); do
    case $1 in
        -n) [[ $# -ge 2 ]] || die "-n needs a value"; RUNS=$2; shift 2 ;;
        -n*) RUNS=${1#-n}; shift ;;
        -r) [[ $# -ge 2 ]] || die "-r needs a value"; RSS_RUNS=$2; shift 2 ;;
        --mode) [[ $# -ge 2 ]] || die "--mode needs a value"; MODE=$2; shift 2 ;;
        --mode=*) MODE=${1#--mode=}; shift ;;
        -syntax-only|--syntax-only) MODE=syntax-only; shift ;;
        -var) [[ $# -ge 2 ]] || die "-var needs k=v"; USER_VARS+=("$2"); shift 2 ;;
        -var=*) USER_VARS+=("${1#-var=}"); shift ;;
        --no-net-check) NET_CHECK=0; shift ;;
        --no-netns) NETNS=0; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; ARG_TEMPLATES+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) ARG_TEMPLATES+=("$1"); shift ;;
    esac
done

if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 1 || RUNS > 1000)); then die "-n must be 1..1000"; fi
if ! [[ $RSS_RUNS =~ ^[0-9]+$ ]] || ((RSS_RUNS < 1 || RSS_RUNS > 100)); then die "-r must be 1..100"; fi
case $MODE in auto|full|syntax-only) ;; *) die "--mode must be auto, full or syntax-only" ;; esac
for kv in "${USER_VARS[@]}"; do [[ $kv == *=* ]] || die "-var expects k=v, got '$kv'"; done

as_root() { if ((EUID == 0)); then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# ---------------------------------------------------------------------------
# Tools. Everything that may need the network (apt-get, cargo) happens here,
# before the benchmark isolates itself.
if [[ -z ${BENCH_IN_NETNS:-} ]]; then
    PACKER_BIN=${PACKER_BIN:-/usr/bin/packer}
    if [[ ! -x $PACKER_BIN ]]; then
        if command -v packer >/dev/null; then
            PACKER_BIN=$(command -v packer)
        else
            note "packer not found; installing it with apt-get install -y packer"
            as_root apt-get install -y packer >&2 \
                || { as_root apt-get update >&2 && as_root apt-get install -y packer >&2; } \
                || die "could not install packer"
            PACKER_BIN=$(command -v packer) || die "packer still not found"
        fi
    fi
    if [[ ! -x /usr/bin/time ]]; then
        note "GNU time not found; installing it with apt-get install -y time"
        as_root apt-get install -y time >&2 || die "could not install GNU time (/usr/bin/time)"
    fi

    if [[ -z ${IMGBUILD_BIN:-} ]]; then
        IMGBUILD_BIN=$ROOT/target/release/imgbuild
        stale=
        if [[ ! -x $IMGBUILD_BIN ]]; then
            stale="missing"
        else
            sources=("$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock")
            [[ -e $ROOT/build.rs ]] && sources+=("$ROOT/build.rs")
            newer=$(find "${sources[@]}" -newer "$IMGBUILD_BIN" -print -quit 2>/dev/null || true)
            [[ -n $newer ]] && stale="older than $newer"
        fi
        if [[ -n $stale ]]; then
            note "target/release/imgbuild $stale: cargo build --release"
            (cd "$ROOT" && cargo build --release >&2) || die "cargo build --release failed"
        fi
    fi
    [[ -x $IMGBUILD_BIN ]] || IMGBUILD_BIN=$(command -v "$IMGBUILD_BIN" 2>/dev/null) \
        || die "IMGBUILD_BIN '$IMGBUILD_BIN' is not executable"
    export PACKER_BIN IMGBUILD_BIN

    # Re-run inside a fresh network namespace (loopback only) when possible.
    if ((NETNS)) && command -v unshare >/dev/null; then
        for flags in -n -rn; do
            if unshare "$flags" true 2>/dev/null; then
                exec unshare "$flags" env BENCH_IN_NETNS="unshare $flags" "$BASH" "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}"
            fi
        done
    fi
    BENCH_IN_NETNS=none
fi
PACKER_BIN=${PACKER_BIN:-/usr/bin/packer}
IMGBUILD_BIN=${IMGBUILD_BIN:-$ROOT/target/release/imgbuild}

if [[ $BENCH_IN_NETNS != none ]]; then
    # The new namespace's loopback starts down; bring it up so the dead proxy
    # port answers "connection refused" like it does outside.
    if command -v ip >/dev/null; then ip link set lo up 2>/dev/null || true; fi
fi

# Isolation from AWS and everything else.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN \
      AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EC2 \
      NO_PROXY no_proxy PACKER_LOG PACKER_LOG_PATH
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY all_proxy=$ALL_PROXY
export CHECKPOINT_DISABLE=1   # Packer's version check (checkpoint-api.hashicorp.com)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------------------
# Templates.
TEMPLATES=()
shopt -s nullglob
for t in "$ROOT"/images/*.json; do TEMPLATES+=("$t"); done
shopt -u nullglob
for t in "${ARG_TEMPLATES[@]}"; do
    [[ -f $t ]] || die "template not found: $t"
    TEMPLATES+=("$(cd "$(dirname "$t")" && pwd)/$(basename "$t")")
done
((${#TEMPLATES[@]})) || die "no templates (images/*.json is empty and none were given)"

display_name() {
    local t=$1
    [[ $t == "$ROOT"/* ]] && t=${t#"$ROOT"/}
    ((${#t} > 30)) && t="...${t: -27}"
    printf '%s' "$t"
}

# Names of the template's required variables (default null), one per line.
required_vars() {
    if command -v jq >/dev/null; then
        jq -r '(.variables // {}) | to_entries[] | select(.value == null) | .key' "$1" 2>/dev/null || true
    elif command -v python3 >/dev/null; then
        python3 -c 'import json,sys
try: v = json.load(open(sys.argv[1])).get("variables") or {}
except Exception: sys.exit(0)
print("\n".join(k for k, d in v.items() if d is None))' "$1" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------------------
# Measurements.

# time_runs N CMD... : one untimed warm-up run (its exit status and output are
# kept in LAST_RC / $TMP/out), then N timed runs. Sets MEAN_MS and MIN_MS.
time_runs() {
    local n=$1; shift
    local i t0 t1 dt sum=0 min=-1
    "$@" >"$TMP/out" 2>&1 </dev/null && LAST_RC=0 || LAST_RC=$?
    for ((i = 0; i < n; i++)); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 </dev/null || true
        t1=$EPOCHREALTIME
        dt=$(( ${t1/./} - ${t0/./} ))
        sum=$((sum + dt))
        ((min < 0 || dt < min)) && min=$dt
    done
    MEAN_MS=$(awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.2f", s / n / 1000 }')
    MIN_MS=$(awk -v m="$min" 'BEGIN { printf "%.2f", m / 1000 }')
}

# peak_rss_mb N CMD... : largest GNU time %M over N runs, in MB. %M is the
# maximum resident set size of the process or of the largest child it waited
# for; it is NOT the sum over a process tree.
peak_rss_mb() {
    local n=$1; shift
    local i kb max=0
    for ((i = 0; i < n; i++)); do
        /usr/bin/time -f %M -o "$TMP/rss" "$@" >/dev/null 2>&1 </dev/null || true
        kb=$(tail -n 1 "$TMP/rss")
        [[ $kb =~ ^[0-9]+$ ]] && ((kb > max)) && max=$kb
    done
    awk -v k="$max" 'BEGIN { printf "%.1f", k / 1024 }'
}

# Peak of the summed RSS of the whole process tree, sampled every 2 ms. An
# upper bound: pages shared between processes (packer's plugins are re-executions
# of the same binary) are counted once per process.
TREE_SAMPLER='
import os, subprocess, sys, time
def kids(pid):
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out
page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
def mem_kb(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * page_kb
    except (OSError, ValueError, IndexError):
        return 0
dn = subprocess.DEVNULL
p = subprocess.Popen(sys.argv[1:], stdin=dn, stdout=dn, stderr=dn)
peak = 0
while p.poll() is None:
    total, todo, seen = 0, [p.pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += mem_kb(pid)
        todo += kids(pid)
    peak = max(peak, total)
    time.sleep(0.002)
print("%.1f" % (peak / 1024.0))
'
tree_peak_mb() {
    local out
    if command -v python3 >/dev/null && [[ -d /proc/self/task ]]; then
        out=$(python3 -c "$TREE_SAMPLER" "$@" 2>/dev/null) || { printf 'n/a'; return; }
        printf '%s' "$out"
    else
        printf 'n/a'
    fi
}

# Count connection attempts to anything but loopback / unix sockets.
NET_REPORT=()
net_check() {
    local label=$1; shift
    ((NET_CHECK)) && command -v strace >/dev/null || return 0
    strace -f -qq -e trace=connect,sendto,sendmsg -o "$TMP/strace" "$@" >/dev/null 2>&1 </dev/null || true
    local bad
    bad=$(grep -E 'sa_family=AF_INET6?' "$TMP/strace" \
        | grep -vE 'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"|inet_pton\(AF_INET6, "::ffff:127\.' \
        | grep -oE 'inet_addr\("[^"]*"\)|inet_pton\(AF_INET6, "[^"]*"' | sort | uniq -c | tr '\n' ' ' || true)
    if [[ -n $bad ]]; then
        NET_REPORT+=("$label: NON-LOOPBACK connection attempts: $bad")
    else
        NET_REPORT+=("$label: no non-loopback connection attempts")
    fi
}

fmt_row() {
    printf '%-30s %-22s %9s %9s %9s %9s %8s %8s %8s %9s %6s %s\n' "$@"
}

# ---------------------------------------------------------------------------
echo "imgbuild vs packer: $RUNS timed runs per cell (after 1 warm-up run), peak RSS over $RSS_RUNS more runs"
echo "  imgbuild: $IMGBUILD_BIN ($("$IMGBUILD_BIN" --version 2>/dev/null </dev/null | head -n 1 || true))"
echo "  packer:   $PACKER_BIN ($("$PACKER_BIN" version 2>/dev/null </dev/null | head -n 1 || true))"
echo "  network:  namespace: $BENCH_IN_NETNS; dummy AWS credentials, AWS_EC2_METADATA_DISABLED=true, HTTP(S)_PROXY=http://127.0.0.1:9, CHECKPOINT_DISABLE=1"
echo "  validate mode: $MODE"
case $IMGBUILD_BIN in
    /bin/true|/usr/bin/true|*/true) echo "  NOTE: IMGBUILD_BIN is a stand-in ($IMGBUILD_BIN); the imgbuild columns are meaningless." ;;
esac
echo

START=$EPOCHREALTIME
HEADER_DONE=0
NOTES=()
ALL_MET=1

bench_row() {
    # bench_row TEMPLATE LABEL -- IMGBUILD_ARGS... -- PACKER_ARGS...
    local template=$1 label=$2; shift 2
    [[ ${1:-} == -- ]] || die "bench_row: expected --"
    shift
    local iargs=() pargs=()
    while [[ $1 != -- ]]; do iargs+=("$1"); shift; done; shift
    pargs=("$@")

    time_runs "$RUNS" "$IMGBUILD_BIN" "${iargs[@]}"
    local i_mean=$MEAN_MS i_min=$MIN_MS i_rc=$LAST_RC
    local i_out; i_out=$(head -c 300 "$TMP/out")
    time_runs "$RUNS" "$PACKER_BIN" "${pargs[@]}"
    local p_mean=$MEAN_MS p_min=$MIN_MS p_rc=$LAST_RC
    local p_out; p_out=$(head -c 300 "$TMP/out")

    local i_rss p_rss p_tree
    i_rss=$(peak_rss_mb "$RSS_RUNS" "$IMGBUILD_BIN" "${iargs[@]}")
    p_rss=$(peak_rss_mb "$RSS_RUNS" "$PACKER_BIN" "${pargs[@]}")
    p_tree=$(tree_peak_mb "$PACKER_BIN" "${pargs[@]}")

    local speed met
    speed=$(awk -v p="$p_mean" -v i="$i_mean" 'BEGIN { if (i > 0) printf "%.1fx", p / i; else print "inf" }')
    met=$(awk -v p="$p_mean" -v i="$i_mean" -v r="$i_rss" 'BEGIN {
        s = (i > 0) ? p / i : 1e9; why = ""
        if (s < 10) why = "speed"
        if (r >= 15) why = (why == "" ? "rss" : why ",rss")
        print (why == "" ? "yes" : "NO(" why ")") }')
    local exits="$i_rc/$p_rc"
    if { ((i_rc == 0)) && ((p_rc != 0)); } || { ((i_rc != 0)) && ((p_rc == 0)); }; then
        exits="$exits!"
        met="NO(exit)"
        NOTES+=("$(display_name "$template") $label: exit status differs (imgbuild $i_rc, packer $p_rc)")
        NOTES+=("    imgbuild said: $(printf '%s' "$i_out" | head -n 3 | tr '\n' ' ')")
        NOTES+=("    packer said:   $(printf '%s' "$p_out" | head -n 3 | tr '\n' ' ')")
    fi

    [[ $met == yes ]] || ALL_MET=0

    if ((!HEADER_DONE)); then
        fmt_row TEMPLATE COMMAND "IMG_MEAN" "IMG_MIN" "PK_MEAN" "PK_MIN" SPEEDUP "IMG_RSS" "PK_RSS" "PK_TREE" "EXIT" ">=10x&<15MB"
        fmt_row "" "" "(ms)" "(ms)" "(ms)" "(ms)" "" "(MB)" "(MB)" "(MB)" "(i/p)" ""
        HEADER_DONE=1
    fi
    fmt_row "$(display_name "$template")" "$label" "$i_mean" "$i_min" "$p_mean" "$p_min" \
        "$speed" "$i_rss" "$p_rss" "$p_tree" "$exits" "$met"
}

for t in "${TEMPLATES[@]}"; do
    vars=()
    declare -A given=()
    for kv in "${USER_VARS[@]}"; do given[${kv%%=*}]=1; vars+=(-var "$kv"); done
    while IFS= read -r k; do
        [[ -n $k && -z ${given[$k]:-} ]] && vars+=(-var "$k=bench-$k")
    done < <(required_vars "$t")
    unset given

    vmode=$MODE
    if [[ $MODE == auto ]]; then
        vmode=full
        if ! "$PACKER_BIN" validate "${vars[@]}" "$t" >"$TMP/probe" 2>&1 </dev/null; then
            if "$PACKER_BIN" validate -syntax-only "$t" >/dev/null 2>&1 </dev/null; then
                vmode=syntax-only
                NOTES+=("$(display_name "$t"): full 'packer validate' failed under isolation, so both tools ran -syntax-only: $(grep -v '^[[:space:]]*$' "$TMP/probe" | head -n 3 | tr -s '\n\t' '  ')")
            fi
        fi
    fi

    net_check "$(display_name "$t") packer validate" "$PACKER_BIN" validate "${vars[@]}" "$t"
    net_check "$(display_name "$t") imgbuild validate" "$IMGBUILD_BIN" validate "${vars[@]}" "$t"

    if [[ $vmode == full ]]; then
        bench_row "$t" "validate" -- validate "${vars[@]}" "$t" -- validate "${vars[@]}" "$t"
        bench_row "$t" "validate -syntax-only" -- validate -syntax-only "$t" -- validate -syntax-only "$t"
    else
        bench_row "$t" "validate -syntax-only" -- validate -syntax-only "${vars[@]}" "$t" -- validate -syntax-only "${vars[@]}" "$t"
    fi
    bench_row "$t" "inspect" -- inspect "$t" -- inspect "$t"
done

echo
echo "Columns: *_MEAN/*_MIN = wall time per run (bash \$EPOCHREALTIME around the process, output to /dev/null);"
echo "  SPEEDUP = PK_MEAN / IMG_MEAN; IMG_RSS and PK_RSS = largest GNU '/usr/bin/time -f %M' over $RSS_RUNS runs, i.e."
echo "  the peak RSS of the main process or of its single largest child, not a sum over the tree;"
echo "  PK_TREE = peak of the summed RSS of packer and all its plugin processes, sampled every 2 ms (an upper bound:"
echo "  shared pages count once per process; n/a without python3);"
echo "  EXIT = exit status of imgbuild/packer ('!' when one accepts what the other rejects; packer uses 1 for invalid, imgbuild 2);"
echo "  target per row: imgbuild at least 10x faster than packer (by mean) and imgbuild peak RSS under 15 MB;"
echo "  a row where one tool accepts what the other rejects is marked NO(exit): its timings compare different work."
if ((${#NET_REPORT[@]})); then
    echo
    echo "Network check (strace connect/sendto/sendmsg, one validate run each):"
    printf '  %s\n' "${NET_REPORT[@]}"
elif ((NET_CHECK)); then
    echo
    echo "Network check skipped: strace not installed."
fi
if ((${#NOTES[@]})); then
    echo
    echo "Notes:"
    printf '  %s\n' "${NOTES[@]}"
fi
echo
if ((ALL_MET)); then echo "All rows meet the targets."; else echo "Some rows do NOT meet the targets."; fi
awk -v s="${START/./}" -v e="${EPOCHREALTIME/./}" 'BEGIN { printf "Total bench time: %.1f s\n", (e - s) / 1e6 }'
