// The seccomp allow-list of the network child (installed after the privilege drop and
// PR_SET_NO_NEW_PRIVS). What libssh, OpenSSL, glibc and our loop need to move bytes between
// sockets, pipes and a PTY is allowed; everything else — execve, socket, connect, open,
// ptrace, mount, bpf... — fails with EPERM (an error path rather than a kill, so a library
// probing an optional syscall keeps working, while nothing new can be reached). Signals go
// to the calling process only: kill and tgkill with any other pid fail with EPERM.
#pragma once

#include "allgo/status.h"

namespace allgo::sshd {

Status InstallNetworkChildFilter();

}  // namespace allgo::sshd
