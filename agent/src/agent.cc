#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "log.h"
#include "loop_helpers.h"
#include "spawn.h"
#include "stream_server.h"
#include "allgo/bridge/bridge_folder.h"
#include "allgo/bridge/io.h"

namespace allgo::bridge {
namespace {

constexpr size_t kMaxPendingOutput = 64 * 1024;  // control bytes queued for a slow client
constexpr size_t kPtyBuffer = 64 * 1024;         // per direction, per PTY session
constexpr int kDataPipeSize = 1 << 20;            // stdin and stdout fifos
constexpr int kClosingTimeoutMs = 5000;          // to deliver the exit status
constexpr int kPtyDrainTimeoutMs = 2000;         // output after the shell exited
constexpr int kStreamStopTimeoutMs = 2000;       // stream children cleaning up at stop
constexpr const char* kSocketName = "agent.sock";
constexpr const char* kLockName = "agent.lock";

// Removes a session folder (never following a symlink): the fifos inside, then the folder.
// A non-directory with a session-like name is simply unlinked.
void RemoveSessionEntry(int dir, const std::string& name) {
  struct stat st;
  if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlinkat(dir, name.c_str(), 0);
    return;
  }
  int sd = openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (sd >= 0) {
    DIR* d = fdopendir(sd);
    if (d != nullptr) {
      std::vector<std::string> entries;
      while (dirent* e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries.emplace_back(e->d_name);
      }
      for (const std::string& e : entries) unlinkat(dirfd(d), e.c_str(), 0);
      closedir(d);
    } else {
      close(sd);
    }
  }
  if (unlinkat(dir, name.c_str(), AT_REMOVEDIR) != 0) {
    Log(LogLevel::kWarn, "cannot remove %s: %s", name.c_str(), strerror(errno));
  }
}

}  // namespace

struct Agent::Conn {
  enum class State { kAwaitOpen, kAwaitAttach, kStarting, kRunning, kClosing };

  uint64_t id = 0;
  UniqueFd sock;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t peer_pid = 0;
  FrameReader reader;
  std::string out;  // encoded frames not yet sent
  State state = State::kAwaitOpen;
  int64_t deadline = -1;
  bool dead = false;

  Open request;
  std::string session;  // folder name while it exists
  UniqueFd session_dir;
  ino_t ino_in = 0, ino_out = 0, ino_err = 0;
  UniqueFd fifo_in, fifo_out, fifo_err;

  pid_t pid = -1;
  UniqueFd exec_report;  // while kStarting: readable once the exec succeeded or failed
  std::string program;
  bool exited = false;
  Exit exit;
  int64_t started_ms = 0;

  // PTY sessions only.
  UniqueFd master;
  std::string to_pty, from_pty;
  bool in_eof = false, master_eof = false, out_broken = false;

  bool pty_running() const { return state == State::kRunning && master.valid(); }
};

Agent::Agent() = default;
Agent::~Agent() = default;

void PrepareAgentProcess() {
  umask(077);
  signal(SIGPIPE, SIG_IGN);
  // A pty session holds four fds: use all the fds we are allowed (children get the
  // original soft limit back, see PrepareChild).
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    SetChildFileLimit(files.rlim_cur);
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
}

