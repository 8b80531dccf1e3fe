// A FIFO of bytes for the data paths (the agent's stdio mode, the sandbox gateway's relay):
// filled at the back, written out and consumed from the front.
//
// Why not a std::string: growing one zero-fills the new bytes (a read into 64 KiB of room
// pays a 64 KiB memset first), and consuming from its front (erase) moves everything that is
// left on every partial write. Here room at the back is handed out uninitialised (Grow) and
// consuming only moves a head index; the bytes are moved down to the start only when the
// back has no room for what comes next, so each byte is moved at most about once while
// queued, and not at all when the queue drains completely between fills (the usual case).
// Memory: the buffer doubles when the queued bytes pass half of it, so it ends at two to
// four times the most its owner lets it hold (fill + what it grows for at once); it never
// shrinks: a session's buffers live as long as the session.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace allgo::bridge {

class ByteQueue {
 public:
  ByteQueue() = default;
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;
  ByteQueue(ByteQueue&& other) noexcept { *this = std::move(other); }
  ByteQueue& operator=(ByteQueue&& other) noexcept {
    buf_ = std::move(other.buf_);
    capacity_ = std::exchange(other.capacity_, 0);
    head_ = std::exchange(other.head_, 0);
    tail_ = std::exchange(other.tail_, 0);
    return *this;
  }

  bool empty() const { return head_ == tail_; }
  size_t size() const { return tail_ - head_; }
  const char* data() const { return buf_.get() + head_; }
  std::string_view view() const { return {data(), size()}; }
  size_t capacity() const { return capacity_; }

  // Drops n (<= size()) bytes from the front.
  void Consume(size_t n) {
    head_ += std::min(n, size());
    if (head_ == tail_) head_ = tail_ = 0;  // empty: the next fill starts at the beginning
  }
  void clear() { head_ = tail_ = 0; }

  void Append(std::string_view more) {
    if (more.empty()) return;
    std::memcpy(Grow(more.size()), more.data(), more.size());
  }

  // n bytes of room at the back, uninitialised, counted as queued: the caller fills them
  // (e.g. read() into them) and gives back what it did not fill with Shrink.
  char* Grow(size_t n) {
    Reserve(n);
    tail_ += n;
    return buf_.get() + tail_ - n;
  }
  // Gives back the last n (<= what the last Grow handed out) bytes.
  void Shrink(size_t n) {
    tail_ -= std::min(n, size());
    if (head_ == tail_) head_ = tail_ = 0;
  }

 private:
  void Reserve(size_t n) {
    if (capacity_ - tail_ >= n) return;
    const size_t used = size();
    if (capacity_ - used >= n && used <= capacity_ / 2) {
      // Moving the queued bytes down makes the room. They are at most half the buffer, so
      // at least as many bytes went through since the last move: each byte is moved at
      // most about once. (A queue whose owner keeps it under a bound B stays at 2B.)
      std::memmove(buf_.get(), buf_.get() + head_, used);
    } else {
      size_t capacity = std::max<size_t>({capacity_ * 2, (used + n) * 2, kMinCapacity});
      std::unique_ptr<char[]> bigger(new char[capacity]);  // uninitialised on purpose
      if (used > 0) std::memcpy(bigger.get(), buf_.get() + head_, used);
      buf_ = std::move(bigger);
      capacity_ = capacity;
    }
    head_ = 0;
    tail_ = used;
  }

  static constexpr size_t kMinCapacity = 4 * 1024;  // a control connection stays small
  std::unique_ptr<char[]> buf_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

}  // namespace allgo::bridge
