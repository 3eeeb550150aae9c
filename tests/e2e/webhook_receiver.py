#!/usr/bin/env python3
"""webhook_receiver: a Standard Webhooks receiver for tests/e2e/test_webhooks.sh.

Listens on 127.0.0.1, verifies each POST's webhook-signature on its own (Python's hmac and
base64, not compressd's code), answers 500 to the first --fail tries of every webhook-id and
204 after, and appends one JSON line per request to --log:
  {"n", "at_ms", "path", "id", "timestamp", "valid", "fresh", "status", "content_type", "body"}
valid: the signature matches HMAC-SHA256(key, "id.timestamp.body") for key = base64 after
"whsec_" of --secret; fresh: the timestamp is within 5 minutes of now (the tolerance the
Standard Webhooks spec tells receivers to use). Writes its port to --port-file once listening.
With --delay S it logs the request at once and answers S seconds later (a stalled receiver).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--secret", required=True)
ap.add_argument("--fail", type=int, default=0)
ap.add_argument("--delay", type=float, default=0, help="seconds to wait before answering")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", required=True)
args = ap.parse_args()
KEY = base64.b64decode(args.secret[len("whsec_"):], validate=True)
tries = {}
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        count += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sigs = self.headers.get("webhook-signature", "").split(" ")
        want = base64.b64encode(
            hmac.new(KEY, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
        ).decode()
        valid = any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in sigs)
        fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
        tries[msg_id] = tries.get(msg_id, 0) + 1
        status = 500 if tries[msg_id] <= args.fail else 204
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        line = {"n": count, "at_ms": int(time.time() * 1000), "path": self.path, "id": msg_id,
                "timestamp": ts, "valid": valid, "fresh": fresh, "status": status,
                "content_type": self.headers.get("Content-Type", ""), "body": parsed}
        with open(args.log, "a") as f:
            f.write(json.dumps(line) + "\n")
        time.sleep(args.delay)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


srv = HTTPServer(("127.0.0.1", args.port), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
# renamed last: the port file appears complete or not at all
os.rename(args.port_file + ".tmp", args.port_file)
srv.serve_forever()
