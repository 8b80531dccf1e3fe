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

#include "client_flows.h"
#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// The sessions run as the agent's uid, root in this sandbox (as in a default container).
constexpr const char* kPrivateHome = "/tmp/allgo-home-0";

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

  // What the developer flows (client_flows.h) need of this sandbox.
  ClientTarget Target() const {
    return ClientTarget{.server = server_.get(), .key = key_.private_path, .user = "sleep", .local_dir = tmp_.path(),
                        .shared_dir = shared_, .context = [this] { return server_->log() + agent_->Log(); }};
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
  ASSERT_EQ(MissingPackages({kWebsocketClient, kWebsocketServer}), "");
  ExpectVsCodeLikeFlowThroughSocks(Target());
}

// Jupyter, the way its users reach it: the notebook server started in the sandbox over ssh
// (its runtime files in the writable home), `ssh -L` to it, then Jupyter's own protocol
// through the forward: a kernel made with the REST API runs `print(6*7)` sent on the
// kernel's WebSocket, and "42" comes back on it.
TEST_F(SshdDevtoolsTest, JupyterKernelRunsCodeOverItsWebSocketThroughLocalForward) {
  ASSERT_EQ(MissingPackages({kWebsocketClient, kJupyterNotebook}), "");
  ExpectJupyterKernelRunsCodeThroughLocalForward(Target());
}

}  // namespace
}  // namespace allgo::test
