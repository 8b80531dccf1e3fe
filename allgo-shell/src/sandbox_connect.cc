#include "sandbox_connect.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "allgo/bridge/io.h"
#include "allgo/identity.h"
#include "allgo/names.h"
#include "allgo/unique_fd.h"
#include "session_common.h"

extern char** environ;

namespace allgo::bridge {
namespace {

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

}  // namespace

Status ResolveWebapp(const Config& config, std::string* out) {
  // A webapp is only ever its own uid (DESIGN.md): whatever passwd entry led here, a login
  // shell of root or of a uid outside the webapp range is a misconfiguration, never a session.
  if (geteuid() == 0 || !IsWebappUid(config.nss, getuid())) {
    return Status::Permission("refusing to run as uid " + std::to_string(getuid()) +
                              ": allgo-shell serves only webapp uids " + WebappUidRange(config.nss) + " (" +
                              config.path + ")");
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
      return Status::NotFound("uid " + std::to_string(getuid()) + " has no user name: " +
                              config.mysql.password_error +
                              ", so the allgo NSS module cannot read the database for this session (under stock "
                              "OpenSSH the sessions need that file: docs/configuration.md; allgo-sshd hands the "
                              "name over)");
    } else {
      return Status::NotFound("uid " + std::to_string(getuid()) +
                              " has no user name (is the allgo NSS module listed in /etc/nsswitch.conf?)");
    }
  }
  if (!IsValidUserName(name)) return Status::Invalid("user name '" + SanitizeForLog(name) + "' is not a webapp name");
  *out = std::move(name);
  return Status::Ok();
}

Status ConnectSandboxAgent(const Config& config, const std::string& name, int signals, AgentConnection* conn,
                           int* signo) {
  std::string bridge_dir = config.sandbox.dir + "/" + name;
  // The socket is the truth: the database is only asked when the agent does not answer.
  Status connected = ConnectAgent(bridge_dir, conn);
  if (connected.ok() || connected.IsInvalid()) return connected;  // Invalid: unsafe folder or socket, never retried
  std::string db_error;
  std::string state = QueryState(config, &db_error);
  if (state == "starting") {
    WaitForStart(bridge_dir, name, config, signals, conn, &state, signo, &connected);
    if (*signo != 0) return Status::Unavailable("interrupted by signal " + std::to_string(*signo));
    if (connected.ok() || connected.IsInvalid()) return connected;
  }
  if (state.empty()) state = "unknown: " + db_error;
  if (state == "running") {
    return Status::Unavailable("the sandbox of '" + name + "' does not answer (state: running; " +
                               connected.message() + "); restart it from the allgo web interface");
  }
  return Status::Unavailable("the sandbox of '" + name + "' is not running (state: " + state +
                             "); start it from the allgo web interface");
}

}  // namespace allgo::bridge
