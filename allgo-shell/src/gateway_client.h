// allgo-shell's way to allgo-sandbox-gateway ([sandbox] backend = docker; docs/gateway.md):
// the unix socket [docker] gateway_socket, checked before and after connect so that no other
// local process can stand in for the gateway and receive a session's input.
#pragma once

#include "allgo/config.h"
#include "allgo/status.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {

// Connects to the gateway. The path must be a socket itself (lstat: a symlink is refused);
// after connect, SO_PEERCRED's uid must be [docker] gateway_user's (looked up without the
// allgo NSS module, so no webapp of that name can answer) or root. Unavailable when nothing
// listens ("the sandbox gateway is not running (connect PATH: ...)"); Permission otherwise.
Status ConnectGateway(const Config& config, UniqueFd* out);

}  // namespace allgo::bridge
