// The closed set of messages between the unprivileged network child and its privileged
// monitor (docs/architecture.md). Every message starts with a MsgType byte; decoding is
// strict (unknown type, bad length, trailing bytes → Invalid) and every field is bounded.
//
//   child → monitor                         monitor → child
//   KeyQuery  (pre-auth only)           →   KeyAnswer
//   Spawn     (after auth only)         →   SpawnResult (+ 1 PTY master or 3 pipe fds)
//   Signal    (after auth, live session)    (no answer)
//   SessionEnd (after auth; byte counts     (no answer)
//              for the audit log)
//   ForwardEvent (after auth)               (no answer)
//   OpenStreams (after auth, once)      →   StreamsResult (+ 1 socket connected to the
//                                           sandbox's agent or the gateway, as the webapp)
//                                           Exited (any time after a Spawn succeeded)
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "allgo/status.h"
#include "forward_policy.h"

namespace allgo::sshd {

enum class MsgType : uint8_t {
  kKeyQuery = 1,
  kKeyAnswer = 2,
  kSpawn = 3,
  kSpawnResult = 4,
  kSignal = 5,
  kExited = 6,
  kSessionEnd = 7,
  kOpenStreams = 8,
  kStreamsResult = 9,
  kForwardEvent = 10,
};

inline constexpr size_t kMaxUserLen = 1024;      // longer names are refused by the child
inline constexpr size_t kMaxKeyLen = 16 * 1024;  // base64 of the largest key we accept
inline constexpr size_t kMaxCommandLen = 32 * 1024;
inline constexpr size_t kMaxEnvEntries = 32;
inline constexpr size_t kMaxEnvLen = 1024;
inline constexpr size_t kMaxTermLen = 64;
inline constexpr size_t kMaxAccountLen = 512;
inline constexpr size_t kMaxErrorLen = 512;
// Permit lists per kind in a policy: [sshd]'s, [authkeys] key_options', the key line's.
inline constexpr size_t kMaxPermitLists = 3;

struct KeyQuery {
  bool signed_phase = false;  // false: probe (is the key acceptable?), true: signature verified
  std::string user;
  std::string key_type;
  std::string key_base64;
};

struct KeyAnswer {
  bool allowed = false;
  std::string account;  // the allgo account whose key matched (email), empty if refused
  // The key's options permit a PTY (key_options.h): the child then refuses pty-req early,
  // as OpenSSH does; the monitor enforces it again at Spawn.
  bool pty_allowed = false;
  // What this connection may forward ([sshd] keys ∧ the key's options); all off if refused.
  ForwardPolicy forward_policy;
};

enum class SessionKind : uint8_t { kShell = 1, kExec = 2, kSubsystem = 3 };
const char* SessionKindName(SessionKind kind);

struct PtyRequest {
  std::string term;
  uint32_t cols = 80, rows = 24, width_px = 0, height_px = 0;
};

struct SpawnRequest {
  uint32_t id = 0;  // chosen by the child, unique per connection
  SessionKind kind = SessionKind::kShell;
  std::string command;  // exec: the command; subsystem: its name; shell: empty
  bool has_pty = false;
  PtyRequest pty;
  std::vector<std::pair<std::string, std::string>> env;  // already filtered by the child
};

struct SpawnResult {
  uint32_t id = 0;
  bool ok = false;
  std::string error;
};

struct SignalRequest {
  uint32_t id = 0;
  uint32_t signo = 0;
};

// The channel of a session is gone; what it moved (for the audit log). Untrusted numbers
// from the network child, used for accounting only.
struct SessionEnd {
  uint32_t id = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// Asks for the connection's one path to the sandbox (docs/architecture.md, "The carrier").
struct OpenStreams {};

struct StreamsResult {
  bool ok = false;
  std::string error;  // for the log and the client's failure reply, when !ok
};

// A forward was refused, opened, ended, or a -R listener set up (docs/forwarding.md): for the
// audit log and the metrics. Untrusted text and numbers from the network child, used for
// accounting only (sanitised before they are written).
enum class ForwardPhase : uint8_t { kOpened = 1, kEnded = 2, kRefused = 3, kListening = 4 };
enum class ForwardKindCode : uint8_t {
  kDirectTcpip = 1,
  kForwardedTcpip = 2,
  kAuthAgent = 3,
  kTcpipForward = 4,
  kDirectStreamlocal = 5,     // ssh -L PORT:/path.sock
  kForwardedStreamlocal = 6,  // a connection to a -R /path.sock listener
  kStreamlocalForward = 7,    // the -R /path.sock listener itself
};
inline constexpr uint8_t kForwardKindCount = 7;
inline constexpr size_t kMaxForwardText = 512;
struct ForwardEvent {
  ForwardPhase phase = ForwardPhase::kOpened;
  ForwardKindCode kind = ForwardKindCode::kDirectTcpip;
  std::string target;  // host:port, the listener, or the agent socket
  std::string origin;  // the originator, when known
  uint64_t bytes_in = 0, bytes_out = 0;
  uint32_t duration_ms = 0;
  std::string result;  // "closed", "refused: why", ...
};
const char* ForwardKindName(ForwardKindCode kind);

struct ExitedNotice {
  uint32_t id = 0;
  uint32_t wait_status = 0;  // as from waitpid()
};

std::string Encode(const KeyQuery& m);
std::string Encode(const KeyAnswer& m);
std::string Encode(const SpawnRequest& m);
std::string Encode(const SpawnResult& m);
std::string Encode(const SignalRequest& m);
std::string Encode(const ExitedNotice& m);
std::string Encode(const SessionEnd& m);
std::string Encode(const OpenStreams& m);
std::string Encode(const StreamsResult& m);
std::string Encode(const ForwardEvent& m);

// The type byte of a payload; Invalid when empty or unknown.
Status PeekType(const std::string& payload, MsgType* type);
Status Decode(const std::string& payload, KeyQuery* m);
Status Decode(const std::string& payload, KeyAnswer* m);
Status Decode(const std::string& payload, SpawnRequest* m);
Status Decode(const std::string& payload, SpawnResult* m);
Status Decode(const std::string& payload, SignalRequest* m);
Status Decode(const std::string& payload, ForwardEvent* m);
Status Decode(const std::string& payload, ExitedNotice* m);
Status Decode(const std::string& payload, SessionEnd* m);
Status Decode(const std::string& payload, OpenStreams* m);
Status Decode(const std::string& payload, StreamsResult* m);

// Set by the network child for a session with agent forwarding (the agent socket's path
// inside the sandbox); a client may not set it.
inline constexpr const char* kAuthSockEnv = "SSH_AUTH_SOCK";
// Environment variables a client may set (OpenSSH's AcceptEnv LANG LC_* TERM).
bool IsAcceptedEnvName(const std::string& name);
// Signals a client may send ("TERM" → SIGTERM); 0 when not allowed.
int SignalFromName(const std::string& name);
// "TERM" for SIGTERM, for exit-signal; "" when the signal has no SSH name.
const char* SignalName(int signo);

}  // namespace allgo::sshd
