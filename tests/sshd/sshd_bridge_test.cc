// allgo-sshd through the bridge, the whole path as users take it: the OpenSSH client,
// allgo-sshd, the webapp resolved by glibc through libnss_allgo (real MariaDB), allgo-shell as
// its login shell, and allgo-sandbox-agent inside a bubblewrap sandbox (own pid namespace,
// the bridge folder bind-mounted) running the commands.
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "allgo/bridge/io.h"
#include "allgo/bridge/protocol.h"
#include "monitor_client.h"
#include "monitor_process.h"
#include "monitor_protocol.h"
#include "sshd_fixture.h"
#include "test_support.h"
#include "wire.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::Not;

bool WaitUntil(const std::function<bool()>& done, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

class SshdBridgeTest : public SshdBridgeFixture {
 protected:
  SshdBridgeTest() : SshdBridgeFixture("allgo-sshd-bridge") {}

  void SetUp() override {
    SetUpFrontend();
    if (HasFatalFailure()) return;
    std::vector<std::string> argv = SandboxCommand(bridge_, {.binds = {shared_}});
    agent_ = std::make_unique<Daemon>(argv, tmp_ / "agent.log");
    ASSERT_TRUE(WaitUntil([&] { return agent_->Log().find("listening on") != std::string::npos; }, 10000))
        << agent_->Log();
  }

  void TearDown() override {
    server_.reset();
    if (agent_) agent_->Stop(SIGTERM, 5000);
  }

  // The agent gone (its socket no longer answers) and the webapp's state idle.
  void StopSandbox();

  std::unique_ptr<Daemon> agent_;
};

TEST_F(SshdBridgeTest, CommandsRunInTheSandboxWithExitCodesStderrAndEof) {
  RunResult r = Ssh("echo in-sandbox; cat /proc/1/cmdline | tr '\\0' ' '; echo oops >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3) << r.err << server_->log();
  EXPECT_THAT(r.out, StartsWith("in-sandbox\nbwrap"));
  EXPECT_THAT(r.err, HasSubstr("oops"));
  EXPECT_EQ(r.out.find("oops"), std::string::npos);
  RunOptions in;
  in.stdin_data = "abc";
  r = Ssh("cat", {}, in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "abc");
  EXPECT_EQ(Ssh("kill -TERM $$").exit_code, 143);  // allgo-shell reports 128+N
  EXPECT_TRUE(server_->WaitForLog("session end: user=sleep kind=exec"));
}

// key_options command=: the forced command runs in the sandbox and sees the client's command.
TEST_F(SshdBridgeTest, ForcedCommandRunsInTheSandboxWithTheOriginalCommand) {
  StartServer("", "[authkeys]\nkey_options = "
                  "restrict,command=\"echo forced:$SSH_ORIGINAL_COMMAND; head -c 4 /proc/1/cmdline\"\n");
  RunResult r = Ssh("rm -rf /");
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_EQ(r.out, "forced:rm -rf /\nbwra");
}

TEST_F(SshdBridgeTest, TwentyMegabytesKeepTheirChecksum) {
  std::string blob(20 << 20, '\0');
  std::mt19937_64 rng(5);
  for (auto& c : blob) c = static_cast<char>(rng());
  WriteFile(tmp_ / "local.bin", blob);
  std::string want = Sh("sha256sum < " + (tmp_ / "local.bin")).out;
  RunOptions up;
  up.stdin_data = blob;
  RunResult r = Ssh("cat > " + shared_ + "/up.bin && sha256sum < " + shared_ + "/up.bin", {}, up);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, want);
  r = Ssh("cat " + shared_ + "/up.bin");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == blob) << r.out.size();
}

TEST_F(SshdBridgeTest, PtyAndResizeUnderTmux) {
  TmuxTerminal term(tmp_ / "tmux.sock", server_->SshCommandLine(key_.private_path, {"-tt"}) + " sleep@127.0.0.1", 90, 25);
  ASSERT_TRUE(term.started());
  term.Type("echo SIZE=$(stty size) PID1=$(cat /proc/1/comm)");
  EXPECT_TRUE(term.Shows("SIZE=25 90 PID1=bwrap", 8000)) << term.Screen();
  term.Resize(132, 43);
  term.Type("echo NEW=$(stty size)");
  EXPECT_TRUE(term.Shows("NEW=43 132", 8000)) << term.Screen();
  term.Type("exit 5");
  EXPECT_TRUE(term.WaitClosed());
  EXPECT_TRUE(server_->WaitForLog("kind=shell status=5"));
}

