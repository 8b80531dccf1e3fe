#include "monitor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>

#include <cerrno>
#include <iterator>

#include <spdlog/spdlog.h>

#include "allgo/identity.h"
#include "allgo/bridge/carrier.h"
#include "allgo/key_options.h"
#include "allgo/memory.h"
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
      MsgType type;
      bool spawn = PeekType(msg.payload, &type).ok() && type == MsgType::kSpawn;
      if (!HandleMessage(msg)) {
        spdlog::error("connection from {}: protocol violation by the network process; closing",
                      settings_.conn.Client());
        kill(net_child_, SIGKILL);
        sock_open = false;
      } else if (spawn) {
        // Authentication (NSS, the key lookup) and the spawn ran deep below this loop; the
        // session then idles here for hours. Their stack pages are handed back (issue 20).
        ReleaseDeadStack();
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
    ForwardEvent forward;
    if (PeekType(msg.payload, &type).ok() && type == MsgType::kSessionEnd && Decode(msg.payload, &end).ok()) {
      HandleSessionEnd(end);
    } else if (type == MsgType::kForwardEvent && Decode(msg.payload, &forward).ok()) {
      HandleForwardEvent(forward);
    }
  }
  HangUpSessions();
  while (!sessions_.empty()) FinishSession(sessions_.begin()->first, true);
  WriteRefusalSummary(refusal_audit_.Flush(LineBudget::Clock::now(), true).count);
  // Forwards the child never reported ended leave the active gauge with the connection.
  for (; forwards_open_ > 0; --forwards_open_) {
    if (settings_.metrics) settings_.metrics->ForwardEnded(0, 0);
  }
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
    case MsgType::kForwardEvent: {
      ForwardEvent m;
      return authenticated_ && Decode(msg.payload, &m).ok() && HandleForwardEvent(m);
    }
    case MsgType::kOpenStreams: {
      OpenStreams m;
      return authenticated_ && !streams_requested_ && Decode(msg.payload, &m).ok() && HandleOpenStreams();
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
    Status st = LookupUserInChild(*settings_.config, settings_.lookup_uid, settings_.lookup_gid, user, &e);
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
  AuthRefusal refusal = AuthRefusal::kKeyNotAllowed;  // for the metrics, when refused
  PublicKey key;
  std::string fingerprint = "?";
  if (!ParsePublicKeyLine(q.key_type + " " + q.key_base64, &key).ok()) {
    reason = "unsupported key";
  } else {
    fingerprint = key.fingerprint;
    UserEntry* entry = nullptr;
    if (!LookupUser(q.user, &entry)) {
      reason = "lookup failed";
      refusal = AuthRefusal::kDatabaseUnavailable;
    } else if (!entry->exists) {
      reason = entry->reason.empty() ? "unknown user or no key" : SanitizeForLog(entry->reason, 200);
      refusal = AuthRefusal::kUnknownUser;
    } else if (!IsWebappUid(config.nss, entry->account.uid)) {
      reason = "account uid " + std::to_string(entry->account.uid) + " is outside the webapp range";
    } else {
      KeyOptions options;
      for (const auto& allowed : entry->keys) {
        // Like OpenSSH, the first line of this key whose options let this client in wins.
        if (allowed.base64 != key.base64 || !KeyOptionsAllow(allowed, &options, &reason)) continue;
        answer.allowed = true;
        answer.account = allowed.account;
        answer.pty_allowed = options.pty;
        answer.forward_policy = ComputeForwardPolicy(config.sshd, options);
        break;
      }
      if (!answer.allowed && reason.empty()) {
        reason = entry->keys.empty() ? "unknown user or no key" : "key not allowed";
        if (entry->keys.empty()) refusal = AuthRefusal::kUnknownUser;
      }
      if (answer.allowed && q.signed_phase) {
        authenticated_ = true;
        account_ = entry->account;
        account_.allgo_account = answer.account;
        key_options_ = std::move(options);
        forward_policy_ = answer.forward_policy;
        startup_pipe_.reset();  // no longer counted by max_startups
      }
    }
  }
  const char* phase = q.signed_phase ? "signed" : "probe";
  std::string user = SanitizeForLog(q.user, 64);
  if (q.signed_phase || !answer.allowed) CountAuth(answer.allowed, refusal);
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

bool Monitor::KeyOptionsAllow(const AllowedEntry& allowed, KeyOptions* options, std::string* reason) const {
  const Config& config = *settings_.config;
  KeyOptions own;
  Status st = ParseKeyOptions(allowed.options, &own);
  // [authkeys] key_options only when the operator set it: its default (restrict,pty) is for
  // stock OpenSSH (config.h, docs/decisions.md).
  if (st.ok()) st = RestrictKeyOptions(config.authkeys.sshd_options, own, options);
  if (!st.ok()) {
    *reason = "key options: " + st.message();
    return false;
  }
  // The client address is the PROXY header's when one was accepted; never resolved (no DNS).
  if (!FromAllows(*options, settings_.conn.client_ip)) {
    *reason = "key option from= does not allow " + settings_.conn.client_ip;
    return false;
  }
  if (Expired(*options, time(nullptr))) {
    *reason = "key expired (key option expiry-time)";
    return false;
  }
  return true;
}

bool Monitor::HandleSpawn(const SpawnRequest& r) {
  const Config& config = *settings_.config;
  if (sessions_.count(r.id) != 0) return false;
  // The child enforces max_sessions on open channels; processes may outlive their channel
  // (closed by the client), so the monitor's own bound on records (live processes, and
  // exited ones still waiting for their byte counts) is looser.
  Status st;
  SpawnedSession s;
  if (!IsWebappUid(config.nss, account_.uid)) {
    // Belt and braces: the lookup builds accounts inside the range; nothing of ours ever
    // starts a session as root or as a uid that is not a webapp's.
    st = Status::Permission("refusing to start a session as uid " + std::to_string(account_.uid) +
                            ": not a webapp uid");
  } else if (sessions_.size() >= 2 * static_cast<size_t>(config.sshd.max_sessions) + 4) {
    st = Status::Permission("too many running sessions on this connection");
  } else if (r.has_pty && !key_options_.pty) {
    // The network child refuses pty-req already; this is the check that counts.
    st = Status::Permission("a PTY is not permitted by the key's options (no-pty or restrict)");
  } else {
    SpawnSettings spawn_settings{config.path, config.sshd.sftp_server, key_options_.has_command,
                                 key_options_.command};
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
  SessionRecord& record = sessions_[r.id];
  record.pid = s.pid;
  record.started_ms = MonotonicMs();
  record.event.client = settings_.conn.Client();
  record.event.user = account_.name;
  record.event.account = account_.allgo_account;
  record.event.kind = kind;
  if (settings_.metrics) settings_.metrics->SessionStarted();
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
  if (it == sessions_.end() || it->second.exited) return true;  // raced with the exit: harmless
  if (std::string(SignalName(static_cast<int>(r.signo))).empty()) return false;
  kill(it->second.pid, static_cast<int>(r.signo));
  return true;
}

bool Monitor::HandleOpenStreams() {
  streams_requested_ = true;
  StreamsResult result;
  UniqueFd socket;
  Status st;
  if (!forward_policy_.Any()) {
    // The network child refuses every forward already; this is the check that counts.
    st = Status::Permission("forwarding is not permitted for this connection ([sshd] allow_*_forwarding, or the "
                            "key's options: restrict, no-port-forwarding, no-agent-forwarding)");
  } else if (!IsWebappUid(settings_.config->nss, account_.uid)) {
    st = Status::Permission("refusing to start a carrier as uid " + std::to_string(account_.uid) +
                            ": not a webapp uid");
  } else {
    st = RunCarrier(&socket);
  }
  result.ok = st.ok();
  if (!st.ok()) {
    result.error = st.message().substr(0, kMaxErrorLen);
    spdlog::warn("streams refused for user {}: {}", account_.name, st.message());
    return SendRecord(sock_.get(), Encode(result)).ok();
  }
  spdlog::info("streams opened for user {} (client {})", account_.name, settings_.conn.Client());
  return SendRecord(sock_.get(), Encode(result), {socket.get()}).ok();
}

Status Monitor::RunCarrier(UniqueFd* socket) {
  const Config& config = *settings_.config;
  SpawnSettings spawn_settings{config.path, config.sshd.sftp_server, false, ""};
  pid_t pid = -1;
  UniqueFd answer;
  Status st = SpawnCarrier(account_, settings_.conn, spawn_settings, &pid, &answer);
  if (!st.ok()) return st;
  // As long as a session's own wait for a starting sandbox, plus the connect.
  const int deadline_ms = (10 + static_cast<int>(config.sandbox.start_wait)) * 1000;
  WireMessage msg;
  bool closed = false;
  st = ReceiveRecord(answer.get(), deadline_ms, &msg, &closed);
  // The carrier has nothing left to do once it answered (or failed to in time): it and
  // anything it started (allgo-shell-state) go, and are reaped here, not by ReapChildren.
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (st.IsUnavailable()) {
    return Status::Unavailable("the sandbox did not answer within " + std::to_string(deadline_ms / 1000) + " s");
  }
  if (!st.ok()) return Status::Invalid("bad answer from the carrier: " + st.message());
  if (closed) {
    return Status::Unavailable("the carrier ended without an answer (wait status " + std::to_string(status) + ")");
  }
  const std::string& text = msg.payload;
  if (text == bridge::kCarrierOk && msg.fds.size() == 1) {
    *socket = std::move(msg.fds[0]);
    return Status::Ok();
  }
  const std::string prefix = bridge::kCarrierErrorPrefix;
  if (msg.fds.empty() && text.compare(0, prefix.size(), prefix) == 0 && text.size() <= bridge::kMaxCarrierRecord) {
    // Written by a process of the webapp's uid: shown to its own user, logged sanitised.
    return Status::Unavailable(SanitizeForLog(text.substr(prefix.size()), bridge::kMaxCarrierRecord));
  }
  return Status::Invalid("malformed answer from the carrier");
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
    for (auto& [id, record] : sessions_) {
      if (record.exited || record.pid != pid) continue;
      record.exited = true;
      SessionEvent& event = record.event;
      event.duration = (MonotonicMs() - record.started_ms) / 1000.0;
      event.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      if (WIFSIGNALED(status)) {
        // A signal outside the SSH name table reaches the client as exit-status 128+N
        // (net_session.cc); the audit line says the same.
        event.exit_signal = SignalName(WTERMSIG(status));
        if (event.exit_signal.empty()) event.exit_status = 128 + WTERMSIG(status);
      }
      if (settings_.metrics) settings_.metrics->SessionEnded(event.duration);
      uint32_t ended = id;
      if (net_child_alive_) SendRecord(sock_.get(), Encode(ExitedNotice{ended, static_cast<uint32_t>(status)}));
      FinishSession(ended, false);  // may drop the record: stop iterating
      break;
    }
  }
}

bool Monitor::HandleSessionEnd(const SessionEnd& m) {
  auto it = sessions_.find(m.id);
  if (it == sessions_.end() || it->second.counted) return true;  // unknown or already reported
  SessionRecord& record = it->second;
  record.counted = true;
  record.event.bytes_in = m.bytes_in;
  record.event.bytes_out = m.bytes_out;
  if (settings_.metrics) settings_.metrics->AddBytes(m.bytes_in, m.bytes_out);
  FinishSession(m.id, false);
  return true;
}

void Monitor::FinishSession(uint32_t id, bool flush) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  SessionRecord& record = it->second;
  if (!flush && !(record.exited && record.counted)) return;
  if (!record.exited) {
    // Still running as the connection ends (hung up, not reaped yet): it leaves the
    // sessions_active gauge now, with the duration so far.
    record.event.duration = (MonotonicMs() - record.started_ms) / 1000.0;
    if (settings_.metrics) settings_.metrics->SessionEnded(record.event.duration);
  }
  if (settings_.audit != nullptr) {
    Status st = settings_.audit->Session(record.event);
    if (!st.ok()) spdlog::error("{}", st.ToString());
  }
  sessions_.erase(it);
}

