"""paramiko as a forwarding client of allgo-sshd (sshd_forward_clients_test).

  paramiko_forward.py PORT KEY direct HOST TPORT
      a direct-tcpip channel (Transport.open_channel) to HOST:TPORT, an HTTP GET on it:
      prints the answer, or "refused: CODE TEXT" (exit 2) when the server refuses the open.
  paramiko_forward.py PORT KEY remote COMMAND
      tcpip-forward on 127.0.0.1 port 0: prints "allocated N"; each forwarded-tcpip channel
      is answered with an HTTP page naming what the server said it was for; whether N answers
      on the frontend's loopback is printed ("on the frontend's loopback: refused"); COMMAND (with
      {port} replaced by N) runs in a session and its output is printed.

The webapp logged into is $ALLGO_SSH_USER (default "sleep").
"""
import os
import sys
import threading

import paramiko

from frontend_probe import frontend_probe  # noqa: E402 (this folder)


def connect(port, key):
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=os.environ.get("ALLGO_SSH_USER", "sleep"), pkey=paramiko.Ed25519Key.from_private_key_file(key))
    return transport


def read_all(channel):
    data = b""
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            return data
        data += chunk


def direct(transport, host, port):
    try:
        channel = transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 40000), timeout=30)
    except paramiko.ChannelException as e:
        print(f"refused: {e.code} {e.text}", flush=True)
        return 2
    channel.sendall(b"GET /marker.txt HTTP/1.0\r\n\r\n")
    answer = read_all(channel)
    channel.close()
    sys.stdout.write(answer.decode(errors="replace"))
    return 0


def remote(transport, command):
    def answer(channel, origin, server):
        def serve():
            channel.recv(65536)  # the request
            body = f"paramiko-forwarded for {server[0]}:{server[1]} from {origin[0]}\n".encode()
            channel.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            channel.close()
        threading.Thread(target=serve, daemon=True).start()

    port = transport.request_port_forward("127.0.0.1", 0, handler=answer)
    print(f"allocated {port}", flush=True)
    print(f"on the frontend's loopback: {frontend_probe(port)}", flush=True)
    session = transport.open_session(timeout=30)
    session.exec_command(command.replace("{port}", str(port)))
    out = read_all(session)
    status = session.recv_exit_status()
    sys.stdout.write(out.decode(errors="replace"))
    transport.cancel_port_forward("127.0.0.1", port)
    return status


def main():
    port, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    transport = connect(port, key)
    try:
        if mode == "direct":
            return direct(transport, sys.argv[4], int(sys.argv[5]))
        if mode == "remote":
            return remote(transport, sys.argv[4])
        print(f"unknown mode {mode}", file=sys.stderr)
        return 64
    finally:
        transport.close()


if __name__ == "__main__":
    sys.exit(main())
