"""A client of the faulty service through a forward (sshd_forward_clients_test).

  stall_client.py PORT download
      "endless" download: 1 MiB read, "download stalled", 6 s without reading, 8 MiB more
      ("download resumed True"), then closed mid-flow, and ten more read 2 MiB and closed
      ("download cancelled").
  stall_client.py PORT upload
      "stall" (the service never reads again): pushes until nothing moved for 3 s, prints
      "upload blocked after N", holds the connection 60 s.
"""
import socket
import sys
import time


def connect(port, request):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    return s


def read(s, n, goal):
    while n < goal:
        n += len(s.recv(65536))
    return n


def download(port):
    s = connect(port, b"endless")
    n = read(s, 0, 1 << 20)
    print("download stalled", flush=True)
    time.sleep(6)
    n = read(s, n, 9 << 20)
    print("download resumed", n >= 9 << 20, flush=True)
    s.close()
    for _ in range(10):
        s = connect(port, b"endless")
        read(s, 0, 2 << 20)
        s.close()
    print("download cancelled", flush=True)


def upload(port):
    u = connect(port, b"stall")
    time.sleep(0.5)
    u.setblocking(False)
    sent, last, chunk = 0, time.monotonic(), b"u" * 65536
    while time.monotonic() - last < 3:
        try:
            sent += u.send(chunk)
            last = time.monotonic()
        except BlockingIOError:
            time.sleep(0.05)
    print("upload blocked after", sent, flush=True)
    time.sleep(60)


if __name__ == "__main__":
    {"download": download, "upload": upload}[sys.argv[2]](int(sys.argv[1]))
