#include "client_flows.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_forward_fixture.h"

namespace allgo::test {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

// Debian's interpreter: the one with paramiko, asyncssh, python3-websocket(s) and jupyter (the
// PATH's may not be); the same path in the Debian sandbox image.
constexpr const char* kPython = "/usr/bin/python3";

// A notebook token nobody could guess.
std::string RandomHexToken() {
  std::random_device random;
  std::string token;
  for (int i = 0; i < 32; ++i) token += "0123456789abcdef"[random() % 16];
  return token;
}

}  // namespace

const std::pair<std::string, std::string> kWebsocketClient{"python3-websocket", "/usr/lib/python3/dist-packages/websocket"};
const std::pair<std::string, std::string> kWebsocketServer{"python3-websockets",
                                                           "/usr/lib/python3/dist-packages/websockets"};
const std::pair<std::string, std::string> kJupyterNotebook{"jupyter-notebook", "/usr/bin/jupyter-notebook"};

std::string MissingPackages(const std::vector<std::pair<std::string, std::string>>& needed) {
  std::string missing;
  for (const auto& [package, path] : needed) {
    if (!fs::exists(path)) missing += " " + package;
  }
  return missing.empty() ? "" : "this test needs Debian's" + missing + " (not installed): run scripts/install-deps";
}

std::string ClientScript(const std::string& name) { return SourceDir() + "/tests/sshd/clients/" + name; }

std::string GetMarker(int port) {
  return test::Run({"curl", "-s", "--max-time", "10", "http://127.0.0.1:" + std::to_string(port) + "/marker.txt"}).out;
}

