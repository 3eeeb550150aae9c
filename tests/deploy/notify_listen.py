#!/usr/bin/env python3
"""A fake systemd notify socket: bind a unix datagram socket at PATH and append every message
received to LOG as one line "MILLISECONDS MESSAGE" (newlines in a message become spaces), until
SECONDS have passed or the process is terminated. Usage: notify_listen.py PATH LOG SECONDS"""
import os
import socket
import sys
import time

path, log, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
end = time.monotonic() + limit
with open(log, "a", buffering=1) as f:
    f.write("%d LISTENING\n" % int(time.time() * 1000))
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        msg = data.decode("utf-8", "replace").strip().replace("\n", " ")
        f.write("%d %s\n" % (int(time.time() * 1000), msg))
os.unlink(path)
