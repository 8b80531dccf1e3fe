#include "service/agent_log.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "allgo/names.h"

namespace allgo::gateway {

AgentLog::~AgentLog() {
  if (!line_.empty()) Emit();
  if (dropped_ > 0) spdlog::warn("{} agent: {} more log lines dropped (rate limit)", prefix_, dropped_);
}

bool AgentLog::Feed(std::string_view bytes) {
  if (over_) return false;
  const auto now = std::chrono::steady_clock::now();
  tokens_ = std::min<double>(kBurstBytes, tokens_ + std::chrono::duration<double>(now - refilled_).count() *
                                                         static_cast<double>(kBytesPerSecond));
  refilled_ = now;
  if (static_cast<double>(bytes.size()) > tokens_) {
    over_ = true;
    return false;
  }
  tokens_ -= static_cast<double>(bytes.size());
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
  return true;
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
