// A budget of log (or audit) lines for one kind of event: at most `lines` written one by one
// per `window`, the others counted; when a window that counted some ends, the caller writes
// one summary line for them. Used by allgo-sshd's monitor (refused forwards: 20 audit lines a
// minute per connection, docs/forwarding.md) and by the gateway (refused connections: 20 log
// lines a minute, docs/gateway.md "Limits"), so that a flood costs a bounded number of lines
// and nothing goes uncounted.
//
// A window starts at construction, and again at the first event (or Flush) after it ended.
// The time is passed in, so tests need no sleeping. Not thread-safe: a caller shared between
// threads holds its own lock (the gateway's LogBudget).
#pragma once

#include <chrono>
#include <cstdint>

namespace allgo {

class LineBudget {
 public:
  using Clock = std::chrono::steady_clock;

  // Events of a window that were not written one by one: the caller's summary line.
  struct Summary {
    uint64_t count = 0;                // 0: nothing to write
    std::chrono::milliseconds span{};  // how long that window lasted
  };

  LineBudget(unsigned lines, std::chrono::milliseconds window, Clock::time_point start = Clock::now())
      : lines_(lines), window_(window), window_start_(start) {}

  // One event at `now`. True: write its line. False: it is counted for a summary. When the
  // previous window ended with events counted, *ended gets them (write that summary first);
  // otherwise ended->count is 0.
  bool Take(Clock::time_point now, Summary* ended) {
    *ended = Flush(now, false);
    ++total_;
    if (written_ < lines_) {
      ++written_;
      return true;
    }
    ++counted_;
    return false;
  }

  // The summary of the current window if it has ended (or in any case with `now_too`: at the
  // end of a connection or of the program), which then starts anew; count 0 if none is due.
  Summary Flush(Clock::time_point now, bool now_too) {
    if (!now_too && now - window_start_ < window_) return {};
    Summary s{counted_, std::chrono::duration_cast<std::chrono::milliseconds>(now - window_start_)};
    window_start_ = now;
    written_ = 0;
    counted_ = 0;
    return s;
  }

  unsigned lines() const { return lines_; }
  std::chrono::milliseconds window() const { return window_; }
  uint64_t total() const { return total_; }  // every event taken, written or not

 private:
  const unsigned lines_;
  const std::chrono::milliseconds window_;
  Clock::time_point window_start_;
  unsigned written_ = 0;  // in this window
  uint64_t counted_ = 0;  // in this window, not written
  uint64_t total_ = 0;
};

}  // namespace allgo
