// Issue 11 end to end: one allgo-sshd frontend (and the helpers under a stock OpenSSH sshd)
// serving webapps whose sandboxes run on two Docker "nodes" reached over TLS, through
// allgo-sandbox-gateway (`[sandbox] backend = docker`). Real parts only: two private dockerd
// engines listening on tcp://127.0.0.1 ports with --tlsverify (certificates made by the test
// with openssl), real MariaDB behind libnss_allgo, the OpenSSH client tools, the gateway
// started by the test as root (it drops to allgo-gateway; its client key is 0400 for that
// user alone).
//
// One deployment for the whole suite (starting engines and importing images is the slow
// part): webapps `alpha` (Debian image) and `bravo` (busybox) on node-a, `charlie` (Debian)
// and `delta` (busybox) on node-b; each container's hostname names its node. The fault tests
// come last and put back what they break. Without Docker every test is skipped with the reason.
// Isolation at the gateway socket (whatever a webapp's uid sends), the key's and the
// gateway's user are tests/gateway/gateway_test.cc's; this file is what users see through ssh.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_docker.h"
#include "test_gateway.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct Webapp {
  const char* name;
  int node;     // index in TestNodes
  bool debian;  // else busybox
};
constexpr Webapp kWebapps[] = {{"alpha", 0, true}, {"bravo", 0, false}, {"charlie", 1, true}, {"delta", 1, false}};

std::string HostnameOf(const Webapp& w) { return std::string(w.name) + "-on-" + TestNodes::Name(w.node); }

// The stderr of a refused or broken session: exactly one line of allgo-shell's.
::testing::AssertionResult OneAllgoLine(const std::string& err) {
  if (err.rfind("allgo: ", 0) != 0) return ::testing::AssertionFailure() << "not an allgo line: " << err;
  if (err.empty() || err.find('\n') != err.size() - 1) return ::testing::AssertionFailure() << "not one line: " << err;
  return ::testing::AssertionSuccess();
}

// A session that failed as a user must see it: non-zero, exactly one allgo line, naming
// `what`; the line is kept as the test property `property`. `context` (the servers' logs, read
// only when something failed) is printed with a failure.
using Context = std::function<std::string()>;
void ExpectOneAllgoLine(const RunResult& r, const std::string& what, const std::string& property,
                        const Context& context = [] { return std::string(); }) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_TRUE(OneAllgoLine(r.err)) << context();
  EXPECT_THAT(r.err, HasSubstr(what));
  ::testing::Test::RecordProperty(property, r.err);
}

// An interactive shell in `term` (started as WEBAPP@...): the pty has the terminal's size and
// follows a resize, ^C ends the foreground command and not the shell, and `exit 5` ends it all.
void ExpectPtyFollowsResizeAndCtrlC(TmuxTerminal& term, const std::string& webapp, const Context& context) {
  ASSERT_TRUE(term.started());
  term.Type("echo SIZE=$(stty size) HOST=$(hostname)");
  if (!term.Shows("SIZE=25 90 HOST=" + webapp + "-on-")) ADD_FAILURE() << term.Screen() << context();
  term.Resize(132, 43);
  term.Type("echo NEW=$(stty size)");
  EXPECT_TRUE(term.Shows("NEW=43 132")) << term.Screen();
  // ^C reaches the foreground command through the container's terminal, not the shell.
  term.Type("sleep 300; echo SL''EPT");  // the screen shows the typed line, never SLEPT itself
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  term.Keys("C-c");
  term.Type("echo AFTER=$((6*7))");
  EXPECT_TRUE(term.Shows("AFTER=42")) << term.Screen();
  EXPECT_THAT(term.Screen(), Not(HasSubstr("SLEPT")));
  term.Type("exit 5");
  EXPECT_TRUE(term.WaitClosed());
}

// What the suite shares; built by SetUpTestSuite, torn down (servers first) by TearDownTestSuite.
struct Deployment {
  std::string skip;   // non-empty: why every test skips (Docker or an image cannot be had here)
  std::string error;  // non-empty: the set-up failed, every test fails with it
  TempDir tmp{"allgo-gateway-e2e"};
  std::unique_ptr<TestNodes> nodes;
  std::vector<std::unique_ptr<DockerSandbox>> sandboxes;  // one per kWebapps entry
  std::unique_ptr<DockerSandbox> spare;                   // `echo` on node-b, removed by a fault test
  KeyPair key;
  std::string shared, socket;
  std::unique_ptr<SshdServer> sshd;
  std::unique_ptr<TestGateway> gateway;

