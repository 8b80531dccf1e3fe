// Forwarding under allgo-sshd, as users take it (docs/forwarding.md): the OpenSSH client's
// -W, -L, -D, -R and -A against allgo-sshd and the sandbox of sshd_forward_fixture.h (its own
// network namespace; "sandbox" or "frontend" tells where a forward landed).
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_forward_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class SshdForwardTest : public SshdForwardFixture {
 protected:
  SshdForwardTest() : SshdForwardFixture("allgo-sshd-forward") {}
};

TEST_F(SshdForwardTest, StdioForwardLandsOnTheSandboxLoopbackNotTheFrontends) {
  RunResult r = Stdio("127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_THAT(r.out, HasSubstr("200 OK"));
  EXPECT_THAT(r.out, HasSubstr("sandbox"));
  EXPECT_THAT(r.out, Not(HasSubstr("frontend")));
  // A port only the frontend listens on does not exist inside the sandbox.
  r = Stdio("127.0.0.1:" + std::to_string(frontend_only_port_));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("frontend")));
  EXPECT_TRUE(server_->WaitForLog("forward direct-tcpip refused"));
  EXPECT_THAT(server_->log(), HasSubstr("Connection refused"));
  // One log line per forward, with what it moved.
  EXPECT_TRUE(server_->WaitForLog("forward direct-tcpip end: user=sleep"));
}

TEST_F(SshdForwardTest, LocalForwardAndSocksReachTheSandboxWithManyConnectionsOnOnePath) {
  int local = FreeLoopbackPort(), socks = FreeLoopbackPort();
  Daemon client(SshArgv({"-N", "-o", "ExitOnForwardFailure=yes", "-L",
                         "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(port_), "-D",
                         "127.0.0.1:" + std::to_string(socks)}),
                tmp_ / "client.log");
  ASSERT_TRUE(WaitFor([&] { return Get(local).find("sandbox") != std::string::npos; }, 15000))
      << client.Log() << server_->log();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Get(local), "sandbox\n");
  // VS Code's way: SOCKS with the name resolved on the far side (the sandbox's /etc/hosts).
  std::string via_socks = test::Run({"curl", "-s", "--max-time", "10", "--socks5-hostname", "127.0.0.1:" + std::to_string(socks),
                               "http://localhost:" + std::to_string(port_) + "/marker.txt"})
                              .out;
  EXPECT_EQ(via_socks, "sandbox\n") << client.Log() << server_->log();
  // Every forward of the connection went through one path to the agent.
  EXPECT_EQ(Occurrences(server_->log(), "forwarding path to the sandbox open"), 1u) << server_->log();
  client.Stop(SIGTERM, 5000);
}

TEST_F(SshdForwardTest, RemoteForwardListensInsideTheSandbox) {
  int remote = FreeLoopbackPort();
  std::string fetch = "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:" +
                      std::to_string(remote) + "/marker.txt', timeout=5).read().decode())\"";
  RunResult r = Ssh(fetch, {"-o", "ExitOnForwardFailure=yes", "-R",
                            "127.0.0.1:" + std::to_string(remote) + ":127.0.0.1:" + std::to_string(port_)});
  // The sandbox's connection came back to the client, which reached the frontend's server.
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_THAT(r.out, HasSubstr("frontend"));
  EXPECT_TRUE(server_->WaitForLog("forward forwarded-tcpip end: user=sleep"));
  // Nothing listens on the frontend's loopback on that port: the listener was in the sandbox.
  EXPECT_EQ(Get(remote), "");
  // Port 0: the allocated port is reported back (RFC 4254), as OpenSSH prints it.
  r = Ssh("true", {"-o", "LogLevel=INFO", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:" + std::to_string(port_)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Allocated port"));
}

