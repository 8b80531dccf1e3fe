// Any bytes as a multiplexed docker exec stream: the demuxer must give the same streams and
// the same verdict whatever the chunking, never more payload than it was fed, and never a
// frame over its limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "allgo/stdcopy.h"

namespace {
struct Result {
  std::string out, err, other;
  bool ok = true;
  size_t frame_bytes = 0;  // payload seen since the last boundary
};

Result Demux(std::string_view data, size_t chunk) {
  allgo::engine::StdcopyDemuxer demux(4096);
  Result r;
  auto sink = [&](allgo::engine::StdStream s, std::string_view bytes) {
    (s == allgo::engine::StdStream::kStdout ? r.out : s == allgo::engine::StdStream::kStderr ? r.err : r.other) += bytes;
  };
  for (size_t i = 0; i < data.size() && r.ok; i += chunk) {
    r.ok = demux.Feed(data.substr(i, chunk), sink).ok();
  }
  return r;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 16;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  Result whole = Demux(stream, stream.size() + 1);
  Result pieces = Demux(stream, chunk);
  if (whole.out != pieces.out || whole.err != pieces.err || whole.other != pieces.other) __builtin_trap();
  if (whole.ok != pieces.ok) __builtin_trap();
  if (whole.out.size() + whole.err.size() + whole.other.size() > stream.size()) __builtin_trap();
  return 0;
}
