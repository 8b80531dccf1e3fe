#include "sshd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace allgo::test {

SshdServer::SshdServer(const std::string& sshd_extra, const std::string& extra_sections,
                       const std::string& login_shell, const std::string& mysql_section)
    : dir_("allgo-sshd-test") {
  chmod(dir_.path().c_str(), 0755);
  port_ = FreeLoopbackPort();
  log_path_ = dir_ / "sshd.log";
  std::string host_key = dir_ / "host_ed25519";
  RunResult keygen = Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key});
  EXPECT_EQ(keygen.exit_code, 0) << keygen.err;
  std::string mysql = mysql_section.empty() ? TestDatabase::Get().MysqlConfigSection() : mysql_section;
  std::string config = mysql + "[nss]\nshell = " + login_shell + "\n"
      "[sshd]\nlisten = 127.0.0.1:" + std::to_string(port_) + "\nhost_key = " + host_key +
      "\nprivsep_chroot = " + chroot_dir() + "\nlog_level = debug\n" + sshd_extra + "\n" + extra_sections;
  WriteAllgoConfig(config);

  daemon_ = std::make_unique<Daemon>(
      std::vector<std::string>{Artifact("allgo-sshd"), "--config", AllgoConfigPath()}, log_path_);
  if (!WaitForTcpPort(port_, 10000) || !WaitForLog("ready", 10000)) {
    ADD_FAILURE() << "allgo-sshd did not start:\n" << log();
  }
}

SshdServer::~SshdServer() { Stop(); }

int SshdServer::Stop() {
  if (!daemon_) return -1;
  if (daemon_->Running()) {
    kill(daemon_->pid(), SIGTERM);
    for (int i = 0; i < 100 && daemon_->Running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int code = daemon_->Stop(SIGTERM, 10000);
  daemon_.reset();
  return code;
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
  // `extra` first: for ssh the first value of an option wins (e.g. a LogLevel override).
  std::vector<std::string> argv = {"ssh"};
  for (const auto& o : extra) argv.push_back(o);
  for (const auto& o : ClientOptions(key)) argv.push_back(o);
  argv.push_back("-p");
  argv.push_back(std::to_string(port_));
  argv.push_back(user + "@127.0.0.1");
  if (!command.empty()) argv.push_back(command);
  return Run(argv, options);
}

std::string SshdServer::SshCommandLine(const std::string& key, const std::vector<std::string>& extra) const {
  std::string line = "ssh";
  for (const auto& o : extra) line += " " + ShellQuote(o);
  for (const auto& o : ClientOptions(key)) line += " " + ShellQuote(o);
  line += " -p " + std::to_string(port_);
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
      size_t e = v.find_last_not_of(" \t");
      return b == std::string::npos ? "" : v.substr(b, e - b + 1);
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

void SshdBridgeFixture::SetUpFrontend() {
  TestDatabase& db = TestDatabase::Get();
  db.Clear();
  key_ = MakeKeyPair(tmp_.path(), "owner");
  owner_ = db.AddUser("owner@example.org");
  db.AddKey(owner_, key_.public_line);
  uid_ = db.AddWebapp("sleep", owner_) + 2000;
  chmod(tmp_.path().c_str(), 0755);
  sandboxes_ = tmp_ / "sandboxes";
  sandboxes_mount_ = std::make_unique<SandboxesMount>(sandboxes_);  // nosuid,nodev,noexec
  bridge_ = sandboxes_ + "/sleep";
  shared_ = tmp_ / "shared";  // visible inside and outside the sandbox
  std::filesystem::create_directories(bridge_);
  std::filesystem::create_directories(shared_);
  // As the allgo controller prepares it: the webapp's bridge folder, owned by its uid.
  ASSERT_EQ(chown(bridge_.c_str(), uid_, 65534), 0);
  chmod(bridge_.c_str(), 0755);
  chmod(shared_.c_str(), 0777);
  StartServer();
}

void SshdBridgeFixture::StartServer(const std::string& sshd_extra, const std::string& extra_sections) {
  server_.reset();
  server_ = std::make_unique<SshdServer>(
      sshd_extra, "[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 3\n" + extra_sections, Artifact("allgo-shell"));
}

RunResult SshdBridgeFixture::Ssh(const std::string& command, const std::vector<std::string>& extra, RunOptions options) {
  if (options.timeout_seconds == 60) options.timeout_seconds = 90;
  return server_->Ssh("sleep", key_.private_path, command, extra, options);
}

std::string ExpectSftpAndScpRoundTrip(const SshdServer& server, const std::string& key, const std::string& user,
                                      const std::string& local_dir, const std::string& remote_dir) {
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  const std::string local = local_dir + "/sftp-src.bin", remote = remote_dir + "/" + user;
  WriteFile(local, payload);
  const std::string port = std::to_string(server.port()), host = user + "@127.0.0.1";
  auto tool = [&](std::vector<std::string> argv, const std::vector<std::string>& tail) {
    std::vector<std::string> opts = server.ClientOptions(key);
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), tail.begin(), tail.end());
    return Run(argv, {.timeout_seconds = 90});
  };
  WriteFile(local_dir + "/sftp-batch", "put " + local + " " + remote + ".sftp\nls -l " + remote + ".sftp\nget " +
                                           remote + ".sftp " + local + ".sftp-back\nget /proc/self/cmdline " +
                                           local + ".cmdline\n");
  RunResult r = tool({"sftp", "-b", local_dir + "/sftp-batch", "-P", port}, {host});
  EXPECT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_NE(r.out.find("1048576"), std::string::npos) << "ls -l shows the size: " << r.out;
  EXPECT_TRUE(ReadFile(remote + ".sftp") == payload) << "sftp put";
  EXPECT_TRUE(ReadFile(local + ".sftp-back") == payload) << "sftp get";
  r = tool({"scp", "-P", port}, {local, host + ":" + remote + ".scp"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ReadFile(remote + ".scp") == payload) << "scp up";
  r = tool({"scp", "-P", port}, {host + ":" + remote + ".scp", local + ".scp-back"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ReadFile(local + ".scp-back") == payload) << "scp down";
  std::string cmdline = ReadFile(local + ".cmdline");
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
  return cmdline;
}

TmuxTerminal::TmuxTerminal(const std::string& socket, const std::string& command, int cols, int rows)
    : tmux_("TERM=xterm tmux -S " + socket + " ") {
  started_ = Sh(tmux_ + "new-session -d -x " + std::to_string(cols) + " -y " + std::to_string(rows) + " " +
                ShellQuote(command)).exit_code == 0;
}

TmuxTerminal::~TmuxTerminal() { Sh(tmux_ + "kill-server"); }

void TmuxTerminal::Type(const std::string& line) { Sh(tmux_ + "send-keys " + ShellQuote(line) + " Enter"); }

void TmuxTerminal::Keys(const std::string& keys) { Sh(tmux_ + "send-keys " + ShellQuote(keys)); }

std::string TmuxTerminal::Screen() const { return Sh(tmux_ + "capture-pane -p").out; }

bool TmuxTerminal::Shows(const std::string& needle, int timeout_ms) const {
  return WaitFor([&] { return Screen().find(needle) != std::string::npos; }, timeout_ms);
}

void TmuxTerminal::Resize(int cols, int rows) {
  Sh(tmux_ + "resize-window -x " + std::to_string(cols) + " -y " + std::to_string(rows));
}

bool TmuxTerminal::WaitClosed(int timeout_ms) const {
  return WaitFor([&] { return Sh(tmux_ + "has-session").exit_code != 0; }, timeout_ms);
}

}  // namespace allgo::test
