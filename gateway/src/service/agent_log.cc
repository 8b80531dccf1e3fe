#include "service/agent_log.h"

#include <spdlog/spdlog.h>

#include "allgo/names.h"

namespace allgo::gateway {

AgentLog::~AgentLog() {
  if (!line_.empty()) Emit();
  if (dropped_ > 0) spdlog::warn("{} agent: {} more log lines dropped (rate limit)", prefix_, dropped_);
}

void AgentLog::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n') {
      Emit();
      continue;
    }
    if (line_.size() < kMaxLine) {
      line_ += c;
    } else {
      truncated_ = true;
    }
  }
}

void AgentLog::Emit() {
  auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= std::chrono::minutes(1)) {
    if (dropped_ > 0) spdlog::warn("{} agent: {} log lines dropped (rate limit)", prefix_, dropped_);
    window_start_ = now;
    in_window_ = 0;
    dropped_ = 0;
  }
  if (in_window_ < kMaxLinesPerMinute) {
    ++in_window_;
    spdlog::info("{} agent: {}{}", prefix_, SanitizeForLog(line_, kMaxLine), truncated_ ? " [cut]" : "");
  } else {
    ++dropped_;
  }
  line_.clear();
  truncated_ = false;
}

}  // namespace allgo::gateway
