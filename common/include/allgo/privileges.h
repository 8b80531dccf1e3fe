// Dropping root for good, each step checked and then verified (a drop that silently failed is
// worse than none). Shared by allgo-sshd (network child, lookup child, session child) and
// allgo-sandbox-gateway (the whole service, once its socket is bound).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"

namespace allgo {

// setgroups(groups) / setresgid(gid) / setresuid(uid), each checked; then verifies the real,
// effective and saved ids, the supplementary groups (exactly `groups`) and, for a non-root
// uid, that setuid(0)/setgid(0) now fail.
Status DropPrivileges(uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

// The supplementary groups of `user` (getgrouplist), `gid` included.
std::vector<gid_t> GroupsOf(const std::string& user, gid_t gid);

// A dedicated system user of one role (docs/security.md "Users"), by name. `where` names the
// setting in messages ("/etc/allgo/allgo-ssh.conf: [docker] gateway_user = allgo-gateway").
// Refused: root, nobody (and its uid, shared by other daemons), uid or gid 0, a uid inside
// the webapp range [nss] min_uid..max_uid, and a name that does not exist (the message says
// how to create it).
struct ServiceAccount {
  std::string name;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};
Status ResolveServiceAccount(const Config& config, const std::string& where, const std::string& name,
                             ServiceAccount* out);

}  // namespace allgo
