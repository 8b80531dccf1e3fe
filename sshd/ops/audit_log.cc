#include "audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

#include "allgo/unique_fd.h"

namespace allgo::sshd {

std::string IsoTimeNow() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

namespace {

Status OpenForAppend(const std::string& path, UniqueFd* out) {
  out->reset(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
  if (!*out) return Status::FromErrno("cannot open audit_log " + path, errno);
  return Status::Ok();
}

}  // namespace

Status AuditLog::Open(const std::string& path, std::unique_ptr<AuditLog>* out) {
  UniqueFd fd;
  Status st = OpenForAppend(path, &fd);
  if (!st.ok()) return st;
  *out = std::make_unique<AuditLog>(path);
  return Status::Ok();
}

Status AuditLog::WriteLine(const std::string& line) {
  UniqueFd fd;
  Status st = OpenForAppend(path_, &fd);
  if (!st.ok()) return st;
  // One write per line: O_APPEND makes each land whole at the end of the file.
  ssize_t n = write(fd.get(), line.data(), line.size());
  if (n < 0) return Status::FromErrno("cannot write the audit log " + path_, errno);
  if (static_cast<size_t>(n) != line.size()) return Status::IoError("short write to the audit log");
  return Status::Ok();
}

Status AuditLog::Auth(const AuthEvent& e) {
  nlohmann::json j = {{"time", IsoTimeNow()}, {"event", "auth"},     {"client", e.client},
                      {"user", e.user},       {"fingerprint", e.fingerprint},
                      {"account", e.account}, {"result", e.result}};
  if (!e.reason.empty()) j["reason"] = e.reason;
  // Names from the network may hold invalid UTF-8: replace rather than throw.
  return WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

Status AuditLog::Session(const SessionEvent& e) {
  nlohmann::json j = {{"time", IsoTimeNow()},        {"event", "session"},
                      {"client", e.client},          {"user", e.user},
                      {"account", e.account},        {"kind", e.kind},
                      {"bytes_in", e.bytes_in},      {"bytes_out", e.bytes_out},
                      {"duration", e.duration}};
  j["exit_status"] = e.exit_status >= 0 ? nlohmann::json(e.exit_status) : nlohmann::json(nullptr);
  if (!e.exit_signal.empty()) j["exit_signal"] = e.exit_signal;
  return WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

Status AuditLog::Forward(const ForwardAuditEvent& e) {
  nlohmann::json j = {{"time", IsoTimeNow()},   {"event", "forward"},     {"client", e.client},
                      {"user", e.user},         {"account", e.account},   {"kind", e.kind},
                      {"target", e.target},     {"origin", e.origin},     {"bytes_in", e.bytes_in},
                      {"bytes_out", e.bytes_out}, {"duration", e.duration}, {"result", e.result}};
  return WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace allgo::sshd