bool Monitor::HandleForwardEvent(const ForwardEvent& m) {
  // Indexed by ForwardKindCode - 1 (Decode checked its range).
  static constexpr ForwardMetricKind kKinds[] = {
      ForwardMetricKind::kDirectTcpip,        ForwardMetricKind::kForwardedTcpip,
      ForwardMetricKind::kAuthAgent,          ForwardMetricKind::kTcpipForward,
      ForwardMetricKind::kDirectStreamlocal,  ForwardMetricKind::kForwardedStreamlocal,
      ForwardMetricKind::kStreamlocalForward};
  static_assert(std::size(kKinds) == kForwardKindCount);
  const ForwardMetricKind kind = kKinds[static_cast<int>(m.kind) - 1];
  switch (m.phase) {
    case ForwardPhase::kOpened:
      if (forwards_open_ >= kMaxForwardsCounted) return true;  // a child cannot inflate the gauge
      ++forwards_open_;
      if (settings_.metrics) settings_.metrics->ForwardAccepted(kind, true);
      return true;  // the audit line comes at the end, with what it moved
    case ForwardPhase::kEnded:
      if (forwards_open_ == 0) return true;
      --forwards_open_;
      if (settings_.metrics) settings_.metrics->ForwardEnded(m.bytes_in, m.bytes_out);
      break;
    case ForwardPhase::kRefused:
      if (settings_.metrics) settings_.metrics->ForwardRefused(kind);
      if (!AuditRefusal(m.kind)) return true;
      break;
    case ForwardPhase::kListening:
      if (settings_.metrics) settings_.metrics->ForwardAccepted(kind, false);
      break;
  }
  if (settings_.audit != nullptr) {
    ForwardAuditEvent e{settings_.conn.Client(), account_.name, account_.allgo_account, ForwardKindName(m.kind),
                        SanitizeForLog(m.target, 300), SanitizeForLog(m.origin, 300), m.bytes_in, m.bytes_out,
                        m.duration_ms / 1000.0, SanitizeForLog(m.result, 300)};
    Status st = settings_.audit->Forward(e);
    if (!st.ok()) spdlog::error("{}", st.ToString());
  }
  return true;
}

