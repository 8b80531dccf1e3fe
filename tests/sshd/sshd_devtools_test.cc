// Developer tools through allgo-sshd, as they use it (docs/forwarding.md, "Recipes"; issue 19):
// a writable home inside the sandbox for what they install there (~/.vscode-server), VS Code
// Remote-SSH's `ssh -T -D PORT host bash` with HTTP and a WebSocket through the SOCKS port, and
// Jupyter behind `ssh -L` running a kernel over its WebSocket. The sandbox is bubblewrap with
// its own network namespace (--unshare-net), the host's root read-only (so Debian's
// jupyter-notebook and python3-websockets are there) and the agent's HOME = "/" ([nss] home's
// default, as a container gives a uid its image does not know): not writable.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// Debian's interpreter: the one with python3-websocket(s) and jupyter (the PATH's may not be).
constexpr const char* kPython = "/usr/bin/python3";
// The sessions run as the agent's uid, root in this sandbox (as in a default container).
constexpr const char* kPrivateHome = "/tmp/allgo-home-0";

// What the editor side needs that no Debian tool does in one command: a SOCKS5 CONNECT with
// the name resolved on the far side (socks5h, as VS Code does), then a WebSocket over that
// socket (python3-websocket; its own SOCKS support needs python-socks, not in Debian 12).
constexpr const char* kSocksWebSocketClient = R"PY(
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
)PY";

// The "editor's server" started inside the sandbox: plain HTTP and a WebSocket echo on one
// port of the sandbox's 127.0.0.1 (python3-websockets), port 0 and the port written to argv[1].
constexpr const char* kSandboxServer = R"PY(
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
)PY";

// Jupyter's own client protocol: a kernel through the REST API, `print(6*7)` as an
// execute_request on the kernel's WebSocket, its stream output and reply, the kernel deleted.
constexpr const char* kJupyterClient = R"PY(
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
)PY";

// "" or which of the Debian packages a tool test needs are missing, and how to get them.
std::string MissingPackages(const std::vector<std::pair<std::string, std::string>>& needed) {
  std::string missing;
  for (const auto& [package, path] : needed) {
    if (!fs::exists(path)) missing += " " + package;
  }
  return missing.empty() ? "" : "this test needs Debian's" + missing + " (not installed): run scripts/install-deps";
}
const std::pair<std::string, std::string> kWebsocketClient{"python3-websocket", "/usr/lib/python3/dist-packages/websocket"};

// A notebook token nobody could guess.
std::string RandomHexToken() {
  std::random_device random;
  std::string token;
  for (int i = 0; i < 32; ++i) token += "0123456789abcdef"[random() % 16];
  return token;
}

class SshdDevtoolsTest : public SshdBridgeFixture {
 protected:
  SshdDevtoolsTest() : SshdBridgeFixture("allgo-sshd-devtools") {}

  void SetUp() override {
    SetUpFrontend();
    if (HasFatalFailure()) return;
    StartSandbox();
  }

  void TearDown() override {
    server_.reset();
    if (agent_) agent_->Stop(SIGTERM, 5000);
  }

