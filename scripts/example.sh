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
cleanup() {
    scripts/testworld.sh stop "$state" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Ctrl-C ends the script through `exit`, so that the cleanup runs (bash skips EXIT traps on a
# fatal signal); the real build below handles signals itself.
trap 'exit 130' INT

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
# The build's directory (its manifest, outputs and records), removed with the world.
work=$state/example-out
mkdir -p "$work"
# Its journals too: what they record lives in the local cloud, gone when the world stops (so an
# interrupted example leaves no "earlier run did not finish" note for later builds).
export IMGBUILD_JOURNAL_DIR=$work/journal

domain=mailape.example.test
# The template's required variables; the database and mail server are dummies (the image is built
# and booted, not connected to them). The region stays the template's (us-west-2).
vars=(-var django_db_password=example-db-password -var django_db_host=db.example.test
      -var django_secret=example-django-secret -var email_host=smtp.example.test
      -var "web_domain=$domain")
# The template's own boot-test post-processor (first in its chain) launches an instance from the
# new AMI and checks it from inside; a failure deregisters the AMI and fails the build.
# imgbuild writes -machine-readable records (kept in $work/build.records); the human lines among
# them are shown as they come, and the ending is read from the records (scripts/example_records.py),
# never from imgbuild's wording.
records=$work/build.records
# The build runs as a job of its own (a process group: set -m) that the script waits for, so
# that Ctrl-C, TERM or HUP reach imgbuild once, as one SIGINT (it tears down what it made),
# and the script waits for that before it stops the world; its status is imgbuild's (pipefail).
# tee and the renderer ignore SIGINT and show imgbuild's teardown to its end.
set -m
( (cd "$work" && exec "$bin" build -machine-readable "${vars[@]}" "$@" "$repo/images/web_worker.json") 2>&1 \
    | tee -i "$records" | python3 "$repo/scripts/example_records.py" render) &
build_pid=$!
set +m
signalled=0
on_signal() {
    signalled=$1
    kill -INT -- "-$build_pid" 2>/dev/null || true
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP
build_rc=0
for _ in $(seq 100); do
    # A trapped signal interrupts `wait` (status > 128) while the job still runs: wait again.
    if wait "$build_pid"; then build_rc=0; else build_rc=$?; fi
    kill -0 "$build_pid" 2>/dev/null || break
done
trap 'exit 130' INT
trap - TERM HUP
t_build=$SECONDS
if [ "$signalled" != 0 ]; then
    echo "==> interrupted: the build tore down what it made; stopping the local cloud" >&2
    exit "$signalled"
fi

summary_rc=0
python3 "$repo/scripts/example_records.py" summary "$records" "$build_rc" \
    "$((t_world - t0))" "$((t_build - t_world))" || summary_rc=$?
exit "$summary_rc"
