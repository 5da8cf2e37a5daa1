#!/usr/bin/env python3
"""example_records.py: scripts/example.sh's reading of imgbuild's `-machine-readable` records, so
that a change of wording in imgbuild's human output cannot break the example.

    example_records.py render               stdin (records) -> the human lines (ui say/message/
                                             error records), each with its UTC time, as they come
    example_records.py summary FILE RC WORLD_S BUILD_S
                                             the example's ending from the records in FILE: the AMI,
                                             the boot test's result and what ran for real (RC 0 and
                                             a passed boot test), or where it failed; exits with RC
                                             (1 when RC is 0 but no boot test passed)

Records are Packer's lines `timestamp,target,type,data...` (README "Outputs for pipelines"); data
has commas written `%!(PACKER_COMMA)` and newlines `\\n`. The summary reads the `boot-test`
record (`boot-test,RESULT,REGION,AMI[,MESSAGE]`), the artifact's `id` (`REGION:AMI`), the
timeline's phases, and the output of the template's own checks (`ui,message`).
"""

import signal
import sys
import time


def unescape(field):
    return field.replace("%!(PACKER_COMMA)", ",").replace("\\r", "\r").replace("\\n", "\n")


def parse(line):
    """(timestamp, target, type, [data...]) of one record, or None for a line that is not one."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), unescape(parts[1]), parts[2], [unescape(p) for p in parts[3:]]


def records(lines):
    return [r for r in map(parse, lines) if r is not None]


def render(inp, out):
    last_say = None
    for line in inp:
        r = parse(line)
        if r is None:
            # Not a record (a tool's own output): shown as it is.
            out.write(line)
        elif r[2] == "ui" and len(r[3]) >= 2:
            # Machine-readable output lists an artifact once per post-processor that passed it
            # on; a person reads each once (as in imgbuild's human output).
            if r[3][0] == "say" and r[3][1].startswith("--> ") and r[3][1] == last_say:
                continue
            last_say = r[3][1] if r[3][0] == "say" else None
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r[0]))
            for text in r[3][1].split("\n"):
                out.write("%s: %s\n" % (stamp, text) if text else "\n")
        out.flush()


class Outcome:
    """What the records of one example build say."""

    def __init__(self, recs):
        self.boot = None  # (result, region, ami, message)
        self.amis = []  # (region, ami) of the artifact, build region first
        self.phases = {}
        self.messages = []
        for _ts, _target, kind, data in recs:
            if kind == "boot-test" and len(data) >= 3:
                self.boot = (data[0], data[1], data[2], data[3] if len(data) > 3 else "")
            elif kind == "artifact" and len(data) >= 3 and data[1] == "id" and not self.amis:
                self.amis = [tuple(p.split(":", 1)) for p in data[2].split(",") if ":" in p]
            elif kind == "timeline" and len(data) >= 2:
                self.phases[data[0]] = data[1]
            elif kind == "ui" and len(data) >= 2 and data[0] == "message":
                self.messages.extend(data[1].split("\n"))

    def passed(self):
        return self.boot is not None and self.boot[0] == "passed"

    def phase(self, name):
        s = self.phases.get(name)
        return "%s s" % s if s else "? s"

    def check_output(self):
        """The template's checks' own lines: their verdict and what the instance answered."""
        def bare(line):
            return line.split("web_worker: ", 1)[-1].strip()
        verdict = [bare(m) for m in self.messages if "web worker checks passed: " in m]
        answer = []
        for i, m in enumerate(self.messages):
            if "GET http://" in m:
                answer = [bare(x) for x in self.messages[i + 1:i + 4]]
        return (verdict[-1] if verdict else ""), ", ".join(answer)


WHAT_RAN = """\
    what ran for real: imgbuild's whole amazon-ebs build of images/web_worker.json (unchanged) through the AWS SDK
      against an EC2 emulator (moto); a real Debian 12 root booted by systemd (systemd-nspawn) as the source instance,
      reached over SSH on port 22 at the address DescribeInstances gave; the wait for first boot (wait_for_boot:
      the local cloud's first-boot unit and its cloud-init status --wait); the template's provisioners as written:
      apt-get from Debian's archive, virtualenv and pip from PyPI (the .debs and wheels are cached between runs on
      this machine), Apache's site, the Celery unit enabled with systemctl; CreateImage froze the instance's disk;
      the template's boot-test post-processor booted a new instance from the AMI, curled Django's /health/ through
      Apache and mod_wsgi at the instance's own address and checked celery.service is enabled, then tore it down;
      the manifest and ami-outputs post-processors wrote their files.
      The security groups (the build's and the boot test's temporary ones) were enforced with nftables.
    emulated: the EC2 API itself (moto), Ubuntu 22.04 (the root is Debian 12), EBS."""


def summary(recs, rc, world_s, build_s):
    """The example's ending and its exit status."""
    o = Outcome(recs)
    total = world_s + build_s
    if rc != 0 or not o.passed():
        # Nothing is claimed for a build that did not finish: say where to look, and stop.
        if o.boot is not None:
            where = "the boot test %s: see its output above (a failed boot test deregisters the AMI)" % o.boot[0]
            if o.boot[3]:
                where += "\n    boot test of %s in %s: %s" % (o.boot[2], o.boot[1], o.boot[3])
        else:
            where = "the build stopped before the boot test: see its output above (its error names the step)"
        text = "\n==> FAILED (exit %d): %s\n    time: world start %d s, build %d s, total %d s\n" % (
            rc or 1, where, world_s, build_s, total)
        return text, rc or 1
    amis = sorted(o.amis or [(o.boot[1], o.boot[2])], key=lambda a: a[0] != o.boot[1])
    verdict, answer = o.check_output()
    text = "\n==> AMI: %s\n" % ", ".join("%s (%s)" % (ami, region) for region, ami in amis)
    text += "    boot test: PASSED (%s booted in %s and its checks passed)\n" % (o.boot[2], o.boot[1])
    if verdict:
        text += "      %s\n" % verdict
    if answer:
        text += "      the instance answered: %s\n" % answer
    text += WHAT_RAN + "\n"
    text += ("    time: world start %d s, build with boot test %d s (instance to first SSH %s,\n"
             "      first boot wait %s, boot test %s), total %d s\n") % (
        world_s, build_s, o.phase("SSH"), o.phase("first boot"), o.phase("post-processor boot-test"), total)
    return text, 0


def main(argv):
    if argv[:1] == ["render"]:
        # Ctrl-C is imgbuild's to handle: the renderer shows its teardown until its output ends.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        render(sys.stdin, sys.stdout)
        return 0
    if len(argv) == 5 and argv[0] == "summary":
        with open(argv[1], errors="replace") as f:
            recs = records(f)
        text, code = summary(recs, int(argv[2]), int(argv[3]), int(argv[4]))
        sys.stdout.write(text)
        return code
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