std::unique_ptr<Daemon> ClientTarget::FedClient(const std::string& name, const std::vector<std::string>& extra,
                                                const std::string& command, std::ofstream* feed) const {
  std::vector<std::string> argv = {"ssh", "-T"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  for (const auto& o : server->ClientOptions(key)) argv.push_back(o);
  argv.insert(argv.end(), {"-p", std::to_string(server->port()), user + "@127.0.0.1", command});
  const std::string fifo = local_dir + "/" + name + ".fifo";
  unlink(fifo.c_str());  // a repeated test in the same folder
  EXPECT_EQ(mkfifo(fifo.c_str(), 0600), 0) << fifo;
  std::vector<std::string> sh = {"sh", "-c", "exec \"$@\" < " + fifo, "sh"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  auto client = std::make_unique<Daemon>(sh, local_dir + "/" + name + ".log");
  feed->open(fifo);
  return client;
}

RunResult ClientTarget::Python(const std::string& script, const std::vector<std::string>& args,
                               int timeout_seconds) const {
  std::vector<std::string> argv = {kPython, ClientScript(script), std::to_string(server->port()), key};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions options;
  options.timeout_seconds = timeout_seconds;
  options.env["PYTHONWARNINGS"] = "ignore";
  options.env["ALLGO_SSH_USER"] = user;
  return test::Run(argv, options);
}

std::unique_ptr<Daemon> ClientTarget::Master(const std::vector<std::string>& forwards) const {
  std::vector<std::string> argv = {"ssh", "-M", "-S", control(), "-N", "-o", "ExitOnForwardFailure=yes"};
  argv.insert(argv.end(), forwards.begin(), forwards.end());
  for (const auto& o : server->ClientOptions(key)) argv.push_back(o);
  argv.insert(argv.end(), {"-p", std::to_string(server->port()), user + "@127.0.0.1"});
  fs::remove(control());
  auto master = std::make_unique<Daemon>(argv, local_dir + "/master.log");
  EXPECT_TRUE(WaitFor([&] { return fs::exists(control()); }, 15000)) << master->Log() << context();
  return master;
}

RunResult ClientTarget::Through(const std::string& command, int timeout_seconds) const {
  RunOptions options;
  options.timeout_seconds = timeout_seconds;
  return test::Run({"ssh", "-S", control(), "-o", "LogLevel=ERROR", "x", command}, options);
}

RunResult ClientTarget::Ssh(const std::string& command) const {
  RunOptions options;
  options.timeout_seconds = 90;
  return server->Ssh(user, key, command, {"-T"}, options);
}

void ExpectParamikoDirectTcpipLandsInTheSandbox(const ClientTarget& t) {
  RunResult r = t.Python("paramiko_forward.py", {"direct", "127.0.0.1", std::to_string(t.port)});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  EXPECT_THAT(r.out, HasSubstr("200 OK"));
  EXPECT_THAT(r.out, HasSubstr("sandbox"));
  EXPECT_THAT(r.out, Not(HasSubstr("frontend")));
  // A port only the frontend has: the open fails (paramiko's ChannelException), no answer.
  r = t.Python("paramiko_forward.py", {"direct", "127.0.0.1", std::to_string(t.frontend_only_port)});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("refused: "));
  EXPECT_THAT(r.out, Not(HasSubstr("frontend")));
  EXPECT_TRUE(t.server->WaitForLog("forward direct-tcpip refused")) << t.context();
}

void ExpectParamikoTcpipForwardGetsItsPort(const ClientTarget& t) {
  // The session fetches from the allocated port inside the sandbox: the connection comes back
  // to paramiko as a forwarded-tcpip channel for the listener it asked for.
  RunResult r = t.Python("paramiko_forward.py",
                         {"remote", "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/', "
                                    "timeout=10).read().decode())\""});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  size_t at = r.out.find("allocated ");
  ASSERT_NE(at, std::string::npos) << r.out << r.err;
  const std::string port = r.out.substr(at + 10, r.out.find('\n', at) - at - 10);
  EXPECT_NE(port, "0");
  // The listener is in the sandbox's network namespace: nothing answers on the frontend's port.
  EXPECT_THAT(r.out, HasSubstr("on the frontend's loopback: refused"));
  EXPECT_THAT(r.out, HasSubstr("paramiko-forwarded for 127.0.0.1:" + port + " from 127.0.0.1"));
  EXPECT_TRUE(t.server->WaitForLog("forward forwarded-tcpip end: user=" + t.user)) << t.context();
  EXPECT_TRUE(t.server->WaitForLog("forward cancel-tcpip-forward: user=" + t.user + " listen=127.0.0.1:" + port))
      << t.context();
}

void ExpectAsyncsshLocalForwardLandsInTheSandbox(const ClientTarget& t) {
  RunResult r = t.Python("asyncssh_forward.py", {"local", std::to_string(t.port)});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  EXPECT_THAT(r.out, HasSubstr("via-listener: sandbox\n"));
  EXPECT_THAT(r.out, HasSubstr("via-channel: sandbox\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("frontend")));
}

void ExpectAsyncsshRemoteForwardReachesTheClientSide(const ClientTarget& t) {
  RunResult r = t.Python("asyncssh_forward.py",
                         {"remote", std::to_string(t.port),
                          "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/marker.txt', "
                          "timeout=10).read().decode())\""});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  EXPECT_THAT(r.out, HasSubstr("allocated "));
  EXPECT_THAT(r.out, Not(HasSubstr("allocated 0\n")));
  EXPECT_THAT(r.out, HasSubstr("on the frontend's loopback: refused"));
  // The listener was inside the sandbox; asyncssh carried its connection to the frontend's server.
  EXPECT_THAT(r.out, HasSubstr("frontend"));
  EXPECT_TRUE(t.server->WaitForLog("forward forwarded-tcpip end: user=" + t.user)) << t.context();
}

void ExpectAsyncsshAgentForwardingListsTheKey(const ClientTarget& t) {
  const std::string sock = t.local_dir + "/agent.sock";
  fs::remove(sock);
  KeyPair signer = MakeKeyPair(t.local_dir, "asyncssh-signer");
  SshAgentProcess ssh_agent;
  ssh_agent.Start(sock, signer.private_path);
  if (::testing::Test::HasFatalFailure()) return;
  RunResult r = t.Python("asyncssh_forward.py", {"agent", sock, "echo sock=$SSH_AUTH_SOCK; ssh-add -l"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  EXPECT_THAT(r.out, HasSubstr("sock=/tmp/allgo-agent-"));
  // "256 SHA256:... asyncssh-signer (ED25519)": the key of the client's agent, seen in the sandbox.
  const std::string fingerprint = ssh_agent.fingerprint().substr(0, ssh_agent.fingerprint().find(' ', 5));
  EXPECT_THAT(r.out, HasSubstr(fingerprint)) << ssh_agent.fingerprint();
  EXPECT_THAT(r.out, HasSubstr("asyncssh-signer"));
  EXPECT_TRUE(t.server->WaitForLog("forward auth-agent end: user=" + t.user)) << t.context();
}

void ExpectPlinkLocalForwardWithAPinnedHostKey(const ClientTarget& t) {
  const std::string ppk = t.local_dir + "/owner.ppk";
  fs::remove(ppk);
  RunResult converted = test::Run({"puttygen", t.key, "-O", "private", "-o", ppk});
  ASSERT_EQ(converted.exit_code, 0) << converted.out << converted.err;
  // The host key pinned by its SHA256 fingerprint, as a user copies it from the operator.
  RunResult keygen = test::Run({"ssh-keygen", "-lf", t.server->dir() + "/host_ed25519.pub"});
  std::istringstream words(keygen.out);
  std::string bits, fingerprint;
  words >> bits >> fingerprint;
  ASSERT_EQ(fingerprint.rfind("SHA256:", 0), 0u) << keygen.out << keygen.err;
  auto plink = [&](const std::string& pin, int local, int target, const std::string& log) {
    return std::make_unique<Daemon>(
        std::vector<std::string>{"plink", "-batch", "-ssh", "-P", std::to_string(t.server->port()), "-i", ppk,
                                 "-hostkey", pin, "-N", "-L",
                                 "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(target),
                                 t.user + "@127.0.0.1"},
        t.local_dir + "/" + log);
  };
  const int local = FreeLoopbackPort();
  auto good = plink(fingerprint, local, t.port, "plink.log");
  std::string got;
  EXPECT_TRUE(WaitFor([&] { return (got = GetMarker(local)) == "sandbox\n"; }, 30000)) << got << good->Log() << t.context();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(GetMarker(local), "sandbox\n");
  good->Stop(SIGTERM, 5000);
  // The same forward to a port only the frontend has: nothing answers (it would be "frontend").
  const int front_only = FreeLoopbackPort();
  auto only = plink(fingerprint, front_only, t.frontend_only_port, "plink-front-only.log");
  ASSERT_TRUE(WaitForTcpPort(front_only, 30000)) << only->Log();
  EXPECT_EQ(GetMarker(front_only), "") << only->Log();
  EXPECT_TRUE(t.server->WaitForLog("forward direct-tcpip refused")) << t.context();
  only->Stop(SIGTERM, 5000);
  // A wrong pin: plink refuses the server (-batch: no prompt), nothing is forwarded.
  const int other = FreeLoopbackPort();
  auto wrong = plink("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", other, t.port, "plink-wrong.log");
  EXPECT_TRUE(WaitFor([&] { return !wrong->Running(); }, 20000)) << wrong->Log();
  EXPECT_NE(GetMarker(other), "sandbox\n");
}

void ExpectVsCodeLikeFlowThroughSocks(const ClientTarget& t) {
  fs::copy_file(ClientScript("editor_server.py"), t.shared_dir + "/server.py", fs::copy_options::overwrite_existing);
  chmod((t.shared_dir + "/server.py").c_str(), 0644);
  const int socks = FreeLoopbackPort();
  std::ofstream feed;
  auto client = t.FedClient("vscode", {"-D", "127.0.0.1:" + std::to_string(socks)}, "bash", &feed);
  const std::string bin = "~/.vscode-server/bin/0123abcd";
  feed << "uname -rsv\nprintenv >/dev/null && echo env-ok\n"
       << "rm -f ~/.vscode-server/port && mkdir -p " << bin << " && cp " << ShellQuote(t.shared_dir + "/server.py")
       << " " << bin << "/server.py\n"
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
  }, 30000)) << client->Log() << t.context();
  ASSERT_FALSE(port.empty()) << client->Log() << t.Ssh("cat ~/.vscode-server/server.log").out;
  EXPECT_THAT(client->Log(), HasSubstr("env-ok"));
  EXPECT_THAT(client->Log(), HasSubstr("Linux "));

  RunResult http = test::Run({"curl", "-s", "--max-time", "10", "--socks5-hostname",
                              "127.0.0.1:" + std::to_string(socks), "http://localhost:" + port + "/"});
  EXPECT_EQ(http.out, "vscode-server\n") << http.err << t.context();
  RunResult ws = test::Run({kPython, ClientScript("socks_websocket.py"), std::to_string(socks), port});
  EXPECT_EQ(ws.exit_code, 0) << ws.err << t.context();
  EXPECT_EQ(ws.out, "echo:hello from the editor\nbig echo ok\n") << ws.err;
  // The frontend has no server on that port: only the sandbox does.
  EXPECT_NE(test::Run({"curl", "-s", "--max-time", "3", "http://127.0.0.1:" + port + "/"}).out, "vscode-server\n");
  feed << "exit\n" << std::flush;
  feed.close();
  EXPECT_TRUE(WaitFor([&] { return !client->Running(); }, 10000)) << client->Log();
  client->Stop(SIGTERM, 5000);
}

void ExpectJupyterKernelRunsCodeThroughLocalForward(const ClientTarget& t) {
  const int inside = FreeLoopbackPort(), local = FreeLoopbackPort();
  // A decoy on the frontend on the notebook's very port: a forward that landed here would get
  // its answer ("frontend"), not Jupyter's API.
  const std::string decoy = t.local_dir + "/decoy";
  fs::create_directories(decoy + "/api");
  WriteFile(decoy + "/api/status", "frontend\n");
  Daemon front(HttpServer(inside, decoy), t.local_dir + "/decoy.log");
  const std::string token = RandomHexToken();
  std::ofstream feed;
  const std::string notebook =
      "export JUPYTER_RUNTIME_DIR=$HOME/.local/share/jupyter/runtime; cd && exec /usr/bin/jupyter-notebook "
      "--no-browser --allow-root --ip=127.0.0.1 --port=" + std::to_string(inside) +
      " --port-retries=0 --NotebookApp.token=" + token;
  auto client = t.FedClient("jupyter", {"-o", "ExitOnForwardFailure=yes", "-L",
                                        "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(inside)},
                            notebook, &feed);
  auto status = [&](int port) {
    return test::Run({"curl", "-s", "--max-time", "5", "-H", "Authorization: token " + token,
                      "http://127.0.0.1:" + std::to_string(port) + "/api/status"}).out;
  };
  ASSERT_TRUE(WaitFor([&] { return status(inside) == "frontend\n"; }, 30000)) << front.Log();
  // Up once the API answers through the forward.
  std::string got;
  ASSERT_TRUE(WaitFor([&] { return (got = status(local)).find("kernels") != std::string::npos; }, 90000))
      << got << client->Log() << t.context();
  RunOptions slow;
  slow.timeout_seconds = 150;
  RunResult r = test::Run({kPython, ClientScript("jupyter_kernel.py"), std::to_string(local), token}, slow);
  EXPECT_EQ(r.exit_code, 0) << r.err << client->Log();
  EXPECT_EQ(r.out, "kernel started\nstream='42\\n' status=ok\nkernels left: 0\n") << r.err << client->Log();
  // Its runtime files went to the home inside the sandbox.
  EXPECT_THAT(t.Ssh("ls ~/.local/share/jupyter/runtime").out, HasSubstr("nbserver-"));
  // Ending the client ends the notebook server with the session (nothing left to clean up
  // in the sandbox: the next login finds no server on that port). /proc, not ps: the Debian
  // image (minbase) has no procps.
  feed.close();
  client->Stop(SIGTERM, 5000);
  const std::string notebooks =
      "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null | grep -c '[j]upyter-notebook'";
  EXPECT_TRUE(WaitFor([&] { return t.Ssh(notebooks).out == "0\n"; }, 15000)) << t.Ssh(notebooks).out;
}

void ExpectServiceClosingMidStreamEndsOnlyItsForward(const ClientTarget& t, int faulty_port, int answer_size) {
  const int partial = FreeLoopbackPort(), web = FreeLoopbackPort();
  auto master = t.Master({"-L", "127.0.0.1:" + std::to_string(partial) + ":127.0.0.1:" + std::to_string(faulty_port),
                          "-L", "127.0.0.1:" + std::to_string(web) + ":127.0.0.1:" + std::to_string(t.port)});
  ASSERT_TRUE(WaitFor([&] { return GetMarker(web) == "sandbox\n"; }, 15000)) << master->Log() << t.context();
  // One connection through the web forward stays open (idle) while others break; then it sends
  // its request. Three answers that end with a close, checked byte for byte (the last one after
  // the client's own EOF: both sides then close while bytes are still on their way), and two
  // that end with a reset: a prefix of the answer, then the end.
  const std::string script =
      "import socket, sys\n"
      "idle = socket.create_connection(('127.0.0.1', " + std::to_string(web) + "))\n"
      "expected = bytes(i % 251 for i in range(" + std::to_string(answer_size) + "))\n"
      "def fetch(request, half_close=False):\n"
      "    s = socket.create_connection(('127.0.0.1', " + std::to_string(partial) + "))\n"
      "    s.settimeout(20)\n"
      "    s.sendall(request)\n"
      "    if half_close: s.shutdown(socket.SHUT_WR)\n"
      "    got = b''\n"
      "    while True:\n"
      "        try:\n"
      "            chunk = s.recv(65536)\n"
      "        except ConnectionResetError:\n"
      "            chunk = b''\n"
      "        if not chunk: return got\n"
      "        got += chunk\n"
      "for n in range(3):\n"
      "    got = fetch(b'close', half_close=(n == 2))\n"
      "    print('partial', n, len(got), got == expected, flush=True)\n"
      "for n in range(2):\n"
      "    got = fetch(b'reset')\n"
      "    print('reset', n, 'prefix', got == expected[:len(got)], flush=True)\n"
      "idle.settimeout(20)\n"
      "idle.sendall(b'GET /marker.txt HTTP/1.0\\r\\n\\r\\n')\n"
      "answer = b''\n"
      "while True:\n"
      "    chunk = idle.recv(65536)\n"
      "    if not chunk: break\n"
      "    answer += chunk\n"
      "print('other forward:', answer.split(b'\\r\\n\\r\\n', 1)[-1].decode(), end='')\n";
  RunOptions options;
  options.timeout_seconds = 90;
  RunResult r = test::Run({kPython, "-c", script}, options);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << t.context();
  for (int n = 0; n < 3; ++n) {
    EXPECT_THAT(r.out, HasSubstr("partial " + std::to_string(n) + " " + std::to_string(answer_size) + " True"))
        << r.out << r.err;
  }
  for (int n = 0; n < 2; ++n) EXPECT_THAT(r.out, HasSubstr("reset " + std::to_string(n) + " prefix True"));
  EXPECT_THAT(r.out, HasSubstr("other forward: sandbox\n"));
  // The session of the same connection still works, and so does a new forward on it.
  EXPECT_EQ(t.Through("echo still-here").out, "still-here\n");
  EXPECT_EQ(GetMarker(web), "sandbox\n");
  EXPECT_TRUE(WaitFor([&] {
    return Occurrences(t.server->log(), "target=127.0.0.1:" + std::to_string(faulty_port)) >= 5;
  }, 10000)) << t.context();
  EXPECT_THAT(t.server->log(), HasSubstr("bytes_out=" + std::to_string(answer_size)));
  master->Stop(SIGTERM, 5000);
}

}  // namespace allgo::test
