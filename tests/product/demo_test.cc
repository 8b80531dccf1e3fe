// The README's main command, run the way a newcomer would, minus the terminal: start the demo,
// log in with the printed command, copy a file, press Ctrl-C, check nothing is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <filesystem>

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

// The clone as a newcomer may have it, in a mode-0700 folder (root's home is one): within the
// test's private mount namespace, the source folder (the build is inside) becomes a 0700
// tmpfs holding bind mounts of its entries. Root still reaches everything; a webapp's uid
// reaches nothing under it, so anything the sessions run from the clone fails.
class CloneInPrivateFolder {
 public:
  CloneInPrivateFolder() {
    std::string src = SourceDir();
    side_ = side_dir_ / "src";
    std::filesystem::create_directories(side_);
    ok_ = mount(src.c_str(), side_.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0 &&
          mount("tmpfs", src.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") == 0;
    if (!ok_) return;
    mounted_ = src;
    for (const auto& entry : std::filesystem::directory_iterator(side_)) {
      std::string target = src + "/" + entry.path().filename().string();
      if (entry.is_directory()) {
        std::filesystem::create_directory(target);
      } else {
        WriteFile(target, "");
      }
      ok_ &= mount(entry.path().c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0;
    }
  }
  ~CloneInPrivateFolder() {
    if (!mounted_.empty()) umount2(mounted_.c_str(), MNT_DETACH);
    umount2(side_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }

 private:
  TempDir side_dir_{"allgo-demo-clone"};
  std::string side_, mounted_;
  bool ok_ = false;
};

TEST(Demo, StartsLogsInCopiesAndCleansUpOnCtrlC) {
  CloneInPrivateFolder clone;
  ASSERT_TRUE(clone.ok()) << strerror(errno);
  struct stat src_st;
  ASSERT_EQ(stat(SourceDir().c_str(), &src_st), 0);
  ASSERT_EQ(src_st.st_mode & 0777, 0700u);
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
  // Where Docker is installed the demo lands in a Debian 12 container, else it says why not.
  std::string docker_dir;
  if (access("/usr/sbin/dockerd", X_OK) == 0) {
    EXPECT_NE(log.find("Its sandbox is a Docker container (Debian 12 image"), std::string::npos) << log;
    r = with(ssh, "grep PRETTY_NAME /etc/os-release; echo $HOME");
    EXPECT_EQ(r.out, "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n/root\n") << r.err;
    std::regex engine_line("demo: Docker engine in (/tmp/allgo-docker\\.[A-Za-z0-9]+)");
    ASSERT_TRUE(std::regex_search(log, m, engine_line)) << log;
    docker_dir = m[1];
  } else {
    EXPECT_NE(log.find("demo: Docker cannot run here ("), std::string::npos) << log;
  }

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
  if (!docker_dir.empty()) {
    EXPECT_NE(stat(docker_dir.c_str(), &st), 0) << docker_dir << " left behind";
  }
  EXPECT_FALSE(WaitForTcpPort(port, 500)) << "allgo-sshd still listening";
}

}  // namespace
}  // namespace allgo::test
