#include "allgo/stdcopy.h"

#include <algorithm>
#include <string>

namespace allgo::engine {

Status StdcopyDemuxer::Feed(std::string_view data, const Sink& sink) {
  if (failed_) return Status::Invalid("docker exec stream: already failed on a bad frame header");
  while (!data.empty()) {
    if (remaining_ > 0) {
      size_t n = std::min<size_t>(remaining_, data.size());
      sink(stream_, data.substr(0, n));
      data.remove_prefix(n);
      remaining_ -= static_cast<uint32_t>(n);
      continue;
    }
    size_t n = std::min(sizeof(header_) - header_len_, data.size());
    std::copy_n(data.begin(), n, header_ + header_len_);
    header_len_ += n;
    data.remove_prefix(n);
    if (header_len_ < sizeof(header_)) break;
    header_len_ = 0;
    if (header_[0] > 3 || header_[1] != 0 || header_[2] != 0 || header_[3] != 0) {
      failed_ = true;
      return Status::Invalid("docker exec stream: bad frame header (stream byte " +
                             std::to_string(header_[0]) + "); was the exec created with Tty=true?");
    }
    uint32_t size = (uint32_t{header_[4]} << 24) | (uint32_t{header_[5]} << 16) |
                    (uint32_t{header_[6]} << 8) | uint32_t{header_[7]};
    if (size > max_frame_) {
      failed_ = true;
      return Status::Invalid("docker exec stream: frame of " + std::to_string(size) +
                             " bytes is over the limit of " + std::to_string(max_frame_));
    }
    stream_ = static_cast<StdStream>(header_[0]);
    remaining_ = size;
  }
  return Status::Ok();
}

}  // namespace allgo::engine
