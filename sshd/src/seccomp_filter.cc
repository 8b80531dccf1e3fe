#include "seccomp_filter.h"

#include <seccomp.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace allgo::sshd {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};

// Every syscall the network child may make.
constexpr const char* kAllowed[] = {
    // I/O on the descriptors it already holds
    "read", "write", "readv", "writev", "pread64", "pwrite64", "recvfrom", "recvmsg", "sendto", "sendmsg",
    "poll", "ppoll", "select", "pselect6", "close", "fcntl", "ioctl", "lseek", "shutdown", "getsockopt",
    "setsockopt", "getpeername", "getsockname", "fstat", "newfstatat", "statx",
    // memory, threads, time, randomness
    "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "futex", "getrandom", "clock_gettime",
    "clock_nanosleep", "nanosleep", "gettimeofday", "time", "sched_yield", "sched_getaffinity", "rseq",
    "set_robust_list",
    // signals and process identity (kill and tgkill: own pid only, below)
    "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "sigaltstack", "restart_syscall", "getpid", "gettid", "getppid",
    "getuid", "geteuid", "getgid", "getegid", "exit", "exit_group",
};

}  // namespace

Status InstallNetworkChildFilter() {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!ctx) return Status::IoError("seccomp_init failed");
  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not a syscall on this architecture
    if (int rc = seccomp_rule_add(static_cast<scmp_filter_ctx>(ctx.get()), SCMP_ACT_ALLOW, nr, 0); rc != 0) {
      return Status::FromErrno(std::string("seccomp_rule_add ") + name, -rc);
    }
  }
  // raise() and abort() signal this process (tgkill(getpid(), ...)); every other target —
  // the monitor, a session, another connection's child of the same user — gets EPERM.
  // tkill (no pid to check) stays refused.
  const auto self = static_cast<scmp_datum_t>(getpid());
  for (const char* name : {"kill", "tgkill"}) {
    int rc = seccomp_rule_add(static_cast<scmp_filter_ctx>(ctx.get()), SCMP_ACT_ALLOW, seccomp_syscall_resolve_name(name),
                              1, SCMP_A0(SCMP_CMP_EQ, self));
    if (rc != 0) return Status::FromErrno(std::string("seccomp_rule_add ") + name, -rc);
  }
  if (int rc = seccomp_load(static_cast<scmp_filter_ctx>(ctx.get())); rc != 0) {
    return Status::FromErrno("seccomp_load", -rc);
  }
  return Status::Ok();
}

}  // namespace allgo::sshd
