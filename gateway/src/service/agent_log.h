// The agent's stderr (its log) into the gateway's log, one line per line, prefixed with the
// webapp, and bounded: a sandbox controls those bytes, so lines are cut at kMaxLine,
// sanitised, and at most kMaxLinesPerMinute go out per session (then one line saying how
// many were dropped). Nothing of it ever reaches the client.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace allgo::gateway {

class AgentLog {
 public:
  static constexpr size_t kMaxLine = 300;
  static constexpr unsigned kMaxLinesPerMinute = 60;

  explicit AgentLog(std::string prefix) : prefix_(std::move(prefix)) {}
  ~AgentLog();  // flushes a last partial line and the dropped count

  void Feed(std::string_view bytes);

 private:
  void Emit();
  std::string prefix_;
  std::string line_;
  bool truncated_ = false;
  unsigned in_window_ = 0;
  unsigned dropped_ = 0;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
};

}  // namespace allgo::gateway
