// The client side of the bridge: finding the agent of a sandbox and opening a session.
//
// Nothing is trusted by path alone. The bridge folder is opened without following a final
// symlink and must belong to root or to us and not be writable by group or others;
// agent.sock must be a socket (not a symlink planted there) and is reached through the
// opened folder; the process serving it must run as root or as us (SO_PEERCRED). The
// session folder and fifos the agent hands out must be ours, private, and fifos.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "allgo/bridge/protocol.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {

enum class ConnectResult {
  kConnected,
  kNoAgent,   // nothing listens: the sandbox is not running (or not yet)
  kRefused,   // the agent, or the folder's permissions, turned us away
  kUnsafe,    // the folder or socket is not what it must be; never retried
};

struct AgentConnection {
  UniqueFd dir;
  UniqueFd sock;
  FrameReader reader;
};

// *why explains anything but kConnected, for the user.
ConnectResult ConnectAgent(const std::string& bridge_dir, AgentConnection* conn, std::string* why);

struct SessionPipes {
  UniqueFd in;   // our writer of the process's stdin
  UniqueFd out;  // our reader of its stdout (the pty's output in PTY mode)
  UniqueFd err;  // our reader of its stderr; not used in PTY mode
  uint32_t pid = 0;
};

// Runs the handshake (open → opened → attach → started). Blocking fds on return.
// "" on success, else a message for the user (an agent's error text is included).
std::string OpenSession(AgentConnection* conn, const Open& request, SessionPipes* pipes);

}  // namespace allgo::bridge
