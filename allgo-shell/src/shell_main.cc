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
#include <sys/ioctl.h>
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
#include <string>
#include <thread>

#include "allgo/config.h"
#include "allgo/identity.h"
#include "allgo/unique_fd.h"
#include "allgo/names.h"
#include "allgo/bridge/io.h"
#include "agent_client.h"
#include "gateway_client.h"
#include "request.h"
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

// The sandbox state from the database: "" with *error set when it cannot be read. Asked of
// allgo-shell-state (next to this program; state_main.cc), so that the database client and
// the TLS libraries it loads stay out of every idle login shell.
std::string QueryState(const Config& config, std::string* error) {
  if (!config.mysql.password_error.empty()) {  // a root-only password_file: no database here
    *error = "the database is not readable from this session: " + config.mysql.password_error;
    return "";
  }
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) {
    *error = ErrnoText("readlink /proc/self/exe", errno);
    return "";
  }
  std::string helper(self, static_cast<size_t>(len));
  helper = helper.substr(0, helper.rfind('/') + 1) + "allgo-shell-state";
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    *error = ErrnoText("pipe2", errno);
    return "";
  }
  UniqueFd read_end(out[0]), write_end(out[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;  // our relayed signals are blocked and SIGPIPE ignored: not the helper's
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string config_arg = config.path;
  char* argv[] = {helper.data(), const_cast<char*>("--config"), config_arg.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, helper.c_str(), &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  write_end.reset();
  if (rc != 0) {
    *error = ErrnoText("cannot run " + helper, rc);
    return "";
  }
  std::string text;
  char buf[512];
  ssize_t n;
  while (text.size() < 4096 && ((n = read(read_end.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  }
  read_end.reset();
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !text.empty()) return text;
  *error = text.empty() ? helper + " failed (wait status " + std::to_string(status) + ")" : text;
  return "";
}

// Waits for the agent of a sandbox in state `starting`, telling the user once.
// Returns true when connected; false on timeout, a state change, or a fatal signal (*signo).
// *connected tells what the last attempt found.
bool WaitForStart(const std::string& bridge_dir, const std::string& name, const Config& config,
                  int signals, AgentConnection* conn, std::string* state, int* signo,
                  Status* connected) {
  Say("the sandbox of '" + name + "' is starting; waiting up to " +
      std::to_string(config.sandbox.start_wait) + " s for it");
  int64_t deadline = NowMs() + int64_t{config.sandbox.start_wait} * 1000;
  int64_t next_state_check = NowMs() + 2000;
  while (NowMs() < deadline) {
    pollfd pfd{signals, POLLIN, 0};
    if (poll(&pfd, 1, 200) > 0) {
      signalfd_siginfo info;
      if (read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info) &&
          info.ssi_signo != SIGWINCH) {
        *signo = static_cast<int>(info.ssi_signo);
        return false;
      }
    }
    *conn = AgentConnection{};
    *connected = ConnectAgent(bridge_dir, conn);
    if (connected->ok()) return true;
    if (!connected->IsUnavailable()) return false;
    if (NowMs() >= next_state_check) {
      std::string error;
      std::string now = QueryState(config, &error);
      if (!now.empty()) *state = now;
      if (*state != "starting" && *state != "running") return false;
      next_state_check = NowMs() + 2000;
    }
  }
  return false;
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

// The webapp name without a database round trip (a login costs ~5 ms less): the login name
// sshd put in $USER is taken when <sandbox dir>/<name> is a real folder owned by our uid.
// Only the allgo controller (root) can create folders in the sandbox dir, so the ownership
// proves the name; and an agent only ever serves its own uid anyway. Otherwise: getpwuid.
std::string NameFromBridgeFolder(const Config& config) {
  const char* hint = std::getenv("USER");
  if (hint == nullptr || !IsValidUserName(hint)) return "";
  struct stat st;
  std::string folder = config.sandbox.dir + "/" + hint;
  if (fstatat(AT_FDCWD, folder.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return "";
  if (!S_ISDIR(st.st_mode) || st.st_uid != getuid()) return "";
  return hint;
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

  Config config;
  std::string config_path = ResolveConfigPath(inv.config_path);
  // The database is only a fallback here (the sandbox state when the agent does not answer):
  // a password_file only root may read leaves sessions working (docs/configuration.md).
  if (Status s = LoadConfig(config_path, &config, PasswordFile::kIfReadable); !s.ok()) {
    Say(s.ToString());
    return kExitSetup;
  }
  // A webapp is only ever its own uid (DESIGN.md): whatever passwd entry led here, a login
  // shell of root or of a uid outside the webapp range is a misconfiguration, never a session.
  if (geteuid() == 0 || !IsWebappUid(config.nss, getuid())) {
    Say("refusing to run as uid " + std::to_string(getuid()) + ": allgo-shell serves only webapp uids " +
        WebappUidRange(config.nss) + " (" + config_path + ")");
    return kExitSetup;
  }
  const bool docker = config.sandbox.backend == SandboxBackend::kDocker;
  // With the docker backend there is no bridge folder to prove $USER: getpwuid names us.
  std::string name = docker ? "" : NameFromBridgeFolder(config);
  if (name.empty()) {
    errno = 0;
    struct passwd* pw = getpwuid(getuid());
    const char* handed = std::getenv(kWebappNameVariable);
    if (pw != nullptr) {
      name = pw->pw_name;
    } else if (handed != nullptr && IsValidUserName(handed)) {
      name = handed;  // allgo-sshd built the session from the webapp row
    } else if (!config.mysql.password_error.empty()) {
      // Stock OpenSSH: no server hands the name over, and the NSS module needs the password.
      Say("uid " + std::to_string(getuid()) + " has no user name: " + config.mysql.password_error +
          ", so the allgo NSS module cannot read the database for this session (under stock OpenSSH the "
          "sessions need that file: docs/configuration.md; allgo-sshd hands the name over)");
      return kExitSetup;
    } else {
      Say("uid " + std::to_string(getuid()) +
          " has no user name (is the allgo NSS module listed in /etc/nsswitch.conf?)");
      return kExitSetup;
    }
  }
  if (!IsValidUserName(name)) {
    Say("user name '" + SanitizeForLog(name) + "' is not a webapp name");
    return kExitSetup;
  }
  if (docker) return RunThroughGateway(config, inv, signals.get(), name);
  std::string bridge_dir = config.sandbox.dir + "/" + name;

  // The socket is the truth: the database is only asked when the agent does not answer.
  AgentConnection conn;
  Status connected = ConnectAgent(bridge_dir, &conn);
  if (connected.IsInvalid()) {  // unsafe folder or socket: say why, never retry
    Say(connected.message());
    return kExitSetup;
  }
  if (!connected.ok()) {
    std::string db_error;
    std::string state = QueryState(config, &db_error);
    int signo = 0;
    if (state == "starting") {
      WaitForStart(bridge_dir, name, config, signals.get(), &conn, &state, &signo, &connected);
      if (signo != 0) return 128 + signo;
      if (connected.IsInvalid()) {
        Say(connected.message());
        return kExitSetup;
      }
    }
    if (!connected.ok()) {
      if (state.empty()) state = "unknown: " + db_error;
      if (state == "running") {
        Say("the sandbox of '" + name + "' does not answer (state: running; " + connected.message() +
            "); restart it from the allgo web interface");
      } else {
        Say("the sandbox of '" + name + "' is not running (state: " + state +
            "); start it from the allgo web interface");
      }
      return kExitSetup;
    }
  }

  bool pty = isatty(0) == 1;
  Open request = BuildRequest(!inv.has_command, inv.command, pty);
  if (std::string invalid = Validate(Message(request)); !invalid.empty()) {
    Say("cannot send this request: " + invalid);
    return kExitUsage;
  }
  SessionPipes pipes;
  if (Status s = OpenSession(&conn, request, &pipes); !s.ok()) {
    Say(s.message());
    return kExitSetup;
  }
  return RunSession(conn, pipes, pty, signals.get(), name);
}

}  // namespace
}  // namespace allgo::bridge

int main(int argc, char** argv) {
  int status = allgo::bridge::Main(argc, argv);
  // _exit: a thread may still be blocked reading our stdin; nothing is buffered in stdio.
  _exit(status);
}
