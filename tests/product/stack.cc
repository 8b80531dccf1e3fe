#include "stack.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace allgo::test {
namespace {

std::vector<pid_t> Children(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t child;
  while (f >> child) out.push_back(child);
  return out;
}

long RssKib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace

Stack::Stack(const std::string& sshd_extra) {
  auto& db = TestDatabase::Get();
  db.Start();
  db.Clear();
  key_ = MakeKeyPair(dir_.path(), "owner");
  uint32_t owner = db.AddUser("owner@example.org");
  db.AddKey(owner, key_.public_line);
  uint32_t id = db.AddWebapp("sleep", owner, "running", "Sleep");
  const std::string& sandboxes = sandboxes_.path();
  bridge_ = sandboxes + "/sleep";
  fs::create_directories(bridge_);
  EXPECT_EQ(chown(bridge_.c_str(), 2000 + id, 65534), 0);
  chmod(bridge_.c_str(), 0755);
  std::string host_key = dir_ / "host_key";
  EXPECT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key}).exit_code, 0);
  port_ = FreeLoopbackPort();
  metrics_port_ = FreeLoopbackPort();
  WriteAllgoConfig(db.ConfigText(
      "[nss]\nshell = " + Artifact("allgo-shell") + "\n[sandbox]\ndir = " + sandboxes +
      "\nstart_wait = 3\n[sshd]\nlisten = 127.0.0.1:" + std::to_string(port_) + "\nhost_key = " +
      host_key + "\nprivsep_chroot = " + (dir_ / "empty") + "\naudit_log = " + audit_path() +
      "\nmetrics_listen = 127.0.0.1:" + std::to_string(metrics_port_) + "\n" + sshd_extra + "\n"));
  StartSandbox();
  EXPECT_TRUE(RestartSshd()) << SshdLog();
}

bool Stack::RestartSshd() {
  sshd_ = std::make_unique<Daemon>(
      std::vector<std::string>{Artifact("allgo-sshd"), "--config", AllgoConfigPath()},
      dir_ / "sshd.log");
  return WaitForTcpPort(port_, 10000);
}

Stack::~Stack() {
  if (sshd_) sshd_->Stop(SIGTERM, 5000);
  StopSandbox();
}

void Stack::StartSandbox() {
  sandbox_ = std::make_unique<Daemon>(
      SandboxCommand(bridge_, {.hostname = "sleep"}),
      dir_ / "sandbox.log");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (access((bridge_ + "/agent.sock").c_str(), F_OK) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(access((bridge_ + "/agent.sock").c_str(), F_OK), 0) << sandbox_->Log();
}

void Stack::StopSandbox() {
  if (sandbox_) sandbox_->Stop(SIGTERM, 5000);
  sandbox_.reset();
}

std::vector<std::string> Stack::SshArgv(const std::string& command, const std::string& user) const {
  return {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
          "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
          "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-i", key_.private_path, "-p",
          std::to_string(port_), user + "@127.0.0.1", command};
}

RunResult Stack::Ssh(const std::string& command, RunOptions options) const {
  if (options.timeout_seconds == 60) options.timeout_seconds = 30;
  return test::Run(SshArgv(command), options);
}

std::string Stack::SshLine() const {
  std::string line;
  std::vector<std::string> argv = SshArgv("");
  argv.pop_back();
  for (const std::string& a : argv) line += "'" + a + "' ";
  return line;
}

std::vector<pid_t> Stack::ServerProcesses() const {
  std::vector<pid_t> all;
  if (!sshd_ || sshd_->pid() <= 0) return all;
  std::vector<pid_t> todo = {sshd_->pid()};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    all.push_back(p);
    for (pid_t c : Children(p)) todo.push_back(c);
  }
  return all;
}

long Stack::ServerRssKib() const {
  long total = 0;
  for (pid_t p : ServerProcesses()) total += RssKib(p);
  return total;
}

}  // namespace allgo::test
