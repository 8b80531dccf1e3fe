// connector-marker-plugin.so: the stand-in for a library an unprivileged user names with
// LIBMYSQL_PLUGINS / MARIADB_PLUGIN_DIR. Like any such library, its code runs the moment
// something dlopen()s it — Connector/C only checks afterwards whether it is a real plugin — so
// its constructor leaves proof: the file named by $ALLGO_TEST_MARKER, holding
// "ruid=R euid=E" (who it ran as). The setuid tests in nss_test.cc look for that file.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {

__attribute__((constructor)) void LeaveMarker() {
  const char* path = std::getenv("ALLGO_TEST_MARKER");
  if (path == nullptr) return;
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return;
  char line[64];
  const int n = std::snprintf(line, sizeof line, "ruid=%u euid=%u\n", getuid(), geteuid());
  if (n > 0 && write(fd, line, static_cast<size_t>(n)) != n) {
    // Nothing to do: a short marker still exists, which is all the tests look for.
  }
  close(fd);
}

}  // namespace
