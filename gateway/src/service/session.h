// One client connection of the gateway, from its admission to close.
//
//   1. who: SO_PEERCRED's uid (never anything the client sends: its `open` waits unread in
//      the kernel until the relay starts); uid 0 or outside [nss] min_uid..max_uid is refused
//      by the accept loop before a session exists, and so is a uid over a session limit
//      (GatewayServer); the session gets the peer and its slot;
//   2. which webapp: WebappLookup (the identity rule applied); then its owner's slot
//      ([docker] max_sessions_per_owner);
//   3. where: SandboxLocator (node, container, running);
//   4. CreateExec({agent, "--stdio"}, stdin+stdout+stderr, no TTY) and StartExec; a failure
//      there forgets the cached location and tries once more;
//   5. Relay until either side ends.
//
// Any failure before 5 reaches the client as ONE stdio-mode `error` frame (allgo-shell prints
// it as one line), then the connection closes. Two log lines per session: what it reached,
// and how it ended (duration, bytes each way).
#pragma once

#include <string>

#include "allgo/config.h"
#include "allgo/engine_client.h"
#include "allgo/unique_fd.h"
#include "service/gateway_socket.h"
#include "service/nodes.h"
#include "service/sandbox_locator.h"
#include "service/session_limits.h"
#include "service/webapp_lookup.h"

namespace allgo::gateway {

class SparePool;
class LogBudget;

// What every session shares; owned by the server, outlives all sessions.
struct SessionContext {
  const Config* config = nullptr;
  WebappLookup* lookup = nullptr;
  SandboxLocator* locator = nullptr;
  SessionLimits* limits = nullptr;
  SparePool* spares = nullptr;  // nullptr: every session execs fresh
  int stop = -1;  // readable once the gateway shuts down
  LogBudget* refusal_log = nullptr;  // the server's: refusal lines within a budget
};

// The exec of `agent --stdio` (stdin, stdout and stderr attached, no TTY); a spare's agent
// gets a longer handshake_timeout_s (0: the agent's default).
engine::ExecOptions AgentExecOptions(const Config& config, int handshake_timeout_s = 0);

class Session {
 public:
  Session(SessionContext context, UniqueFd client, uint64_t number, PeerCredentials peer, SessionLimits::Slot slot)
      : ctx_(context), client_(std::move(client)), number_(number), peer_(peer), slot_(std::move(slot)) {}
  void Run();
  // The client connection of a session that never ran (its thread could not start).
  UniqueFd TakeClient() { return std::move(client_); }

 private:
  // Sends one `error` frame with `text` (made printable ASCII, cut to the protocol's bound).
  void Refuse(const std::string& text);

  SessionContext ctx_;
  UniqueFd client_;
  uint64_t number_;
  PeerCredentials peer_;
  SessionLimits::Slot slot_;  // total and per uid, taken by the accept loop
  std::string tag_;  // "session 12 uid 2005 pid 345" for the log
};

}  // namespace allgo::gateway
