// PasswdCache: the module's short positive cache of webapp entries.
//
// `ls -l` on a folder of 5,000 files owned by webapps asks for the same few uids thousands of
// times; without a cache each question is a database round trip. Entries found in the
// database are kept for `ttl` (config [nss] cache_ttl; 0 disables the cache) and found by
// name or by uid. Only positive answers are cached: a webapp created a second ago must not
// stay invisible, and negative answers are what attackers can generate in unbounded numbers.
//
// Bounded: at most `max_entries` records. When full, expired entries are dropped first; if
// that is not enough the whole cache is dropped (cheap, rare, and never wrong: a miss only
// costs a query).
//
// A hit copies nothing and allocates nothing: Find* returns the cached record itself (the
// caller packs it into glibc's buffer while it still holds the lock), and a name is looked up
// as a string_view (transparent hash), not as a temporary std::string.
//
// Not thread-safe: the owner (Module) calls it under its mutex; a returned record is valid
// until the next non-const call. Time is passed in by the caller (CoarseClock), which keeps
// this class a pure data structure that unit tests can drive with any time point.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "coarse_clock.h"
#include "records.h"

namespace allgo::nss {

class PasswdCache {
 public:
  using Clock = CoarseClock;

  explicit PasswdCache(size_t max_entries = 4096) : max_entries_(max_entries) {}

  // ttl == 0 turns the cache off (and empties it).
  void SetTtl(std::chrono::seconds ttl);

  // The unexpired entry, or nullptr.
  const PasswdRecord* FindByName(std::string_view name, Clock::time_point now) const;
  const PasswdRecord* FindByUid(uid_t uid, Clock::time_point now) const;
  void Insert(const PasswdRecord& record, Clock::time_point now);
  void Clear();

  size_t size() const { return by_uid_.size(); }

 private:
  struct Entry {
    PasswdRecord record;
    Clock::time_point expires;
  };
  // std::hash<std::string_view> for std::string and string_view keys alike (heterogeneous
  // lookup: find(string_view) without building a std::string).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const noexcept {
      return std::hash<std::string_view>{}(name);
    }
  };
  void Erase(uid_t uid);
  void DropExpired(Clock::time_point now);

  size_t max_entries_;
  std::chrono::seconds ttl_{0};
  std::unordered_map<uid_t, Entry> by_uid_;             // owns the records
  std::unordered_map<std::string, uid_t, NameHash, std::equal_to<>>
      uid_by_name_;  // index into by_uid_
};

}  // namespace allgo::nss
