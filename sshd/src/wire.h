// The byte format of the monitor protocol (see monitor_protocol.h): a message is one
// SOCK_SEQPACKET record of at most kMaxMessage bytes, optionally carrying file descriptors
// (SCM_RIGHTS). Fields are big-endian u8/u32 and length-prefixed strings.
//
// WireReader is strict: every Get* checks bounds, strings carry their own maximum, and
// Finish() fails when bytes are left over. Once a read has failed every later read fails,
// so a message is parsed with a straight sequence of Get* calls and one check at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "allgo/status.h"
#include "allgo/unique_fd.h"

namespace allgo::sshd {

inline constexpr size_t kMaxMessage = 64 * 1024;
inline constexpr size_t kMaxFdsPerMessage = 3;

class WireWriter {
 public:
  void PutU8(uint8_t v) { data_.push_back(static_cast<char>(v)); }
  void PutU32(uint32_t v);
  void PutU64(uint64_t v) {
    PutU32(static_cast<uint32_t>(v >> 32));
    PutU32(static_cast<uint32_t>(v));
  }
  void PutString(std::string_view s);
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  bool GetU8(uint8_t* v);
  bool GetU32(uint32_t* v);
  bool GetU64(uint64_t* v) {
    uint32_t hi = 0, lo = 0;
    if (!GetU32(&hi) || !GetU32(&lo)) return false;
    *v = (static_cast<uint64_t>(hi) << 32) | lo;
    return true;
  }
  // Fails when the string is longer than max_len.
  bool GetString(std::string* s, size_t max_len);
  // True when every read succeeded and nothing is left.
  bool Finish() const { return ok_ && pos_ == data_.size(); }
  // Marks the message malformed (a check outside the Get* calls failed).
  void Fail() { ok_ = false; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// One received record: payload and the descriptors that came with it.
struct WireMessage {
  std::string payload;
  std::vector<UniqueFd> fds;
};

// Sends one record (MSG_NOSIGNAL). Payload larger than kMaxMessage is Invalid.
Status SendRecord(int sock, const std::string& payload, const std::vector<int>& fds = {});

// Receives one record. timeout_ms < 0 waits forever, 0 does not wait.
// Ok with *closed = true when the peer closed the socket; Unavailable on timeout / EAGAIN;
// Invalid when the record was truncated or carried more than kMaxFdsPerMessage fds
// (descriptors received with a bad record are closed).
Status ReceiveRecord(int sock, int timeout_ms, WireMessage* out, bool* closed);

}  // namespace allgo::sshd
