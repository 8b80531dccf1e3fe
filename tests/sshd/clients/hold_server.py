"""hold_server.py PORT: answers "served" to each connection and holds it until the peer
closes; prints "accepted N" and "closed N" as they happen (sshd_forward_clients_test)."""
import selectors
import socket
import sys

server = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=4096)
server.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(server, selectors.EVENT_READ)
accepted = closed = 0
print("hold server ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is server:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                continue
            accepted += 1
            print(f"accepted {accepted}", flush=True)
            conn.setblocking(False)
            try:
                conn.send(b"served\n")
            except OSError:
                pass
            sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1
            print(f"closed {closed}", flush=True)
