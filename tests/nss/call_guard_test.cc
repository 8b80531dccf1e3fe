// Unit tests of CallGuard and SigpipeGuard (nss_allgo/call_guard.h): the module's protection
// of its host process — errno, re-entry and SIGPIPE — checked with real signals and real pipes.
#include "call_guard.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <thread>

namespace allgo::nss {
namespace {

bool SigpipePending() {
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

bool SigpipeBlocked() {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGPIPE) == 1;
}

// Writes to a pipe whose read end is closed: EPIPE, and the kernel raises SIGPIPE.
int WriteToBrokenPipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  close(fds[0]);
  const ssize_t n = write(fds[1], "x", 1);
  const int err = n < 0 ? errno : 0;
  close(fds[1]);
  return err;
}

TEST(SigpipeGuard, SwallowsTheSigpipeItsCallRaises) {
  // The default disposition of SIGPIPE kills the process: surviving this test is the check.
  ASSERT_FALSE(SigpipeBlocked());
  {
    SigpipeGuard guard;
    EXPECT_TRUE(SigpipeBlocked());
    EXPECT_EQ(WriteToBrokenPipe(), EPIPE);
    EXPECT_TRUE(SigpipePending());
  }
  EXPECT_FALSE(SigpipePending());
  EXPECT_FALSE(SigpipeBlocked()) << "the caller's signal mask must come back";
}

TEST(SigpipeGuard, LeavesTheCallersOwnPendingSigpipeAlone) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_only, &old), 0);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGPIPE), 0);  // the caller's, before the call
  { SigpipeGuard guard; }
  EXPECT_TRUE(SigpipePending());
  EXPECT_TRUE(SigpipeBlocked());
  const struct timespec no_wait = {0, 0};
  EXPECT_EQ(sigtimedwait(&pipe_only, nullptr, &no_wait), SIGPIPE);  // clean up
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(CallGuard, RestoresErrno) {
  errno = EL2HLT;  // an unusual value nobody else sets
  {
    CallGuard guard;
    EXPECT_EQ(close(-1), -1);  // EBADF: what the module's own failing calls do to errno
  }
  EXPECT_EQ(errno, EL2HLT);
}

TEST(CallGuard, RefusesNestedCallsOnTheSameThreadOnly) {
  {
    CallGuard outer;
    ASSERT_TRUE(outer.entered());
    SigpipeGuard outer_io;  // the outer call is talking to the database
    {
      CallGuard inner;
      EXPECT_FALSE(inner.entered()) << "a nested lookup must not recurse into the module";
    }
    EXPECT_TRUE(SigpipeBlocked()) << "the nested call must not undo the outer one's mask";
    bool other_thread_entered = false;
    std::thread([&] {
      CallGuard other;
      other_thread_entered = other.entered();
    }).join();
    EXPECT_TRUE(other_thread_entered);
  }
  CallGuard again;
  EXPECT_TRUE(again.entered());
}

}  // namespace
}  // namespace allgo::nss
