// The stdio mode of the bridge end to end (docs/protocol.md "Stdio mode"): the static
// allgo-sandbox-agent --stdio inside a bubblewrap sandbox (own pid, ipc and uts namespaces,
// as tests/support SandboxCommand makes it), its stdin and stdout one end of a socketpair,
// and allgo-shell's RunStdioSession on the other end (allgo-stdio-client, standing in for
// the sandbox gateway of issue 11 that will relay a Docker exec's stream).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "allgo/bridge/protocol.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
namespace bridge = allgo::bridge;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class BridgeStdio : public ::testing::Test {
 protected:
  void SetUp() override {
    mark_ = tmp_ / "mark";
    fs::create_directories(mark_);
    fs::create_directories(tmp_ / "bridge");
    chmod(mark_.c_str(), 0777);
  }

  // The sandbox as the controller makes it, serving one session on stdin/stdout instead of
  // a bridge folder.
  // outlive_client: without bwrap's --die-with-parent, so the sandbox outlives its client as a
  // container outlives the gateway's connection (the agent still ends with its stream).
  std::vector<std::string> AgentArgv(bool outlive_client = false) const {
    std::vector<std::string> argv = SandboxCommand(tmp_ / "bridge", {.binds = {mark_}});
    if (outlive_client) std::erase(argv, std::string("--die-with-parent"));
    // SandboxCommand ends with `--bridge-dir DIR`, which --stdio does not take.
    EXPECT_EQ(argv[argv.size() - 2], "--bridge-dir");
    argv.resize(argv.size() - 2);
    argv.push_back("--stdio");
    return argv;
  }
  std::vector<std::string> ClientArgv(const std::string& command, bool outlive_client = false) const {
    std::vector<std::string> argv = {Artifact("allgo-stdio-client")};
    if (!command.empty()) argv.insert(argv.end(), {"-c", command});
    argv.push_back("--");
    for (const std::string& a : AgentArgv(outlive_client)) argv.push_back(a);
    return argv;
  }
  std::string ClientLine(const std::string& command, bool outlive_client = false) const {
    std::string line;
    for (const std::string& a : ClientArgv(command, outlive_client)) line += Quote(a) + " ";
    return line;
  }
  RunResult Stdio(const std::string& command, RunOptions options = {}) const {
    return test::Run(ClientArgv(command), options);
  }

  TempDir tmp_{"allgo-stdio"};
  std::string mark_;
};

TEST_F(BridgeStdio, CommandsRunInTheSandboxWithTheirExitCodes) {
  RunResult r = Stdio("echo hello from $(hostname); echo oops >&2; exit 7");
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out.rfind("hello from ", 0), 0u) << r.out;
  EXPECT_TRUE(Contains(r.err, "oops\n")) << r.err;
  EXPECT_FALSE(Contains(r.out, "oops")) << "stderr stays apart from stdout";
  EXPECT_EQ(Stdio("true").exit_code, 0);
  // The sandbox's own pid namespace: pid 1 is bubblewrap, not a frontend process.
  r = Stdio("cat /proc/1/cmdline | tr '\\0' ' '");
  EXPECT_TRUE(Contains(r.out, "bwrap")) << r.out;
  // Killed by a signal: 128 + N, like a local shell and like the fifo bridge.
  EXPECT_EQ(Stdio("kill -TERM $$").exit_code, 143);
  EXPECT_EQ(Stdio("kill -KILL $$").exit_code, 137);
  EXPECT_EQ(Stdio("exit 255").exit_code, 255);
  // The same environment allow-list as the fifo bridge.
  RunOptions env;
  env.env = {{"LANG", "C.UTF-8"}, {"LC_TIME", "C"}, {"SECRET_TOKEN", "leak"}};
  r = Stdio("echo \"$LANG|$LC_TIME|$SECRET_TOKEN\"", env);
  EXPECT_EQ(r.out, "C.UTF-8|C|\n");
  // A command the sandbox does not have: the shell's answer, status 127.
  r = Stdio("no-such-command-here");
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_TRUE(Contains(r.err, "not found")) << r.err;
}

TEST_F(BridgeStdio, StdinEofReachesTheCommand) {
  RunOptions in;
  in.stdin_data = "abc";
  in.timeout_seconds = 20;
  RunResult r = Stdio("cat", in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "abc");
  EXPECT_EQ(Stdio("wc -c", in).out, "3\n");
  // No input at all: EOF at once, not a hang.
  RunOptions none;
  none.timeout_seconds = 20;
  EXPECT_EQ(Stdio("wc -c", none).out, "0\n");
  // A command that stops reading early still ends, with its own status.
  r = test::Sh("head -c 3M /dev/zero | " + ClientLine("head -c 10 >/dev/null; exit 6"));
  EXPECT_EQ(r.exit_code, 6) << r.err;
}

TEST_F(BridgeStdio, BinaryDataOfSeveralMegabytesRoundTripsUnchanged) {
  std::string in = tmp_ / "in.bin";
  ASSERT_EQ(test::Sh("head -c 12M /dev/urandom > " + in).exit_code, 0);
  RunOptions o;
  o.timeout_seconds = 120;
  RunResult r = test::Sh(ClientLine("cat") + " < " + in + " | sha256sum", o);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 64), test::Run({"sha256sum", in}).out.substr(0, 64));
  r = test::Sh(ClientLine("wc -c") + " < " + in, o);
  EXPECT_EQ(r.out, std::to_string(12 << 20) + "\n");
  // Every byte value on stdout and stderr at once, kept apart.
  r = Stdio("printf 'o\\000\\377\\n'; printf 'e\\000\\001' >&2; exit 4");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.out, std::string("o\0\377\n", 4));
  EXPECT_TRUE(Contains(r.err, std::string("e\0\1", 3))) << r.err;
}

