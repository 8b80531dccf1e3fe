// `allgo-shell --streams`: the carrier of one SSH connection's forwards (docs/architecture.md,
// "The carrier"). Internal: started by allgo-sshd's monitor as the authenticated webapp, with
// stdout a unix socket. The agent and the gateway know a webapp only by the SO_PEERCRED uid
// of the process that connects, so the connection is made here, as the webapp, exactly where
// a session of this uid connects (sandbox_connect.h, gateway_client.h); nothing is sent on it.
// The connected socket is passed to our stdout (allgo/bridge/carrier.h) and keeps its
// identity there: allgo-sshd's network child then speaks protocol v3 over it end to end.
// It can reach nothing a session of the same uid could not.
#pragma once

#include <string>

namespace allgo::bridge {

// Returns the exit status: 0 when the socket was handed over, 1 after an error record,
// 2 when stdout is not a unix socket (run by hand).
int RunStreamsCarrier(const std::string& config_flag, int signals);

}  // namespace allgo::bridge
