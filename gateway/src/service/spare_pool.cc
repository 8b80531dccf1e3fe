#include "service/spare_pool.h"

#include <poll.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <system_error>
#include <vector>

namespace allgo::gateway {

bool SpareIsAlive(engine::ExecStream& stream) {
  for (int round = 0; round < 4; ++round) {
    pollfd p{stream.fd(), POLLIN, 0};
    if (poll(&p, 1, 0) < 0) return false;
    if (p.revents & (POLLHUP | POLLERR)) return false;
    if (!(p.revents & POLLIN) && stream.Buffered() == 0) return true;
    char buf[4096];
    size_t got = 0;
    bool eof = false;
    if (!stream.ReadAvailable(buf, sizeof buf, &got, &eof).ok() || eof || got > 0) return false;
  }
  return false;  // readable round after round without data: not an idle agent
}

SparePool::SparePool(engine::ExecOptions exec, SpareLimits limits)
    : exec_(std::move(exec)),
      limits_(limits),
      // A short max_idle is then honoured within half of itself, not kReapEvery late.
      reap_every_(std::max(std::chrono::seconds(1), std::min(kReapEvery, limits.max_idle / 2))) {
  if (limits_.max_total == 0) return;
  try {
    reaper_ = std::thread([this] { Reap(); });
  } catch (const std::system_error& e) {
    // A task limit at start: spares are still bounded by max_total and a dead one is dropped
    // when taken; they are just no longer closed after spare_idle.
    spdlog::error("cannot start the thread that closes unused spare execs: {}; they stay until used", e.what());
  }
}

SparePool::~SparePool() { Shutdown(); }

std::unique_ptr<Spare> SparePool::Take(uint32_t webapp_id, const SandboxLocation& where, std::string* why_not) {
  why_not->clear();
  std::unique_ptr<Spare> spare;
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, limits_.wait_for_making, [&] { return stopping_ || making_.count(webapp_id) == 0; });
    auto it = spares_.find(webapp_id);
    if (it == spares_.end()) return nullptr;
    spare = std::move(it->second);
    spares_.erase(it);
  }
  // Closed (outside the lock) by returning without it.
  if (spare->node != where.node || spare->container != where.container) {
    *why_not = "its spare was made on node " + spare->node->name + " container " + spare->container;
    return nullptr;
  }
  if (!SpareIsAlive(*spare->stream)) {
    *why_not = "its spare exec " + spare->exec_id.substr(0, 12) + " has ended (container restarted or stopped?)";
    return nullptr;
  }
  return spare;
}

void SparePool::Replenish(uint32_t webapp_id, const SandboxLocation& where, const std::string& label) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || limits_.max_total == 0 || spares_.count(webapp_id) != 0 || making_.count(webapp_id) != 0) return;
  if (spares_.size() + making_.size() >= limits_.max_total) return;
  making_[webapp_id] = Making{where.node, where.container, false, {}};
  ++makers_;
  try {
    std::thread([this, webapp_id, where, label] { Make(webapp_id, where, label, false); }).detach();
  } catch (const std::system_error& e) {
    // A task limit: this login goes on without a spare for the next one.
    making_.erase(webapp_id);
    --makers_;
    changed_.notify_all();
    spdlog::warn("{}: no spare made: cannot start a thread: {}", label, e.what());
  }
}

bool SparePool::Keep(uint32_t webapp_id, std::chrono::steady_clock::time_point until) {
  std::unique_ptr<Spare> discard;  // closed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  if (auto m = making_.find(webapp_id); m != making_.end() && !m->second.dropped) {
    m->second.kept_until = std::max(m->second.kept_until, until);
    return true;
  }
  auto it = spares_.find(webapp_id);
  if (it == spares_.end()) return false;
  if (!SpareIsAlive(*it->second->stream)) {
    discard = std::move(it->second);
    spares_.erase(it);
    return false;
  }
  it->second->kept_until = std::max(it->second->kept_until, until);
  return true;
}