TEST_F(BridgeStdio, InteractiveSessionInTmuxFollowsResizeAndCtrlC) {
  std::string sock = tmp_ / "tmux.sock";
  std::string tmux = "tmux -f /dev/null -S " + sock + " ";
  std::string script = tmp_ / "inner.sh";
  {
    std::string inner = "exec 2>" + mark_ + "/stderr\nstty -g > " + mark_ + "/before\n" + ClientLine("") + "\necho $? > " + mark_ +
                        "/status\nstty -g > " + mark_ + "/after\n";
    ASSERT_EQ(test::Sh("cat > " + script + " <<'EOF'\n" + inner + "EOF\n").exit_code, 0);
  }
  ASSERT_EQ(test::Sh(tmux + "new-session -d -s t -x 100 -y 30 'sh " + script + "'").exit_code, 0);
  auto pane = [&] { return test::Sh(tmux + "capture-pane -p -t t").out; };
  auto type = [&](const std::string& keys) { test::Sh(tmux + "send-keys -t t " + keys); };
  type("'stty size' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "30 100"); }, 10000)) << pane() << ReadFile(mark_ + "/stderr");
  // A real pty in the sandbox, with the requested TERM.
  type("'tty; echo term=$TERM' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "/dev/pts/"); }, 10000)) << pane();
  ASSERT_EQ(test::Sh(tmux + "resize-window -t t -x 120 -y 40").exit_code, 0);
  type("'stty size' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "40 120"); }, 10000)) << pane();
  // Ctrl-C interrupts the sandbox's foreground process, not the session.
  type("'sleep 100' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "sleep 100"); }, 5000));
  type("C-c");
  type("'echo rc=$?' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "rc=130"); }, 10000)) << pane();
  type("'exit 5' Enter");
  // The shell's redirection creates the file before stty writes its line: wait for the line.
  EXPECT_TRUE(WaitFor([&] { return Contains(ReadFile(mark_ + "/after"), "\n"); }, 10000)) << pane();
  EXPECT_EQ(ReadFile(mark_ + "/status"), "5\n");
  // The local terminal is restored.
  EXPECT_EQ(ReadFile(mark_ + "/before"), ReadFile(mark_ + "/after"));
  test::Sh(tmux + "kill-server");
}

TEST_F(BridgeStdio, SignalsAreRelayedToTheSandboxProcess) {
  // The client's own pid, from the shell that execs it.
  std::string pidfile = tmp_ / "client.pid";
  auto run = std::async(std::launch::async, [&] {
    RunOptions o;
    o.timeout_seconds = 30;
    return test::Sh("echo $$ > " + pidfile + "; exec " +
                        ClientLine("trap 'echo term > " + mark_ + "/term; exit 3' TERM; touch " + mark_ +
                                   "/started; while :; do sleep 0.1; done"),
                    o);
  });
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000));
  pid_t client = std::stoi(ReadFile(pidfile));
  ASSERT_GT(client, 0);
  kill(client, SIGTERM);
  RunResult r = run.get();
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(ReadFile(mark_ + "/term"), "term\n");
}

TEST_F(BridgeStdio, ClientGoneHangsUpTheSandboxProcess) {
  std::string pidfile = tmp_ / "client.pid";
  auto run = std::async(std::launch::async, [&] {
    RunOptions o;
    o.timeout_seconds = 30;
    return test::Sh("echo $$ > " + pidfile + "; exec " +
                        // stderr to /dev/null: once the client is gone, dash reporting the killed
                        // `sleep` on it would end the shell with SIGPIPE before the trap ran.
                        ClientLine("exec 2>/dev/null; trap 'echo hup > " + mark_ + "/hup; exit 1' HUP; touch " + mark_ +
                                   "/started; while :; do sleep 0.1; done",
                                   true),
                    o);
  });
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000));
  // Killed outright: nothing relayed, the stream simply closes.
  kill(std::stoi(ReadFile(pidfile)), SIGKILL);
  run.get();
  EXPECT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/hup"); }, 10000)) << "the agent hung the process up";
}

TEST_F(BridgeStdio, AgentRefusesWhatIsNotAStdioSession) {
  // A socket-mode request on the stdio stream: one `error` naming the versions, exit 1.
  bridge::Open socket_open;
  socket_open.command = "true";
  RunOptions o;
  o.stdin_data = bridge::EncodeFrame(socket_open);
  o.timeout_seconds = 20;
  RunResult r = test::Run(AgentArgv(), o);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  bridge::FrameReader reader(bridge::Mode::kStdio);
  reader.Append(r.out);
  bridge::Message m;
  std::string error;
  ASSERT_EQ(reader.Next(&m, &error), bridge::FrameReader::Result::kMessage) << error;
  auto* refused = std::get_if<bridge::Error>(&m);
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->text, "protocol error: open: unsupported protocol version 1 (this side speaks 2, the stdio mode)");
  // Garbage: a frame length out of bounds.
  o.stdin_data = std::string("\xff\xff\xff\xff", 4);
  r = test::Run(AgentArgv(), o);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.out, "frame length")) << r.out;
}

}  // namespace
}  // namespace allgo::test
