// How many sessions the gateway runs at once, overall and per webapp uid, so that one webapp
// (or a process looping on connect) cannot take every thread and Engine API connection.
// A refused session gets a clear line; the others go on.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>

namespace allgo::gateway {

class SessionLimits {
 public:
  // Each session holds a thread, two sockets and (while it starts) an Engine API
  // connection. 20 parallel sessions of one webapp are an ordinary scp/rsync workload.
  static constexpr unsigned kMaxTotal = 1000;
  static constexpr unsigned kMaxPerUid = 64;

  // Held for a session's life; released by its destructor.
  class Slot {
   public:
    Slot() = default;
    Slot(SessionLimits* owner, uid_t uid) : owner_(owner), uid_(uid) {}
    Slot(Slot&& other) noexcept : owner_(other.owner_), uid_(other.uid_) { other.owner_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    ~Slot();
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    SessionLimits* owner_ = nullptr;
    uid_t uid_ = 0;
  };

  // An empty Slot when a limit is reached (*total_full says which one).
  Slot Acquire(uid_t uid, bool* total_full);

 private:
  void Release(uid_t uid);
  std::mutex mu_;
  unsigned total_ = 0;               // guarded by mu_
  std::map<uid_t, unsigned> by_uid_;  // guarded by mu_
};

}  // namespace allgo::gateway
