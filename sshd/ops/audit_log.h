// The audit log: one JSON object per line, per authentication decision and per session end
// (docs/operations.md lists the fields). Written with one write(2) per line on an O_APPEND fd,
// so lines from concurrent connection processes never interleave.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "allgo/status.h"
#include "allgo/unique_fd.h"

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

class AuditLog {
 public:
  // Opens (creating 0600) `path` for appending.
  static Status Open(const std::string& path, std::unique_ptr<AuditLog>* out);
  // An audit log over an fd the caller opened (the privileged parent hands it down).
  explicit AuditLog(UniqueFd fd) : fd_(std::move(fd)) {}

  Status Auth(const AuthEvent& event);
  Status Session(const SessionEvent& event);
  int fd() const { return fd_.get(); }

 private:
  Status WriteLine(const std::string& line);
  UniqueFd fd_;
};

// Current UTC time as 2026-11-23T10:55:01.123Z.
std::string IsoTimeNow();

}  // namespace allgo::sshd
