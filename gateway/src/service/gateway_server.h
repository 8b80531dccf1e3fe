// The accept loop of allgo-sandbox-gateway: a thread per session (a session spends its life
// blocked in poll() or in an Engine API call; threads keep each one's code straight-line, and
// SessionLimits bounds how many exist), until SIGTERM or SIGINT.
//
// Before any thread or allocation for a connection, the loop itself reads its SO_PEERCRED and
// takes its session slot (total and per uid): a uid that is not a webapp's, or one over a
// limit, is refused right there (Refusals: its line, a bounded linger, a log within a
// budget), so a flood from any local user costs no thread. A thread that cannot be created
// (a task limit) refuses that connection the same way; the gateway goes on.
//
// Shutdown: stop accepting, tell every session (an eventfd they all poll), wait for them
// (a session inside an Engine API call finishes it first: at most api_timeout), remove the
// socket.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "allgo/status.h"
#include "allgo/unique_fd.h"
#include "service/refusals.h"
#include "service/session.h"

namespace allgo::gateway {

class GatewayServer {
 public:
  GatewayServer(SessionContext context, UniqueFd listener, std::string socket_path);

  // Serves until a signal of `signals` (a signalfd of SIGTERM and SIGINT) arrives.
  Status Serve(int signals);

 private:
  void Shutdown();
  // A connection just accepted: refused here, or handed to a new session thread.
  void Admit(UniqueFd client, uint64_t number);

  SessionContext ctx_;
  UniqueFd listener_;
  std::string socket_path_;
  UniqueFd stop_;  // eventfd, readable once stopping
  LogBudget refusal_log_{20, std::chrono::seconds(60), "connections refused"};
  Refusals refusals_{&refusal_log_};
  std::mutex mu_;
  std::condition_variable idle_;
  unsigned running_ = 0;  // sessions alive, guarded by mu_
};

}  // namespace allgo::gateway
