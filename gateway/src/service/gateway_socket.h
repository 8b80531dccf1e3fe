// The gateway's listening unix socket ([docker] gateway_socket) and who is on the other end.
//
// Any local process may connect (mode 0666): the kernel's SO_PEERCRED, not anything the
// caller sends, says who it is, and the session decides from that alone.
#pragma once

#include <sys/types.h>

#include <string>

#include "allgo/status.h"
#include "allgo/unique_fd.h"

namespace allgo::gateway {

// Binds and listens on `path`. Its folder is created when missing (owner root, group
// `group`, 0775: the gateway user can replace and remove its socket, webapps can only reach
// it); an existing folder must be a real folder, owned by root and not writable by others.
// A stale entry at `path` is replaced only when it is a socket (a symlink or anything else is
// refused). The socket is chmod 0666 and chowned to `owner`:`group` (when running as root).
Status BindGatewaySocket(const std::string& path, uid_t owner, gid_t group, UniqueFd* out);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
// SO_PEERCRED of a connected unix socket: fixed by the kernel at connect().
Status PeerOf(int fd, PeerCredentials* out);

}  // namespace allgo::gateway
