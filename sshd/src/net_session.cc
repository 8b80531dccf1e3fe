#include "net_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <spdlog/spdlog.h>

#include "allgo/memory.h"
#include "allgo/names.h"
#include "child_process.h"
#include "wire.h"

namespace allgo::sshd {
namespace {

constexpr int kDrainTurns = 32;

}  // namespace

// ---------------------------------------------------------------------------- NetSession
NetSession::NetSession(NetSettings settings, ssh_session session, UniqueFd monitor)
    : settings_(std::move(settings)), session_(session), monitor_(std::move(monitor)), buffer_(new char[kIoBuffer]) {}

NetSession::~NetSession() {
  channels_.clear();
  forwards_.clear();
  if (mux_ && mux_registered_) ssh_event_remove_fd(event_, mux_->fd());
  if (event_ != nullptr) ssh_event_free(event_);
}

void NetSession::NoteActivity() { last_activity_ms_ = MonotonicMs(); }

int NetSession::OnAuthNone(ssh_session session, const char*, void* self) {
  auto* s = static_cast<NetSession*>(self);
  // Clients start with "none": the moment to show the pre-auth banner (it is only
  // displayed during authentication).
  if (!s->banner_sent_ && !s->settings_.banner.empty()) {
    s->banner_sent_ = true;
    ssh_string text = ssh_string_from_char(s->settings_.banner.c_str());
    if (text != nullptr) {
      ssh_send_issue_banner(session, text);
      ssh_string_free(text);
    }
  }
  return SSH_AUTH_DENIED;
}

bool NetSession::CheckLiveness() {
  const SshdConfig& cfg = settings_.config->sshd;
  long long now = MonotonicMs();
  if (packet_counter_.in_packets != last_in_packets_) {
    last_in_packets_ = packet_counter_.in_packets;
    last_heard_ms_ = now;
    unanswered_probes_ = 0;
  }
  if (!authenticated_) return true;  // login_grace_time covers that phase
  if (cfg.idle_timeout > 0 && now - last_activity_ms_ >= cfg.idle_timeout * 1000LL) {
    spdlog::info("user {} from {}: idle for {} s (idle_timeout), disconnecting", user_, settings_.conn.Client(),
                 cfg.idle_timeout);
    return false;
  }
  long long interval = cfg.client_alive_interval * 1000LL;
  if (interval > 0 && now - last_heard_ms_ >= interval && now - last_probe_ms_ >= interval) {
    if (unanswered_probes_ >= cfg.client_alive_count_max) {
      spdlog::info("user {} from {}: client not responding to {} keepalives, disconnecting", user_,
                   settings_.conn.Client(), unanswered_probes_);
      return false;
    }
    // libssh 0.10 keeps the state of the last global request: a call made after the
    // client's answer only clears that state and sends nothing. The second call sends when
    // the first did not (and is a no-op while a probe is still outstanding).
    ssh_send_keepalive(session_);
    ssh_send_keepalive(session_);
    ++unanswered_probes_;
    last_probe_ms_ = now;
  }
  return true;
}

int NetSession::OnAuthPubkey(ssh_session, const char* user, ssh_key pubkey, char state, void* self) {
  auto* s = static_cast<NetSession*>(self);
  if (s->authenticated_ || s->too_many_failures_) return SSH_AUTH_DENIED;
  bool allowed = false;
  bool pty_allowed = false;
  ForwardPolicy forward_policy;
  std::string account;
  if ((state == SSH_PUBLICKEY_STATE_NONE || state == SSH_PUBLICKEY_STATE_VALID) &&
      std::strlen(user) <= kMaxUserLen) {
    char* b64 = nullptr;
    if (ssh_pki_export_pubkey_base64(pubkey, &b64) == SSH_OK && b64 != nullptr) {
      KeyQuery q;
      q.signed_phase = state == SSH_PUBLICKEY_STATE_VALID;
      q.user = user;
      const char* type = ssh_key_type_to_char(ssh_key_type(pubkey));
      q.key_type = type ? type : "";
      q.key_base64 = b64;
      ssh_string_free_char(b64);
      std::string payload;
      Status st = s->monitor_.Call(Encode(q), MsgType::kKeyAnswer, &payload);
      KeyAnswer answer;
      if (st.ok()) st = Decode(payload, &answer);
      if (!st.ok()) {
        spdlog::error("monitor: {}", st.ToString());
        s->monitor_gone_ = true;
        return SSH_AUTH_DENIED;
      }
      allowed = answer.allowed;
      account = answer.account;
      pty_allowed = answer.pty_allowed;
      forward_policy = answer.forward_policy;
    }
  }
  if (!allowed) {
    // Probes count too, like OpenSSH: each refused key is one attempt.
    if (++s->failures_ >= s->settings_.config->sshd.max_auth_tries) s->too_many_failures_ = true;
    return SSH_AUTH_DENIED;
  }
  if (state == SSH_PUBLICKEY_STATE_VALID) {
    s->authenticated_ = true;
    s->user_ = user;
    s->account_ = account;
    s->pty_allowed_ = pty_allowed;
    s->forward_policy_ = forward_policy;
  }
  return SSH_AUTH_SUCCESS;
}

ssh_channel NetSession::OnChannelOpen(ssh_session session, void* self) {
  auto* s = static_cast<NetSession*>(self);
  if (!s->authenticated_) return nullptr;
  size_t live = 0;
  for (const auto& c : s->channels_) live += c->done() ? 0 : 1;
  if (live >= s->settings_.config->sshd.max_sessions) {
    spdlog::info("user {}: session refused, max_sessions ({}) reached", s->user_,
                 s->settings_.config->sshd.max_sessions);
    return nullptr;
  }
  ssh_channel channel = ssh_channel_new(session);
  if (channel == nullptr) return nullptr;
  s->channels_.push_back(std::make_unique<SessionChannel>(s, channel, s->next_id_++));
  return channel;
}

int NetSession::OnMonitorFd(socket_t, int revents, void* self) {
  auto* s = static_cast<NetSession*>(self);
  if ((revents & (POLLIN | POLLHUP | POLLERR)) && !s->monitor_.Poll()) s->monitor_gone_ = true;
  return 0;
}

int NetSession::Run() {
  const SshdConfig& cfg = settings_.config->sshd;
  long timeout = cfg.login_grace_time > 0 ? static_cast<long>(cfg.login_grace_time) : 120L;
  ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout);

