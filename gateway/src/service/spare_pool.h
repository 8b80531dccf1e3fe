// Warm spares: one pre-started `allgo-sandbox-agent --stdio` exec per recently used webapp,
// so that its next login takes it at once instead of paying the engine's exec (create +
// start, ~60 ms on a loaded 2-core machine: most of what the gateway adds to a login).
//
// After a session got its exec, Replenish starts, in the background, one spare exec in the
// same container: created, started, its stream held by the pool; the agent waits for its
// `open` (it was given a long --handshake-timeout, spares only). The webapp's next session
// Takes it and relays as with a fresh exec; then a new spare is made.
//
// Who may get a spare: the spare is filed under the webapp id of the session that caused it
// and the node and container it runs in. Take hands it only to a session of that same webapp
// id whose location is that same node and container (the session's uid is the kernel's
// SO_PEERCRED, its webapp from the database, as for a fresh exec): a spare of one webapp is
// never handed to another. A spare whose stream is readable (an idle agent sends nothing, so
// that is its end: container restarted, stopped or removed, node gone) or that was made for
// another location is closed and the session execs fresh.
//
// Prewarm ([docker] prewarm, service/prewarmer.h): Keep renews a webapp's spare for a while,
// and Prewarm makes one in the caller's thread (bounded by the caller's parallelism, not one
// thread per spare); a spare so kept is not closed as unused until its keep_until passes
// (otherwise every prewarmed spare would churn every max_idle), but a dead one is closed all
// the same. A spare made after a login (Replenish) is kept only once a round renews it.
//
// Bounds: at most one spare (made or being made) per webapp, at most max_total in all; a
// spare unused for max_idle (and not kept) is closed, and so is a dead one (the reaper looks
// every kReapEvery, or max_idle / 2 when that is shorter); Drop closes a webapp's spare when its location is forgotten; Shutdown (and the
// destructor) closes them all, waiting for spares being made (each at most 2 api_timeouts).
// Closing a spare's stream ends its agent (stdin EOF).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "allgo/engine_client.h"
#include "service/sandbox_locator.h"

namespace allgo::gateway {

struct SpareLimits {
  size_t max_total = 256;                   // 0: no spares at all
  std::chrono::seconds max_idle{300};       // closed when unused this long
  std::chrono::milliseconds wait_for_making{3000};  // Take waits this long for one being made
};

struct Spare {
  Node* node = nullptr;
  std::string container;
  std::string exec_id;
  std::unique_ptr<engine::ExecStream> stream;
  std::chrono::steady_clock::time_point made;
  std::chrono::steady_clock::time_point kept_until;  // prewarm: not closed as unused before this
};

// What Prewarm did.
enum class PrewarmResult {
  kMade,      // a spare is ready at that location
  kHad,       // the webapp already had a live spare (or one being made): kept
  kFull,      // max_total reached, or spares off
  kFailed,    // the engine refused or did not answer (logged at debug level)
  kStopping,  // the pool is shutting down
};

class SparePool {
 public:
  static constexpr std::chrono::seconds kReapEvery{30};  // at most; max_idle / 2 when shorter

  // `exec`: the spare's command (the agent with --stdio and its long --handshake-timeout).
  SparePool(engine::ExecOptions exec, SpareLimits limits);
  ~SparePool();  // Shutdown()
  SparePool(const SparePool&) = delete;
  SparePool& operator=(const SparePool&) = delete;

  // The webapp's spare if it was made at `where` and is alive; nullptr otherwise (*why_not
  // says why, "" when there simply was none). Waits up to wait_for_making for a spare being
  // made for this webapp right now.
  std::unique_ptr<Spare> Take(uint32_t webapp_id, const SandboxLocation& where, std::string* why_not);
  // Starts making a spare for the webapp at `where` in the background, unless it has one or
  // one is being made, the pool is full, off or stopping. `label` names it in the log.
  void Replenish(uint32_t webapp_id, const SandboxLocation& where, const std::string& label);
  // Prewarm, without an Engine API call: when the webapp has a live spare (or one is being
  // made), keeps it until `until` and returns true. A dead one is closed: false.
  bool Keep(uint32_t webapp_id, std::chrono::steady_clock::time_point until);
  // Prewarm: makes the webapp's spare at `where` in the calling thread (at most 2
  // api_timeouts), kept until `until`. A spare it has elsewhere is closed first.
  PrewarmResult Prewarm(uint32_t webapp_id, const SandboxLocation& where, const std::string& label,
                        std::chrono::steady_clock::time_point until);
  // Closes the webapp's spare and discards the one being made.
  void Drop(uint32_t webapp_id);
  // Stops making, waits for the makers, closes every spare. Idempotent.
  void Shutdown();

 private:
  struct Making {
    Node* node = nullptr;
    std::string container;
    bool dropped = false;
    std::chrono::steady_clock::time_point kept_until;
  };
  // Makes the spare recorded in making_ (the caller incremented makers_); false when it could
  // not be made or is not wanted any more. `quiet`: its success and failure are debug lines
  // (a prewarm round logs a summary instead).
  bool Make(uint32_t webapp_id, SandboxLocation where, std::string label, bool quiet);
  void Reap();

  const engine::ExecOptions exec_;
  const SpareLimits limits_;
  const std::chrono::seconds reap_every_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint32_t, std::unique_ptr<Spare>> spares_;  // guarded by mu_; by webapp id
  std::map<uint32_t, Making> making_;                  // guarded by mu_
  unsigned makers_ = 0;                                // threads in Make, guarded by mu_
  bool stopping_ = false;                              // guarded by mu_
  std::thread reaper_;
};

// True while an idle exec stream has neither ended nor sent anything (a TLS stream may
// carry protocol records that are no data: those are read and do not count).
bool SpareIsAlive(engine::ExecStream& stream);

}  // namespace allgo::gateway
