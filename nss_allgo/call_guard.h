// CallGuard: what every glibc entry point wraps its work in, to live safely inside someone
// else's process (notes/nss-and-authkeys.md, "Living inside someone else's process").
//
// For the lifetime of the guard, on the calling thread:
//  - errno is saved and restored on exit, so the caller's errno survives everything the
//    module does (the entry point sets *errnop after the guard is gone, when it must);
//  - a per-thread depth counter (a pthread key, not ELF TLS: TLS in a dlopen()ed module can
//    allocate and is not async-signal-safe) marks the thread as inside the module. A nested
//    call — Connector/C or a resolver looking up a user while we are in a query — sees
//    entered() == false and must return NSS_STATUS_UNAVAIL at once instead of recursing
//    into the database or a mutex it already holds.
//
// No system call: a cached hit runs entirely inside this guard without entering the kernel.
// SIGPIPE is the job of SigpipeGuard, taken only around the module's network I/O (a hit does
// none, so it must not pay four signal system calls for it).
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
};

// SigpipeGuard: SIGPIPE is blocked for the guard's lifetime on the calling thread, and a
// SIGPIPE raised meanwhile (a write to a database socket the server closed, from a TLS library
// that does not use MSG_NOSIGNAL) is consumed before the mask is restored, so it never kills
// the host program. A SIGPIPE that was already pending before is left alone. Costs four system
// calls (sigpending, sigprocmask, both twice): the module takes it around what talks to the
// database (connecting, querying, closing connections), never on a cache hit.
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept;
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  bool mask_changed_ = false;
  bool sigpipe_pending_before_ = false;
  sigset_t old_mask_;
};

}  // namespace allgo::nss
