#include "session_channel.h"

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

#include "allgo/names.h"
#include "net_session.h"

namespace allgo::sshd {
namespace {

constexpr int kPtyDrainMs = 200;

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

std::string DescribeStatus(bool exited, uint32_t status) {
  if (!exited) return "-";
  int s = static_cast<int>(status);
  if (WIFEXITED(s)) return std::to_string(WEXITSTATUS(s));
  if (WIFSIGNALED(s)) return std::string("signal ") + std::to_string(WTERMSIG(s));
  return "?";
}

}  // namespace

SessionChannel::SessionChannel(NetSession* owner, ssh_channel channel, uint32_t id)
    : owner_(owner), channel_(channel), id_(id) {
  callbacks_.userdata = this;
  callbacks_.channel_pty_request_function = OnPtyRequest;
  callbacks_.channel_pty_window_change_function = OnPtyResize;
  callbacks_.channel_shell_request_function = OnShell;
  callbacks_.channel_exec_request_function = OnExec;
  callbacks_.channel_subsystem_request_function = OnSubsystem;
  callbacks_.channel_env_request_function = OnEnv;
  callbacks_.channel_signal_function = OnSignal;
  callbacks_.channel_eof_function = OnEof;
  callbacks_.channel_close_function = OnClose;
  callbacks_.channel_auth_agent_req_function = OnAuthAgentRequest;
  // No data callback: client data stays in libssh's buffer until the child can take it
  // (PumpInput), which is what throttles the window. No x11 callback: libssh then answers
  // x11-req with a failure.
  ssh_callbacks_init(&callbacks_);
  ssh_set_channel_callbacks(channel_, &callbacks_);
}

SessionChannel::~SessionChannel() {
  if (!released_) Release("aborted");
}

int SessionChannel::OnPtyRequest(ssh_session, ssh_channel, const char* term, int cols, int rows, int px,
                                 int py, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  if (c->started_ || c->pty_ || std::strlen(term) > kMaxTermLen) return -1;
  // The key's options forbid a PTY: refuse the request itself, so the client says "PTY
  // allocation request failed" and carries on without one, as with OpenSSH.
  if (!c->owner_->pty_allowed()) return -1;
  c->pty_ = true;
  c->pty_request_.term = term;
  c->pty_request_.cols = static_cast<uint32_t>(std::max(cols, 0));
  c->pty_request_.rows = static_cast<uint32_t>(std::max(rows, 0));
  c->pty_request_.width_px = static_cast<uint32_t>(std::max(px, 0));
  c->pty_request_.height_px = static_cast<uint32_t>(std::max(py, 0));
  return 0;
}

int SessionChannel::OnPtyResize(ssh_session, ssh_channel, int cols, int rows, int px, int py, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  if (!c->pty_) return -1;
  if (!c->started_) {
    c->pty_request_.cols = static_cast<uint32_t>(std::max(cols, 0));
    c->pty_request_.rows = static_cast<uint32_t>(std::max(rows, 0));
    return 0;
  }
  if (!c->out_) return -1;
  // The master side may set the size itself: the kernel then signals SIGWINCH to the
  // terminal's foreground process group. No monitor round trip needed.
  winsize ws{};
  ws.ws_col = static_cast<unsigned short>(std::clamp(cols, 0, 10000));
  ws.ws_row = static_cast<unsigned short>(std::clamp(rows, 0, 10000));
  ws.ws_xpixel = static_cast<unsigned short>(std::clamp(px, 0, 65535));
  ws.ws_ypixel = static_cast<unsigned short>(std::clamp(py, 0, 65535));
  ioctl(c->out_.get(), TIOCSWINSZ, &ws);
  return 0;
}

int SessionChannel::OnShell(ssh_session, ssh_channel, void* self) {
  return static_cast<SessionChannel*>(self)->Start(SessionKind::kShell, "");
}

int SessionChannel::OnExec(ssh_session, ssh_channel, const char* command, void* self) {
  return static_cast<SessionChannel*>(self)->Start(SessionKind::kExec, command);
}

int SessionChannel::OnSubsystem(ssh_session, ssh_channel, const char* name, void* self) {
  if (std::strcmp(name, "sftp") != 0) return -1;
  return static_cast<SessionChannel*>(self)->Start(SessionKind::kSubsystem, name);
}

int SessionChannel::OnEnv(ssh_session, ssh_channel, const char* name, const char* value, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  std::string n = name;
  if (c->started_ || !IsAcceptedEnvName(n) || n.size() > kMaxEnvLen || std::strlen(value) > kMaxEnvLen ||
      c->env_.size() >= kMaxEnvEntries) {
    return -1;
  }
  for (auto& [k, v] : c->env_) {
    if (k == n) {
      v = value;
      return 0;
    }
  }
  c->env_.emplace_back(n, value);
  return 0;
}

void SessionChannel::OnAuthAgentRequest(ssh_session, ssh_channel, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  if (c->started_) return;
  // The agent socket is made inside the sandbox (docs/forwarding.md); "" when refused.
  c->agent_socket_ = c->owner_->RequestAgentSocket();
}

void SessionChannel::OnSignal(ssh_session, ssh_channel, const char* name, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  int signo = SignalFromName(name);
  if (!c->started_ || c->exited_ || signo == 0) return;
  c->owner_->monitor().Send(Encode(SignalRequest{c->id_, static_cast<uint32_t>(signo)}));
}

void SessionChannel::OnEof(ssh_session, ssh_channel, void*) {
  // Nothing to do here: PumpInput sees ssh_channel_is_eof() once the buffered data has
  // reached the child, and closes its stdin then.
}

void SessionChannel::OnClose(ssh_session, ssh_channel, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  c->done_ = true;  // handled by Pump, outside libssh's callback
}

int SessionChannel::Start(SessionKind kind, const std::string& command) {
  if (started_) return -1;
  if (command.size() > kMaxCommandLen) return -1;
  SpawnRequest req;
  req.id = id_;
  req.kind = kind;
  req.command = command;
  req.has_pty = pty_;
  req.pty = pty_request_;
  req.env = env_;
  if (!agent_socket_.empty()) req.env.emplace_back(kAuthSockEnv, agent_socket_);
  std::string answer;
  std::vector<UniqueFd> fds;
  Status st = owner_->monitor().Call(Encode(req), MsgType::kSpawnResult, &answer, &fds);
  SpawnResult result;
  if (st.ok()) st = Decode(answer, &result);
  if (st.ok() && result.id != id_) st = Status::Invalid("spawn answer for another session");
  if (!st.ok()) {
    spdlog::error("user {}: monitor failed: {}", owner_->user(), st.ToString());
    return -1;
  }
  if (!result.ok) {
    spdlog::warn("user {}: {} refused: {}", owner_->user(), SessionKindName(kind), result.error);
    return -1;
  }
  size_t want = pty_ ? 1 : 3;
  if (fds.size() != want) {
    spdlog::error("user {}: monitor sent {} descriptors, expected {}", owner_->user(), fds.size(), want);
    return -1;
  }
  if (pty_) {
    out_ = std::move(fds[0]);
  } else {
    in_ = std::move(fds[0]);
    out_ = std::move(fds[1]);
    err_ = std::move(fds[2]);
    SetNonBlocking(in_.get());
    SetNonBlocking(err_.get());
  }
  SetNonBlocking(out_.get());
  err_eof_ = pty_;
  started_ = true;
  kind_ = kind;
  started_at_ = std::chrono::steady_clock::now();
  command_for_log_ = kind == SessionKind::kExec ? SanitizeForLog(command, 80) : command;
  return 0;
}

void SessionChannel::OnExited(uint32_t wait_status) {
  exited_ = true;
  wait_status_ = wait_status;
  exited_at_ = std::chrono::steady_clock::now();
}

int SessionChannel::OnFd(socket_t fd, int revents, void* self) {
  auto* c = static_cast<SessionChannel*>(self);
  // libssh polls the whole event context from inside its own calls (ssh_channel_write
  // waiting for window, ssh_channel_read_nonblocking...): such nested invocations would
  // read into the shared buffer while the outer call's data is still in it (data lost or
  // reordered). Only the main loop's ssh_event_dopoll dispatches; poll is level-triggered,
  // so nothing is missed.
  NetSession::DispatchGuard guard(c->owner_);
  if (!guard.active() || c->released_) return 0;
  if (fd == c->out_.get()) {
    if (revents & (POLLIN | POLLHUP | POLLERR)) c->ReadOutput(fd, false);
    if (c->pty_ && (revents & POLLOUT)) c->FlushPending();
  } else if (fd == c->err_.get()) {
    if (revents & (POLLIN | POLLHUP | POLLERR)) c->ReadOutput(fd, true);
  } else if (fd == c->in_.get()) {
    if (revents & (POLLOUT | POLLERR | POLLHUP)) c->FlushPending();
  }
  return 0;
}

int SessionChannel::Write(const char* data, size_t len, bool is_stderr) {
  auto n = static_cast<uint32_t>(len);
  return is_stderr ? ssh_channel_write_stderr(channel_, data, n) : ssh_channel_write(channel_, data, n);
}

bool SessionChannel::FlushOutput() {
  while (!out_pending_.empty()) {
    uint32_t window = ssh_channel_window_size(channel_);
    if (window == 0) return false;
    uint32_t len = static_cast<uint32_t>(std::min<size_t>(out_pending_.size(), window));
    int written = Write(out_pending_.data(), len, out_pending_stderr_);
    if (written < 0) {
      done_ = true;  // the connection is broken; Pump releases the channel
      return false;
    }
    if (written == 0) return false;  // e.g. a key re-exchange is running: retry next turn
    out_pending_.erase(0, static_cast<size_t>(written));
  }
  return true;
}

void SessionChannel::ReadOutput(int fd, bool is_stderr) {
  bool& eof = is_stderr ? err_eof_ : out_eof_;
  if (eof || !FlushOutput()) return;
  uint32_t window = ssh_channel_window_size(channel_);
  if (window == 0) return;  // Pump drops POLLIN until the peer reopens the window
  char* buf = owner_->buffer();
  size_t want = std::min<size_t>(window, kIoBuffer);
  ssize_t n = read(fd, buf, want);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    // EOF, or EIO from a PTY whose slave side is closed everywhere.
    eof = true;
    return;
  }
  bytes_out_ += static_cast<uint64_t>(n);
  owner_->NoteActivity();
  int written = Write(buf, static_cast<size_t>(n), is_stderr);
  if (written < 0) {
    done_ = true;
    return;
  }
  // libssh writes less when it cannot send now (window, or a key re-exchange: then it
  // writes nothing): keep the rest; nothing more is read until it is out.
  if (written < n) {
    out_pending_.assign(buf + written, static_cast<size_t>(n - written));
    out_pending_stderr_ = is_stderr;
  }
}

