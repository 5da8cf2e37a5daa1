#!/usr/bin/env python3
"""localcloud_sg.py: the local cloud's security groups made real with nftables (on unless
`scripts/testworld.sh start DIR --real-instances --no-security-groups`).

One nftables table per cloud, `ip imgbuild_lc_127_A_B`, named after the cloud's own 127.A.B.0/24 and
matching only destinations in it (never anything outside 127.0.0.0/8): a packet to an instance's
address is accepted when
  - it comes from the instance itself (a process of its own cgroup: EC2 does not filter an
    instance's traffic to itself), or belongs to a connection already accepted, or
  - a rule of one of the instance's groups (AuthorizeSecurityGroupIngress) covers its TCP port
    (or all traffic, `-1`) from a CIDR that holds this machine's address as the cloud sees it: the
    test world's public address (what `IMGBUILD_PUBLIC_IP_URL` answers, so the build's temporary
    group "SSH from my address" works), or 127.0.0.1; or a CIDR that overlaps the instance's VPC
    (the machine also stands where a builder inside the VPC would: `ssh_interface: private_ip`);
and dropped otherwise (EC2 drops, it does not refuse). Every other host on 127.0.0.0/8 is
untouched. Traffic between instances arrives from 127.0.0.1 like the machine's own, so it is
judged as the machine's; rules naming source groups or prefix lists grant nothing.

The table is rebuilt in one `nft -f` transaction whenever an instance starts, stops or ends, or a
rule is added or revoked; it is deleted when the cloud stops, by `localcloud.py teardown` (after a
kill -9 of the server) and when its 127.A.B.0/24 is claimed again.

The instance's cgroup is named by path, which nft resolves under /sys/fs/cgroup; where cgroup2 is
mounted elsewhere (/sys/fs/cgroup/unified on a hybrid host) nft runs in a private mount namespace
(unshare -m) with cgroup2 bound there, so nothing is mounted on the host.
"""

import ipaddress
import os
import shutil
import subprocess

TABLE_PREFIX = "imgbuild_lc_"
SELF_MARK = "0x1c5e1f"


def table_name(net):
    return TABLE_PREFIX + net.replace(".", "_")


def nft_path():
    return shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def run_nft(script, cgroup2):
    """Runs an nft script (stdin); returns (ok, stderr)."""
    nft = nft_path()
    if not nft:
        return False, "nft is missing; run: scripts/testworld.sh install (as root)"
    if cgroup2 and os.path.realpath(cgroup2) != "/sys/fs/cgroup":
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /sys/fs/cgroup && exec "$2" -f -', "sh", cgroup2, nft]
    else:
        argv = [nft, "-f", "-"]
    p = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    return p.returncode == 0, p.stderr.strip()


def delete_table(net):
    """Deletes the cloud's table if it exists (a stale one after a kill -9 too)."""
    if nft_path():
        run_nft("table ip %s {}\ndelete table ip %s\n" % (table_name(net), table_name(net)), None)


def host_allowed(cidr, host_addresses, host_networks=()):
    """Whether a rule's CIDR lets this machine in: it holds one of the machine's addresses, or
    overlaps the instance's VPC (the machine is also where a builder inside the VPC would be)."""
    try:
        block = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    if block.version != 4:
        return False
    if any(ipaddress.ip_address(a) in block for a in host_addresses if ":" not in a):
        return True
    return any(block.overlaps(n) for n in host_networks)


def vpc_networks(cidrs):
    out = []
    for c in cidrs:
        try:
            n = ipaddress.ip_network(c, strict=False)
        except ValueError:
            continue
        if n.version == 4 and n.prefixlen > 0:
            out.append(n)
    return out


def allowed_ports(groups, host_addresses, host_networks=()):
    """The TCP ports the instance's groups open to this machine: a set of (from, to) ranges."""
    ports = set()
    for group in groups:
        for rule in getattr(group, "ingress_rules", []):
            proto = str(getattr(rule, "ip_protocol", "") or "").lower()
            if proto not in ("tcp", "6", "-1", "all"):
                continue
            ranges = getattr(rule, "ip_ranges", None)
            if ranges is None:
                ranges = [getattr(rule, "ip_range", None) or {}]
            cidrs = [r.get("CidrIp") for r in ranges if isinstance(r, dict) and r.get("CidrIp")]
            if not any(host_allowed(c, host_addresses, host_networks) for c in cidrs):
                continue
            if proto in ("-1", "all") or rule.from_port is None:
                ports.add((0, 65535))
            else:
                lo, hi = int(rule.from_port), int(rule.to_port if rule.to_port is not None else rule.from_port)
                if 0 <= lo <= hi <= 65535:
                    ports.add((lo, hi))
    return ports


def ruleset(net, instances, host_addresses):
    """The table's text. instances: (address, cgroup path relative to cgroup2 or None, groups,
    the CIDR blocks of the instance's VPC)."""
    t = table_name(net)
    out = ["table ip %s {}" % t, "delete table ip %s" % t, "table ip %s {" % t,
           "  chain selfmark {", "    type filter hook output priority 0; policy accept;"]
    for ip, cgroup, _groups, _vpc in instances:
        if cgroup:
            level = cgroup.count("/") + 1
            out.append('    ip daddr %s socket cgroupv2 level %d "%s" ct mark set %s'
                       % (ip, level, cgroup, SELF_MARK))
    out += ["  }", "  chain ingress {", "    type filter hook input priority 0; policy accept;",
            "    ip daddr != %s.0/24 accept" % net,
            "    ct state established,related accept",
            "    ct mark %s accept" % SELF_MARK]
    for ip, _cgroup, groups, vpc in instances:
        ports = sorted(allowed_ports(groups, host_addresses, vpc_networks(vpc)))
        if ports:
            spec = ", ".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ports)
            out.append("    ip daddr %s tcp dport { %s } accept" % (ip, spec))
    out += ["    ip daddr %s.0/24 drop" % net, "  }", "}"]
    return "\n".join(out) + "\n"
