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

}  // namespace
}  // namespace allgo::test
