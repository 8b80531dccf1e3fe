// The privileged half of one connection (root, not chrooted). It never reads a byte from
// the network: it only answers the fixed message set of monitor_protocol.h sent by its
// unprivileged network child, in the order the state machine allows:
//
//   pre-auth:  KeyQuery (bounded count)   → after a signed, allowed KeyQuery: authenticated
//   authenticated: Spawn (≤ max_sessions live), Signal (live sessions only)
//
// Anything else — unknown type, malformed message, a request in the wrong state — kills
// the network child and ends the connection. It also enforces the login grace time and
// reports session exits (Exited) from SIGCHLD.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/unique_fd.h"
#include "audit_log.h"
#include "metrics.h"
#include "key_source.h"
#include "user_lookup.h"
#include "monitor_protocol.h"
#include "spawn.h"
#include "wire.h"

namespace allgo::sshd {

struct MonitorSettings {
  const Config* config = nullptr;
  ConnectionInfo conn;
  uid_t privsep_uid = 65534;
  gid_t privsep_gid = 65534;
  AuditLog* audit = nullptr;  // [sshd] audit_log, opened by the listener; may be null
  Metrics* metrics = nullptr;  // shared by every allgo-sshd process; may be null
  long long accepted_ms = 0;   // MonotonicMs() of the accept: login_grace_time counts from it (0: now)
};

class Monitor {
 public:
  // `startup_pipe` is closed once the client authenticated (the listener counts
  // unauthenticated connections by these pipes, for max_startups).
  Monitor(MonitorSettings settings, UniqueFd sock, pid_t net_child, UniqueFd startup_pipe);
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Serves until the network child is gone; returns the process exit code.
  int Run();

 private:
  using UserEntry = UserLookup;

  bool HandleMessage(WireMessage& msg);  // false: protocol violation
  bool HandleKeyQuery(const KeyQuery& q);
  bool HandleSpawn(const SpawnRequest& r);
  bool HandleSignal(const SignalRequest& r);
  bool HandleSessionEnd(const SessionEnd& m);
  void CountAuth(bool allowed, const std::string& reason);
  // Writes the audit line of a session once both its exit and its byte counts are known
  // (or at the end of the connection, whatever is known then).
  void AuditSession(uint32_t id, bool flush);
  // Looks the user up once per connection; false when the lookup failed (database down).
  bool LookupUser(const std::string& user, UserEntry** entry);
  void ReapChildren();
  void HangUpSessions();

  MonitorSettings settings_;
  UniqueFd sock_;
  pid_t net_child_;
  UniqueFd startup_pipe_;
  bool net_child_alive_ = true;
  int net_child_status_ = 0;
  bool authenticated_ = false;
  Account account_;
  std::map<std::string, UserEntry> users_;
  unsigned key_queries_ = 0;
  struct LiveSession {
    pid_t pid = -1;
    std::string kind;  // "exec", "shell", "subsystem:sftp"
    long long started_ms = 0;
  };
  std::map<uint32_t, LiveSession> sessions_;  // live sessions by id
  struct AuditPending {
    SessionEvent event;
    bool exited = false, counted = false;
  };
  std::map<uint32_t, AuditPending> audit_pending_;  // spawned sessions not yet audited
  std::set<uint32_t> bytes_pending_;  // spawned sessions whose byte counts are not in metrics yet
};

}  // namespace allgo::sshd
