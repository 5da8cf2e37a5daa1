#!/usr/bin/env python3
"""delayproxy.py: a delay proxy in front of the test world's EC2 emulator (moto), on 127.0.0.1.

moto changes states at once: an instance runs as soon as RunInstances returns, an AMI is
available as soon as CreateImage returns. This proxy makes the changes lag the way EC2's do, with
random jitter so that poll timing cannot line up: it forwards every request and rewrites the
states in the Describe answers until each change's time has come.

  instance running   RunInstances      + START     + U(0, JITTER) s   (pending until then)
  instance stopped   StopInstances     + STOP      + U(0, JITTER) s   (stopping)
  instance gone      TerminateInstances+ TERMINATE + U(0, JITTER) s   (shutting-down)
  AMI available      CreateImage       + AMI       + U(0, JITTER) s   (pending; its snapshots
                                                                      pending with a Progress)
  copy available     CopyImage         + COPY      + U(0, JITTER) s
  stack updated      UpdateStack       + STACK     + U(0, JITTER) s   (UPDATE_IN_PROGRESS; only
                                                                      with --stack, and through
                                                                      custom_endpoint_cloudformation)

It writes one JSON line per event to --log: every request ({"ev": "call", "t", "action", "ids":
how many IDs it named, "listed": how many of them as a list rather than in a filter, "status",
"region": from the request's signature, "filters": the filters' names}), every change made to lag ({"ev": "change", "id", "kind", "t",
"final_at", "region"}) and the first answer that showed a change done ({"ev": "noticed", "id", "kind",
"delay": seconds between the change's time and that answer}).

Faults for the tests: --throttle N answers the first N Describe calls after the first change
with RequestLimitExceeded (HTTP 503); --throttle-stacks N the first N DescribeStacks calls after
an UpdateStack with CloudFormation's Throttling (HTTP 400); --fail-images makes every AMI end
`failed` with a reason; --refuse TYPE=CODE (repeatable) answers every RunInstances of instance
type TYPE with EC2's error CODE, without forwarding it (InsufficientInstanceCapacity and
InsufficientCapacity with HTTP 500, as EC2's server errors; SpotMaxPriceTooLow,
MaxSpotInstanceCountExceeded, Unsupported, ... with 400). RunInstances calls are logged with
their "type".

Usage: delayproxy.py --upstream http://127.0.0.1:PORT --port-file FILE --log FILE
                     [--start 9] [--stop 11] [--terminate 7] [--ami 23] [--copy 23]
                     [--jitter 15] [--stack 0] [--seed N] [--throttle N]
                     [--throttle-stacks N] [--fail-images] [--refuse TYPE=CODE ...]
Standard library only. Stops on SIGTERM/SIGINT.
"""

import argparse
import http.client
import http.server
import json
import random
import re
import signal
import sys
import threading
import time
import urllib.parse

FAIL_REASON = "Client.SnapshotCreationFailed: the snapshot of /dev/sda1 failed (delay proxy)"


class World:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.changes = {}  # id -> dict(kind, start, final_at, noticed)
        self.snap_of = {}  # snapshot id -> image id
        self.throttle_left = args.throttle
        self.stack_throttle_left = 0
        self.log_file = open(args.log, "a", buffering=1)

    def log(self, **ev):
        with self.lock:
            self.log_file.write(json.dumps(ev) + "\n")

    def change(self, ident, kind, base, region=""):
        now = time.time()
        final_at = now + base + self.rng.uniform(0, self.args.jitter)
        with self.lock:
            self.changes[ident] = {"kind": kind, "start": now, "final_at": final_at, "noticed": False}
        self.log(ev="change", id=ident, kind=kind, t=now, final_at=final_at, region=region)

    def state_of(self, ident):
        """(kind, done, fraction) of a change, or None."""
        with self.lock:
            c = self.changes.get(ident)
        if c is None:
            return None
        now = time.time()
        span = max(c["final_at"] - c["start"], 0.001)
        return c["kind"], now >= c["final_at"], min(max((now - c["start"]) / span, 0.0), 1.0)

    def noticed(self, ident):
        now = time.time()
        with self.lock:
            c = self.changes.get(ident)
            if c is None or c["noticed"]:
                return
            c["noticed"] = True
        self.log(ev="noticed", id=ident, kind=c["kind"], delay=now - c["final_at"], t=now)


INSTANCE_PENDING = {"run": (0, "pending"), "stop": (64, "stopping"), "terminate": (32, "shutting-down")}


