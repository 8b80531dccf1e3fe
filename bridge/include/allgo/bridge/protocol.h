// The bridge control protocol between allgo-shell (client, frontend side) and
// allgo-sandbox-agent (server, inside the sandbox). docs/protocol.md is the specification;
// this header is its only implementation.
//
// Library allgo_bridge_protocol depends on the C++ standard library only, so the same parser
// runs in the static agent, in allgo-shell and under libFuzzer.
//
// Wire format: a frame is a 4-byte big-endian body length N (1 <= N <= kMaxBody) followed by
// N bytes of body. The body is one type byte and the message fields, big-endian integers and
// length-prefixed strings (u32 length, then the bytes). Every field has a hard bound; a
// message with an unknown type, a field out of bounds or trailing bytes is rejected whole.
// Nothing here allocates more than the frame being parsed, and a FrameReader's buffer (at
// most four frames queued) no more than twice that bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "allgo/bridge/byte_queue.h"

namespace allgo::bridge {

inline constexpr uint16_t kProtocolVersion = 1;
// The stdio mode (docs/protocol.md "Stdio mode"): one byte stream carries the session's data
// and its control messages; `open` says so with this version, which a socket-mode peer
// refuses as unsupported (and the other way round), so the two modes can never be confused.
inline constexpr uint16_t kStdioProtocolVersion = 2;
// The stream mode (docs/protocol.md "Version 3: streams"): one connection (agent.sock, or the
// byte stream of `agent --stdio` through the gateway) carries many independent byte streams,
// each with its own id, window, EOF and close: the forwards of one SSH connection. Its first
// frame is `hello`, which reuses type 1 so that an older agent answers "unsupported protocol
// version 3" instead of a garbled field.
inline constexpr uint16_t kStreamProtocolVersion = 3;
// Bytes of one `data` message: well under kMaxBody, so one frame never waits for a full 64 KiB.
inline constexpr size_t kMaxData = 32 * 1024;
inline constexpr size_t kFrameHeaderSize = 4;
inline constexpr uint32_t kMaxBody = 64 * 1024;

// Field bounds (bytes / entries).
inline constexpr size_t kMaxCommand = 60000;
inline constexpr size_t kMaxTerm = 64;
inline constexpr size_t kMaxModes = 64;
inline constexpr size_t kMaxEnv = 64;
inline constexpr size_t kMaxEnvName = 128;
inline constexpr size_t kMaxEnvValue = 4096;
inline constexpr size_t kMaxErrorText = 1024;
inline constexpr uint16_t kMaxWindowCells = 10000;
inline constexpr uint16_t kMaxWindowPixels = 65535;

enum class Type : uint8_t {
  kOpen = 1,      // client → agent: what to run
  kOpened = 2,    // agent → client: the session folder holding the pipes
  kAttached = 3,  // client → agent: the client holds its ends of the pipes
  kStarted = 4,   // agent → client: the process runs
  kWindow = 5,    // client → agent: terminal size changed
  kSignal = 6,    // client → agent: deliver a signal to the session's processes
  kExit = 7,      // agent → client: the process ended
  kError = 8,     // agent → client: the request failed; the agent closes the connection
  kData = 9,      // stdio mode only: bytes of stdin (client → agent) or stdout/stderr (back)
  kEof = 10,      // stdio mode only: a stream ended
  // Stream mode (version 3) only; type 1 is `hello` there, type 8 `error` as everywhere.
  kStreamOpen = 11,    // either way: open a stream (a forward) with an id the sender picked
  kStreamAccept = 12,  // answer: the stream is open; the receiver's initial window
  kStreamRefuse = 13,  // answer: the stream could not be opened (RFC 4254 reason code)
  kStreamData = 14,    // bytes of one stream, within the receiver's window
  kStreamWindow = 15,  // the receiver consumed bytes: the sender may send that many more
  kStreamEof = 16,     // the sender sends no more bytes on the stream (half-close)
  kStreamClose = 17,   // the stream is gone; each side sends it once, the id is then free
  kListen = 18,        // client → agent: listen inside the sandbox (ssh -R, ssh -A)
  kListenResult = 19,  // agent → client: the listener's port or path, or why it failed
  kUnlisten = 20,      // client → agent: close a listener (cancel-tcpip-forward, connection end)
};

// Which transport a stream of frames belongs to. kSocket: agent.sock, data in fifos (types
// 1..8). kStdio: one stream for everything (types 1 and 4..10; `opened` and `attached` have
// no meaning there and are refused).
// kStream: version 3, types 1 (as `hello`), 8 and 11..20, on either transport.
enum class Mode : uint8_t { kSocket, kStdio, kStream };

// The data streams of a session in stdio mode (the fd numbers of the process).
enum class Stream : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2 };

