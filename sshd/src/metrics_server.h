// The metrics and health endpoint ([sshd] metrics_listen): GET /metrics (Prometheus text of
// the shared Metrics) and GET /healthz (200 when the database answers, 503 otherwise).
//
// It runs in its own process, forked by the listener at start-up before anything else, so
// the listener never carries the HTTP library's threads into its per-connection forks. The
// HTTP side is prometheus-cpp's Exposer (civetweb): it binds as root (the port may be
// privileged) and drops to [sshd] metrics_user before its threads start; the process has
// no_new_privs and dies with the listener (its parent-death signal is armed after the drop,
// which clears it, so a killed listener never leaves it holding the port). It answers only
// small GET requests; /healthz never shows the database's error text.
//
// It holds no secret: it is forked before the host keys are loaded, and it wipes the [mysql]
// password first thing after the fork. /healthz reads the verdict of the health child
// (health_check.h), which holds the password and reads nothing from the network.
#pragma once

#include <sys/types.h>

#include "allgo/config.h"
#include "allgo/status.h"
#include "health_check.h"
#include "metrics.h"
#include "privsep.h"

namespace allgo::sshd {

// Forks the endpoint process; *pid is its pid. Errors (bad address, port in use) are
// reported before the fork returns, so start-up fails loudly. The child scrubs the secrets
// of *config_in_child (its own copy-on-write image of it) before anything else; the
// caller's stays intact. /healthz answers from `health`.
Status StartMetricsServer(Config* config_in_child, HealthBoard* health, Metrics* metrics, uid_t uid, gid_t gid,
                          pid_t* pid);

}  // namespace allgo::sshd
