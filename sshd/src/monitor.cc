#include "monitor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "allgo/names.h"
#include "child_process.h"
#include "allgo/pubkey.h"

namespace allgo::sshd {
namespace {

constexpr size_t kMaxDistinctUsers = 8;

}  // namespace

Monitor::Monitor(MonitorSettings settings, UniqueFd sock, pid_t net_child, UniqueFd startup_pipe)
    : settings_(std::move(settings)),
      sock_(std::move(sock)),
      net_child_(net_child),
      startup_pipe_(std::move(startup_pipe)) {}

int Monitor::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sigfd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) {
    spdlog::error("monitor: signalfd: {}", std::strerror(errno));
    kill(net_child_, SIGKILL);
    return 1;
  }
  const Config& config = *settings_.config;
  // The grace time counts from the accept: time spent waiting for admission is part of it.
  long long start = settings_.accepted_ms > 0 ? settings_.accepted_ms : MonotonicMs();
  long long grace_deadline = start + config.sshd.login_grace_time * 1000LL;
  bool sock_open = true;

  while (net_child_alive_) {
    pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {sock_open ? sock_.get() : -1, POLLIN, 0}};
    int timeout = -1;
    if (!authenticated_ && config.sshd.login_grace_time > 0) {
      long long left = grace_deadline - MonotonicMs();
      if (left <= 0) {
        spdlog::info("connection from {}: login grace time ({} s) exceeded", settings_.conn.Client(),
                     config.sshd.login_grace_time);
        kill(net_child_, SIGKILL);
        grace_deadline = MonotonicMs() + 3600 * 1000LL;  // once
        continue;
      }
      timeout = static_cast<int>(left);
    }
    int r = poll(fds, 2, timeout);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      bool terminate = false;
      while (read(sigfd.get(), &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo != SIGCHLD) terminate = true;
      }
      if (terminate) {
        kill(net_child_, SIGTERM);
        HangUpSessions();
      }
      ReapChildren();
    }
    if (sock_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      WireMessage msg;
      bool closed = false;
      Status st = ReceiveRecord(sock_.get(), 0, &msg, &closed);
      if (st.IsUnavailable()) continue;
      if (closed || !st.ok()) {
        // The network child is gone (or about to be): stop listening; SIGCHLD ends us.
        sock_open = false;
        if (!st.ok()) {
          spdlog::warn("connection from {}: {}", settings_.conn.Client(), st.ToString());
          kill(net_child_, SIGKILL);
        }
        continue;
      }
      if (!HandleMessage(msg)) {
        spdlog::error("connection from {}: protocol violation by the network process; closing",
                      settings_.conn.Client());
        kill(net_child_, SIGKILL);
        sock_open = false;
      }
    }
  }
  // The child's last messages (byte counts) may still be queued behind its exit.
  while (sock_open && authenticated_) {
    WireMessage msg;
    bool closed = false;
    MsgType type;
    SessionEnd end;
    if (!ReceiveRecord(sock_.get(), 0, &msg, &closed).ok() || closed) break;
    if (PeekType(msg.payload, &type).ok() && type == MsgType::kSessionEnd && Decode(msg.payload, &end).ok()) {
      HandleSessionEnd(end);
    }
  }
  HangUpSessions();
  while (!audit_pending_.empty()) AuditSession(audit_pending_.begin()->first, true);
  return 0;
}

bool Monitor::HandleMessage(WireMessage& msg) {
  MsgType type;
  if (!PeekType(msg.payload, &type).ok() || !msg.fds.empty()) return false;
  switch (type) {
    case MsgType::kKeyQuery: {
      KeyQuery q;
      return !authenticated_ && Decode(msg.payload, &q).ok() && HandleKeyQuery(q);
    }
    case MsgType::kSpawn: {
      SpawnRequest r;
      return authenticated_ && Decode(msg.payload, &r).ok() && HandleSpawn(r);
    }
    case MsgType::kSignal: {
      SignalRequest r;
      return authenticated_ && Decode(msg.payload, &r).ok() && HandleSignal(r);
    }
    case MsgType::kSessionEnd: {
      SessionEnd m;
      return authenticated_ && Decode(msg.payload, &m).ok() && HandleSessionEnd(m);
    }
    default:
      return false;  // monitor → child types are never valid here
  }
}

