// ResponseReader: one Engine API answer (HTTP/1.1 response), parsed from bytes as they
// arrive, within fixed bounds.
//
// The parsing is Boost.Beast's (issue 11: no HTTP parser of our own); this class owns the
// bytes Beast has not consumed yet and bounds every one of them, so a hostile or broken
// engine cannot grow the gateway's memory (issue 18): the status line and header fields
// together, their number, a chunk-size line (with its extensions) or trailer, and the body.
// Anything over a bound, or not HTTP, is an Invalid Status naming what broke; the reader is
// then failed for good. It has no socket: EngineClient feeds it what each read returns (and a
// fuzzer or a unit test feeds it anything).
//
// A 1xx/204/304 answer ends with its header: the bytes after it (the first bytes of a
// hijacked exec stream, after `101 UPGRADED`) stay unconsumed, in Leftover().
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "allgo/status.h"

namespace allgo::engine {

struct ResponseLimits {
  size_t max_head = 16 * 1024;    // status line + header fields, bytes (Docker sends < 1 KiB)
  size_t max_fields = 64;         // header fields (Docker sends < 10)
  size_t max_chunk_line = 1024;   // one chunk-size line with its extensions, or the trailer
  size_t max_body = 1 << 20;      // an inspect is a few KiB
};

class ResponseReader {
 public:
  explicit ResponseReader(const ResponseLimits& limits = {});
  ~ResponseReader();
  ResponseReader(const ResponseReader&) = delete;
  ResponseReader& operator=(const ResponseReader&) = delete;

  // Feeds received bytes. Ok while the answer is well-formed and within the limits (whether
  // or not it is complete: see done()). Bytes fed after done() are kept as Leftover().
  Status Feed(std::string_view bytes);
  // The peer closed the connection. Ok when the answer is complete (or its body runs to
  // the end of the connection); otherwise Unavailable saying where the answer was cut.
  Status FeedEof();

  bool header_done() const;
  bool done() const;
  int status() const;          // the status code once header_done()
  size_t received() const { return received_; }  // bytes fed so far
  // Bytes held now (unparsed + body + leftover): what the bounds keep small.
  size_t held() const;
  std::string TakeBody();
  std::string TakeLeftover();  // after done(): the bytes that came after the answer

 private:
  Status Fail(std::string message);
  struct Parser;  // Beast's response_parser; engine_response.cc
  ResponseLimits limits_;
  std::unique_ptr<Parser> parser_;
  std::string pending_;  // received, not consumed by the parser yet
  size_t received_ = 0;
  std::string error_;    // set once failed
};

}  // namespace allgo::engine
