// Privilege dropping, each step checked and then verified (a drop that silently failed is
// worse than none). Used by the network child (to privsep_user, inside the chroot) and by
// the session child (to the webapp's uid).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/status.h"

namespace allgo::sshd {

// Creates `path` (root-owned, 0755) when missing; then requires a directory owned by root
// and not writable by group or others, like OpenSSH's ChrootDirectory rules.
Status EnsurePrivsepChroot(const std::string& path);

// chroot(path) and chdir("/"). Needs root.
Status EnterChroot(const std::string& path);

// setgroups(groups) / setresgid(gid) / setresuid(uid), each checked; then verifies the real,
// effective and saved ids and, for a non-root uid, that setuid(0)/setgid(0) now fail.
Status DropPrivileges(uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

// PR_SET_NO_NEW_PRIVS: no exec can ever gain privileges again (setuid binaries, file caps).
Status SetNoNewPrivs();

// The supplementary groups of `user` (getgrouplist), `gid` included.
std::vector<gid_t> GroupsOf(const std::string& user, gid_t gid);

}  // namespace allgo::sshd
