// NetSession's forwarding half (docs/forwarding.md): SSH forward requests become streams of
// the connection's StreamMux, so every socket they need is opened by the agent inside the
// sandbox. Nothing here opens a socket or a file: this process is seccomp-confined to the
// descriptors it holds, and the mux's socket was connected by a process of the webapp.
#include <fcntl.h>
#include <cerrno>
#include <functional>
#include <poll.h>

#include <spdlog/spdlog.h>

#include "allgo/names.h"
#include "net_session.h"

namespace allgo::sshd {
namespace {

// How long a direct-tcpip open may wait for the agent's connect (the agent gives up at 10 s),
// and a listen for its result. The connection's other channels wait meanwhile: libssh wants
// the channel's fate decided inside its callback.
constexpr int kOpenWaitMs = 12000;
constexpr int kListenWaitMs = 10000;
constexpr int kHandshakeMs = 10000;

// What gets a sandbox the agent of this frontend (docs/forwarding.md "Upgrading"). Bridge: the
// agent runs from container start on, so the new binary in the toolbox waits for a restart.
// Docker: every connection execs the toolbox's agent afresh, so it is the node's toolbox that
// is old; restarting the container changes nothing.
std::string UpgradeHint(SandboxBackend backend) {
  return backend == SandboxBackend::kDocker
             ? "update allgo-sandbox-agent in the toolbox of its Docker node, then restart allgo-sandbox-gateway"
             : "restart the sandbox to run the new allgo-sandbox-agent";
}

std::string Endpoint(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// The address a tcpip-forward listens on inside the sandbox, as OpenSSH's sshd decides it:
// loopback unless gateway_ports lets the client choose ("" or "*": every address).
std::string BindAddress(const ForwardPolicy& policy, const std::string& requested) {
  if (!policy.gateway_ports) return requested == "::1" ? "::1" : "127.0.0.1";
  if (requested.empty() || requested == "*") return "0.0.0.0";
  if (requested == "localhost") return "127.0.0.1";
  return requested;
}

}  // namespace

void NetSession::ReportForward(ForwardPhase phase, ForwardKindCode kind, const std::string& target,
                               const std::string& origin, const std::string& result, const ForwardRecord* record) {
  ForwardEvent e;
  e.phase = phase;
  e.kind = kind;
  e.target = target;
  e.origin = origin;
  e.result = result;
  if (record != nullptr) {
    e.bytes_in = record->bytes_in;
    e.bytes_out = record->bytes_out;
    e.duration_ms = static_cast<uint32_t>(record->seconds * 1000);
  }
  Status st = monitor_.Send(Encode(e));
  if (!st.ok()) monitor_gone_ = true;
}

size_t NetSession::LiveForwards() const {
  size_t live = 0;
  for (const auto& f : forwards_) live += f->done() ? 0 : 1;
  return live;
}

Status NetSession::EnsureMux() {
  if (mux_) return Status::Ok();
  if (!mux_error_.empty()) return Status::Unavailable(mux_error_);
  UniqueFd fd;
  Status st = monitor_.OpenStreams(&fd);
  if (st.ok()) {
    int flags = fcntl(fd.get(), F_GETFL);
    if (flags < 0 || fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) st = Status::FromErrno("fcntl O_NONBLOCK", errno);
  }
  if (st.ok()) {
    auto mux = std::make_unique<StreamMux>(std::move(fd), this);
    st = mux->Handshake(kHandshakeMs, UpgradeHint(settings_.config->sandbox.backend));
    if (st.ok()) mux_ = std::move(mux);
  }
  if (!st.ok()) {
    mux_error_ = st.message();
    spdlog::warn("user {} from {}: forwarding unavailable: {}", user_, settings_.conn.Client(), mux_error_);
    return st;
  }
  spdlog::info("user {} from {}: forwarding path to the sandbox open", user_, settings_.conn.Client());
  return Status::Ok();
}

void NetSession::DropMux(const std::string& why) {
  if (!mux_) return;
  spdlog::warn("user {} from {}: forwarding path to the sandbox lost: {}", user_, settings_.conn.Client(), why);
  for (auto& f : forwards_) f->Abort("the path to the sandbox was lost");
  PumpForwards();  // logs and frees them
  if (mux_registered_) ssh_event_remove_fd(event_, mux_->fd());
  mux_registered_ = false;
  mux_.reset();
  mux_error_ = why;
  listeners_.clear();
}

int NetSession::OnMessage(ssh_session, ssh_message message, void* self) {
  auto* s = static_cast<NetSession*>(self);
  if (!s->authenticated_) return 1;  // libssh's default reply: a failure
  int type = ssh_message_type(message), subtype = ssh_message_subtype(message);
  if (type == SSH_REQUEST_CHANNEL_OPEN && subtype == SSH_CHANNEL_DIRECT_TCPIP) return s->HandleDirectTcpip(message);
  if (type == SSH_REQUEST_GLOBAL && subtype == SSH_GLOBAL_REQUEST_TCPIP_FORWARD) return s->HandleTcpipForward(message);
  if (type == SSH_REQUEST_GLOBAL && subtype == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
    return s->HandleCancelForward(message, bridge::ListenKind::kTcp);
  }
#ifdef LIBSSH_ALLGO_STREAMLOCAL
  // Only scripts/build-libssh's patched libssh passes these on (docs/forwarding.md); a stock
  // libssh answers streamlocal-forward itself and gives direct-streamlocal as "unknown".
  if (type == SSH_REQUEST_CHANNEL_OPEN && subtype == SSH_CHANNEL_DIRECT_STREAMLOCAL) {
    return s->HandleDirectStreamlocal(message);
  }
  if (type == SSH_REQUEST_GLOBAL && subtype == SSH_GLOBAL_REQUEST_STREAMLOCAL_FORWARD) {
    return s->HandleStreamlocalForward(message);
  }
  if (type == SSH_REQUEST_GLOBAL && subtype == SSH_GLOBAL_REQUEST_CANCEL_STREAMLOCAL_FORWARD) {
    return s->HandleCancelForward(message, bridge::ListenKind::kUnix);
  }
#endif
  return 1;  // x11, streamlocal under a stock libssh, unknown: a failure reply
}

int NetSession::RefuseForward(ForwardKindCode kind, const char* label, const std::string& what,
                              const std::string& origin, const std::string& why) {
  spdlog::info("forward {} refused: user={} client={} {}={} reason={}", ForwardKindName(kind), user_,
               settings_.conn.Client(), label, what, why);
  ReportForward(ForwardPhase::kRefused, kind, what, origin, "refused: " + why);
  return 1;
}

int NetSession::HandleDirectTcpip(ssh_message message) {
  const char* host_c = ssh_message_channel_request_open_destination(message);
  const char* origin_c = ssh_message_channel_request_open_originator(message);
  std::string host = host_c ? host_c : "";
  int port = ssh_message_channel_request_open_destination_port(message);
  std::string origin_host = origin_c ? origin_c : "";
  int origin_port = ssh_message_channel_request_open_originator_port(message);
  std::string target = SanitizeForLog(Endpoint(host, port), 300);
  auto refuse = [&](const std::string& why) {
    return RefuseForward(ForwardKindCode::kDirectTcpip, "target", target, origin_host, why);
  };
  if (!forward_policy_.local_tcp) return refuse("allow_tcp_forwarding or the key's options forbid it");
  if (port <= 0 || port > 65535) return refuse("bad port");
  if (!PermitsOpen(forward_policy_, host, static_cast<uint32_t>(port))) return refuse("not in permit_open / permitopen");
  bridge::StreamOpen open{0, bridge::StreamKind::kTcp, host, static_cast<uint32_t>(port), origin_host,
                          static_cast<uint32_t>(origin_port < 0 ? 0 : origin_port), 0, StreamMux::kWindow};
  return OpenDirect(message, std::move(open), target, refuse);
}

// direct-streamlocal@openssh.com (ssh -L PORT:/path.sock): a unix socket inside the sandbox.
// As OpenSSH, permit_open does not apply to socket paths; allow_stream_local_forwarding and
// the key's port-forwarding option do.
int NetSession::HandleDirectStreamlocal(ssh_message message) {
  const char* path_c = ssh_message_channel_request_open_destination(message);
  std::string path = path_c ? path_c : "";
  std::string target = SanitizeForLog(path, 300);
  auto refuse = [&](const std::string& why) {
    return RefuseForward(ForwardKindCode::kDirectStreamlocal, "target", target, "", why);
  };
  if (!forward_policy_.local_unix) return refuse("allow_stream_local_forwarding or the key's options forbid it");
  return OpenDirect(message, bridge::StreamOpen{0, bridge::StreamKind::kUnix, path, 0, "", 0, 0, StreamMux::kWindow},
                    target, refuse);
}

int NetSession::OpenDirect(ssh_message message, bridge::StreamOpen open, const std::string& target,
                           const std::function<int(const std::string&)>& refuse) {
  const bool unix_socket = open.kind == bridge::StreamKind::kUnix;
  if (LiveForwards() >= forward_policy_.max_forwards) return refuse("max_forwards reached");
  if (!EnsureMux().ok()) return refuse(mux_error_);
  uint32_t id = mux_->NewStreamId();
  if (id == 0) return refuse("too many streams");
  open.stream = id;
  if (!bridge::Validate(open, bridge::Mode::kStream).empty()) {
    // The originator is for logs only: a client that sends garbage there loses it, not the forward.
    open.origin_host.clear();
    open.origin_port = 0;
    if (std::string why = bridge::Validate(open, bridge::Mode::kStream); !why.empty()) return refuse(why);
  }
  std::string origin = open.origin_host.empty() ? "" : Endpoint(open.origin_host, static_cast<int>(open.origin_port));
  auto forward = std::make_unique<ForwardChannel>(
      mux_.get(), session_, unix_socket ? ForwardChannel::Kind::kDirectUnix : ForwardChannel::Kind::kDirect, id, target,
      origin);
  ForwardChannel* f = forward.get();
  const char* kind = ForwardKindName(f->record().kind);
  mux_->Send(open);
  if (!mux_->WaitUntil([f] { return f->answered(); }, kOpenWaitMs)) {
    if (mux_->broken()) {
      forward.reset();
      return refuse(mux_->error());
    }
    forward.reset();  // sends stream-close: a late answer for the id is dropped
    return refuse("the sandbox did not connect in time");
  }
  if (!f->accepted()) {
    std::string why = f->record().result;
    forward.reset();
    return refuse(why.empty() ? "refused by the sandbox" : why);
  }
  ssh_channel channel = ssh_message_channel_request_open_reply_accept(message);
  if (channel == nullptr) {
    forward.reset();  // sends stream-close
    spdlog::warn("forward {}: user={} target={}: cannot accept the channel", kind, user_, target);
    return 0;  // libssh already answered
  }
  f->Connect(channel);
  ReportForward(ForwardPhase::kOpened, f->record().kind, target, origin, "opened");
  spdlog::debug("forward {} open: user={} target={} stream={}", kind, user_, target, id);
  forwards_.push_back(std::move(forward));
  return 0;
}

NetSession::Listener* NetSession::ListenAndWait(bridge::Listen request, const std::string& requested_address) {
  Listener& l = listeners_[request.listener];
  l.kind = request.kind;
  l.requested_address = requested_address;
  l.requested_port = request.port;
  mux_->Send(request);
  uint32_t id = request.listener;
  bool answered = mux_->WaitUntil(
      [this, id] {
        auto it = listeners_.find(id);
        return it == listeners_.end() || it->second.answered;
      },
      kListenWaitMs);
  auto it = listeners_.find(id);
  if (it == listeners_.end()) return nullptr;
  if (!answered) {
    // Too late: if it comes, the listener is cancelled then (OnListenResult).
    it->second.cancelled = true;
    it->second.error = mux_->broken() ? mux_->error() : "the sandbox did not answer in time";
  }
  return &it->second;
}

int NetSession::HandleTcpipForward(ssh_message message) {
  const char* address_c = ssh_message_global_request_address(message);
  std::string address = address_c ? address_c : "";
  int port = ssh_message_global_request_port(message);
  std::string what = SanitizeForLog(Endpoint(address, port), 300);
  auto refuse = [&](const std::string& why) {
    return RefuseForward(ForwardKindCode::kTcpipForward, "listen", what, "", why);
  };
  if (!forward_policy_.remote_tcp) return refuse("allow_tcp_forwarding or the key's options forbid it");
  if (port < 0 || port > 65535) return refuse("bad port");
  if (!PermitsListen(forward_policy_, address, static_cast<uint32_t>(port))) {
    return refuse("not allowed by permit_listen / permitlisten / gateway_ports");
  }
  return StartListener(message, bridge::Listen{0, bridge::ListenKind::kTcp, BindAddress(forward_policy_, address),
                                               static_cast<uint32_t>(port)},
                       address, what, refuse);
}

// streamlocal-forward@openssh.com (ssh -R /path.sock:...): a unix listener inside the sandbox
// (made 0600 by the agent, as OpenSSH's StreamLocalBindMask). As OpenSSH, permit_listen and
// gateway_ports do not apply to socket paths.
int NetSession::HandleStreamlocalForward(ssh_message message) {
  const char* path_c = ssh_message_global_request_address(message);
  std::string path = path_c ? path_c : "";
  std::string what = SanitizeForLog(path, 300);
  auto refuse = [&](const std::string& why) {
    return RefuseForward(ForwardKindCode::kStreamlocalForward, "listen", what, "", why);
  };
  if (!forward_policy_.remote_unix) return refuse("allow_stream_local_forwarding or the key's options forbid it");
  return StartListener(message, bridge::Listen{0, bridge::ListenKind::kUnix, path, 0}, path, what, refuse);
}

int NetSession::StartListener(ssh_message message, bridge::Listen request, const std::string& requested_address,
                              const std::string& what, const std::function<int(const std::string&)>& refuse) {
  const bool unix_socket = request.kind == bridge::ListenKind::kUnix;
  // TCP and unix listeners share max_listeners (the agent socket is not counted: one per connection).
  size_t live = 0;
  for (const auto& [id, l] : listeners_) {
    live += (l.ok && !l.cancelled && l.kind != bridge::ListenKind::kAuthAgent) ? 1 : 0;
  }
  if (live >= forward_policy_.max_listeners) return refuse("max_listeners reached");
  if (!EnsureMux().ok()) return refuse(mux_error_);
  request.listener = next_listener_++;
  if (std::string why = bridge::Validate(request, bridge::Mode::kStream); !why.empty()) return refuse(why);
  Listener* l = ListenAndWait(request, requested_address);
  if (l == nullptr || !l->ok || l->cancelled) return refuse(l == nullptr ? "lost" : l->error);
  const ForwardKindCode kind = unix_socket ? ForwardKindCode::kStreamlocalForward : ForwardKindCode::kTcpipForward;
  const std::string bound = unix_socket ? l->path : Endpoint(request.address, static_cast<int>(l->bound_port));
  spdlog::info("forward {}: user={} client={} listen={} bound={} (inside the sandbox)", ForwardKindName(kind), user_,
               settings_.conn.Client(), what, SanitizeForLog(bound, 300));
  ReportForward(ForwardPhase::kListening, kind, what, "", "listening on " + bound + " inside the sandbox");
  ssh_message_global_request_reply_success(message, static_cast<uint16_t>(l->bound_port));
  return 0;
}

int NetSession::HandleCancelForward(ssh_message message, bridge::ListenKind kind) {
  const char* address_c = ssh_message_global_request_address(message);
  std::string address = address_c ? address_c : "";
  int port = ssh_message_global_request_port(message);  // 0 for a socket path
  for (auto& [id, l] : listeners_) {
    if (l.kind != kind || l.cancelled || !l.ok) continue;
    // The client names its listener as it asked for it; an allocated port by the bound one.
    if (l.requested_address == address && (static_cast<int>(l.bound_port) == port)) {
      l.cancelled = true;
      if (mux_) mux_->Send(bridge::Unlisten{id});
      spdlog::info("forward cancel-{}: user={} listen={}",
                   ForwardKindName(kind == bridge::ListenKind::kUnix ? ForwardKindCode::kStreamlocalForward
                                                                     : ForwardKindCode::kTcpipForward),
                   user_, SanitizeForLog(kind == bridge::ListenKind::kUnix ? address : Endpoint(address, port), 300));
      ssh_message_global_request_reply_success(message, 0);
      return 0;
    }
  }
  return 1;
}

std::string NetSession::RequestAgentSocket() {
  if (!agent_socket_.empty()) return agent_socket_;
  auto refuse = [&](const std::string& why) {
    spdlog::info("forward auth-agent refused: user={} client={} reason={}", user_, settings_.conn.Client(), why);
    ReportForward(ForwardPhase::kRefused, ForwardKindCode::kAuthAgent, "agent socket", "", "refused: " + why);
    return std::string();
  };
  if (!forward_policy_.agent) return refuse("allow_agent_forwarding or the key's options forbid it");
  if (!EnsureMux().ok()) return refuse(mux_error_);
  Listener* l = ListenAndWait(bridge::Listen{next_listener_++, bridge::ListenKind::kAuthAgent, "", 0}, "");
  if (l == nullptr || !l->ok || l->cancelled) return refuse(l == nullptr ? "lost" : l->error);
  agent_socket_ = l->path;
  ReportForward(ForwardPhase::kListening, ForwardKindCode::kAuthAgent, agent_socket_, "", "listening inside the sandbox");
  spdlog::info("forward auth-agent: user={} client={} socket={} (inside the sandbox)", user_,
               settings_.conn.Client(), agent_socket_);
  return agent_socket_;
}

void NetSession::OnListenResult(const bridge::ListenResult& result) {
  auto it = listeners_.find(result.listener);
  if (it == listeners_.end() || it->second.answered) {
    mux_->Send(bridge::Unlisten{result.listener});  // a result we no longer wait for
    return;
  }
  Listener& l = it->second;
  l.answered = true;
  l.ok = result.ok;
  l.bound_port = result.port;
  l.path = result.path;
  l.error = result.error;
  if (l.ok && l.cancelled && mux_) mux_->Send(bridge::Unlisten{result.listener});
}

void NetSession::OnIncoming(const bridge::StreamOpen& open) {
  const ForwardKindCode code = open.kind == bridge::StreamKind::kAuthAgent       ? ForwardKindCode::kAuthAgent
                               : open.kind == bridge::StreamKind::kForwardedUnix ? ForwardKindCode::kForwardedStreamlocal
                                                                                 : ForwardKindCode::kForwardedTcpip;
  auto refuse = [&](bridge::RefuseReason reason, const std::string& why) {
    mux_->Send(bridge::StreamRefuse{open.stream, reason, why});
    ReportForward(ForwardPhase::kRefused, code,
                  open.kind == bridge::StreamKind::kForwardedUnix ? open.host
                                                                  : open.host + ":" + std::to_string(open.port),
                  open.origin_host, "refused: " + why);
  };
  auto it = listeners_.find(open.listener);
  if (it == listeners_.end()) {
    // Only listeners this connection asked for may bring connections back: anything else
    // is an agent opening channels the client never asked for.
    if (open.listener >= next_listener_) {
      mux_->Break("protocol error from the agent: a connection for a listener never asked for");
      return;
    }
    refuse(bridge::RefuseReason::kProhibited, "the listener was cancelled");
    return;
  }
  Listener& l = it->second;
  bool kind_ok = (l.kind == bridge::ListenKind::kTcp && open.kind == bridge::StreamKind::kForwardedTcp) ||
                 (l.kind == bridge::ListenKind::kUnix && open.kind == bridge::StreamKind::kForwardedUnix) ||
                 (l.kind == bridge::ListenKind::kAuthAgent && open.kind == bridge::StreamKind::kAuthAgent);
  if (!kind_ok) {
    refuse(bridge::RefuseReason::kUnknownType, "stream kind does not match the listener");
    return;
  }
  if (l.cancelled || !l.ok) {
    refuse(bridge::RefuseReason::kProhibited, "the listener was cancelled");
    return;
  }
  if (LiveForwards() >= forward_policy_.max_forwards) {
    refuse(bridge::RefuseReason::kResourceShortage, "max_forwards reached on this connection");
    return;
  }
  bridge::StreamOpen shown = open;
  if (open.kind == bridge::StreamKind::kForwardedTcp) {
    // The client matches forwarded-tcpip to its -R by the address it asked for and the port.
    shown.host = l.requested_address.empty() ? "localhost" : l.requested_address;
    shown.port = l.bound_port;
  } else if (open.kind == bridge::StreamKind::kForwardedUnix) {
    shown.host = l.requested_address;  // forwarded-streamlocal: by the path it asked for
  }
  auto kind = open.kind == bridge::StreamKind::kAuthAgent       ? ForwardChannel::Kind::kAuthAgent
              : open.kind == bridge::StreamKind::kForwardedUnix ? ForwardChannel::Kind::kForwardedUnix
                                                                : ForwardChannel::Kind::kForwardedTcp;
  forwards_.push_back(std::make_unique<ForwardChannel>(mux_.get(), session_, shown, kind));
  ReportForward(ForwardPhase::kOpened, code, forwards_.back()->record().target, forwards_.back()->record().origin,
                "opened");
}

int NetSession::OnMuxFd(socket_t, int revents, void* self) {
  auto* s = static_cast<NetSession*>(self);
  DispatchGuard guard(s);
  if (!guard.active() || !s->mux_) return 0;
  if (revents & (POLLIN | POLLHUP | POLLERR)) s->mux_->OnReadable();
  return 0;
}

void NetSession::PumpForwards() {
  bool moved = false;
  for (auto& f : forwards_) moved = f->Pump(buffer_.get()) || moved;
  if (moved) NoteActivity();
  for (auto it = forwards_.begin(); it != forwards_.end();) {
    if (!(*it)->done()) {
      ++it;
      continue;
    }
    const ForwardRecord& r = (*it)->record();
    spdlog::info("forward {} end: user={} client={} target={} origin={} bytes_in={} bytes_out={} duration={:.3f}s result={}",
                 ForwardKindName(r.kind), user_, settings_.conn.Client(), r.target, r.origin.empty() ? "-" : r.origin, r.bytes_in,
                 r.bytes_out, r.seconds, r.result);
    ReportForward(ForwardPhase::kEnded, r.kind, r.target, r.origin, r.result, &r);
    it = forwards_.erase(it);
  }
}

}  // namespace allgo::sshd
