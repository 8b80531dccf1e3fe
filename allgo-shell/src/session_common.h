// What the two session clients of allgo-shell share — the local bridge (shell_main.cc) and the
// stdio stream (stdio_client.cc): exit statuses of our own failures, the hang-up grace, and the
// one way we speak to the user (a line on stderr, never stdout: scp and sftp would break).
#pragma once

#include <time.h>

#include <cstdint>
#include <string>

#include "allgo/bridge/io.h"

namespace allgo::bridge {

// Exit statuses of our own failures (a command's status is passed through untouched).
inline constexpr int kExitSetup = 1;        // config, user, sandbox not running, session refused
inline constexpr int kExitUsage = 2;
inline constexpr int kExitLostAgent = 255;  // like ssh when the connection breaks
// After the client hung up: the command's time to end by itself before we leave.
inline constexpr int kHangupGraceMs = 2000;

inline void Say(const std::string& line) {
  std::string text = "allgo: " + line + "\n";
  WriteAll(2, text.data(), text.size());
}

inline int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace allgo::bridge
