// CallGuard: what every glibc entry point wraps its work in, to live safely inside someone
// else's process (notes/nss-and-authkeys.md, "Living inside someone else's process").
//
// For the lifetime of the guard, on the calling thread:
//  - errno is saved and restored on exit, so the caller's errno survives everything the
//    module does (the entry point sets *errnop after the guard is gone, when it must);
//  - SIGPIPE is blocked, and a SIGPIPE raised during the call (a write to a database socket
//    the server closed) is consumed before the mask is restored, so it never kills the host
//    program. A SIGPIPE that was already pending before the call is left alone;
//  - a per-thread depth counter (a pthread key, not ELF TLS: TLS in a dlopen()ed module can
//    allocate and is not async-signal-safe) marks the thread as inside the module. A nested
//    call — Connector/C or a resolver looking up a user while we are in a query — sees
//    entered() == false and must return NSS_STATUS_UNAVAIL at once instead of recursing
//    into the database or a mutex it already holds.
#pragma once

#include <signal.h>

namespace allgo::nss {

class CallGuard {
 public:
  CallGuard() noexcept;
  ~CallGuard();
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;

  // False when this thread is already inside the module (or the guard could not be set up):
  // the call must not do any work.
  bool entered() const noexcept { return entered_; }

 private:
  int saved_errno_;
  bool entered_ = false;
  bool depth_set_ = false;
  bool mask_changed_ = false;
  bool sigpipe_pending_before_ = false;
  sigset_t old_mask_;
};

}  // namespace allgo::nss
