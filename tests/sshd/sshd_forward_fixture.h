// The sandbox of the forwarding tests (sshd_forward_test, sshd_forward_clients_test): the
// bridge backend and allgo-sandbox-agent inside a bubblewrap sandbox with its OWN network
// namespace (--unshare-net), as a container has. The frontend (the test) runs a web server on
// the very port the sandbox's one uses, so a forward that landed on the frontend would answer
// "frontend", and one that landed in the sandbox answers "sandbox".
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {

// How many times `needle` occurs in `text` (log lines of one kind).
size_t Occurrences(const std::string& text, const std::string& needle);

// A python3 http.server on 127.0.0.1:port serving `dir`.
std::vector<std::string> HttpServer(int port, const std::string& dir);

// An ssh-agent on `sock` holding `key`; killed by the destructor (it daemonizes, so the
// Daemon guard does not apply). ASSERTs: check HasFatalFailure() after Start().
class SshAgentProcess {
 public:
  SshAgentProcess() = default;
  ~SshAgentProcess();
  SshAgentProcess(const SshAgentProcess&) = delete;
  SshAgentProcess& operator=(const SshAgentProcess&) = delete;
  void Start(const std::string& sock, const std::string& key);
  // What `ssh-keygen -l` prints of the key's public half ("256 SHA256:... comment (ED25519)").
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  pid_t pid_ = -1;
  std::string fingerprint_;
};

class SshdForwardFixture : public SshdBridgeFixture {
 protected:
  explicit SshdForwardFixture(const std::string& tmp_prefix) : SshdBridgeFixture(tmp_prefix) {}

  void SetUp() override;
  void TearDown() override;
  // (Re)starts the sandbox and waits for its agent (ASSERTs).
  void StartSandbox();

  // What curl gets from the frontend's loopback.
  std::string Get(int port, const std::vector<std::string>& curl_extra = {});
  // What a session in the sandbox gets from the sandbox's loopback.
  std::string SandboxGet(int port);
  // ssh -W host:port with an HTTP request on stdin: the raw answer.
  RunResult Stdio(const std::string& target);
  // ssh [options] -p PORT sleep@127.0.0.1 with the fixture's key, `options` first (for a
  // Daemon: ssh -N -L ..., ssh -M -S ...).
  std::vector<std::string> SshArgv(const std::vector<std::string>& options) const;

  // More shell run inside the sandbox before the agent starts (servers in the background):
  // set by a derived fixture's constructor.
  std::string sandbox_services_;
  int port_ = 0, frontend_only_port_ = 0, sandbox_starts_ = 0;
  std::unique_ptr<Daemon> front_, front_only_, agent_;
};

}  // namespace allgo::test