bool Monitor::LookupUser(const std::string& user, UserEntry** entry) {
  auto it = users_.find(user);
  if (it != users_.end()) {
    *entry = &it->second;
    return true;
  }
  if (users_.size() >= kMaxDistinctUsers) return false;
  UserEntry e;
  if (IsValidUserName(user)) {
    // NSS and the database are reached from a short-lived child (user_lookup.h); the
    // chrooted network child could reach neither.
    Status st = LookupUserInChild(*settings_.config, settings_.privsep_uid, settings_.privsep_gid, user, &e);
    if (!st.ok()) {
      spdlog::error("cannot look up user '{}': {}; the allgo database is unreachable or failing, "
                    "logins are refused until it answers (check [mysql] in {})",
                    SanitizeForLog(user, 64), st.ToString(), settings_.config->path);
      if (settings_.metrics) settings_.metrics->DatabaseError();
      return false;
    }
  }
  *entry = &users_.emplace(user, std::move(e)).first->second;
  return true;
}

bool Monitor::HandleKeyQuery(const KeyQuery& q) {
  const Config& config = *settings_.config;
  // Bounded work per connection whatever the child asks: a compromised child cannot turn
  // the monitor into a database hammer.
  if (++key_queries_ > 4 * config.sshd.max_auth_tries + 8) return false;

  KeyAnswer answer;
  std::string reason;
  PublicKey key;
  std::string fingerprint = "?";
  if (!ParsePublicKeyLine(q.key_type + " " + q.key_base64, &key).ok()) {
    reason = "unsupported key";
  } else {
    fingerprint = key.fingerprint;
    UserEntry* entry = nullptr;
    if (!LookupUser(q.user, &entry)) {
      reason = "lookup failed";
    } else if (!entry->exists) {
      reason = "unknown user or no key";
    } else {
      for (const auto& allowed : entry->keys) {
        if (allowed.base64 == key.base64) {
          answer.allowed = true;
          answer.account = allowed.account;
          break;
        }
      }
      if (!answer.allowed) reason = entry->keys.empty() ? "unknown user or no key" : "key not allowed";
      if (answer.allowed && q.signed_phase) {
        authenticated_ = true;
        account_ = entry->account;
        account_.allgo_account = answer.account;
        startup_pipe_.reset();  // no longer counted by max_startups
      }
    }
  }
  const char* phase = q.signed_phase ? "signed" : "probe";
  std::string user = SanitizeForLog(q.user, 64);
  if (q.signed_phase || !answer.allowed) CountAuth(answer.allowed, reason);
  if (settings_.audit != nullptr && (q.signed_phase || !answer.allowed)) {
    AuthEvent event{settings_.conn.Client(), user, fingerprint == "?" ? "" : fingerprint, answer.account,
                    answer.allowed ? "success" : "failure", answer.allowed ? "" : reason};
    Status audit = settings_.audit->Auth(event);
    if (!audit.ok()) spdlog::error("{}", audit.ToString());
  }
  if (answer.allowed && !q.signed_phase) {
    spdlog::debug("auth probe ok: client={} user={} key={} account={}", settings_.conn.Client(), user,
                  fingerprint, answer.account);
  } else if (answer.allowed) {
    spdlog::info("auth accepted: client={} user={} key={} account={}", settings_.conn.Client(), user,
                 fingerprint, SanitizeForLog(answer.account));
  } else {
    spdlog::info("auth refused: client={} user={} key={} account=- phase={} reason={}",
                 settings_.conn.Client(), user, fingerprint, phase, reason);
  }
  Status st = SendRecord(sock_.get(), Encode(answer));
  return st.ok();
}