TEST_F(SshdBridgeTest, ScpBothModesSftpAndRsyncReachTheSandbox) {
  std::string payload(3 << 20, 'x');
  for (size_t i = 0; i < payload.size(); i += 97) payload[i] = static_cast<char>('a' + i % 26);
  WriteFile(tmp_ / "src.bin", payload);
  std::vector<std::string> opts = server_->ClientOptions(key_.private_path);
  std::string port = std::to_string(server_->port());
  auto tool = [&](std::vector<std::string> argv, const std::vector<std::string>& tail) {
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    RunOptions o;
    o.timeout_seconds = 90;
    return test::Run(argv, o);
  };
  RunResult r = tool({"scp", "-P", port}, {tmp_ / "src.bin", "sleep@127.0.0.1:" + shared_ + "/sftp-mode.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_EQ(ReadFile(shared_ + "/sftp-mode.bin"), payload);
  r = tool({"scp", "-O", "-P", port}, {"sleep@127.0.0.1:" + shared_ + "/sftp-mode.bin", tmp_ / "legacy.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(tmp_ / "legacy.bin"), payload);
  WriteFile(tmp_ / "batch", "put " + (tmp_ / "src.bin") + " " + shared_ + "/sftp.bin\nls " + shared_ + "\n");
  r = tool({"sftp", "-b", tmp_ / "batch", "-P", port}, {"sleep@127.0.0.1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(shared_ + "/sftp.bin"), payload);
  RunOptions o;
  o.timeout_seconds = 90;
  r = test::Run({"rsync", "-a", "-e", server_->SshCommandLine(key_.private_path), tmp_ / "src.bin",
           "sleep@127.0.0.1:" + shared_ + "/rsync.bin"},
          o);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(shared_ + "/rsync.bin"), payload);
}

TEST_F(SshdBridgeTest, ControlMasterSessionsShareOneConnection) {
  std::string path = tmp_ / "cm";
  RunResult m = Ssh("", {"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=30", "-N", "-f"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      RunResult r = Ssh("echo ch" + std::to_string(i) + " $(cat /proc/1/comm)", {"-o", "ControlPath=" + path});
      if (r.exit_code == 0 && r.out == "ch" + std::to_string(i) + " bwrap\n") ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 3);
  test::Run({"ssh", "-o", "ControlPath=" + path, "-O", "exit", "sleep@127.0.0.1"});
}

TEST_F(SshdBridgeTest, StoppedSandboxSaysSoOnOneLine) {
  agent_->Stop(SIGTERM, 5000);
  TestDatabase::Get().SetState("sleep", "idle");
  RunResult r = Ssh("echo never");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "allgo: the sandbox of 'sleep' is not running (state: idle); start it from the allgo web "
            "interface\n");
  EXPECT_TRUE(server_->WaitForLog("kind=exec echo never status=1"));
}

// Whether a unix socket still has a listener (the sandbox's agent takes a moment to go away
// after bubblewrap).
bool AcceptsConnections(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// The [mysql] section with the password moved to a file only root may read.
std::string RootOnlyPasswordSection(const std::string& password_file) {
  WriteFile(password_file, std::string(TestDatabase::kPassword) + "\n", 0600);
  EXPECT_EQ(chmod(password_file.c_str(), 0600), 0);
  std::string mysql = TestDatabase::Get().MysqlConfigSection();
  std::string inline_password = "password = " + std::string(TestDatabase::kPassword);
  EXPECT_NE(mysql.find(inline_password), std::string::npos);
  mysql.replace(mysql.find(inline_password), inline_password.size(), "password_file = " + password_file);
  return mysql;
}

TEST_F(SshdBridgeTest, AllgoShellWorksWithoutAPasswordItCannotRead) {
  // allgo-shell as sshd starts it (the webapp's uid, $USER), with a root-only password_file.
  std::string config = tmp_ / "root-only.conf";
  WriteFile(config, RootOnlyPasswordSection(tmp_ / "mysql.password") + "[sandbox]\ndir = " + sandboxes_ + "\n");
  RunOptions as_webapp;
  as_webapp.uid = uid_;
  as_webapp.gid = 65534;
  as_webapp.env = {{"USER", "sleep"}, {"ALLGO_SSH_CONFIG", config}};
  // What degrades, as documented: an unprivileged process no longer resolves webapps by NSS.
  RunOptions nss_as_webapp = as_webapp;
  nss_as_webapp.env.erase("USER");
  EXPECT_NE(test::Run({"getent", "passwd", "sleep"}, nss_as_webapp).exit_code, 0);
  RunOptions nss_as_root;
  nss_as_root.env = {{"ALLGO_SSH_CONFIG", config}};
  EXPECT_EQ(test::Run({"getent", "passwd", "sleep"}, nss_as_root).exit_code, 0) << "root still does";
  // Sessions do not need the database.
  RunResult r = test::Run({Artifact("allgo-shell"), "-c", "echo in-sandbox"}, as_webapp);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "in-sandbox\n");
  // The "not running" line stays one clear line, without the state it cannot read.
  agent_->Stop(SIGTERM, 5000);
  ASSERT_TRUE(WaitUntil([&] { return !AcceptsConnections(bridge_ + "/agent.sock"); }, 5000));
  r = test::Run({Artifact("allgo-shell"), "-c", "echo never"}, as_webapp);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("allgo: the sandbox of 'sleep' is not running (state: unknown: "));
  EXPECT_THAT(r.err, HasSubstr((tmp_ / "mysql.password") + " is not readable by uid " + std::to_string(uid_)));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(SshdBridgeTest, PasswordFileReadableByRootOnly) {
  // Through allgo-sshd: the root monitor read the file; the lookup child (lookup_user) uses
  // that copy. (The login needs the lookup child to build the account from the webapp row
  // rather than getpwnam: for lookup_user the NSS module cannot read this file.)
  std::string mysql = RootOnlyPasswordSection(tmp_ / "mysql.password");
  server_.reset();
  server_ = std::make_unique<SshdServer>("", "[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 3\n",
                                         Artifact("allgo-shell"), mysql);
  RunResult r = Ssh("echo in-sandbox");
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_EQ(r.out, "in-sandbox\n");
  agent_->Stop(SIGTERM, 5000);
  r = Ssh("echo never");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("allgo: the sandbox of 'sleep' is not running (state: unknown: "));
}

// Issue 18, finding 5: with a root-only password_file the allgo NSS module cannot name the
// session's uid, and with no bridge folder to prove $USER (a sandbox never started here)
// allgo-shell used to stop at "uid N has no user name (is the allgo NSS module listed...)".
// allgo-sshd hands over the webapp's name from its row: the documented "not running" line.
TEST_F(SshdBridgeTest, RootOnlyPasswordFileWithoutABridgeFolderStillSaysNotRunning) {
  const std::string password_file = tmp_ / "mysql.password";
  std::string mysql = RootOnlyPasswordSection(password_file);
  agent_->Stop(SIGTERM, 5000);
  ASSERT_EQ(rename(bridge_.c_str(), (bridge_ + ".away").c_str()), 0);
  struct PutBack {
    std::string from, to;
    ~PutBack() { rename(from.c_str(), to.c_str()); }
  } put_back{bridge_ + ".away", bridge_};
  server_.reset();
  server_ = std::make_unique<SshdServer>("", "[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 3\n",
                                         Artifact("allgo-shell"), mysql);
  const std::string unreadable = "[mysql] password_file " + password_file + " is not readable by uid " +
                                 std::to_string(uid_);
  RunResult r = Ssh("echo never");
  EXPECT_EQ(r.exit_code, 1) << r.err << server_->log();
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "allgo: the sandbox of 'sleep' is not running (state: unknown: the database is not readable "
                   "from this session: " + unreadable + "); start it from the allgo web interface\n");

  // Under stock OpenSSH no server hands the name over: the line says what is wrong (the
  // password file), not that the NSS module is missing from nsswitch.conf.
  std::string config = tmp_ / "root-only.conf";
  WriteFile(config, mysql + "[sandbox]\ndir = " + sandboxes_ + "\n");
  RunOptions as_webapp;
  as_webapp.uid = uid_;
  as_webapp.gid = 65534;
  as_webapp.env = {{"USER", "sleep"}, {"ALLGO_SSH_CONFIG", config}};
  r = test::Run({Artifact("allgo-shell"), "-c", "echo never"}, as_webapp);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("allgo: uid " + std::to_string(uid_) + " has no user name: " + unreadable +
                                ", so the allgo NSS module cannot read the database for this session"));
  EXPECT_THAT(r.err, Not(HasSubstr("nsswitch.conf")));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

void SshdBridgeTest::StopSandbox() {
  agent_->Stop(SIGTERM, 5000);
  ASSERT_TRUE(WaitUntil([&] { return !AcceptsConnections(bridge_ + "/agent.sock"); }, 5000));
  TestDatabase::Get().SetState("sleep", "idle");
}

// What `allgo-shell --streams` answered: the record, the descriptor it carried, its exit code.
struct CarrierAnswer {
  std::string record;
  UniqueFd fd;
  int exit_code = -1;
  pid_t pid = -1;
};

// Runs the built allgo-shell --streams as the monitor does: as the webapp's uid, stdout a
// SOCK_SEQPACKET socket (or `stdout_path`, a file, when given).
CarrierAnswer RunCarrier(uid_t uid, const std::string& config, const std::string& stdout_path = "") {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  CarrierAnswer answer;
  std::string shell = Artifact("allgo-shell");
  answer.pid = fork();
  if (answer.pid == 0) {
    int out = stdout_path.empty() ? theirs.get() : open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (out < 0 || dup2(out, 1) < 0 || setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(uid) != 0) _exit(126);
    std::string user = "USER=sleep", conf = "ALLGO_SSH_CONFIG=" + config;
    char* argv[] = {const_cast<char*>("allgo-shell"), const_cast<char*>("--streams"), nullptr};
    char* envp[] = {user.data(), conf.data(), const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
    execve(shell.c_str(), argv, envp);
    _exit(127);
  }
  theirs.reset();
  sshd::WireMessage msg;
  bool closed = false;
  if (stdout_path.empty() && sshd::ReceiveRecord(ours.get(), 20000, &msg, &closed).ok() && !closed) {
    answer.record = msg.payload;
    if (msg.fds.size() == 1) answer.fd = std::move(msg.fds[0]);
  }
  int status = 0;
  waitpid(answer.pid, &status, 0);
  answer.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return answer;
}

// A v1 session request on a connection to the agent: "" when the agent opened the session.
std::string OpenV1Session(int sock) {
  bridge::Open open;
  open.version = 1;
  open.command = "true";
  if (std::string err = bridge::SendMessage(sock, open); !err.empty()) return err;
  bridge::FrameReader reader;
  bridge::Message answer;
  if (std::string err = bridge::ReadMessage(sock, &reader, &answer, 10000); !err.empty()) return err;
  if (auto* e = std::get_if<bridge::Error>(&answer)) return "agent error: " + e->text;
  return std::holds_alternative<bridge::Opened>(answer) ? "" : "unexpected answer";
}

// The carrier of forwards: it connects as the webapp where a session connects and hands the
// connection over untouched; the agent sees the webapp's uid on it.
TEST_F(SshdBridgeTest, StreamsCarrierHandsOverAConnectionTheAgentKnowsAsTheWebapp) {
  std::string config = tmp_ / "carrier.conf";
  WriteFile(config, TestDatabase::Get().MysqlConfigSection() + "[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 2\n");
  CarrierAnswer a = RunCarrier(uid_, config);
  EXPECT_EQ(a.exit_code, 0);
  ASSERT_EQ(a.record, "ok");
  ASSERT_TRUE(a.fd);
  // SO_PEERCRED as the agent saw it: the webapp's uid (the carrier's pid is outside the
  // sandbox's pid namespace: 0 there).
  EXPECT_TRUE(WaitUntil([&] { return agent_->Log().find("from uid " + std::to_string(uid_) + " (pid") != std::string::npos; },
                        5000)) << agent_->Log();
  // Nothing was sent on it yet: the receiver speaks the protocol from its first byte.
  EXPECT_EQ(OpenV1Session(a.fd.get()), "");

  // Run by hand with a file as stdout: refused, nothing connects.
  CarrierAnswer by_hand = RunCarrier(uid_, config, tmp_ / "carrier.out");
  EXPECT_EQ(by_hand.exit_code, 2);
  EXPECT_EQ(ReadFile(tmp_ / "carrier.out"), "");

  // The sandbox stopped: one error record, the line a session would print.
  StopSandbox();
  a = RunCarrier(uid_, config);
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_EQ(a.record, "error: the sandbox of 'sleep' is not running (state: idle); start it from the allgo web interface");
  EXPECT_FALSE(a.fd);
}

// With [sandbox] backend = docker the carrier connects to the gateway's socket, as the webapp:
// the gateway (played here by the test, root, which ConnectGateway accepts) sees its uid.
TEST_F(SshdBridgeTest, StreamsCarrierConnectsToTheGatewayAsTheWebapp) {
  std::string socket_path = tmp_ / "gateway.sock";
  std::string config = tmp_ / "carrier-docker.conf";
  WriteFile(config, TestDatabase::Get().MysqlConfigSection() +
                        "[sandbox]\nbackend = docker\n[docker]\nnode = n1 unix:///nonexistent.sock\ngateway_socket = " +
                        socket_path + "\n");
  CarrierAnswer a = RunCarrier(uid_, config);
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_THAT(a.record, StartsWith("error: the sandbox gateway is not running (connect " + socket_path));
  EXPECT_FALSE(a.fd);

  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(chmod(socket_path.c_str(), 0666), 0);
  ASSERT_EQ(listen(listener.get(), 4), 0);
  a = RunCarrier(uid_, config);
  EXPECT_EQ(a.exit_code, 0);
  ASSERT_EQ(a.record, "ok");
  ASSERT_TRUE(a.fd);
  UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  ucred peer{};
  socklen_t len = sizeof peer;
  ASSERT_EQ(getsockopt(accepted.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len), 0);
  EXPECT_EQ(peer.uid, uid_) << "the gateway knows the webapp by this uid";
  EXPECT_EQ(peer.pid, a.pid) << "the carrier connected, nobody else";
  // Nothing was sent; what the receiver writes arrives.
  ASSERT_EQ(write(a.fd.get(), "v3", 2), 2);
  char buf[8] = {};
  EXPECT_EQ(read(accepted.get(), buf, sizeof buf), 2);
  EXPECT_EQ(std::string(buf, 2), "v3");
}

// The whole privileged path: the real monitor, asked OpenStreams through the network child's
// MonitorClient, starts the carrier as the authenticated webapp and passes the socket on.
TEST_F(SshdBridgeTest, MonitorOpenStreamsStartsTheCarrierAsTheWebapp) {
  std::string config_text = TestDatabase::Get().ConfigText("[nss]\nshell = " + Artifact("allgo-shell") +
                                                           "\n[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 2\n");
  {
    MonitorProcess monitor(config_text, tmp_ / "monitor.conf");
    ASSERT_TRUE(monitor.Authenticate(key_.public_line, "sleep").allowed);
    sshd::MonitorClient client(monitor.TakeSocket());
    UniqueFd sock;
    Status st = client.OpenStreams(&sock);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(WaitUntil([&] { return agent_->Log().find("from uid " + std::to_string(uid_) + " (pid") != std::string::npos; },
                          5000)) << agent_->Log();
    EXPECT_EQ(agent_->Log().find("from uid 0 "), std::string::npos) << "root never connects";
    EXPECT_EQ(OpenV1Session(sock.get()), "");
    // The carrier is gone (reaped by the monitor): no process of the webapp is left behind.
    EXPECT_EQ(Sh("pgrep -u " + std::to_string(uid_) + " -f 'allgo-shell --streams'").out, "");
  }
  // Refused with the reason when the sandbox is not running.
  StopSandbox();
  MonitorProcess monitor(config_text, tmp_ / "monitor.conf");
  ASSERT_TRUE(monitor.Authenticate(key_.public_line, "sleep").allowed);
  sshd::MonitorClient client(monitor.TakeSocket());
  UniqueFd sock;
  Status st = client.OpenStreams(&sock);
  EXPECT_EQ(st.code(), Status::Code::kPermission) << st.ToString();
  EXPECT_EQ(st.message(), "the sandbox of 'sleep' is not running (state: idle); start it from the allgo web interface");
  EXPECT_FALSE(sock);
}

}  // namespace
}  // namespace allgo::test
