#include "monitor_protocol.h"

#include <csignal>

#include "wire.h"

namespace allgo::sshd {
namespace {

WireWriter Start(MsgType type) {
  WireWriter w;
  w.PutU8(static_cast<uint8_t>(type));
  return w;
}

// Reads and checks the type byte.
bool Expect(WireReader& r, MsgType type) {
  uint8_t t = 0;
  if (r.GetU8(&t) && t == static_cast<uint8_t>(type)) return true;
  r.Fail();  // a message of another type is not an empty message of this one
  return false;
}

bool GetBool(WireReader& r, bool* v) {
  uint8_t b = 2;
  if (!r.GetU8(&b)) return false;
  if (b > 1) {
    r.Fail();  // not a boolean: the whole message is malformed
    return false;
  }
  *v = b == 1;
  return true;
}

Status Done(const WireReader& r, const char* what) {
  if (r.Finish()) return Status::Ok();
  return Status::Invalid(std::string("malformed monitor message: ") + what);
}

void PutPermitLists(WireWriter& w, const std::vector<PermitList>& lists) {
  w.PutU32(static_cast<uint32_t>(lists.size()));
  for (const PermitList& list : lists) {
    w.PutU8(list.restricted ? 1 : 0);
    w.PutU32(static_cast<uint32_t>(list.entries.size()));
    for (const PermitEntry& e : list.entries) {
      w.PutString(e.host);
      w.PutU8(e.any_port ? 1 : 0);
      w.PutU32(e.port);
    }
  }
}

// Strict: bounded counts, a port is 1-65535 or "any" (then 0), a host is never empty; so
// what decodes re-encodes to the same bytes.
bool GetPermitLists(WireReader& r, std::vector<PermitList>* lists) {
  uint32_t count = 0;
  if (!r.GetU32(&count)) return false;
  if (count > kMaxPermitLists) {
    r.Fail();
    return false;
  }
  lists->clear();
  for (uint32_t i = 0; i < count; ++i) {
    PermitList list;
    uint32_t entries = 0;
    if (!GetBool(r, &list.restricted) || !r.GetU32(&entries)) return false;
    if (entries > kMaxPermitEntries || (!list.restricted && entries != 0)) {
      r.Fail();
      return false;
    }
    for (uint32_t j = 0; j < entries; ++j) {
      PermitEntry e;
      if (!r.GetString(&e.host, kMaxPermitHostLen) || !GetBool(r, &e.any_port) || !r.GetU32(&e.port)) return false;
      if (e.host.empty() || (e.any_port ? e.port != 0 : (e.port < 1 || e.port > 65535))) {
        r.Fail();
        return false;
      }
      list.entries.push_back(std::move(e));
    }
    lists->push_back(std::move(list));
  }
  return true;
}

void PutPolicy(WireWriter& w, const ForwardPolicy& p) {
  for (bool b : {p.local_tcp, p.remote_tcp, p.local_unix, p.remote_unix, p.agent, p.gateway_ports}) w.PutU8(b ? 1 : 0);
  PutPermitLists(w, p.permit_open);
  PutPermitLists(w, p.permit_listen);
  w.PutU32(p.max_forwards);
  w.PutU32(p.max_listeners);
}

bool GetPolicy(WireReader& r, ForwardPolicy* p) {
  return GetBool(r, &p->local_tcp) && GetBool(r, &p->remote_tcp) && GetBool(r, &p->local_unix) &&
         GetBool(r, &p->remote_unix) && GetBool(r, &p->agent) && GetBool(r, &p->gateway_ports) &&
         GetPermitLists(r, &p->permit_open) && GetPermitLists(r, &p->permit_listen) &&
         r.GetU32(&p->max_forwards) && r.GetU32(&p->max_listeners);
}

struct SignalEntry {
  const char* name;
  int signo;
};
constexpr SignalEntry kSignals[] = {
    {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},   {"HUP", SIGHUP},
    {"ILL", SIGILL},   {"INT", SIGINT},   {"KILL", SIGKILL}, {"PIPE", SIGPIPE},
    {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2},
};

}  // namespace

const char* SessionKindName(SessionKind kind) {
  switch (kind) {
    case SessionKind::kShell: return "shell";
    case SessionKind::kExec: return "exec";
    case SessionKind::kSubsystem: return "subsystem";
  }
  return "?";
}

std::string Encode(const KeyQuery& m) {
  WireWriter w = Start(MsgType::kKeyQuery);
  w.PutU8(m.signed_phase ? 1 : 0);
  w.PutString(m.user);
  w.PutString(m.key_type);
  w.PutString(m.key_base64);
  return w.data();
}

std::string Encode(const KeyAnswer& m) {
  WireWriter w = Start(MsgType::kKeyAnswer);
  w.PutU8(m.allowed ? 1 : 0);
  w.PutString(m.account);
  w.PutU8(m.pty_allowed ? 1 : 0);
  PutPolicy(w, m.forward_policy);
  return w.data();
}

std::string Encode(const SpawnRequest& m) {
  WireWriter w = Start(MsgType::kSpawn);
  w.PutU32(m.id);
  w.PutU8(static_cast<uint8_t>(m.kind));
  w.PutString(m.command);
  w.PutU8(m.has_pty ? 1 : 0);
  w.PutString(m.pty.term);
  w.PutU32(m.pty.cols);
  w.PutU32(m.pty.rows);
  w.PutU32(m.pty.width_px);
  w.PutU32(m.pty.height_px);
  w.PutU32(static_cast<uint32_t>(m.env.size()));
  for (const auto& [name, value] : m.env) {
    w.PutString(name);
    w.PutString(value);
  }
  return w.data();
}

std::string Encode(const SpawnResult& m) {
  WireWriter w = Start(MsgType::kSpawnResult);
  w.PutU32(m.id);
  w.PutU8(m.ok ? 1 : 0);
  w.PutString(m.error);
  return w.data();
}

std::string Encode(const SignalRequest& m) {
  WireWriter w = Start(MsgType::kSignal);
  w.PutU32(m.id);
  w.PutU32(m.signo);
  return w.data();
}

std::string Encode(const ExitedNotice& m) {
  WireWriter w = Start(MsgType::kExited);
  w.PutU32(m.id);
  w.PutU32(m.wait_status);
  return w.data();
}

std::string Encode(const SessionEnd& m) {
  WireWriter w = Start(MsgType::kSessionEnd);
  w.PutU32(m.id);
  w.PutU64(m.bytes_in);
  w.PutU64(m.bytes_out);
  return w.data();
}

Status Decode(const std::string& payload, SessionEnd* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kSessionEnd) && r.GetU32(&m->id) && r.GetU64(&m->bytes_in)) r.GetU64(&m->bytes_out);
  return Done(r, "session end");
}

