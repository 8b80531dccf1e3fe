#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "allgo/unique_fd.h"
#include "monitor_protocol.h"
#include "spawn.h"

namespace allgo::sshd {

class NetSession;

// One SSH "session" channel of an authenticated connection: its requests (pty-req, env,
// shell / exec / subsystem, window-change, signal) become a Spawn at the monitor, and its
// data moves between the channel and the fds the monitor handed back (pipes or a PTY master).
class SessionChannel {
 public:
  SessionChannel(NetSession* owner, ssh_channel channel, uint32_t id);
  ~SessionChannel();
  SessionChannel(const SessionChannel&) = delete;
  SessionChannel& operator=(const SessionChannel&) = delete;

  ssh_channel channel() const { return channel_; }
  uint32_t id() const { return id_; }
  bool done() const { return done_; }
  // Moves data and advances the state machine; called after every event loop turn.
  void Pump();
  void OnExited(uint32_t wait_status);
  // Whether Pump needs to run again soon (PTY drain after exit).
  bool WantsTimer() const { return (exited_ && pty_ && !out_eof_) || !out_pending_.empty(); }
  // Ends the channel from our side (connection shutting down).
  void Abort(const char* why);

 private:
  static int OnPtyRequest(ssh_session, ssh_channel, const char* term, int cols, int rows, int px, int py, void* self);
  static int OnPtyResize(ssh_session, ssh_channel, int cols, int rows, int px, int py, void* self);
  static int OnShell(ssh_session, ssh_channel, void* self);
  static int OnExec(ssh_session, ssh_channel, const char* command, void* self);
  static int OnSubsystem(ssh_session, ssh_channel, const char* name, void* self);
  static int OnEnv(ssh_session, ssh_channel, const char* name, const char* value, void* self);
  static void OnSignal(ssh_session, ssh_channel, const char* name, void* self);
  static void OnEof(ssh_session, ssh_channel, void* self);
  static void OnClose(ssh_session, ssh_channel, void* self);
  static void OnAuthAgentRequest(ssh_session, ssh_channel, void* self);
  static int OnFd(socket_t fd, int revents, void* self);

  int Start(SessionKind kind, const std::string& command);
  void ReadOutput(int fd, bool is_stderr);
  // ssh_channel_write / _stderr: bytes libssh took (may be fewer than len), <0 on error.
  int Write(const char* data, size_t len, bool is_stderr);
  // Sends what libssh could not take earlier; true when nothing is left.
  bool FlushOutput();
  void PumpInput();
  void FlushPending();
  void CloseInput();
  void UpdateWatch(int fd, short events, short* registered);
  void Finish();
  void Release(const std::string& status);

  NetSession* owner_;
  ssh_channel channel_;
  uint32_t id_;
  ssh_channel_callbacks_struct callbacks_{};
  bool started_ = false;
  bool done_ = false;
  bool released_ = false;
  SessionKind kind_ = SessionKind::kShell;
  bool pty_ = false;
  PtyRequest pty_request_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string agent_socket_;  // auth-agent-req granted: SSH_AUTH_SOCK for the session
  UniqueFd in_, out_, err_;  // for a PTY, out_ is the master and in_ is unused
  short in_events_ = 0, out_events_ = 0, err_events_ = 0;
  std::string pending_;  // client data the command has not read yet
  size_t pending_off_ = 0;
  std::string out_pending_;  // command output libssh has not accepted yet
  bool out_pending_stderr_ = false;
  bool input_closed_ = false;  // the child's stdin is closed (EOF delivered or EPIPE)
  bool out_eof_ = false, err_eof_ = false;
  bool exited_ = false;
  uint32_t wait_status_ = 0;
  std::chrono::steady_clock::time_point exited_at_;
  std::chrono::steady_clock::time_point started_at_;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  std::string command_for_log_;
};

}  // namespace allgo::sshd