std::string Agent::Start(const AgentOptions& options) {
  options_ = options;
  PrepareAgentProcess();

  const std::string& path = options.bridge_dir;
  dir_.reset(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC));
  if (!dir_) return ErrnoText("cannot open the bridge folder " + path, errno);
  struct stat st;
  if (fstat(dir_.get(), &st) != 0) return ErrnoText("stat " + path, errno);
  allow_uid_ = options.allow_uid_set ? options.allow_uid : st.st_uid;
  // The same rule allgo-shell applies (bridge_folder.h): a folder the client would refuse is
  // not served either, so a wrong folder fails here, in the operator's log.
  if (std::string problem = BridgeFolderProblem(st, allow_uid_, path); !problem.empty()) return problem;

  // One agent per folder: a second one would steal the socket of the first. The lock file is
  // created fresh, or an existing one is opened only once seen to be a regular file: anything
  // else in its place (a symlink, a fifo, a device node) is removed, never opened.
  std::string lock_problem;
  for (int attempt = 0; attempt < 3 && !lock_; ++attempt) {
    lock_.reset(openat(dir_.get(), kLockName,
                       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600));
    if (lock_) break;
    if (errno != EEXIST) {
      lock_problem = ErrnoText("cannot create it", errno);
      break;
    }
    bool planted = false;
    lock_ = OpenChecked(
        dir_.get(), kLockName, O_RDWR | O_NONBLOCK,
        [&](const struct stat& found) {
          planted = !S_ISREG(found.st_mode);
          return planted ? std::string("it is ") + FileKind(found.st_mode) : std::string();
        },
        &lock_problem);
    if (!lock_ && !planted) break;
    if (planted) unlinkat(dir_.get(), kLockName, 0);
  }
  if (!lock_) return "cannot open " + path + "/" + kLockName + ": " + lock_problem;
  if (flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    return errno == EWOULDBLOCK ? "another allgo-sandbox-agent already serves " + path
                                : ErrnoText("flock " + path + "/" + kLockName, errno);
  }

  CleanStale();

  if (unlinkat(dir_.get(), kSocketName, 0) != 0 && errno != ENOENT) {
    return ErrnoText("cannot remove the old " + path + "/" + kSocketName, errno);
  }
  listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_) return ErrnoText("socket", errno);
  // Bind relative to the folder we opened (through /proc) so a long or changing path
  // cannot redirect the socket; fall back to the plain path without /proc.
  std::string via_proc = "/proc/self/fd/" + std::to_string(dir_.get()) + "/" + kSocketName;
  std::string direct = path + "/" + kSocketName;
  int bound = -1;
  for (const std::string& p : {via_proc, direct}) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (p.size() >= sizeof addr.sun_path) continue;
    memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    bound = bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (bound == 0) break;
  }
  if (bound != 0) return ErrnoText("cannot listen on " + direct, errno);
  if (geteuid() == 0 && allow_uid_ != 0 &&
      fchownat(dir_.get(), kSocketName, allow_uid_, static_cast<gid_t>(-1), AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoText("cannot give " + direct + " to uid " + std::to_string(allow_uid_), errno);
  }
  if (listen(listen_.get(), 128) != 0) return ErrnoText("listen", errno);

  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signals_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signals_) return ErrnoText("signalfd", errno);

  Log(LogLevel::kInfo, "listening on %s (allowed uid %u and root)", direct.c_str(), allow_uid_);
  return "";
}

void Agent::CleanStale() {
  int fd = openat(dir_.get(), ".", O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC);
  DIR* d = fd >= 0 ? fdopendir(fd) : nullptr;
  if (d == nullptr) {
    if (fd >= 0) close(fd);
    return;
  }
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    if (strncmp(e->d_name, "s-", 2) == 0) stale.emplace_back(e->d_name);
  }
  closedir(d);
  for (const std::string& name : stale) RemoveSessionEntry(dir_.get(), name);
  if (!stale.empty()) Log(LogLevel::kInfo, "removed %zu stale session folder(s)", stale.size());
}

