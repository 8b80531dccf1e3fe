#include "allgo/engine_response.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <iterator>

namespace allgo::engine {

namespace http = boost::beast::http;
using boost::system::error_code;

struct ResponseReader::Parser {
  http::response_parser<http::string_body> p;
};

ResponseReader::ResponseReader(const ResponseLimits& limits) : limits_(limits), parser_(std::make_unique<Parser>()) {
  parser_->p.header_limit(static_cast<std::uint32_t>(limits_.max_head));
  parser_->p.body_limit(limits_.max_body);
  // Not eager until the header is through: Boost 1.74's parser, eager, goes on after a
  // Content-Length over body_limit (finish_header's error is dropped when more bytes follow)
  // and reserves that length for the body, so one header line of a hostile engine made the
  // gateway allocate any size (found by fuzz_engine_response). Feed turns eager on once the
  // header has passed the checks.
  parser_->p.eager(false);
}

ResponseReader::~ResponseReader() = default;

bool ResponseReader::header_done() const { return parser_->p.is_header_done(); }
bool ResponseReader::done() const { return parser_->p.is_done(); }
int ResponseReader::status() const { return header_done() ? static_cast<int>(parser_->p.get().result_int()) : 0; }
size_t ResponseReader::held() const { return pending_.size() + parser_->p.get().body().size(); }
std::string ResponseReader::TakeBody() { return std::move(parser_->p.get().body()); }
std::string ResponseReader::TakeLeftover() { return std::move(pending_); }

Status ResponseReader::Fail(std::string message) {
  error_ = std::move(message);
  pending_.clear();
  pending_.shrink_to_fit();
  parser_->p.get().body().clear();
  parser_->p.get().body().shrink_to_fit();
  return Status::Invalid(error_);
}

Status ResponseReader::Feed(std::string_view bytes) {
  if (!error_.empty()) return Status::Invalid(error_);
  if (done()) return Fail("the engine sent bytes after the end of its answer");
  received_ += bytes.size();
  pending_.append(bytes);
  size_t used = 0;
  while (used < pending_.size() && !done()) {
    error_code ec;
    size_t n = parser_->p.put(boost::asio::buffer(pending_.data() + used, pending_.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) break;
    if (ec == http::error::header_limit) {
      return Fail("the status line and headers of the answer are longer than " + std::to_string(limits_.max_head) +
                  " bytes");
    }
    if (ec == http::error::body_limit) {
      return Fail("the body of the answer is longer than " + std::to_string(limits_.max_body) + " bytes");
    }
    if (ec) return Fail("the answer is not valid HTTP/1.1 (" + ec.message() + ")");
    // The body as it comes from now on: only a partial chunk-size line stays in pending_.
    if (header_done()) parser_->p.eager(true);
    if (n == 0) break;
  }
  pending_.erase(0, used);
  if (!header_done()) {
    // Beast's header_limit also stops this; checked here too so the bound is ours to state.
    if (pending_.size() > limits_.max_head) {
      return Fail("the status line and headers of the answer are longer than " + std::to_string(limits_.max_head) +
                  " bytes");
    }
    return Status::Ok();
  }
  const auto& fields = parser_->p.get();
  if (static_cast<size_t>(std::distance(fields.begin(), fields.end())) > limits_.max_fields) {
    return Fail("the answer has more than " + std::to_string(limits_.max_fields) + " header fields");
  }
  // In the body only a chunk-size line (or the trailer) waits here for its end: Beast has
  // no bound of its own for it.
  if (!done() && pending_.size() > limits_.max_chunk_line) {
    return Fail("a chunk-size line (or the trailer) of the answer is longer than " +
                std::to_string(limits_.max_chunk_line) + " bytes");
  }
  return Status::Ok();
}

Status ResponseReader::FeedEof() {
  if (!error_.empty()) return Status::Invalid(error_);
  if (done()) return Status::Ok();
  if (header_done() && parser_->p.need_eof()) {
    error_code ec;
    parser_->p.put_eof(ec);
    if (!ec) return Status::Ok();
  }
  if (received_ == 0) return Status::Unavailable("the engine closed the connection without answering");
  return Status::Unavailable("the engine closed the connection mid-answer, after " + std::to_string(received_) +
                             " bytes (" + (header_done() ? "in the body" : "in the status line and headers") + ")");
}

}  // namespace allgo::engine
