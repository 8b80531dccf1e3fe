// EngineClient: the Docker Engine API calls allgo-sandbox-gateway needs, for one node.
//
// A node is `unix:///path/docker.sock` or `tcp://HOST:PORT`; tcp always speaks TLS 1.2+ with
// a client certificate (tls_cert/tls_key) and verifies the node's certificate against tls_ca
// and HOST (an IP address is checked against the certificate's IP subjectAltName). HTTP/1.1
// is Boost.Beast's, over Boost.Asio (+ OpenSSL): no HTTP parsing of our own (issue 11).
//
// Every call opens its own connection (Connection: close) and is bounded as a whole by
// api_timeout: connect, TLS handshake, request and response. A node that accepts and never
// answers costs a caller at most api_timeout, then a Status that names the node and the step.
// Results are Status values, never exceptions (Boost's are caught at this boundary).
//
// Container names reach URLs only after IsValidContainerName() (the login-name rule of
// common/names.h, which docker_name follows) and are percent-encoded anyway; exec ids only
// when they are 64 lowercase hex digits, as the engine makes them.
//
// StartExec hands over the hijacked stream of `POST /exec/ID/start` (HTTP 101, Upgrade: tcp)
// as an ExecStream: after it, bytes flow both ways raw. With Tty=false the engine frames
// stdout/stderr in 8-byte stdcopy headers (allgo/stdcopy.h demultiplexes them).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "allgo/status.h"

namespace allgo::engine {

struct NodeOptions {
  std::string url;       // unix:///path or tcp://HOST:PORT
  std::string tls_ca;    // PEM file: the CA that signed the node's certificate (tcp only)
  std::string tls_cert;  // PEM file: our client certificate (tcp only)
  std::string tls_key;   // PEM file: its private key (tcp only; never logged)
  std::chrono::milliseconds api_timeout{10000};
};

struct ContainerInfo {
  std::string id;      // full 64-hex id
  std::string name;    // without the leading '/'
  std::string status;  // State.Status: created, running, paused, restarting, exited, dead
  bool running = false;
  int exit_code = 0;   // State.ExitCode (meaningful once exited)
  std::map<std::string, std::string> labels;  // Config.Labels (string values only)
};

struct ExecOptions {
  std::vector<std::string> cmd;  // required, argv (no shell)
  bool attach_stdin = true;
  bool attach_stdout = true;
  bool attach_stderr = true;
  bool tty = false;
  std::string user;                 // "" = the image's user
  std::vector<std::string> env;     // "NAME=value"
  std::string working_dir;          // "" = the image's
};

struct ExecInfo {
  bool running = false;
  std::optional<int> exit_code;  // absent while running
  int pid = 0;
};

// The upgraded connection of one exec: raw bytes both ways until either side closes.
// Owns its socket (and TLS session); closed by the destructor. Not thread-safe: one reader
// and one writer must not call it at the same time.
class ExecStream {
 public:
  virtual ~ExecStream() = default;
  // Reads up to `max` bytes (at most 64 KiB at once) into *out (replacing it). An empty *out with Ok means end of
  // stream. Waits at most `timeout`; then Unavailable and the stream is unusable.
  virtual Status Read(std::string* out, size_t max, std::chrono::milliseconds timeout) = 0;
  // Reads what is there now, without waiting: up to `max` bytes into `buf`, *got of them;
  // *got == 0 means nothing now (poll fd() and try again) unless *eof is set. Unlike a
  // poll() on fd() followed by Read, it also returns what the TLS layer holds in its own
  // buffers (records that arrived together), and never blocks on a partial TLS record.
  // (A caller's buffer, not a string: the relay calls it once per TLS record.)
  virtual Status ReadAvailable(char* buf, size_t max, size_t* got, bool* eof) = 0;
  // Writes all of `data` within `timeout`.
  virtual Status Write(std::string_view data, std::chrono::milliseconds timeout) = 0;
  // Ends our sending direction (the process sees EOF on stdin); reading goes on. Unix
  // sockets only: over TLS it says so (the stdio protocol carries EOF as a message instead).
  virtual Status CloseWrite() = 0;
  // Bytes already received but not yet returned by Read (poll() on fd() does not see them).
  // Over TLS it counts what OpenSSL holds, not what Asio's TLS layer read ahead of it: a
  // poll() loop should read with ReadAvailable until it comes back empty instead.
  virtual size_t Buffered() const = 0;
  // The underlying socket, for poll() only: never read or write it directly.
  virtual int fd() const = 0;
};

class EngineClient {
 public:
  // Checks the URL (and for tcp, loads the CA, certificate and key): Invalid with what is wrong.
  static Status Create(const NodeOptions& options, std::unique_ptr<EngineClient>* out);
  ~EngineClient();
  EngineClient(const EngineClient&) = delete;
  EngineClient& operator=(const EngineClient&) = delete;

  // GET /containers/NAME/json. NotFound when the engine has no such container.
  Status InspectContainer(std::string_view name, ContainerInfo* info);
  // POST /containers/NAME/exec. NotFound (no container), Unavailable (e.g. not running).
  Status CreateExec(std::string_view container, const ExecOptions& options, std::string* exec_id);
  // POST /exec/ID/start with Upgrade: tcp; `tty` must match the exec's.
  Status StartExec(std::string_view exec_id, bool tty, std::unique_ptr<ExecStream>* stream);
  // POST /exec/ID/resize?h=ROWS&w=COLS.
  Status ResizeExec(std::string_view exec_id, unsigned rows, unsigned cols);
  // GET /exec/ID/json.
  Status InspectExec(std::string_view exec_id, ExecInfo* info);

  const NodeOptions& options() const { return options_; }

  struct Impl;  // the transport (unix or TLS); engine_client.cc

 private:
  EngineClient(NodeOptions options, std::unique_ptr<Impl> impl);
  NodeOptions options_;
  std::unique_ptr<Impl> impl_;
};

// docker_name's rule (common/names.h IsValidUserName): ^[a-z_][a-z0-9_-]{0,31}$, and not made
// only of hex digits: an engine resolves a name no container has as a container id prefix, so
// `cafe` could reach a container whose id starts with cafe (the nginx allow-list refuses such
// names for the same reason, docs/gateway.md).
bool IsValidContainerName(std::string_view name);
bool IsAmbiguousWithContainerId(std::string_view name);
// An exec id as the engine makes it: 64 lowercase hex digits.
bool IsValidExecId(std::string_view id);
// RFC 3986 percent-encoding of everything but unreserved characters.
std::string PercentEncode(std::string_view text);

}  // namespace allgo::engine