int Agent::Run() {
  enum class Role { kSignal, kListen, kSock, kExecReport, kData };
  std::vector<pollfd> fds;
  std::vector<std::pair<Role, Conn*>> roles;
  while (!stopping_) {
    fds.clear();
    roles.clear();
    auto add = [&](int fd, short events, Role role, Conn* c) {
      if (fd < 0 || events == 0) return;
      fds.push_back(pollfd{fd, events, 0});
      roles.emplace_back(role, c);
    };
    add(signals_.get(), POLLIN, Role::kSignal, nullptr);
    if (NowMs() >= accept_paused_until_) add(listen_.get(), POLLIN, Role::kListen, nullptr);
    for (auto& [id, conn] : conns_) {
      Conn& c = *conn;
      add(c.sock.get(), static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), Role::kSock, &c);
      add(c.exec_report.get(), POLLIN, Role::kExecReport, &c);
      if (!c.pty_running()) continue;
      if (!c.in_eof && c.to_pty.size() < kPtyBuffer) add(c.fifo_in.get(), POLLIN, Role::kData, &c);
      short m = 0;
      if (!c.master_eof && c.from_pty.size() < kPtyBuffer) m |= POLLIN;
      if (!c.to_pty.empty()) m |= POLLOUT;
      add(c.master.get(), m, Role::kData, &c);
      if (!c.from_pty.empty() && !c.out_broken) add(c.fifo_out.get(), POLLOUT, Role::kData, &c);
    }
    int r = poll(fds.data(), fds.size(), NextTimeoutMs());
    if (r < 0 && errno != EINTR) {
      Log(LogLevel::kError, "poll: %s", strerror(errno));
      break;
    }
    for (size_t i = 0; r > 0 && i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto [role, c] = roles[i];
      switch (role) {
        case Role::kSignal: stopping_ = DrainSignals(); break;
        case Role::kListen: Accept(); break;
        case Role::kSock:
          if (c->dead) break;
          if (fds[i].revents & POLLOUT) OnWritable(*c);
          if (!c->dead && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) OnReadable(*c);
          break;
        case Role::kExecReport:
          if (!c->dead) OnExecReport(*c);
          break;
        case Role::kData: break;  // PumpPty below tries every direction
      }
    }
    for (auto& [id, conn] : conns_) {
      if (!conn->dead && conn->pty_running()) PumpPty(*conn);
    }
    CheckDeadlines();
    for (auto it = conns_.begin(); it != conns_.end();) {
      it = it->second->dead ? conns_.erase(it) : std::next(it);
    }
  }
  for (auto& [id, conn] : conns_) {
    if (!conn->dead) Hangup(*conn, "agent stopping");
  }
  conns_.clear();
  // Stream-mode children close their sockets and remove their listeners' files on SIGTERM;
  // they get a moment for it (when the agent is the sandbox's first process, its end is
  // the end of every process in the sandbox).
  for (const auto& [pid, id] : stream_children_) kill(pid, SIGTERM);
  const int64_t deadline = NowMs() + kStreamStopTimeoutMs;
  while (!stream_children_.empty() && NowMs() < deadline) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      OnChildExit(pid, status);
    } else {
      usleep(10 * 1000);
    }
  }
  unlinkat(dir_.get(), kSocketName, 0);
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

bool Agent::DrainSignals() {
  bool stop = false;
  signalfd_siginfo info;
  while (read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGCHLD) {
      ReapChildren();
    } else {
      Log(LogLevel::kInfo, "signal %u: stopping", info.ssi_signo);
      stop = true;
    }
  }
  return stop;
}

void Agent::ReapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    OnChildExit(pid, status);
  }
}

void Agent::Accept() {
  for (;;) {
    int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        Log(LogLevel::kWarn, "accept: %s; pausing new connections for 100 ms", strerror(errno));
        accept_paused_until_ = NowMs() + 100;
      }
      return;
    }
    UniqueFd sock(fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      Log(LogLevel::kWarn, "SO_PEERCRED: %s; connection dropped", strerror(errno));
      continue;
    }
    auto refuse = [&](const std::string& why) {
      std::string frame = EncodeFrame(Error{Printable(why)});
      ssize_t ignored = send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)ignored;
    };
    if (cred.uid != allow_uid_ && cred.uid != 0) {
      Log(LogLevel::kWarn, "refused connection from uid %u (pid %d): only uid %u may use this sandbox",
          cred.uid, cred.pid, allow_uid_);
      refuse("uid " + std::to_string(cred.uid) + " may not use this sandbox");
      continue;
    }
    if (conns_.size() + stream_children_.size() >= options_.max_sessions) {
      Log(LogLevel::kWarn, "refused connection from uid %u (pid %d): %zu sessions already",
          cred.uid, cred.pid, conns_.size() + stream_children_.size());
      refuse("too many sessions in this sandbox; try again later");
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id_++;
    c->sock = std::move(sock);
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->peer_pid = cred.pid;
    c->deadline = NowMs() + options_.handshake_timeout_ms;
    Log(LogLevel::kInfo, "connection %lu from uid %u (pid %d)", static_cast<unsigned long>(c->id),
        cred.uid, cred.pid);
    conns_.emplace(c->id, std::move(c));
  }
}

