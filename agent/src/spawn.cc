#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pty.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include <string_view>

#include "allgo/bridge/bridge_folder.h"
#include "allgo/bridge/io.h"
#include "home.h"
#include "log.h"

extern char** environ;

namespace allgo::bridge {
namespace {

rlim_t g_child_nofile = RLIM_INFINITY;  // RLIM_INFINITY: leave the limit alone

struct ExecPlan {
  std::string path;
  std::string home;  // the session's HOME ("" = none): a login shell starts there
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<char*> argv;
  std::vector<char*> envp;
  UniqueFd exec_fd;  // valid: run this checked file (fexecve) instead of `path`

  // Once the plan stays where it is (the pointers point into `args` and `env`).
  void Finish() {
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (std::string& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

// Whether `program` (a path, or a name looked up in the agent's PATH, which is the container's)
// is an executable file here.
bool Executable(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    if (access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// The toolbox's sftp server: OpenSSH's sftp-server, built static by scripts/build-sftp-server
// and shipped next to the agent, for images that have none (docs/sandbox.md, "The toolbox").
constexpr const char* kToolboxSftpServer = "allgo-sftp-server";

// The folder this agent runs from, as the sandbox sees it (the toolbox: /.allgo in a
// container); "" when /proc cannot tell.
const std::string& ToolboxFolder() {
  static const std::string folder = [] {
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || self[0] != '/') return std::string();
    std::string path(self, static_cast<size_t>(len));
    return path.substr(0, path.rfind('/') + 1);  // with its trailing '/'
  }();
  return folder;
}

// The words of `command` when it asks for an sftp-server by path and nothing else: the
// [sshd] sftp_server setting, e.g. "/usr/lib/openssh/sftp-server -l INFO". Only plain words,
// so running them without a shell means what `sh -c` would; empty for anything else.
std::vector<std::string> SftpServerWords(const std::string& command) {
  std::vector<std::string> words;
  std::string word;
  for (char ch : command + " ") {
    if (ch == ' ' || ch == '\t') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               std::string_view("/._,:=+-%@").find(ch) != std::string_view::npos) {
      word += ch;
    } else {
      return {};
    }
  }
  if (words.empty() || words[0].substr(words[0].rfind('/') + 1) != "sftp-server") return {};
  return words;
}

// The toolbox's sftp server, opened and checked (ToolboxProgramProblem) for fexecve: the
// file run is the inode checked, whatever happens to the name afterwards.
struct ToolboxProgram {
  std::string path;     // "" when the toolbox has none
  UniqueFd fd;          // valid when acceptable
  std::string problem;  // why not, when it is there but refused
};
ToolboxProgram OpenToolboxSftpServer() {
  ToolboxProgram program;
  if (ToolboxFolder().empty()) return program;
  std::string path = ToolboxFolder() + kToolboxSftpServer;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return program;  // not shipped with this toolbox
  program.path = path;
  program.fd = OpenChecked(AT_FDCWD, path, O_RDONLY, [&path](const struct stat& found) {
    return ToolboxProgramProblem(found, "the toolbox's " + path);
  }, &program.problem);
  return program;
}

// When `command` asks for an sftp-server the image does not have (the image's own is preferred:
// its version, its settings), plans the toolbox's instead, with the same arguments and no shell.
bool PlanToolboxSftpServer(const std::string& command, ExecPlan* plan) {
  std::vector<std::string> words = SftpServerWords(command);
  if (words.empty() || Executable(words[0])) return false;
  ToolboxProgram toolbox = OpenToolboxSftpServer();
  if (!toolbox.fd) return false;  // MissingTransferTool has refused the request already
  Log(LogLevel::kInfo, "the sandbox has no %s: running the toolbox's %s", words[0].c_str(), toolbox.path.c_str());
  plan->path = words[0] = toolbox.path;
  plan->args = std::move(words);
  plan->exec_fd = std::move(toolbox.fd);
  return true;
}

ExecPlan PlanFor(const Open& request) {
  ExecPlan plan;
  if (request.login_shell) {
    // A login shell is announced by a leading '-' in argv[0].
    if (access("/bin/bash", X_OK) == 0) {
      plan.path = "/bin/bash";
      plan.args = {"-bash"};
    } else {
      plan.path = "/bin/sh";
      plan.args = {"-sh"};
    }
  } else if (request.pty || !PlanToolboxSftpServer(request.command, &plan)) {
    plan.path = "/bin/sh";
    plan.args = {"sh", "-c", request.command};
  }
  // Decided here, in the agent, before the fork: the refusal reaches the agent's log.
  std::string refusal;
  plan.home = SessionHome(getenv("HOME"), &refusal);
  if (!refusal.empty()) Log(LogLevel::kWarn, "home: %s", refusal.c_str());
  plan.env = SessionEnvironment(request, plan.home);
  return plan;
}

// In the child, before exec: the agent blocks signals and ignores SIGPIPE; neither may leak
// into the user's process. If the agent dies, the session hangs up like a closed terminal.
void PrepareChild() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, SIGHUP);
  if (g_child_nofile != RLIM_INFINITY) {
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
      files.rlim_cur = g_child_nofile;
      setrlimit(RLIMIT_NOFILE, &files);
    }
  }
}

// Child side of the exec-error pipe: report errno and exit.
[[noreturn]] void ExecOrReport(const ExecPlan& plan, int report_fd) {
  if (plan.exec_fd) {
    fexecve(plan.exec_fd.get(), plan.argv.data(), plan.envp.data());
  } else {
    execve(plan.path.c_str(), plan.argv.data(), plan.envp.data());
  }
  int err = errno;
  ssize_t ignored = write(report_fd, &err, sizeof err);
  (void)ignored;
  _exit(127);
}

}  // namespace

// Empty read = exec succeeded (the pipe closed on exec).
std::string ExecReport(const Spawned& spawned) {
  int err = 0;
  ssize_t n;
  do {
    n = read(spawned.report, &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof err)) {
    return ErrnoText("cannot run " + spawned.program + " in the sandbox", err);
  }
  return "";
}

void SetChildFileLimit(rlim_t soft) { g_child_nofile = soft; }

std::vector<std::string> SessionEnvironment(const Open& request, const std::string& home) {
  std::vector<std::string> env;
  auto overridden = [&request](std::string_view entry) {
    std::string_view name = entry.substr(0, entry.find('='));
    if (name == "HOME") return true;
    for (const auto& [n, v] : request.env) {
      if (n == name) return true;
    }
    return name == "TERM" && request.pty;
  };
  for (char** e = environ; e && *e; ++e) {
    if (!overridden(*e)) env.emplace_back(*e);
  }
  for (const auto& [name, value] : request.env) env.push_back(name + "=" + value);
  if (!home.empty()) env.push_back("HOME=" + home);
  if (request.pty) {
    bool has_term = false;
    for (const auto& [name, value] : request.env) has_term |= name == "TERM";
    if (!has_term) env.push_back("TERM=" + (request.term.empty() ? std::string("dumb") : request.term));
  }
  return env;
}

std::string MissingTransferTool(const Open& request) {
  if (request.login_shell || request.pty) return "";
  const std::string& command = request.command;
  std::string program = command.substr(0, command.find_first_of(" \t"));
  std::string base = program.substr(program.rfind('/') + 1);
  std::string need;
  if (base == "sftp-server") {
    need = "sftp and scp need the openssh-sftp-server package in the webapp's image";
  } else if (base == "scp" && command.find(" -t") == std::string::npos && command.find(" -f") == std::string::npos) {
    return "";  // not the legacy scp protocol's server side
  } else if (base == "scp") {
    need = "scp -O (the legacy protocol) needs scp (openssh-client) in the webapp's image; plain scp uses sftp";
  } else if (base == "rsync" && command.find(" --server") != std::string::npos) {
    need = "rsync needs the rsync package in the webapp's image";
  } else {
    return "";
  }
  if (Executable(program)) return "";
  if (!SftpServerWords(command).empty()) {  // an sftp-server by path: the toolbox may have one
    ToolboxProgram toolbox = OpenToolboxSftpServer();
    if (toolbox.fd) return "";  // PlanFor runs it
    if (!toolbox.problem.empty()) {  // the caller logs it too (operators see the refusal)
      return "the sandbox has no " + base + " (" + program + ") and " + toolbox.problem;
    }
  }
  return "the sandbox has no " + base + (program != base ? " (" + program + ")" : "") + ": " + need;
}

namespace {

// The common shape of both spawns: `do_fork` is fork() or forkpty(); `setup` runs in the
// child before exec and returns false (errno set) when the child cannot go on. Exec and
// setup failures come back through a close-on-exec pipe, so the caller gets a message
// instead of a process that exits 127.
template <typename Fork, typename Setup>
Spawned Spawn(const Open& request, const char* fork_error, Fork do_fork, Setup setup, std::string* error) {
  ExecPlan plan = PlanFor(request);
  plan.Finish();
  Spawned spawned;
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    *error = ErrnoText("pipe", errno);
    return spawned;
  }
  pid_t pid = do_fork();
  if (pid < 0) {
    *error = ErrnoText(fork_error, errno);
    close(report[0]);
    close(report[1]);
    return spawned;
  }
  if (pid == 0) {
    close(report[0]);
    PrepareChild();
    // A login shell starts in the session's home, as sshd's do (home.h); a command stays in
    // the working folder (the container's WORKDIR). A missing home is not an error, the
    // shell starts in place.
    if (request.login_shell && plan.home.rfind('/', 0) == 0 && chdir(plan.home.c_str()) != 0) errno = 0;
    if (!setup()) {
      int e = errno;
      ssize_t ignored = write(report[1], &e, sizeof e);
      (void)ignored;
      _exit(127);
    }
    ExecOrReport(plan, report[1]);
  }
  close(report[1]);
  SetNonBlocking(report[0], true);
  spawned.pid = pid;
  spawned.report = report[0];
  spawned.program = plan.path;
  return spawned;
}

}  // namespace