struct WindowSize {
  uint16_t rows = 0;  // 0 = unknown
  uint16_t cols = 0;
  uint16_t xpixel = 0;
  uint16_t ypixel = 0;
  bool operator==(const WindowSize&) const = default;
};

// One terminal mode, encoded with the opcodes of RFC 4254 section 8 (VINTR = 1, ECHO = 53...).
struct TermMode {
  uint8_t opcode = 0;  // 1..159
  uint32_t value = 0;
  bool operator==(const TermMode&) const = default;
};

struct Open {
  uint16_t version = kProtocolVersion;
  bool login_shell = false;  // true: interactive login shell; false: `/bin/sh -c command`
  bool pty = false;          // run on a pseudo-terminal (stderr then merges into stdout)
  std::string command;       // empty iff login_shell
  std::string term;          // TERM for the pty; [A-Za-z0-9._+-]*
  WindowSize window;
  std::vector<TermMode> modes;
  std::vector<std::pair<std::string, std::string>> env;  // names pass IsForwardableEnv
  bool operator==(const Open&) const = default;
};

struct Opened {
  uint16_t version = kProtocolVersion;
  std::string session;  // "s-" + 32 lowercase hex digits: the sub-folder of the bridge dir
  bool operator==(const Opened&) const = default;
};

struct Attached {
  bool operator==(const Attached&) const = default;
};

struct Started {
  uint32_t pid = 0;  // as seen inside the sandbox, for logs
  bool operator==(const Started&) const = default;
};

struct Window {
  WindowSize size;
  bool operator==(const Window&) const = default;
};

struct Signal {
  uint8_t signo = 0;  // one of IsRelayableSignal (Linux numbering)
  bool operator==(const Signal&) const = default;
};

struct Exit {
  bool signaled = false;  // false: `code` is the exit status; true: `code` is the signal
  uint8_t code = 0;
  bool core_dumped = false;
  // The shell convention: the status, or 128 + signal.
  int ShellStatus() const { return signaled ? 128 + code : code; }
  bool operator==(const Exit&) const = default;
};

struct Error {
  std::string text;  // printable ASCII, at most kMaxErrorText bytes
  bool operator==(const Error&) const = default;
};

struct Data {
  Stream stream = Stream::kStdin;
  std::string bytes;  // 1..kMaxData bytes (an empty chunk would be a pointless frame)
  bool operator==(const Data&) const = default;
};

struct Eof {
  Stream stream = Stream::kStdin;
  bool operator==(const Eof&) const = default;
};

// ---- stream mode (version 3) ----

// Stream ids: the client numbers the streams it opens with odd ids, the agent with even ones
// (never 0), so both may open streams at once without a collision. An id is free again once
// both sides sent `stream-close` for it.
inline constexpr uint32_t kMaxStreamWindow = 16 * 1024 * 1024;  // bytes a window may reach
inline constexpr size_t kMaxHost = 255;                          // DNS name or address literal
inline constexpr size_t kMaxSocketPath = 107;                    // sun_path less its NUL

// What a stream is. Client-opened: kTcp (direct-tcpip: the agent connects inside the
// sandbox), kUnix (direct-streamlocal). Agent-opened, always for a listener the client asked
// for: kForwardedTcp, kForwardedUnix (a connection to a -R listener), kAuthAgent (a
// connection to the session's SSH_AUTH_SOCK).
enum class StreamKind : uint8_t { kTcp = 1, kUnix = 2, kForwardedTcp = 3, kForwardedUnix = 4, kAuthAgent = 5 };
// What a listener is: a TCP port (-R), a unix socket path (-R /path), or the agent socket.
enum class ListenKind : uint8_t { kTcp = 1, kUnix = 2, kAuthAgent = 3 };
// RFC 4254 section 5.1 reason codes, so the SSH side can pass them on unchanged.
enum class RefuseReason : uint8_t { kProhibited = 1, kConnectFailed = 2, kUnknownType = 3, kResourceShortage = 4 };

