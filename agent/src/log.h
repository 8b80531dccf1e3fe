// The agent's log: one timestamped line per event on stderr (the controller collects it).
// spdlog is a shared library on Debian and the agent must be fully static, so it has this
// small printf-style logger instead.
#pragma once

namespace allgo::bridge {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
// Parses "debug", "info", "warn", "error"; false for anything else.
bool ParseLogLevel(const char* name, LogLevel* out);
void Log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace allgo::bridge
