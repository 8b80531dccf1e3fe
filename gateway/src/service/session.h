// One client connection of the gateway, from accept() to close.
//
//   1. who: SO_PEERCRED's uid (never anything the client sends: its `open` waits unread in
//      the kernel until the relay starts); uid 0 or outside [nss] min_uid..max_uid → refused;
//   2. which webapp: WebappLookup (the identity rule applied);
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
#include "service/nodes.h"
#include "service/sandbox_locator.h"
#include "service/session_limits.h"
#include "service/webapp_lookup.h"

namespace allgo::gateway {

class SparePool;

// What every session shares; owned by the server, outlives all sessions.
struct SessionContext {
  const Config* config = nullptr;
  WebappLookup* lookup = nullptr;
  SandboxLocator* locator = nullptr;
  SessionLimits* limits = nullptr;
  SparePool* spares = nullptr;  // nullptr: every session execs fresh
  int stop = -1;  // readable once the gateway shuts down
};

// The exec of `agent --stdio` (stdin, stdout and stderr attached, no TTY); a spare's agent
// gets a longer handshake_timeout_s (0: the agent's default).
engine::ExecOptions AgentExecOptions(const Config& config, int handshake_timeout_s = 0);

class Session {
 public:
  Session(SessionContext context, UniqueFd client, uint64_t number)
      : ctx_(context), client_(std::move(client)), number_(number) {}
  void Run();

 private:
  // Sends one `error` frame with `text` (made printable ASCII, cut to the protocol's bound).
  void Refuse(const std::string& text);

  SessionContext ctx_;
  UniqueFd client_;
  uint64_t number_;
  std::string tag_;  // "session 12 uid 2005 pid 345" for the log
};

}  // namespace allgo::gateway
