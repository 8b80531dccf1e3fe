// The whole product on one machine, as deployed: the fixture's MariaDB with a webapp 'sleep'
// owned by an allgo user with a fresh key, its sandbox (bubblewrap, own pid/ipc/uts namespaces,
// bridge folder bind-mounted) running allgo-sandbox-agent, and allgo-sshd whose webapps log in
// through allgo-shell. The NSS module serves them through the test's private namespace.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "test_support.h"

namespace allgo::test {

class Stack {
 public:
  // `sshd_extra` lines are added to [sshd].
  explicit Stack(const std::string& sshd_extra = "");
  ~Stack();

  void StartSandbox();
  void StopSandbox();
  Daemon& sandbox() { return *sandbox_; }
  Daemon& sshd() { return *sshd_; }
  // Starts allgo-sshd again with the same configuration (after the test stopped or killed
  // it); true once it listens.
  bool RestartSshd();
  int port() const { return port_; }
  const std::string& bridge_dir() const { return bridge_; }
  const std::string& sandboxes_dir() const { return sandboxes_.path(); }
  const TempDir& dir() const { return dir_; }
  std::string SshdLog() const { return ReadFile(dir_ / "sshd.log"); }
  // Every stack has an audit log and a metrics endpoint.
  std::string audit_path() const { return dir_ / "audit.log"; }
  int metrics_port() const { return metrics_port_; }

  // ssh argv for `USER@127.0.0.1 COMMAND` with the owner's key (USER: the webapp 'sleep').
  std::vector<std::string> SshArgv(const std::string& command, const std::string& user = "sleep") const;
  RunResult Ssh(const std::string& command, RunOptions options = {}) const;
  // The same line for /bin/sh scripts.
  std::string SshLine() const;

  // Processes in allgo-sshd's tree (itself included), and their summed RSS in KiB.
  std::vector<pid_t> ServerProcesses() const;
  long ServerRssKib() const;

 private:
  TempDir dir_{"allgo-stack"};
  SandboxesMount sandboxes_{dir_ / "sandboxes"};  // [sandbox] dir: nosuid,nodev,noexec
  int port_ = 0;
  int metrics_port_ = 0;
  std::string bridge_;
  KeyPair key_;
  std::unique_ptr<Daemon> sandbox_;
  std::unique_ptr<Daemon> sshd_;
};

}  // namespace allgo::test
