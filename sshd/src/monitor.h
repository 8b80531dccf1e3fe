// The privileged half of one connection (root, not chrooted). It never reads a byte from
// the network: it only answers the fixed message set of monitor_protocol.h sent by its
// unprivileged network child, in the order the state machine allows:
//
//   pre-auth:  KeyQuery (bounded count)   → after a signed, allowed KeyQuery: authenticated
//   authenticated: Spawn (≤ max_sessions live), Signal (live sessions only),
//                  OpenStreams (once, when the key's ForwardPolicy allows anything)
//
// Anything else — unknown type, malformed message, a request in the wrong state — kills
// the network child and ends the connection. It also enforces the login grace time and
// reports session exits (Exited) from SIGCHLD.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/key_options.h"
#include "allgo/line_budget.h"
#include "allgo/unique_fd.h"
#include "audit_log.h"
#include "metrics.h"
#include "key_source.h"
#include "user_lookup.h"
#include "forward_policy.h"
#include "monitor_protocol.h"
#include "spawn.h"
#include "wire.h"

namespace allgo::sshd {

struct MonitorSettings {
  const Config* config = nullptr;
  ConnectionInfo conn;
  uid_t lookup_uid = static_cast<uid_t>(-1);  // [sshd] lookup_user: the lookup child runs as it
  gid_t lookup_gid = static_cast<gid_t>(-1);
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
  // [authkeys] key_options restricted by the key's own options: false (and why) when they
  // refuse this client now (from=, expiry-time, options that cannot hold together).
  bool KeyOptionsAllow(const AllowedEntry& allowed, KeyOptions* options, std::string* reason) const;
  bool HandleSpawn(const SpawnRequest& r);
  bool HandleSignal(const SignalRequest& r);
  bool HandleSessionEnd(const SessionEnd& m);
  // Audit line and metrics of a forward the network child reports (docs/forwarding.md).
  bool HandleForwardEvent(const ForwardEvent& m);
  bool HandleOpenStreams();
  // Starts the carrier and waits (bounded) for its one answer: the connected socket, or why not.
  Status RunCarrier(UniqueFd* socket);
  void CountAuth(bool allowed, AuthRefusal refusal);
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
  KeyOptions key_options_;  // of the key that authenticated: PTY and forced command at Spawn
  ForwardPolicy forward_policy_;  // of the key that authenticated ([sshd] ∧ its options)
  bool streams_requested_ = false;  // OpenStreams is valid once per connection
  static constexpr uint32_t kMaxForwardsCounted = 4096;
  uint32_t forwards_open_ = 0;  // reported opened, not yet ended (the active gauge's share)
  // A sandbox makes refusals as fast as it connects to a listener past max_forwards: the
  // metrics count every one, the audit log gets kAuditedRefusalsPerMinute lines a minute and
  // then one line summing up the others (at the minute's end or the connection's).
  static constexpr unsigned kAuditedRefusalsPerMinute = 20;
  LineBudget refusal_audit_{kAuditedRefusalsPerMinute, std::chrono::minutes(1)};
  ForwardKindCode unaudited_kind_ = ForwardKindCode::kDirectTcpip;  // the last one counted
  bool AuditRefusal(ForwardKindCode kind);  // false: counted for the summary instead
  void WriteRefusalSummary(uint64_t count);  // the line for `count` refusals not audited (0: none)
  std::map<std::string, UserEntry> users_;
  unsigned key_queries_ = 0;
  // One record per spawned session, for both its audit line and its metrics. It lives
  // until the process has exited and the network child has reported the channel's byte
  // counts (SessionEnd), or until the connection ends, whichever comes first.
  struct SessionRecord {
    pid_t pid = -1;
    long long started_ms = 0;
    bool exited = false;   // reaped: event.exit_status/exit_signal/duration are final
    bool counted = false;  // SessionEnd received: event.bytes_in/bytes_out are final
    SessionEvent event;    // client, user, account, kind ("exec", "shell", "subsystem:sftp")
  };
  // Writes the audit line and drops the record once it is complete (or, with `flush`, at
  // the end of the connection, with whatever is known then).
  void FinishSession(uint32_t id, bool flush);

  std::map<uint32_t, SessionRecord> sessions_;  // by channel id
};

}  // namespace allgo::sshd
