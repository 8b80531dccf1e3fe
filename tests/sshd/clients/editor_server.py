"""The "editor's server" started inside the sandbox (sshd_devtools_test, sshd_gateway_clients_test):
plain HTTP and a WebSocket echo on one port of the sandbox's 127.0.0.1 (python3-websockets).

  editor_server.py PORT_FILE
      listens on port 0 and writes the port to PORT_FILE (atomically, once it listens).
"""
import asyncio, http, os, sys, websockets
async def echo(ws):
    async for message in ws:
        await ws.send("echo:" + message)
async def plain_http(path, headers):
    if headers.get("Upgrade", "").lower() == "websocket":
        return None
    return http.HTTPStatus.OK, [("Content-Type", "text/plain")], b"vscode-server\n"
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, process_request=plain_http) as server:
        port = server.sockets[0].getsockname()[1]
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        await asyncio.Future()
asyncio.run(main())
