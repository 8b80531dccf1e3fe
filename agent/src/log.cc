#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

namespace allgo::bridge {
namespace {
LogLevel g_level = LogLevel::kInfo;
const char* const kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }

bool ParseLogLevel(const char* name, LogLevel* out) {
  for (int i = 0; i < 4; ++i) {
    if (strcmp(name, kNames[i]) == 0) {
      *out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void Log(LogLevel level, const char* format, ...) {
  if (level < g_level) return;
  char line[2048];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "[%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ] [allgo-sandbox-agent] [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, kNames[static_cast<int>(level)]);
  va_list args;
  va_start(args, format);
  int m = vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  // One write per line so concurrent writers (none today) would not interleave mid-line.
  fwrite(line, 1, len, stderr);
  fflush(stderr);
}

}  // namespace allgo::bridge
