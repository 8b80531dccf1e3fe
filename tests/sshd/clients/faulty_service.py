"""A sandbox service that misbehaves: faulty_service.py PORT SIZE. Each connection sends a
request; the answer is SIZE bytes (byte i is i % 251), then the service closes: cleanly (FIN)
for a request starting with "close", with a reset (SO_LINGER 0: whatever is not yet sent is
lost) for one starting with "reset"; "endless" gets the bytes again and again until the
connection breaks; "stall" gets nothing and is never read again (sshd_forward_clients_test)."""
import socket
import struct
import sys
import threading

port, size = int(sys.argv[1]), int(sys.argv[2])
payload = bytes(i % 251 for i in range(size))


def serve(conn):
    with conn:
        request = conn.recv(64)
        if request.startswith(b"stall"):
            threading.Event().wait()
        try:
            conn.sendall(payload)
            while request.startswith(b"endless"):
                conn.sendall(payload)
        except OSError:
            return
        if request.startswith(b"reset"):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


server = socket.create_server(("127.0.0.1", port))
print("faulty service ready", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
