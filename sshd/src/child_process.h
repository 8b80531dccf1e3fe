// Small helpers for the short-lived children of the monitor (user lookup, key helper,
// sessions).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "allgo/status.h"

namespace allgo::sshd {

// CLOCK_MONOTONIC in milliseconds, for deadlines.
long long MonotonicMs();

// In a freshly forked child: empties the signal mask and restores default dispositions
// (our event loops block SIGCHLD/SIGTERM/SIGHUP/SIGINT for signalfd and ignore SIGPIPE,
// and both survive exec).
void ResetSignalsInChild();

// Reads `fd` until EOF — at most max_bytes, within timeout_ms — then reaps `pid`, killing
// it first when it overran either bound. Unavailable on timeout or overflow (`what` names
// the child in the message); otherwise Ok with the child's wait status in *wait_status.
Status CollectChildOutput(pid_t pid, int fd, size_t max_bytes, long long timeout_ms, const std::string& what,
                          std::string* out, int* wait_status);

}  // namespace allgo::sshd
