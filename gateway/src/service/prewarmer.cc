#include "service/prewarmer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <vector>

namespace allgo::gateway {

Prewarmer::Prewarmer(const Config& config, SandboxLocator* locator, SparePool* pool)
    : every_(config.docker.prewarm_every),
      // Three rounds and the slowest steps of one: a round that runs late does not let its
      // spares lapse into the idle rule (which would close them and make them again).
      keep_for_(3 * config.docker.prewarm_every + 2 * config.docker.api_timeout),
      locator_(locator),
      pool_(pool),
      lookup_(config) {
  try {
    thread_ = std::thread([this] { Loop(); });
  } catch (const std::system_error& e) {
    spdlog::error("prewarm is off: cannot start its thread: {}", e.what());
  }
}

Prewarmer::~Prewarmer() { Stop(); }

void Prewarmer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Prewarmer::stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void Prewarmer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Round();
    lock.lock();
    wake_.wait_for(lock, every_, [this] { return stopping_; });
  }
}

void Prewarmer::Round() {
  std::vector<Webapp> webapps;
  if (Status s = lookup_.List(&webapps); !s.ok()) {
    // Logged when it starts (or changes), not every round while the database stays down.
    if (s.message() != last_error_) spdlog::error("prewarm: the webapps cannot be listed: {}", s.message());
    last_error_ = s.message();
    return;
  }
  if (!last_error_.empty()) spdlog::info("prewarm: the webapps can be listed again");
  last_error_.clear();

  const auto until = std::chrono::steady_clock::now() + keep_for_;
  std::atomic<size_t> next{0}, with_spare{0}, made{0}, no_container{0}, failed{0}, full{0};
  auto work = [&] {
    while (!stopping()) {
      const size_t i = next++;
      if (i >= webapps.size()) return;
      const Webapp& webapp = webapps[i];
      if (pool_->Keep(webapp.id, until)) {
        ++with_spare;
        continue;
      }
      SandboxLocation where;
      if (!locator_->Locate(webapp, &where).ok()) {
        ++no_container;  // the normal state of a webapp nobody uses: no line for it
        continue;
      }
      switch (pool_->Prewarm(webapp.id, where, "webapp " + webapp.docker_name, until)) {
        case PrewarmResult::kMade:
          ++made;
          ++with_spare;
          break;
        case PrewarmResult::kHad:
          ++with_spare;
          break;
        case PrewarmResult::kFull:
          ++full;
          break;
        case PrewarmResult::kFailed:
          ++failed;
          break;
        case PrewarmResult::kStopping:
          return;
      }
    }
  };
  std::vector<std::thread> workers;
  const size_t n = std::min<size_t>(kParallel, webapps.size());
  for (size_t i = 1; i < n; ++i) {
    try {
      workers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // a task limit: fewer workers (this thread is one), a slower round
    }
  }
  work();
  for (std::thread& t : workers) t.join();
  if (stopping()) return;

  Counts c{webapps.size(), with_spare, made, no_container, failed, full};
  if (have_last_ && c == last_ && c.made == 0) return;
  spdlog::info("prewarm: {} webapp(s) listed; {} with a spare ({} made now); {} without a running container{}{}",
               c.listed, c.with_spare, c.made, c.no_container,
               c.failed == 0 ? "" : "; " + std::to_string(c.failed) + " whose spare's exec failed (--log-level debug says why)",
               c.full == 0 ? "" : "; " + std::to_string(c.full) + " left without: [docker] spares is full");
  last_ = c;
  have_last_ = true;
}

}  // namespace allgo::gateway
