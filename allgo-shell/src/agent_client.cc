#include "agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <tuple>

#include "allgo/bridge/bridge_folder.h"
#include "allgo/bridge/io.h"

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

// A pipe the agent handed us by name: it is opened only once it is known to be a fifo of ours,
// so a device node, a regular file, a symlink or someone else's fifo planted in its place is
// refused without being opened (opening has side effects: a tty would become our controlling
// terminal, another fifo's waiting writer would be released).
Status OpenFifo(int dir, const char* name, int mode, UniqueFd* fd) {
  const std::string what = std::string("the session pipe ") + name;
  std::string problem;
  *fd = OpenChecked(
      dir, name, mode | O_NONBLOCK,
      [&](const struct stat& st) { return SessionPipeProblem(st, getuid(), what); }, &problem);
  return *fd ? Status::Ok() : Status::Invalid(problem);
}

}  // namespace

Status ConnectAgent(const std::string& bridge_dir, AgentConnection* conn) {
  conn->dir.reset(open(bridge_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
  if (!conn->dir) {
    int err = errno;
    if (err == ENOENT) return Status::Unavailable(ErrnoText(bridge_dir, err));
    if (err == ELOOP || err == ENOTDIR) {
      return Status::Invalid(bridge_dir + " is not a directory (a symlink?); refusing it");
    }
    return Status::Permission(ErrnoText(bridge_dir, err));
  }
  struct stat st;
  if (fstat(conn->dir.get(), &st) != 0) return Status::Permission(ErrnoText(bridge_dir, errno));
  if (std::string problem = BridgeFolderProblem(st, getuid(), bridge_dir); !problem.empty()) {
    return Status::Invalid(problem);
  }
  // The socket is taken by an O_PATH handle (a symlink is seen as one, never followed),
  // checked, and connected to through that handle: what we connect to is what we checked.
  std::string sock_path = bridge_dir + "/" + kSocketName;
  UniqueFd handle(openat(conn->dir.get(), kSocketName, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!handle || fstat(handle.get(), &st) != 0) {
    int err = errno;
    return err == ENOENT ? Status::Unavailable(ErrnoText(sock_path, err))
                         : Status::Permission(ErrnoText(sock_path, err));
  }
  if (std::string problem = AgentSocketProblem(st, getuid(), sock_path); !problem.empty()) {
    return Status::Invalid(problem);
  }
  conn->sock.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!conn->sock) return Status::IoError(ErrnoText("socket", errno));
  bool ok = ConnectTo(conn->sock.get(), ProcFdPath(handle.get()));
  if (!ok && errno == ENOENT && access("/proc/self/fd", F_OK) != 0) ok = ConnectTo(conn->sock.get(), sock_path);
  if (!ok) {
    int err = errno;
    return err == ECONNREFUSED || err == ENOENT ? Status::Unavailable(ErrnoText(sock_path, err))
                                                : Status::Permission(ErrnoText(sock_path, err));
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(conn->sock.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Status::IoError(ErrnoText("SO_PEERCRED", errno));
  }
  if (cred.uid != 0 && cred.uid != getuid()) {
    return Status::Invalid(sock_path + " is served by uid " + std::to_string(cred.uid) +
                           ", neither root nor us; refusing it");
  }
  return Status::Ok();
}

Status OpenSession(AgentConnection* conn, const Open& request, SessionPipes* pipes) {
  int sock = conn->sock.get();
  auto expect = [&](Message* m) -> Status {
    std::string err = ReadMessage(sock, &conn->reader, m, kHandshakeTimeoutMs);
    if (!err.empty()) return Status::Unavailable("the sandbox agent did not answer: " + err);
    if (auto* e = std::get_if<Error>(m)) {
      return Status::Permission("the sandbox agent did not start the session: " + e->text);
    }
    return Status::Ok();
  };
  auto talk = [&](const Message& m) -> Status {
    std::string err = SendMessage(sock, m);
    return err.empty() ? Status::Ok() : Status::Unavailable("cannot talk to the sandbox agent: " + err);
  };
  const Status out_of_order = Status::Invalid("the sandbox agent answered out of order");

  if (Status s = talk(request); !s.ok()) return s;
  Message m;
  if (Status s = expect(&m); !s.ok()) return s;
  auto* opened = std::get_if<Opened>(&m);
  if (opened == nullptr) return out_of_order;

  // O_DIRECTORY: anything but a directory is refused by the lookup, before any open.
  UniqueFd session(openat(conn->dir.get(), opened->session.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
  if (!session) return Status::Invalid(ErrnoText("cannot open the session folder " + opened->session, errno));
  struct stat st;
  if (fstat(session.get(), &st) != 0) return Status::Invalid(ErrnoText("stat " + opened->session, errno));
  if (std::string problem = SessionFolderProblem(st, getuid(), "the session folder " + opened->session);
      !problem.empty()) {
    return Status::Invalid(problem);
  }
  // Readers first (they never block), then the writer: the agent already holds a reader.
  for (auto [name, mode, fd] : {std::tuple{"out", O_RDONLY, &pipes->out},
                                std::tuple{"err", O_RDONLY, &pipes->err},
                                std::tuple{"in", O_WRONLY, &pipes->in}}) {
    if (request.pty && strcmp(name, "err") == 0) continue;
    if (Status s = OpenFifo(session.get(), name, mode, fd); !s.ok()) return s;
  }
  if (Status s = talk(Attached{}); !s.ok()) return s;
  if (Status s = expect(&m); !s.ok()) return s;
  auto* started = std::get_if<Started>(&m);
  if (started == nullptr) return out_of_order;
  pipes->pid = started->pid;
  for (UniqueFd* fd : {&pipes->in, &pipes->out, &pipes->err}) {
    if (*fd) SetNonBlocking(fd->get(), false);
  }
  return Status::Ok();
}

}  // namespace allgo::bridge