PrewarmResult SparePool::Prewarm(uint32_t webapp_id, const SandboxLocation& where, const std::string& label,
                                 std::chrono::steady_clock::time_point until) {
  std::unique_ptr<Spare> discard;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return PrewarmResult::kStopping;
    if (limits_.max_total == 0) return PrewarmResult::kFull;
    if (making_.count(webapp_id) != 0) return PrewarmResult::kHad;
    if (auto it = spares_.find(webapp_id); it != spares_.end()) {
      if (it->second->node == where.node && it->second->container == where.container &&
          SpareIsAlive(*it->second->stream)) {
        it->second->kept_until = std::max(it->second->kept_until, until);
        return PrewarmResult::kHad;
      }
      discard = std::move(it->second);  // dead, or made where the webapp no longer runs
      spares_.erase(it);
    }
    if (spares_.size() + making_.size() >= limits_.max_total) return PrewarmResult::kFull;
    making_[webapp_id] = Making{where.node, where.container, false, until};
    ++makers_;
  }
  discard.reset();
  return Make(webapp_id, where, label, true) ? PrewarmResult::kMade : PrewarmResult::kFailed;
}

bool SparePool::Make(uint32_t webapp_id, SandboxLocation where, std::string label, bool quiet) {
  auto spare = std::make_unique<Spare>();
  spare->node = where.node;
  spare->container = where.container;
  Status s = where.node->client->CreateExec(where.container, exec_, &spare->exec_id);
  if (s.ok()) s = where.node->client->StartExec(spare->exec_id, false, &spare->stream);
  spare->made = std::chrono::steady_clock::now();
  const auto level = quiet ? spdlog::level::debug : spdlog::level::info;
  if (!s.ok()) {
    spdlog::log(quiet ? level : spdlog::level::warn, "{}: no spare made on node {} container {}: {}", label,
                where.node->name, where.container, s.message());
  }
  std::unique_ptr<Spare> discard;  // closed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  auto it = making_.find(webapp_id);
  const bool dropped = it == making_.end() || it->second.dropped;
  if (it != making_.end()) {
    spare->kept_until = it->second.kept_until;
    making_.erase(it);
  }
  const bool kept = s.ok() && !dropped && !stopping_;
  if (kept) {
    spdlog::log(level, "{}: spare exec {} ready on node {} container {}", label, spare->exec_id.substr(0, 12),
                where.node->name, where.container);
    spares_[webapp_id] = std::move(spare);
  } else {
    discard = std::move(spare);
  }
  --makers_;
  changed_.notify_all();
  return kept;
}

void SparePool::Drop(uint32_t webapp_id) {
  std::unique_ptr<Spare> discard;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = spares_.find(webapp_id);
  if (it != spares_.end()) {
    discard = std::move(it->second);
    spares_.erase(it);
  }
  auto m = making_.find(webapp_id);
  if (m != making_.end()) m->second.dropped = true;
}

void SparePool::Reap() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    changed_.wait_for(lock, reap_every_, [this] { return stopping_; });
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::unique_ptr<Spare>> closing;
    for (auto it = spares_.begin(); it != spares_.end();) {
      const bool old = now - it->second->made >= limits_.max_idle && now >= it->second->kept_until;
      if (old || !SpareIsAlive(*it->second->stream)) {
        spdlog::info("spare exec {} on node {} container {} closed: {}", it->second->exec_id.substr(0, 12),
                     it->second->node->name, it->second->container, old ? "unused too long" : "it has ended");
        closing.push_back(std::move(it->second));
        it = spares_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    closing.clear();  // the agents see stdin end
    lock.lock();
  }
}

void SparePool::Shutdown() {
  std::map<uint32_t, std::unique_ptr<Spare>> closing;
  {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    changed_.notify_all();
    changed_.wait(lock, [this] { return makers_ == 0; });
    closing.swap(spares_);
  }
  if (reaper_.joinable()) reaper_.join();
  if (!closing.empty()) spdlog::info("closing {} spare exec(s)", closing.size());
}

}  // namespace allgo::gateway
