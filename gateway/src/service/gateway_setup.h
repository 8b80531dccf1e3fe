// The checks allgo-sandbox-gateway makes before it serves, shared by `--check` and startup:
// [sandbox] backend = docker, at least one node, [docker] gateway_user a dedicated system
// user (allgo/privileges.h), and the TLS client key readable by that user only.
#pragma once

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/privileges.h"
#include "allgo/status.h"

namespace allgo::gateway {

Status CheckGatewayConfig(const Config& config, ServiceAccount* gateway_user);

// What a config allows but should not, one line each (`--check` prints them on stderr, the
// start logs them): more than one node without [queries] sandbox_location.
std::vector<std::string> ConfigWarnings(const Config& config);

// `--check`: the above, plus every node's client built (the CA, certificate and key load and
// match). Prints the nodes on `out`. Makes no connection.
Status CheckForOperator(const Config& config, std::string* out);

}  // namespace allgo::gateway