bool Monitor::AuditRefusal(ForwardKindCode kind) {
  LineBudget::Summary ended;
  const bool audit = refusal_audit_.Take(LineBudget::Clock::now(), &ended);
  WriteRefusalSummary(ended.count);  // a minute that counted refusals ended: its line first
  if (!audit) unaudited_kind_ = kind;
  return audit;
}

void Monitor::WriteRefusalSummary(uint64_t count) {
  if (count == 0) return;
  const std::string result =
      "refused: " + std::to_string(count) + " more refusals within a minute, not audited one by one (metrics count them)";
  spdlog::info("forward refusals: user={} client={}: {}", account_.name, settings_.conn.Client(), result);
  if (settings_.audit == nullptr) return;
  ForwardAuditEvent e{settings_.conn.Client(), account_.name, account_.allgo_account, ForwardKindName(unaudited_kind_),
                      "", "", 0, 0, 0, result};
  Status st = settings_.audit->Forward(e);
  if (!st.ok()) spdlog::error("{}", st.ToString());
}

void Monitor::HangUpSessions() {
  for (const auto& [id, session] : sessions_) {
    if (session.exited) continue;  // reaped: its pid may belong to someone else now
    kill(-session.pid, SIGHUP);    // each session leads its own process group (setsid)
    kill(-session.pid, SIGCONT);
  }
}

void Monitor::CountAuth(bool allowed, AuthRefusal refusal) {
  if (!settings_.metrics) return;
  if (allowed) {
    settings_.metrics->AuthSucceeded();
  } else {
    settings_.metrics->AuthRefused(refusal);
  }
}

}  // namespace allgo::sshd
