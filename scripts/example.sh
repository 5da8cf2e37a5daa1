#!/usr/bin/env bash
# example.sh: the main job, on any machine.
#
# With AWS credentials in the environment (or a profile), it builds the real web worker image:
#     scripts/example.sh -var django_db_password=... -var django_db_host=... ...
# runs: imgbuild build images/web_worker.json "$@"
#
# Without AWS credentials (a newcomer's laptop, this sandbox) it builds the sandbox-safe example
# template images/local_example.json against the local test world (the EC2 emulator and an sshd
# on 127.0.0.1, started here and stopped on exit).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin=target/release/imgbuild

have_aws() {
    [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] || [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]
}

if have_aws && [ "${IMGBUILD_EXAMPLE_LOCAL:-}" != "1" ]; then
    exec "$bin" build images/web_worker.json "$@"
fi

echo "==> no AWS credentials: building images/local_example.json against the local test world"
state=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-example.XXXXXX")
scripts/testworld.sh start "$state" --owner-pid $$ >/dev/null
trap 'scripts/testworld.sh stop "$state" >/dev/null 2>&1 || true' EXIT
set -a
# shellcheck disable=SC1091
. "$state/env"
set +a
"$bin" validate images/local_example.json
"$bin" build images/local_example.json "$@"
