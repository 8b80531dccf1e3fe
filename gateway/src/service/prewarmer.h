// Prewarm ([docker] prewarm = yes): a spare in every running container, so that even a
// webapp's first login (or one after a long pause) takes a started agent instead of paying the
// engine's exec. docs/gateway.md "Warm spares".
//
// A background thread runs a round at start and then prewarm_every seconds after the last one
// ended. A round:
//   1. lists the webapps ([queries] webapp_list through WebappDirectory: the same validity and
//      identity rules as a login's FindByUid; a row another account source owns is never
//      listed), on a database connection of its own, so a round never queues a login;
//   2. for each, with at most kParallel at a time: a webapp whose spare is alive is kept
//      (SparePool::Keep, no Engine API call); otherwise its container is located
//      (SandboxLocator: the same node and container a login would get, its cache, [queries]
//      sandbox_location) and a spare made there (SparePool::Prewarm, within [docker] spares).
//      A webapp without a running container (absent, stopped, node not answering) gets none;
//   3. logs ONE summary line, only when the counts differ from the last round's or a spare was
//      made (nothing per webapp: a stopped container is the normal state of most webapps).
//
// Each step is bounded by api_timeout (a Locate, 2 for a spare's exec) and the database's
// connect_timeout, so a node that never answers costs a round some time and no login
// anything. Stop() ends the thread: the round stops between webapps, waiting only for calls in
// flight (at most kParallel of them, each bounded as above; none when the nodes answer).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "allgo/config.h"
#include "service/sandbox_locator.h"
#include "service/spare_pool.h"
#include "service/webapp_lookup.h"

namespace allgo::gateway {

class Prewarmer {
 public:
  static constexpr unsigned kParallel = 8;  // webapps located / spares made at once per round

  // Starts the thread. `locator` and `pool` outlive this object.
  Prewarmer(const Config& config, SandboxLocator* locator, SparePool* pool);
  ~Prewarmer();  // Stop()
  Prewarmer(const Prewarmer&) = delete;
  Prewarmer& operator=(const Prewarmer&) = delete;

  // Ends the round in progress between webapps and joins the thread. Idempotent.
  void Stop();

 private:
  // What one round found; a summary line is logged when it differs from the last round's.
  struct Counts {
    size_t listed = 0;
    size_t with_spare = 0;    // kept or made
    size_t made = 0;          // made this round
    size_t no_container = 0;  // absent, stopped, or its node did not answer
    size_t failed = 0;        // located, but the exec failed
    size_t full = 0;          // no room left within [docker] spares
    bool operator==(const Counts& o) const {
      return listed == o.listed && with_spare == o.with_spare && no_container == o.no_container &&
             failed == o.failed && full == o.full;  // `made` is a change in itself
    }
  };

  void Loop();
  void Round();
  bool stopping();

  const std::chrono::seconds every_;
  const std::chrono::seconds keep_for_;  // a spare's lease: covers a late next round
  SandboxLocator* locator_;
  SparePool* pool_;
  WebappLookup lookup_;  // its own database connection (only this thread uses it)
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  bool have_last_ = false;  // this thread only
  Counts last_;             // this thread only
  std::string last_error_;  // this thread only: the listing's error, logged once while it lasts
  std::thread thread_;
};

}  // namespace allgo::gateway