  // (Re)starts the sandbox and its agent; `before` runs inside first (as root, e.g. what
  // another uid of the sandbox planted in /tmp). Fresh sandbox, fresh /tmp.
  void StartSandbox(const std::string& before = "") {
    if (agent_) agent_->Stop(SIGTERM, 5000);
    SandboxOptions options;
    options.binds = {shared_};
    options.bwrap_extra = {"--unshare-net", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"};
    options.launcher = {"sh", "-c", "export HOME=/; " + before + " exec \"$@\"", "sh"};
    agent_ = std::make_unique<Daemon>(SandboxCommand(bridge_, options), tmp_ / "agent.log");
    ASSERT_TRUE(WaitFor([&] { return agent_->Log().find("listening on") != std::string::npos; }, 10000))
        << agent_->Log();
  }

  // ssh -T ... sleep@host `command` with the client's stdin open as long as the returned
  // daemon lives (a fifo the test writes to), as an editor keeps its connection.
  std::unique_ptr<Daemon> Client(const std::string& name, const std::vector<std::string>& extra,
                                 const std::string& command, std::ofstream* feed) {
    std::vector<std::string> argv = {"ssh", "-T"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    for (const auto& o : server_->ClientOptions(key_.private_path)) argv.push_back(o);
    argv.insert(argv.end(), {"-p", std::to_string(server_->port()), "sleep@127.0.0.1", command});
    const std::string fifo = tmp_ / (name + ".fifo");
    EXPECT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::vector<std::string> sh = {"sh", "-c", "exec \"$@\" < " + fifo, "sh"};
    sh.insert(sh.end(), argv.begin(), argv.end());
    auto client = std::make_unique<Daemon>(sh, tmp_ / (name + ".log"));
    feed->open(fifo);
    return client;
  }

  std::unique_ptr<Daemon> agent_;
};

// What VS Code and JetBrains do first: install themselves under ~. The agent's HOME ("/") is
// read-only, so the session's HOME is a private folder the agent made inside the sandbox; it
// stays for the sandbox's life (the next login finds what the first installed), and nothing
// of it is on the frontend.
TEST_F(SshdDevtoolsTest, SessionsGetAWritablePrivateHomeThatPersists) {
  RunResult r = Ssh("mkdir -p ~/.vscode-server/bin ~/.cache/JetBrains && echo ok > ~/.vscode-server/x && "
                    "cat ~/.vscode-server/x && echo $HOME && stat -c '%a %u %F' \"$HOME\"", {"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err << agent_->Log();
  EXPECT_EQ(r.out, "ok\n" + std::string(kPrivateHome) + "\n700 0 directory\n") << r.err;
  // A second login, same sandbox: the home and what was installed in it are still there.
  r = Ssh("cat ~/.vscode-server/x; ls -d ~/.vscode-server/bin ~/.cache/JetBrains", {"-T"});
  EXPECT_EQ(r.out, "ok\n" + std::string(kPrivateHome) + "/.cache/JetBrains\n" + kPrivateHome + "/.vscode-server/bin\n")
      << r.err;
  // A login shell without a terminal (`ssh -T host` + commands on stdin) starts in it.
  RunOptions in;
  in.stdin_data = "pwd\n";
  EXPECT_EQ(Ssh("", {"-T"}, in).out, std::string(kPrivateHome) + "\n");
  EXPECT_FALSE(fs::exists(kPrivateHome)) << "made on the frontend";
}

// Another uid of the sandbox (here nobody, before the agent starts) plants the private home's
// name in the shared /tmp: a symlink to its own folder (to collect what tools write there), or
// a folder of its own (with a "server" for the editor to run). Neither is used nor followed:
// the session keeps the agent's HOME, the agent logs why, the planted folder stays untouched.
// Nor is a /tmp without the sticky bit, or owned by another uid, trusted.
TEST_F(SshdDevtoolsTest, APlantedPrivateHomeIsRefusedAndNotFollowed) {
  const std::string loot = shared_ + "/loot";
  fs::create_directories(loot);
  ASSERT_EQ(chown(loot.c_str(), 65534, 65534), 0);
  const std::string as_nobody = "chmod 1777 /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups ";
  const std::string script = "echo HOME=$HOME; mkdir -p ~/.vscode-server 2>/dev/null && echo secret > ~/.vscode-server/token; "
                             "echo done";
  StartSandbox(as_nobody + "ln -s " + ShellQuote(loot) + " " + kPrivateHome + " &&");
  ASSERT_FALSE(HasFatalFailure());
  RunResult r = Ssh(script, {"-T"});
  EXPECT_EQ(r.out, "HOME=/\ndone\n") << r.err;
  EXPECT_TRUE(fs::is_empty(loot)) << "the session wrote through the planted symlink";
  EXPECT_THAT(agent_->Log(), HasSubstr("home: sessions keep HOME=/, not " + std::string(kPrivateHome) +
                                       ": it exists and is a symbolic link"));

  StartSandbox(as_nobody + "mkdir -m 0700 " + kPrivateHome + " &&");
  ASSERT_FALSE(HasFatalFailure());
  r = Ssh(script, {"-T"});
  EXPECT_EQ(r.out, "HOME=/\ndone\n") << r.err;
  EXPECT_THAT(agent_->Log(), HasSubstr("it exists and is owned by uid 65534, not 0"));

  // A /tmp where anyone may rename or remove anyone's entries (no sticky bit) holds nothing
  // private, even a folder the agent made itself.
  StartSandbox("chmod 0777 /tmp &&");
  ASSERT_FALSE(HasFatalFailure());
  r = Ssh(script, {"-T"});
  EXPECT_EQ(r.out, "HOME=/\ndone\n") << r.err;
  EXPECT_THAT(agent_->Log(), HasSubstr("/tmp is writable by others without the sticky bit"));
  // Nor one whose owner (who may remove anything in it, sticky or not) is another uid.
  StartSandbox("chown 65534 /tmp && chmod 1777 /tmp &&");
  ASSERT_FALSE(HasFatalFailure());
  r = Ssh(script, {"-T"});
  EXPECT_EQ(r.out, "HOME=/\ndone\n") << r.err;
  EXPECT_THAT(agent_->Log(), HasSubstr("/tmp is owned by uid 65534"));
}

// VS Code Remote-SSH: `ssh -T -D PORT host bash`, a script on stdin that looks the machine
// over, installs and starts its server on the sandbox's 127.0.0.1 (a random port the
// frontend does not have) and prints the port; then the editor talks HTTP and WebSocket to
// it through the SOCKS port, names resolved in the sandbox.
TEST_F(SshdDevtoolsTest, VsCodeLikeFlowHttpAndWebSocketThroughSocks) {
  ASSERT_EQ(MissingPackages({kWebsocketClient, {"python3-websockets", "/usr/lib/python3/dist-packages/websockets"}}), "");
  WriteFile(shared_ + "/server.py", kSandboxServer);
  WriteFile(tmp_ / "client.py", kSocksWebSocketClient);
  const int socks = FreeLoopbackPort();
  std::ofstream feed;
  auto client = Client("vscode", {"-D", "127.0.0.1:" + std::to_string(socks)}, "bash", &feed);
  const std::string bin = "~/.vscode-server/bin/0123abcd";
  feed << "uname -rsv\nprintenv >/dev/null && echo env-ok\n"
       << "mkdir -p " << bin << " && cp " << ShellQuote(shared_ + "/server.py") << " " << bin << "/server.py\n"
       << "(" << kPython << " " << bin << "/server.py ~/.vscode-server/port > ~/.vscode-server/server.log 2>&1 &)\n"
       << "for i in $(seq 200); do [ -s ~/.vscode-server/port ] && break; sleep 0.1; done\n"
       << "echo \"listeningOn==$(cat ~/.vscode-server/port)==\"\n"
       << std::flush;
  std::string port;
  ASSERT_TRUE(WaitFor([&] {
    std::string log = client->Log();
    size_t at = log.find("listeningOn==");
    size_t end = at == std::string::npos ? at : log.find("==", at + 13);
    if (end == std::string::npos) return false;
    port = log.substr(at + 13, end - at - 13);
    return true;
  }, 30000)) << client->Log() << agent_->Log() << server_->log();
  ASSERT_FALSE(port.empty()) << client->Log();
  EXPECT_THAT(client->Log(), HasSubstr("env-ok"));
  EXPECT_THAT(client->Log(), HasSubstr("Linux "));

  RunResult http = test::Run({"curl", "-s", "--max-time", "10", "--socks5-hostname",
                              "127.0.0.1:" + std::to_string(socks), "http://localhost:" + port + "/"});
  EXPECT_EQ(http.out, "vscode-server\n") << http.err << server_->log();
  RunResult ws = test::Run({kPython, tmp_ / "client.py", std::to_string(socks), port});
  EXPECT_EQ(ws.exit_code, 0) << ws.err << server_->log();
  EXPECT_EQ(ws.out, "echo:hello from the editor\nbig echo ok\n") << ws.err;
  // The frontend has no server on that port: only the sandbox does.
  EXPECT_NE(test::Run({"curl", "-s", "--max-time", "3", "http://127.0.0.1:" + port + "/"}).out, "vscode-server\n");
  feed << "exit\n" << std::flush;
  feed.close();
  EXPECT_TRUE(WaitFor([&] { return !client->Running(); }, 10000)) << client->Log();
  client->Stop(SIGTERM, 5000);
}

// Jupyter, the way its users reach it: the notebook server started in the sandbox over ssh
// (its runtime files in the writable home), `ssh -L` to it, then Jupyter's own protocol
// through the forward: a kernel made with the REST API runs `print(6*7)` sent on the
// kernel's WebSocket, and "42" comes back on it.
TEST_F(SshdDevtoolsTest, JupyterKernelRunsCodeOverItsWebSocketThroughLocalForward) {
  ASSERT_EQ(MissingPackages({kWebsocketClient, {"jupyter-notebook", "/usr/bin/jupyter-notebook"}}), "");
  WriteFile(tmp_ / "jupyter.py", kJupyterClient);
  const int inside = FreeLoopbackPort(), local = FreeLoopbackPort();
  const std::string token = RandomHexToken();
  std::ofstream feed;
  const std::string notebook =
      "export JUPYTER_RUNTIME_DIR=$HOME/.local/share/jupyter/runtime; cd && exec /usr/bin/jupyter-notebook "
      "--no-browser --allow-root --ip=127.0.0.1 --port=" + std::to_string(inside) +
      " --port-retries=0 --NotebookApp.token=" + token;
  auto client = Client("jupyter", {"-o", "ExitOnForwardFailure=yes", "-L",
                                   "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(inside)},
                       notebook, &feed);
  // Up once the API answers through the forward.
  ASSERT_TRUE(WaitFor([&] {
    return test::Run({"curl", "-s", "--max-time", "5", "-H", "Authorization: token " + token,
                      "http://127.0.0.1:" + std::to_string(local) + "/api/status"}).out.find("kernels") != std::string::npos;
  }, 60000)) << client->Log() << server_->log();
  RunOptions slow;
  slow.timeout_seconds = 150;
  RunResult r = test::Run({kPython, tmp_ / "jupyter.py", std::to_string(local), token}, slow);
  EXPECT_EQ(r.exit_code, 0) << r.err << client->Log();
  EXPECT_EQ(r.out, "kernel started\nstream='42\\n' status=ok\nkernels left: 0\n") << r.err << client->Log();
  // Its runtime files went to the private home inside the sandbox.
  EXPECT_THAT(Ssh("ls ~/.local/share/jupyter/runtime").out, HasSubstr("nbserver-"));
  // Ending the client ends the notebook server with the session (nothing left to clean up
  // in the sandbox: the next login finds no server on that port).
  feed.close();
  client->Stop(SIGTERM, 5000);
  EXPECT_TRUE(WaitFor([&] {
    return Ssh("ps -eo args | grep -c '[j]upyter-notebook'").out == "0\n";
  }, 15000)) << Ssh("ps -eo pid,args").out;
}

}  // namespace
}  // namespace allgo::test