  std::string GatewayConfig(ClientCertificate which = ClientCertificate::kTrusted) const {
    return TestDatabase::Get().MysqlConfigSection() + "[sandbox]\nbackend = docker\n" +
           nodes->DockerSection(socket, which);
  }
};
Deployment* g = nullptr;

class SshdGatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Deployment();
    std::string why;
    chmod(g->tmp.path().c_str(), 0755);
    g->nodes = TestNodes::Start(2, "allgo-gateway", &why);
    if (!g->nodes) {  // no docker.io, not root, no overlay or cgroups here: like sshd_docker_test
      g->skip = "Docker cannot run here: " + why;
      return;
    }
    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    g->key = MakeKeyPair(g->tmp.path(), "owner");
    uint32_t owner = db.AddUser("owner@example.org");
    db.AddKey(owner, g->key.public_line);
    g->shared = g->tmp / "shared";  // the same path on the frontend and in every container
    fs::create_directories(g->shared);
    chmod(g->shared.c_str(), 0777);
    fs::create_directories(g->tmp / "run");
    chmod((g->tmp / "run").c_str(), 0755);
    g->socket = g->tmp / "run/gateway.sock";
    auto start = [&](const std::string& name, int node, bool debian, std::unique_ptr<DockerSandbox>* out) {
      TestDocker& engine = g->nodes->node(node);
      std::string image = debian ? engine.DebianImage(&why) : engine.BusyboxImage(&why);
      if (image.empty()) {  // no Debian mirror reachable, say: skipped, like sshd_docker_test
        g->skip = "node " + TestNodes::Name(node) + ": " + why;
        return std::string();
      }
      db.AddWebapp(name, owner);
      // As allgo's controller runs it on a node: no bridge folder (the gateway starts the agent
      // per session), back with its engine after a node restart, quick to stop.
      *out = std::make_unique<DockerSandbox>(
          engine, DockerSandboxOptions{.name = name, .image = image,
                                       .hostname = name + "-on-" + TestNodes::Name(node), .binds = {g->shared},
                                       .run_options = {"--restart", "always", "--stop-timeout", "1"}});
      return (*out)->Start();
    };
    for (const Webapp& w : kWebapps) {
      g->sandboxes.emplace_back();
      g->error = start(w.name, w.node, w.debian, &g->sandboxes.back());
      if (!g->error.empty() || !g->skip.empty()) return;
    }
    g->error = start("echo", 1, false, &g->spare);
    if (!g->error.empty() || !g->skip.empty()) return;
    g->gateway = std::make_unique<TestGateway>(g->GatewayConfig(), g->socket, g->tmp.path());
    g->sshd = std::make_unique<SshdServer>("max_startups = 100:30:200",
                                           "[sandbox]\nbackend = docker\nstart_wait = 3\n" +
                                               g->nodes->DockerSection(g->socket),
                                           Artifact("allgo-shell"));
  }

  static void TearDownTestSuite() {
    if (!g) return;
    g->sshd.reset();
    g->gateway.reset();
    g->spare.reset();
    g->sandboxes.clear();
    g->nodes.reset();
    delete g;
    g = nullptr;
  }

  void SetUp() override {
    if (!g->skip.empty()) GTEST_SKIP() << g->skip;
    ASSERT_EQ(g->error, "");
    ASSERT_TRUE(g->sshd);
    // A test that failed half-way may have left the gateway stopped: each test starts from a
    // running one (and says so if it cannot).
    if (!g->gateway->running()) {
      std::string e = g->gateway->Start();
      ASSERT_EQ(e, "");
    }
  }

  static RunResult Ssh(const std::string& webapp, const std::string& command, const std::vector<std::string>& extra = {},
                       RunOptions options = {}) {
    options.timeout_seconds = 90;
    return g->sshd->Ssh(webapp, g->key.private_path, command, extra, options);
  }

  static RunResult Tool(std::vector<std::string> argv, const std::vector<std::string>& tail) {
    std::vector<std::string> opts = g->sshd->ClientOptions(g->key.private_path);
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return test::Run(argv, {.timeout_seconds = 90});
  }

  static std::string Logs() { return "\n--- allgo-sshd:\n" + g->sshd->log() + "\n--- gateway:\n" + g->gateway->log(); }
};

TEST_F(SshdGatewayTest, EachWebappLandsInItsOwnContainerOnItsNode) {
  for (const Webapp& w : kWebapps) {
    RunResult r = Ssh(w.name, "hostname; grep ^ID= /etc/os-release; id -u; pwd");
    ASSERT_EQ(r.exit_code, 0) << w.name << ": " << r.err << Logs();
    EXPECT_EQ(r.out, HostnameOf(w) + "\n" + (w.debian ? "ID=debian" : "ID=busybox") + "\n0\n/\n") << w.name;
    EXPECT_EQ(r.err, "") << w.name;
  }
}

