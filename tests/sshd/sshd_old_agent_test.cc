// Upgrading (issue 19): today's frontend (allgo-sshd, allgo-shell, the gateway) with a sandbox
// whose agent predates protocol version 3 (docs/forwarding.md "Upgrading"). Sessions, scp and
// sftp keep working over versions 1 and 2; every forward kind (-W, -L, -D, -R, -A) is refused
// at once with the reason in the log and the audit line, and the session on the same
// connection goes on. Then the operator's remedy: the new agent in the toolbox (and, on the
// bridge backend, the sandbox restarted) and forwarding works.
//
// Both backends: bridge (a long-running agent on agent.sock in a bwrap sandbox with its own
// network namespace) and docker (allgo-sandbox-gateway execs the toolbox's agent per
// connection in a Debian container on a private engine; no agent runs in between).
//
// The older agent: allgo-sandbox-agent-v2 (a test-only build of today's agent that answers a
// version 3 hello exactly as the agents before version 3 did, byte for byte), or the binary
// named by ALLGO_TEST_OLD_AGENT (scripts/build-old-agent builds the real one from the git
// history). docs/decisions.md "An older agent in the tests".
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "sshd_forward_fixture.h"
#include "test_docker.h"
#include "test_gateway.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kTooOld = "the agent in this sandbox is too old for forwarding";

std::string OldAgent() {
  const char* path = std::getenv("ALLGO_TEST_OLD_AGENT");
  return path != nullptr && *path != '\0' ? std::string(path) : Artifact("allgo-sandbox-agent-v2");
}

// A toolbox folder (0755, reachable by bwrap and by an engine) holding `agent` as its
// allgo-sandbox-agent, replaced by rename as a package upgrade does.
void PutAgent(const std::string& toolbox, const std::string& agent) {
  fs::create_directories(toolbox);
  chmod(toolbox.c_str(), 0755);
  const std::string staged = toolbox + "/.allgo-sandbox-agent.new";
  fs::copy_file(agent, staged, fs::copy_options::overwrite_existing);
  chmod(staged.c_str(), 0755);
  fs::rename(staged, toolbox + "/allgo-sandbox-agent");
}

long long MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

// What the checks below need of one deployment.
struct Target {
  const SshdServer& server;
  std::string key, user, tmp, shared, audit;  // shared: the same path on the frontend and inside
  std::string remedy;                          // what the log tells the operator to do
  std::function<std::string()> logs;           // the servers' logs, for a failure
};

RunResult Ssh(const Target& t, const std::string& command, const std::vector<std::string>& extra = {},
              RunOptions options = {}) {
  options.timeout_seconds = 90;
  return t.server.Ssh(t.user, t.key, command, extra, options);
}

