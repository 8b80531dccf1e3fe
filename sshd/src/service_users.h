// The dedicated system users allgo-sshd's unprivileged processes run as, one per role
// ([sshd] privsep_user, lookup_user, metrics_user; docs/security.md "Users"):
//
//   privsep_user  the network child of each connection (parses SSH bytes, chrooted, seccomp)
//   lookup_user   the lookup child (NSS, database client, stored key blobs) and the
//                 authorized_keys_command helper it runs; the listener's health child
//                 (/healthz's database check, health_check.h)
//   metrics_user  the metrics endpoint (parses HTTP requests)
//
// A role never shares its uid with another role, with root, with `nobody` (shared by other
// daemons) or with the webapp uid range: a compromise of one must not reach the others.
#pragma once

#include <sys/types.h>

#include <string>

#include "allgo/config.h"
#include "allgo/status.h"

namespace allgo::sshd {

struct ServiceUser {
  std::string name;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

struct ServiceUsers {
  ServiceUser privsep;
  ServiceUser lookup;
  ServiceUser metrics;  // resolved only when [sshd] metrics_listen is set
};

// getpwnam of each configured user and the rules above; the error names the key and how to
// create the user.
Status ResolveServiceUsers(const Config& config, ServiceUsers* out);

}  // namespace allgo::sshd