void Agent::OnReadable(Conn& c) {
  char buf[16 * 1024];
  size_t want = std::min(sizeof buf, c.reader.Room());
  ssize_t n = recv(c.sock.get(), buf, want, MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    Hangup(c, strerror(errno));
    return;
  }
  if (n == 0) {
    Hangup(c, c.state == Conn::State::kClosing ? "done" : "client went away");
    return;
  }
  c.reader.Append(std::string_view(buf, static_cast<size_t>(n)));
  if (c.state == Conn::State::kAwaitOpen && StartsStreamMode(c.reader)) return HandOffStreams(c);
  for (;;) {
    Message message;
    std::string error;
    auto result = c.reader.Next(&message, &error);
    if (result == FrameReader::Result::kNeedMore) return;
    if (result == FrameReader::Result::kError) {
      Fail(c, "protocol error: " + error);
      return;
    }
    Handle(c, message);
    if (c.dead) return;
  }
}

namespace {

// The forked child of a stream-mode connection: only the connection's socket (as fd 3) and
// stdio stay open (not the bridge folder's lock, the listening socket or other clients'
// connections), and it goes when the agent goes.
[[noreturn]] void ServeStreamsChild(int sock, std::string initial, uint64_t id, pid_t agent) {
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != agent) _exit(1);
  constexpr int kSock = 3;
  if (sock != kSock && dup2(sock, kSock) != kSock) _exit(1);
  if (close_range(kSock + 1, ~0U, 0) != 0) {
    for (int fd = kSock + 1; fd < 65536; ++fd) close(fd);
  }
  int status;
  {
    StreamServerOptions options;
    options.in = kSock;
    options.out = kSock;
    options.initial = std::move(initial);
    options.name = "connection " + std::to_string(id);
    status = StreamServer(std::move(options)).Run();
  }
  _exit(status);
}

}  // namespace

void Agent::HandOffStreams(Conn& c) {
  std::string initial(c.reader.Unread());
  const pid_t agent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Fail(c, ErrnoText("cannot start the stream mode: fork", errno));
  if (pid == 0) ServeStreamsChild(c.sock.get(), std::move(initial), c.id, agent);
  stream_children_.emplace(pid, c.id);
  Log(LogLevel::kInfo, "connection %lu: stream mode, served by pid %d", static_cast<unsigned long>(c.id), pid);
  c.sock.reset();
  c.dead = true;
}

