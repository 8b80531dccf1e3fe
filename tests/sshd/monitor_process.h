// One connection's real monitor in a child process, as the listener runs it, with the test
// playing its network child (a compromised one, if it likes): it holds the other end of the
// monitor's socket and speaks monitor_protocol.h directly.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/unique_fd.h"
#include "monitor_protocol.h"

namespace allgo::test {

class MonitorProcess {
 public:
  // The config file `config_text` is written to `config_path` (default: the test's
  // /etc/allgo/allgo-ssh.conf) and loaded as allgo-sshd would.
  explicit MonitorProcess(const std::string& config_text, const std::string& config_path = "");
  ~MonitorProcess();
  MonitorProcess(const MonitorProcess&) = delete;
  MonitorProcess& operator=(const MonitorProcess&) = delete;

  // Sends a request and returns the answer of the wanted type (Exited notices skipped); ""
  // (and a test failure unless `may_close`) when the monitor closed the socket instead.
  std::string Call(const std::string& request, sshd::MsgType want, std::vector<UniqueFd>* fds = nullptr,
                   bool may_close = false);
  // A signed KeyQuery for `user` with `public_line` ("type base64 comment").
  sshd::KeyAnswer Authenticate(const std::string& public_line, const std::string& user = "webapp1");
  sshd::SpawnResult Spawn(const sshd::SpawnRequest& r, std::vector<UniqueFd>* fds);
  sshd::StreamsResult OpenStreams(std::vector<UniqueFd>* fds);
  // The test's end of the monitor socket, e.g. for a real MonitorClient (the network child's).
  UniqueFd TakeSocket() { return std::move(sock_); }
  // True when the monitor closed its socket (it ends the connection) within `timeout_ms`.
  bool Closed(int timeout_ms);

 private:
  Config config_;
  UniqueFd sock_;
  pid_t pid_ = -1;
};

}  // namespace allgo::test
