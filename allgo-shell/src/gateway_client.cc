#include "gateway_client.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "allgo/identity.h"

namespace allgo::bridge {

Status ConnectGateway(const Config& config, UniqueFd* out) {
  const std::string& path = config.docker.gateway_socket;
  const std::string tell = "; tell the allgo operators";
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    return Status::Unavailable("the sandbox gateway is not running (connect " + path + ": " + strerror(errno) + ")" + tell);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::Permission("the sandbox gateway's " + path + " is not a socket" +
                              (S_ISLNK(st.st_mode) ? std::string(" but a symlink") : std::string()) + tell);
  }
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return Status::Invalid("[docker] gateway_socket is too long: " + path);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno("socket", errno);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable("the sandbox gateway is not running (connect " + path + ": " + strerror(errno) + ")" +
                               tell);
  }
  ucred peer{};
  socklen_t len = sizeof peer;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return Status::FromErrno("SO_PEERCRED", errno);
  uid_t gateway_uid = 0;
  Status known = OtherAccountSources(OtherAccountSources::Caller::kProgram)
                     .UidOfName(config.docker.gateway_user, &gateway_uid);
  if (peer.uid != 0 && (!known.ok() || peer.uid != gateway_uid)) {
    return Status::Permission("refusing the sandbox gateway at " + path + ": it is served by uid " +
                              std::to_string(peer.uid) + ", not by [docker] gateway_user " +
                              config.docker.gateway_user +
                              (known.ok() ? " (uid " + std::to_string(gateway_uid) + ")" : " (" + known.message() + ")") +
                              tell);
  }
  *out = std::move(fd);
  return Status::Ok();
}

}  // namespace allgo::bridge
