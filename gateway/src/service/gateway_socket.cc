#include "service/gateway_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace allgo::gateway {

namespace {

Status EnsureFolder(const std::string& folder, gid_t group) {
  if (mkdir(folder.c_str(), 0775) == 0) {
    // mkdir applied the umask; chown first, then the exact mode.
    if (geteuid() == 0 && chown(folder.c_str(), 0, group) != 0) return Status::FromErrno("chown " + folder, errno);
    if (chmod(folder.c_str(), 0775) != 0) return Status::FromErrno("chmod " + folder, errno);
  } else if (errno != EEXIST) {
    return Status::FromErrno("cannot create the gateway socket's folder " + folder, errno);
  }
  struct stat st {};
  if (lstat(folder.c_str(), &st) != 0) return Status::FromErrno("gateway socket folder " + folder, errno);
  if (!S_ISDIR(st.st_mode)) {
    return Status::Invalid("the gateway socket's folder " + folder + " is not a folder (a symlink is refused)");
  }
  if (st.st_uid != 0 || (st.st_mode & S_IWOTH) != 0) {
    return Status::Permission("the gateway socket's folder " + folder +
                              " must be owned by root and not writable by others (chown root " + folder +
                              " && chmod o-w " + folder + ")");
  }
  return Status::Ok();
}

}  // namespace

Status BindGatewaySocket(const std::string& path, uid_t owner, gid_t group, UniqueFd* out) {
  sockaddr_un addr{};
  if (path.empty() || path[0] != '/' || path.size() >= sizeof addr.sun_path) {
    return Status::Invalid("[docker] gateway_socket must be an absolute path shorter than " +
                           std::to_string(sizeof addr.sun_path) + " bytes, got '" + path + "'");
  }
  std::string folder = path.substr(0, path.rfind('/'));
  if (folder.empty()) folder = "/";
  if (Status s = EnsureFolder(folder, group); !s.ok()) return s;
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::Invalid(path + " exists and is not a socket (" +
                             std::string(S_ISLNK(st.st_mode) ? "a symlink" : "another kind of file") +
                             "); remove it or choose another [docker] gateway_socket");
    }
    if (unlink(path.c_str()) != 0) return Status::FromErrno("removing the stale socket " + path, errno);
  } else if (errno != ENOENT) {
    return Status::FromErrno(path, errno);
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno("socket", errno);
  memcpy(addr.sun_path, path.c_str(), path.size());
  addr.sun_family = AF_UNIX;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::FromErrno("bind " + path, errno);
  }
  // Any local process may connect: SO_PEERCRED decides what it gets.
  if (chmod(path.c_str(), 0666) != 0) return Status::FromErrno("chmod 0666 " + path, errno);
  if (geteuid() == 0 && lchown(path.c_str(), owner, group) != 0) return Status::FromErrno("chown " + path, errno);
  if (listen(fd.get(), 128) != 0) return Status::FromErrno("listen " + path, errno);
  *out = std::move(fd);
  return Status::Ok();
}

Status PeerOf(int fd, PeerCredentials* out) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return Status::FromErrno("SO_PEERCRED", errno);
  out->pid = cred.pid;
  out->uid = cred.uid;
  out->gid = cred.gid;
  return Status::Ok();
}

}  // namespace allgo::gateway
