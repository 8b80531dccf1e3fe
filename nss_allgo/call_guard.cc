#include "call_guard.h"

#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <ctime>

namespace allgo::nss {
namespace {

pthread_once_t depth_key_once = PTHREAD_ONCE_INIT;
pthread_key_t depth_key;
bool depth_key_ok = false;

void CreateDepthKey() noexcept {
  // No destructor: the value is an integer, never memory.
  depth_key_ok = pthread_key_create(&depth_key, nullptr) == 0;
}

bool SigpipePending() noexcept {
  sigset_t pending;
  sigemptyset(&pending);
  return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

}  // namespace

CallGuard::CallGuard() noexcept : saved_errno_(errno) {
  if (pthread_once(&depth_key_once, CreateDepthKey) != 0 || !depth_key_ok) return;
  const auto depth = reinterpret_cast<uintptr_t>(pthread_getspecific(depth_key));
  if (depth != 0) return;  // nested call: do nothing, touch nothing
  if (pthread_setspecific(depth_key, reinterpret_cast<void*>(uintptr_t{1})) != 0) return;
  entered_ = true;
}

CallGuard::~CallGuard() {
  if (entered_) pthread_setspecific(depth_key, nullptr);
  errno = saved_errno_;
}

SigpipeGuard::SigpipeGuard() noexcept {
  sigemptyset(&old_mask_);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  sigpipe_pending_before_ = SigpipePending();
  mask_changed_ = pthread_sigmask(SIG_BLOCK, &block, &old_mask_) == 0;
}

SigpipeGuard::~SigpipeGuard() {
  if (!mask_changed_) return;
  if (!sigpipe_pending_before_ && SigpipePending()) {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    const struct timespec no_wait = {0, 0};
    // Consumes the SIGPIPE our own I/O raised; EAGAIN (none after all) is fine.
    (void)sigtimedwait(&pipe_only, nullptr, &no_wait);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

}  // namespace allgo::nss