Spawned SpawnCommand(const Open& request, int in, int out, int err, std::string* error) {
  auto setup = [&] {
    setsid();
    // dup2 clears close-on-exec on the copies; the originals close on exec.
    return dup2(in, 0) >= 0 && dup2(out, 1) >= 0 && dup2(err, 2) >= 0;
  };
  return Spawn(request, "fork", [] { return fork(); }, setup, error);
}

Spawned SpawnOnPty(const Open& request, int* master, std::string* error) {
  struct winsize ws{};
  ws.ws_row = request.window.rows ? request.window.rows : 24;
  ws.ws_col = request.window.cols ? request.window.cols : 80;
  ws.ws_xpixel = request.window.xpixel;
  ws.ws_ypixel = request.window.ypixel;
  int fd = -1;
  // forkpty: new session, the pty slave as controlling terminal and as fds 0, 1, 2.
  auto do_fork = [&] { return forkpty(&fd, nullptr, nullptr, &ws); };
  auto setup = [&] {
    struct termios tio;
    if (tcgetattr(0, &tio) == 0) {
      ApplyTermModes(request.modes, &tio);
      tcsetattr(0, TCSANOW, &tio);
    }
    return true;
  };
  Spawned spawned = Spawn(request, "cannot create a pseudo-terminal in the sandbox (is /dev/pts mounted?)",
                          do_fork, setup, error);
  if (spawned.pid < 0) return spawned;
  SetCloexec(fd);
  SetNonBlocking(fd, true);
  *master = fd;
  return spawned;
}

}  // namespace allgo::bridge
