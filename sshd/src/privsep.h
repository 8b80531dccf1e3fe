// The pre-auth chroot and no_new_privs of allgo-sshd's network child. The privilege drop
// itself (to privsep_user, lookup_user, the webapp's uid) is allgo/privileges.h's.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/privileges.h"  // DropPrivileges, GroupsOf (shared with the gateway)
#include "allgo/status.h"

namespace allgo::sshd {

// Creates `path` (root-owned, 0755) when missing; then requires a directory owned by root
// and not writable by group or others, like OpenSSH's ChrootDirectory rules.
Status EnsurePrivsepChroot(const std::string& path);

// chroot(path) and chdir("/"). Needs root.
Status EnterChroot(const std::string& path);

// PR_SET_NO_NEW_PRIVS: no exec can ever gain privileges again (setuid binaries, file caps).
Status SetNoNewPrivs();

}  // namespace allgo::sshd
