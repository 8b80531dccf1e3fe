// The audit log: one JSON object per line, per authentication decision, per session end and
// per forward
// (docs/operations.md lists the fields). Written with one write(2) per line on an O_APPEND fd,
// so lines from concurrent connection processes never interleave.
//
// Rotation: every line opens the file by its path (as root: the writers are the listener and
// the per-connection monitors), so once the file is renamed the next line of every process,
// long-lived connections included, creates and fills the new one; no signal has to reach the
// monitors. An open(2)+close(2) per line is a few microseconds, and lines are rare (one per
// authentication decision and per session).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "allgo/status.h"

namespace allgo::sshd {

struct AuthEvent {
  std::string client;       // "addr:port" (from the PROXY header when there is one)
  std::string user;         // the login name asked for (sanitised, bounded)
  std::string fingerprint;  // "SHA256:..." of the offered key, or empty
  std::string account;      // the allgo account whose key matched, or empty
  std::string result;       // "success" | "failure"
  std::string reason;       // why, for failures
};

struct SessionEvent {
  std::string client;
  std::string user;
  std::string account;
  std::string kind;         // "exec" | "shell" | "subsystem:sftp" ...
  int exit_status = -1;     // -1 when killed by a signal
  std::string exit_signal;  // e.g. "TERM" when killed
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  double duration = 0;      // seconds
};

struct ForwardAuditEvent {
  std::string client;
  std::string user;
  std::string account;
  std::string kind;    // "direct-tcpip" | "forwarded-tcpip" | "auth-agent" | "tcpip-forward"
  std::string target;  // host:port, listener or agent socket (inside the sandbox)
  std::string origin;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  double duration = 0;
  std::string result;  // "closed", "listening", "refused: why", ...
};

class AuditLog {
 public:
  // Checks that `path` can be opened for appending (creating it 0600, refusing a symlink),
  // so a bad path fails at start or reload rather than at the first line.
  static Status Open(const std::string& path, std::unique_ptr<AuditLog>* out);
  explicit AuditLog(std::string path) : path_(std::move(path)) {}

  Status Auth(const AuthEvent& event);
  Status Session(const SessionEvent& event);
  // One line per forward (at its end), per refused one and per -R listener.
  Status Forward(const ForwardAuditEvent& event);
  const std::string& path() const { return path_; }

 private:
  Status WriteLine(const std::string& line);
  std::string path_;
};

// Current UTC time as 2026-11-23T10:55:01.123Z.
std::string IsoTimeNow();

}  // namespace allgo::sshd