// ssh -o ExitOnForwardFailure=yes -R 0:... : exit 0 and "Allocated port" with a forwarding
// agent, a failure within seconds with an older one. Returns the client's result.
RunResult RemotePortZero(const Target& t) {
  return Ssh(t, "true", {"-o", "LogLevel=INFO", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"});
}

// Versions 1 and 2 as before: commands with exit codes, stderr and stdin, a login shell on a
// pty, sftp and scp.
void ExpectSessionsWork(const Target& t) {
  RunResult r = Ssh(t, "echo out; echo oops >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3) << r.err << t.logs();
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "oops\n");
  RunOptions in;
  in.stdin_data = std::string(1 << 20, 'z');
  r = Ssh(t, "wc -c", {}, in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1048576"));
  TmuxTerminal term(t.tmp + "/tmux", t.server.SshCommandLine(t.key, {"-tt"}) + " " + t.user + "@127.0.0.1", 90, 25);
  ASSERT_TRUE(term.started());
  term.Type("echo SIZE=$(stty size) ANSWER=$((6*7))");
  EXPECT_TRUE(term.Shows("SIZE=25 90 ANSWER=42")) << term.Screen() << t.logs();
  term.Type("exit 5");
  EXPECT_TRUE(term.WaitClosed());
  EXPECT_TRUE(t.server.WaitForLog("kind=shell status=5")) << t.logs();
  ExpectSftpAndScpRoundTrip(t.server, t.key, t.user, t.tmp, t.shared);
}

// Every forward kind refused at once, with the reason for the operator, while the session of
// the same connection goes on.
void ExpectForwardsRefusedAndTheSessionGoesOn(const Target& t) {
  // -W: its own connection, which fails quickly instead of hanging.
  auto start = std::chrono::steady_clock::now();
  RunOptions in;
  in.stdin_data = "GET / HTTP/1.0\r\n\r\n";
  RunResult r = Ssh(t, "", {"-W", "127.0.0.1:8080"}, in);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.err, HasSubstr("stdio forwarding failed"));
  EXPECT_LT(MsSince(start), 10000);
  // -R with ExitOnForwardFailure: the client gives up with OpenSSH's own line.
  start = std::chrono::steady_clock::now();
  r = RemotePortZero(t);
  EXPECT_NE(r.exit_code, 0) << r.err << t.logs();
  EXPECT_THAT(r.err, HasSubstr("remote port forwarding failed"));
  EXPECT_LT(MsSince(start), 10000);

  // One connection asking for all of them, with a session that waits for the test.
  const int local = FreeLoopbackPort(), socks = FreeLoopbackPort();
  const std::string stop = t.shared + "/stop-" + t.user;
  fs::remove(stop);
  std::vector<std::string> argv = {"ssh", "-A", "-o", "LogLevel=INFO", "-o", "ExitOnForwardFailure=no", "-L",
                                   "127.0.0.1:" + std::to_string(local) + ":127.0.0.1:8080", "-D",
                                   "127.0.0.1:" + std::to_string(socks), "-R", "0:127.0.0.1:9"};
  for (const auto& o : t.server.ClientOptions(t.key)) argv.push_back(o);
  argv.insert(argv.end(), {"-p", std::to_string(t.server.port()), t.user + "@127.0.0.1",
                           "echo started; while [ ! -e " + ShellQuote(stop) +
                               " ]; do sleep 0.1; done; echo alive sock=${SSH_AUTH_SOCK:-none}"});
  // The client's own agent: -A asks for agent forwarding only when the client has one.
  SshAgentProcess ssh_agent;
  ssh_agent.Start(t.tmp + "/client-agent-" + t.user + ".sock", t.key);
  if (::testing::Test::HasFatalFailure()) return;
  const std::string client_log = t.tmp + "/client-" + t.user + ".log";
  Daemon client(argv, client_log, {{"SSH_AUTH_SOCK", t.tmp + "/client-agent-" + t.user + ".sock"}});
  ASSERT_TRUE(WaitFor([&] { return client.Log().find("started") != std::string::npos; }, 60000))
      << client.Log() << t.logs();
  for (const std::vector<std::string>& via :
       {std::vector<std::string>{"http://127.0.0.1:" + std::to_string(local) + "/"},
        std::vector<std::string>{"--socks5-hostname", "127.0.0.1:" + std::to_string(socks), "http://localhost:8080/"}}) {
    start = std::chrono::steady_clock::now();
    std::vector<std::string> curl = {"curl", "-s", "-S", "--max-time", "20"};
    curl.insert(curl.end(), via.begin(), via.end());
    RunResult got = test::Run(curl);
    EXPECT_NE(got.exit_code, 0) << got.out;
    EXPECT_LT(MsSince(start), 5000) << via.back() << ": a refusal is immediate, not a timeout";
  }
  EXPECT_TRUE(WaitFor([&] { return Occurrences(client.Log(), "administratively prohibited") >= 2; }, 10000))
      << client.Log();
  EXPECT_THAT(client.Log(), HasSubstr("remote port forwarding failed"));
  // The session of that connection is still there, and ends normally.
  WriteFile(stop, "");
  EXPECT_EQ(client.Stop(0, 30000), 0) << client.Log() << t.logs();
  EXPECT_THAT(client.Log(), HasSubstr("alive sock=none"));

  // The operator's side: the reason, for each kind, in the log and in the audit file.
  for (const char* kind : {"direct-tcpip", "tcpip-forward", "auth-agent"}) {
    EXPECT_TRUE(t.server.WaitForLog(std::string("forward ") + kind + " refused: user=" + t.user)) << kind << t.logs();
  }
  EXPECT_THAT(t.server.log(), HasSubstr("reason=" + std::string(kTooOld)));
  EXPECT_THAT(t.server.log(), HasSubstr("unsupported protocol version 3"));
  EXPECT_THAT(t.server.log(), HasSubstr(t.remedy));
  std::string audit;
  EXPECT_TRUE(WaitFor([&] {
    audit = ReadFile(t.audit);
    return Occurrences(audit, std::string("\"result\":\"refused: ") + kTooOld) >= 6;
  }, 10000)) << audit;
  EXPECT_THAT(audit, HasSubstr(t.remedy));
  for (const char* kind : {"direct-tcpip", "tcpip-forward", "auth-agent"}) {
    EXPECT_THAT(audit, HasSubstr(std::string("\"kind\":\"") + kind + "\"")) << kind;
  }
}

// ---- bridge backend: a long-running agent in a bwrap sandbox ----

class SshdOldAgentBridgeTest : public SshdBridgeFixture {
 protected:
  SshdOldAgentBridgeTest() : SshdBridgeFixture("allgo-sshd-old-agent") {}

  void SetUp() override {
    SetUpFrontend();
    if (HasFatalFailure()) return;
    audit_ = tmp_ / "audit.jsonl";
    StartServer("audit_log = " + audit_ + "\n");
    toolbox_ = tmp_ / "toolbox";
    PutAgent(toolbox_, OldAgent());
    StartSandbox();
  }

  void TearDown() override {
    server_.reset();
    if (agent_) agent_->Stop(SIGTERM, 5000);
  }

  // The sandbox of the forwarding tests (own network namespace), its agent from toolbox_.
  void StartSandbox() {
    if (agent_) agent_->Stop(SIGTERM, 5000);
    SandboxOptions options;
    options.toolbox = toolbox_;
    options.binds = {shared_};
    options.bwrap_extra = {"--unshare-net"};
    const std::string log = tmp_ / ("agent-" + std::to_string(++starts_) + ".log");
    agent_ = std::make_unique<Daemon>(SandboxCommand(bridge_, options), log);
    ASSERT_TRUE(WaitFor([&] { return agent_->Log().find("listening on") != std::string::npos; }, 10000))
        << agent_->Log();
  }

  Target target() const {
    return Target{*server_, key_.private_path, "sleep", tmp_.path(), shared_, audit_,
                  "restart the sandbox to run the new allgo-sandbox-agent", [this] { return "\n--- allgo-sshd:\n" + server_->log() + "\n--- agent:\n" + agent_->Log(); }};
  }

  std::string toolbox_, audit_;
  std::unique_ptr<Daemon> agent_;
  int starts_ = 0;
};

TEST_F(SshdOldAgentBridgeTest, SessionsScpAndSftpWorkAsBefore) { ExpectSessionsWork(target()); }

TEST_F(SshdOldAgentBridgeTest, EveryForwardIsRefusedAtOnceAndTheSessionGoesOn) {
  ExpectForwardsRefusedAndTheSessionGoesOn(target());
  // One try per connection: the other requests of the same connection got the same answer
  // without asking the sandbox again.
  EXPECT_EQ(Occurrences(server_->log(), "forwarding unavailable"), 3u) << server_->log();
}

// The remedy on this backend: the new agent in the toolbox is not enough (the running agent is
// the old binary); restarting the sandbox (its agent) is.
TEST_F(SshdOldAgentBridgeTest, TheNewAgentServesForwardsOnceTheSandboxRestarts) {
  PutAgent(toolbox_, Artifact("allgo-sandbox-agent"));
  RunResult r = RemotePortZero(target());
  EXPECT_NE(r.exit_code, 0) << "the running agent is still the old one";
  StartSandbox();
  if (HasFatalFailure()) return;
  r = RemotePortZero(target());
  EXPECT_EQ(r.exit_code, 0) << r.err << target().logs();
  EXPECT_THAT(r.err, HasSubstr("Allocated port"));
}

// ---- docker backend: the gateway execs the toolbox's agent per connection ----

struct Deployment {
  std::string skip, error;
  TempDir tmp{"allgo-old-agent-docker"};
  std::unique_ptr<TestNodes> nodes;
  std::unique_ptr<DockerSandbox> sandbox;
  std::unique_ptr<TestGateway> gateway;
  std::unique_ptr<SshdServer> sshd;
  KeyPair key;
  std::string shared, toolbox, audit;
  bool upgraded = false;  // the toolbox holds today's agent
};
Deployment* g = nullptr;

class SshdOldAgentDockerTest : public ::testing::Test {
 protected:
  static constexpr const char* kWebapp = "oldie";

  static void SetUpTestSuite() {
    g = new Deployment();
    std::string why;
    chmod(g->tmp.path().c_str(), 0755);
    g->nodes = TestNodes::Start(1, "allgo-gateway", &why);
    if (!g->nodes) {
      g->skip = "Docker cannot run here: " + why;
      return;
    }
    TestDocker& engine = g->nodes->node(0);
    const std::string image = engine.DebianImage(&why);
    if (image.empty()) {
      g->skip = "no Debian image: " + why;
      return;
    }
    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    g->key = MakeKeyPair(g->tmp.path(), "owner");
    const uint32_t owner = db.AddUser("owner@example.org");
    db.AddKey(owner, g->key.public_line);
    db.AddWebapp(kWebapp, owner);
    g->shared = g->tmp / "shared";
    fs::create_directories(g->shared);
    chmod(g->shared.c_str(), 0777);
    // The node's toolbox holds the older agent (a node not upgraded yet).
    g->toolbox = g->tmp / "toolbox";
    PutAgent(g->toolbox, OldAgent());
    g->sandbox = std::make_unique<DockerSandbox>(
        engine, DockerSandboxOptions{.name = kWebapp, .image = image, .binds = {g->shared},
                                     .run_options = {"--stop-timeout", "1"}, .toolbox = g->toolbox});
    g->error = g->sandbox->Start();
    if (!g->error.empty()) return;
    fs::create_directories(g->tmp / "run");
    chmod((g->tmp / "run").c_str(), 0755);
    const std::string socket = g->tmp / "run/gateway.sock";
    g->gateway = std::make_unique<TestGateway>(
        TestDatabase::Get().MysqlConfigSection() + "[sandbox]\nbackend = docker\n" + g->nodes->DockerSection(socket),
        socket, g->tmp.path());
    g->error = g->gateway->Start();
    if (!g->error.empty()) return;
    g->audit = g->tmp / "audit.jsonl";
    g->sshd = std::make_unique<SshdServer>("audit_log = " + g->audit + "\n",
                                           "[sandbox]\nbackend = docker\nstart_wait = 3\n" +
                                               g->nodes->DockerSection(socket),
                                           Artifact("allgo-shell"));
  }

  static void TearDownTestSuite() {
    if (!g) return;
    g->sshd.reset();
    g->gateway.reset();
    g->sandbox.reset();
    g->nodes.reset();
    delete g;
    g = nullptr;
  }

  void SetUp() override {
    if (!g->skip.empty()) GTEST_SKIP() << g->skip;
    ASSERT_EQ(g->error, "");
    ASSERT_TRUE(g->sshd);
    if (g->upgraded) {  // a test before put the new agent in the toolbox: back to the old one
      PutAgent(g->toolbox, OldAgent());
      ASSERT_EQ(g->gateway->Restart(), "");  // and no warm spare of the new one is left
      g->upgraded = false;
    }
  }

  static Target target() {
    return Target{*g->sshd, g->key.private_path, kWebapp, g->tmp.path(), g->shared, g->audit,
                  "update allgo-sandbox-agent in the toolbox of its Docker node, then restart allgo-sandbox-gateway", [] {
                    return "\n--- allgo-sshd:\n" + g->sshd->log() + "\n--- gateway:\n" + g->gateway->log();
                  }};
  }
};

TEST_F(SshdOldAgentDockerTest, SessionsScpAndSftpWorkAsBefore) { ExpectSessionsWork(target()); }

TEST_F(SshdOldAgentDockerTest, EveryForwardIsRefusedAtOnceAndTheSessionGoesOn) {
  ExpectForwardsRefusedAndTheSessionGoesOn(target());
}

// The remedy on this backend: each connection execs the toolbox's agent afresh, so the new
// agent in the node's toolbox (and the gateway restarted, which drops its warm spares of the
// old one) serves the next connection's forwards, the container untouched.
TEST_F(SshdOldAgentDockerTest, TheNewAgentInTheToolboxServesTheNextConnection) {
  ASSERT_NE(RemotePortZero(target()).exit_code, 0);
  g->upgraded = true;
  PutAgent(g->toolbox, Artifact("allgo-sandbox-agent"));
  // The gateway holds warm spare execs started from the old binary (spare_idle, 300 s): its
  // restart closes them, as docs/forwarding.md "Upgrading" tells the operator.
  ASSERT_EQ(g->gateway->Restart(), "");
  RunResult r = RemotePortZero(target());
  EXPECT_EQ(r.exit_code, 0) << r.err << target().logs();
  EXPECT_THAT(r.err, HasSubstr("Allocated port"));
}

}  // namespace
}  // namespace allgo::test
