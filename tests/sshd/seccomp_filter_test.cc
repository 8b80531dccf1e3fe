// The network child's seccomp filter, installed for real in a forked child: it may signal
// itself (raise, abort) and nobody else.
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "privsep.h"
#include "seccomp_filter.h"

namespace allgo::sshd {
namespace {

volatile sig_atomic_t g_got_signal = 0;
void OnSignal(int) { g_got_signal = 1; }

// Exit codes of the filtered child: 0 all as expected, else which check failed.
enum Check : int { kOk = 0, kInstall = 10, kKillOther, kTgkillOther, kKillGroup, kRaise, kKillSelf };

int InFilteredChild(pid_t other) {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGUSR1, &sa, nullptr);
  if (!SetNoNewPrivs().ok() || !InstallNetworkChildFilter().ok()) return kInstall;
  // Signal 0 only probes: a permitted call would succeed, so EPERM can only be the filter.
  errno = 0;
  if (kill(other, 0) != -1 || errno != EPERM) return kKillOther;
  errno = 0;
  if (syscall(SYS_tgkill, other, other, 0) != -1 || errno != EPERM) return kTgkillOther;
  errno = 0;
  if (kill(0, 0) != -1 || errno != EPERM) return kKillGroup;  // its whole process group
  if (raise(SIGUSR1) != 0 || !g_got_signal) return kRaise;
  g_got_signal = 0;
  if (kill(getpid(), SIGUSR1) != 0 || !g_got_signal) return kKillSelf;
  return kOk;
}

int RunFiltered(pid_t other) {
  pid_t pid = fork();
  if (pid == 0) _exit(InFilteredChild(other));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(SeccompFilter, SignalsOnlyItself) {
  // A live process of the same user that the unfiltered test can signal: the control.
  pid_t other = fork();
  if (other == 0) {
    pause();
    _exit(0);
  }
  ASSERT_GT(other, 0);
  ASSERT_EQ(kill(other, 0), 0) << "control: without the filter the signal is allowed";
  EXPECT_EQ(RunFiltered(other), kOk);
  kill(other, SIGKILL);
  waitpid(other, nullptr, 0);
}

TEST(SeccompFilter, AbortStillWorks) {
  // abort() signals the process itself through tgkill: it must die of SIGABRT, not hang.
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (!SetNoNewPrivs().ok() || !InstallNetworkChildFilter().ok()) _exit(kInstall);
    abort();
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGABRT);
}

}  // namespace
}  // namespace allgo::sshd