void SessionChannel::CloseInput() {
  input_closed_ = true;
  pending_.clear();
  pending_off_ = 0;
  if (!pty_ && in_) {
    UpdateWatch(in_.get(), 0, &in_events_);
    in_.reset();  // EOF reaches the command: `printf abc | ssh host cat` ends
  }
}

void SessionChannel::FlushPending() {
  int fd = pty_ ? out_.get() : in_.get();
  while (pending_off_ < pending_.size()) {
    ssize_t n = write(fd, pending_.data() + pending_off_, pending_.size() - pending_off_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      CloseInput();  // EPIPE: the command closed its stdin; further input is discarded
      return;
    }
    pending_off_ += static_cast<size_t>(n);
  }
  pending_.clear();
  pending_off_ = 0;
}

void SessionChannel::PumpInput() {
  char* buf = owner_->buffer();
  while (pending_.empty()) {
    int n = ssh_channel_read_nonblocking(channel_, buf, static_cast<uint32_t>(kIoBuffer), 0);
    if (n == SSH_ERROR) {
      done_ = true;
      return;
    }
    if (n == 0 || n == SSH_EOF || n < 0) {  // SSH_AGAIN: nothing yet; SSH_EOF: peer sent EOF
      if (!input_closed_ && (n == SSH_EOF || ssh_channel_is_eof(channel_)) && !pty_) CloseInput();
      return;
    }
    bytes_in_ += static_cast<uint64_t>(n);
    owner_->NoteActivity();
    if (input_closed_) continue;  // discard
    pending_.assign(buf, static_cast<size_t>(n));
    pending_off_ = 0;
    FlushPending();
  }
}

