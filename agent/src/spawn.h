// Starting a session's process inside the sandbox.
//
// Why not Boost.Process: the agent must be one fully static binary, and the command does not
// need pipes created for it — its stdin/stdout/stderr are the session's named pipes, passed
// as they are (no copy through the agent). What it needs is setsid(), a controlling terminal
// for PTY sessions, the signal mask and dispositions reset, and a parent-death signal;
// fork()+execve() and forkpty() say that directly, and exec failures come back through a
// close-on-exec pipe.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/bridge/protocol.h"

namespace allgo::bridge {

// The soft RLIMIT_NOFILE the session processes get (the agent raises its own to the hard
// limit; programs that close every possible fd crawl under a huge one).
void SetChildFileLimit(rlim_t soft);

// The environment of a session: the agent's own (what the container was started with, e.g.
// PATH from the image) overlaid with the client's forwardable variables, and HOME = `home`
// (SessionHome, home.h; "" = the agent's HOME, if any, is dropped).
std::vector<std::string> SessionEnvironment(const Open& request, const std::string& home);

// "" or, when `request` is a file-transfer server (sftp-server, scp, rsync --server) that this
// sandbox does not have, one line saying so and what the image needs. Without it the client
// would get a shell's "not found" in the middle of its protocol and report a protocol error.
std::string MissingTransferTool(const Open& request);

// A forked child whose exec is not confirmed yet. The caller owns `report` (close-on-exec,
// non-blocking); it becomes readable when the child has exec'd (EOF) or failed (an errno),
// and ExecReport says which. The agent polls it instead of waiting, so a slow exec (an
// image on a slow file system) never stalls the other sessions.
struct Spawned {
  pid_t pid = -1;  // -1: nothing started, see the error
  int report = -1;
  std::string program;
};
// "" when the exec succeeded, else why it failed. Call once `report` is readable.
std::string ExecReport(const Spawned& spawned);

// Runs `/bin/sh -c command` with the given fds as 0, 1, 2 in a new session (pgid == pid).
Spawned SpawnCommand(const Open& request, int in, int out, int err, std::string* error);

// Runs the request on a new pseudo-terminal: a login shell (bash if the image has one, else
// sh) or `/bin/sh -c command`, with the requested TERM, window size and modes.
// *master receives the pty master (close-on-exec, non-blocking).
Spawned SpawnOnPty(const Open& request, int* master, std::string* error);

}  // namespace allgo::bridge
