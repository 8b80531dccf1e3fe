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
};

// Which transport a stream of frames belongs to. kSocket: agent.sock, data in fifos (types
// 1..8). kStdio: one stream for everything (types 1 and 4..10; `opened` and `attached` have
// no meaning there and are refused).
enum class Mode : uint8_t { kSocket, kStdio };

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

using Message = std::variant<Open, Opened, Attached, Started, Window, Signal, Exit, Error, Data, Eof>;

// The environment variables a client may pass on: TERM, LANG, LANGUAGE, LC_*, TZ, COLORTERM
// and ALLGO_USER (who logged in). Everything else stays on the frontend.
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

// Checks every bound of a message the caller is about to send; "" when valid, else why not.
// In stdio mode `open` must carry kStdioProtocolVersion and `opened`/`attached` are refused.
std::string Validate(const Message& message, Mode mode = Mode::kSocket);

// Parses one body (without the 4-byte header). On failure returns false and sets *error to
// a one-line reason such as "open: command longer than 60000 bytes".
bool DecodeBody(std::string_view body, Message* out, std::string* error, Mode mode = Mode::kSocket);

// A `data` message seen in place (FrameReader::NextView): the bytes stay in the reader.
struct DataView {
  Stream stream = Stream::kStdin;
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

 private:
  // The next whole frame's body, if buffered (consumed from the buffer; its bytes stay
  // readable until the next Append or Grow). kError for a length out of bounds.
  Result NextBody(std::string_view* body, std::string* error);
  Mode mode_ = Mode::kSocket;
  ByteQueue buffer_;
};

const char* TypeName(Type type);

}  // namespace allgo::bridge