void SessionChannel::UpdateWatch(int fd, short events, short* registered) {
  if (fd < 0 || events == *registered) return;
  ssh_event event = owner_->event();
  if (*registered != 0) ssh_event_remove_fd(event, fd);
  *registered = 0;
  if (events != 0 && ssh_event_add_fd(event, fd, events, OnFd, this) == SSH_OK) *registered = events;
}

void SessionChannel::Pump() {
  if (released_) return;
  if (done_) {
    Release(started_ ? "closed by client" : "closed");
    return;
  }
  if (!started_) return;
  if (!input_closed_ || !pending_.empty()) PumpInput();
  if (done_) {
    Release("connection lost");
    return;
  }
  if (!out_pending_.empty()) FlushOutput();
  if (done_) {
    Release("connection lost");
    return;
  }
  bool output_blocked = !out_pending_.empty();
  if (exited_ && pty_ && !out_eof_ && !output_blocked) {
    // Drain what the shell left in the PTY, then stop: a background job holding the
    // terminal open must not keep the channel alive (it gets SIGHUP when we close).
    while (!out_eof_ && ssh_channel_window_size(channel_) > 0) {
      uint64_t before = bytes_out_;
      ReadOutput(out_.get(), false);
      if (bytes_out_ == before) break;
    }
    auto waited = std::chrono::steady_clock::now() - exited_at_;
    if (waited > std::chrono::milliseconds(kPtyDrainMs)) out_eof_ = true;
  }
  if (exited_ && out_eof_ && err_eof_ && !output_blocked) {
    Finish();
    return;
  }
  bool window_open = ssh_channel_window_size(channel_) > 0 && !output_blocked;
  short out_want = (!out_eof_ && window_open) ? POLLIN : 0;
  if (pty_) {
    if (!pending_.empty()) out_want |= POLLOUT;
    UpdateWatch(out_.get(), out_eof_ ? 0 : out_want, &out_events_);
  } else {
    UpdateWatch(out_.get(), out_want, &out_events_);
    UpdateWatch(err_.get(), (!err_eof_ && window_open) ? POLLIN : 0, &err_events_);
    UpdateWatch(in_.get(), pending_.empty() ? 0 : POLLOUT, &in_events_);
  }
}

