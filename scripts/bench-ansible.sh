#!/usr/bin/env bash
# bench-ansible.sh: a 20-task playbook through imgbuild's `ansible` provisioner (null builder)
# against the same playbook run by hand with `ansible-playbook -i host,` on the same instance
# (the test world's sshd), in one run, alternating, N times each; prints the medians and the
# difference (what the provisioner adds: starting imgbuild, its own SSH login, the inventory file).
#
# Usage: scripts/bench-ansible.sh [-n RUNS]   (default 5)
# Needs: scripts/testworld.sh install (ansible-core venv), a release build (cargo build --release)
# or IMGBUILD_BIN. Everything it starts is stopped by PID; its files are in one temp directory.
set -euo pipefail
# Ansible refuses a locale that is not UTF-8.
export LC_ALL=C.UTF-8

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
die() { echo "bench-ansible.sh: $*" >&2; exit 1; }
note() { echo "bench-ansible.sh: $*" >&2; }
while (($#)); do
    case $1 in
        -n) RUNS=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "-n must be 1..50"

IMGBUILD_BIN=${IMGBUILD_BIN:-$ROOT/target/release/imgbuild}
[[ -x $IMGBUILD_BIN ]] || die "no imgbuild binary at $IMGBUILD_BIN: cargo build --release, or set IMGBUILD_BIN"
VENV=${ANSIBLE_VENV:-/usr/local/lib/imgbuild-testworld/ansible-venv}
if [[ -x $VENV/bin/ansible-playbook ]]; then export PATH="$VENV/bin:$PATH"; fi
command -v ansible-playbook >/dev/null || die "ansible-playbook not found: scripts/testworld.sh install"

unset SSH_AUTH_SOCK AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EC2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench-ansible.XXXXXX")
STATE=$WORK/world
cleanup() {
    bash "$ROOT/scripts/testworld.sh" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bash "$ROOT/scripts/testworld.sh" start "$STATE" --owner-pid $$ >/dev/null \
    || die "the test world did not start (scripts/testworld.sh start)"
set -a; . "$STATE/env"; set +a
export IMGBUILD_JOURNAL_DIR=$WORK/journal
HOST=$IMGBUILD_TEST_SSH_HOST PORT=$IMGBUILD_TEST_SSH_PORT USER_=$IMGBUILD_TEST_SSH_USER
OUT=$IMGBUILD_TEST_SANDBOX/bench-ansible

# A key of the benchmark's own, imported into the emulator so that sshd accepts it.
ssh-keygen -q -t ed25519 -N "" -C bench-ansible -f "$WORK/key" >/dev/null
python3 - "$IMGBUILD_TEST_EC2_ENDPOINT" "$WORK/key.pub" <<'EOF'
import base64, sys, urllib.parse, urllib.request
endpoint, pub = sys.argv[1], open(sys.argv[2]).read().strip()
data = urllib.parse.urlencode({"Action": "ImportKeyPair", "Version": "2016-11-15",
    "KeyName": "bench-ansible", "PublicKeyMaterial": base64.b64encode(pub.encode()).decode()}).encode()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
auth = "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
opener.open(urllib.request.Request(endpoint + "/", data=data, headers={"Authorization": auth}), timeout=30).read()
EOF

# The playbook: facts gathered, then 20 tasks (files, templates, commands) in the sandbox.
{
    echo "- name: bench"
    echo "  hosts: all"
    echo "  tasks:"
    for i in $(seq 1 20); do
        case $((i % 4)) in
            0) printf '    - name: task %d\n      ansible.builtin.file:\n        path: "%s/d%d"\n        state: directory\n        mode: "0755"\n' "$i" "$OUT" "$i" ;;
            1) printf '    - name: task %d\n      ansible.builtin.copy:\n        content: "line %d\\n"\n        dest: "%s/f%d"\n        mode: "0644"\n' "$i" "$i" "$OUT" "$i" ;;
            2) printf '    - name: task %d\n      ansible.builtin.command: "true"\n      changed_when: false\n' "$i" ;;
            3) printf '    - name: task %d\n      ansible.builtin.lineinfile:\n        path: "%s/lines"\n        line: "l%d"\n        create: true\n        mode: "0644"\n' "$i" "$OUT" "$i" ;;
        esac
    done
} > "$WORK/site.yml"
rsh() {
    timeout 120 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR \
        -i "$WORK/key" -p "$PORT" "$USER_@$HOST" -- "$@"
}
rsh mkdir -p "$OUT" || die "cannot log in to the world's sshd with the imported key"

cat > "$WORK/t.json" <<JSON
{"builders": [{"type": "null", "ssh_host": "$HOST", "ssh_port": $PORT, "ssh_username": "$USER_",
               "ssh_private_key_file": "$WORK/key", "ssh_timeout": "1m"}],
 "provisioners": [{"type": "ansible", "playbook_file": "$WORK/site.yml"}]}
JSON

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
: > "$WORK/prov"; : > "$WORK/hand"; : > "$WORK/login"
note "timing $RUNS runs of each against sshd on $HOST:$PORT ($(ansible-playbook --version 2>/dev/null | sed -n 1p))"
for r in $(seq 1 "$RUNS"); do
    t0=$(now)
    (cd "$WORK" && "$IMGBUILD_BIN" build -color=false t.json > "$WORK/prov.log" 2>&1) \
        || { cat "$WORK/prov.log" >&2; die "imgbuild build failed"; }
    t1=$(now)
    ANSIBLE_HOST_KEY_CHECKING=False ansible-playbook -i "$HOST," -u "$USER_" \
        -e "ansible_port=$PORT" --private-key "$WORK/key" \
        --ssh-extra-args="-o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no" \
        "$WORK/site.yml" > "$WORK/hand.log" 2>&1 \
        || { cat "$WORK/hand.log" >&2; die "ansible-playbook by hand failed"; }
    t2=$(now)
    rsh true
    t3=$(now)
    echo "$t1 - $t0" | bc >> "$WORK/prov"
    echo "$t2 - $t1" | bc >> "$WORK/hand"
    echo "$t3 - $t2" | bc >> "$WORK/login"
done
P=$(median < "$WORK/prov"); H=$(median < "$WORK/hand")
grep -q "ok=21" "$WORK/prov.log" || die "the provisioner run did not run 21 tasks (facts + 20)"
printf '%-44s %8s s\n' "imgbuild build (ansible provisioner), median" "$P"
printf '%-44s %8s s\n' "ansible-playbook -i host, by hand, median" "$H"
printf '%-44s %8s s\n' "difference (provisioner overhead)" "$(echo "$P - $H" | bc)"
printf '%-44s %8s s\n' "one SSH login (ssh host true), median" "$(median < "$WORK/login")"
echo "runs: $RUNS each, alternating; 20 tasks + fact gathering; same instance, same key"
