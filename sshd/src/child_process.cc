#include "child_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace allgo::sshd {
long long MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void ResetSignalsInChild() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGQUIT}) signal(sig, SIG_DFL);
}

Status CollectChildOutput(pid_t pid, int fd, size_t max_bytes, long long timeout_ms, const std::string& what,
                          std::string* out, int* wait_status) {
  long long deadline = MonotonicMs() + timeout_ms;
  bool timed_out = false, too_long = false;
  char buf[16384];
  while (true) {
    long long left = deadline - MonotonicMs();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out->size() + static_cast<size_t>(n) > max_bytes) {
      too_long = true;
      break;
    }
    out->append(buf, static_cast<size_t>(n));
  }
  if (timed_out || too_long) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  *wait_status = status;
  if (timed_out) return Status::Unavailable(what + " timed out");
  if (too_long) return Status::Unavailable(what + " wrote more than " + std::to_string(max_bytes) + " bytes");
  return Status::Ok();
}

}  // namespace allgo::sshd
