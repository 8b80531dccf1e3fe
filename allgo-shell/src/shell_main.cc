// allgo-shell: the login shell of every webapp user. Runs a command, or an interactive
// shell, inside the webapp's sandbox through its allgo-sandbox-agent (docs/bridge.md).
//
// Output rule: for `-c` commands nothing of ours ever goes to stdout (scp, sftp and rsync
// would break on one stray byte); every message of ours is one "allgo: ..." line on stderr.
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cstdlib>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "allgo/config.h"
#include "allgo/identity.h"
#include "allgo/memory.h"
#include "allgo/unique_fd.h"
#include "allgo/names.h"
#include "allgo/bridge/io.h"
#include "agent_client.h"
#include "gateway_client.h"
#include "request.h"
#include "sandbox_connect.h"
#include "streams_carrier.h"
#include "session_common.h"
#include "stdio_client.h"
#include "terminal.h"

extern char** environ;

namespace allgo::bridge {
namespace {

struct Invocation {
  std::string config_path;
  bool has_command = false;
  std::string command;
  bool streams = false;  // --streams: the carrier of allgo-sshd (streams_carrier.h)
};

// Login shells are run as `shell -c CMD` by sshd, with CMD possibly starting with '-':
// that form is taken literally; anything else goes through CLI11 (--help, --version,
// --config).
int ParseArgs(int argc, char** argv, Invocation* inv) {
  if (argc >= 2 && strcmp(argv[1], "-c") == 0) {
    if (argc < 3) {
      Say("-c needs a command");
      return kExitUsage;
    }
    inv->has_command = true;
    inv->command = argv[2];
    return -1;
  }
  if (argc == 1) return -1;
  CLI::App app{
      "allgo-shell: the login shell of allgo webapps. Without arguments, an interactive shell "
      "in the webapp's sandbox; with -c CMD, CMD run there by /bin/sh -c."};
  app.set_version_flag("--version", std::string("allgo-shell ") + ALLGO_VERSION);
  app.add_option("-c", inv->command, "command to run in the sandbox");
  app.add_option("--config", inv->config_path, "config file (default: $ALLGO_SSH_CONFIG or " +
                                                   std::string(DefaultConfigPath()) + ")");
  bool login = false;
  app.add_flag("-l,--login", login, "accepted for compatibility (allgo-shell always acts as a login shell)");
  app.add_flag("--streams", inv->streams,
               "internal, started by allgo-sshd: connect to this webapp's sandbox (as a session does) and hand "
               "the connection to allgo-sshd over stdout, a unix socket, to carry the SSH connection's forwards");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int status = app.exit(e);
    std::cout.flush();  // main() leaves through _exit, which does not flush
    return status;
  }
  inv->has_command = app.count("-c") > 0;
  return -1;
}

// Once our client is gone (SIGHUP or SIGTERM, or the reader of our stdout closed it: all that
// is left of an SSH connection that dropped), the sandbox's command has kHangupGraceMs to end by
// itself before allgo-shell leaves without its exit status. The frontend keeps nothing for a
// client that is gone; the agent hangs the command up when our socket closes, and a command
// that ignores SIGHUP (nohup) keeps running in the sandbox, as it would on any host.
// Why the client is considered gone, for the one line we leave.
std::string GoneReason(int signo) {
  if (signo == SIGHUP) return "hung up";
  if (signo == SIGTERM) return "terminated";
  return "the reader of our output went away";
}

// Relays the session: data through three threads (one per stream, blocking splice loops),
// control (signals, window size, exit status, a client that went away) on this thread.
int RunSession(AgentConnection& conn, SessionPipes& pipes, bool pty, int signals,
               const std::string& name) {
  RawTerminal terminal;
  if (pty) terminal.Enter(0);
  // Each output thread adds 1 when its stream reached EOF. Never closed: a thread abandoned
  // on an early return may still write to it until _exit.
  const int drained = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (drained < 0) {
    Say(ErrnoText("eventfd", errno));
    return kExitSetup;  // our socket closes: the agent hangs the command up
  }

  // stdin → process. EOF on our stdin closes the pipe, which is EOF for the process.
  std::thread in_thread([fd = pipes.in.release()] {
    Pump(0, fd);
    close(fd);
  });
  in_thread.detach();  // it may sit in read(0) forever; the process exit ends it
  // process → stdout/stderr. If our reader goes away (EPIPE), closing the pipe makes the
  // process's next write fail with SIGPIPE, exactly as a local pipe would.
  auto drain = [drained](int from, int to) {
    Pump(from, to);
    close(from);
    uint64_t one = 1;
    ssize_t ignored = write(drained, &one, sizeof one);
    (void)ignored;
  };
  const uint64_t outputs = pipes.err ? 2 : 1;
  std::thread out_thread(drain, pipes.out.release(), 1);
  std::thread err_thread;
  if (pipes.err) err_thread = std::thread(drain, pipes.err.release(), 2);
  // On the early (lost agent, client gone) returns the output threads are abandoned, not joined.
  struct DetachOnReturn {
    std::thread* threads[2];
    ~DetachOnReturn() {
      for (std::thread* t : threads) {
        if (t->joinable()) t->detach();
      }
    }
  } detach_on_return{{&out_thread, &err_thread}};

  auto lost = [&](const std::string& why) {
    terminal.Restore();
    Say("lost the connection to the sandbox of '" + name + "' (" + why +
        "); the sandbox agent stopped, so the command's outcome is unknown");
    return kExitLostAgent;
  };
  Exit exit;
  bool have_exit = false;
  uint64_t finished_outputs = 0;
  int64_t leave_at = -1;  // set once the client is gone
  int gone_signo = 0;     // what told us (0: our stdout's reader went away)
  auto client_gone = [&](int signo) {
    if (leave_at >= 0) return;
    leave_at = NowMs() + kHangupGraceMs;
    gone_signo = signo;
  };
  // Our stdout is watched for its reader going away (POLLERR on a pipe, POLLHUP on a socket
  // or a hung-up terminal); nothing is asked of it, so a file or /dev/null never wakes us.
  bool watch_stdout = true;
  int sock = conn.sock.get();
  // Like sshd: the session ends when the process exited and its output reached EOF.
  while (!have_exit || finished_outputs < outputs) {
    // Messages first: the handshake may already have buffered the exit status.
    if (!have_exit) {
      Message m;
      std::string error;
      auto r = conn.reader.Next(&m, &error);
      if (r == FrameReader::Result::kError) return lost("protocol error: " + error);
      if (r == FrameReader::Result::kMessage) {
        if (auto* e = std::get_if<Exit>(&m)) {
          exit = *e;
          have_exit = true;
        } else if (auto* failure = std::get_if<Error>(&m)) {
          return lost("agent error: " + failure->text);
        }
        continue;
      }
    }
    int timeout = -1;
    if (leave_at >= 0) {
      int64_t left = leave_at - NowMs();
      if (left <= 0) break;
      timeout = static_cast<int>(left);
    }
    pollfd pfds[4] = {{have_exit ? -1 : sock, POLLIN, 0},
                      {signals, POLLIN, 0},
                      {drained, POLLIN, 0},
                      {watch_stdout ? 1 : -1, 0, 0}};
    if (poll(pfds, 4, timeout) < 0) {
      if (errno == EINTR) continue;
      return lost(ErrnoText("poll", errno));
    }
    if (pfds[3].revents != 0) {
      watch_stdout = false;
      if (pfds[3].revents & (POLLERR | POLLHUP)) client_gone(0);
    }
    if (pfds[2].revents & POLLIN) {
      uint64_t count = 0;
      if (read(drained, &count, sizeof count) == static_cast<ssize_t>(sizeof count)) finished_outputs += count;
    }
    if (pfds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        int signo = static_cast<int>(info.ssi_signo);
        if (signo == SIGHUP || signo == SIGTERM) client_gone(signo);
        if (have_exit) continue;  // nothing left to relay to
        Message relay;
        if (signo == SIGWINCH) {
          struct winsize ws{};
          if (!pty || ioctl(0, TIOCGWINSZ, &ws) != 0) continue;
          relay = Window{{ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel}};
          if (!Validate(relay).empty()) continue;
        } else {
          relay = Signal{static_cast<uint8_t>(signo)};
        }
        SendMessage(sock, relay);  // a failure shows up as EOF on the socket
      }
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      ssize_t n = recv(sock, buf, std::min(sizeof buf, conn.reader.Room()), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return lost(n == 0 ? "the agent closed the connection" : strerror(errno));
      conn.reader.Append(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  if (have_exit && finished_outputs >= outputs) {
    out_thread.join();
    if (err_thread.joinable()) err_thread.join();
    return exit.ShellStatus();
  }
  // The client is gone and the grace period is over. Leaving closes our socket: the agent
  // hangs the command up (SIGHUP, SIGCONT) and forgets the session.
  if (have_exit) return exit.ShellStatus();  // only a background process still held its output
  terminal.Restore();
  Say(GoneReason(gone_signo) + ": leaving the session in the sandbox of '" + name + "'; its command did not end within " +
      std::to_string(kHangupGraceMs / 1000) + " s and is hung up now (if it ignores SIGHUP, it keeps running there)");
  return 128 + (gone_signo != 0 ? gone_signo : SIGHUP);
}

// [sandbox] backend = docker: the session runs over allgo-sandbox-gateway's socket in the
// stdio mode; the gateway finds the container from our uid and refuses with one `error`
// frame (printed as one line) when it cannot.
int RunThroughGateway(const Config& config, const Invocation& inv, int signals, const std::string& name) {
  UniqueFd gateway;
  if (Status s = ConnectGateway(config, &gateway); !s.ok()) {
    Say(s.message());
    return kExitSetup;
  }
  bool pty = isatty(0) == 1;
  Open request = BuildRequest(!inv.has_command, inv.command, pty);
  request.version = kStdioProtocolVersion;
  if (std::string invalid = Validate(Message(request), Mode::kStdio); !invalid.empty()) {
    Say("cannot send this request: " + invalid);
    return kExitUsage;
  }
  return RunStdioSession(gateway.get(), request, signals, name);
}

// Runs fn to its end on a thread of its own, whose stack we map and unmap: glibc would keep a
// stack it mapped itself in its cache after the thread ended, with every page fn touched, and
// hand it to the next thread (a pump thread, for the session's life). What fn allocated and
// freed goes back to the heap with the thread's malloc cache. Without a thread (no memory for
// its stack), fn runs here.
void RunOnScratchThread(const std::function<void()>& fn) {
  constexpr size_t kStack = 8 << 20;  // reserved only: the pages fn touches are what it costs
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
  if (stack == MAP_FAILED) {
    fn();
    return;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bool ran = false;
  pthread_attr_t attr;
  // The lowest page is the guard: an overflow faults instead of writing below the stack.
  if (mprotect(stack, page, PROT_NONE) == 0 && pthread_attr_init(&attr) == 0) {
    pthread_t thread;
    if (pthread_attr_setstack(&attr, static_cast<char*>(stack) + page, kStack - page) == 0 &&
        pthread_create(
            &thread, &attr,
            [](void* arg) -> void* {
              (*static_cast<const std::function<void()>*>(arg))();
              return nullptr;
            },
            const_cast<std::function<void()>*>(&fn)) == 0) {
      pthread_join(thread, nullptr);  // the stack is ours again only once the thread is joined
      ran = true;
    }
    pthread_attr_destroy(&attr);
  }
  munmap(stack, kStack);
  if (!ran) fn();
}

// What the session needs once it runs.
struct ReadySession {
  AgentConnection conn;
  SessionPipes pipes;
  std::string name;
  bool pty = false;
};

// Connects to the webapp's sandbox agent and opens the session: -1 with *ready filled, or the
// exit status. With [sandbox] backend = docker, -1 with *docker holding the config instead.
int PrepareSession(const Invocation& inv, int signals, ReadySession* ready, std::optional<Config>* docker) {
  Config config;
  std::string config_path = ResolveConfigPath(inv.config_path);
  // The database is only a fallback here (the sandbox state when the agent does not answer):
  // a password_file only root may read leaves sessions working (docs/configuration.md).
  if (Status s = LoadConfig(config_path, &config, PasswordFile::kIfReadable); !s.ok()) {
    Say(s.ToString());
    return kExitSetup;
  }
  if (Status s = ResolveWebapp(config, &ready->name); !s.ok()) {
    Say(s.message());
    return kExitSetup;
  }
  if (config.sandbox.backend == SandboxBackend::kDocker) {
    docker->emplace(std::move(config));
    return -1;
  }
  int signo = 0;
  if (Status s = ConnectSandboxAgent(config, ready->name, signals, &ready->conn, &signo); !s.ok()) {
    if (signo != 0) return 128 + signo;
    Say(s.message());
    return kExitSetup;
  }
  Open request = BuildRequest(!inv.has_command, inv.command, ready->pty);
  if (std::string invalid = Validate(Message(request)); !invalid.empty()) {
    Say("cannot send this request: " + invalid);
    return kExitUsage;
  }
  if (Status s = OpenSession(&ready->conn, request, &ready->pipes); !s.ok()) {
    Say(s.message());
    return kExitSetup;
  }
  return -1;
}

int Main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // One malloc arena: the pump threads barely allocate, and an arena of their own each would
  // keep touched pages resident for the whole session (8 KiB each, in every idle session).
  mallopt(M_ARENA_MAX, 1);
  Invocation inv;
  if (int r = ParseArgs(argc, argv, &inv); r >= 0) return r;

  // Block the signals we relay before any thread exists; they are read from a signalfd.
  sigset_t relayed;
  sigemptyset(&relayed);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH}) sigaddset(&relayed, sig);
  sigprocmask(SIG_BLOCK, &relayed, nullptr);
  UniqueFd signals(signalfd(-1, &relayed, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) {
    Say(ErrnoText("signalfd", errno));
    return kExitSetup;
  }

  if (inv.streams) {
    if (inv.has_command) {
      Say("--streams takes no command");
      return kExitUsage;
    }
    return RunStreamsCarrier(inv.config_path, signals.get());
  }

  // The setup (the config, the lookups, their temporaries) runs on a thread of its own and is
  // gone before the session runs: with it go its stack and its malloc cache (glibc keeps up to
  // 7 freed chunks of each small size per thread, which would pin the pages they sit in), and
  // ReleaseDeadMemory then hands the setup's pages back, so an idle session keeps only what
  // the relay needs (issue 20: PSS per idle session).
  ReadySession ready;
  ready.pty = isatty(0) == 1;
  int status = -1;
  std::optional<Config> docker;
  RunOnScratchThread([&] { status = PrepareSession(inv, signals.get(), &ready, &docker); });
  if (docker) return RunThroughGateway(*docker, inv, signals.get(), ready.name);
  if (status >= 0) return status;
  ReleaseDeadMemory();
  return RunSession(ready.conn, ready.pipes, ready.pty, signals.get(), ready.name);
}

}  // namespace
}  // namespace allgo::bridge

int main(int argc, char** argv) {
  int status = allgo::bridge::Main(argc, argv);
  // _exit: a thread may still be blocked reading our stdin; nothing is buffered in stdio.
  _exit(status);
}
