// The client side of the stdio mode (docs/protocol.md "Stdio mode"): one session run over a
// single connected byte stream to `allgo-sandbox-agent --stdio` (later: the socket of the
// sandbox gateway, which relays a Docker exec's stream; issue 11).
//
// What the user sees is what the fifo bridge gives (shell_main.cc RunSession): the
// terminal in raw mode on a pty, SIGWINCH as `window`, SIGINT/SIGQUIT/SIGHUP/SIGTERM relayed
// as `signal`, EOF of our stdin as `eof(stdin)`, the command's stdout and stderr on ours,
// its status (or 128 + signal) as our exit status, and one "allgo: ..." line on stderr when
// the stream breaks (255) or the client went away (after a 2 s grace period).
#pragma once

#include <string>

#include "allgo/bridge/protocol.h"

namespace allgo::bridge {

// Runs `request` (version kStdioProtocolVersion; Validate(..., Mode::kStdio) must accept it)
// over `stream`, a blocking connected fd the caller keeps owning. `signals` is a signalfd of
// SIGHUP, SIGINT, SIGQUIT, SIGTERM and SIGWINCH, blocked in every thread before the call.
// `name` names the sandbox in messages. Returns the exit status for allgo-shell. Threads it
// starts may still run (blocked on our stdin): leave the process with _exit.
int RunStdioSession(int stream, const Open& request, int signals, const std::string& name);

}  // namespace allgo::bridge
