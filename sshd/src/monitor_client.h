#pragma once

#include <deque>
#include <string>
#include <vector>

#include "allgo/status.h"
#include "allgo/unique_fd.h"
#include "monitor_protocol.h"

namespace allgo::sshd {

// Talks to the monitor: synchronous request/answer, with Exited notices that arrive in
// between queued for the main loop.
class MonitorClient {
 public:
  explicit MonitorClient(UniqueFd sock) : sock_(std::move(sock)) {}
  int fd() const { return sock_.get(); }
  // Sends `request` and waits for a message of type `want`; fds of the answer in *fds.
  Status Call(const std::string& request, MsgType want, std::string* answer,
              std::vector<UniqueFd>* fds = nullptr);
  Status Send(const std::string& request);
  // OpenStreams: the monitor has the webapp's carrier connect to the sandbox's agent (or the
  // gateway) and hands the connected socket over (docs/forwarding.md).
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