TEST_F(SshdForwardTest, AgentForwardingListsAndSignsWithTheClientsKeys) {
  std::string sock = tmp_ / "agent.sock";
  KeyPair signer = MakeKeyPair(tmp_.path(), "signer");
  SshAgentProcess ssh_agent;
  ssh_agent.Start(sock, signer.private_path);
  if (HasFatalFailure()) return;
  RunOptions env;
  env.env["SSH_AUTH_SOCK"] = sock;
  std::string fingerprint = ssh_agent.fingerprint().substr(0, 20);
  WriteFile(fs::path(shared_) / "signer.pub", signer.public_line + "\n");
  WriteFile(fs::path(shared_) / "data", "data to sign\n");
  std::string script = "echo sock=$SSH_AUTH_SOCK; ssh-add -l; ssh-keygen -Y sign -q -n allgo -f " +
                       ShellQuote(shared_ + "/signer.pub") + " " + ShellQuote(shared_ + "/data") + " </dev/null";
  RunResult r = Ssh(script, {"-A"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_THAT(r.out, HasSubstr("sock=/tmp/allgo-agent-"));
  EXPECT_THAT(r.out, HasSubstr(fingerprint.substr(fingerprint.find(' ') + 1, 12)));
  // The signature made in the sandbox (by the client's agent) verifies with the client's key.
  RunOptions data;
  data.stdin_data = "data to sign\n";
  RunResult check = test::Run({"ssh-keygen", "-Y", "check-novalidate", "-n", "allgo", "-s", shared_ + "/data.sig"}, data);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_TRUE(server_->WaitForLog("forward auth-agent end: user=sleep"));
  // Without -A the session has no agent socket.
  r = Ssh("echo sock=${SSH_AUTH_SOCK:-none}", {}, env);
  EXPECT_THAT(r.out, HasSubstr("sock=none"));
}

TEST_F(SshdForwardTest, PolicyAndKeyOptionsRefuseWithAClearReply) {
  StartServer("allow_tcp_forwarding = no\nallow_agent_forwarding = no\n");
  RunResult r = Stdio("127.0.0.1:" + std::to_string(port_));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, Not(HasSubstr("sandbox")));
  EXPECT_TRUE(server_->WaitForLog("forward direct-tcpip refused")) << server_->log();
  // The session itself still works.
  EXPECT_EQ(Ssh("echo still-here").out, "still-here\n");
  // An explicit `restrict` has OpenSSH's meaning under allgo-sshd too.
  StartServer("", "[authkeys]\nkey_options = restrict\n");
  r = Stdio("127.0.0.1:" + std::to_string(port_));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, Not(HasSubstr("sandbox")));
  // permit_open narrows it to one target.
  StartServer("permit_open = 127.0.0.1:" + std::to_string(port_) + "\n");
  EXPECT_THAT(Stdio("127.0.0.1:" + std::to_string(port_)).out, HasSubstr("sandbox"));
  EXPECT_NE(Stdio("localhost:" + std::to_string(port_)).exit_code, 0);
}