struct Hello {
  uint16_t version = kStreamProtocolVersion;
  bool operator==(const Hello&) const = default;
};

struct StreamOpen {
  uint32_t stream = 0;
  StreamKind kind = StreamKind::kTcp;
  std::string host;         // kTcp: host to connect to; kForwardedTcp: the listener's address;
                            // kUnix, kForwardedUnix: the socket path; kAuthAgent: empty
  uint32_t port = 0;        // kTcp, kForwardedTcp: 1..65535 (the listener's bound port); else 0
  std::string origin_host;  // kTcp, kForwardedTcp: the originator's address, for logs; else empty
  uint32_t origin_port = 0;
  uint32_t listener = 0;    // agent-opened kinds: the client's listener id; client-opened: 0
  uint32_t window = 0;      // bytes the sender of this message accepts before a stream-window
  bool operator==(const StreamOpen&) const = default;
};

struct StreamAccept {
  uint32_t stream = 0;
  uint32_t window = 0;  // bytes the acceptor accepts before a stream-window
  bool operator==(const StreamAccept&) const = default;
};

struct StreamRefuse {
  uint32_t stream = 0;
  RefuseReason reason = RefuseReason::kConnectFailed;
  std::string text;  // printable ASCII, at most kMaxErrorText bytes
  bool operator==(const StreamRefuse&) const = default;
};

struct StreamData {
  uint32_t stream = 0;
  std::string bytes;  // 1..kMaxData
  bool operator==(const StreamData&) const = default;
};

struct StreamWindow {
  uint32_t stream = 0;
  uint32_t increment = 0;  // 1..kMaxStreamWindow
  bool operator==(const StreamWindow&) const = default;
};

struct StreamEof {
  uint32_t stream = 0;
  bool operator==(const StreamEof&) const = default;
};

struct StreamClose {
  uint32_t stream = 0;
  bool operator==(const StreamClose&) const = default;
};

struct Listen {
  uint32_t listener = 0;  // the client's id for it, 1..
  ListenKind kind = ListenKind::kTcp;
  std::string address;  // kTcp: the bind address ("127.0.0.1", "::1", "0.0.0.0"...); kUnix: the
                        // socket path; kAuthAgent: empty (the agent picks a private folder)
  uint32_t port = 0;    // kTcp: 0 (allocate) .. 65535; else 0
  bool operator==(const Listen&) const = default;
};

struct ListenResult {
  uint32_t listener = 0;
  bool ok = false;
  uint32_t port = 0;    // ok and kTcp: the bound port (the allocated one for port 0)
  std::string path;     // ok and kUnix / kAuthAgent: the socket's path inside the sandbox
  std::string error;    // !ok: why, printable ASCII
  bool operator==(const ListenResult&) const = default;
};

struct Unlisten {
  uint32_t listener = 0;
  bool operator==(const Unlisten&) const = default;
};

using Message = std::variant<Open, Opened, Attached, Started, Window, Signal, Exit, Error, Data, Eof, Hello,
                             StreamOpen, StreamAccept, StreamRefuse, StreamData, StreamWindow, StreamEof,
                             StreamClose, Listen, ListenResult, Unlisten>;

// The version an `open`/`hello` body (type byte included) announces, before anything else is
// parsed: how an agent tells which mode a new connection speaks. 0 when the body is not a
// type-1 message long enough to hold one.
uint16_t PeekVersion(std::string_view body);

// The environment variables a client may pass on: TERM, LANG, LANGUAGE, LC_*, TZ, COLORTERM,
// ALLGO_USER (who logged in), SSH_ORIGINAL_COMMAND (forced command) and SSH_AUTH_SOCK (agent
// forwarding: a path inside the sandbox). Everything else stays on the frontend.
bool IsForwardableEnv(std::string_view name);
// SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM.
bool IsRelayableSignal(int signo);
// "s-" + 32 lowercase hex digits.
bool IsValidSessionName(std::string_view name);

