// Refusing a connection without a thread, and logging refusals within a budget.
//
// Any local user can connect to the gateway socket, as fast as it likes: the accept loop
// refuses a uid that is not a webapp's, or one over a session limit, itself (GatewayServer),
// so a flood costs neither a thread nor more than a socket each, and the log gets a bounded
// number of lines for it (docs/gateway.md "Limits").
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "allgo/line_budget.h"
#include "allgo/unique_fd.h"

namespace allgo::gateway {

// One stdio-mode `error` frame carrying `text` (made printable ASCII, cut to the protocol's
// bound): what a refused client prints as its one line.
std::string RefusalFrame(const std::string& text);

// At most `lines` log lines per `window` for one kind of event; the others are counted and
// one line per window says how many were not logged (allgo::LineBudget's rule, shared with
// allgo-sshd's refused-forward audit lines). Thread-safe.
class LogBudget {
 public:
  LogBudget(unsigned lines, std::chrono::seconds window, std::string what)
      : what_(std::move(what)), budget_(lines, window) {}
  ~LogBudget() { Flush(true); }

  // True: log this event now. False: it is counted, for the window's summary line.
  bool Take();
  // Writes the summary of a window that has ended (of the current one too when `now_too`).
  void Flush(bool now_too = false);
  uint64_t total() const;

 private:
  // The summary line; `total`: the events before the one being taken, if any.
  void Write(const LineBudget::Summary& summary, uint64_t total) const;
  const std::string what_;
  mutable std::mutex mu_;
  LineBudget budget_;  // guarded by mu_
};

// Connections refused by the accept loop (one thread: not thread-safe). Each gets its error
// frame at once (a fresh socket's buffer has room), then its writing side is shut and it is
// kept for up to kLingerMs, what the client still sends read and dropped, so the client's
// own `open` (it connects, then sends) does not fail with EPIPE before it reads its line.
// At most kMaxLingering are kept: past that the oldest is closed, so a flood costs a bounded
// number of sockets (such a client may see a broken connection instead of its line).
class Refusals {
 public:
  static constexpr size_t kMaxLingering = 128;
  static constexpr int kLingerMs = 2000;

  explicit Refusals(LogBudget* log) : log_(log) {}

  // `who` names the connection in the log ("connection 12 uid 65534 pid 345").
  void Refuse(UniqueFd client, const std::string& who, const std::string& text);

  // Appends the lingering sockets to the accept loop's poll set; returns the poll timeout
  // (ms) until the next one expires, -1 when none lingers.
  int Watch(std::vector<pollfd>* fds);
  // After poll(): `fds` are the entries Watch appended (same order); reads and drops what
  // clients sent, closes the ended and the expired ones.
  void Serve(const pollfd* fds, size_t n);
  size_t lingering() const { return lingering_.size(); }

 private:
  struct Lingering {
    UniqueFd fd;
    std::chrono::steady_clock::time_point until;
  };
  LogBudget* log_;
  std::deque<Lingering> lingering_;  // oldest first (all linger as long: by deadline too)
};

}  // namespace allgo::gateway