def rewrite_instances(world, body):
    def one(m):
        item = m.group(0)
        ident = m.group(1)
        st = world.state_of(ident)
        if st is None or st[0] not in INSTANCE_PENDING:
            return item
        kind, done, _ = st
        if done:
            world.noticed(ident)
            return item
        code, name = INSTANCE_PENDING[kind]
        return re.sub(r"<instanceState>\s*<code>\d+</code>\s*<name>[a-z-]+</name>\s*</instanceState>",
                      f"<instanceState><code>{code}</code><name>{name}</name></instanceState>", item, count=1)
    return re.sub(r"<instanceId>(i-[0-9a-f]+)</instanceId>.*?</instanceState>", one, body, flags=re.S)


def rewrite_images(world, body):
    def one(m):
        item = m.string
        ident = m.group(1)
        for s in re.findall(r"<snapshotId>(snap-[0-9a-f]+)</snapshotId>", item):
            with world.lock:
                world.snap_of.setdefault(s, ident)
        st = world.state_of(ident)
        if st is None or st[0] not in ("ami", "copy"):
            return item
        kind, done, _ = st
        if done:
            world.noticed(ident)
            if world.args.fail_images and kind == "ami":
                reason = f"<stateReason><code>Client.SnapshotCreationFailed</code><message>{FAIL_REASON}</message></stateReason>"
                return re.sub(r"<imageState>[a-z]+</imageState>", "<imageState>failed</imageState>" + reason, item, count=1)
            return item
        return re.sub(r"<imageState>[a-z]+</imageState>", "<imageState>pending</imageState>", item, count=1)
    return map_items(body, "imagesSet", lambda item: one_image(item, one))


def map_items(body, set_tag, f):
    """`body` with f applied to each top-level <item> of <set_tag> (items nest)."""
    start = body.find(f"<{set_tag}>")
    end = body.rfind(f"</{set_tag}>")
    if start < 0 or end < 0:
        return body
    start += len(set_tag) + 2
    out, pos, depth, item_start = [body[:start]], start, 0, None
    for m in re.finditer(r"<(/?)item>", body[start:end]):
        at = start + m.start()
        if not m.group(1):
            if depth == 0:
                out.append(body[pos:at])
                item_start = at
            depth += 1
        else:
            depth -= 1
            if depth == 0 and item_start is not None:
                stop = start + m.end()
                out.append(f(body[item_start:stop]))
                pos = stop
    out.append(body[pos:])
    return "".join(out)


def one_image(item, one):
    m = re.search(r"<imageId>(ami-[0-9a-f]+)</imageId>", item)
    return one(m) if m else item


def rewrite_snapshots(world, body):
    def one(m):
        item = m.group(0)
        with world.lock:
            image = world.snap_of.get(m.group(1))
        st = world.state_of(image) if image else None
        if st is None or st[1]:
            return item
        pct = int(st[2] * 100)
        item = re.sub(r"<status>[a-z]+</status>", "<status>pending</status>", item, count=1)
        return re.sub(r"<progress>[^<]*</progress>", f"<progress>{pct}%</progress>", item, count=1)
    return re.sub(r"<snapshotId>(snap-[0-9a-f]+)</snapshotId>.*?</progress>", one, body, flags=re.S)


def rewrite_stacks(world, body):
    """DescribeStacks names one stack (as imgbuild asks): UPDATE_IN_PROGRESS until its time."""
    m = re.search(r"<StackName>([^<]+)</StackName>", body)
    st = world.state_of(m.group(1)) if m else None
    if st is None or st[0] != "stack":
        return body
    if st[1]:
        world.noticed(m.group(1))
        return body
    return re.sub(r"<StackStatus>UPDATE_COMPLETE</StackStatus>", "<StackStatus>UPDATE_IN_PROGRESS</StackStatus>", body, count=1)


STACK_THROTTLED = (b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
                   b'<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>'
                   b'<RequestId>delayproxy</RequestId></ErrorResponse>')


def ids_named(form):
    n = 0
    for k, v in form.items():
        if re.match(r"^(InstanceId|ImageId|SnapshotId)\.\d+$", k) or re.match(r"^Filter\.\d+\.Value\.\d+$", k):
            n += len(v)
    return n


def ids_listed(form):
    """The IDs named as a list (`ImageId.1`: a wait of its own), not in a filter (the shared pollers)."""
    return sum(len(v) for k, v in form.items() if re.match(r"^(InstanceId|ImageId|SnapshotId)\.\d+$", k))


THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded'
             b'</Code><Message>Request limit exceeded.</Message></Error></Errors>'
             b'<RequestID>delayproxy</RequestID></Response>')


SERVER_CODES = ("InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity")