const char* ForwardKindName(ForwardKindCode kind) {
  switch (kind) {
    case ForwardKindCode::kDirectTcpip: return "direct-tcpip";
    case ForwardKindCode::kForwardedTcpip: return "forwarded-tcpip";
    case ForwardKindCode::kAuthAgent: return "auth-agent";
    case ForwardKindCode::kTcpipForward: return "tcpip-forward";
    case ForwardKindCode::kDirectStreamlocal: return "direct-streamlocal";
    case ForwardKindCode::kForwardedStreamlocal: return "forwarded-streamlocal";
    case ForwardKindCode::kStreamlocalForward: return "streamlocal-forward";
  }
  return "unknown";
}

std::string Encode(const ForwardEvent& m) {
  WireWriter w = Start(MsgType::kForwardEvent);
  w.PutU8(static_cast<uint8_t>(m.phase));
  w.PutU8(static_cast<uint8_t>(m.kind));
  w.PutString(m.target.substr(0, kMaxForwardText));
  w.PutString(m.origin.substr(0, kMaxForwardText));
  w.PutU64(m.bytes_in);
  w.PutU64(m.bytes_out);
  w.PutU32(m.duration_ms);
  w.PutString(m.result.substr(0, kMaxForwardText));
  return w.data();
}

Status Decode(const std::string& payload, ForwardEvent* m) {
  WireReader r(payload);
  uint8_t phase = 0, kind = 0;
  if (Expect(r, MsgType::kForwardEvent) && r.GetU8(&phase) && r.GetU8(&kind) &&
      r.GetString(&m->target, kMaxForwardText) && r.GetString(&m->origin, kMaxForwardText) &&
      r.GetU64(&m->bytes_in) && r.GetU64(&m->bytes_out) && r.GetU32(&m->duration_ms)) {
    r.GetString(&m->result, kMaxForwardText);
  }
  Status st = Done(r, "forward event");
  if (!st.ok()) return st;
  if (phase < 1 || phase > 4) return Status::Invalid("forward event: unknown phase");
  if (kind < 1 || kind > kForwardKindCount) return Status::Invalid("forward event: unknown kind");
  m->phase = static_cast<ForwardPhase>(phase);
  m->kind = static_cast<ForwardKindCode>(kind);
  return Status::Ok();
}

