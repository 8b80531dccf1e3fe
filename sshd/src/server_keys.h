// Host keys and the libssh server object (ssh_bind) configured from [sshd].
#pragma once

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"
#include "algorithm_policy.h"

namespace allgo::sshd {

struct BindDeleter {
  void operator()(ssh_bind b) const { ssh_bind_free(b); }
};
using UniqueBind = std::unique_ptr<ssh_bind_struct, BindDeleter>;

// Loads every [sshd] host_key and builds an ssh_bind that owns them, with libssh's own
// config files disabled (SSH_BIND_OPTIONS_PROCESS_CONFIG=false: ours is the only config), and
// the algorithm lists of ResolveAlgorithmPolicy().
// `summary` lists the loaded keys ("ed25519 /path SHA256:...") for the start-up log.
// Errors say which file and how to create a key.
Status MakeServerBind(const Config& config, UniqueBind* out, std::vector<std::string>* summary);

}  // namespace allgo::sshd