TEST_F(SshdGatewayTest, ExitCodesStderrStdinEofSignalsAndBinaryDataOnBothNodes) {
  std::string blob(4 << 20, '\0');
  std::mt19937_64 rng(11);
  for (auto& c : blob) c = static_cast<char>(rng());
  for (const char* webapp : {"alpha", "delta"}) {
    SCOPED_TRACE(webapp);
    RunResult r = Ssh(webapp, "echo out; echo oops >&2; exit 3");
    EXPECT_EQ(r.exit_code, 3) << r.err << Logs();
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "oops\n");
    RunOptions in;
    in.stdin_data = blob;
    r = Ssh(webapp, "cat", {}, in);  // ends at stdin EOF, every byte back
    EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
    EXPECT_TRUE(r.out == blob) << r.out.size();
    in.stdin_data = "three\nlines\nhere\n";
    r = Ssh(webapp, "wc -l", {}, in);
    EXPECT_THAT(r.out, HasSubstr("3"));
    EXPECT_EQ(Ssh(webapp, "kill -TERM $$").exit_code, 143);
    EXPECT_EQ(Ssh(webapp, "kill -KILL $$").exit_code, 137);
  }
}

TEST_F(SshdGatewayTest, PtyShellFollowsResizesAndCtrlCInterrupts) {
  for (const char* webapp : {"charlie", "bravo"}) {
    SCOPED_TRACE(webapp);
    TmuxTerminal term(g->tmp / ("tmux-" + std::string(webapp)),
                      g->sshd->SshCommandLine(g->key.private_path, {"-tt"}) + " " + webapp + "@127.0.0.1", 90, 25);
    ExpectPtyFollowsResizeAndCtrlC(term, webapp, [&] { return Logs(); });
  }
  EXPECT_TRUE(g->sshd->WaitForLog("kind=shell status=5"));
}