bool Monitor::HandleSpawn(const SpawnRequest& r) {
  const Config& config = *settings_.config;
  if (sessions_.count(r.id) != 0) return false;
  // The child enforces max_sessions on open channels; processes may outlive their channel
  // (closed by the client), so the monitor's own bound on live processes is looser.
  Status st;
  SpawnedSession s;
  if (sessions_.size() >= 2 * static_cast<size_t>(config.sshd.max_sessions) + 4) {
    st = Status::Permission("too many running sessions on this connection");
  } else {
    SpawnSettings spawn_settings{config.path, config.sshd.sftp_server};
    st = SpawnSession(account_, settings_.conn, spawn_settings, r, &s);
  }
  SpawnResult result;
  result.id = r.id;
  result.ok = st.ok();
  if (!st.ok()) {
    result.error = st.ToString().substr(0, kMaxErrorLen);
    spdlog::warn("session for {} refused: {}", account_.name, st.ToString());
    return SendRecord(sock_.get(), Encode(result)).ok();
  }
  std::string kind = SessionKindName(r.kind);
  if (r.kind == SessionKind::kSubsystem) kind += ":" + r.command;
  sessions_[r.id] = LiveSession{s.pid, kind, MonotonicMs()};
  if (settings_.metrics) {
    settings_.metrics->SessionStarted();
    bytes_pending_.insert(r.id);
  }
  if (settings_.audit != nullptr) {
    AuditPending& pending = audit_pending_[r.id];
    pending.event.client = settings_.conn.Client();
    pending.event.user = account_.name;
    pending.event.account = account_.allgo_account;
    pending.event.kind = kind;
  }
  std::vector<int> fds;
  if (s.pty) {
    fds = {s.master.get()};
  } else {
    fds = {s.in.get(), s.out.get(), s.err.get()};
  }
  return SendRecord(sock_.get(), Encode(result), fds).ok();
}

bool Monitor::HandleSignal(const SignalRequest& r) {
  auto it = sessions_.find(r.id);
  if (it == sessions_.end()) return true;  // raced with the exit: harmless
  if (std::string(SignalName(static_cast<int>(r.signo))).empty()) return false;
  kill(it->second.pid, static_cast<int>(r.signo));
  return true;
}

void Monitor::ReapChildren() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == net_child_) {
      net_child_alive_ = false;
      net_child_status_ = status;
      continue;
    }
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.pid != pid) continue;
      ExitedNotice notice{it->first, static_cast<uint32_t>(status)};
      if (settings_.metrics) {
        settings_.metrics->SessionEnded((MonotonicMs() - it->second.started_ms) / 1000.0);
      }
      if (auto p = audit_pending_.find(it->first); p != audit_pending_.end()) {
        SessionEvent& event = p->second.event;
        event.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (WIFSIGNALED(status)) event.exit_signal = SignalName(WTERMSIG(status));
        event.duration = (MonotonicMs() - it->second.started_ms) / 1000.0;
        p->second.exited = true;
        AuditSession(it->first, false);
      }
      sessions_.erase(it);
      if (net_child_alive_) SendRecord(sock_.get(), Encode(notice));
      break;
    }
  }
}

bool Monitor::HandleSessionEnd(const SessionEnd& m) {
  if (settings_.metrics && bytes_pending_.erase(m.id) == 1) settings_.metrics->AddBytes(m.bytes_in, m.bytes_out);
  auto p = audit_pending_.find(m.id);
  if (p == audit_pending_.end()) return true;  // no audit log, or already written
  p->second.event.bytes_in = m.bytes_in;
  p->second.event.bytes_out = m.bytes_out;
  p->second.counted = true;
  AuditSession(m.id, false);
  return true;
}

void Monitor::AuditSession(uint32_t id, bool flush) {
  auto p = audit_pending_.find(id);
  if (p == audit_pending_.end() || (!flush && !(p->second.exited && p->second.counted))) return;
  Status st = settings_.audit->Session(p->second.event);
  if (!st.ok()) spdlog::error("{}", st.ToString());
  audit_pending_.erase(p);
}

void Monitor::HangUpSessions() {
  for (const auto& [id, session] : sessions_) {
    kill(-session.pid, SIGHUP);  // each session leads its own process group (setsid)
    kill(-session.pid, SIGCONT);
  }
}

void Monitor::CountAuth(bool allowed, const std::string& reason) {
  if (!settings_.metrics) return;
  if (allowed) {
    settings_.metrics->AuthSucceeded();
  } else if (reason == "lookup failed") {
    settings_.metrics->AuthRefused(AuthRefusal::kDatabaseUnavailable);
  } else if (reason == "unknown user or no key") {
    settings_.metrics->AuthRefused(AuthRefusal::kUnknownUser);
  } else {
    settings_.metrics->AuthRefused(AuthRefusal::kKeyNotAllowed);
  }
}

}  // namespace allgo::sshd
