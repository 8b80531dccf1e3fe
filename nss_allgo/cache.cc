#include "cache.h"

namespace allgo::nss {

void PasswdCache::SetTtl(std::chrono::seconds ttl) {
  if (ttl != ttl_) Clear();
  ttl_ = ttl;
}

const PasswdRecord* PasswdCache::FindByName(std::string_view name, Clock::time_point now) const {
  const auto it = uid_by_name_.find(name);
  if (it == uid_by_name_.end()) return nullptr;
  return FindByUid(it->second, now);
}

const PasswdRecord* PasswdCache::FindByUid(uid_t uid, Clock::time_point now) const {
  const auto it = by_uid_.find(uid);
  if (it == by_uid_.end() || now >= it->second.expires) return nullptr;
  return &it->second.record;
}

void PasswdCache::Insert(const PasswdRecord& record, Clock::time_point now) {
  if (ttl_.count() <= 0 || max_entries_ == 0) return;
  // A webapp renamed in the database keeps its uid: the old name must go with the old entry.
  Erase(record.uid);
  const auto name_it = uid_by_name_.find(record.name);
  if (name_it != uid_by_name_.end()) Erase(name_it->second);
  if (by_uid_.size() >= max_entries_) DropExpired(now);
  if (by_uid_.size() >= max_entries_) Clear();
  by_uid_[record.uid] = Entry{record, now + ttl_};
  uid_by_name_[record.name] = record.uid;
}

void PasswdCache::Clear() {
  by_uid_.clear();
  uid_by_name_.clear();
}

void PasswdCache::Erase(uid_t uid) {
  const auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) return;
  uid_by_name_.erase(it->second.record.name);
  by_uid_.erase(it);
}

void PasswdCache::DropExpired(Clock::time_point now) {
  for (auto it = by_uid_.begin(); it != by_uid_.end();) {
    if (now >= it->second.expires) {
      uid_by_name_.erase(it->second.record.name);
      it = by_uid_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace allgo::nss
