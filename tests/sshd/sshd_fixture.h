// Test helpers for allgo-sshd: a server started as a child of the test on a free loopback
// port (config written to /etc/allgo/allgo-ssh.conf inside the private NSS namespace), and
// the real OpenSSH client tools pointed at it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "test_support.h"

namespace allgo::test {

class SshdServer {
 public:
  // `sshd_extra` is appended to the [sshd] section, `extra_sections` after it; webapps log
  // in with `login_shell` ([nss] shell). `mysql_section` replaces the test database's
  // [mysql] section (e.g. with a password_file).
  explicit SshdServer(const std::string& sshd_extra = "", const std::string& extra_sections = "",
                      const std::string& login_shell = "/bin/sh", const std::string& mysql_section = "");
  ~SshdServer();
  SshdServer(const SshdServer&) = delete;
  SshdServer& operator=(const SshdServer&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return daemon_ ? daemon_->pid() : -1; }
  const std::string& dir() const { return dir_.path(); }
  std::string chroot_dir() const { return dir_ / "empty"; }
  std::string log() const;  // the server's stderr so far
  // Waits until the log contains `needle` (true) or the deadline passes (false).
  bool WaitForLog(const std::string& needle, int timeout_ms = 5000) const;

  // ssh options shared by every client tool: no user config, no known_hosts, key only.
  std::vector<std::string> ClientOptions(const std::string& key) const;
  // ssh [options] [extra] user@127.0.0.1 [command]
  RunResult Ssh(const std::string& user, const std::string& key, const std::string& command,
                const std::vector<std::string>& extra = {}, const RunOptions& options = {}) const;
  // The same as one shell-quoted string (for tmux, rsync -e).
  std::string SshCommandLine(const std::string& key, const std::vector<std::string>& extra = {}) const;

  // SIGTERM, and a second one if connections are still open after a moment (that ends
  // them); returns the exit code.
  int Stop();

 private:
  TempDir dir_;
  int port_ = 0;
  std::string log_path_;
  std::unique_ptr<Daemon> daemon_;
};

// Children of `pid` (from /proc/<pid>/task/<pid>/children).
std::vector<pid_t> ChildrenOf(pid_t pid);
// A field of /proc/<pid>/status ("Uid", "NoNewPrivs"...), trimmed; "" if absent.
std::string ProcStatusField(pid_t pid, const std::string& field);
// Single-quotes a word for /bin/sh.
std::string ShellQuote(const std::string& word);

}  // namespace allgo::test
