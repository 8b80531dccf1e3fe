// libFuzzer target for the bridge protocol parser (the agent's attack surface: any local
// process of the allowed uid can write bytes to agent.sock).
//
// The input is a byte stream as it would arrive on the socket, split into reads of varying
// size. Properties checked besides "no crash, no sanitizer report, bounded memory":
//  - the reader never holds more than FrameReader::kMaxBuffered bytes;
//  - NextView (the copy-free data path, fed through Grow) returns exactly what Next returns
//    (fed through Append): the same messages, data bytes and errors, in the same order;
//  - every accepted message passes Validate and re-encodes to exactly the bytes it came
//    from (the encoding is canonical), so encoder and decoder agree.
// Built twice: fuzz_bridge_protocol (agent.sock, the socket mode) and, with
// ALLGO_FUZZ_STDIO_MODE, fuzz_bridge_stdio (the one stream of `allgo-sandbox-agent --stdio`,
// whose peer is whatever relays the stream: data frames are the bulk of it there) and, with
// ALLGO_FUZZ_STREAM_MODE, fuzz_bridge_stream (version 3: the forwards of one SSH connection,
// stream-data frames the bulk of it).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "allgo/bridge/protocol.h"

using namespace allgo::bridge;

#if defined(ALLGO_FUZZ_STDIO_MODE)
constexpr Mode kMode = Mode::kStdio;
#elif defined(ALLGO_FUZZ_STREAM_MODE)
constexpr Mode kMode = Mode::kStream;
#else
constexpr Mode kMode = Mode::kSocket;
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  FrameReader reader(kMode);
  FrameReader viewer(kMode);  // the same bytes, read in place and taken with NextView
  size_t pos = 0;
  size_t chunk = size > 0 ? (data[0] % 61) + 1 : 1;  // read sizes vary with the input
  while (pos < input.size()) {
    size_t want = std::min(chunk, input.size() - pos);
    size_t taken = reader.Append(input.substr(pos, want));
    if (reader.buffered() > FrameReader::kMaxBuffered) abort();
    if (viewer.Room() != taken + reader.Room()) abort();  // both hold the same bytes
    size_t grow = std::min(want, viewer.Room());
    if (grow != taken) abort();  // Append takes what Room() allows, no more, no less
    std::memcpy(viewer.Grow(grow), input.data() + pos, grow);
    if (viewer.buffered() != reader.buffered()) abort();
    pos += taken;
    for (;;) {
      Message m, v;
      DataView view;
      std::string error, view_error;
      size_t before = reader.buffered();
      FrameReader::Result r = reader.Next(&m, &error);
      FrameReader::Result rv = viewer.NextView(&v, &view, &view_error);
      if (r != rv || error != view_error) abort();
      if (r == FrameReader::Result::kError) {
        if (error.empty()) abort();
        return 0;  // the connection would be dropped here
      }
      if (r == FrameReader::Result::kNeedMore) break;
      if (!view.bytes.empty() && kMode == Mode::kStream) {
        const auto* d = std::get_if<StreamData>(&m);
        if (d == nullptr || d->stream != view.id || d->bytes != view.bytes) abort();
      } else if (!view.bytes.empty()) {
        const auto* d = std::get_if<Data>(&m);
        if (d == nullptr || d->stream != view.stream || d->bytes != view.bytes) abort();
      } else if (!(m == v) || std::holds_alternative<Data>(m) || std::holds_alternative<StreamData>(m)) {
        abort();
      }
      if (!Validate(m, kMode).empty()) abort();
      std::string frame = EncodeFrame(m);
      size_t consumed = before - reader.buffered();
      if (frame.size() != consumed) abort();
      // The consumed bytes are the last `consumed` bytes seen before this Next call.
      std::string_view original = input.substr(pos - before, consumed);
      if (frame != original) abort();
      // The copy-free data path writes the same header as the encoder.
      if (const auto* d = std::get_if<Data>(&m)) {
        char header[kDataFrameHeader];
        PutDataFrameHeader(header, d->stream, d->bytes.size());
        if (frame.compare(0, kDataFrameHeader, header, kDataFrameHeader) != 0) abort();
      }
      if (const auto* d = std::get_if<StreamData>(&m)) {
        char header[kStreamDataFrameHeader];
        PutStreamDataFrameHeader(header, d->stream, d->bytes.size());
        if (frame.compare(0, kStreamDataFrameHeader, header, kStreamDataFrameHeader) != 0) abort();
      }
    }
    if (taken == 0) break;  // cannot happen: Next always frees room or fails
  }
  return 0;
}
