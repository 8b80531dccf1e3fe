// sftp in every image (issue 19): the toolbox that carries the static agent into every sandbox
// also carries a static sftp-server (OpenSSH's, scripts/build-sftp-server). Through the whole
// path (OpenSSH's sftp and scp, allgo-sshd, allgo-shell, the agent in a bubblewrap sandbox):
// a sandbox without an sftp-server gets the toolbox's, one with its own keeps it, and a toolbox
// server that others could have replaced is refused with one line. The Docker backends are in
// sshd_docker_test (busybox image) and sshd_gateway_test.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kImageSftpServer = "/usr/lib/openssh/sftp-server";  // [sshd] sftp_server's default

class SshdSftpTest : public SshdBridgeFixture {
 protected:
  SshdSftpTest() : SshdBridgeFixture("allgo-sshd-sftp") {}

  void SetUp() override {
    SetUpFrontend();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(fs::exists(Artifact("allgo-sftp-server")))
        << "the build has no static sftp server: run scripts/build-sftp-server (as root), then cmake again";
  }

  void TearDown() override {
    server_.reset();
    StopSandbox();
  }

  // The webapp's sandbox; `hide_image_server`: its root has no /usr/lib/openssh (a tmpfs over
  // it), like an image without openssh-sftp-server.
  void StartSandbox(bool hide_image_server, const std::string& toolbox = "") {
    StopSandbox();
    SandboxOptions options{.toolbox = toolbox, .binds = {shared_}};
    if (hide_image_server) options.bwrap_extra = {"--tmpfs", "/usr/lib/openssh"};
    agent_ = std::make_unique<Daemon>(SandboxCommand(bridge_, options), tmp_ / "agent.log");
    ASSERT_TRUE(WaitFor([&] { return agent_->Log().find("listening on") != std::string::npos; }, 10000))
        << agent_->Log();
  }
  void StopSandbox() {
    if (agent_) agent_->Stop(SIGTERM, 5000);
    agent_.reset();
  }

  // A toolbox folder of the test's making: the agent, and `make_sftp_server` puts (or not)
  // an allgo-sftp-server next to it.
  std::string MakeToolbox(const std::string& name, const std::function<void(const std::string&)>& make_sftp_server) {
    std::string dir = tmp_ / name;
    fs::create_directories(dir);
    chmod(dir.c_str(), 0755);
    fs::copy_file(Artifact("allgo-sandbox-agent"), dir + "/allgo-sandbox-agent");
    chmod((dir + "/allgo-sandbox-agent").c_str(), 0755);
    make_sftp_server(dir + "/allgo-sftp-server");
    return dir;
  }

  // sftp or scp (argv) with the test's client options, then `tail`.
  RunResult Client(std::vector<std::string> argv, const std::vector<std::string>& tail) {
    std::vector<std::string> opts = server_->ClientOptions(key_.private_path);
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return test::Run(argv, {.timeout_seconds = 90});
  }

  std::unique_ptr<Daemon> agent_;
};

TEST_F(SshdSftpTest, ASandboxWithoutSftpServerGetsTheToolboxOne) {
  StartSandbox(true);
  ASSERT_EQ(Ssh(std::string("test -e ") + kImageSftpServer + " || echo absent").out, "absent\n");
  std::string ran = ExpectSftpAndScpRoundTrip(*server_, key_.private_path, "sleep", tmp_.path(), shared_);
  EXPECT_EQ(ran, Artifact("allgo-sftp-server"));
  EXPECT_THAT(agent_->Log(), HasSubstr(std::string("the sandbox has no ") + kImageSftpServer +
                                       ": running the toolbox's " + Artifact("allgo-sftp-server")));
  EXPECT_TRUE(server_->WaitForLog("kind=subsystem sftp status=0")) << server_->log();
}

TEST_F(SshdSftpTest, TheSandboxesOwnSftpServerIsPreferred) {
  StartSandbox(false);
  std::string ran = ExpectSftpAndScpRoundTrip(*server_, key_.private_path, "sleep", tmp_.path(), shared_);
  EXPECT_EQ(ran, kImageSftpServer);
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("running the toolbox's")));
}

TEST_F(SshdSftpTest, AToolboxSftpServerOthersCouldReplaceIsRefusedOnOneLine) {
  const std::string real = Artifact("allgo-sftp-server");
  auto copy = [&](const std::string& to, mode_t mode) {
    fs::copy_file(real, to);
    chmod(to.c_str(), mode);
  };
  struct Case {
    const char* name;
    std::function<void(const std::string&)> make;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"group-writable", [&](const std::string& to) { copy(to, 0775); },
       "has mode 0775: it must not be writable by group or others; refusing it"},
      {"world-writable", [&](const std::string& to) { copy(to, 0757); },
       "has mode 0757: it must not be writable by group or others; refusing it"},
      {"symlink", [&](const std::string& to) { fs::create_symlink(real, to); },
       "is a symlink, not a regular file; refusing it"},
      {"not-root", [&](const std::string& to) { copy(to, 0755); ASSERT_EQ(chown(to.c_str(), 4321, 4321), 0); },
       "belongs to uid 4321, not to uid 0; refusing it"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string toolbox = MakeToolbox(c.name, c.make);
    StartSandbox(true, toolbox);
    if (HasFatalFailure()) return;
    WriteFile(tmp_ / "batch", "put " + (tmp_ / "batch") + " " + shared_ + "/refused\n");
    RunResult r = Client({"sftp", "-b", tmp_ / "batch", "-P", std::to_string(server_->port())}, {"sleep@127.0.0.1"});
    const std::string line = std::string("the sandbox has no sftp-server (") + kImageSftpServer +
                             ") and the toolbox's " + toolbox + "/allgo-sftp-server " + c.why + "\n";
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr(line)) << r.err;
    EXPECT_FALSE(fs::exists(shared_ + "/refused"));
    EXPECT_THAT(agent_->Log(), HasSubstr(toolbox + "/allgo-sftp-server " + c.why));
  }
}

TEST_F(SshdSftpTest, NeitherTheSandboxNorTheToolboxHasOneSaysWhatTheImageNeeds) {
  StartSandbox(true, MakeToolbox("agent-only", [](const std::string&) {}));
  WriteFile(tmp_ / "file", "data");
  RunResult r = Client({"scp", "-P", std::to_string(server_->port())}, {tmp_ / "file", "sleep@127.0.0.1:" + shared_ + "/none"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(std::string("the sandbox has no sftp-server (") + kImageSftpServer +
                               "): sftp and scp need the openssh-sftp-server package in the webapp's image"))
      << r.err;
}

}  // namespace
}  // namespace allgo::test
