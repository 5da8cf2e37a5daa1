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
# with dummy values for the template's database and mail variables, then launches an instance from
# the new AMI and checks it: Django answers through Apache and mod_wsgi, the Celery unit is enabled.
# It prints the AMI ID and what ran for real, and stops the local cloud on exit.
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
(cd "$work" && "$bin" build -timestamp-ui "${vars[@]}" "$@" "$repo/images/web_worker.json")
t_build=$SECONDS

artifact=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["builds"][-1]["artifact_id"])' \
    "$work/web-worker-manifest.json")
region=${artifact%%:*}
ami=${artifact#*:}
ami=${ami%%,*}
echo "==> built $ami in $region; launching an instance from it to check it"
check_rc=0
AWS_REGION=$region python3 scripts/localcloud/check_instance.py --image "$ami" --user ubuntu \
    --check "curl -sS -D - -H 'Host: $domain' http://\$LC_IP/health/ | tee /dev/stderr | grep -q '\"status\": \"ok\"'" \
    --check "systemctl is-enabled celery.service" || check_rc=$?
t_check=$SECONDS

cat <<EOF

==> AMI: $ami ($region)
    boot check: $([ "$check_rc" = 0 ] && echo "PASSED: Django answered /health/ through Apache and mod_wsgi, celery.service enabled" || echo FAILED)
    what ran for real: imgbuild's whole amazon-ebs build of images/web_worker.json (unchanged) through the AWS SDK
      against an EC2 emulator (moto); a real Debian 12 root booted by systemd (systemd-nspawn) as the source instance,
      reached over SSH on port 22 at the address DescribeInstances gave; the template's provisioners ran as written:
      apt-get from Debian's archive, virtualenv and pip from PyPI (psycopg2 built from source; the .debs and wheels
      are cached between runs on this machine), Apache's site,
      the Celery unit enabled with systemctl; CreateImage froze the instance's disk, and a new instance booted from it.
    emulated: the EC2 API itself (moto), Ubuntu 22.04 (the root is Debian 12), EBS, security groups.
    time: world start $((t_world - t0)) s, build $((t_build - t_world)) s, boot check $((t_check - t_build)) s, total $((t_check - t0)) s
EOF
exit "$check_rc"
