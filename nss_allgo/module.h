// Module: the per-process state of the NSS module and the C++ API the glibc entry points
// (entry_points.cc) translate to.
//
// State, all behind one mutex that is never held across a system call that can block:
//  - the config, loaded on first use and re-checked at most once per kConfigRecheck (a stat()
//    comparing device, inode, size, mtime and ctime; reloaded when they changed);
//  - a small pool of database connections (connection_pool.h): lookups in different threads
//    run their round trips in parallel;
//  - the positive cache of webapp entries (cache.h), emptied when the config changes;
//  - the getpwent/getgrent cursors. A getpwnam/getpwuid in the middle of an enumeration
//    never touches them, and a cursor only moves after the entry was packed successfully
//    (Peek → pack → Advance), so ERANGE never skips an entry.
//
// The hit path (getpwnam_r/getpwuid_r of a cached webapp) makes no system call: one coarse
// clock read (vDSO), the mutex (a futex call only if another thread holds it at that very
// moment), a hash lookup and the packing of the cached record straight into the caller's
// buffer under the lock. That is why the config is re-checked once per kConfigRecheck rather
// than on every call: a changed config reaches a running process within that second (a new
// process reads it at once), and a lookup that goes to the database always runs with a config
// checked within the last second.
//
// Fork: pthread_atfork handlers take the mutex before fork() and release it in both parent
// and child, so the child never inherits a mutex locked by a thread that does not exist
// there. The child handler also starts a new fork generation: pooled connections are tagged
// with the generation that opened them, and the child drops its parent's (no getpid() call:
// glibc does not cache the pid, so it would be a system call per lookup).
//
// What is served (docs/nss.md): a passwd entry per valid webapp (DESIGN.md "Mapping webapps
// to users"); one group entry, [nss] group_name with gid [nss] gid and no members, only when
// no other NSS service provides that gid; no supplementary groups.
//
// Every method returns a Result in glibc's terms; none throws except std::bad_alloc, which the
// entry points catch.
#pragma once

#include <nss.h>
#include <pwd.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/directory.h"
#include "allgo/status.h"
#include "cache.h"
#include "coarse_clock.h"
#include "connection_pool.h"
#include "records.h"

namespace allgo::nss {

// How a call ends for glibc: the status, and the value for *errnop (0: leave errno alone).
struct Result {
  nss_status status = NSS_STATUS_UNAVAIL;
  int error = 0;

  static Result Found() { return {NSS_STATUS_SUCCESS, 0}; }
  static Result NotFound() { return {NSS_STATUS_NOTFOUND, 0}; }
  // The config file is missing or invalid: the service is not set up (glibc: UNAVAIL/ENOENT).
  static Result NoConfig() { return {NSS_STATUS_UNAVAIL, ENOENT}; }
  // A setuid/setgid process (AT_SECURE): the service is off there, like a missing config
  // (entry_points.cc SecureExecution()).
  static Result SecureExecution() { return {NSS_STATUS_UNAVAIL, ENOENT}; }
  // The database cannot be reached right now.
  static Result DatabaseDown() { return {NSS_STATUS_UNAVAIL, EAGAIN}; }
  // The caller's buffer is too small: glibc retries with a bigger one.
  static Result Range() { return {NSS_STATUS_TRYAGAIN, ERANGE}; }
  bool found() const { return status == NSS_STATUS_SUCCESS; }
};

// Where glibc wants a passwd entry: its struct and the caller's buffer, which every string of
// the entry is packed into.
struct PasswdBuffer {
  struct passwd* pwd = nullptr;
  char* buf = nullptr;
  size_t buflen = 0;
};

// `record` packed into `out`: Found, or Range when the buffer is too small.
Result PackInto(const PasswdRecord& record, const PasswdBuffer& out);

// Where an enumeration stood when an entry was handed out; Advance*() moves past it only if
// the enumeration is still at that place (not restarted by set*ent/end*ent meanwhile).
struct Position {
  uint64_t epoch = 0;
  size_t index = 0;
};

class Module {
 public:
  // The process-wide instance, created on first use and never destroyed (other threads may
  // still be inside it while the process exits).
  static Module& Get();

  // getpwnam_r / getpwuid_r: the entry, packed into `out`. A cached entry costs no system
  // call (see "The hit path" above).
  Result PasswdByName(const char* name, const PasswdBuffer& out);
  Result PasswdByUid(uid_t uid, const PasswdBuffer& out);

  // setpwent / getpwent_r / endpwent. The list of webapps is read on the first Peek after a
  // restart, so setpwent itself never fails.
  void RestartPasswdEnumeration();
  Result PeekPasswd(PasswdRecord* out, Position* at);
  void AdvancePasswd(const Position& at);
  void EndPasswdEnumeration();

  Result GroupByGid(gid_t gid, GroupRecord* out);
  Result GroupByName(const char* name, GroupRecord* out);
  void RestartGroupEnumeration();
  Result PeekGroup(GroupRecord* out, Position* at);
  void AdvanceGroup(const Position& at);

  // For pthread_atfork: prepare, parent, child.
  void LockForFork();
  void UnlockAfterFork();
  void UnlockInForkedChild();

  // How long a config check holds: within it, lookups trust the config they have.
  static constexpr std::chrono::seconds kConfigRecheck{1};

 private:
  struct Snapshot {
    std::shared_ptr<const Config> config;
    uint64_t generation = 0;
  };
  struct FileStamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };

  Module() = default;
  // The cached entry `find(cache_, now)` returns, packed into `out`, when the config was
  // checked within kConfigRecheck; nullopt otherwise (the caller then checks the config and,
  // if the entry is still not there, asks the database). No system call.
  template <typename Find>
  std::optional<Result> FromCache(const Find& find, const PasswdBuffer& out);
  // The current config: the one in memory while it was checked within kConfigRecheck,
  // otherwise CheckConfigFile().
  Result CurrentConfig(Snapshot* out);
  // stat()s the config file, and reloads it if it changed.
  Result CheckConfigFile(Snapshot* out);
  // Runs `query` with a pooled connection; never holds the mutex during the query.
  Status WithDirectory(const Snapshot& snapshot,
                       const std::function<Status(WebappDirectory&)>& query);
  Result LoadWebapp(const Snapshot& snapshot,
                    const std::function<Status(WebappDirectory&, Webapp*)>& find,
                    const PasswdBuffer& out);
  static PasswdRecord ToRecord(const Config& config, const Webapp& webapp);
  static GroupRecord TheGroup(const Config& config);
  static Result FromStatus(const Status& status);

  std::mutex mu_;
  // Everything below is guarded by mu_.
  std::string config_path_;
  FileStamp config_stamp_;
  std::shared_ptr<const Config> config_;
  CoarseClock::time_point config_fresh_until_{};  // config_ needs no stat() before this
  uint64_t generation_ = 0;
  uint64_t fork_generation_ = 0;  // incremented in every forked child
  PasswdCache cache_;
  ConnectionPool pool_;

  struct PasswdEnumeration {
    uint64_t epoch = 1;
    bool loaded = false;
    std::vector<PasswdRecord> entries;
    size_t next = 0;
  } pw_enum_;
  struct GroupEnumeration {
    uint64_t epoch = 1;
    bool done = false;
  } gr_enum_;
};

}  // namespace allgo::nss
