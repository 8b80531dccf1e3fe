// Test helpers for allgo-sshd: a server started as a child of the test on a free loopback
// port (config written to /etc/allgo/allgo-ssh.conf inside the private NSS namespace), and
// the real OpenSSH client tools pointed at it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

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

// The frontend side of an end-to-end bridge test, whatever the sandbox: MariaDB with one user,
// its key and the webapp `sleep`; the sandbox dir mounted nosuid,nodev,noexec; the webapp's
// bridge folder as allgo's controller prepares it (owned by its uid, 0755); a folder shared
// with the sandbox (same path inside); allgo-sshd with allgo-shell as the login shell.
// Fixtures derive from it and start their sandbox on bridge_ after SetUpFrontend().
class SshdBridgeFixture : public ::testing::Test {
 protected:
  explicit SshdBridgeFixture(const std::string& tmp_prefix) : tmp_(tmp_prefix) {}
  void SetUpFrontend();  // ASSERTs: check HasFatalFailure() after it
  // (Re)starts allgo-sshd with `sshd_extra` in its [sshd] section.
  void StartServer(const std::string& sshd_extra = "", const std::string& extra_sections = "");
  RunResult Ssh(const std::string& command, const std::vector<std::string>& extra = {}, RunOptions options = {});

  TempDir tmp_;
  std::unique_ptr<SandboxesMount> sandboxes_mount_;
  KeyPair key_;
  uint32_t owner_ = 0;
  uid_t uid_ = 0;
  std::string sandboxes_, bridge_, shared_;
  std::unique_ptr<SshdServer> server_;
};

// An interactive client in a detached tmux: a real terminal of cols x rows running `command`
// (e.g. `ssh -tt ...`), for PTY tests. The tmux server is killed by the destructor.
class TmuxTerminal {
 public:
  TmuxTerminal(const std::string& socket, const std::string& command, int cols, int rows);
  ~TmuxTerminal();
  TmuxTerminal(const TmuxTerminal&) = delete;
  TmuxTerminal& operator=(const TmuxTerminal&) = delete;
  bool started() const { return started_; }
  void Type(const std::string& line);  // the keys, then Enter
  void Keys(const std::string& keys);  // tmux key names without Enter ("C-c")
  std::string Screen() const;
  bool Shows(const std::string& needle, int timeout_ms = 10000) const;
  void Resize(int cols, int rows);
  bool WaitClosed(int timeout_ms = 8000) const;  // the command has ended

 private:
  std::string tmux_;
  bool started_ = false;
};

// What a user checks of sftp and scp as `user`: `sftp` puts a binary file (1 MiB) into
// `remote_dir`, lists it and gets it back; `scp` (its default SFTP mode) copies it up and down;
// every copy is compared byte for byte (remote_dir is visible to the test at the same path).
// Returns the command line of the sftp server that ran (its /proc/self/cmdline, fetched with
// `get`, NULs as spaces), so a test can tell whose server it was. Google Test assertions.
std::string ExpectSftpAndScpRoundTrip(const SshdServer& server, const std::string& key, const std::string& user,
                                      const std::string& local_dir, const std::string& remote_dir);

// Children of `pid` (from /proc/<pid>/task/<pid>/children).
std::vector<pid_t> ChildrenOf(pid_t pid);
// A field of /proc/<pid>/status ("Uid", "NoNewPrivs"...), trimmed; "" if absent.
std::string ProcStatusField(pid_t pid, const std::string& field);
// Single-quotes a word for /bin/sh.
std::string ShellQuote(const std::string& word);

}  // namespace allgo::test
