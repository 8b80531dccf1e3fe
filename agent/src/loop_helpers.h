// What the agent's poll loops share (agent.cc: agent.sock, stdio_session.cc: --stdio,
// stream_server.cc: the stream mode): their clock, the text they send a client, and reading
// a client's frames straight into the frame reader.
#pragma once

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "allgo/bridge/protocol.h"

namespace allgo::bridge {

// Milliseconds of CLOCK_MONOTONIC: deadlines never jump with the wall clock.
inline int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Text that travels to the client, which prints it (errors, refusal reasons): printable
// ASCII and at most kMaxErrorText bytes, whatever went in (a socket path may hold any byte).
inline std::string Printable(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, kMaxErrorText)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

// One read() from `fd` into the reader's free room, without a copy (the data frames then go
// on as views, FrameReader::NextView). Returns what read() returned, errno kept.
inline ssize_t ReadFrames(int fd, FrameReader* reader) {
  const size_t want = reader->Room();
  char* at = reader->Grow(want);
  ssize_t n = read(fd, at, want);
  const int error_number = errno;
  reader->Shrink(want - static_cast<size_t>(std::max<ssize_t>(n, 0)));
  errno = error_number;
  return n;
}

}  // namespace allgo::bridge
