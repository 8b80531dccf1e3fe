// Encoder and strict decoder of the bridge protocol (docs/protocol.md).
#include "allgo/bridge/protocol.h"

#include <algorithm>
#include <type_traits>

namespace allgo::bridge {
namespace {

constexpr size_t kMaxFrame = kFrameHeaderSize + kMaxBody;

// ---- encoding ----

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) {
    U8(static_cast<uint8_t>(v >> 8));
    U8(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    U16(static_cast<uint16_t>(v >> 16));
    U16(static_cast<uint16_t>(v));
  }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

void PutWindow(Writer& w, const WindowSize& size) {
  w.U16(size.rows);
  w.U16(size.cols);
  w.U16(size.xpixel);
  w.U16(size.ypixel);
}

void EncodeFields(Writer& w, const Open& m) {
  w.U16(m.version);
  uint8_t flags = 0;
  if (m.login_shell) flags |= 1;
  if (m.pty) flags |= 2;
  w.U8(flags);
  w.Str(m.command);
  w.Str(m.term);
  PutWindow(w, m.window);
  w.U16(static_cast<uint16_t>(m.modes.size()));
  for (const TermMode& mode : m.modes) {
    w.U8(mode.opcode);
    w.U32(mode.value);
  }
  w.U16(static_cast<uint16_t>(m.env.size()));
  for (const auto& [name, value] : m.env) {
    w.Str(name);
    w.Str(value);
  }
}
void EncodeFields(Writer& w, const Opened& m) {
  w.U16(m.version);
  w.Str(m.session);
}
void EncodeFields(Writer&, const Attached&) {}
void EncodeFields(Writer& w, const Started& m) { w.U32(m.pid); }
void EncodeFields(Writer& w, const Window& m) { PutWindow(w, m.size); }
void EncodeFields(Writer& w, const Signal& m) { w.U8(m.signo); }
void EncodeFields(Writer& w, const Exit& m) {
  w.U8(m.signaled ? 1 : 0);
  w.U8(m.code);
  w.U8(m.core_dumped ? 1 : 0);
}
void EncodeFields(Writer& w, const Error& m) { w.Str(m.text); }
void EncodeFields(Writer& w, const Data& m) {
  w.U8(static_cast<uint8_t>(m.stream));
  w.Str(m.bytes);
}
void EncodeFields(Writer& w, const Eof& m) { w.U8(static_cast<uint8_t>(m.stream)); }
void EncodeFields(Writer& w, const Hello& m) { w.U16(m.version); }
void EncodeFields(Writer& w, const StreamOpen& m) {
  w.U32(m.stream);
  w.U8(static_cast<uint8_t>(m.kind));
  w.Str(m.host);
  w.U32(m.port);
  w.Str(m.origin_host);
  w.U32(m.origin_port);
  w.U32(m.listener);
  w.U32(m.window);
}
void EncodeFields(Writer& w, const StreamAccept& m) {
  w.U32(m.stream);
  w.U32(m.window);
}
void EncodeFields(Writer& w, const StreamRefuse& m) {
  w.U32(m.stream);
  w.U8(static_cast<uint8_t>(m.reason));
  w.Str(m.text);
}
void EncodeFields(Writer& w, const StreamData& m) {
  w.U32(m.stream);
  w.Str(m.bytes);
}
void EncodeFields(Writer& w, const StreamWindow& m) {
  w.U32(m.stream);
  w.U32(m.increment);
}
void EncodeFields(Writer& w, const StreamEof& m) { w.U32(m.stream); }
void EncodeFields(Writer& w, const StreamClose& m) { w.U32(m.stream); }
void EncodeFields(Writer& w, const Listen& m) {
  w.U32(m.listener);
  w.U8(static_cast<uint8_t>(m.kind));
  w.Str(m.address);
  w.U32(m.port);
}
void EncodeFields(Writer& w, const ListenResult& m) {
  w.U32(m.listener);
  w.U8(m.ok ? 1 : 0);
  w.U32(m.port);
  w.Str(m.path);
  w.Str(m.error);
}
void EncodeFields(Writer& w, const Unlisten& m) { w.U32(m.listener); }

template <typename T>
constexpr Type TypeOf() {
  if constexpr (std::is_same_v<T, Open>) return Type::kOpen;
  if constexpr (std::is_same_v<T, Opened>) return Type::kOpened;
  if constexpr (std::is_same_v<T, Attached>) return Type::kAttached;
  if constexpr (std::is_same_v<T, Started>) return Type::kStarted;
  if constexpr (std::is_same_v<T, Window>) return Type::kWindow;
  if constexpr (std::is_same_v<T, Signal>) return Type::kSignal;
  if constexpr (std::is_same_v<T, Exit>) return Type::kExit;
  if constexpr (std::is_same_v<T, Error>) return Type::kError;
  if constexpr (std::is_same_v<T, Data>) return Type::kData;
  if constexpr (std::is_same_v<T, Eof>) return Type::kEof;
  if constexpr (std::is_same_v<T, Hello>) return Type::kOpen;  // type 1, version first
  if constexpr (std::is_same_v<T, StreamOpen>) return Type::kStreamOpen;
  if constexpr (std::is_same_v<T, StreamAccept>) return Type::kStreamAccept;
  if constexpr (std::is_same_v<T, StreamRefuse>) return Type::kStreamRefuse;
  if constexpr (std::is_same_v<T, StreamData>) return Type::kStreamData;
  if constexpr (std::is_same_v<T, StreamWindow>) return Type::kStreamWindow;
  if constexpr (std::is_same_v<T, StreamEof>) return Type::kStreamEof;
  if constexpr (std::is_same_v<T, StreamClose>) return Type::kStreamClose;
  if constexpr (std::is_same_v<T, Listen>) return Type::kListen;
  if constexpr (std::is_same_v<T, ListenResult>) return Type::kListenResult;
  if constexpr (std::is_same_v<T, Unlisten>) return Type::kUnlisten;
}

// ---- validation (shared by Validate and the decoder) ----

bool IsPrintableAscii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

bool IsTermName(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string CheckWindow(const WindowSize& size) {
  if (size.rows > kMaxWindowCells || size.cols > kMaxWindowCells) {
    return "window larger than 10000 cells";
  }
  return "";
}

uint16_t VersionOf(Mode mode) {
  switch (mode) {
    case Mode::kStdio: return kStdioProtocolVersion;
    case Mode::kStream: return kStreamProtocolVersion;
    case Mode::kSocket: break;
  }
  return kProtocolVersion;
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kStdio: return "stdio";
    case Mode::kStream: return "stream";
    case Mode::kSocket: break;
  }
  return "socket";
}

std::string VersionMismatch(const char* what, uint16_t version, Mode mode) {
  return std::string(what) + ": unsupported protocol version " + std::to_string(version) +
         " (this side speaks " + std::to_string(VersionOf(mode)) +
         (mode == Mode::kSocket ? std::string(")") : std::string(", the ") + ModeName(mode) + " mode)");
}

std::string Check(const Open& m, Mode transport) {
  if (m.version != VersionOf(transport)) return VersionMismatch("open", m.version, transport);
  if (m.login_shell != m.command.empty()) {
    return m.login_shell ? "open: a login shell takes no command" : "open: empty command";
  }
  if (m.command.size() > kMaxCommand) return "open: command longer than 60000 bytes";
  if (m.command.find('\0') != std::string::npos) return "open: command contains a NUL byte";
  if (m.term.size() > kMaxTerm) return "open: terminal type longer than 64 bytes";
  if (!IsTermName(m.term)) return "open: terminal type has characters outside [A-Za-z0-9._+-]";
  if (std::string e = CheckWindow(m.window); !e.empty()) return "open: " + e;
  if (m.modes.size() > kMaxModes) return "open: more than 64 terminal modes";
  for (const TermMode& mode : m.modes) {
    if (mode.opcode == 0 || mode.opcode >= 160) return "open: terminal mode opcode out of range";
  }
  if (m.env.size() > kMaxEnv) return "open: more than 64 environment variables";
  for (const auto& [name, value] : m.env) {
    if (name.size() > kMaxEnvName) return "open: environment variable name longer than 128 bytes";
    if (!IsForwardableEnv(name)) return "open: environment variable not allowed: " + name;
    if (value.size() > kMaxEnvValue) return "open: environment value longer than 4096 bytes";
    if (value.find('\0') != std::string::npos) return "open: environment value contains NUL";
  }
  return "";
}
std::string Check(const Opened& m, Mode) {
  if (m.version != kProtocolVersion) {
    return "opened: unsupported protocol version " + std::to_string(m.version);
  }
  if (!IsValidSessionName(m.session)) return "opened: malformed session name";
  return "";
}
std::string Check(const Attached&, Mode) { return ""; }
std::string Check(const Started&, Mode) { return ""; }
std::string Check(const Window& m, Mode) {
  std::string e = CheckWindow(m.size);
  return e.empty() ? e : "window: " + e;
}
std::string Check(const Signal& m, Mode) {
  return IsRelayableSignal(m.signo) ? "" : "signal: signal " + std::to_string(m.signo) +
                                               " may not be relayed";
}
std::string Check(const Exit& m, Mode) {
  if (m.signaled && (m.code == 0 || m.code > 64)) return "exit: signal number out of range";
  if (!m.signaled && m.core_dumped) return "exit: core dump without a signal";
  return "";
}
std::string Check(const Error& m, Mode) {
  if (m.text.size() > kMaxErrorText) return "error: text longer than 1024 bytes";
  if (!IsPrintableAscii(m.text)) return "error: text is not printable ASCII";
  return "";
}
bool IsStream(Stream s) { return static_cast<uint8_t>(s) <= static_cast<uint8_t>(Stream::kStderr); }
std::string Check(const Data& m, Mode) {
  if (!IsStream(m.stream)) return "data: unknown stream";
  if (m.bytes.empty()) return "data: empty";
  if (m.bytes.size() > kMaxData) return "data: longer than 32768 bytes";
  return "";
}
std::string Check(const Eof& m, Mode) { return IsStream(m.stream) ? "" : "eof: unknown stream"; }

std::string Check(const Hello& m, Mode mode) {
  return m.version == kStreamProtocolVersion ? "" : VersionMismatch("hello", m.version, mode);
}
std::string CheckId(uint32_t id) { return id == 0 ? "stream id 0" : ""; }
bool IsHost(std::string_view s) {
  // A DNS name or an address literal: letters, digits, '.', '-', '_' and ':' (IPv6), no more.
  if (s.empty() || s.size() > kMaxHost) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}
bool IsSocketPath(std::string_view s) {
  return !s.empty() && s.size() <= kMaxSocketPath && s[0] == '/' && s.find('\0') == std::string_view::npos;
}
std::string Check(const StreamOpen& m, Mode) {
  if (std::string e = CheckId(m.stream); !e.empty()) return "stream-open: " + e;
  if (m.window > kMaxStreamWindow) return "stream-open: window larger than 16 MiB";
  if (m.origin_port > 65535 || m.port > 65535) return "stream-open: port out of range";
  if (!m.origin_host.empty() && !IsHost(m.origin_host)) return "stream-open: malformed originator address";
  bool from_client = (m.stream & 1) != 0;
  switch (m.kind) {
    case StreamKind::kTcp:
    case StreamKind::kForwardedTcp:
      if (!IsHost(m.host)) return "stream-open: malformed host";
      if (m.port == 0) return "stream-open: port 0";
      break;
    case StreamKind::kUnix:
    case StreamKind::kForwardedUnix:
      if (!IsSocketPath(m.host)) return "stream-open: malformed socket path";
      if (m.port != 0 || m.origin_port != 0 || !m.origin_host.empty()) return "stream-open: a unix stream has no port";
      break;
    case StreamKind::kAuthAgent:
      if (!m.host.empty() || m.port != 0 || m.origin_port != 0 || !m.origin_host.empty()) {
        return "stream-open: an agent stream has no address";
      }
      break;
    default:
      return "stream-open: unknown kind " + std::to_string(static_cast<unsigned>(m.kind));
  }
  bool client_kind = m.kind == StreamKind::kTcp || m.kind == StreamKind::kUnix;
  if (client_kind != from_client) return "stream-open: stream id of the wrong side for its kind";
  if (client_kind != (m.listener == 0)) return "stream-open: listener id does not match the kind";
  return "";
}
std::string Check(const StreamAccept& m, Mode) {
  if (std::string e = CheckId(m.stream); !e.empty()) return "stream-accept: " + e;
  return m.window > kMaxStreamWindow ? "stream-accept: window larger than 16 MiB" : "";
}
std::string Check(const StreamRefuse& m, Mode) {
  if (std::string e = CheckId(m.stream); !e.empty()) return "stream-refuse: " + e;
  auto r = static_cast<uint8_t>(m.reason);
  if (r < 1 || r > 4) return "stream-refuse: unknown reason " + std::to_string(r);
  if (m.text.size() > kMaxErrorText) return "stream-refuse: text longer than 1024 bytes";
  if (!IsPrintableAscii(m.text)) return "stream-refuse: text is not printable ASCII";
  return "";
}
std::string Check(const StreamData& m, Mode) {
  if (std::string e = CheckId(m.stream); !e.empty()) return "stream-data: " + e;
  if (m.bytes.empty()) return "stream-data: empty";
  if (m.bytes.size() > kMaxData) return "stream-data: longer than 32768 bytes";
  return "";
}
std::string Check(const StreamWindow& m, Mode) {
  if (std::string e = CheckId(m.stream); !e.empty()) return "stream-window: " + e;
  if (m.increment == 0 || m.increment > kMaxStreamWindow) return "stream-window: increment out of range";
  return "";
}
std::string Check(const StreamEof& m, Mode) {
  std::string e = CheckId(m.stream);
  return e.empty() ? e : "stream-eof: " + e;
}
std::string Check(const StreamClose& m, Mode) {
  std::string e = CheckId(m.stream);
  return e.empty() ? e : "stream-close: " + e;
}
std::string Check(const Listen& m, Mode) {
  if (m.listener == 0) return "listen: listener id 0";
  switch (m.kind) {
    case ListenKind::kTcp:
      if (!IsHost(m.address)) return "listen: malformed address";
      if (m.port > 65535) return "listen: port out of range";
      break;
    case ListenKind::kUnix:
      if (!IsSocketPath(m.address)) return "listen: malformed socket path";
      if (m.port != 0) return "listen: a unix listener has no port";
      break;
    case ListenKind::kAuthAgent:
      if (!m.address.empty() || m.port != 0) return "listen: an agent socket has no address";
      break;
    default:
      return "listen: unknown kind " + std::to_string(static_cast<unsigned>(m.kind));
  }
  return "";
}
std::string Check(const ListenResult& m, Mode) {
  if (m.listener == 0) return "listen-result: listener id 0";
  if (m.port > 65535) return "listen-result: port out of range";
  if (!m.path.empty() && !IsSocketPath(m.path)) return "listen-result: malformed socket path";
  if (m.error.size() > kMaxErrorText) return "listen-result: text longer than 1024 bytes";
  if (!IsPrintableAscii(m.error)) return "listen-result: text is not printable ASCII";
  if (m.ok ? !m.error.empty() : (m.port != 0 || !m.path.empty() || m.error.empty())) {
    return "listen-result: fields do not match the outcome";
  }
  return "";
}
std::string Check(const Unlisten& m, Mode) { return m.listener == 0 ? "unlisten: listener id 0" : ""; }

// Which message types a mode uses; the others are refused as if unknown.
bool IsStreamType(Type type) {
  auto t = static_cast<uint8_t>(type);
  return t >= static_cast<uint8_t>(Type::kStreamOpen) && t <= static_cast<uint8_t>(Type::kUnlisten);
}

bool UsedIn(Type type, Mode mode) {
  switch (mode) {
    case Mode::kSocket:
      return static_cast<uint8_t>(type) >= 1 && static_cast<uint8_t>(type) <= static_cast<uint8_t>(Type::kError);
    case Mode::kStdio:
      return static_cast<uint8_t>(type) >= 1 && static_cast<uint8_t>(type) <= static_cast<uint8_t>(Type::kEof) &&
             type != Type::kOpened && type != Type::kAttached;
    case Mode::kStream:
      return type == Type::kOpen || type == Type::kError || IsStreamType(type);
  }
  return false;
}


// ---- decoding ----

class Reader {
 public:
  Reader(std::string_view in, Mode mode) : in_(in), mode_(mode) {}
  Mode mode() const { return mode_; }
  bool U8(uint8_t* v) {
    if (in_.size() < 1) return Fail("truncated");
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool U16(uint16_t* v) {
    uint8_t hi, lo;
    if (!U8(&hi) || !U8(&lo)) return false;
    *v = static_cast<uint16_t>((hi << 8) | lo);
    return true;
  }
  bool U32(uint32_t* v) {
    uint16_t hi, lo;
    if (!U16(&hi) || !U16(&lo)) return false;
    *v = (static_cast<uint32_t>(hi) << 16) | lo;
    return true;
  }
  bool Bool(bool* v) {
    uint8_t b;
    if (!U8(&b)) return false;
    if (b > 1) return Fail("boolean field is neither 0 nor 1");
    *v = b == 1;
    return true;
  }
  // The bound is checked before anything is copied.
  bool Str(size_t max, const char* what, std::string* v) {
    uint32_t n;
    if (!U32(&n)) return false;
    if (n > max) return Fail(std::string(what) + " longer than " + std::to_string(max) + " bytes");
    if (in_.size() < n) return Fail("truncated");
    v->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool Window(WindowSize* w) { return U16(&w->rows) && U16(&w->cols) && U16(&w->xpixel) && U16(&w->ypixel); }
  bool AtEnd() { return in_.empty() ? true : Fail("trailing bytes"); }
  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  std::string_view in_;
  Mode mode_;
  std::string error_;
};

bool DecodeFields(Reader& r, Open* m) {
  uint8_t flags;
  if (!r.U16(&m->version)) return false;
  // Anything after the version may change between versions: stop here on a mismatch so the
  // agent can answer with a clear "unsupported version" error.
  if (m->version != VersionOf(r.mode())) return r.Fail(Check(*m, r.mode()));
  if (!r.U8(&flags)) return false;
  if (flags & ~3u) return r.Fail("unknown flags");
  m->login_shell = flags & 1;
  m->pty = flags & 2;
  if (!r.Str(kMaxCommand, "command", &m->command)) return false;
  if (!r.Str(kMaxTerm, "terminal type", &m->term)) return false;
  if (!r.Window(&m->window)) return false;
  uint16_t count;
  if (!r.U16(&count)) return false;
  if (count > kMaxModes) return r.Fail("more than 64 terminal modes");
  m->modes.resize(count);
  for (TermMode& mode : m->modes) {
    if (!r.U8(&mode.opcode) || !r.U32(&mode.value)) return false;
  }
  if (!r.U16(&count)) return false;
  if (count > kMaxEnv) return r.Fail("more than 64 environment variables");
  m->env.resize(count);
  for (auto& [name, value] : m->env) {
    if (!r.Str(kMaxEnvName, "environment name", &name)) return false;
    if (!r.Str(kMaxEnvValue, "environment value", &value)) return false;
  }
  return true;
}
bool DecodeFields(Reader& r, Opened* m) {
  if (!r.U16(&m->version)) return false;
  if (m->version != kProtocolVersion) return r.Fail(Check(*m, r.mode()));
  return r.Str(64, "session name", &m->session);
}
bool DecodeFields(Reader&, Attached*) { return true; }
bool DecodeFields(Reader& r, Started* m) { return r.U32(&m->pid); }
bool DecodeFields(Reader& r, Window* m) { return r.Window(&m->size); }
bool DecodeFields(Reader& r, Signal* m) { return r.U8(&m->signo); }
bool DecodeFields(Reader& r, Exit* m) {
  return r.Bool(&m->signaled) && r.U8(&m->code) && r.Bool(&m->core_dumped);
}
bool DecodeFields(Reader& r, Error* m) { return r.Str(kMaxErrorText, "error text", &m->text); }
bool DecodeFields(Reader& r, Data* m) {
  uint8_t stream;
  if (!r.U8(&stream)) return false;
  m->stream = static_cast<Stream>(stream);
  if (!IsStream(m->stream)) return r.Fail("unknown stream " + std::to_string(stream));
  return r.Str(kMaxData, "data", &m->bytes);
}
bool DecodeFields(Reader& r, Eof* m) {
  uint8_t stream;
  if (!r.U8(&stream)) return false;
  m->stream = static_cast<Stream>(stream);
  return true;
}
bool DecodeFields(Reader& r, Hello* m) {
  if (!r.U16(&m->version)) return false;
  // As for `open`: stop at a version this side does not speak.
  if (m->version != kStreamProtocolVersion) return r.Fail(Check(*m, r.mode()));
  return true;
}
bool DecodeFields(Reader& r, StreamOpen* m) {
  uint8_t kind;
  if (!r.U32(&m->stream) || !r.U8(&kind)) return false;
  m->kind = static_cast<StreamKind>(kind);
  return r.Str(kMaxHost, "host", &m->host) && r.U32(&m->port) &&
         r.Str(kMaxHost, "originator address", &m->origin_host) && r.U32(&m->origin_port) &&
         r.U32(&m->listener) && r.U32(&m->window);
}
bool DecodeFields(Reader& r, StreamAccept* m) { return r.U32(&m->stream) && r.U32(&m->window); }
bool DecodeFields(Reader& r, StreamRefuse* m) {
  uint8_t reason;
  if (!r.U32(&m->stream) || !r.U8(&reason)) return false;
  m->reason = static_cast<RefuseReason>(reason);
  return r.Str(kMaxErrorText, "refusal text", &m->text);
}
bool DecodeFields(Reader& r, StreamData* m) { return r.U32(&m->stream) && r.Str(kMaxData, "data", &m->bytes); }
bool DecodeFields(Reader& r, StreamWindow* m) { return r.U32(&m->stream) && r.U32(&m->increment); }
bool DecodeFields(Reader& r, StreamEof* m) { return r.U32(&m->stream); }
bool DecodeFields(Reader& r, StreamClose* m) { return r.U32(&m->stream); }
bool DecodeFields(Reader& r, Listen* m) {
  uint8_t kind;
  if (!r.U32(&m->listener) || !r.U8(&kind)) return false;
  m->kind = static_cast<ListenKind>(kind);
  return r.Str(kMaxHost, "address", &m->address) && r.U32(&m->port);
}
bool DecodeFields(Reader& r, ListenResult* m) {
  return r.U32(&m->listener) && r.Bool(&m->ok) && r.U32(&m->port) &&
         r.Str(kMaxSocketPath, "path", &m->path) && r.Str(kMaxErrorText, "error text", &m->error);
}
bool DecodeFields(Reader& r, Unlisten* m) { return r.U32(&m->listener); }

template <typename T>
bool DecodeAs(Reader& r, Message* out, std::string* error) {
  T m;
  bool ok = DecodeFields(r, &m) && r.AtEnd();
  std::string why = ok ? Check(m, r.mode()) : r.error();
  if (!why.empty()) {
    // Prefix with the message name unless Check already did.
    std::string name = std::is_same_v<T, Hello> ? "hello" : TypeName(TypeOf<T>());
    *error = why.rfind(name + ":", 0) == 0 ? why : name + ": " + why;
    return false;
  }
  *out = std::move(m);
  return true;
}

uint32_t GetU32(const char* p) {
  auto b = [p](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(p[i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

}  // namespace

const char* TypeName(Type type) {
  switch (type) {
    case Type::kOpen: return "open";
    case Type::kOpened: return "opened";
    case Type::kAttached: return "attached";
    case Type::kStarted: return "started";
    case Type::kWindow: return "window";
    case Type::kSignal: return "signal";
    case Type::kExit: return "exit";
    case Type::kError: return "error";
    case Type::kData: return "data";
    case Type::kEof: return "eof";
    case Type::kStreamOpen: return "stream-open";
    case Type::kStreamAccept: return "stream-accept";
    case Type::kStreamRefuse: return "stream-refuse";
    case Type::kStreamData: return "stream-data";
    case Type::kStreamWindow: return "stream-window";
    case Type::kStreamEof: return "stream-eof";
    case Type::kStreamClose: return "stream-close";
    case Type::kListen: return "listen";
    case Type::kListenResult: return "listen-result";
    case Type::kUnlisten: return "unlisten";
  }
  return "unknown";
}

bool IsForwardableEnv(std::string_view name) {
  static constexpr std::string_view kExact[] = {"TERM", "LANG", "LANGUAGE", "TZ", "COLORTERM",
                                                "ALLGO_USER", "SSH_ORIGINAL_COMMAND", "SSH_AUTH_SOCK"};
  for (std::string_view allowed : kExact) {
    if (name == allowed) return true;
  }
  if (name.size() > 3 && name.substr(0, 3) == "LC_") {
    for (char c : name.substr(3)) {
      if (!((c >= 'A' && c <= 'Z') || c == '_')) return false;
    }
    return true;
  }
  return false;
}

bool IsRelayableSignal(int signo) {
  // Linux numbering: HUP 1, INT 2, QUIT 3, KILL 9, USR1 10, USR2 12, ALRM 14, TERM 15.
  switch (signo) {
    case 1: case 2: case 3: case 9: case 10: case 12: case 14: case 15:
      return true;
    default:
      return false;
  }
}

bool IsValidSessionName(std::string_view name) {
  if (name.size() != 34 || name.substr(0, 2) != "s-") return false;
  for (char c : name.substr(2)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string EncodeFrame(const Message& message) {
  Writer w;
  w.U32(0);  // length, patched below
  std::visit(
      [&w](const auto& m) {
        w.U8(static_cast<uint8_t>(TypeOf<std::decay_t<decltype(m)>>()));
        EncodeFields(w, m);
      },
      message);
  std::string& out = w.out();
  uint32_t n = static_cast<uint32_t>(out.size() - kFrameHeaderSize);
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  return std::move(out);
}

namespace {
void Put32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}
}  // namespace

void PutStreamDataFrameHeader(char* at, uint32_t id, size_t n) {
  Put32(at, static_cast<uint32_t>(kStreamDataFrameHeader - kFrameHeaderSize + n));
  at[4] = static_cast<char>(Type::kStreamData);
  Put32(at + 5, id);
  Put32(at + 9, static_cast<uint32_t>(n));
}

uint16_t PeekVersion(std::string_view body) {
  if (body.size() < 3 || static_cast<uint8_t>(body[0]) != static_cast<uint8_t>(Type::kOpen)) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(body[1]) << 8) | static_cast<uint8_t>(body[2]));
}

void PutDataFrameHeader(char* at, Stream stream, size_t n) {
  auto put32 = Put32;
  put32(at, static_cast<uint32_t>(kDataFrameHeader - kFrameHeaderSize + n));
  at[4] = static_cast<char>(Type::kData);
  at[5] = static_cast<char>(stream);
  put32(at + 6, static_cast<uint32_t>(n));
}

std::string Validate(const Message& message, Mode mode) {
  Type type = std::visit([](const auto& m) { return TypeOf<std::decay_t<decltype(m)>>(); }, message);
  // Type 1 is `open` in versions 1 and 2, `hello` in the stream mode.
  if (std::holds_alternative<Hello>(message) != (mode == Mode::kStream) && type == Type::kOpen) {
    const char* name = mode == Mode::kStream ? "open" : "hello";
    return std::string(name) + ": not used in the " + ModeName(mode) + " mode";
  }
  if (!UsedIn(type, mode)) {
    return std::string(TypeName(type)) + ": not used in the " + ModeName(mode) + " mode";
  }
  std::string why = std::visit([mode](const auto& m) { return Check(m, mode); }, message);
  if (why.empty() && EncodeFrame(message).size() > kMaxFrame) why = "message larger than 64 KiB";
  return why;
}

bool DecodeBody(std::string_view body, Message* out, std::string* error, Mode mode) {
  if (body.empty()) {
    *error = "empty message";
    return false;
  }
  if (body.size() > kMaxBody) {
    *error = "message larger than 64 KiB";
    return false;
  }
  Reader r(body.substr(1), mode);
  Type type = static_cast<Type>(static_cast<uint8_t>(body[0]));
  // A type of the other mode reads exactly like an unknown one (so the socket mode is
  // byte for byte what it was before the stdio mode existed).
  if (!UsedIn(type, mode)) {
    *error = "unknown message type " + std::to_string(static_cast<uint8_t>(body[0])) +
             (mode == Mode::kSocket ? "" : std::string(" (") + ModeName(mode) + " mode)");
    return false;
  }
  switch (type) {
    case Type::kOpen:
      if (mode == Mode::kStream) return DecodeAs<Hello>(r, out, error);
      return DecodeAs<Open>(r, out, error);
    case Type::kOpened: return DecodeAs<Opened>(r, out, error);
    case Type::kAttached: return DecodeAs<Attached>(r, out, error);
    case Type::kStarted: return DecodeAs<Started>(r, out, error);
    case Type::kWindow: return DecodeAs<Window>(r, out, error);
    case Type::kSignal: return DecodeAs<Signal>(r, out, error);
    case Type::kExit: return DecodeAs<Exit>(r, out, error);
    case Type::kError: return DecodeAs<Error>(r, out, error);
    case Type::kData: return DecodeAs<Data>(r, out, error);
    case Type::kEof: return DecodeAs<Eof>(r, out, error);
    case Type::kStreamOpen: return DecodeAs<StreamOpen>(r, out, error);
    case Type::kStreamAccept: return DecodeAs<StreamAccept>(r, out, error);
    case Type::kStreamRefuse: return DecodeAs<StreamRefuse>(r, out, error);
    case Type::kStreamData: return DecodeAs<StreamData>(r, out, error);
    case Type::kStreamWindow: return DecodeAs<StreamWindow>(r, out, error);
    case Type::kStreamEof: return DecodeAs<StreamEof>(r, out, error);
    case Type::kStreamClose: return DecodeAs<StreamClose>(r, out, error);
    case Type::kListen: return DecodeAs<Listen>(r, out, error);
    case Type::kListenResult: return DecodeAs<ListenResult>(r, out, error);
    case Type::kUnlisten: return DecodeAs<Unlisten>(r, out, error);
  }
  *error = "unknown message type " + std::to_string(static_cast<uint8_t>(body[0]));
  return false;
}

size_t FrameReader::Room() const { return kMaxBuffered - buffered(); }

size_t FrameReader::Append(std::string_view bytes) {
  size_t n = std::min(bytes.size(), Room());
  buffer_.Append(bytes.substr(0, n));
  return n;
}

char* FrameReader::Grow(size_t n) { return buffer_.Grow(std::min(n, Room())); }

void FrameReader::Shrink(size_t n) { buffer_.Shrink(n); }

FrameReader::Result FrameReader::NextBody(std::string_view* body, std::string* error) {
  size_t have = buffered();
  if (have < kFrameHeaderSize) return Result::kNeedMore;
  uint32_t n = GetU32(buffer_.data());
  if (n == 0 || n > kMaxBody) {
    *error = "frame length " + std::to_string(n) + " outside 1.." + std::to_string(kMaxBody);
    return Result::kError;
  }
  if (have < kFrameHeaderSize + n) return Result::kNeedMore;
  *body = std::string_view(buffer_.data() + kFrameHeaderSize, n);
  // Consuming only moves the queue's head: the body stays where it is until the next fill.
  buffer_.Consume(kFrameHeaderSize + n);
  return Result::kMessage;
}

FrameReader::Result FrameReader::Next(Message* out, std::string* error) {
  std::string_view body;
  Result r = NextBody(&body, error);
  if (r != Result::kMessage) return r;
  return DecodeBody(body, out, error, mode_) ? Result::kMessage : Result::kError;
}

FrameReader::Result FrameReader::NextView(Message* out, DataView* data, std::string* error) {
  data->bytes = {};
  std::string_view body;
  Result r = NextBody(&body, error);
  if (r != Result::kMessage) return r;
  // A well-formed data frame: type, stream, u32 count equal to the rest, 1..kMaxData bytes.
  // Anything else (a malformed data frame included) goes through DecodeBody, which gives
  // the very same result and error text as Next.
  constexpr size_t kDataFields = kDataFrameHeader - kFrameHeaderSize;  // type, stream, count
  if (UsedIn(Type::kData, mode_) && body.size() > kDataFields && static_cast<Type>(static_cast<uint8_t>(body[0])) == Type::kData) {
    auto stream = static_cast<Stream>(static_cast<uint8_t>(body[1]));
    uint32_t count = GetU32(body.data() + 2);
    if (IsStream(stream) && count == body.size() - kDataFields && count <= kMaxData) {
      data->stream = stream;
      data->bytes = body.substr(kDataFields);
      return Result::kMessage;
    }
  }
  constexpr size_t kStreamDataFields = kStreamDataFrameHeader - kFrameHeaderSize;  // type, id, count
  if (mode_ == Mode::kStream && body.size() > kStreamDataFields &&
      static_cast<Type>(static_cast<uint8_t>(body[0])) == Type::kStreamData) {
    uint32_t id = GetU32(body.data() + 1);
    uint32_t count = GetU32(body.data() + 5);
    if (id != 0 && count == body.size() - kStreamDataFields && count <= kMaxData) {
      data->id = id;
      data->bytes = body.substr(kStreamDataFields);
      return Result::kMessage;
    }
  }
  return DecodeBody(body, out, error, mode_) ? Result::kMessage : Result::kError;
}

}  // namespace allgo::bridge