void SessionChannel::Finish() {
  // OpenSSH's order: EOF once the output is drained, then the exit status, then close.
  ssh_channel_send_eof(channel_);
  int s = static_cast<int>(wait_status_);
  if (WIFSIGNALED(s)) {
    const char* name = SignalName(WTERMSIG(s));
    if (name[0] != '\0') {
      ssh_channel_request_send_exit_signal(channel_, name, WCOREDUMP(s) ? 1 : 0, "", "");
    } else {
      ssh_channel_request_send_exit_status(channel_, 128 + WTERMSIG(s));
    }
  } else {
    ssh_channel_request_send_exit_status(channel_, WIFEXITED(s) ? WEXITSTATUS(s) : 255);
  }
  Release("ended");
}

void SessionChannel::Abort(const char* why) {
  if (!released_) Release(why);
}

void SessionChannel::Release(const std::string& how) {
  released_ = true;
  done_ = true;
  UpdateWatch(in_.get(), 0, &in_events_);
  UpdateWatch(out_.get(), 0, &out_events_);
  UpdateWatch(err_.get(), 0, &err_events_);
  in_.reset();
  out_.reset();  // for a PTY this hangs up the terminal (SIGHUP to what is left)
  err_.reset();
  if (started_) {
    owner_->monitor().Send(Encode(SessionEnd{id_, bytes_in_, bytes_out_}));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    spdlog::info("session end: user={} kind={}{}{} status={} bytes_in={} bytes_out={} duration={:.3f}s ({})",
                 owner_->user(), SessionKindName(kind_), command_for_log_.empty() ? "" : " ",
                 command_for_log_, DescribeStatus(exited_, wait_status_), bytes_in_, bytes_out_, seconds, how);
  }
  ssh_remove_channel_callbacks(channel_, &callbacks_);
  if (ssh_channel_is_open(channel_)) ssh_channel_close(channel_);
  ssh_channel_free(channel_);  // libssh keeps it until the peer's close arrives
  channel_ = nullptr;
}

}  // namespace allgo::sshd
