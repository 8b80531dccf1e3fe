// The `open` request of a session, built from what allgo-shell was given and inherited: the
// command (or a login shell), the forwardable environment (IsForwardableEnv) and, on a pty,
// TERM, the window size and the terminal modes of fd 0. Shared by the fifo bridge and the
// stdio mode (whose caller then sets version = kStdioProtocolVersion).
#pragma once

#include <string>

#include "allgo/bridge/protocol.h"

namespace allgo::bridge {

Open BuildRequest(bool login_shell, const std::string& command, bool pty);

}  // namespace allgo::bridge
