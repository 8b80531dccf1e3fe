#include "allgo/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

#include <memory>
#include <vector>

namespace allgo {

Status SetupLogging(const LogOptions& options) {
  std::vector<spdlog::sink_ptr> sinks;
  if (options.to_stderr) {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
    sinks.push_back(sink);
  }
  if (options.to_syslog) {
    auto sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(options.program, LOG_PID,
                                                                LOG_AUTHPRIV, false);
    sink->set_pattern("%v");
    sinks.push_back(sink);
  }
  auto logger = std::make_shared<spdlog::logger>(options.program, sinks.begin(), sinks.end());
  spdlog::set_default_logger(logger);
  spdlog::level::level_enum level = spdlog::level::from_str(options.level);
  // from_str maps unknown names to "off"; only "off" itself may mean off.
  if (level == spdlog::level::off && options.level != "off") {
    logger->set_level(spdlog::level::info);
    return Status::Invalid("unknown log level '" + options.level +
                           "' (use trace, debug, info, warn, error, critical or off)");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  return Status::Ok();
}

}  // namespace allgo
