// The database check behind GET /healthz, in a process of its own (docs/security.md, "The
// metrics endpoint"). The metrics process parses HTTP from the network, so it must not hold
// the [mysql] password; the health child holds it but reads nothing from the network:
//
//   listener (root) ── fork ──▶ health child ([sshd] lookup_user, no_new_privs)
//        │                        SELECT 1 every 2 s ──▶ HealthBoard (shared page)
//        └──────────── fork ──▶ metrics process ([sshd] metrics_user, password scrubbed)
//                                 GET /healthz ◀── reads the page (mapped read-only)
//
// The board carries one verdict and the time it was made: /healthz answers 200 only for a
// recent "the database answered". A stale verdict (the health child ended, or a check hangs
// past every database timeout) is a 503, so the metrics process never trusts an old answer.
// Nothing flows from the metrics process to the health child: polling cannot make the
// database busier (one check every 2 s, whatever the polling).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "allgo/config.h"
#include "allgo/status.h"

namespace allgo::sshd {

// One shared, anonymous page (MAP_SHARED), inherited across fork. Lock-free: one writer (the
// health child), readers on any thread.
class HealthBoard {
 public:
  static constexpr long long kIntervalMs = 2000;  // one database check per interval

  // Maps the page; nullptr when the kernel refuses.
  static std::unique_ptr<HealthBoard> Create(const MysqlConfig& mysql);
  ~HealthBoard();
  HealthBoard(const HealthBoard&) = delete;
  HealthBoard& operator=(const HealthBoard&) = delete;

  // The health child: the outcome of the check that ended at now_ms (CLOCK_MONOTONIC).
  void Publish(bool healthy, long long now_ms);
  // The metrics process: whether a check that ended at most StaleAfterMs() ago found the
  // database answering.
  bool Healthy(long long now_ms) const;
  // The metrics process only reads: its mapping becomes PROT_READ (a stray write faults).
  Status MakeReadOnly();
  // Longer than one interval plus the slowest check the database timeouts allow
  // (connect, write, read: 3 x [mysql] connect_timeout), plus a second of slack.
  long long StaleAfterMs() const { return stale_after_ms_; }

 private:
  struct Page {
    std::atomic<long long> checked_ms;  // 0: no check yet
    std::atomic<int> healthy;
  };
  HealthBoard(Page* page, long long stale_after_ms) : page_(page), stale_after_ms_(stale_after_ms) {}
  Page* page_;
  long long stale_after_ms_;
};

// Forks the health child: it drops to uid/gid (checked: ids, no supplementary groups, no way
// back), sets no_new_privs and its parent-death signal (after the drop, which clears it),
// then checks the database every kIntervalMs and publishes each verdict on `board`. Errors
// of the check go to the log when they change, never to a client. *pid is the child once it
// made its first check, so /healthz is truthful from the start; an error when the drop
// failed. The caller's memory is not changed; the child keeps only config.mysql in use.
Status StartHealthChild(const Config& config, HealthBoard* board, uid_t uid, gid_t gid, pid_t* pid);

}  // namespace allgo::sshd
