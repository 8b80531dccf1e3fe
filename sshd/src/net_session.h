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
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "allgo/config.h"
#include "allgo/names.h"  // SanitizeForLog, for session_channel.cc
#include "allgo/unique_fd.h"
#include "forward_channel.h"
#include "forward_policy.h"
#include "monitor_client.h"
#include "monitor_protocol.h"
#include "session_channel.h"
#include "spawn.h"
#include "stream_mux.h"

namespace allgo::sshd {

inline constexpr size_t kIoBuffer = 256 * 1024;

struct NetSettings {
  const Config* config = nullptr;
  ConnectionInfo conn;
  std::string banner;  // [sshd] banner file contents (read by the listener), may be empty
};

class NetSession : public StreamMuxOwner {
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
  // What the authenticated key may forward (the monitor checks OpenStreams again).
  const ForwardPolicy& forward_policy() const { return forward_policy_; }
  // One I/O buffer for all channels, never zero-filled: an idle session touches none of it.
  char* buffer() { return buffer_.get(); }
  // Channel data moved (either way): resets the idle_timeout clock.
  void NoteActivity();
  // auth-agent-req@openssh.com on a session channel: the path of this connection's agent
  // socket inside the sandbox (made on first use), or "" when agent forwarding is not
  // permitted or failed (logged).
  std::string RequestAgentSocket();

  // StreamMuxOwner
  void OnIncoming(const bridge::StreamOpen& open) override;
  void OnListenResult(const bridge::ListenResult& result) override;

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
  // Forwarding (docs/forwarding.md): direct-tcpip / direct-streamlocal channel opens and
  // tcpip-forward / streamlocal-forward (and their cancels) global requests reach us as libssh
  // messages (the streamlocal ones only with scripts/build-libssh's patched libssh).
  // Each returns OnMessage's answer: 0 handled, 1 libssh's failure reply.
  static int OnMessage(ssh_session session, ssh_message message, void* self);
  static int OnMuxFd(socket_t fd, int revents, void* self);
  int HandleDirectTcpip(ssh_message message);
  int HandleDirectStreamlocal(ssh_message message);
  int HandleTcpipForward(ssh_message message);
  int HandleStreamlocalForward(ssh_message message);
  int HandleCancelForward(ssh_message message, bridge::ListenKind kind);
  // The parts the TCP and unix-socket kinds share once their own checks passed: the limits,
  // the stream (or listener) opened inside the sandbox, the answer to the client.
  int OpenDirect(ssh_message message, bridge::StreamOpen open, const std::string& target,
                 const std::function<int(const std::string&)>& refuse);
  int StartListener(ssh_message message, bridge::Listen request, const std::string& requested_address,
                    const std::string& what, const std::function<int(const std::string&)>& refuse);
  // One refusal's log line and ForwardEvent; returns 1 (libssh's failure reply).
  int RefuseForward(ForwardKindCode kind, const char* label, const std::string& what, const std::string& origin,
                    const std::string& why);
  // The connection's stream mux, opened on first use (monitor OpenStreams + hello).
  Status EnsureMux();
  // Sends `listen` and waits for its result; nullptr-free: the listener's entry.
  struct Listener;
  Listener* ListenAndWait(bridge::Listen request, const std::string& requested_address);
  void PumpForwards();
  // One ForwardEvent to the monitor (audit line, metrics); never waits for an answer.
  void ReportForward(ForwardPhase phase, ForwardKindCode kind, const std::string& target, const std::string& origin,
                     const std::string& result, const ForwardRecord* record = nullptr);
  void DropMux(const std::string& why);
  size_t LiveForwards() const;

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
  ForwardPolicy forward_policy_;
  uint32_t next_id_ = 1;
  std::list<std::unique_ptr<SessionChannel>> channels_;
  std::unique_ptr<char[]> buffer_;
  bool banner_sent_ = false;
  bool dispatch_allowed_ = false;  // see DispatchGuard
  // Forwarding state.
  std::unique_ptr<StreamMux> mux_;
  bool mux_registered_ = false;  // its fd is in event_ (added from the main loop only)
  std::string mux_error_;        // why the mux could not be opened or broke; sticky
  std::list<std::unique_ptr<ForwardChannel>> forwards_;
  struct Listener {
    bridge::ListenKind kind = bridge::ListenKind::kTcp;
    std::string requested_address;  // as the client wrote it (forwarded-tcpip repeats it)
    uint32_t requested_port = 0;
    bool answered = false, ok = false, cancelled = false;
    uint32_t bound_port = 0;
    std::string path, error;
  };
  std::map<uint32_t, Listener> listeners_;
  uint32_t next_listener_ = 1;
  std::string agent_socket_;  // the connection's agent socket path, once made
  ssh_counter_struct socket_counter_{};
  ssh_counter_struct packet_counter_{};
  uint64_t last_in_packets_ = 0;
  long long last_heard_ms_ = 0;     // last packet from the client
  long long last_probe_ms_ = 0;     // last keepalive sent
  unsigned unanswered_probes_ = 0;
  long long last_activity_ms_ = 0;  // last channel data either way
};

}  // namespace allgo::sshd