TEST_F(SshdForwardTest, EveryForwardIsAuditedAndCounted) {
  const std::string audit = tmp_ / "audit.jsonl";
  const int metrics_port = FreeLoopbackPort();
  StartServer("audit_log = " + audit + "\nmetrics_listen = 127.0.0.1:" + std::to_string(metrics_port) +
              "\npermit_open = 127.0.0.1:" + std::to_string(port_) + "\n");
  RunResult r = Stdio("127.0.0.1:" + std::to_string(port_));
  ASSERT_THAT(r.out, HasSubstr("sandbox")) << r.err << server_->log();
  EXPECT_NE(Stdio("127.0.0.1:" + std::to_string(frontend_only_port_)).exit_code, 0);  // not in permit_open
  ASSERT_TRUE(WaitFor([&] { return ReadFile(audit).find("\"result\":\"closed\"") != std::string::npos; }, 10000))
      << ReadFile(audit) << server_->log();
  std::string lines = ReadFile(audit);
  // One line per forward: kind, target, bytes each way, duration, result; and one per refusal.
  EXPECT_THAT(lines, HasSubstr("\"event\":\"forward\""));
  EXPECT_THAT(lines, HasSubstr("\"kind\":\"direct-tcpip\""));
  EXPECT_THAT(lines, HasSubstr("\"target\":\"127.0.0.1:" + std::to_string(port_) + "\""));
  EXPECT_THAT(lines, HasSubstr("\"bytes_in\":" + std::to_string(std::string("GET /marker.txt HTTP/1.0\r\n\r\n").size())));
  EXPECT_THAT(lines, HasSubstr("\"result\":\"refused: not in permit_open / permitopen\""));
  EXPECT_THAT(lines, HasSubstr("\"user\":\"sleep\""));
  std::string metrics;
  ASSERT_TRUE(WaitFor([&] {
    metrics = test::Run({"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"}).out;
    return metrics.find("allgo_ssh_forwards_total{kind=\"direct-tcpip\",result=\"refused\"} 1") != std::string::npos;
  }, 10000)) << metrics;
  EXPECT_THAT(metrics, HasSubstr("allgo_ssh_forwards_total{kind=\"direct-tcpip\",result=\"accepted\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("allgo_ssh_forwards_active 0"));
}

// Fifty forwards at once on one connection, then the client killed with all fifty open: every
// forward ends (logged), the connection's processes go away, and the next client is served.
TEST_F(SshdForwardTest, FiftyForwardsAtOnceThenTheClientVanishes) {
  int local = FreeLoopbackPort();
  auto client = std::make_unique<Daemon>(
      SshArgv({"-N", "-o", "ExitOnForwardFailure=yes", "-L",
               "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(port_)}),
      tmp_ / "client.log");
  ASSERT_TRUE(WaitFor([&] { return Get(local) == "sandbox\n"; }, 15000)) << client->Log() << server_->log();
  const size_t baseline = ChildrenOf(server_->pid()).size();
  // 50 parallel fetches, all answered by the sandbox.
  RunResult many = Sh("seq 50 | xargs -P 50 -I{} curl -s --max-time 20 http://127.0.0.1:" + std::to_string(local) +
                      "/marker.txt | grep -c sandbox");
  EXPECT_EQ(many.out, "50\n") << many.err << server_->log();
  // 50 connections held open (idle forwards), then the client dies.
  Daemon holder({"python3", "-c",
                 "import socket,time\nsocks=[socket.create_connection(('127.0.0.1'," + std::to_string(local) +
                     ")) for _ in range(50)]\nprint('held', flush=True)\ntime.sleep(60)"},
                tmp_ / "holder.log");
  ASSERT_TRUE(WaitFor([&] { return holder.Log().find("held") != std::string::npos; }, 10000)) << holder.Log();
  // The first fetch and the 50 parallel ones have ended, and the 50 held ones are open on the
  // server (the holder's connects are done once the client's kernel took them, before the
  // client even opened their channels).
  ASSERT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward direct-tcpip end") >= 51; }, 20000))
      << server_->log();
  ASSERT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward direct-tcpip open:") >= 101; }, 20000))
      << server_->log();
  client->Stop(SIGKILL, 5000);
  // Each of the fifty held forwards ends too (a broken pipe to the client, or the connection's
  // end): one end line each.
  EXPECT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward direct-tcpip end") >= 101; }, 20000))
      << server_->log();
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(server_->pid()).size() < baseline; }, 20000))
      << "the connection's monitor and network child are gone";
  EXPECT_THAT(Stdio("127.0.0.1:" + std::to_string(port_)).out, HasSubstr("sandbox"));
}

// VS Code Remote-SSH's way: `ssh -T -D PORT host bash` fed a script on stdin that looks the
// machine over, starts a server on the sandbox's 127.0.0.1 (a port only the sandbox has) and
// prints its port; the editor then talks to it through the SOCKS port. Plus ControlMaster:
// a forward added to a running master with `-O forward`.
TEST_F(SshdForwardTest, VsCodeLikeFlowAndControlMasterForward) {
  const int socks = FreeLoopbackPort();
  const std::string www = shared_ + "/vscode";
  fs::create_directories(www);
  WriteFile(www + "/index.html", "vscode-server\n");
  std::vector<std::string> argv = SshArgv({"-T", "-D", "127.0.0.1:" + std::to_string(socks)});
  argv.push_back("bash");
  // The script stays on: the client's stdin is a fifo the test keeps open.
  const std::string script = tmp_ / "script.fifo";
  ASSERT_EQ(mkfifo(script.c_str(), 0600), 0);
  std::vector<std::string> sh = {"sh", "-c", "exec \"$@\" < " + script, "sh"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  Daemon client(sh, tmp_ / "vscode.log");
  std::ofstream feed(script);
  feed << "uname -rs\nprintenv SSH_CONNECTION >/dev/null; echo env-ok\nmkdir -p \"$HOME\" 2>/dev/null; "
          "python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print('listening on', s.getsockname()[1]); "
          "s.close()\" > /tmp/port.txt; port=$(cut -d' ' -f3 /tmp/port.txt); "
          "(python3 -m http.server $port --bind 127.0.0.1 --directory " + www + " >/dev/null 2>&1 &); "
          "echo \"server port $port\"\n" << std::flush;
  std::string port;
  ASSERT_TRUE(WaitFor([&] {
    std::string log = client.Log();
    size_t at = log.find("server port ");
    if (at == std::string::npos) return false;
    port = log.substr(at + 12, log.find('\n', at) - at - 12);
    return !port.empty();
  }, 20000)) << client.Log() << server_->log();
  EXPECT_THAT(client.Log(), HasSubstr("env-ok"));
  std::string got;
  ASSERT_TRUE(WaitFor([&] {
    got = test::Run({"curl", "-s", "--max-time", "5", "--socks5-hostname", "127.0.0.1:" + std::to_string(socks),
                     "http://127.0.0.1:" + port + "/index.html"}).out;
    return got == "vscode-server\n";
  }, 15000)) << got << server_->log();
  // The frontend has no server on that port: only the sandbox does.
  EXPECT_NE(test::Run({"curl", "-s", "--max-time", "3", "http://127.0.0.1:" + port + "/index.html"}).out, "vscode-server\n");
  feed << "exit\n" << std::flush;
  feed.close();
  client.Stop(SIGTERM, 5000);

  // ControlMaster: a master without forwards, then -O forward -L on it.
  const std::string control = tmp_ / "cm.sock";
  Daemon m(SshArgv({"-M", "-S", control, "-N"}), tmp_ / "master.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(control); }, 15000)) << m.Log();
  const int local = FreeLoopbackPort();
  RunResult fwd = test::Run({"ssh", "-S", control, "-O", "forward", "-L",
                             "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:" + std::to_string(port_), "x"});
  EXPECT_EQ(fwd.exit_code, 0) << fwd.err;
  EXPECT_TRUE(WaitFor([&] { return Get(local) == "sandbox\n"; }, 10000)) << m.Log() << server_->log();
  test::Run({"ssh", "-S", control, "-O", "exit", "x"});
}

// Unix-socket forwarding (ssh -L PORT:/path.sock, ssh -R /path.sock:host:port): the
// direct-streamlocal / streamlocal-forward requests scripts/build-libssh's patched libssh
// passes on (scripts/libssh-patches). The sandbox has its own /tmp (bubblewrap --tmpfs), so a
// socket under /tmp there and the frontend's own socket under the test's /tmp differ.
#ifdef ALLGO_LIBSSH_STREAMLOCAL
constexpr bool kPatchedLibssh = true;
#else
constexpr bool kPatchedLibssh = false;
#endif

class SshdStreamLocalTest : public SshdForwardTest {
 protected:
  void SetUp() override {
    SshdForwardTest::SetUp();
    if (HasFatalFailure()) return;
    // A unix-socket server answering "<reply> <first line received>", then closing.
    WriteFile(fs::path(shared_) / "unix_server.py",
              "import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
              "s.bind(sys.argv[1])\n"
              "s.listen(16)\n"
              "print('ready', flush=True)\n"
              "while True:\n"
              "    c, _ = s.accept()\n"
              "    print('accepted', flush=True)\n"
              "    c.sendall(sys.argv[2].encode() + b' ' + c.recv(1024))\n"
              "    c.close()\n");
  }

  // A long-running session whose command runs `command` inside the sandbox.
  std::unique_ptr<Daemon> SandboxDaemon(const std::string& command, const std::string& log) {
    std::vector<std::string> argv = {"ssh", "-T"};
    for (const auto& o : server_->ClientOptions(key_.private_path)) argv.push_back(o);
    argv.insert(argv.end(), {"-p", std::to_string(server_->port()), "sleep@127.0.0.1", command});
    return std::make_unique<Daemon>(argv, tmp_ / log);
  }
  // An `ssh -N` client with `forward` (e.g. {"-L", "..."}).
  std::unique_ptr<Daemon> ForwardingClient(const std::vector<std::string>& forward, const std::string& log) {
    std::vector<std::string> argv = {"ssh", "-N"};
    argv.insert(argv.end(), forward.begin(), forward.end());
    for (const auto& o : server_->ClientOptions(key_.private_path)) argv.push_back(o);
    argv.insert(argv.end(), {"-p", std::to_string(server_->port()), "sleep@127.0.0.1"});
    return std::make_unique<Daemon>(argv, tmp_ / log);
  }
  // Sends "ping\n" to 127.0.0.1:port on the frontend and returns all it answers ("" when the
  // connection is closed without a word, as ssh does for a refused forward).
  std::string Ping(int port) {
    return test::Run({"python3", "-c",
                      "import socket\ntry:\n"
                      "    s = socket.create_connection(('127.0.0.1', " + std::to_string(port) + "), timeout=10)\n"
                      "    s.sendall(b'ping\\n')\n"
                      "    out = b''\n"
                      "    while True:\n"
                      "        d = s.recv(4096)\n"
                      "        if not d: break\n"
                      "        out += d\n"
                      "    print(out.decode(), end='')\n"
                      "except OSError:\n"
                      "    pass\n"})
        .out;
  }
};

TEST_F(SshdStreamLocalTest, LocalForwardReachesASocketInsideTheSandboxNotTheFrontends) {
  if (!kPatchedLibssh) GTEST_SKIP() << "libssh without scripts/libssh-patches";
  const std::string audit = tmp_ / "audit.jsonl";
  const int metrics_port = FreeLoopbackPort();
  StartServer("audit_log = " + audit + "\nmetrics_listen = 127.0.0.1:" + std::to_string(metrics_port) + "\n");
  // The sandbox's server on /tmp/app.sock: its /tmp, which the frontend does not see.
  auto app = SandboxDaemon("exec python3 " + ShellQuote(shared_ + "/unix_server.py") + " /tmp/app.sock sandbox-unix",
                           "app.log");
  ASSERT_TRUE(WaitFor([&] { return app->Log().find("ready") != std::string::npos; }, 15000))
      << app->Log() << server_->log();
  EXPECT_FALSE(fs::exists("/tmp/app.sock"));
  // The frontend's own server on a path that exists only on the frontend.
  const std::string front_sock = tmp_ / "front.sock";
  Daemon front({"python3", shared_ + "/unix_server.py", front_sock, "frontend-unix"}, tmp_ / "front-unix.log");
  ASSERT_TRUE(WaitFor([&] { return front.Log().find("ready") != std::string::npos; }, 10000)) << front.Log();

  const int local = FreeLoopbackPort(), front_local = FreeLoopbackPort();
  auto client = ForwardingClient({"-o", "ExitOnForwardFailure=yes", "-L",
                                  "127.0.0.1:" + std::to_string(local) + ":/tmp/app.sock", "-L",
                                  "127.0.0.1:" + std::to_string(front_local) + ":" + front_sock},
                                 "client.log");
  std::string got;
  ASSERT_TRUE(WaitFor([&] { return (got = Ping(local)) == "sandbox-unix ping\n"; }, 15000))
      << got << client->Log() << server_->log();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Ping(local), "sandbox-unix ping\n");
  // The frontend-only path does not exist inside the sandbox: refused, nothing from the frontend.
  EXPECT_EQ(Ping(front_local), "");
  EXPECT_TRUE(server_->WaitForLog("forward direct-streamlocal refused: user=sleep")) << server_->log();
  EXPECT_THAT(server_->log(), HasSubstr("target=" + front_sock));
  EXPECT_THAT(front.Log(), Not(HasSubstr("accepted"))) << "the frontend's socket was never reached";
  // One end line per forward, audited and counted under its own kind.
  EXPECT_TRUE(server_->WaitForLog("forward direct-streamlocal end: user=sleep")) << server_->log();
  ASSERT_TRUE(WaitFor([&] { return ReadFile(audit).find("\"kind\":\"direct-streamlocal\"") != std::string::npos; },
                      10000))
      << ReadFile(audit);
  EXPECT_THAT(ReadFile(audit), HasSubstr("\"target\":\"/tmp/app.sock\""));
  std::string metrics;
  EXPECT_TRUE(WaitFor([&] {
    metrics = test::Run({"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"}).out;
    return metrics.find("allgo_ssh_forwards_total{kind=\"direct-streamlocal\",result=\"refused\"} 1") != std::string::npos;
  }, 10000)) << metrics;
  EXPECT_THAT(metrics, Not(HasSubstr("allgo_ssh_forwards_total{kind=\"direct-streamlocal\",result=\"accepted\"} 0")));
  client->Stop(SIGTERM, 5000);
  app->Stop(SIGTERM, 5000);
}

TEST_F(SshdStreamLocalTest, RemoteForwardListensOnASocketInsideTheSandbox) {
  if (!kPatchedLibssh) GTEST_SKIP() << "libssh without scripts/libssh-patches";
  // The listener is made inside the sandbox; a client there connects to it and reaches the
  // frontend's web server through the SSH client (the client's side of -R).
  const std::string sock = "/tmp/allgo-rf-" + std::to_string(getpid()) + ".sock";
  std::string fetch = "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('" + sock +
                      "'); s.sendall(b'GET /marker.txt HTTP/1.0\\r\\n\\r\\n'); "
                      "print(b''.join(iter(lambda: s.recv(4096), b'')).decode())\"; ls -l " + sock;
  RunResult r = Ssh(fetch, {"-o", "ExitOnForwardFailure=yes", "-R", sock + ":127.0.0.1:" + std::to_string(port_)});
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_THAT(r.out, HasSubstr("200 OK"));
  EXPECT_THAT(r.out, HasSubstr("frontend"));
  EXPECT_THAT(r.out, HasSubstr("srw-------")) << "the listener is the user's own (0600), as OpenSSH's";
  EXPECT_TRUE(server_->WaitForLog("forward streamlocal-forward: user=sleep")) << server_->log();
  EXPECT_TRUE(server_->WaitForLog("forward forwarded-streamlocal end: user=sleep")) << server_->log();
  // The socket never existed on the frontend, and is gone from the sandbox with the connection.
  EXPECT_FALSE(fs::exists(sock));
  EXPECT_TRUE(WaitFor([&] { return Ssh("test -e " + sock + " || echo gone").out == "gone\n"; }, 10000));

  // ControlMaster: `-O forward -R /path:...` then `-O cancel` (cancel-streamlocal-forward@openssh.com).
  const std::string control = tmp_ / "cm.sock", later = sock + ".cm";
  std::vector<std::string> master = {"ssh", "-M", "-S", control, "-N"};
  for (const auto& o : server_->ClientOptions(key_.private_path)) master.push_back(o);
  master.insert(master.end(), {"-p", std::to_string(server_->port()), "sleep@127.0.0.1"});
  Daemon m(master, tmp_ / "master.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(control); }, 15000)) << m.Log();
  const std::string spec = later + ":127.0.0.1:" + std::to_string(port_);
  RunResult fwd = test::Run({"ssh", "-S", control, "-O", "forward", "-R", spec, "x"});
  EXPECT_EQ(fwd.exit_code, 0) << fwd.err;
  EXPECT_TRUE(WaitFor([&] { return Ssh("test -S " + later + " && echo there").out == "there\n"; }, 10000))
      << server_->log();
  fwd = test::Run({"ssh", "-S", control, "-O", "cancel", "-R", spec, "x"});
  EXPECT_EQ(fwd.exit_code, 0) << fwd.err << server_->log();
  EXPECT_TRUE(server_->WaitForLog("forward cancel-streamlocal-forward: user=sleep")) << server_->log();
  EXPECT_TRUE(WaitFor([&] { return Ssh("test -e " + later + " || echo gone").out == "gone\n"; }, 10000));
  test::Run({"ssh", "-S", control, "-O", "exit", "x"});
}

TEST_F(SshdStreamLocalTest, PolicyAndKeyOptionsRefuseStreamLocal) {
  if (!kPatchedLibssh) GTEST_SKIP() << "libssh without scripts/libssh-patches";
  for (const auto& [sshd, sections] : std::vector<std::pair<std::string, std::string>>{
           {"allow_stream_local_forwarding = no\n", ""},
           {"", "[authkeys]\nkey_options = no-port-forwarding\n"},
           {"", "[authkeys]\nkey_options = restrict\n"}}) {
    SCOPED_TRACE(sshd + sections);
    StartServer(sshd, sections);
    const int local = FreeLoopbackPort();
    auto client = ForwardingClient({"-L", "127.0.0.1:" + std::to_string(local) + ":/tmp/app.sock"}, "refused.log");
    // The client listens locally; each connection's channel open gets a failure reply.
    EXPECT_TRUE(WaitFor([&] { return server_->log().find("forward direct-streamlocal refused") != std::string::npos ||
                                     !Ping(local).empty(); }, 15000));
    EXPECT_EQ(Ping(local), "");
    EXPECT_THAT(server_->log(), HasSubstr("reason=allow_stream_local_forwarding or the key's options forbid it"));
    client->Stop(SIGTERM, 5000);
    RunResult r = Ssh("echo started", {"-o", "ExitOnForwardFailure=yes", "-R", "/tmp/never.sock:127.0.0.1:" +
                                                                                 std::to_string(port_)});
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_THAT(r.err, HasSubstr("forwarding failed"));
    EXPECT_TRUE(server_->WaitForLog("forward streamlocal-forward refused: user=sleep")) << server_->log();
  }
  // allow_stream_local_forwarding = no leaves TCP forwarding alone.
  StartServer("allow_stream_local_forwarding = no\n");
  EXPECT_THAT(Stdio("127.0.0.1:" + std::to_string(port_)).out, HasSubstr("sandbox"));
  // TCP and unix-socket listeners share max_listeners: a TCP -R takes the only one.
  StartServer("max_listeners = 1\n");
  RunResult r = Ssh("echo started", {"-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:" + std::to_string(port_),
                                     "-R", "/tmp/second.sock:127.0.0.1:" + std::to_string(port_)});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.err, HasSubstr("forwarding failed"));
  EXPECT_TRUE(server_->WaitForLog("forward streamlocal-forward refused: user=sleep")) << server_->log();
  EXPECT_THAT(server_->log(), HasSubstr("reason=max_listeners reached"));
}

// Built against a libssh without the patch (the build-libssh010 CI build), the same requests
// get a clean failure reply and the connection lives on.
TEST_F(SshdStreamLocalTest, StockLibsshRefusesStreamLocalCleanly) {
  if (kPatchedLibssh) GTEST_SKIP() << "libssh with scripts/libssh-patches serves streamlocal";
  auto app = SandboxDaemon("exec python3 " + ShellQuote(shared_ + "/unix_server.py") + " /tmp/app.sock sandbox-unix",
                           "app.log");
  ASSERT_TRUE(WaitFor([&] { return app->Log().find("ready") != std::string::npos; }, 15000)) << app->Log();
  const int local = FreeLoopbackPort();
  auto client = ForwardingClient({"-o", "LogLevel=INFO", "-L", "127.0.0.1:" + std::to_string(local) + ":/tmp/app.sock"},
                                 "stock.log");
  // Each connection to the client's port: the channel open gets libssh's failure reply.
  ASSERT_TRUE(WaitFor([&] {
    EXPECT_EQ(Ping(local), "");
    return client->Log().find("open failed: administratively prohibited") != std::string::npos;
  }, 15000)) << client->Log();
  EXPECT_THAT(app->Log(), Not(HasSubstr("accepted")));
  RunResult r = Ssh("echo started", {"-o", "ExitOnForwardFailure=yes", "-R", "/tmp/never.sock:127.0.0.1:" +
                                                                               std::to_string(port_)});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.err, HasSubstr("forwarding failed"));
  EXPECT_EQ(Ssh("echo still-here").out, "still-here\n");
  client->Stop(SIGTERM, 5000);
  app->Stop(SIGTERM, 5000);
}

}  // namespace
}  // namespace allgo::test
