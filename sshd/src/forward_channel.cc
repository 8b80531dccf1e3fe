#include "forward_channel.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace allgo::sshd {
namespace {

// Window given back to the agent in batches: one stream-window per quarter window handed on.
constexpr uint32_t kWindowBatch = StreamMux::kWindow / 4;

ForwardKindCode CodeOf(ForwardChannel::Kind kind) {
  switch (kind) {
    case ForwardChannel::Kind::kDirect: return ForwardKindCode::kDirectTcpip;
    case ForwardChannel::Kind::kDirectUnix: return ForwardKindCode::kDirectStreamlocal;
    case ForwardChannel::Kind::kForwardedTcp: return ForwardKindCode::kForwardedTcpip;
    case ForwardChannel::Kind::kForwardedUnix: return ForwardKindCode::kForwardedStreamlocal;
    case ForwardChannel::Kind::kAuthAgent: return ForwardKindCode::kAuthAgent;
  }
  return ForwardKindCode::kDirectTcpip;
}

}  // namespace

ForwardChannel::ForwardChannel(StreamMux* mux, ssh_session session, Kind kind, uint32_t id, std::string target,
                               std::string origin)
    : mux_(mux), session_(session), id_(id), kind_(kind), granted_unused_(StreamMux::kWindow) {
  record_.kind = CodeOf(kind_);
  record_.target = std::move(target);
  record_.origin = std::move(origin);
  mux_->Attach(id_, this);
}

ForwardChannel::ForwardChannel(StreamMux* mux, ssh_session session, const bridge::StreamOpen& open, Kind kind)
    : mux_(mux), session_(session), id_(open.stream), kind_(kind), incoming_(open), send_window_(open.window) {
  record_.kind = CodeOf(kind_);
  record_.target = kind == Kind::kAuthAgent       ? "agent socket"
                   : kind == Kind::kForwardedUnix ? open.host
                                                  : open.host + ":" + std::to_string(open.port);
  if (!open.origin_host.empty()) record_.origin = open.origin_host + ":" + std::to_string(open.origin_port);
  mux_->Attach(id_, this);
  // The channel to the client is opened by Pump, from the main loop: this constructor may
  // run inside a libssh callback (StreamMux::WaitUntil), where no libssh call is safe.
  opening_ = true;
}

ForwardChannel::~ForwardChannel() {
  if (!done_) Abort("connection closed");
  mux_->Detach(id_);
}

void ForwardChannel::OpenToClient() {
  if (channel_ == nullptr) {
    channel_ = ssh_channel_new(session_);
    if (channel_ == nullptr) {
      opening_ = false;
      mux_->Send(bridge::StreamRefuse{id_, bridge::RefuseReason::kResourceShortage, "cannot make an SSH channel"});
      close_sent_ = true;
      Finish("refused: cannot make an SSH channel");
      return;
    }
  }
  // Non-blocking session: SSH_AGAIN until the client confirms or refuses; called again by Pump.
  int rc = OpenChannel();
  if (rc == SSH_AGAIN) return;
  opening_ = false;
  if (rc != SSH_OK) {
    mux_->Send(bridge::StreamRefuse{id_, bridge::RefuseReason::kConnectFailed, "the SSH client refused the channel"});
    close_sent_ = true;
    Finish("refused by the client");
    return;
  }
  granted_unused_ = StreamMux::kWindow;
  mux_->Send(bridge::StreamAccept{id_, StreamMux::kWindow});
}

int ForwardChannel::OpenChannel() {
  switch (kind_) {
    case Kind::kAuthAgent: return ssh_channel_open_auth_agent(channel_);
    case Kind::kForwardedUnix:
#ifdef LIBSSH_ALLGO_STREAMLOCAL
      return ssh_channel_open_forwarded_streamlocal(channel_, incoming_.host.c_str());
#else
      return SSH_ERROR;  // unreachable: no streamlocal listener without the patched libssh
#endif
    default:
      return ssh_channel_open_reverse_forward(channel_, incoming_.host.c_str(), static_cast<int>(incoming_.port),
                                              incoming_.origin_host.empty() ? "127.0.0.1" : incoming_.origin_host.c_str(),
                                              static_cast<int>(incoming_.origin_port));
  }
}

void ForwardChannel::OnAccepted(uint32_t window) {
  if (direct() && !accepted_ && !agent_closed_) {
    accepted_ = true;
    send_window_ = window;
    return;
  }
  // Forwarded streams are opened by the agent, and a direct one is accepted once: anything
  // else breaks the protocol's order. Pump ends the forward (no libssh call here: this may
  // run inside a libssh callback).
  agent_closed_ = true;
  record_.result = "error: unexpected stream-accept from the agent";
}

void ForwardChannel::OnRefused(bridge::RefuseReason, const std::string& text) {
  agent_closed_ = true;
  close_sent_ = true;  // a refused stream needs no close: its id is free at once
  record_.result = "refused: " + text;
}

bool ForwardChannel::OnData(std::string_view bytes) {
  if (bytes.size() > granted_unused_) return false;
  granted_unused_ -= static_cast<uint32_t>(bytes.size());
  pending_.Append(bytes);
  return true;
}

