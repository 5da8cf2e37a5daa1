#!/usr/bin/env bash
# Benchmark `imgbuild build` against `packer build` (1.6.6) end to end on the same
# `communicator: none` amazon-ebs template, against one local test world (moto on
# 127.0.0.1, see scripts/testworld.sh). Prints the median wall time of each tool
# and imgbuild's peak memory.
#
# Usage: scripts/bench-build.sh [-n RUNS] [--copy]
#   -n RUNS   timed builds per tool (default 5)
#   --copy    also copy the AMI to us-west-2 (ami_regions)
#
# Environment: IMGBUILD_BIN (default target/release/imgbuild, else target/debug/imgbuild),
# PACKER_BIN (default /usr/bin/packer; skipped when missing).
#
# Only loopback is used: the template's custom_endpoint_ec2 is the world's moto,
# credentials are dummy and the instance metadata service is disabled.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
COPY=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --copy) COPY=1; shift ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

IMGBUILD_BIN=${IMGBUILD_BIN:-}
if [ -z "$IMGBUILD_BIN" ]; then
  for c in "$ROOT/target/release/imgbuild" "$ROOT/target/debug/imgbuild"; do
    if [ -x "$c" ]; then IMGBUILD_BIN=$c; break; fi
  done
fi
[ -x "${IMGBUILD_BIN:-}" ] || { echo "no imgbuild binary: build it or set IMGBUILD_BIN" >&2; exit 2; }
PACKER_BIN=${PACKER_BIN:-/usr/bin/packer}

WORK=$(mktemp -d)
STATE="$WORK/world"
cleanup() { bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null
set -a; . "$STATE/env"; set +a
export IMGBUILD_JOURNAL_DIR="$WORK/journal" CHECKPOINT_DISABLE=1

regions='[]'
[ "$COPY" = 1 ] && regions='["us-west-2"]'
cat > "$WORK/t.json" <<JSON
{
  "variables": {"ep": "{{env \`IMGBUILD_TEST_EC2_ENDPOINT\`}}"},
  "builders": [{
    "type": "amazon-ebs",
    "region": "us-east-1",
    "custom_endpoint_ec2": "{{user \`ep\`}}",
    "instance_type": "t3.micro",
    "source_ami_filter": {
      "filters": {"name": "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"},
      "owners": ["099720109477"], "most_recent": true
    },
    "communicator": "none",
    "ami_name": "bench-{{timestamp}}-{{uuid}}",
    "ami_regions": $regions,
    "tags": {"SourceAMI": "{{ .SourceAMI }}", "BuildRegion": "{{ .BuildRegion }}"},
    "snapshot_tags": {"Kind": "root"}
  }]
}
JSON

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

run() { # tool binary -> "wall rss" lines
  local name=$1 bin=$2 i
  for i in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$bin" build -color=false "$WORK/t.json" >"$WORK/$name.out" 2>&1 \
      || { echo "$name build failed:" >&2; tail -20 "$WORK/$name.out" >&2; exit 1; }
    cat "$WORK/time"
  done
}

printf '%-10s %8s %12s %s\n' tool runs "median wall" "peak RSS (median)"
run imgbuild "$IMGBUILD_BIN" > "$WORK/imgbuild.times"
printf '%-10s %8s %11ss %s KiB\n' imgbuild "$RUNS" "$(cut -d' ' -f1 "$WORK/imgbuild.times" | median)" "$(cut -d' ' -f2 "$WORK/imgbuild.times" | median)"
if [ -x "$PACKER_BIN" ]; then
  run packer "$PACKER_BIN" > "$WORK/packer.times"
  printf '%-10s %8s %11ss %s KiB\n' packer "$RUNS" "$(cut -d' ' -f1 "$WORK/packer.times" | median)" "$(cut -d' ' -f2 "$WORK/packer.times" | median)"
else
  echo "packer: not installed ($PACKER_BIN), skipped"
fi
