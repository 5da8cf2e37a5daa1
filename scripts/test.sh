#!/usr/bin/env bash
# test.sh: runs the whole test suite on a fresh machine.
#
# Installs what the tests need if it is missing (the EC2 emulator moto, OpenSSH's sshd, sudo, the
# test user and the AuthorizedKeysCommand: scripts/testworld.sh install), builds once, then runs
# the unit tests and the one integration test binary. The integration tests start their own
# emulator and sshd on 127.0.0.1 and stop them, even when a test fails.
#
# With CI=true a missing test dependency fails the run instead of skipping tests.
#
# Usage: scripts/test.sh [extra cargo test arguments, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing test dependencies if missing"
scripts/testworld.sh install
# Packer 1.6.6 (Debian's package) is the reference some tests compare against.
if ! command -v packer >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer
    else
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer
    fi
fi

echo "==> the shape of src/: no import circle, no file or function over its size budget"
python3 scripts/import-graph.py
python3 scripts/budgets.py

echo "==> building (once) and running all tests"
# The integration tests hold builds at chosen steps: they need the test hooks (src/testhook.rs),
# which only a build with the `test-hooks` feature has (a plain `cargo test` reports those tests
# as ignored, "needs --features test-hooks"). The shared test support is tests/integration/support/.
cargo build --all-targets --locked --features test-hooks
cargo clippy --all-targets --locked --features test-hooks -- -D warnings
cargo test --all-targets --locked --features test-hooks "$@"
