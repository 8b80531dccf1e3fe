// `allgo-sandbox-agent --stdio`: one session served over the agent's own stdin and stdout,
// for a relay that has a single byte stream to give (the hijacked stream of a Docker exec,
// relayed by allgo-sandbox-gateway; issue 11). docs/protocol.md "Stdio mode" is the contract.
//
// Why a separate loop and not a Conn of Agent: there is no listening socket, no bridge folder,
// no fifos and exactly one session, whose stdin/stdout/stderr the agent must copy to and from
// frames itself. What both modes share is what the user sees: the same request checks
// (MissingTransferTool), the same spawn (SpawnCommand/SpawnOnPty: environment allow-list,
// setsid, pty modes), the same exit status and the same hang-up when the client goes away.
//
// Every buffer is bounded: at most kMaxToChild bytes of stdin wait for the process, and the
// process's output is read only while less than kMaxToStream bytes of frames wait for the
// stream, so a client that stops reading stalls the process (as a full pipe would) and
// nothing grows.
#pragma once

namespace allgo::bridge {

struct StdioOptions {
  int in = 0;   // frames from the client
  int out = 1;  // frames to the client
  int handshake_timeout_ms = 10000;  // until `open`
};

// A client whose first frame is a version 3 `hello` is served in the stream mode instead
// (stream_server.h, forwarding through the gateway): exit status 0 when it closed the
// stream, 1 after a protocol error.
//
// Serves one session and returns the agent's exit status: the session's shell status
// (status, or 128 + signal) once it ended and its output was delivered; 1 when no session
// ran (an `error` was sent); 255 when the client went away first (the process was hung up).
int ServeStdio(const StdioOptions& options);

}  // namespace allgo::bridge