  server_callbacks_.userdata = this;
  server_callbacks_.auth_none_function = OnAuthNone;
  server_callbacks_.auth_pubkey_function = OnAuthPubkey;
  server_callbacks_.channel_open_request_session_function = OnChannelOpen;
  // No password / keyboard-interactive callbacks: libssh denies those requests ("none" is
  // denied too, after showing the banner).
  ssh_callbacks_init(&server_callbacks_);
  ssh_set_server_callbacks(session_, &server_callbacks_);
  // What the server callbacks do not cover (direct-tcpip, tcpip-forward) arrives as messages.
  ssh_set_message_callback(session_, OnMessage, this);
  ssh_set_auth_methods(session_, SSH_AUTH_METHOD_PUBLICKEY);

  // Key exchange has no timeout of its own; SSH_OPTIONS_TIMEOUT bounds it, and anything
  // but SSH_OK (SSH_AGAIN on timeout) is a failure.
  if (ssh_handle_key_exchange(session_) != SSH_OK) {
    spdlog::info("connection from {}: key exchange failed: {}", settings_.conn.Client(),
                 SanitizeForLog(ssh_get_error(session_), 200));
    return 1;
  }
  // The key exchange's work memory is garbage once it is over, but would stay resident for the
  // session's life: freed heap chunks (malloc keeps them), and the stack pages the
  // post-quantum arithmetic touched far below the event loop.
  ReleaseDeadMemory();
  ssh_set_blocking(session_, 0);
  ssh_set_counters(session_, &socket_counter_, &packet_counter_);
  last_heard_ms_ = last_activity_ms_ = MonotonicMs();
  event_ = ssh_event_new();
  if (event_ == nullptr || ssh_event_add_session(event_, session_) != SSH_OK ||
      ssh_event_add_fd(event_, monitor_.fd(), POLLIN, OnMonitorFd, this) != SSH_OK) {
    spdlog::error("cannot set up the event loop");
    return 1;
  }

  while (true) {
    bool timer = false;
    for (const auto& c : channels_) timer = timer || c->WantsTimer();
    // Forwards poll libssh for their channels and the mux for queued output.
    timer = timer || !forwards_.empty() || (mux_ && mux_->WantsWrite());
    dispatch_allowed_ = true;
    int rc = ssh_event_dopoll(event_, timer ? 50 : 1000);
    // libssh reads the socket in small slices per poll turn: drain what is already there
    // before pumping, so client data reaches the command in large writes.
    for (int turn = 0; rc == SSH_OK && turn < kDrainTurns; ++turn) rc = ssh_event_dopoll(event_, 0);
    dispatch_allowed_ = false;
    if (!monitor_.notices().empty()) {
      while (!monitor_.notices().empty()) {
        ExitedNotice n = monitor_.notices().front();
        monitor_.notices().pop_front();
        for (auto& c : channels_) {
          if (c->id() == n.id) c->OnExited(n.wait_status);
        }
      }
    }
    for (auto& c : channels_) c->Pump();
    channels_.remove_if([](const std::unique_ptr<SessionChannel>& c) { return c->done(); });
    if (mux_ && !mux_registered_) {
      // Added here, not where the mux was opened: that was inside a libssh callback, while
      // libssh walked its poll set.
      mux_registered_ = ssh_event_add_fd(event_, mux_->fd(), POLLIN, OnMuxFd, this) == SSH_OK;
    }
    if (mux_ || !forwards_.empty()) {
      PumpForwards();
      if (mux_ && (!mux_->Flush() || mux_->broken())) DropMux(mux_->error());
    }

    if (too_many_failures_) {
      spdlog::info("connection from {}: too many authentication failures", settings_.conn.Client());
      ssh_disconnect(session_);
      break;
    }
    if (monitor_gone_) break;
    if (!CheckLiveness()) {
      ssh_disconnect(session_);
      break;
    }
    int status = ssh_get_status(session_);
    if (rc == SSH_ERROR || (status & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0 || !ssh_is_connected(session_)) {
      break;
    }
  }
  for (auto& c : channels_) c->Abort("connection closed");
  channels_.clear();
  for (auto& f : forwards_) f->Abort("connection closed");
  PumpForwards();
  if (mux_) mux_->Flush();
  return 0;
}

}  // namespace allgo::sshd
