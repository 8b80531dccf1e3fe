// allgo-sshd through the bridge into real Docker sandboxes, as allgo runs them (docs/sandbox.md):
// the OpenSSH client, allgo-sshd, the webapp resolved through libnss_allgo (real MariaDB),
// allgo-shell as its login shell, and allgo-sandbox-agent started by `docker exec` inside the
// webapp's container (private dockerd, --network none). Two images: the "typical webapp"
// (Debian 12 minbase with sftp-server, rsync, git) and the "any image" (busybox only; sftp
// through the toolbox's static sftp-server).
// Without Docker every test here is skipped with the reason; sshd_bridge_test (bubblewrap)
// still runs.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_docker.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

enum class Image { kDebian, kBusybox };

std::string ImageName(const ::testing::TestParamInfo<Image>& info) {
  return info.param == Image::kDebian ? "Debian12" : "Busybox";
}

class SshdDockerTest : public SshdBridgeFixture, public ::testing::WithParamInterface<Image> {
 protected:
  SshdDockerTest() : SshdBridgeFixture("allgo-sshd-docker") {}

  void SetUp() override {
    ALLGO_REQUIRE_DOCKER(docker);
    std::string why;
    std::string image = debian() ? docker.DebianImage(&why) : docker.BusyboxImage(&why);
    ASSERT_FALSE(image.empty()) << why;
    SetUpFrontend();
    if (HasFatalFailure()) return;
    sandbox_ = std::make_unique<DockerSandbox>(
        docker, DockerSandboxOptions{.name = "sleep", .image = image, .hostname = "sleep-webapp",
                                     .bridge_dir = bridge_, .allow_uid = uid_, .binds = {shared_}});
    ASSERT_EQ(sandbox_->Start(), "");
  }

  void TearDown() override {
    server_.reset();
    sandbox_.reset();
  }

  bool debian() const { return GetParam() == Image::kDebian; }

  RunResult Tool(std::vector<std::string> argv, const std::vector<std::string>& tail) {
    std::vector<std::string> opts = server_->ClientOptions(key_.private_path);
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    RunOptions o;
    o.timeout_seconds = 90;
    return test::Run(argv, o);
  }

  // Session folders (s-*) left in the bridge folder on the frontend.
  int SessionFolders() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(bridge_)) n += e.path().filename().string().rfind("s-", 0) == 0;
    return n;
  }

  std::unique_ptr<DockerSandbox> sandbox_;
};

TEST_P(SshdDockerTest, LoginLandsInTheContainer) {
  RunResult r = Ssh("hostname; cat /etc/os-release; id -u; echo HOME=$HOME; pwd; cat /proc/1/cmdline | tr '\\0' ' '");
  ASSERT_EQ(r.exit_code, 0) << r.err << server_->log() << sandbox_->Logs();
  EXPECT_THAT(r.out, StartsWith("sleep-webapp\n"));
  if (debian()) {
    EXPECT_THAT(r.out, HasSubstr("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\""));
  } else {
    EXPECT_THAT(r.out, HasSubstr("ID=busybox"));
  }
  // The container's user (root in both images), its HOME, its working folder, its pid 1.
  EXPECT_THAT(r.out, HasSubstr("\n0\nHOME=/root\n/\nsleep infinity"));
}

