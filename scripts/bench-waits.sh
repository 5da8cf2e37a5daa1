#!/usr/bin/env bash
# Benchmark the EC2 waits of `imgbuild build` against `packer build` (1.6.6) in the same run:
# the same `communicator: none` amazon-ebs template (with a copy to us-west-2) through the delay
# proxy (scripts/delayproxy.py) in front of one local test world, whose states lag as EC2's do
# (instance start 9 s, stop 11 s, terminate 7 s, AMI 23 s, copy 23 s, each + random 0-15 s).
# For 1 build and for 8 parallel builds (8 builders in one template) it prints, per wait kind,
# the median and the largest delay between a state becoming final and the tool noticing it (the
# first Describe answer that shows it), the Describe calls of that kind's API made while one
# of its resources waited, and those calls per waiting resource and second; then all the
# Describe calls of the run per second.
#
# Usage: scripts/bench-waits.sh [-n RUNS] [-m PRUNS] [-p PARALLEL] [--no-packer] [--keep DIR]
#   -n RUNS       runs per tool of 1 build (default 2; 0: none)
#   -m PRUNS      runs per tool of the parallel builds (default 1: 8 builds already)
#   -p PARALLEL   builds of the parallel configuration (default 8)
#   --keep DIR    keep the proxy's logs (one JSON line per call, change and noticed change) there
#
# Environment: IMGBUILD_BIN (default target/release/imgbuild), PACKER_BIN (default
# /usr/bin/packer; installed by scripts/test.sh), DELAY_SEED (the proxy's random seed, per
# run: seed + run number; default 1).
#
# Only loopback is used: the template's custom_endpoint_ec2 is the proxy on 127.0.0.1,
# credentials are dummy.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=2
PRUNS=1
PAR=8
PACKER=1
KEEP=
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    -m) PRUNS=$2; shift 2 ;;
    -p) PAR=$2; shift 2 ;;
    --no-packer) PACKER=0; shift ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

IMGBUILD_BIN=${IMGBUILD_BIN:-}
if [ -z "$IMGBUILD_BIN" ]; then
  for c in "${CARGO_TARGET_DIR:-$ROOT/target}/release/imgbuild" "$ROOT/target/release/imgbuild"; do
    if [ -x "$c" ]; then IMGBUILD_BIN=$c; break; fi
  done
fi
[ -x "${IMGBUILD_BIN:-}" ] || { echo "no imgbuild binary: cargo build --release, or set IMGBUILD_BIN" >&2; exit 2; }
PACKER_BIN=${PACKER_BIN:-/usr/bin/packer}
if [ "$PACKER" = 1 ] && [ ! -x "$PACKER_BIN" ]; then
  echo "packer: not installed ($PACKER_BIN); run scripts/test.sh once or pass --no-packer" >&2; exit 2
fi
SEED=${DELAY_SEED:-1}

