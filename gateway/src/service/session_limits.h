// How many sessions the gateway runs at once: overall, per webapp uid and per owner (all of
// one owner's webapps together), so that one webapp, one owner or a process looping on
// connect cannot take every thread and Engine API connection. A refused session gets a clear
// line; the others go on.
//
// The total and per-uid limits are checked by the accept loop, before any thread exists for
// the connection (docs/gateway.md "Limits"); the per-owner one once the session knows its
// webapp's row.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>

namespace allgo::gateway {

class SessionLimits {
 public:
  // Each session holds a thread, two sockets and (while it starts) an Engine API
  // connection. 20 parallel sessions of one webapp are an ordinary scp/rsync workload.
  static constexpr unsigned kMaxTotal = 1000;
  static constexpr unsigned kMaxPerUid = 64;

  // [docker] max_sessions_per_owner.
  explicit SessionLimits(unsigned max_per_owner) : max_per_owner_(max_per_owner) {}
  unsigned max_per_owner() const { return max_per_owner_; }

  // Held for a session's life; released by its destructor.
  class Slot {
   public:
    enum class Kind { kUid, kOwner };
    Slot() = default;
    Slot(SessionLimits* owner, Kind kind, uint64_t key) : owner_(owner), kind_(kind), key_(key) {}
    Slot(Slot&& other) noexcept : owner_(other.owner_), kind_(other.kind_), key_(other.key_) { other.owner_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    ~Slot();
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    SessionLimits* owner_ = nullptr;
    Kind kind_ = Kind::kUid;
    uint64_t key_ = 0;
  };

  // A session of `uid` (counts in the total): an empty Slot when a limit is reached
  // (*total_full says which one).
  Slot Acquire(uid_t uid, bool* total_full);
  // One more session of the webapps of `owner_id` (users.id): an empty Slot at max_per_owner.
  Slot AcquireOwner(uint32_t owner_id);

 private:
  void Release(Slot::Kind kind, uint64_t key);
  const unsigned max_per_owner_;
  std::mutex mu_;
  unsigned total_ = 0;                    // guarded by mu_
  std::map<uint64_t, unsigned> by_uid_;    // guarded by mu_
  std::map<uint64_t, unsigned> by_owner_;  // guarded by mu_
};

}  // namespace allgo::gateway
