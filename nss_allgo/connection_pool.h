// ConnectionPool: a few idle MysqlConnection objects reused across lookups.
//
// One connection per lookup in flight, never one lock across a round trip: a thread takes a
// connection out (Acquire), queries without holding any lock, and gives it back (Release).
// At most `max_idle` connections are kept; extra ones made under a burst of concurrent
// lookups are closed on release.
//
// Each connection is tagged with the config generation it was made for (a reloaded config
// may point at another server) and with the fork generation of the process that made it (a
// counter the module's pthread_atfork child handler increments: no getpid() system call,
// which glibc no longer caches): after fork() the child finds the parent's connections stale
// and drops them — MysqlConnection abandons a connection in a forked child without sending
// anything on the shared socket — so a child never talks over its parent's connection.
//
// Not thread-safe: the owner (Module) calls it under its mutex. Connections leaving the pool
// are returned to the caller to be destroyed *outside* the lock (closing one may write to
// the network).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "allgo/database.h"

namespace allgo::nss {

class ConnectionPool {
 public:
  explicit ConnectionPool(size_t max_idle = 4) : max_idle_(max_idle) {}

  // An idle connection made for config `generation` in this process (`fork_generation`), or
  // nullptr (the caller then makes a new one outside the lock). Stale idle connections are
  // moved to *drop.
  std::unique_ptr<MysqlConnection> TakeIdle(uint64_t generation, uint64_t fork_generation,
                                            std::vector<std::unique_ptr<MysqlConnection>>* drop);
  // Keeps `connection` for reuse when it is current and there is room; otherwise moves it
  // to *drop.
  void Release(std::unique_ptr<MysqlConnection> connection, uint64_t generation,
               uint64_t fork_generation, std::vector<std::unique_ptr<MysqlConnection>>* drop);
  // Moves every idle connection to *drop (config changed).
  void Clear(std::vector<std::unique_ptr<MysqlConnection>>* drop);

 private:
  struct Idle {
    std::unique_ptr<MysqlConnection> connection;
    uint64_t generation;
    uint64_t fork_generation;
  };
  size_t max_idle_;
  std::vector<Idle> idle_;
};

}  // namespace allgo::nss