void Agent::OnWritable(Conn& c) {
  while (!c.out.empty()) {
    ssize_t n = send(c.sock.get(), c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      Hangup(c, strerror(errno));
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.state == Conn::State::kClosing) {
    // Exit status delivered: half-close so the client sees the end, then wait for its close.
    shutdown(c.sock.get(), SHUT_WR);
  }
}

void Agent::Queue(Conn& c, const std::string& frame) {
  if (c.out.size() + frame.size() > kMaxPendingOutput) {
    Hangup(c, "client does not read its control messages");
    return;
  }
  c.out += frame;
  OnWritable(c);
}

void Agent::Handle(Conn& c, Message& message) {
  using State = Conn::State;
  if (auto* open = std::get_if<Open>(&message); open && c.state == State::kAwaitOpen) {
    c.request = std::move(*open);
    HandleOpen(c);
  } else if (std::holds_alternative<Attached>(message) && c.state == State::kAwaitAttach) {
    HandleAttached(c);
  } else if (auto* window = std::get_if<Window>(&message);
             window && (c.state == State::kStarting || c.state == State::kRunning)) {
    if (c.master) {
      struct winsize ws{};
      ws.ws_row = window->size.rows;
      ws.ws_col = window->size.cols;
      ws.ws_xpixel = window->size.xpixel;
      ws.ws_ypixel = window->size.ypixel;
      ioctl(c.master.get(), TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the foreground
    }
  } else if (auto* sig = std::get_if<Signal>(&message);
             sig && (c.state == State::kStarting || c.state == State::kRunning)) {
    if (c.pid > 0 && !c.exited) kill(-c.pid, sig->signo);
  } else if (c.state == State::kClosing) {
    // The process already ended; late window/signal messages are harmless.
  } else {
    Fail(c, "unexpected message at this point of the session");
  }
}

void Agent::HandleOpen(Conn& c) {
  const Open& req = c.request;
  Log(LogLevel::kInfo, "session %lu: uid %u asks for %s%s", static_cast<unsigned long>(c.id), c.uid,
      req.login_shell ? "a login shell" : ("a " + std::to_string(req.command.size()) + "-byte command").c_str(),
      req.pty ? " on a pty" : "");
  if (std::string missing = MissingTransferTool(req); !missing.empty()) return Fail(c, missing);
  std::string hex = RandomHex16();
  if (hex.empty()) return Fail(c, ErrnoText("getrandom", errno));
  std::string name = "s-" + hex;
  if (mkdirat(dir_.get(), name.c_str(), kSessionFolderMode) != 0) {
    return Fail(c, ErrnoText("cannot create the session folder", errno));
  }
  c.session = name;
  c.session_dir.reset(openat(dir_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
  if (!c.session_dir) return Fail(c, ErrnoText("cannot open the session folder", errno));
  int sd = c.session_dir.get();

  // Hand a file to the client's uid. A non-root agent cannot chown to root, but root does
  // not need it.
  auto give = [&](const char* file) {
    int r = file ? fchownat(sd, file, c.uid, c.gid, AT_SYMLINK_NOFOLLOW) : fchown(sd, c.uid, c.gid);
    return r == 0 || c.uid == 0 || c.uid == geteuid();
  };
  struct Fifo {
    const char* name;
    ino_t* ino;
  };
  std::vector<Fifo> fifos = {{"in", &c.ino_in}, {"out", &c.ino_out}};
  if (!req.pty) fifos.push_back({"err", &c.ino_err});
  for (const Fifo& f : fifos) {
    struct stat st;
    if (mkfifoat(sd, f.name, kSessionPipeMode) != 0 || fstatat(sd, f.name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(c, ErrnoText(std::string("cannot create the pipe ") + f.name, errno));
    }
    *f.ino = st.st_ino;
    if (!give(f.name)) return Fail(c, ErrnoText("cannot give the session pipes to uid " + std::to_string(c.uid), errno));
  }
  // Our reader on `in` exists before the client opens its writer, so that open never blocks.
  c.fifo_in.reset(openat(sd, "in", O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
  if (!c.fifo_in) return Fail(c, ErrnoText("cannot open the input pipe", errno));
  // Last: until now the folder was root's (or ours) and 0700, so nobody could touch it.
  if (!give(nullptr)) return Fail(c, ErrnoText("cannot give the session folder to uid " + std::to_string(c.uid), errno));

  c.state = Conn::State::kAwaitAttach;
  c.deadline = NowMs() + options_.handshake_timeout_ms;
  Queue(c, EncodeFrame(Opened{kProtocolVersion, name}));
}

void Agent::HandleAttached(Conn& c) {
  int sd = c.session_dir.get();
  // The folder belongs to the client now: each name is opened only once seen to be the very
  // fifo we created (never followed, never a device node or anything else put in its place).
  auto open_out = [&](const char* name, ino_t ino, UniqueFd* fd) {
    std::string problem;
    *fd = OpenChecked(
        sd, name, O_WRONLY | O_NONBLOCK,
        [&](const struct stat& st) {
          return S_ISFIFO(st.st_mode) && st.st_ino == ino ? std::string() : std::string("replaced");
        },
        &problem);
    return fd->valid();
  };
  struct stat st;
  bool ok = fstat(c.fifo_in.get(), &st) == 0 && st.st_ino == c.ino_in &&
            open_out("out", c.ino_out, &c.fifo_out) &&
            (c.request.pty || open_out("err", c.ino_err, &c.fifo_err));
  if (!ok) {
    return Fail(c, errno == ENXIO ? "the client did not open its end of the output pipes"
                                  : "the session pipes were tampered with");
  }
  // Both sides hold their ends: the names are no longer needed.
  RemoveSessionDir(c);
  // Bigger pipes mean fewer wake-ups per byte on the data path (the default is 64 KiB).
  // Best effort: the kernel caps it (fs.pipe-max-size) or refuses past a user's quota.
  for (UniqueFd* fd : {&c.fifo_in, &c.fifo_out}) fcntl(fd->get(), F_SETPIPE_SZ, kDataPipeSize);

  std::string error;
  Spawned spawned;
  if (c.request.pty) {
    int master = -1;
    spawned = SpawnOnPty(c.request, &master, &error);
    c.master.reset(master);
  } else {
    for (UniqueFd* fd : {&c.fifo_in, &c.fifo_out, &c.fifo_err}) SetNonBlocking(fd->get(), false);
    spawned = SpawnCommand(c.request, c.fifo_in.get(), c.fifo_out.get(), c.fifo_err.get(), &error);
    // The process holds the pipes now; ours would keep them open after it exits.
    c.fifo_in.reset();
    c.fifo_out.reset();
    c.fifo_err.reset();
  }
  if (spawned.pid < 0) return Fail(c, error);
  c.pid = spawned.pid;
  c.exec_report.reset(spawned.report);
  c.program = spawned.program;
  c.state = Conn::State::kStarting;
  c.deadline = -1;
  c.started_ms = NowMs();
}

void Agent::OnExecReport(Conn& c) {
  Spawned spawned;
  spawned.pid = c.pid;
  spawned.report = c.exec_report.get();
  spawned.program = c.program;
  std::string error = ExecReport(spawned);
  c.exec_report.reset();
  if (!error.empty()) return Fail(c, error);
  c.state = Conn::State::kRunning;
  Log(LogLevel::kInfo, "session %lu: started pid %d", static_cast<unsigned long>(c.id), c.pid);
  Queue(c, EncodeFrame(Started{static_cast<uint32_t>(c.pid)}));
  // A quick process may have ended before its exec was confirmed.
  if (!c.dead && c.exited) OnExited(c);
}

void Agent::OnChildExit(pid_t pid, int status) {
  if (auto it = stream_children_.find(pid); it != stream_children_.end()) {
    Log(LogLevel::kInfo, "connection %lu: stream mode ended (%s %d)", static_cast<unsigned long>(it->second),
        WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    stream_children_.erase(it);
    return;
  }
  Conn* c = nullptr;
  for (auto& [id, conn] : conns_) {
    if (conn->pid == pid && !conn->dead && !conn->exited) c = conn.get();
  }
  if (c == nullptr) {
    Log(LogLevel::kDebug, "reaped pid %d", pid);
    return;
  }
  c->exited = true;
  if (WIFSIGNALED(status)) {
    c->exit = Exit{true, static_cast<uint8_t>(WTERMSIG(status)), WCOREDUMP(status) != 0};
  } else {
    c->exit = Exit{false, static_cast<uint8_t>(WEXITSTATUS(status)), false};
  }
  Log(LogLevel::kInfo, "session %lu: pid %d ended with %s %d after %lld ms",
      static_cast<unsigned long>(c->id), pid, c->exit.signaled ? "signal" : "status", c->exit.code,
      static_cast<long long>(NowMs() - c->started_ms));
  // Before the exec is confirmed, the client has not been told it started: OnExecReport
  // picks the exit up.
  if (c->state == Conn::State::kStarting) return;
  OnExited(*c);
}

void Agent::OnExited(Conn& c) {
  if (c.master) {
    // Deliver what the shell printed before it exited, then the status (FinishPty).
    c.deadline = NowMs() + kPtyDrainTimeoutMs;
    PumpPty(c);
    return;
  }
  c.state = Conn::State::kClosing;
  c.deadline = NowMs() + kClosingTimeoutMs;
  Queue(c, EncodeFrame(c.exit));
}

void Agent::PumpPty(Conn& c) {
  char buf[kPtyBuffer];
  // client → terminal
  while (!c.in_eof && c.to_pty.size() < kPtyBuffer) {
    ssize_t n = read(c.fifo_in.get(), buf, kPtyBuffer - c.to_pty.size());
    if (n > 0) {
      c.to_pty.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      break;
    } else {
      c.in_eof = true;  // the client closed its stdin (or the pipe broke)
      c.fifo_in.reset();
    }
  }
  if (!c.to_pty.empty()) {
    ssize_t n = write(c.master.get(), c.to_pty.data(), c.to_pty.size());
    if (n > 0) {
      c.to_pty.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      c.to_pty.clear();
    }
  }
  // terminal → client
  while (!c.master_eof && c.from_pty.size() < kPtyBuffer) {
    ssize_t n = read(c.master.get(), buf, kPtyBuffer - c.from_pty.size());
    if (n > 0) {
      c.from_pty.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      break;
    } else {
      c.master_eof = true;  // EIO: every slave fd closed and the output drained
    }
  }
  while (!c.from_pty.empty() && !c.out_broken) {
    ssize_t n = write(c.fifo_out.get(), c.from_pty.data(), c.from_pty.size());
    if (n > 0) {
      c.from_pty.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      break;
    } else {
      c.out_broken = true;  // the client stopped reading its output; drop it
    }
  }
  if (c.out_broken) c.from_pty.clear();
  if (c.exited && c.master_eof && c.from_pty.empty()) FinishPty(c);
}

void Agent::FinishPty(Conn& c) {
  c.fifo_out.reset();  // EOF on the client's stdout
  c.fifo_in.reset();
  c.master.reset();    // hangs up whatever still holds the terminal
  c.state = Conn::State::kClosing;
  c.deadline = NowMs() + kClosingTimeoutMs;
  Queue(c, EncodeFrame(c.exit));
}

void Agent::Fail(Conn& c, const std::string& why) {
  Log(LogLevel::kWarn, "session %lu (uid %u, pid %d): %s", static_cast<unsigned long>(c.id), c.uid,
      c.peer_pid, why.c_str());
  std::string frame = EncodeFrame(Error{Printable(why)});
  ssize_t ignored = send(c.sock.get(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
  Hangup(c, "failed");
}

void Agent::Hangup(Conn& c, const char* why) {
  if (c.dead) return;
  c.dead = true;
  if (c.pid > 0 && !c.exited) {
    // What a terminal hang-up does: SIGHUP (and SIGCONT, for stopped jobs) to the session.
    kill(-c.pid, SIGHUP);
    kill(-c.pid, SIGCONT);
  }
  c.master.reset();
  RemoveSessionDir(c);
  Log(LogLevel::kInfo, "connection %lu closed: %s", static_cast<unsigned long>(c.id), why);
}

void Agent::RemoveSessionDir(Conn& c) {
  if (c.session.empty()) return;
  RemoveSessionEntry(dir_.get(), c.session);
  c.session.clear();
  c.session_dir.reset();
}

int Agent::NextTimeoutMs() const {
  int64_t next = -1;
  for (const auto& [id, conn] : conns_) {
    if (conn->deadline >= 0 && (next < 0 || conn->deadline < next)) next = conn->deadline;
  }
  if (accept_paused_until_ > 0 && (next < 0 || accept_paused_until_ < next)) next = accept_paused_until_;
  if (next < 0) return -1;
  int64_t left = next - NowMs();
  return left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 60000));
}

void Agent::CheckDeadlines() {
  int64_t now = NowMs();
  if (accept_paused_until_ > 0 && now >= accept_paused_until_) accept_paused_until_ = 0;
  for (auto& [id, conn] : conns_) {
    Conn& c = *conn;
    if (c.dead || c.deadline < 0 || now < c.deadline) continue;
    switch (c.state) {
      case Conn::State::kAwaitOpen:
      case Conn::State::kAwaitAttach:
        Fail(c, "handshake timed out");
        break;
      case Conn::State::kStarting:  // no deadline: a slow exec is nobody's fault
        break;
      case Conn::State::kRunning:  // PTY output drain after exit took too long
        c.master_eof = true;
        c.from_pty.clear();
        FinishPty(c);
        break;
      case Conn::State::kClosing:
        Hangup(c, "client did not close after the exit status");
        break;
    }
  }
}

}  // namespace allgo::bridge
