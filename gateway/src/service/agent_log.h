// The agent's stderr (its log) into the gateway's log, one line per line, prefixed with the
// webapp, and bounded: a sandbox controls those bytes, so lines are cut at kMaxLine,
// sanitised, and at most kMaxLinesPerMinute go out per session (then one line saying how
// many were dropped). Nothing of it ever reaches the client.
//
// Its bytes are bounded too: the agent logs a few lines per session, but anything in the
// container that can write to the agent's stderr could send it without end, and every byte
// costs the gateway TLS and demultiplexing work that no client asked for. A token bucket
// allows kBurstBytes at once and kBytesPerSecond after that; past it Feed says so and the
// relay ends the session (docs/gateway.md "Limits").
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace allgo::gateway {

class AgentLog {
 public:
  static constexpr size_t kMaxLine = 300;
  static constexpr unsigned kMaxLinesPerMinute = 60;
  static constexpr size_t kBurstBytes = 1 << 20;
  static constexpr size_t kBytesPerSecond = 16 * 1024;

  explicit AgentLog(std::string prefix) : prefix_(std::move(prefix)) {}
  ~AgentLog();  // flushes a last partial line and the dropped count

  // False once the bytes went past the bound (then nothing more is logged).
  bool Feed(std::string_view bytes);

 private:
  void Emit();
  std::string prefix_;
  std::string line_;
  bool truncated_ = false;
  unsigned in_window_ = 0;
  unsigned dropped_ = 0;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  double tokens_ = kBurstBytes;  // bytes the agent may still write now
  std::chrono::steady_clock::time_point refilled_ = std::chrono::steady_clock::now();
  bool over_ = false;
};

}  // namespace allgo::gateway
