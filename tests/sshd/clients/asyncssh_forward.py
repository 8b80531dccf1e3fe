"""asyncssh as a forwarding client of allgo-sshd (sshd_forward_clients_test).

  asyncssh_forward.py PORT KEY local TPORT
      forward_local_port to the sandbox's 127.0.0.1:TPORT, a GET through it ("via-listener: ..."),
      and create_connection (a direct-tcpip channel of its own) with a GET ("via-channel: ...").
  asyncssh_forward.py PORT KEY remote TPORT COMMAND
      forward_remote_port 127.0.0.1 port 0 -> the frontend's 127.0.0.1:TPORT: prints
      "allocated N" and whether N answers on the frontend's loopback ("on the frontend's
      loopback: refused"), then COMMAND (with {port} replaced) runs in a session, output printed.
  asyncssh_forward.py PORT KEY agent AGENT_SOCK COMMAND
      agent_forwarding=True with the ssh-agent on AGENT_SOCK; COMMAND's output printed.

The webapp logged into is $ALLGO_SSH_USER (default "sleep").
"""
import asyncio
import os
import sys
import urllib.request
import warnings

warnings.filterwarnings("ignore")
import asyncssh  # noqa: E402

from frontend_probe import frontend_probe  # noqa: E402 (this folder)

REQUEST = b"GET /marker.txt HTTP/1.0\r\n\r\n"


def options(key, **extra):
    return dict(host="127.0.0.1", username=os.environ.get("ALLGO_SSH_USER", "sleep"), client_keys=[key], known_hosts=None, agent_path=None, **extra)


class Collect(asyncssh.SSHTCPSession):
    def __init__(self):
        self.data = b""
        self.done = asyncio.get_event_loop().create_future()

    def data_received(self, data, datatype):
        self.data += data

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


async def local(port, key, target):
    async with asyncssh.connect(port=port, **options(key)) as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", target)
        url = f"http://127.0.0.1:{listener.get_port()}/marker.txt"
        body = await asyncio.get_event_loop().run_in_executor(
            None, lambda: urllib.request.urlopen(url, timeout=20).read().decode())
        print("via-listener:", body, end="", flush=True)
        listener.close()
        chan, session = await conn.create_connection(Collect, "127.0.0.1", target)
        chan.write(REQUEST)
        await asyncio.wait_for(session.done, 20)
        print("via-channel:", session.data.decode(errors="replace").split("\r\n\r\n", 1)[-1], end="", flush=True)
    return 0


async def remote(port, key, target, command):
    async with asyncssh.connect(port=port, **options(key)) as conn:
        listener = await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", target)
        print(f"allocated {listener.get_port()}", flush=True)
        print(f"on the frontend's loopback: {frontend_probe(listener.get_port())}", flush=True)
        result = await conn.run(command.replace("{port}", str(listener.get_port())), check=False)
        print(result.stdout, end="", flush=True)
        listener.close()
        return result.exit_status


async def agent(port, key, sock, command):
    opts = options(key, agent_forwarding=True)
    opts["agent_path"] = sock
    async with asyncssh.connect(port=port, **opts) as conn:
        result = await conn.run(command, check=False)
        print(result.stdout, end="", flush=True)
        print(result.stderr, end="", file=sys.stderr, flush=True)
        return result.exit_status


def main():
    port, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if mode == "local":
        return asyncio.run(local(port, key, int(sys.argv[4])))
    if mode == "remote":
        return asyncio.run(remote(port, key, int(sys.argv[4]), sys.argv[5]))
    if mode == "agent":
        return asyncio.run(agent(port, key, sys.argv[4], sys.argv[5]))
    print(f"unknown mode {mode}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
