#include "sshd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace allgo::test {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

namespace {

bool PortAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

}  // namespace

SshdServer::SshdServer(const std::string& sshd_extra, const std::string& extra_sections)
    : dir_("allgo-sshd-test") {
  chmod(dir_.path().c_str(), 0755);
  port_ = FreePort();
  log_path_ = dir_ / "sshd.log";
  std::string host_key = dir_ / "host_ed25519";
  RunResult keygen = Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key});
  EXPECT_EQ(keygen.exit_code, 0) << keygen.err;
  std::string config = TestDatabase::Get().ConfigText(
      "[nss]\nshell = /bin/sh\n"
      "[sshd]\nlisten = 127.0.0.1:" + std::to_string(port_) + "\nhost_key = " + host_key +
      "\nprivsep_chroot = " + chroot_dir() + "\nlog_level = debug\n" + sshd_extra + "\n" + extra_sections);
  WriteAllgoConfig(config);

  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::string bin = Artifact("allgo-sshd");
    execl(bin.c_str(), bin.c_str(), "--config", AllgoConfigPath(), static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (PortAccepts(port_) && log().find("ready") != std::string::npos) return;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "allgo-sshd exited at start-up:\n" << log();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "allgo-sshd did not start listening:\n" << log();
}

SshdServer::~SshdServer() { Stop(); }

int SshdServer::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool second = false;
  while (true) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    if (!second && std::chrono::steady_clock::now() > deadline - std::chrono::seconds(7)) {
      kill(pid_, SIGTERM);  // second SIGTERM: end running sessions too
      second = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string SshdServer::log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool SshdServer::WaitForLog(const std::string& needle, int timeout_ms) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return log().find(needle) != std::string::npos;
}

std::vector<std::string> SshdServer::ClientOptions(const std::string& key) const {
  return {"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
          "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
          "-o", "ConnectTimeout=10", "-i", key};
}

RunResult SshdServer::Ssh(const std::string& user, const std::string& key, const std::string& command,
                          const std::vector<std::string>& extra, const RunOptions& options) const {
  std::vector<std::string> argv = {"ssh"};
  for (const auto& o : ClientOptions(key)) argv.push_back(o);
  argv.push_back("-p");
  argv.push_back(std::to_string(port_));
  for (const auto& o : extra) argv.push_back(o);
  argv.push_back(user + "@127.0.0.1");
  if (!command.empty()) argv.push_back(command);
  return Run(argv, options);
}

std::string SshdServer::SshCommandLine(const std::string& key, const std::vector<std::string>& extra) const {
  std::string line = "ssh";
  for (const auto& o : ClientOptions(key)) line += " " + ShellQuote(o);
  line += " -p " + std::to_string(port_);
  for (const auto& o : extra) line += " " + ShellQuote(o);
  return line;
}

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  pid_t child;
  while (f >> child) out.push_back(child);
  return out;
}

std::string ProcStatusField(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::string v = line.substr(field.size() + 1);
      size_t b = v.find_first_not_of(" \t");
      return b == std::string::npos ? "" : v.substr(b);
    }
  }
  return "";
}

std::string ShellQuote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace allgo::test
