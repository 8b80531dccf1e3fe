"""The editor side of VS Code's Remote-SSH flow (sshd_devtools_test, sshd_gateway_clients_test).

  socks_websocket.py SOCKS_PORT PORT
      a SOCKS5 CONNECT to localhost:PORT with the name resolved on the far side (socks5h, as
      VS Code does), then a WebSocket over that socket (python3-websocket; its own SOCKS support
      needs python-socks, not in Debian 12): a greeting and a 512 KiB message, each echoed.
"""
import socket, struct, sys, websocket
proxy, port = int(sys.argv[1]), int(sys.argv[2])
def exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk: sys.exit("socks: connection closed")
        data += chunk
    return data
s = socket.create_connection(("127.0.0.1", proxy), timeout=20)
s.sendall(b"\x05\x01\x00")
if exact(s, 2) != b"\x05\x00": sys.exit("socks: no auth-less method")
name = b"localhost"
s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
reply = exact(s, 4)
if reply[1] != 0: sys.exit("socks: connect refused, code %d" % reply[1])
exact(s, {1: 4, 4: 16}.get(reply[3], 0) + 2)
ws = websocket.create_connection("ws://localhost:%d/socket" % port, socket=s, timeout=20)
ws.send("hello from the editor")
print(ws.recv())
big = "x" * (512 * 1024)
ws.send(big)
print("big echo ok" if ws.recv() == "echo:" + big else "big echo WRONG")
ws.close()
