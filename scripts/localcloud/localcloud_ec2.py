#!/usr/bin/env python3
"""localcloud_ec2.py: the local cloud's EC2 endpoint: moto's server, in-process, whose instances are real.

    localcloud_ec2.py -H 127.0.0.1 -p PORT --state STATE_DIR

moto answers the EC2 API; hooks on RunInstances, StopInstances, StartInstances, RebootInstances,
TerminateInstances, CreateImage, CopyImage, DeregisterImage and DeleteSnapshot make each one a real machine action
(localcloud.py): an instance is a Debian root booted by systemd-nspawn on its own loopback address, which
DescribeInstances reports as both its public and private IP.

Source images answer the filters real templates use (Ubuntu 22.04/24.04 owned by Canonical 099720109477,
Debian 12 owned by 136693071363, Amazon Linux 2 / 2023 owned by 137112412989); all are the one Debian base
root, with the image's usual login user (ubuntu, admin, ec2-user). CreateImage freezes the instance's disk
(a copy of its upper layer) and RunInstances from that AMI boots it; the copy is deleted once the AMI is
deregistered and its snapshot deleted. SIGTERM stops and removes every instance before the server exits.
With --security-groups HOST_ADDRESS (testworld.sh passes it unless --no-security-groups), the groups of every
running instance are enforced on its address (localcloud_sg.py), rebuilt after every instance or rule change.
"""

import argparse
import base64
import fcntl
import json
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import localcloud  # noqa: E402
import localcloud_sg  # noqa: E402

SOURCE_IMAGES = [
    ("ami-0lc0ubuntu2204", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301",
     "099720109477", "ubuntu", "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image (local cloud: Debian 12 root)"),
    ("ami-0lc0ubuntu2404", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423",
     "099720109477", "ubuntu", "Canonical, Ubuntu, 24.04 LTS, amd64 noble image (local cloud: Debian 12 root)"),
    ("ami-0lc0debian12", "debian-12-amd64-20240201-1645",
     "136693071363", "admin", "Debian 12 (20240201-1645) (local cloud)"),
    ("ami-0lc0al2023", "al2023-ami-2023.3.20240219.0-kernel-6.1-x86_64",
     "137112412989", "ec2-user", "Amazon Linux 2023 AMI (local cloud: Debian 12 root)"),
    ("ami-0lc0amzn2", "amzn2-ami-hvm-2.0.20240223.0-x86_64-gp2",
     "137112412989", "ec2-user", "Amazon Linux 2 AMI (local cloud: Debian 12 root)"),
]

NETS_DIR = os.path.join(localcloud.CACHE_DIR, "nets")


def write_amis_file(path):
    # No creation_date: moto parses it in place, once per region, and fails on the second region.
    amis = [{
        "ami_id": ami_id, "name": name, "description": desc, "owner_id": owner, "public": True,
        "virtualization_type": "hvm", "architecture": "x86_64", "state": "available",
        "root_device_type": "ebs", "root_device_name": "/dev/sda1", "hypervisor": "xen",
        "image_type": "machine", "platform": None,
        "boot_mode": "legacy-bios",
    } for ami_id, name, owner, _user, desc in SOURCE_IMAGES]
    with open(path, "w") as f:
        json.dump(amis, f)