// Header + body, ready to write. The message must be valid (Validate); an invalid one
// (a bug in the caller) still encodes, and the peer will reject it.
std::string EncodeFrame(const Message& message);

// The data path without a copy through Message: a `data` frame is kDataFrameHeader bytes
// (length, type, stream, byte count) then the bytes. PutDataFrameHeader writes that header
// at `at` for `n` bytes (1 <= n <= kMaxData), so a sender can read straight in behind it.
inline constexpr size_t kDataFrameHeader = kFrameHeaderSize + 1 + 1 + 4;
void PutDataFrameHeader(char* at, Stream stream, size_t n);
// The same for a `stream-data` frame of stream `id` (length, type, id, byte count).
inline constexpr size_t kStreamDataFrameHeader = kFrameHeaderSize + 1 + 4 + 4;
void PutStreamDataFrameHeader(char* at, uint32_t id, size_t n);

// Checks every bound of a message the caller is about to send; "" when valid, else why not.
// In stdio mode `open` must carry kStdioProtocolVersion and `opened`/`attached` are refused;
// in stream mode only `hello`, `error` and the stream messages are used.
std::string Validate(const Message& message, Mode mode = Mode::kSocket);

// Parses one body (without the 4-byte header). On failure returns false and sets *error to
// a one-line reason such as "open: command longer than 60000 bytes".
bool DecodeBody(std::string_view body, Message* out, std::string* error, Mode mode = Mode::kSocket);

// A `data` message seen in place (FrameReader::NextView): the bytes stay in the reader.
struct DataView {
  Stream stream = Stream::kStdin;  // stdio mode: which of the session's streams
  uint32_t id = 0;                 // stream mode: the stream id of a `stream-data`
  std::string_view bytes;  // empty: the message was not data (it is in *out)
};

// Incremental frame splitter for a byte stream. Feed it what the socket returned (Append,
// or read straight into Grow's room); take complete messages out with Next or NextView. It
// never buffers more than kMaxBuffered bytes (four whole frames): Room() says how much
// more it takes right now.
class FrameReader {
 public:
  enum class Result { kMessage, kNeedMore, kError };
  static constexpr size_t kMaxBuffered = 4 * (kFrameHeaderSize + kMaxBody);

  FrameReader() = default;  // the socket mode (agent.sock)
  explicit FrameReader(Mode mode) : mode_(mode) {}

  // How many bytes Append would accept right now (read at most this much from the socket).
  size_t Room() const;
  // Appends up to Room() bytes; returns how many were taken.
  size_t Append(std::string_view bytes);
  // Appending without a copy: n bytes of room at the end to read into (n must be at most
  // Room(); more is cut to it); Shrink gives back what the read did not fill.
  char* Grow(size_t n);
  void Shrink(size_t n);
  // kMessage: *out holds the next message. kNeedMore: feed more bytes. kError: the stream
  // is broken (bad length or bad body); *error says why; the connection must be dropped.
  Result Next(Message* out, std::string* error);
  // Next for the data path: a valid `data` message is not copied into *out but returned as
  // *data, whose bytes point into the reader and stay valid until the next Append or Grow.
  // Every other message, and every error, is exactly what Next returns (data->bytes empty).
  Result NextView(Message* out, DataView* data, std::string* error);
  // Bytes buffered but not yet returned as messages.
  size_t buffered() const { return buffer_.size(); }
  // Those bytes themselves (the start of the next frame and whatever followed it), without
  // consuming them: what a server that tells the mode by the first frame's version
  // (PeekVersion) hands on to the loop serving that mode, so that nothing read is lost.
  std::string_view Unread() const { return buffer_.view(); }

 private:
  // The next whole frame's body, if buffered (consumed from the buffer; its bytes stay
  // readable until the next Append or Grow). kError for a length out of bounds.
  Result NextBody(std::string_view* body, std::string* error);
  Mode mode_ = Mode::kSocket;
  ByteQueue buffer_;
};

const char* TypeName(Type type);

}  // namespace allgo::bridge
