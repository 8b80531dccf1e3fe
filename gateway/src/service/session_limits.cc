#include "service/session_limits.h"

namespace allgo::gateway {

SessionLimits::Slot::~Slot() {
  if (owner_ != nullptr) owner_->Release(uid_);
}

SessionLimits::Slot SessionLimits::Acquire(uid_t uid, bool* total_full) {
  std::lock_guard<std::mutex> lock(mu_);
  *total_full = total_ >= kMaxTotal;
  if (*total_full) return Slot();
  unsigned& mine = by_uid_[uid];
  if (mine >= kMaxPerUid) return Slot();
  ++mine;
  ++total_;
  return Slot(this, uid);
}

void SessionLimits::Release(uid_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  --total_;
  auto it = by_uid_.find(uid);
  if (it != by_uid_.end() && --it->second == 0) by_uid_.erase(it);
}

}  // namespace allgo::gateway