std::string Encode(const OpenStreams&) { return Start(MsgType::kOpenStreams).data(); }

std::string Encode(const StreamsResult& m) {
  WireWriter w = Start(MsgType::kStreamsResult);
  w.PutU8(m.ok ? 1 : 0);
  w.PutString(m.error);
  return w.data();
}

Status Decode(const std::string& payload, OpenStreams*) {
  WireReader r(payload);
  Expect(r, MsgType::kOpenStreams);
  return Done(r, "open streams");
}

Status Decode(const std::string& payload, StreamsResult* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kStreamsResult) && GetBool(r, &m->ok)) r.GetString(&m->error, kMaxErrorLen);
  return Done(r, "streams result");
}

Status PeekType(const std::string& payload, MsgType* type) {
  if (payload.empty()) return Status::Invalid("empty monitor message");
  auto t = static_cast<uint8_t>(payload[0]);
  if (t < static_cast<uint8_t>(MsgType::kKeyQuery) || t > static_cast<uint8_t>(MsgType::kForwardEvent)) {
    return Status::Invalid("unknown monitor message type " + std::to_string(t));
  }
  *type = static_cast<MsgType>(t);
  return Status::Ok();
}

Status Decode(const std::string& payload, KeyQuery* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kKeyQuery) && GetBool(r, &m->signed_phase)) {
    r.GetString(&m->user, kMaxUserLen);
    r.GetString(&m->key_type, 64);
    r.GetString(&m->key_base64, kMaxKeyLen);
  }
  return Done(r, "key query");
}

Status Decode(const std::string& payload, KeyAnswer* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kKeyAnswer) && GetBool(r, &m->allowed) && r.GetString(&m->account, kMaxAccountLen)) {
    if (GetBool(r, &m->pty_allowed)) GetPolicy(r, &m->forward_policy);
  }
  return Done(r, "key answer");
}

Status Decode(const std::string& payload, SpawnRequest* m) {
  WireReader r(payload);
  uint8_t kind = 0;
  uint32_t env_count = 0;
  if (Expect(r, MsgType::kSpawn) && r.GetU32(&m->id) && r.GetU8(&kind) &&
      r.GetString(&m->command, kMaxCommandLen) && GetBool(r, &m->has_pty) &&
      r.GetString(&m->pty.term, kMaxTermLen) && r.GetU32(&m->pty.cols) &&
      r.GetU32(&m->pty.rows) && r.GetU32(&m->pty.width_px) && r.GetU32(&m->pty.height_px) &&
      r.GetU32(&env_count)) {
    if (kind < 1 || kind > 3 || env_count > kMaxEnvEntries) {
      return Status::Invalid("malformed monitor message: spawn request");
    }
    m->kind = static_cast<SessionKind>(kind);
    m->env.clear();
    for (uint32_t i = 0; i < env_count; ++i) {
      std::string name, value;
      if (!r.GetString(&name, kMaxEnvLen) || !r.GetString(&value, kMaxEnvLen)) break;
      // SSH_AUTH_SOCK is the child's own (agent forwarding: a path inside the sandbox),
      // never the client's: OnEnv refuses it from the client.
      if (!IsAcceptedEnvName(name) && name != kAuthSockEnv) return Status::Invalid("spawn request: refused variable");
      m->env.emplace_back(std::move(name), std::move(value));
    }
  }
  return Done(r, "spawn request");
}

Status Decode(const std::string& payload, SpawnResult* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kSpawnResult) && r.GetU32(&m->id) && GetBool(r, &m->ok)) {
    r.GetString(&m->error, kMaxErrorLen);
  }
  return Done(r, "spawn result");
}

Status Decode(const std::string& payload, SignalRequest* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kSignal) && r.GetU32(&m->id)) r.GetU32(&m->signo);
  return Done(r, "signal request");
}

Status Decode(const std::string& payload, ExitedNotice* m) {
  WireReader r(payload);
  if (Expect(r, MsgType::kExited) && r.GetU32(&m->id)) r.GetU32(&m->wait_status);
  return Done(r, "exit notice");
}

bool IsAcceptedEnvName(const std::string& name) {
  if (name == "LANG" || name == "TERM") return true;
  if (name.size() <= 3 || name.compare(0, 3, "LC_") != 0) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

int SignalFromName(const std::string& name) {
  for (const auto& e : kSignals) {
    if (name == e.name) return e.signo;
  }
  return 0;
}

const char* SignalName(int signo) {
  for (const auto& e : kSignals) {
    if (signo == e.signo) return e.name;
  }
  return "";
}

}  // namespace allgo::sshd
