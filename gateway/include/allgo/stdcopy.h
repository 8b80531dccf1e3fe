// StdcopyDemuxer: splits the Docker Engine's multiplexed exec stream (Tty=false) into
// stdout and stderr.
//
// Each frame is an 8-byte header [STREAM, 0, 0, 0, SIZE as big-endian uint32] then SIZE
// bytes. STREAM is 0 (stdin, not sent by the engine in practice), 1 (stdout), 2 (stderr) or
// 3 (the engine's own error message). The demuxer is strict: any other STREAM, a non-zero
// padding byte or a SIZE over max_frame is Invalid and the stream must be dropped. It keeps
// at most the 8 header bytes: payload is handed on as it arrives, in pieces.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "allgo/status.h"

namespace allgo::engine {

enum class StdStream : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2, kSystemErr = 3 };

class StdcopyDemuxer {
 public:
  using Sink = std::function<void(StdStream stream, std::string_view bytes)>;
  static constexpr uint32_t kDefaultMaxFrame = 1u << 20;  // the engine sends <= 32 KiB

  explicit StdcopyDemuxer(uint32_t max_frame = kDefaultMaxFrame) : max_frame_(max_frame) {}

  // Feeds received bytes; calls sink for every (piece of) payload. After an error every
  // later Feed fails too.
  Status Feed(std::string_view data, const Sink& sink);
  // True between frames: the stream may end here without losing a frame's tail.
  bool AtFrameBoundary() const { return header_len_ == 0 && remaining_ == 0; }

 private:
  uint32_t max_frame_;
  unsigned char header_[8] = {};
  size_t header_len_ = 0;
  uint32_t remaining_ = 0;  // payload bytes left in the current frame
  StdStream stream_ = StdStream::kStdout;
  bool failed_ = false;
};

}  // namespace allgo::engine