def claim_net(state_dir):
    """A 127.A.B.0/24 of this cloud's own (released when its state dir is gone)."""
    os.makedirs(NETS_DIR, exist_ok=True)
    with open(os.path.join(localcloud.CACHE_DIR, "nets.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for a in range(100, 200):
            for b in range(0, 256):
                p = os.path.join(NETS_DIR, "127.%d.%d" % (a, b))
                try:
                    with open(p) as f:
                        owner = f.read().strip()
                    if os.path.isdir(owner) and owner != state_dir:
                        continue
                except OSError:
                    pass
                with open(p, "w") as f:
                    f.write(state_dir)
                # A table a killed cloud left on this network goes first.
                localcloud_sg.delete_table("127.%d.%d" % (a, b))
                return "127.%d.%d" % (a, b)
    raise SystemExit("localcloud: no free 127.A.B.0/24 left in " + NETS_DIR)


class Hooks:
    def __init__(self, state_dir, host_address=None):
        self.cloud = localcloud.Cloud(state_dir)
        self.lock = threading.RLock()
        self.net = claim_net(self.cloud.dir)
        # Security groups enforced (--security-groups): this machine's addresses as the cloud
        # sees it; None: not enforced.
        self.host_addresses = [host_address, "127.0.0.1"] if host_address else None
        self.live = {}  # instance id -> moto instance (not terminated)
        self.next_host = 10
        self.ips = {}  # instance id -> address
        # AMI id -> {"layers": [...], "user": str, "snapshot": id or None, "deregistered": bool}
        self.images = {ami_id: {"layers": [], "user": user, "snapshot": None, "deregistered": False}
                       for ami_id, _n, _o, user, _d in SOURCE_IMAGES}
        self.snapshots_deleted = set()

    def allocate_ip(self):
        used = set(self.ips.values())
        for _ in range(245):
            ip = "%s.%d" % (self.net, self.next_host)
            self.next_host = 10 + (self.next_host - 9) % 245
            if ip not in used:
                return ip
        raise RuntimeError("the local cloud has no free address left in %s.0/24" % self.net)

    def launched(self, instance):
        with self.lock:
            image = self.images.get(instance.image_id) or self.images["ami-0lc0ubuntu2204"]
            ip = self.allocate_ip()
            self.ips[instance.id] = ip
            key = ""
            if instance.key_name:
                kp = instance.ec2_backend.key_pairs.get(instance.key_name)
                key = kp.public_key if kp else ""
            hostname = "ip-" + ip.replace(".", "-")
            self.cloud.create(instance.id, ip, list(image["layers"]), image["user"], key, hostname,
                              user_data_bytes(getattr(instance, "user_data", None)))
            self.images_user = image["user"]
            set_addresses(instance, ip)
            self.live[instance.id] = instance
            self.cloud.start(instance.id)
            self.enforce()

    def enforce(self):
        """Makes the groups of every running instance real (--security-groups)."""
        if self.host_addresses is None:
            return
        with self.lock:
            running = []
            for iid, instance in self.live.items():
                # EC2's state, not the supervisor's (it may not have started yet).
                if getattr(getattr(instance, "_state", None), "name", "running") not in ("pending", "running"):
                    continue
                v2, _ = self.cloud.cgroups(iid)
                # The supervisor makes the instance's cgroup as it starts (bounded wait).
                for _ in range(100):
                    if os.path.isdir(v2):
                        break
                    time.sleep(0.05)
                cgroup = os.path.relpath(v2, localcloud.CGROUP_V2) if os.path.isdir(v2) else None
                running.append((self.ips[iid], cgroup, groups_of(instance), vpc_cidrs(instance)))
            text = localcloud_sg.ruleset(self.net, running, self.host_addresses)
            ok, err = localcloud_sg.run_nft(text, localcloud.CGROUP_V2)
            if not ok:
                print("localcloud: security groups NOT enforced: nft failed: %s" % err, file=sys.stderr, flush=True)

    def image_created(self, ami, instance_id):
        with self.lock:
            layers = self.cloud.create_image(instance_id, ami.id)
            user = self.cloud.meta(instance_id)["user"]
            snap = getattr(getattr(ami, "ebs_snapshot", None), "id", None)
            self.images[ami.id] = {"layers": layers, "user": user, "snapshot": snap, "deregistered": False}

    def maybe_free(self, ami_id):
        img = self.images.get(ami_id)
        if img and img["deregistered"] and (img["snapshot"] is None or img["snapshot"] in self.snapshots_deleted):
            self.cloud.delete_image(ami_id)
            del self.images[ami_id]

    def teardown(self):
        with self.lock:
            self.cloud.teardown()
            localcloud_sg.delete_table(self.net)


def vpc_cidrs(instance):
    """The IPv4 CIDR blocks of the instance's VPC ([] when moto cannot say)."""
    try:
        vpc = instance.ec2_backend.get_vpc(instance.vpc_id)
    except Exception:  # noqa: BLE001 (a moto version without it: no VPC rule counts)
        return []
    cidrs = [getattr(vpc, "cidr_block", None)]
    for assoc in (getattr(vpc, "cidr_block_association_set", None) or []):
        if isinstance(assoc, dict):
            cidrs.append(assoc.get("cidr_block"))
    return [c for c in cidrs if c]


def groups_of(instance):
    """The instance's security groups (moto objects), from the instance and its interfaces."""
    found = {}
    for g in list(getattr(instance, "security_groups", None) or []):
        found[getattr(g, "id", id(g))] = g
    for nic in getattr(instance, "nics", {}).values():
        for g in list(getattr(nic, "group_set", None) or []):
            found[getattr(g, "id", id(g))] = g
    return [g for g in found.values() if hasattr(g, "ingress_rules")]


def user_data_bytes(ud):
    """moto's UserData (base64: a Base64EncodedString, or a string or a list of one in older
    versions) decoded; b"" when there is none or it is not base64."""
    if ud is None:
        return b""
    enc = getattr(ud, "_encoded_string", None)
    if enc is None:
        if isinstance(ud, (list, tuple)):
            ud = ud[0] if ud else ""
        enc = ud.decode() if isinstance(ud, bytes) else str(ud)
    try:
        return base64.b64decode(enc)
    except ValueError:
        return b""


def set_addresses(instance, ip):
    for nic in instance.nics.values():
        nic.private_ip_address = ip
        if getattr(nic, "private_ip_addresses", None):
            nic.private_ip_addresses[0]["PrivateIpAddress"] = ip
        nic.public_ip = ip if instance._state.name in ("pending", "running") else None


def install_hooks(hooks):
    from moto.ec2.models import amis, elastic_block_store, instances

    ib = instances.InstanceBackend
    orig = {name: getattr(ib, name) for name in
            ["run_instances", "stop_instances", "start_instances", "terminate_instances", "reboot_instances"]}

    def run_instances(self, *args, **kwargs):
        reservation = orig["run_instances"](self, *args, **kwargs)
        for instance in reservation.instances:
            hooks.launched(instance)
        return reservation

    def stop_instances(self, instance_ids):
        result = orig["stop_instances"](self, instance_ids)
        for instance, _prev in result:
            hooks.cloud.stop(instance.id)
            set_addresses(instance, hooks.ips.get(instance.id))
        hooks.enforce()
        return result

    def start_instances(self, instance_ids):
        result = orig["start_instances"](self, instance_ids)
        for instance, _prev in result:
            set_addresses(instance, hooks.ips.get(instance.id))
            hooks.cloud.start(instance.id)
        hooks.enforce()
        return result

    def reboot_instances(self, instance_ids):
        result = orig["reboot_instances"](self, instance_ids)
        for instance in result:
            hooks.cloud.stop(instance.id)
            hooks.cloud.start(instance.id)
        hooks.enforce()
        return result

    def terminate_instances(self, instance_ids):
        result = orig["terminate_instances"](self, instance_ids)
        for instance, _prev in result:
            with hooks.lock:
                hooks.cloud.terminate(instance.id)
                hooks.ips.pop(instance.id, None)
                hooks.live.pop(instance.id, None)
        hooks.enforce()
        return result

    for name, fn in [("run_instances", run_instances), ("stop_instances", stop_instances),
                     ("start_instances", start_instances), ("reboot_instances", reboot_instances),
                     ("terminate_instances", terminate_instances)]:
        setattr(ib, name, fn)

    ab = amis.AmiBackend
    orig_create, orig_dereg, orig_copy = ab.create_image, ab.deregister_image, ab.copy_image

    def copy_image(self, source_image_id, *args, **kwargs):
        ami = orig_copy(self, source_image_id, *args, **kwargs)
        with hooks.lock:
            src = hooks.images.get(source_image_id)
            if src is not None:
                snap = getattr(getattr(ami, "ebs_snapshot", None), "id", None)
                hooks.images[ami.id] = {"layers": list(src["layers"]), "user": src["user"], "snapshot": snap,
                                        "deregistered": False}
                if src["layers"]:
                    hooks.cloud.copy_image(source_image_id, ami.id, src["layers"])
        return ami

    def create_image(self, instance_id, *args, **kwargs):
        ami = orig_create(self, instance_id, *args, **kwargs)
        hooks.image_created(ami, instance_id)
        return ami

    def deregister_image(self, ami_id):
        orig_dereg(self, ami_id)
        with hooks.lock:
            if ami_id in hooks.images and hooks.images[ami_id]["layers"]:
                hooks.images[ami_id]["deregistered"] = True
                hooks.maybe_free(ami_id)

    ab.create_image, ab.deregister_image, ab.copy_image = create_image, deregister_image, copy_image

    eb = elastic_block_store.EBSBackend
    orig_del_snap = eb.delete_snapshot

    def delete_snapshot(self, snapshot_id):
        result = orig_del_snap(self, snapshot_id)
        with hooks.lock:
            hooks.snapshots_deleted.add(snapshot_id)
            for ami_id in [a for a, img in hooks.images.items() if img["snapshot"] == snapshot_id]:
                hooks.maybe_free(ami_id)
        return result

    eb.delete_snapshot = delete_snapshot

    # Security groups: rules added or revoked, an instance's groups changed.
    from moto.ec2.models import security_groups

    def then_enforce(cls, name):
        orig_fn = getattr(cls, name, None)
        if orig_fn is None:
            return

        def fn(self, *args, **kwargs):
            result = orig_fn(self, *args, **kwargs)
            hooks.enforce()
            return result
        setattr(cls, name, fn)

    for name in ["authorize_security_group_ingress", "revoke_security_group_ingress",
                 "delete_security_group"]:
        then_enforce(security_groups.SecurityGroupBackend, name)
    for name in ["modify_instance_attribute", "modify_instance_security_groups"]:
        then_enforce(ib, name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="the cloud's state directory")
    parser.add_argument("--security-groups", metavar="HOST_ADDRESS",
                        help="enforce security groups (nftables); this machine counts as HOST_ADDRESS")
    args = parser.parse_args()
    state = os.path.abspath(args.state)
    os.makedirs(state, exist_ok=True)
    localcloud.build_base()
    amis_path = os.path.join(state, "amis.json")
    write_amis_file(amis_path)
    os.environ["MOTO_AMIS_PATH"] = amis_path
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    hooks = Hooks(state, args.security_groups)
    install_hooks(hooks)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, app, threaded=True)

    def on_term(_sig, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("localcloud: EC2 endpoint on http://%s:%d, instances on %s.0/24, state in %s"
          % (args.host, args.port, hooks.net, state), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        hooks.teardown()
        print("localcloud: every instance stopped and removed", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
