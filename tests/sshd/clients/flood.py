"""flood.py PORT COUNT SECONDS: COUNT connections to 127.0.0.1:PORT opened at once (run inside
the sandbox against an -R listener). Each ends as "served" (its first bytes arrived), "closed"
(EOF, reset or refused) or "hanging" (neither within SECONDS). Prints
"served=N closed=M hanging=K", holds the served ones HOLD seconds (environment, default 0),
then closes everything (sshd_forward_clients_test)."""
import errno
import os
import resource
import selectors
import socket
import sys
import time

port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
sel = selectors.DefaultSelector()
socks, served, closed = [], 0, 0
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    err = s.connect_ex(("127.0.0.1", port))
    if err not in (0, errno.EINPROGRESS):
        closed += 1
        s.close()
        continue
    socks.append(s)
    sel.register(s, selectors.EVENT_READ)
deadline = time.monotonic() + seconds
pending = len(socks)
while pending and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        sel.unregister(s)
        pending -= 1
        try:
            data = s.recv(64)
        except OSError:
            data = b""
        if data.startswith(b"served"):
            served += 1
        else:
            closed += 1
print(f"served={served} closed={closed} hanging={pending}", flush=True)
time.sleep(float(os.environ.get("HOLD", "0")))
for s in socks:
    s.close()
