#include "service/session_limits.h"

namespace allgo::gateway {

SessionLimits::Slot::~Slot() {
  if (owner_ != nullptr) owner_->Release(kind_, key_);
}

SessionLimits::Slot SessionLimits::Acquire(uid_t uid, bool* total_full) {
  std::lock_guard<std::mutex> lock(mu_);
  *total_full = total_ >= kMaxTotal;
  if (*total_full) return Slot();
  unsigned& mine = by_uid_[uid];
  if (mine >= kMaxPerUid) return Slot();
  ++mine;
  ++total_;
  return Slot(this, Slot::Kind::kUid, uid);
}

SessionLimits::Slot SessionLimits::AcquireOwner(uint32_t owner_id) {
  std::lock_guard<std::mutex> lock(mu_);
  unsigned& theirs = by_owner_[owner_id];
  if (theirs >= max_per_owner_) return Slot();
  ++theirs;
  return Slot(this, Slot::Kind::kOwner, owner_id);
}

void SessionLimits::Release(Slot::Kind kind, uint64_t key) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<uint64_t, unsigned>& counts = kind == Slot::Kind::kUid ? by_uid_ : by_owner_;
  if (kind == Slot::Kind::kUid) --total_;
  auto it = counts.find(key);
  if (it != counts.end() && --it->second == 0) counts.erase(it);
}

}  // namespace allgo::gateway
