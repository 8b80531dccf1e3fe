// The README's main command, run the way a newcomer would, minus the terminal: start the demo,
// log in with the printed command, copy a file, press Ctrl-C, check nothing is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <regex>
#include <thread>

#include "test_support.h"

namespace allgo::test {
namespace {

bool WaitForText(Daemon& d, const std::string& text, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (d.Log().find(text) != std::string::npos) return true;
    if (!d.Running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST(Demo, StartsLogsInCopiesAndCleansUpOnCtrlC) {
  TempDir home("allgo-demo-home");
  int port = FreeLoopbackPort();
  Daemon demo({Artifact("allgo-demo"), "--port", std::to_string(port), "--metrics-port",
               std::to_string(FreeLoopbackPort())},
              home / "demo.log",
              {{"HOME", home.path()}});
  ASSERT_TRUE(WaitForText(demo, "demo: ready", 120000)) << demo.Log();
  std::string log = demo.Log();
  // The caller had no key: the demo made one, and prints the exact command to use it.
  ASSERT_EQ(access((home / ".ssh/id_ed25519").c_str(), R_OK), 0) << log;
  std::smatch m;
  std::regex ssh_line("ssh -p " + std::to_string(port) + " (-o [^\\n]*?) sleep@127\\.0\\.0\\.1 ");
  ASSERT_TRUE(std::regex_search(log, m, ssh_line)) << log;
  std::string printed_options = m[1];
  EXPECT_NE(printed_options.find(home / ".ssh/id_ed25519"), std::string::npos) << printed_options;

  std::vector<std::string> ssh = {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                                  "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                                  "-o", "LogLevel=ERROR", "-i", home / ".ssh/id_ed25519",
                                  "-p", std::to_string(port), "sleep@127.0.0.1"};
  auto with = [&](std::vector<std::string> argv, const std::string& cmd) {
    argv.push_back(cmd);
    return test::Run(argv, {.timeout_seconds = 60});
  };
  // Inside the sandbox: its own uts namespace says "sleep".
  RunResult r = with(ssh, "uname -n");
  EXPECT_EQ(r.exit_code, 0) << r.err << demo.Log();
  EXPECT_EQ(r.out, "sleep\n") << r.err;

  WriteFile(home / "hello.txt", "hello from the demo test\n");
  r = test::Run({"scp", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                 "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                 "-i", home / ".ssh/id_ed25519", "-P", std::to_string(port), home / "hello.txt",
                 "sleep@127.0.0.1:/tmp/hello.txt"},
                {.timeout_seconds = 60});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = with(ssh, "cat /tmp/hello.txt");
  EXPECT_EQ(r.out, "hello from the demo test\n") << r.err;

  // The audit log the demo names has our login in it.
  std::regex audit_line("Audit log: (/tmp/allgo-demo-[A-Za-z0-9]+)/audit.log");
  ASSERT_TRUE(std::regex_search(log, m, audit_line)) << log;
  std::string workdir = m[1];
  EXPECT_NE(ReadFile(workdir + "/audit.log").find("\"result\":\"success\""), std::string::npos);

  // Ctrl-C: everything stops and the temporary files are gone.
  EXPECT_EQ(demo.Stop(SIGINT, 60000), 0) << demo.Log();
  EXPECT_NE(demo.Log().find("demo: stopped"), std::string::npos) << demo.Log();
  struct stat st;
  EXPECT_NE(stat(workdir.c_str(), &st), 0) << workdir << " left behind";
  EXPECT_FALSE(WaitForTcpPort(port, 500)) << "allgo-sshd still listening";
}

}  // namespace
}  // namespace allgo::test
