#!/usr/bin/env bash
# What the `boot-test` post-processor adds to a build in the sandbox test world (moto and sshd
# on 127.0.0.1, scripts/testworld.sh): the same SSH-provisioned amazon-ebs template built
# without and with a boot-test post-processor (one inline check), alternately; prints the
# median wall time of each and their difference.
#
# Usage: scripts/bench-boot-test.sh [-n RUNS]    (default 5 runs of each)
#
# Environment: IMGBUILD_BIN (default target/release/imgbuild, else target/debug/imgbuild).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
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

WORK=$(mktemp -d)
STATE="$WORK/world"
cleanup() { bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null
set -a; . "$STATE/env"; set +a
export IMGBUILD_JOURNAL_DIR="$WORK/journal"

template() { # post-processors JSON -> template on stdout
  cat <<JSON
{
  "builders": [{
    "type": "amazon-ebs", "region": "us-east-1",
    "custom_endpoint_ec2": "$IMGBUILD_TEST_EC2_ENDPOINT",
    "instance_type": "t3.micro",
    "source_ami_filter": {
      "filters": {"name": "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"},
      "owners": ["099720109477"], "most_recent": true
    },
    "communicator": "ssh", "ssh_host": "$IMGBUILD_TEST_SSH_HOST", "ssh_port": $IMGBUILD_TEST_SSH_PORT,
    "ssh_username": "$IMGBUILD_TEST_SSH_USER",
    "ami_name": "bench-boot-{{timestamp}}-{{uuid}}"
  }],
  "provisioners": [{"type": "shell", "inline": ["echo provisioned"]}],
  "post-processors": $1
}
JSON
}
template '[]' >"$WORK/plain.json"
template '[{"type": "boot-test", "inline": ["test -d /tmp && echo check-ok"]}]' >"$WORK/boot.json"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

for i in $(seq "$RUNS"); do
  for kind in plain boot; do
    start=$(now)
    "$IMGBUILD_BIN" build -color=false "$WORK/$kind.json" >"$WORK/$kind.out" 2>&1 \
      || { echo "$kind build failed:" >&2; tail -20 "$WORK/$kind.out" >&2; exit 1; }
    end=$(now)
    awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f\n", b - a}' >>"$WORK/$kind.times"
  done
done
p=$(median <"$WORK/plain.times"); b=$(median <"$WORK/boot.times")
printf 'runs: %s each\nbuild without boot-test: median %.2fs\nbuild with boot-test:    median %.2fs\nboot-test adds:          %.2fs\n' \
  "$RUNS" "$p" "$b" "$(awk -v a="$p" -v b="$b" 'BEGIN {print b - a}')"