def refusal(code, instance_type):
    """(HTTP status, body) of EC2's error `code` for a RunInstances of `instance_type`."""
    if code == "SpotMaxPriceTooLow":
        msg = f"Your Spot request price is lower than the minimum required Spot request fulfillment price for {instance_type}."
    elif code == "Unsupported":
        msg = f"Your requested instance type ({instance_type}) is not supported in your requested Availability Zone."
    else:
        msg = f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested."
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>' + code + '</Code><Message>'
            + msg + '</Message></Error></Errors><RequestID>delayproxy</RequestID></Response>')
    return (500 if code in SERVER_CODES else 400), body.encode("utf-8")


def make_handler(world, upstream):
    up = urllib.parse.urlparse(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, body):
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            conn.close()
            return r.status, r.getheaders(), data

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
            action = (form.get("Action") or [""])[0]
            m = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", self.headers.get("Authorization") or "")
            region = m.group(1) if m else ""
            filters = sorted(v[0] for k, v in form.items() if re.match(r"^Filter\.\d+\.Name$", k))
            if action.startswith("Describe") and world.changes and world.throttle_left > 0:
                with world.lock:
                    world.throttle_left -= 1
                world.log(ev="call", t=time.time(), action=action, ids=ids_named(form), listed=ids_listed(form), status=503)
                self.answer(503, [("Content-Type", "text/xml")], THROTTLED)
                return
            if action == "DescribeStacks" and world.stack_throttle_left > 0:
                with world.lock:
                    world.stack_throttle_left -= 1
                world.log(ev="call", t=time.time(), action=action, ids=1, listed=1, status=400)
                self.answer(400, [("Content-Type", "text/xml")], STACK_THROTTLED)
                return
            itype = (form.get("InstanceType") or [""])[0]
            refuse = dict(r.split("=", 1) for r in world.args.refuse)
            if action == "RunInstances" and itype in refuse:
                status, data = refusal(refuse[itype], itype)
                world.log(ev="call", t=time.time(), action=action, ids=0, listed=0, status=status, type=itype)
                self.answer(status, [("Content-Type", "text/xml")], data)
                return
            status, headers, data = self.forward(body)
            text = data.decode("utf-8", "replace")
            a = world.args
            if status == 200:
                if action == "RunInstances":
                    for i in dict.fromkeys(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text)):
                        world.change(i, "run", a.start, region)
                elif action in ("StopInstances", "TerminateInstances"):
                    kind, base = ("stop", a.stop) if action == "StopInstances" else ("terminate", a.terminate)
                    for k, v in form.items():
                        if re.match(r"^InstanceId\.\d+$", k):
                            world.change(v[0], kind, base, region)
                elif action in ("CreateImage", "CopyImage"):
                    m = re.search(r"<imageId>(ami-[0-9a-f]+)</imageId>", text)
                    if m:
                        kind, base = ("ami", a.ami) if action == "CreateImage" else ("copy", a.copy)
                        world.change(m.group(1), kind, base, region)
                elif action == "UpdateStack" and a.stack > 0:
                    world.change((form.get("StackName") or [""])[0], "stack", a.stack, region)
                    with world.lock:
                        world.stack_throttle_left = a.throttle_stacks
                elif action == "DescribeStacks":
                    text = rewrite_stacks(world, text)
                elif action == "DescribeInstances":
                    text = rewrite_instances(world, text)
                elif action == "DescribeImages":
                    text = rewrite_images(world, text)
                elif action == "DescribeSnapshots":
                    text = rewrite_snapshots(world, text)
            extra = {"type": itype} if action == "RunInstances" else {}
            world.log(ev="call", t=time.time(), action=action, ids=ids_named(form), listed=ids_listed(form),
                      status=status, region=region, filters=filters, **extra)
            self.answer(status, headers, text.encode("utf-8"))

        def do_POST(self):
            self.handle_any()

        def do_GET(self):
            self.handle_any()

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--start", type=float, default=9)
    p.add_argument("--stop", type=float, default=11)
    p.add_argument("--terminate", type=float, default=7)
    p.add_argument("--ami", type=float, default=23)
    p.add_argument("--copy", type=float, default=23)
    p.add_argument("--jitter", type=float, default=15)
    p.add_argument("--stack", type=float, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--throttle", type=int, default=0)
    p.add_argument("--throttle-stacks", type=int, default=0)
    p.add_argument("--fail-images", action="store_true")
    p.add_argument("--refuse", action="append", default=[], metavar="TYPE=CODE")
    args = p.parse_args()
    world = World(args)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(world, args.upstream))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
