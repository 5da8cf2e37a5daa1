#!/usr/bin/env python3
"""check_instance.py: use the local cloud as any EC2 client does (boto3 and OpenSSH, nothing of imgbuild).

    set -a; . STATE_DIR/env; set +a
    python3 scripts/localcloud/check_instance.py [--image AMI] [--user USER] [--check SHELL]... [--keep]

Creates a key pair and a security group that lets SSH in from this machine's public address (the test world's,
IMGBUILD_TEST_PUBLIC_IP; the local cloud enforces groups), finds Canonical's Ubuntu 22.04 image with the usual
filter (or takes --image), launches an instance with the key pair in the group, reads its address from DescribeInstances, logs in on port 22 as `ubuntu` (or
--user) with the key pair's private key, runs `cloud-init status --wait` and `systemctl is-system-running
--wait`, then each --check command (in the instance's shell; $LC_IP is the instance's address), then terminates
the instance and deletes the key pair and the group (unless --keep). Prints the timings and the checks' output. Exit 0 when
all of it worked.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--user", default="ubuntu")
    ap.add_argument("--check", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                       region_name=os.environ.get("AWS_REGION", "us-east-1"))
    name = "check-%d" % os.getpid()
    key = ec2.create_key_pair(KeyName=name)
    images = ec2.describe_images(Owners=["099720109477"], Filters=[
        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]},
        {"Name": "virtualization-type", "Values": ["hvm"]}, {"Name": "root-device-type", "Values": ["ebs"]}])
    image = args.image or sorted(images["Images"], key=lambda i: i["CreationDate"])[-1]["ImageId"]
    me = os.environ.get("IMGBUILD_TEST_PUBLIC_IP", "0.0.0.0")
    group = ec2.create_security_group(GroupName=name, Description="check_instance.py: SSH")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": me + ("/32" if me != "0.0.0.0" else "/0")}]}])
    t0 = time.monotonic()
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                            KeyName=name, SecurityGroupIds=[group])["Instances"][0]["InstanceId"]
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    ip = inst["PublicIpAddress"]
    print("launched %s from %s at %s (private %s)" % (iid, image, ip, inst["PrivateIpAddress"]))
    rc = 1
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = os.path.join(tmp, "key")
        with open(os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(key["KeyMaterial"])
        ssh = ["ssh", "-i", keyfile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR", "-p", "22",
               args.user + "@" + ip]
        for _ in range(120):
            r = subprocess.run(ssh + ["true"], capture_output=True, timeout=30)
            if r.returncode == 0:
                break
            time.sleep(0.25)
        t1 = time.monotonic()
        print("first SSH login after %.2f s" % (t1 - t0))
        r = subprocess.run(ssh + ["cloud-init status --wait; systemctl is-system-running --wait; id -un; "
                                  "sudo -n true && echo sudo ok"], capture_output=True, text=True, timeout=120)
        print(r.stdout.strip())
        rc = 0 if r.returncode == 0 and "sudo ok" in r.stdout else 1
        for check in args.check:
            r = subprocess.run(ssh + ["LC_IP=%s; %s" % (ip, check)], capture_output=True, text=True, timeout=300)
            print("check `%s`: exit %d\n%s" % (check, r.returncode, (r.stdout + r.stderr).strip()))
            rc = rc or (1 if r.returncode != 0 else 0)
    if not args.keep:
        ec2.terminate_instances(InstanceIds=[iid])
        ec2.delete_key_pair(KeyName=name)
        ec2.delete_security_group(GroupId=group)
    print("ok" if rc == 0 else "FAILED")
    return rc


if __name__ == "__main__":
    sys.exit(main())
