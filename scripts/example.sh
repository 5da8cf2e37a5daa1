#!/usr/bin/env bash
# example.sh: the main job, on any machine.
#
# With AWS credentials in the environment (or a profile), it builds the real web worker image:
#     scripts/example.sh -var django_db_password=... -var django_db_host=... ...
# runs: imgbuild build images/web_worker.json "$@"
#
# Without AWS credentials (a newcomer's laptop, this sandbox), as root, it builds the same
# images/web_worker.json for real against the local cloud (scripts/testworld.sh --real-instances:
# an EC2 emulator whose instances are real Debian roots booted by systemd-nspawn on 127.0.0.0/8),
# with dummy values for the template's database and mail variables; the template's own boot-test
# post-processor launches an instance from the new AMI and checks it: Django answers through Apache
# and mod_wsgi, the Celery unit is enabled. It prints the AMI ID, the boot test's result and what
# ran for real, and stops the local cloud on exit (no process, mount or instance is left).
#
#     scripts/example.sh --quick     the quick one: images/local_example.json against the sandbox
#                                    test world (a motd written into a sandbox directory; no root)
#
# IMGBUILD_BIN: the imgbuild binary to use (default: cargo build --release, then target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)

quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi

bin=${IMGBUILD_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --locked
    bin="${CARGO_TARGET_DIR:-target}/release/imgbuild"
fi
bin=$(cd "$(dirname "$bin")" && pwd -P)/$(basename "$bin")

have_aws() {
    [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] || [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]
}

if [ "$quick" = 0 ] && have_aws && [ "${IMGBUILD_EXAMPLE_LOCAL:-}" != "1" ]; then
    exec "$bin" build images/web_worker.json "$@"
fi

if [ "$quick" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "==> the local cloud needs root (overlay mounts, systemd-nspawn); building the quick example instead" >&2
    echo "    (run as root for the real web worker image, or pass --quick to say you want this one)" >&2
    quick=1
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-example.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-example-out.XXXXXX")
cleanup() {
    scripts/testworld.sh stop "$state" >/dev/null 2>&1 || true
    rm -rf -- "$work"
}
trap cleanup EXIT

if [ "$quick" = 1 ]; then
    echo "==> no AWS credentials: building images/local_example.json against the local test world"
    scripts/testworld.sh start "$state" --owner-pid $$ >/dev/null
    set -a
    # shellcheck disable=SC1091
    . "$state/env"
    set +a
    "$bin" validate images/local_example.json
    "$bin" build images/local_example.json "$@"
    exit 0
fi

t0=$SECONDS
echo "==> no AWS credentials: building the real images/web_worker.json against the local cloud"
echo "    (first run: about 2 minutes more to build the local cloud's Debian base root with debootstrap)"
scripts/testworld.sh start "$state" --owner-pid $$ --real-instances >/dev/null
set -a
# shellcheck disable=SC1091
. "$state/env"
set +a
t_world=$SECONDS

domain=mailape.example.test
# The template's required variables; the database and mail server are dummies (the image is built
# and booted, not connected to them). The region stays the template's (us-west-2).
vars=(-var django_db_password=example-db-password -var django_db_host=db.example.test
      -var django_secret=example-django-secret -var email_host=smtp.example.test
      -var "web_domain=$domain")
# The template's own boot-test post-processor (first in its chain) launches an instance from the
# new AMI and checks it from inside; a failure deregisters the AMI and fails the build.
build_rc=0
(cd "$work" && "$bin" build -timestamp-ui "${vars[@]}" "$@" "$repo/images/web_worker.json") 2>&1 \
    | tee "$work/build.log" || build_rc=$?
t_build=$SECONDS

log=$work/build.log
booted=$(grep -o 'booting ami-[0-9a-f]* in [a-z0-9-]*' "$log" | tail -n 1 || true)
ami=$(echo "$booted" | awk '{print $2}')
region=$(echo "$booted" | awk '{print $4}')
phase() { # seconds of a phase in the build's timeline ("    SSH 1.00", or with a bar), or "?"
    local s
    s=$(sed -nE "s/.*: +$1 +([0-9]+\.[0-9]+)s?( .*)?$/\1/p" "$log" | tail -n 1)
    echo "${s:-?} s"
}
if [ "$build_rc" = 0 ] && grep -q 'boot test passed: ami-' "$log"; then
    result="PASSED ($(grep -o 'boot test passed: ami-.*' "$log" | tail -n 1 | sed 's/^boot test passed: //'))
      $(grep -o 'web worker checks passed: .*' "$log" | tail -n 1)
      the instance answered: $(grep -A3 'GET http://' "$log" | tail -n 3 | sed 's/.*web_worker: //' | paste -sd '|' | sed 's/|/, /g')"
else
    # Nothing below is claimed for a build that did not finish: say where to look, and stop.
    if grep -q 'booting ami-' "$log"; then
        where="the boot test failed: see its output above (a failed boot test deregisters the AMI)"
    else
        where="the build stopped before the boot test: see its output above (the outcome table names the step)"
    fi
    cat <<EOF

==> FAILED (exit $build_rc): $where
    time: world start $((t_world - t0)) s, build $((t_build - t_world)) s, total $((t_build - t0)) s
EOF
    exit "$build_rc"
fi

cat <<EOF

==> AMI: ${ami:-none} (${region:-?})
    boot test: $result
    what ran for real: imgbuild's whole amazon-ebs build of images/web_worker.json (unchanged) through the AWS SDK
      against an EC2 emulator (moto); a real Debian 12 root booted by systemd (systemd-nspawn) as the source instance,
      reached over SSH on port 22 at the address DescribeInstances gave; the wait for first boot (wait_for_boot:
      the local cloud's first-boot unit and its cloud-init status --wait); the template's provisioners as written:
      apt-get from Debian's archive, virtualenv and pip from PyPI (the .debs and wheels are cached between runs on
      this machine), Apache's site, the Celery unit enabled with systemctl; CreateImage froze the instance's disk;
      the template's boot-test post-processor booted a new instance from the AMI, curled Django's /health/ through
      Apache and mod_wsgi at the instance's own address and checked celery.service is enabled, then tore it down;
      the manifest and ami-outputs post-processors wrote their files.
    emulated: the EC2 API itself (moto), Ubuntu 22.04 (the root is Debian 12), EBS, security groups.
    time: world start $((t_world - t0)) s, build with boot test $((t_build - t_world)) s (instance to first SSH $(phase SSH),
      first boot wait $(phase 'first boot'), boot test $(phase 'post-processor boot-test')), total $((t_build - t0)) s
EOF
exit "$build_rc"
