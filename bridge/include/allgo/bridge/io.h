// System-call helpers shared by allgo-shell and allgo-sandbox-agent (library allgo_bridge_io).
// libc only, so the static agent can link it. errno is turned into text in one place
// (ErrnoText); callers decide how to report.
#pragma once

#include <sys/types.h>
#include <termios.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "allgo/bridge/protocol.h"

namespace allgo::bridge {

// "<context>: <strerror(err)>".
std::string ErrnoText(const std::string& context, int err);

// Writes everything (retrying on EINTR and short writes) to a blocking fd; false + errno.
// Uses send(MSG_NOSIGNAL) on sockets so a vanished peer is EPIPE, not SIGPIPE.
bool WriteAll(int fd, const void* data, size_t size);

// Sends one frame on a blocking socket; "" on success, else the reason.
std::string SendMessage(int fd, const Message& message);

// Reads the next message from a blocking socket, waiting at most timeout_ms (-1: forever).
// Result: "" and *out set; or the reason ("connection closed", "timed out", protocol error).
// *closed is set when the peer closed the connection cleanly between frames.
std::string ReadMessage(int fd, FrameReader* reader, Message* out, int timeout_ms,
                        bool* closed = nullptr);

// Copies `from` → `to` until EOF on `from`, with splice() when one side is a pipe and a
// 128 KiB buffer otherwise. Blocking fds. Memory stays bounded whatever the volume.
// Returns "" at EOF, else what failed ("write: Broken pipe" when the reader went away).
std::string Pump(int from, int to);

// 16 random bytes from getrandom(), as 32 lowercase hex digits; "" if the kernel refused.
std::string RandomHex16();

void SetNonBlocking(int fd, bool on);
void SetCloexec(int fd);

// Terminal modes as RFC 4254 opcodes: what the local terminal uses (client side), and how
// the agent applies them to the sandbox's pty (only opcodes it knows; others are ignored).
std::vector<TermMode> EncodeTermModes(const struct termios& tio);
void ApplyTermModes(const std::vector<TermMode>& modes, struct termios* tio);

}  // namespace allgo::bridge
