"""Jupyter's own client protocol (sshd_devtools_test, sshd_gateway_clients_test).

  jupyter_kernel.py PORT TOKEN
      a kernel through the REST API on 127.0.0.1:PORT, `print(6*7)` as an execute_request on
      the kernel's WebSocket, its stream output and reply printed, the kernel deleted.
"""
import json, sys, time, urllib.request, uuid, websocket
port, token = sys.argv[1], sys.argv[2]
def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=data, method=method,
                                     headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = answer.read()
        return json.loads(text) if text else None
kernel = api("POST", "/api/kernels", {"name": "python3"})["id"]
print("kernel started")
ws = websocket.create_connection("ws://127.0.0.1:%s/api/kernels/%s/channels?token=%s" % (port, kernel, token), timeout=60)
msg_id = uuid.uuid4().hex
ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                               "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": "print(6*7)", "silent": False, "store_history": False,
                                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
stream, status, deadline = None, None, time.time() + 90
while (stream is None or status is None) and time.time() < deadline:
    message = json.loads(ws.recv())
    if message.get("parent_header", {}).get("msg_id") != msg_id:
        continue
    if message["msg_type"] == "stream":
        stream = message["content"]["text"]
    elif message["msg_type"] == "execute_reply":
        status = message["content"]["status"]
print("stream=%r status=%s" % (stream, status))
ws.close()
api("DELETE", "/api/kernels/" + kernel)
print("kernels left: %d" % len(api("GET", "/api/kernels")))