void ForwardChannel::OnWindow(uint32_t increment) {
  uint64_t window = static_cast<uint64_t>(send_window_) + increment;
  send_window_ = static_cast<uint32_t>(std::min<uint64_t>(window, bridge::kMaxStreamWindow));
}

bool ForwardChannel::ClientToAgent(char* buffer) {
  bool moved = false;
  while (send_window_ > 0 && !mux_->Congested() && !stream_eof_sent_ && !close_sent_) {
    uint32_t want = std::min<uint32_t>(send_window_, static_cast<uint32_t>(bridge::kMaxData));
    // Not ssh_channel_read_nonblocking: it polls the SSH socket (ssh_channel_poll) before
    // every read, one poll(2) per 32 KiB even while the channel's buffer holds more. With a
    // timeout of 0 libssh handles packets only when the buffer is empty (SSH_AGAIN then).
    int n = ssh_channel_read_timeout(channel_, buffer, want, 0, 0);
    if (n > 0) {
      mux_->SendData(id_, buffer, static_cast<size_t>(n));
      send_window_ -= static_cast<uint32_t>(n);
      record_.bytes_in += static_cast<uint64_t>(n);
      moved = true;
      continue;
    }
    // A channel the client closed reads as an error here; Pump sees it closed and ends the
    // forward as before (ssh_channel_read_nonblocking returned "no data" for it).
    if (n == SSH_ERROR && !ssh_channel_is_closed(channel_)) {
      Finish(ChannelErrorResult());
      return moved;
    }
    if (ssh_channel_is_eof(channel_)) {
      mux_->Send(bridge::StreamEof{id_});
      stream_eof_sent_ = true;
    }
    break;
  }
  return moved;
}

bool ForwardChannel::AgentToClient() {
  bool moved = false;
  while (!pending_.empty()) {
    uint32_t window = ssh_channel_window_size(channel_);
    if (window == 0) break;
    size_t n = std::min<size_t>(pending_.size(), window);
    int written = ssh_channel_write(channel_, pending_.data(), static_cast<uint32_t>(n));
    if (written < 0) {
      Finish(ChannelErrorResult());
      return moved;
    }
    if (written == 0) break;  // key re-exchange: libssh takes nothing for now
    pending_.Consume(static_cast<size_t>(written));
    record_.bytes_out += static_cast<uint64_t>(written);
    consumed_ += static_cast<uint32_t>(written);
    moved = true;
  }
  if (consumed_ >= kWindowBatch || (consumed_ > 0 && pending_.empty())) {
    mux_->Send(bridge::StreamWindow{id_, consumed_});
    granted_unused_ += consumed_;
    consumed_ = 0;
  }
  if (pending_.empty() && agent_eof_ && !client_eof_sent_ && !done_) {
    ssh_channel_send_eof(channel_);
    client_eof_sent_ = true;
  }
  return moved;
}

bool ForwardChannel::Pump(char* buffer) {
  if (done_ || (direct() && channel_ == nullptr)) return false;
  if (opening_) {
    OpenToClient();
    if (opening_ || done_) return false;
  }
  bool moved = AgentToClient();
  if (done_) return moved;
  moved = ClientToAgent(buffer) || moved;
  if (done_) return moved;
  bool client_gone = ssh_channel_is_closed(channel_) != 0;
  if (client_gone && !close_sent_) SendClose();
  // The id is free once both sides sent stream-close: until the agent's arrives, the
  // forward stays (bounded by max_forwards) so that its id is not handed out again.
  if (agent_closed_ && (pending_.empty() || client_gone)) {
    if (!close_sent_) SendClose();
    Finish(record_.result.empty() ? "closed" : record_.result);
  }
  return moved;
}

std::string ForwardChannel::ChannelErrorResult() const {
  // A client that closes a forward in the middle of a transfer (a cancelled download) makes
  // libssh's read or write fail with "Remote channel is closed": an ordinary end, not an error.
  if (ssh_channel_is_closed(channel_)) return "closed by the client";
  return "error: " + std::string(ssh_get_error(session_));
}

void ForwardChannel::SendClose() {
  if (close_sent_) return;
  close_sent_ = true;
  mux_->Send(bridge::StreamClose{id_});
}

void ForwardChannel::Abort(const char* why) {
  if (done_) return;
  Finish(std::string("aborted: ") + why);
}

void ForwardChannel::Finish(const std::string& result) {
  if (done_) return;
  done_ = true;
  // However the forward ends (a libssh error when the client closes mid-transfer, too), the
  // agent hears it: its socket and the sandbox service's connection go now, not with the SSH
  // connection, and the stream no longer counts against the agent's per-connection bound.
  SendClose();
  if (record_.result.empty() || record_.result.rfind("refused", 0) != 0) record_.result = result;
  record_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  if (channel_ != nullptr) {
    if (ssh_channel_is_open(channel_)) ssh_channel_close(channel_);
    ssh_channel_free(channel_);  // libssh keeps it until the client's close arrives
    channel_ = nullptr;
  }
  pending_.clear();
  mux_->Detach(id_);
}

}  // namespace allgo::sshd
