// Logging set-up for our binaries (library allgo_log, spdlog). Never used by the NSS module,
// which must not print.
#pragma once

#include <string>

#include "allgo/status.h"

namespace allgo {

struct LogOptions {
  std::string program;          // syslog ident and log prefix
  std::string level = "info";   // spdlog level name
  bool to_stderr = true;
  // sshd discards an AuthorizedKeysCommand's stderr: those helpers log to syslog as well.
  bool to_syslog = false;
};

// Installs the default spdlog logger. Invalid level → Invalid status (logger still set up).
Status SetupLogging(const LogOptions& options);

}  // namespace allgo
