// Any bytes as an Engine API answer (ResponseReader: status line, headers, chunked framing),
// and after a 101 the rest as the multiplexed exec stream (StdcopyDemuxer), the way
// EngineClient reads them. Never a crash, never more held than the bounds allow whatever the
// chunking, and an answer that completes gives the same status, body and leftover fed whole
// or in pieces.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "allgo/engine_response.h"
#include "allgo/stdcopy.h"

namespace {

constexpr allgo::engine::ResponseLimits kLimits{.max_head = 2048, .max_fields = 16, .max_chunk_line = 64,
                                                .max_body = 16 * 1024};

struct Result {
  bool ok = true, done = false;
  int status = 0;
  std::string body, leftover;
};

Result Read(std::string_view data, size_t chunk) {
  allgo::engine::ResponseReader reader(kLimits);
  Result r;
  size_t at = 0;
  for (; at < data.size() && r.ok && !reader.done(); at += chunk) {
    std::string_view piece = data.substr(at, chunk);
    r.ok = reader.Feed(piece).ok();
    // What a read can add (one piece) on top of the bounds, never more.
    if (reader.held() > kLimits.max_head + kLimits.max_body + piece.size()) __builtin_trap();
  }
  if (r.ok && !reader.done()) r.ok = reader.FeedEof().ok();
  r.done = r.ok && reader.done();
  if (r.done) {
    r.status = reader.status();
    r.body = reader.TakeBody();
    r.leftover = reader.TakeLeftover();
    if (at < data.size()) r.leftover += data.substr(at);  // the stream's bytes after the answer
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 32;
  std::string_view answer(reinterpret_cast<const char*>(data) + 1, size - 1);
  Result whole = Read(answer, answer.size() + 1);
  Result pieces = Read(answer, chunk);
  if (whole.done && pieces.done &&
      (whole.status != pieces.status || whole.body != pieces.body || whole.leftover != pieces.leftover)) {
    __builtin_trap();
  }
  if (whole.body.size() > kLimits.max_body) __builtin_trap();
  if (whole.done && whole.status == 101) {
    allgo::engine::StdcopyDemuxer demux(4096);
    size_t payload = 0;
    (void)demux.Feed(whole.leftover, [&](allgo::engine::StdStream, std::string_view bytes) { payload += bytes.size(); });
    if (payload > whole.leftover.size()) __builtin_trap();
  }
  return 0;
}