WORK=$(mktemp -d)
STATE="$WORK/world"
PROXY_PID=
stop_proxy() { if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; fi; }
cleanup() { stop_proxy; bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null
set -a; . "$STATE/env"; set +a
export IMGBUILD_JOURNAL_DIR="$WORK/journal" CHECKPOINT_DISABLE=1

template() { # builds -> template on stdout
  python3 - "$1" <<'PY'
import json, sys
n = int(sys.argv[1])
b = lambda i: {
    "type": "amazon-ebs", "name": f"b{i}", "region": "us-east-1",
    "custom_endpoint_ec2": "{{user `ep`}}", "instance_type": "t3.micro",
    "source_ami_filter": {"filters": {"name": "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"},
                          "owners": ["099720109477"], "most_recent": True},
    "communicator": "none", "ami_name": f"waits-b{i}-{{{{timestamp}}}}-{{{{uuid}}}}",
    "ami_regions": ["us-west-2"]}
print(json.dumps({"variables": {"ep": "{{env `DELAY_PROXY_URL`}}"},
                  "builders": [b(i) for i in range(1, n + 1)]}, indent=1))
PY
}

run() { # tool bin builds run# -> appends "tool builds" to the log's runs
  local tool=$1 bin=$2 builds=$3 k=$4 log
  log="$WORK/$tool-$builds-$k.jsonl"
  rm -f "$WORK/port"
  python3 "$ROOT/scripts/delayproxy.py" --upstream "$IMGBUILD_TEST_EC2_ENDPOINT" --port-file "$WORK/port" \
    --log "$log" --seed "$((SEED + k))" &
  PROXY_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  [ -s "$WORK/port" ] || { echo "the delay proxy did not start" >&2; exit 1; }
  export DELAY_PROXY_URL="http://127.0.0.1:$(cat "$WORK/port")"
  template "$builds" > "$WORK/t.json"
  echo "{\"ev\": \"begin\", \"t\": $(date +%s.%N)}" >> "$log"
  if ! "$bin" build -color=false "$WORK/t.json" >"$WORK/$tool.out" 2>&1; then
    echo "$tool build ($builds builds) failed:" >&2; tail -30 "$WORK/$tool.out" >&2; exit 1
  fi
  echo "{\"ev\": \"end\", \"t\": $(date +%s.%N)}" >> "$log"
  stop_proxy
  if [ -n "$KEEP" ]; then mkdir -p "$KEEP"; cp "$log" "$KEEP/"; fi
  echo "$tool $builds $log" >> "$WORK/runs"
}

: > "$WORK/runs"
for builds in 1 "$PAR"; do
  n=$RUNS; [ "$builds" = 1 ] || n=$PRUNS
  for k in $(seq 1 "$n"); do
    echo "run $k: $builds build(s): imgbuild" >&2
    run imgbuild "$IMGBUILD_BIN" "$builds" "$k"
    if [ "$PACKER" = 1 ]; then
      echo "run $k: $builds build(s): packer" >&2
      run packer "$PACKER_BIN" "$builds" "$k"
    fi
  done
done

python3 - "$WORK/runs" <<'PY'
import json, statistics, sys
from collections import defaultdict

API = {"run": "DescribeInstances", "stop": "DescribeInstances", "terminate": "DescribeInstances",
       "ami": "DescribeImages", "copy": "DescribeImages"}
KINDS = ["run", "stop", "ami", "copy", "terminate"]
NAMES = {"run": "instance running", "stop": "instance stopped", "ami": "AMI available",
         "copy": "copy available", "terminate": "instance terminated"}
acc = defaultdict(lambda: {"delays": [], "calls": 0, "wait_s": 0.0, "busy_s": 0.0})
tot = defaultdict(lambda: {"calls": 0, "secs": 0.0, "runs": 0})
per_api = defaultdict(int)  # (tool, builds, action, region) -> calls
for line in open(sys.argv[1]):
    tool, builds, path = line.split()
    evs = [json.loads(l) for l in open(path)]
    begin = next(e["t"] for e in evs if e["ev"] == "begin")
    end = next(e["t"] for e in evs if e["ev"] == "end")
    # An instance changes three times (run, stop, terminate): by ID and kind.
    changes = {(e["id"], e["kind"]): e for e in evs if e["ev"] == "change"}
    noticed = {(e["id"], e["kind"]): e for e in evs if e["ev"] == "noticed"}
    calls = [e for e in evs if e["ev"] == "call"]
    t = tot[(tool, builds)]
    t["calls"] += sum(1 for c in calls if c["action"].startswith("Describe")
                      and c["action"] in ("DescribeInstances", "DescribeImages", "DescribeSnapshots"))
    t["secs"] += end - begin
    t["runs"] += 1
    for c in calls:
        if c["action"] in ("DescribeInstances", "DescribeImages", "DescribeSnapshots"):
            # A shared poller's call filters on IDs only; anything else is a lookup of its own.
            polled = c.get("filters") in (["instance-id"], ["image-id"], ["snapshot-id"]) and not c.get("listed")
            per_api[(tool, builds, c["action"], c.get("region", ""), "poll" if polled else "other")] += 1
    for kind in KINDS:
        spans = []
        a = acc[(kind, tool, builds)]
        for i, c in changes.items():
            if i[1] != kind or i not in noticed:
                continue
            a["delays"].append(noticed[i]["delay"])
            spans.append((c["t"], noticed[i]["t"]))
            a["wait_s"] += noticed[i]["t"] - c["t"]
        if not spans:
            continue
        busy = lambda ts: any(s <= ts <= e for s, e in spans)
        # The calls of the wait's API in the region of the resources that waited.
        regions = {c.get("region", "") for i, c in changes.items() if i[1] == kind}
        a["calls"] += sum(1 for c in calls if c["action"] == API[kind] and busy(c["t"])
                          and (c.get("region", "") in regions or "" in regions))
        # Seconds in which at least one resource of this kind waited.
        spans.sort()
        cur_s, cur_e = spans[0]
        for s, e in spans[1:]:
            if s > cur_e:
                a["busy_s"] += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        a["busy_s"] += cur_e - cur_s

tools = sorted({k[1] for k in acc}, key=lambda s: s != "imgbuild")
builds_set = sorted({k[2] for k in acc}, key=int)
print(f"{'wait':<20} {'tool':<9} {'builds':>6} {'waits':>5} {'median':>7} {'max':>6} {'calls':>6} {'calls/s':>8} {'calls/res/s':>11}")
for kind in KINDS:
    for b in builds_set:
        for tool in tools:
            a = acc.get((kind, tool, b))
            if not a or not a["delays"]:
                continue
            d = a["delays"]
            print(f"{NAMES[kind]:<20} {tool:<9} {b:>6} {len(d):>5} {statistics.median(d):>6.2f}s {max(d):>5.2f}s"
                  f" {a['calls']:>6} {a['calls'] / max(a['busy_s'], 1e-9):>8.2f} {a['calls'] / max(a['wait_s'], 1e-9):>11.2f}")
print()
print(f"{'all Describe calls':<20} {'tool':<9} {'builds':>6} {'runs':>5} {'calls':>7} {'wall':>8} {'calls/s':>8}")
for b in builds_set:
    for tool in tools:
        t = tot.get((tool, b))
        if t:
            print(f"{'':<20} {tool:<9} {b:>6} {t['runs']:>5} {t['calls']:>7} {t['secs']:>7.0f}s {t['calls'] / t['secs']:>8.2f}")
print()
print(f"{'Describe calls by API':<22} {'tool':<9} {'builds':>6} {'region':<10} {'by':<6} {'calls':>6} {'calls/s':>8}")
for b in builds_set:
    for tool in tools:
        t = tot.get((tool, b))
        for (tl, bb, action, region, by), n in sorted(per_api.items()):
            if (tl, bb) == (tool, b) and t:
                print(f"{action:<22} {tool:<9} {b:>6} {region:<10} {by:<6} {n:>6} {n / t['secs']:>8.2f}")
print()
print("median/max: delay between the state becoming final and the first answer showing it;")
print("calls: Describe calls of the wait's API while one of its resources waited; calls/s: per")
print("second in which one waited; calls/res/s: per waiting resource and second. By API: `poll`")
print("is a call filtering on resource IDs only (imgbuild's shared pollers), `other` any other")
print("(source AMI and AMI name lookups, Packer's waiters, which list the IDs).")
PY
