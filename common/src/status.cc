#include "allgo/status.h"

#include <cstring>

namespace allgo {

Status Status::FromErrno(const std::string& context, int err) {
  char buf[256];
  // GNU strerror_r returns the message (possibly a static string, not buf).
  const char* text = strerror_r(err, buf, sizeof buf);
  Code code = Code::kIoError;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermission;
  return Status(code, context + ": " + text);
}

}  // namespace allgo
