// allgo-sandbox-agent's server: one single-threaded poll() loop over every connection.
//
// Why one loop and no threads: every fd the agent reads or writes is non-blocking and every
// buffer has a fixed bound (a control frame, 64 KiB of pending control output, 64 KiB per
// PTY direction), so a client that sends garbage, stops reading or half-opens a connection
// only ever stalls its own session; handshakes and exits have deadlines. For command
// sessions the agent is not on the data path at all: the named pipes are the process's own
// stdin/stdout/stderr. For PTY sessions it copies between the pipes and the pty master.
//
// Bridge folder layout (docs/bridge.md): DIR/agent.sock, DIR/agent.lock, and for each
// session being set up a folder DIR/s-<32 hex> (0700, owned by the client's uid) holding the
// fifos in, out, err (0600). The folder is removed as soon as both sides have opened the
// fifos; stale ones are removed at start.
//
// A connection whose first frame is a version 3 `hello` (forwarding, stream_server.h) is
// handed whole to a forked child that serves it with a StreamServer: its sockets, listeners
// and buffers never share a loop, a file descriptor table or a crash with the sessions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "allgo/bridge/protocol.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {

struct AgentOptions {
  std::string bridge_dir;
  // The uid allowed to connect (root always is). Unset: the owner of bridge_dir.
  bool allow_uid_set = false;
  uid_t allow_uid = 0;
  size_t max_sessions = 256;
  int handshake_timeout_ms = 10000;
};

// What both modes do first (agent.sock and --stdio): umask 077, SIGPIPE ignored, the fd
// limit raised for the agent (its children get the original soft limit back).
void PrepareAgentProcess();

class Agent {
 public:
  // Opens the bridge folder, takes its lock (one agent per folder), removes stale sessions
  // and listens on agent.sock. "" on success, else a message for the operator.
  std::string Start(const AgentOptions& options);
  // Serves until SIGTERM, SIGINT or SIGHUP; then hangs up every session and removes
  // agent.sock. Returns the process exit status.
  int Run();

  Agent();
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

 private:
  struct Conn;

  void Accept();
  void HandOffStreams(Conn& c);
  void OnReadable(Conn& c);
  void OnWritable(Conn& c);
  void Handle(Conn& c, Message& message);
  void HandleOpen(Conn& c);
  void HandleAttached(Conn& c);
  void OnExecReport(Conn& c);
  void OnChildExit(pid_t pid, int status);
  void OnExited(Conn& c);
  void PumpPty(Conn& c);
  void FinishPty(Conn& c);
  void Queue(Conn& c, const std::string& frame);
  void Fail(Conn& c, const std::string& why);
  void Hangup(Conn& c, const char* why);
  void RemoveSessionDir(Conn& c);
  void CleanStale();
  int NextTimeoutMs() const;
  void CheckDeadlines();
  void ReapChildren();
  bool DrainSignals();

  AgentOptions options_;
  UniqueFd dir_;
  UniqueFd lock_;
  UniqueFd listen_;
  UniqueFd signals_;
  uid_t allow_uid_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  // Stream-mode connections (version 3), each served by a forked child: pid → connection id.
  // They count against max_sessions until the child is reaped.
  std::map<pid_t, uint64_t> stream_children_;
  bool stopping_ = false;
  int64_t accept_paused_until_ = 0;
};

}  // namespace allgo::bridge