// A container whose user is the webapp's uid, unknown to the image's /etc/passwd: Docker gives
// it HOME=/, which that uid cannot write. Tools that install themselves under ~ (VS Code's
// ~/.vscode-server, JetBrains' ~/.cache/JetBrains) get a private home the agent makes inside
// the container, kept across logins, never on the frontend (agent/src/home.h).
TEST_P(SshdDockerTest, AUserTheImageDoesNotKnowGetsAWritableHomeInTheContainer) {
  ALLGO_REQUIRE_DOCKER(docker);
  // The root container of SetUp replaced, with its agent's files (root's) gone from the
  // bridge folder, as for a fresh webapp.
  const std::string image = sandbox_->options().image;
  sandbox_.reset();
  for (const char* name : {"agent.lock", "agent.sock"}) fs::remove(fs::path(bridge_) / name);
  sandbox_ = std::make_unique<DockerSandbox>(
      docker, DockerSandboxOptions{.name = "sleep", .image = image, .hostname = "sleep-webapp",
                                   .bridge_dir = bridge_, .allow_uid = uid_, .binds = {shared_},
                                   .run_options = {"--user", std::to_string(uid_) + ":65534"}});
  ASSERT_EQ(sandbox_->Start(), "");
  const std::string uid = std::to_string(uid_), home = "/tmp/allgo-home-" + uid;
  RunResult r = Ssh("mkdir -p ~/.vscode-server/bin && echo ok > ~/.vscode-server/x && cat ~/.vscode-server/x && "
                    "echo $HOME && id -u && stat -c '%a %u' \"$HOME\"", {"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err << sandbox_->Logs();
  EXPECT_EQ(r.out, "ok\n" + home + "\n" + uid + "\n700 " + uid + "\n") << r.err;
  EXPECT_EQ(Ssh("cat ~/.vscode-server/x", {"-T"}).out, "ok\n");
  EXPECT_FALSE(fs::exists(home)) << "made on the frontend";
}

TEST_P(SshdDockerTest, ExitCodesStderrStdinEofSignalsAndBinaryData) {
  RunResult r = Ssh("echo out; echo oops >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3) << r.err << server_->log();
  EXPECT_EQ(r.out, "out\n");
  EXPECT_THAT(r.err, HasSubstr("oops"));
  std::string blob(4 << 20, '\0');
  std::mt19937_64 rng(7);
  for (auto& c : blob) c = static_cast<char>(rng());
  RunOptions in;
  in.stdin_data = blob;
  r = Ssh("cat", {}, in);  // ends at stdin EOF
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == blob) << r.out.size();
  EXPECT_EQ(Ssh("kill -TERM $$").exit_code, 143);
  EXPECT_TRUE(server_->WaitForLog("session end: user=sleep kind=exec"));
}

TEST_P(SshdDockerTest, PtyLoginShellStartsInTheContainersHomeAndFollowsResizes) {
  TmuxTerminal term(tmp_ / "tmux.sock", server_->SshCommandLine(key_.private_path, {"-tt"}) + " sleep@127.0.0.1", 90, 25);
  ASSERT_TRUE(term.started());
  term.Type("echo SIZE=$(stty size) HOST=$(hostname) AT=$(pwd)");
  EXPECT_TRUE(term.Shows("SIZE=25 90 HOST=sleep-webapp AT=/root")) << term.Screen();
  term.Resize(132, 43);
  term.Type("echo NEW=$(stty size)");
  EXPECT_TRUE(term.Shows("NEW=43 132")) << term.Screen();
  term.Type("exit 5");
  EXPECT_TRUE(term.WaitClosed());
  EXPECT_TRUE(server_->WaitForLog("kind=shell status=5"));
}

// sftp and scp work in every image: the Debian image's own sftp-server, else the toolbox's
// static one (issue 19); what only the image can provide (rsync, scp -O) is named when missing.
TEST_P(SshdDockerTest, SftpAndScpWorkInEveryImageRsyncOrSayTheImageLacksIt) {
  ASSERT_TRUE(fs::exists(Artifact("allgo-sftp-server")))
      << "the build has no static sftp server for the toolbox: run scripts/build-sftp-server (as root), then cmake again";
  std::string ran = ExpectSftpAndScpRoundTrip(*server_, key_.private_path, "sleep", tmp_.path(), shared_);
  EXPECT_EQ(ran, debian() ? "/usr/lib/openssh/sftp-server"
                          : std::string(TestDocker::kToolboxMount) + "/allgo-sftp-server");
  std::string payload(2 << 20, 'x');
  for (size_t i = 0; i < payload.size(); i += 97) payload[i] = static_cast<char>('a' + i % 26);
  WriteFile(tmp_ / "src.bin", payload);
  std::string port = std::to_string(server_->port());
  RunOptions o;
  o.timeout_seconds = 90;
  RunResult rsync = test::Run({"rsync", "-a", "-e", server_->SshCommandLine(key_.private_path), tmp_ / "src.bin",
                               "sleep@127.0.0.1:" + shared_ + "/rsync.bin"},
                              o);
  if (debian()) {
    RunResult legacy = Tool({"scp", "-O", "-P", port}, {"sleep@127.0.0.1:" + shared_ + "/sleep.scp", tmp_ / "legacy.bin"});
    ASSERT_EQ(legacy.exit_code, 0) << legacy.err;  // scp comes with openssh-sftp-server's openssh-client
    EXPECT_EQ(ReadFile(tmp_ / "legacy.bin"), ReadFile(shared_ + "/sleep.scp"));
    ASSERT_EQ(rsync.exit_code, 0) << rsync.err;
    EXPECT_EQ(ReadFile(shared_ + "/rsync.bin"), payload);
    return;
  }
  EXPECT_NE(rsync.exit_code, 0);
  EXPECT_THAT(rsync.err, HasSubstr("the sandbox has no rsync: rsync needs the rsync package")) << rsync.err;
  RunResult legacy = Tool({"scp", "-O", "-P", port}, {tmp_ / "src.bin", "sleep@127.0.0.1:" + shared_ + "/legacy.bin"});
  EXPECT_NE(legacy.exit_code, 0);
  EXPECT_THAT(legacy.err, HasSubstr("the sandbox has no scp: scp -O (the legacy protocol) needs scp")) << legacy.err;
  EXPECT_FALSE(fs::exists(shared_ + "/legacy.bin"));
}

TEST_P(SshdDockerTest, GitOverSshPushesIntoTheContainer) {
  if (!debian()) GTEST_SKIP() << "the busybox image has no git";
  ASSERT_EQ(Ssh("git init -q --bare /root/repo.git").exit_code, 0);
  RunOptions o;
  o.env = {{"GIT_SSH_COMMAND", server_->SshCommandLine(key_.private_path)}, {"HOME", tmp_.path()},
           {"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@example.org"},
           {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@example.org"}};
  o.timeout_seconds = 90;
  std::string work = tmp_ / "work";
  RunResult r = Sh("git init -q " + work + " && cd " + work + " && echo hello > f && git add f && "
                   "git commit -qm first && git push -q sleep@127.0.0.1:/root/repo.git HEAD:refs/heads/main && "
                   "git clone -q sleep@127.0.0.1:/root/repo.git " + (tmp_ / "clone") + " -b main",
                   o);
  ASSERT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_EQ(ReadFile(tmp_ / "clone/f"), "hello\n");
  EXPECT_EQ(Ssh("git -C /root/repo.git log --format=%s main").out, "first\n");
}

TEST_P(SshdDockerTest, TwentyParallelSessions) {
  // Twenty handshakes at once: past max_startups' default start (10) some would be dropped.
  StartServer("max_startups = 100:30:200");
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      RunResult r = Ssh("echo s" + std::to_string(i) + " $(hostname)");
      if (r.exit_code == 0 && r.out == "s" + std::to_string(i) + " sleep-webapp\n") ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 20) << server_->log();
  EXPECT_EQ(SessionFolders(), 0);
}

TEST_P(SshdDockerTest, ContainerStoppedMidSessionEndsItCleanlyAndARestartServesAgain) {
  std::string marker = shared_ + "/started";
  // std::async: its future waits for the session even when an assertion returns early.
  auto session = std::async(std::launch::async, [&] { return Ssh("echo started; touch " + marker + "; sleep 60; echo never"); });
  ASSERT_TRUE(WaitFor([&] { return fs::exists(marker); }, 15000)) << server_->log();
  ASSERT_EQ(sandbox_->StopContainer(), "");
  RunResult r = session.get();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_THAT(r.err, StartsWith("allgo: lost the connection to the sandbox of 'sleep'")) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  // Nothing left on the frontend: no session folder, no allgo-shell still waiting.
  EXPECT_TRUE(WaitFor([&] { return SessionFolders() == 0 && ChildrenOf(server_->pid()).empty(); }, 10000))
      << SessionFolders();
  RunResult down = Ssh("echo never");
  EXPECT_NE(down.exit_code, 0);
  EXPECT_THAT(down.err, StartsWith("allgo: the sandbox of 'sleep' does not answer")) << down.err;

  ASSERT_EQ(sandbox_->RestartContainer(), "") << sandbox_->Logs();
  r = Ssh("hostname");
  EXPECT_EQ(r.exit_code, 0) << r.err << server_->log();
  EXPECT_EQ(r.out, "sleep-webapp\n");
}

TEST_P(SshdDockerTest, AKilledAgentIsRestartedInsideTheContainer) {
  RunResult r = Ssh("echo $PPID");  // the session's parent is the agent
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string agent_pid = r.out.substr(0, r.out.find('\n'));
  ASSERT_FALSE(agent_pid.empty());
  std::string why;
  TestDocker* docker = TestDocker::Get(&why);
  struct stat before;
  ASSERT_EQ(stat((bridge_ + "/agent.sock").c_str(), &before), 0);
  ASSERT_EQ(docker->Docker({"exec", "sleep", "sh", "-c", "kill -9 " + agent_pid}).exit_code, 0);
  // The supervisor loop starts a new agent a second later; it binds a new socket.
  EXPECT_TRUE(WaitFor(
      [&] {
        struct stat now;
        return stat((bridge_ + "/agent.sock").c_str(), &now) == 0 && now.st_ino != before.st_ino;
      },
      10000))
      << sandbox_->Logs();
  r = Ssh("echo $PPID");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out, agent_pid + "\n");
}

// The helpers under a stock OpenSSH sshd (keys from allgo-authkeys, allgo-shell as the login
// shell NSS reports) reach the same container.
TEST_P(SshdDockerTest, StockOpenSshReachesTheContainerToo) {
  std::filesystem::copy_file(Artifact("allgo-authkeys"), "/etc/allgo/allgo-authkeys",
                             std::filesystem::copy_options::overwrite_existing);
  chmod("/etc/allgo/allgo-authkeys", 0755);  // sshd wants it root-owned; /etc/allgo is the test's overlay
  mkdir("/run/sshd", 0755);
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_ / "host_key"}).exit_code, 0);
  int port = FreeLoopbackPort();
  WriteFile(tmp_ / "sshd_config",
            "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " + (tmp_ / "host_key") +
                "\nPidFile none\nUsePAM no\nAuthorizedKeysFile none\n"
                "AuthorizedKeysCommand /etc/allgo/allgo-authkeys %u\nAuthorizedKeysCommandUser nobody\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                "Subsystem sftp /usr/lib/openssh/sftp-server\n");
  Daemon sshd({"/usr/sbin/sshd", "-D", "-e", "-f", tmp_ / "sshd_config"}, tmp_ / "openssh.log");
  ASSERT_TRUE(WaitForTcpPort(port, 10000)) << sshd.Log();
  std::vector<std::string> opts = {"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                   "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                   "-o", "LogLevel=ERROR", "-i", key_.private_path};
  auto run = [&](std::vector<std::string> argv, const std::vector<std::string>& tail) {
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return test::Run(argv, {.timeout_seconds = 90});
  };
  std::string p = std::to_string(port);
  RunResult r = run({"ssh", "-p", p}, {"sleep@127.0.0.1", "hostname; grep -c . /etc/os-release >/dev/null && exit 7"});
  EXPECT_EQ(r.exit_code, 7) << r.err << sshd.Log();
  EXPECT_EQ(r.out, "sleep-webapp\n");
  r = run({"ssh", "-tt", "-p", p}, {"sleep@127.0.0.1", "tty"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
  WriteFile(tmp_ / "payload", "through stock OpenSSH\n");
  // scp's SFTP mode works in both images (busybox: the toolbox's sftp server, also under stock
  // OpenSSH, which runs `allgo-shell -c /usr/lib/openssh/sftp-server`).
  r = run({"scp", "-P", p}, {tmp_ / "payload", "sleep@127.0.0.1:" + shared_ + "/payload"});
  EXPECT_EQ(r.exit_code, 0) << r.err << sshd.Log();
  EXPECT_EQ(ReadFile(shared_ + "/payload"), "through stock OpenSSH\n");
  if (!debian()) {
    r = run({"scp", "-O", "-P", p}, {tmp_ / "payload", "sleep@127.0.0.1:" + shared_ + "/legacy"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr("the sandbox has no scp")) << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Images, SshdDockerTest, ::testing::Values(Image::kDebian, Image::kBusybox), ImageName);

}  // namespace
}  // namespace allgo::test
