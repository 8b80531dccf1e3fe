// The accept loop of allgo-sandbox-gateway: a thread per session (a session spends its life
// blocked in poll() or in an Engine API call; threads keep each one's code straight-line, and
// SessionLimits bounds how many exist), until SIGTERM or SIGINT.
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
#include "service/session.h"

namespace allgo::gateway {

class GatewayServer {
 public:
  GatewayServer(SessionContext context, UniqueFd listener, std::string socket_path);

  // Serves until a signal of `signals` (a signalfd of SIGTERM and SIGINT) arrives.
  Status Serve(int signals);

 private:
  void Shutdown();

  SessionContext ctx_;
  UniqueFd listener_;
  std::string socket_path_;
  UniqueFd stop_;  // eventfd, readable once stopping
  std::mutex mu_;
  std::condition_variable idle_;
  unsigned running_ = 0;  // sessions alive, guarded by mu_
};

}  // namespace allgo::gateway