TEST_F(SshdGatewayTest, ScpBothModesSftpAndRsyncOnEitherNode) {
  std::string payload(2 << 20, 'x');
  for (size_t i = 0; i < payload.size(); i += 89) payload[i] = static_cast<char>('a' + i % 26);
  WriteFile(g->tmp / "src.bin", payload);
  std::string port = std::to_string(g->sshd->port());
  for (const char* webapp : {"alpha", "charlie"}) {
    SCOPED_TRACE(webapp);
    std::string dest = g->shared + "/" + webapp;
    RunResult r = Tool({"scp", "-P", port}, {g->tmp / "src.bin", std::string(webapp) + "@127.0.0.1:" + dest + ".scp"});
    ASSERT_EQ(r.exit_code, 0) << r.err << Logs();
    EXPECT_EQ(ReadFile(dest + ".scp"), payload);
    r = Tool({"scp", "-O", "-P", port}, {std::string(webapp) + "@127.0.0.1:" + dest + ".scp", dest + ".legacy"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ReadFile(dest + ".legacy"), payload);
    WriteFile(g->tmp / "batch", "put " + (g->tmp / "src.bin") + " " + dest + ".sftp\nls -l " + dest + ".sftp\n");
    r = Tool({"sftp", "-b", g->tmp / "batch", "-P", port}, {std::string(webapp) + "@127.0.0.1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ReadFile(dest + ".sftp"), payload);
    r = test::Run({"rsync", "-a", "-e", g->sshd->SshCommandLine(g->key.private_path), g->tmp / "src.bin",
                   std::string(webapp) + "@127.0.0.1:" + dest + ".rsync"},
                  {.timeout_seconds = 90});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ReadFile(dest + ".rsync"), payload);
  }
}

// The busybox image has no sftp-server: sftp and scp reach the toolbox's static one through the
// gateway's exec too (issue 19); the Debian image keeps its own.
TEST_F(SshdGatewayTest, SftpAndScpWorkInTheBusyboxImageThroughTheToolbox) {
  for (const char* webapp : {"delta", "alpha"}) {
    SCOPED_TRACE(webapp);
    std::string ran = ExpectSftpAndScpRoundTrip(*g->sshd, g->key.private_path, webapp, g->tmp.path(), g->shared);
    EXPECT_EQ(ran, std::string(webapp) == "delta" ? "/.allgo/allgo-sftp-server" : "/usr/lib/openssh/sftp-server")
        << Logs();
  }
}

TEST_F(SshdGatewayTest, GitPushAndCloneIntoTheDebianContainer) {
  ASSERT_EQ(Ssh("charlie", "rm -rf /root/repo.git && git init -q --bare /root/repo.git").exit_code, 0);
  RunOptions o;
  o.env = {{"GIT_SSH_COMMAND", g->sshd->SshCommandLine(g->key.private_path)}, {"HOME", g->tmp.path()},
           {"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@example.org"},
           {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@example.org"}};
  o.timeout_seconds = 90;
  std::string work = g->tmp / "work";
  RunResult r = Sh("rm -rf " + work + " " + (g->tmp / "clone") + " && git init -q " + work + " && cd " + work +
                       " && echo hello > f && git add f && git commit -qm first && "
                       "git push -q charlie@127.0.0.1:/root/repo.git HEAD:refs/heads/main && "
                       "git clone -q charlie@127.0.0.1:/root/repo.git " + (g->tmp / "clone") + " -b main",
                   o);
  ASSERT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_EQ(ReadFile(g->tmp / "clone/f"), "hello\n");
  EXPECT_EQ(Ssh("charlie", "git -C /root/repo.git log --format=%s main").out, "first\n");
}

TEST_F(SshdGatewayTest, TwentyParallelSessionsSpreadOverBothNodes) {
  std::atomic<int> good{0};
  std::vector<std::string> failures(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      const Webapp& w = kWebapps[i % 4];
      RunResult r = Ssh(w.name, "echo s" + std::to_string(i) + " $(hostname); sleep 1");
      if (r.exit_code == 0 && r.out == "s" + std::to_string(i) + " " + HostnameOf(w) + "\n") {
        ++good;
      } else {
        failures[i] = std::to_string(r.exit_code) + " " + r.out + r.err;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::string why;
  for (const auto& f : failures) why += f.empty() ? "" : f + "\n";
  EXPECT_EQ(good.load(), 20) << why << Logs();
}

// The helpers under a stock OpenSSH sshd (keys from allgo-authkeys, allgo-shell as the login
// shell NSS reports) reach both nodes through the same gateway.
TEST_F(SshdGatewayTest, StockOpenSshReachesBothNodesWithTheWholeList) {
  fs::copy_file(Artifact("allgo-authkeys"), "/etc/allgo/allgo-authkeys", fs::copy_options::overwrite_existing);
  chmod("/etc/allgo/allgo-authkeys", 0755);  // sshd wants it root-owned; /etc/allgo is the test's overlay
  mkdir("/run/sshd", 0755);
  std::string host_key = g->tmp / "openssh_host_key";
  fs::remove(host_key);
  fs::remove(host_key + ".pub");
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key}).exit_code, 0);
  int port = FreeLoopbackPort();
  WriteFile(g->tmp / "sshd_config",
            "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " + host_key +
                "\nPidFile none\nUsePAM no\nAuthorizedKeysFile none\n"
                "AuthorizedKeysCommand /etc/allgo/allgo-authkeys %u\nAuthorizedKeysCommandUser allgo-authkeys\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                "Subsystem sftp /usr/lib/openssh/sftp-server\n"
                // Twenty logins at once, as through allgo-sshd (OpenSSH's default 10:30:100
                // would drop some of them at random before the gateway is ever asked).
                "MaxStartups 30\n");
  Daemon sshd({"/usr/sbin/sshd", "-D", "-e", "-f", g->tmp / "sshd_config"}, g->tmp / "openssh.log");
  ASSERT_TRUE(WaitForTcpPort(port, 10000)) << sshd.Log();
  std::vector<std::string> opts = {"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                   "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                   "-o", "LogLevel=ERROR", "-i", g->key.private_path};
  auto run = [&](std::vector<std::string> argv, const std::vector<std::string>& tail, const std::string& in = "") {
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return test::Run(argv, {.stdin_data = in, .timeout_seconds = 90});
  };
  std::string p = std::to_string(port);
  for (const Webapp& w : kWebapps) {
    RunResult r = run({"ssh", "-p", p}, {std::string(w.name) + "@127.0.0.1", "hostname; echo err >&2; exit 7"});
    EXPECT_EQ(r.exit_code, 7) << w.name << ": " << r.err << sshd.Log() << Logs();
    EXPECT_EQ(r.out, HostnameOf(w) + "\n");
    EXPECT_EQ(r.err, "err\n");
  }
  RunResult r = run({"ssh", "-tt", "-p", p}, {"delta@127.0.0.1", "tty; stty size"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
  r = run({"ssh", "-p", p}, {"alpha@127.0.0.1", "cat | md5sum"}, "through stock OpenSSH\n");
  EXPECT_EQ(r.out, test::Run({"md5sum"}, {.stdin_data = "through stock OpenSSH\n"}).out);  // stdin EOF too
  WriteFile(g->tmp / "payload", "through stock OpenSSH\n");
  r = run({"scp", "-P", p}, {g->tmp / "payload", "charlie@127.0.0.1:" + g->shared + "/stock.scp"});
  EXPECT_EQ(r.exit_code, 0) << r.err << sshd.Log();
  EXPECT_EQ(ReadFile(g->shared + "/stock.scp"), "through stock OpenSSH\n");
  r = run({"scp", "-O", "-P", p}, {"alpha@127.0.0.1:" + g->shared + "/stock.scp", g->tmp / "stock.back"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(g->tmp / "stock.back"), "through stock OpenSSH\n");
  WriteFile(g->tmp / "stock.batch", "put " + (g->tmp / "payload") + " " + g->shared + "/stock.sftp\n");
  r = run({"sftp", "-b", g->tmp / "stock.batch", "-P", p}, {"charlie@127.0.0.1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(g->shared + "/stock.sftp"), "through stock OpenSSH\n");
  std::string ssh_line = "ssh -p " + p;
  for (const auto& o : opts) ssh_line += " " + ShellQuote(o);
  r = test::Run({"rsync", "-a", "-e", ssh_line, g->tmp / "payload", "alpha@127.0.0.1:" + g->shared + "/stock.rsync"},
                {.timeout_seconds = 90});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(g->shared + "/stock.rsync"), "through stock OpenSSH\n");
  // A signal ends the command in the container as through allgo-sshd: 128 + TERM.
  r = run({"ssh", "-p", p}, {"bravo@127.0.0.1", "kill -TERM $$; sleep 5"});
  EXPECT_EQ(r.exit_code, 143) << r.err;
  // Twenty at once over both nodes.
  std::vector<std::future<RunResult>> many;
  for (int i = 0; i < 20; ++i) {
    many.push_back(std::async(std::launch::async, [&, i] {
      return run({"ssh", "-p", p}, {std::string(kWebapps[i % 4].name) + "@127.0.0.1", "hostname; sleep 1"});
    }));
  }
  for (int i = 0; i < 20; ++i) {
    RunResult one = many[i].get();
    EXPECT_EQ(one.out, HostnameOf(kWebapps[i % 4]) + "\n") << one.err;
  }
  // git over stock OpenSSH into the Debian container on node-a.
  ASSERT_EQ(run({"ssh", "-p", p}, {"alpha@127.0.0.1", "rm -rf /root/stock.git && git init -q --bare /root/stock.git"}).exit_code, 0);
  RunOptions o;
  o.env = {{"GIT_SSH_COMMAND", ssh_line}, {"HOME", g->tmp.path()},
           {"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@example.org"},
           {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@example.org"}};
  o.timeout_seconds = 90;
  std::string work = g->tmp / "stock-work", clone = g->tmp / "stock-clone";
  r = Sh("rm -rf " + work + " " + clone + " && git init -q " + work + " && cd " + work +
             " && echo stock > f && git add f && git commit -qm viaopenssh && "
             "git push -q alpha@127.0.0.1:/root/stock.git HEAD:refs/heads/main && "
             "git clone -q alpha@127.0.0.1:/root/stock.git " + clone + " -b main",
         o);
  ASSERT_EQ(r.exit_code, 0) << r.err << sshd.Log() << Logs();
  EXPECT_EQ(ReadFile(clone + "/f"), "stock\n");
  // A PTY that follows a resize, and ^C for the foreground command, in the busybox container.
  TmuxTerminal term(g->tmp / "tmux-stock", ssh_line + " -tt delta@127.0.0.1", 90, 25);
  ExpectPtyFollowsResizeAndCtrlC(term, "delta", [&] { return sshd.Log() + Logs(); });
}

// ---- Faults. Each puts back what it breaks.

TEST_F(SshdGatewayTest, AContainerRemovedMidSessionEndsThatSessionOnly) {
  std::string marker = g->shared + "/echo-started";
  fs::remove(marker);
  auto session = std::async(std::launch::async, [&] { return Ssh("echo", "echo started; touch " + marker + "; sleep 60; echo never"); });
  auto other = std::async(std::launch::async, [&] { return Ssh("delta", "sleep 4; hostname"); });  // same node
  ASSERT_TRUE(WaitFor([&] { return fs::exists(marker); }, 20000)) << Logs();
  g->spare->Remove();
  RunResult r = session.get();
  EXPECT_EQ(r.out, "started\n");
  ExpectOneAllgoLine(r, "lost the connection to the sandbox of 'echo'", "line_container_removed_mid_session", [&] { return Logs(); });
  RunResult o = other.get();
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "delta-on-node-b\n");
  // A login to the removed container: one line that says so.
  ExpectOneAllgoLine(Ssh("echo", "true"), "no container echo for 'echo'", "line_login_to_removed_container");
  ASSERT_EQ(g->spare->Start(), "");
  r = Ssh("echo", "hostname");
  EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_EQ(r.out, "echo-on-node-b\n");
}

TEST_F(SshdGatewayTest, TheGatewayRestartedMidSessionEndsItWithOneLineAndServesAgain) {
  std::string marker = g->shared + "/gw-started";
  fs::remove(marker);
  auto session = std::async(std::launch::async, [&] { return Ssh("charlie", "echo started; touch " + marker + "; sleep 60; echo never"); });
  ASSERT_TRUE(WaitFor([&] { return fs::exists(marker); }, 20000)) << Logs();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // "started" has reached the client
  g->gateway->Stop();
  RunResult r = session.get();
  EXPECT_EQ(r.out, "started\n");
  ExpectOneAllgoLine(r, "lost the connection to the sandbox of 'charlie'", "line_gateway_stopped_mid_session", [&] { return Logs(); });
  // While it is down: one line, no hang.
  ExpectOneAllgoLine(Ssh("alpha", "true"), "the sandbox gateway is not running", "line_gateway_down");
  ASSERT_EQ(g->gateway->Start(), "");
  r = Ssh("charlie", "hostname");
  EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_EQ(r.out, "charlie-on-node-b\n");
}

TEST_F(SshdGatewayTest, ANodeStoppedFailsItsWebappsOnlyAndRecoversWithoutRestarts) {
  pid_t gateway_pid = g->gateway->pid();
  std::string marker = g->shared + "/node-started";
  fs::remove(marker);
  // Running when the node goes: a session on it, and one on the other node.
  auto on_a = std::async(std::launch::async, [&] { return Ssh("alpha", "touch " + marker + "; sleep 60; echo never"); });
  auto on_b = std::async(std::launch::async, [&] { return Ssh("charlie", "sleep 6; hostname"); });
  ASSERT_TRUE(WaitFor([&] { return fs::exists(marker); }, 20000)) << Logs();
  g->nodes->node(0).StopEngine();
  ExpectOneAllgoLine(on_a.get(), "lost the connection to the sandbox of 'alpha'", "line_session_on_a_stopped_node",
                     [&] { return Logs(); });
  for (const char* webapp : {"alpha", "bravo"}) {
    auto t0 = std::chrono::steady_clock::now();
    RunResult r = Ssh(webapp, "true");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(r.exit_code, 0) << webapp;
    EXPECT_TRUE(OneAllgoLine(r.err)) << webapp << Logs();
    EXPECT_THAT(r.err, HasSubstr(webapp));
    EXPECT_THAT(r.err, HasSubstr("node node-a"));
    EXPECT_THAT(r.err, HasSubstr("where the Engine API failed"));
    EXPECT_LT(seconds, 15) << "a refused connection must not wait for api_timeout";
    RecordProperty(std::string("line_login_on_a_stopped_node_") + webapp, r.err);
  }
  RunResult b = on_b.get();
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.out, "charlie-on-node-b\n");
  for (const char* webapp : {"charlie", "delta"}) {
    RunResult r = Ssh(webapp, "hostname");
    EXPECT_EQ(r.exit_code, 0) << webapp << ": " << r.err << Logs();
    EXPECT_THAT(r.out, HasSubstr("-on-node-b"));
  }
  std::string e = g->nodes->node(0).StartEngine();
  ASSERT_EQ(e, "");
  // The containers come back with their engine (--restart always); nothing else restarts.
  RunResult r;
  EXPECT_TRUE(WaitFor([&] { return (r = Ssh("alpha", "hostname")).exit_code == 0; }, 30000)) << r.err << Logs();
  EXPECT_EQ(r.out, "alpha-on-node-a\n");
  r = Ssh("bravo", "hostname");
  EXPECT_EQ(r.out, "bravo-on-node-a\n") << r.err;
  EXPECT_EQ(g->gateway->pid(), gateway_pid);
}

TEST_F(SshdGatewayTest, AWrongOrMissingClientCertificateIsOneLineForTheUserAndTheDetailForTheOperator) {
  g->gateway->Stop();
  {
    TempDir dir("allgo-gateway-rogue");
    chmod(dir.path().c_str(), 0755);
    TestGateway rogue(g->GatewayConfig(ClientCertificate::kRogue), g->socket, dir.path());
    std::string started = rogue.Start();
    ASSERT_EQ(started, "");
    RunResult r = Ssh("alpha", "true");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(OneAllgoLine(r.err)) << rogue.log();
    // The TLS cause (with TLS 1.3 the node refuses the certificate after the handshake).
    EXPECT_THAT(r.err, HasSubstr("certificate"));
    EXPECT_THAT(r.err, HasSubstr("check tls_cert and tls_key"));
    EXPECT_THAT(r.err, HasSubstr("may be on nodes ")) << "every node refuses the certificate";
    EXPECT_THAT(r.err, HasSubstr("where the Engine API failed"));
    EXPECT_THAT(r.err, Not(HasSubstr("BEGIN")));
    RecordProperty("line_rogue_client_certificate", r.err);
    // The operator's detail: which node, and that TLS refused the certificate.
    EXPECT_TRUE(rogue.WaitForLog("node-a")) << rogue.log();
    EXPECT_THAT(rogue.log(), HasSubstr("certificate"));
  }
  {
    TempDir dir("allgo-gateway-nocert");
    chmod(dir.path().c_str(), 0755);
    TestGateway missing(g->GatewayConfig(ClientCertificate::kMissing), g->socket, dir.path());
    std::string started = missing.Start();
    if (started.empty()) {  // a gateway that starts anyway must refuse per session, clearly
      RunResult r = Ssh("alpha", "true");
      EXPECT_NE(r.exit_code, 0);
      EXPECT_TRUE(OneAllgoLine(r.err));
    } else {
      // It refuses to start, naming a missing file and where it is configured.
      EXPECT_THAT(started, AnyOf(HasSubstr("no-such-cert.pem"), HasSubstr("no-such-key.pem")));
      EXPECT_THAT(started, HasSubstr(missing.config_path()));
      RecordProperty("log_missing_client_certificate", missing.log());
      RunResult r = Ssh("alpha", "true");
      EXPECT_NE(r.exit_code, 0);
      EXPECT_TRUE(OneAllgoLine(r.err));
      RecordProperty("line_missing_client_certificate", r.err);
    }
  }
  ASSERT_EQ(g->gateway->Start(), "");
  EXPECT_EQ(Ssh("alpha", "hostname").out, "alpha-on-node-a\n");
}

// Forwarding through the gateway (docs/forwarding.md): -W and -R land inside the container
// (its own network namespace, --network none), over one Engine API exec per SSH connection.
TEST_F(SshdGatewayTest, ForwardsLandInTheContainerOnItsNode) {
  const int port = FreeLoopbackPort();
  // busybox httpd inside "delta" (busybox image, node b), serving a marker from the shared folder.
  std::string www = g->shared + "/www-delta";
  fs::create_directories(www);
  WriteFile(www + "/marker.txt", "container\n");
  RunResult r = Ssh("delta", "httpd -p 127.0.0.1:" + std::to_string(port) + " -h " + www + " && echo started");
  ASSERT_EQ(r.out, "started\n") << r.err << Logs();
  RunOptions in;
  in.stdin_data = "GET /marker.txt HTTP/1.0\r\n\r\n";
  in.timeout_seconds = 60;
  r = g->sshd->Ssh("delta", g->key.private_path, "", {"-W", "127.0.0.1:" + std::to_string(port)}, in);
  EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_THAT(r.out, HasSubstr("container"));
  // The frontend has no such server: a forward that landed here would have been refused.
  EXPECT_NE(test::Run({"curl", "-s", "--max-time", "3", "http://127.0.0.1:" + std::to_string(port) + "/marker.txt"}).exit_code, 0);
  // -R: a listener inside the container brings the container's connection back to the client.
  std::string front = g->tmp / "front";
  fs::create_directories(front);
  WriteFile(front + "/marker.txt", "client side\n");
  const int front_port = FreeLoopbackPort(), remote = FreeLoopbackPort();
  Daemon web({"python3", "-m", "http.server", std::to_string(front_port), "--bind", "127.0.0.1", "--directory", front},
             g->tmp / "front.log");
  // Wait for the client side's own web server (started just now) to answer.
  test::Run({"sh", "-c", "for i in $(seq 50); do curl -s http://127.0.0.1:" + std::to_string(front_port) +
                             "/ >/dev/null && break; sleep 0.1; done"});
  r = Ssh("delta", "wget -q -O - http://127.0.0.1:" + std::to_string(remote) + "/marker.txt",
          {"-o", "ExitOnForwardFailure=yes", "-R",
           "127.0.0.1:" + std::to_string(remote) + ":127.0.0.1:" + std::to_string(front_port)});
  EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_EQ(r.out, "client side\n");
  Ssh("delta", "pkill httpd || killall httpd");
}

#ifdef ALLGO_LIBSSH_STREAMLOCAL
// Unix sockets through the gateway, both directions, with nothing but the agent in the busybox
// container: client A's `-R /tmp/x.sock:...` makes a socket inside "delta" whose connections
// come back to A (which reaches the client side's web server); client B's `-L PORT:/tmp/x.sock`
// connects to that very socket from inside the container. The path never exists here.
TEST_F(SshdGatewayTest, StreamLocalForwardsLandInTheContainer) {
  std::string front = g->tmp / "front-unix";
  fs::create_directories(front);
  WriteFile(front + "/marker.txt", "client side over unix\n");
  const int front_port = FreeLoopbackPort(), local = FreeLoopbackPort();
  Daemon web({"python3", "-m", "http.server", std::to_string(front_port), "--bind", "127.0.0.1", "--directory", front},
             g->tmp / "front-unix.log");
  const std::string sock = "/tmp/allgo-gw-" + std::to_string(getpid()) + ".sock";
  auto client = [&](const std::vector<std::string>& forward, const std::string& log) {
    std::vector<std::string> argv = {"ssh", "-N", "-o", "ExitOnForwardFailure=yes"};
    argv.insert(argv.end(), forward.begin(), forward.end());
    for (const auto& o : g->sshd->ClientOptions(g->key.private_path)) argv.push_back(o);
    argv.insert(argv.end(), {"-p", std::to_string(g->sshd->port()), "delta@127.0.0.1"});
    return std::make_unique<Daemon>(argv, g->tmp / log);
  };
  auto a = client({"-R", sock + ":127.0.0.1:" + std::to_string(front_port)}, "unix-a.log");
  ASSERT_TRUE(g->sshd->WaitForLog("forward streamlocal-forward: user=delta", 60000)) << a->Log() << Logs();
  EXPECT_FALSE(fs::exists(sock));
  auto b = client({"-L", "127.0.0.1:" + std::to_string(local) + ":" + sock}, "unix-b.log");
  std::string got;
  EXPECT_TRUE(WaitFor([&] {
    got = test::Run({"curl", "-s", "--max-time", "10", "http://127.0.0.1:" + std::to_string(local) + "/marker.txt"}).out;
    return got == "client side over unix\n";
  }, 60000)) << got << a->Log() << b->Log() << Logs();
  EXPECT_TRUE(g->sshd->WaitForLog("forward direct-streamlocal end: user=delta", 20000)) << Logs();
  EXPECT_TRUE(g->sshd->WaitForLog("forward forwarded-streamlocal end: user=delta", 20000)) << Logs();
  b->Stop(SIGTERM, 5000);
  a->Stop(SIGTERM, 5000);
}
#endif

// The docker backend's agent (one `--stdio` exec per session) gives the same private home as
// the bridge's: in a busybox container whose user is the webapp's uid, unknown to the image
// (Docker's HOME=/, not writable), VS Code's ~/.vscode-server can be made, and it is there at
// the next login (a new exec, a new agent) — in the container, not on the frontend.
TEST_F(SshdGatewayTest, AUserTheImageDoesNotKnowGetsAWritableHomeInTheContainer) {
  TestDatabase& db = TestDatabase::Get();
  const uint32_t owner = std::stoul(db.Value("SELECT id FROM allgo.users WHERE email = 'owner@example.org'"));
  const std::string uid = std::to_string(db.AddWebapp("golf", owner) + 2000), home = "/tmp/allgo-home-" + uid;
  struct DropRow {
    ~DropRow() { TestDatabase::Get().Exec("DELETE FROM allgo.webapps WHERE docker_name = 'golf'"); }
  } drop_row;
  TestDocker& engine = g->nodes->node(0);
  std::string why;
  const std::string image = engine.BusyboxImage(&why);
  ASSERT_FALSE(image.empty()) << why;
  DockerSandbox golf(engine, DockerSandboxOptions{.name = "golf", .image = image, .hostname = "golf",
                                                 .run_options = {"--user", uid + ":65534", "--stop-timeout", "1"}});
  ASSERT_EQ(golf.Start(), "");
  RunResult r = Ssh("golf", "mkdir -p ~/.vscode-server/bin && echo ok > ~/.vscode-server/x && cat ~/.vscode-server/x && "
                            "echo $HOME && id -u && stat -c '%a %u' \"$HOME\"", {"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err << Logs();
  EXPECT_EQ(r.out, "ok\n" + home + "\n" + uid + "\n700 " + uid + "\n") << r.err;
  EXPECT_EQ(Ssh("golf", "cat ~/.vscode-server/x", {"-T"}).out, "ok\n");
  EXPECT_FALSE(fs::exists(home)) << "made on the frontend";
}

}  // namespace
}  // namespace allgo::test
