// The client side of the bridge: finding the agent of a sandbox and opening a session.
//
// Nothing is trusted by path alone, and nothing found in the bridge folder is opened before it
// is known to be what it must be (the rules both sides share: bridge_folder.h). The bridge
// folder is opened without following a final symlink and must belong to root or to us and
// not be writable by group or others; agent.sock must be a socket of root's or ours (not a
// symlink planted there) and is connected to through the O_PATH handle that was checked; the
// process serving it must run as root or as us (SO_PEERCRED). The session folder and fifos
// the agent hands out must be ours and private, and the fifos are opened only once seen to be
// fifos (never a device node, a regular file or a symlink planted in their place).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "allgo/bridge/protocol.h"
#include "allgo/status.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {

struct AgentConnection {
  UniqueFd dir;
  UniqueFd sock;
  FrameReader reader;
};

// OK: connected. Otherwise the message is for the user, and the code says what to do:
//   Unavailable  nothing listens: the sandbox is not running (or not yet); worth retrying
//   Permission   the folder's or socket's permissions turned us away
//   Invalid      the folder or socket is not what it must be (e.g. a planted symlink); never retried
Status ConnectAgent(const std::string& bridge_dir, AgentConnection* conn);

struct SessionPipes {
  UniqueFd in;   // our writer of the process's stdin
  UniqueFd out;  // our reader of its stdout (the pty's output in PTY mode)
  UniqueFd err;  // our reader of its stderr; not used in PTY mode
  uint32_t pid = 0;
};

// Runs the handshake (open → opened → attach → started). Blocking fds on return.
// Errors (a message for the user): Unavailable when the agent does not answer, Permission
// when it refused (its error text is included), Invalid when the pipes are not ours.
Status OpenSession(AgentConnection* conn, const Open& request, SessionPipes* pipes);

}  // namespace allgo::bridge
