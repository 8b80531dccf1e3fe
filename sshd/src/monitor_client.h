#pragma once

#include <deque>
#include <string>
#include <vector>

#include "allgo/status.h"
#include "allgo/unique_fd.h"
#include "monitor_protocol.h"

namespace allgo::sshd {

// How long an answer of the monitor may take (it answers at once but for OpenStreams).
inline constexpr int kMonitorTimeoutMs = 60 * 1000;

// Talks to the monitor: synchronous request/answer, with Exited notices that arrive in
// between queued for the main loop.
class MonitorClient {
 public:
  explicit MonitorClient(UniqueFd sock) : sock_(std::move(sock)) {}
  int fd() const { return sock_.get(); }
  // Sends `request` and waits (timeout_ms; < 0: as long as it takes) for a message of type
  // `want`; fds of the answer in *fds.
  Status Call(const std::string& request, MsgType want, std::string* answer,
              std::vector<UniqueFd>* fds = nullptr, int timeout_ms = kMonitorTimeoutMs);
  Status Send(const std::string& request);
  // Asks the monitor for this connection's path to the sandbox (once per connection, after
  // auth): on success *out is a socket connected, as the webapp, to its agent (bridge) or
  // to the gateway (docker), on which nothing was sent yet; the caller speaks protocol v3
  // on it. Permission with the monitor's reason when refused (policy, sandbox not running).
  // Blocks until the monitor answers: it waits for the carrier at most 10 s + [sandbox]
  // start_wait (a sandbox that is starting).
  Status OpenStreams(UniqueFd* out);
  // Reads what is available without blocking; false when the monitor is gone.
  bool Poll();
  std::deque<ExitedNotice>& notices() { return notices_; }

 private:
  // Handles an unsolicited message; false when it is not an Exited notice.
  bool Queue(const std::string& payload);
  UniqueFd sock_;
  std::deque<ExitedNotice> notices_;
};

}  // namespace allgo::sshd
