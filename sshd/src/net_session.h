// The unprivileged network half of one connection: it runs libssh (key exchange, user
// authentication, channels) as privsep_user inside the empty chroot, asks the monitor
// for every privileged act, and moves session data between SSH channels and the file
// descriptors the monitor handed over.
//
// Data path (per channel): the child's stdout/stderr (or PTY master) are read only while
// the peer's window is open (ssh_channel_window_size) and written with ssh_channel_write;
// client data is pulled with ssh_channel_read_nonblocking only when the previous chunk
// reached the child, so libssh's window regrowth follows the child's consumption. Channel
// EOF closes the child's stdin. A finished PTY is dropped from the poll set.
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <string>

#include "allgo/config.h"
#include "allgo/unique_fd.h"
#include "monitor_protocol.h"
#include "spawn.h"

namespace allgo::sshd {

inline constexpr size_t kIoBuffer = 256 * 1024;

class NetSession;

// Talks to the monitor: synchronous request/answer, with Exited notices that arrive in
// between queued for the main loop.
class MonitorClient {
 public:
  explicit MonitorClient(UniqueFd sock) : sock_(std::move(sock)) {}
  int fd() const { return sock_.get(); }
  // Sends `request` and waits for a message of type `want`; fds of the answer in *fds.
  Status Call(const std::string& request, MsgType want, std::string* answer,
              std::vector<UniqueFd>* fds = nullptr);
  Status Send(const std::string& request);
  // Reads what is available without blocking; false when the monitor is gone.
  bool Poll();
  std::deque<ExitedNotice>& notices() { return notices_; }

 private:
  // Handles an unsolicited message; false when it is not an Exited notice.
  bool Queue(const std::string& payload);
  UniqueFd sock_;
  std::deque<ExitedNotice> notices_;
};

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

struct NetSettings {
  const Config* config = nullptr;
  ConnectionInfo conn;
  std::string banner;  // [sshd] banner file contents (read by the listener), may be empty
};

class NetSession {
 public:
  NetSession(NetSettings settings, ssh_session session, UniqueFd monitor);
  ~NetSession();
  NetSession(const NetSession&) = delete;
  NetSession& operator=(const NetSession&) = delete;

  // Key exchange, authentication, sessions; returns when the connection is over.
  int Run();

  ssh_event event() { return event_; }
  MonitorClient& monitor() { return monitor_; }
  const NetSettings& settings() const { return settings_; }
  const std::string& user() const { return user_; }
  // Whether the authenticated key's options permit a PTY (the monitor checks again).
  bool pty_allowed() const { return pty_allowed_; }
  // One I/O buffer for all channels, never zero-filled: an idle session touches none of it.
  char* buffer() { return buffer_.get(); }
  // Channel data moved (either way): resets the idle_timeout clock.
  void NoteActivity();

  // Lets one fd callback run at a time, and only from the main loop's ssh_event_dopoll.
  class DispatchGuard {
   public:
    explicit DispatchGuard(NetSession* s) : s_(s), active_(s->dispatch_allowed_) { s_->dispatch_allowed_ = false; }
    ~DispatchGuard() {
      if (active_) s_->dispatch_allowed_ = true;
    }
    DispatchGuard(const DispatchGuard&) = delete;
    DispatchGuard& operator=(const DispatchGuard&) = delete;
    bool active() const { return active_; }

   private:
    NetSession* s_;
    bool active_;
  };

 private:
  static int OnAuthNone(ssh_session, const char* user, void* self);
  static int OnAuthPubkey(ssh_session, const char* user, ssh_key pubkey, char state, void* self);
  // idle_timeout and client_alive_*: false when the connection must end.
  bool CheckLiveness();
  static ssh_channel OnChannelOpen(ssh_session, void* self);
  static int OnMonitorFd(socket_t fd, int revents, void* self);

  NetSettings settings_;
  ssh_session session_;
  ssh_event event_ = nullptr;
  MonitorClient monitor_;
  ssh_server_callbacks_struct server_callbacks_{};
  bool authenticated_ = false;
  bool monitor_gone_ = false;
  bool too_many_failures_ = false;
  unsigned failures_ = 0;
  std::string user_;
  std::string account_;
  bool pty_allowed_ = false;
  uint32_t next_id_ = 1;
  std::list<std::unique_ptr<SessionChannel>> channels_;
  std::unique_ptr<char[]> buffer_;
  bool banner_sent_ = false;
  bool dispatch_allowed_ = false;  // see DispatchGuard
  ssh_counter_struct socket_counter_{};
  ssh_counter_struct packet_counter_{};
  uint64_t last_in_packets_ = 0;
  long long last_heard_ms_ = 0;     // last packet from the client
  long long last_probe_ms_ = 0;     // last keepalive sent
  unsigned unanswered_probes_ = 0;
  long long last_activity_ms_ = 0;  // last channel data either way
};

}  // namespace allgo::sshd
