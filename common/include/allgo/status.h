// Status: the result of an operation that can fail, returned at every component boundary.
//
// Modelled on leveldb::Status: errors are values, never exceptions, so the same code can
// run inside the NSS module (where nothing may cross the C ABI) and in our own binaries.
// The message is for humans: it says what failed and where, and when possible how to fix it.
#pragma once

#include <string>
#include <utility>

namespace allgo {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,      // the thing asked for does not exist (unknown webapp, invalid name)
    kInvalid,       // bad input: config, key, name, protocol message
    kUnavailable,   // a dependency (database, agent) cannot be reached right now
    kIoError,       // a local system call failed
    kPermission,    // refused by policy
  };

  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Invalid(std::string msg) { return Status(Code::kInvalid, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }
  static Status Permission(std::string msg) { return Status(Code::kPermission, std::move(msg)); }
  // errno → Status in one place: "<context>: <strerror(err)>".
  static Status FromErrno(const std::string& context, int err);

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsInvalid() const { return code_ == Code::kInvalid; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OK" or the message; for logs and error output.
  std::string ToString() const { return ok() ? "OK" : message_; }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace allgo
