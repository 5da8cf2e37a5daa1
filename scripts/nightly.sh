#!/usr/bin/env bash
# nightly.sh: the nightly CI job (README, "Nightly pipeline").
#
#   scripts/nightly.sh -var-file=secrets.json [more imgbuild build flags]
#
# One imgbuild run does the whole job: it builds the web worker AMI, or reuses last night's
# when nothing that determines it changed (-skip-unchanged; the template also sets
# reuse_unchanged), writes the AMI ID to web-worker-amis.{json,env}, updates the stack (the
# template's cloudformation-update post-processor) and prunes old AMIs (ami-retention).
#
# Environment:
#   NIGHTLY_TEMPLATE          the template (default images/nightly_example.json)
#   IMGBUILD_FINGERPRINT_KEY  a CI secret (e.g. `openssl rand -hex 32`, at least 16 characters):
#                             the key of the keyed hash of sensitive variables in the reuse
#                             fingerprint. Without it each fresh runner makes a key of its own,
#                             computes another fingerprint and rebuilds every night.
#   AWS credentials           the standard chain (environment, profile, instance role, OIDC).
#
# Exit status, for the CI job:
#   0  the AMI was built or reused, the stack updated, old AMIs pruned: job green.
#   1  a build or a post-processor failed; everything temporary was removed. If the AMI
#      was already made (a failed stack update, a failed prune) it is kept and named in the
#      error, and web-worker-amis.json holds it. Job red; the next night retries.
#   2  the template or the command line is wrong; nothing was attempted. Job red; fix the
#      template (run `imgbuild validate`).
#   3  resources were left behind (listed, with the journal path) and this script's one run
#      of `imgbuild cleanup` could not remove them all. Job red; page someone. (When that
#      cleanup removed everything, the script exits 1: the build failed, nothing is left.)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

template=${NIGHTLY_TEMPLATE:-images/nightly_example.json}
imgbuild=${IMGBUILD:-imgbuild}

if [ -z "${IMGBUILD_FINGERPRINT_KEY:-}" ]; then
    echo "nightly: warning: IMGBUILD_FINGERPRINT_KEY is not set; on a fresh runner the fingerprint of the sensitive variables differs from last night's and the image is rebuilt" >&2
fi

"$imgbuild" build -skip-unchanged -color=false "$@" "$template"
rc=$?
case $rc in
0)
    echo "nightly: done: AMI built or reused; the post-processors (IDs, stack update, pruning) succeeded"
    ;;
1)
    echo "nightly: failed (exit 1): nothing was left behind; see the error above (an AMI that was made is kept and named there)" >&2
    ;;
2)
    echo "nightly: the template or the command line is invalid (exit 2): nothing was attempted" >&2
    ;;
3)
    echo "nightly: resources were left behind (exit 3): running imgbuild cleanup" >&2
    if "$imgbuild" cleanup; then
        # Nothing is left: that is exit 1's meaning (a failed build, everything removed), so
        # that 3 pages someone only when something is still there.
        echo "nightly: cleanup removed everything; the build still failed (exit 1)" >&2
        rc=1
    else
        echo "nightly: cleanup could not remove everything: see the list above" >&2
    fi
    ;;
*)
    echo "nightly: imgbuild ended with unexpected status $rc" >&2
    ;;
esac
exit "$rc"
