#include "shell/agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <tuple>

#include "io.h"

namespace allgo::bridge {
namespace {

constexpr int kHandshakeTimeoutMs = 30000;
constexpr const char* kSocketName = "agent.sock";

bool ConnectTo(int sock, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return false;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int r;
  do {
    r = connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (r != 0 && errno == EINTR);
  return r == 0;
}

// An fd the agent handed us by name: it must be a fifo we own.
std::string OpenFifo(int dir, const char* name, int mode, UniqueFd* fd) {
  fd->reset(openat(dir, name, mode | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (!*fd) return ErrnoText(std::string("cannot open the session pipe ") + name, errno);
  struct stat st;
  if (fstat(fd->get(), &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_uid != getuid()) {
    return std::string("the session pipe ") + name + " is not a fifo of ours";
  }
  return "";
}

}  // namespace

ConnectResult ConnectAgent(const std::string& bridge_dir, AgentConnection* conn, std::string* why) {
  conn->dir.reset(open(bridge_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!conn->dir) {
    int err = errno;
    *why = ErrnoText(bridge_dir, err);
    if (err == ENOENT) return ConnectResult::kNoAgent;
    if (err == ELOOP || err == ENOTDIR) {
      *why = bridge_dir + " is not a directory (a symlink?); refusing it";
      return ConnectResult::kUnsafe;
    }
    return ConnectResult::kRefused;
  }
  struct stat st;
  if (fstat(conn->dir.get(), &st) != 0) {
    *why = ErrnoText(bridge_dir, errno);
    return ConnectResult::kRefused;
  }
  if ((st.st_uid != 0 && st.st_uid != getuid()) || (st.st_mode & 022) != 0) {
    *why = bridge_dir + " must belong to root or uid " + std::to_string(getuid()) +
           " and not be writable by group or others; refusing it";
    return ConnectResult::kUnsafe;
  }
  std::string sock_path = bridge_dir + "/" + kSocketName;
  if (fstatat(conn->dir.get(), kSocketName, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    *why = ErrnoText(sock_path, errno);
    return errno == ENOENT ? ConnectResult::kNoAgent : ConnectResult::kRefused;
  }
  if (!S_ISSOCK(st.st_mode)) {
    *why = sock_path + " is not a socket (a symlink?); refusing it";
    return ConnectResult::kUnsafe;
  }
  conn->sock.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!conn->sock) {
    *why = ErrnoText("socket", errno);
    return ConnectResult::kRefused;
  }
  // Through the folder we checked, so the path cannot be swapped between check and use.
  std::string via_proc = "/proc/self/fd/" + std::to_string(conn->dir.get()) + "/" + kSocketName;
  bool ok = ConnectTo(conn->sock.get(), via_proc);
  if (!ok && errno == ENOENT && access("/proc/self/fd", F_OK) != 0) ok = ConnectTo(conn->sock.get(), sock_path);
  if (!ok) {
    int err = errno;
    *why = ErrnoText(sock_path, err);
    return err == ECONNREFUSED || err == ENOENT ? ConnectResult::kNoAgent : ConnectResult::kRefused;
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(conn->sock.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    *why = ErrnoText("SO_PEERCRED", errno);
    return ConnectResult::kRefused;
  }
  if (cred.uid != 0 && cred.uid != getuid()) {
    *why = sock_path + " is served by uid " + std::to_string(cred.uid) +
           ", neither root nor us; refusing it";
    return ConnectResult::kUnsafe;
  }
  return ConnectResult::kConnected;
}

std::string OpenSession(AgentConnection* conn, const Open& request, SessionPipes* pipes) {
  int sock = conn->sock.get();
  auto expect = [&](Message* m) -> std::string {
    std::string err = ReadMessage(sock, &conn->reader, m, kHandshakeTimeoutMs);
    if (!err.empty()) return "the sandbox agent did not answer: " + err;
    if (auto* e = std::get_if<Error>(m)) return "the sandbox agent refused the session: " + e->text;
    return "";
  };

  if (std::string err = SendMessage(sock, request); !err.empty()) return "cannot talk to the sandbox agent: " + err;
  Message m;
  if (std::string err = expect(&m); !err.empty()) return err;
  auto* opened = std::get_if<Opened>(&m);
  if (opened == nullptr) return "the sandbox agent answered out of order";

  UniqueFd session(openat(conn->dir.get(), opened->session.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!session) return ErrnoText("cannot open the session folder " + opened->session, errno);
  struct stat st;
  if (fstat(session.get(), &st) != 0 || st.st_uid != getuid() || (st.st_mode & 077) != 0) {
    return "the session folder " + opened->session + " is not private to us; refusing it";
  }
  // Readers first (they never block), then the writer: the agent already holds a reader.
  for (auto [name, mode, fd] : {std::tuple{"out", O_RDONLY, &pipes->out},
                                std::tuple{"err", O_RDONLY, &pipes->err},
                                std::tuple{"in", O_WRONLY, &pipes->in}}) {
    if (request.pty && strcmp(name, "err") == 0) continue;
    if (std::string err = OpenFifo(session.get(), name, mode, fd); !err.empty()) return err;
  }
  if (std::string err = SendMessage(sock, Attached{}); !err.empty()) return "cannot talk to the sandbox agent: " + err;
  if (std::string err = expect(&m); !err.empty()) return err;
  auto* started = std::get_if<Started>(&m);
  if (started == nullptr) return "the sandbox agent answered out of order";
  pipes->pid = started->pid;
  for (UniqueFd* fd : {&pipes->in, &pipes->out, &pipes->err}) {
    if (*fd) SetNonBlocking(fd->get(), false);
  }
  return "";
}

}  // namespace allgo::bridge
