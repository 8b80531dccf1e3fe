// allgo-test-keeper: the parent of every server a test starts (test::Daemon), so that the
// server and everything it forked die with the test, however the test ends.
//
//   allgo-test-keeper TEST_PID REPORT_FD DEATH_SIGNAL GRACE_MS -- PROGRAM ARGS...
//
// PR_SET_PDEATHSIG on the server alone is not enough: it reaches one process, not the
// children a server forks (allgo-sshd's monitors and network children, stock sshd's
// per-connection processes, nginx workers), and the kernel clears it when a process changes
// its credentials (the gateway drops to its user) or runs a setuid program. The keeper
// instead
//   - is a child subreaper: whatever the server forks and orphans is re-parented here;
//   - watches the test process through a pidfd (the whole process, not the forking thread);
//   - when the test process is gone, or on SIGTERM/SIGINT/SIGHUP (test::Daemon's destructor),
//     sends DEATH_SIGNAL to the server, gives it GRACE_MS to exit, then SIGKILLs every
//     process still below the keeper, by pid, until none is left;
//   - reports on REPORT_FD the server's pid (once started) and its wait status (when it
//     exits), as two native ints, so the test handles the server as its own child;
//   - stays while orphans of the server live after the server exited (a test may check that
//     they leave by themselves), and exits when it has no child left.
// The server runs in its own process group with PR_SET_PDEATHSIG(SIGKILL) towards the
// keeper, should the keeper itself be killed. Its stdout/stderr (the server's log) only ever
// get one line from the keeper: why the server could not start.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "allgo-test-keeper: %s\n", what.c_str());
  _exit(127);
}

long long NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Every process below `root` (by the ppid field of /proc/PID/stat), deepest generations too.
std::vector<pid_t> Descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* e = readdir(proc)) {
      char* end = nullptr;
      long pid = strtol(e->d_name, &end, 10);
      if (pid <= 0 || *end != '\0') continue;
      std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
      std::string stat;
      std::getline(f, stat);
      size_t close = stat.rfind(')');  // the command name may hold spaces and parentheses
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 1));
      char state;
      long ppid = 0;
      rest >> state >> ppid;
      children.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(pid));
    }
    closedir(proc);
  }
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto [begin, end] = children.equal_range(p);
    for (auto it = begin; it != end; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

class Keeper {
 public:
  Keeper(int report_fd, int death_signal, long long grace_ms)
      : report_fd_(report_fd), death_signal_(death_signal), grace_ms_(grace_ms) {}

  void StartServer(char** argv, const sigset_t& old_mask) {
    const pid_t keeper = getpid();
    server_ = fork();
    if (server_ < 0) Fail(std::string("fork: ") + strerror(errno));
    if (server_ == 0) {
      sigprocmask(SIG_SETMASK, &old_mask, nullptr);
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != keeper) _exit(127);
      execvp(argv[0], argv);
      Fail(std::string("cannot run ") + argv[0] + ": " + strerror(errno));
    }
    Report(server_);
  }

  // Reaps every child that exited; reports the server's status. False once no child is left.
  bool Reap() {
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid < 0) return errno != ECHILD;
      if (pid == 0) return true;
      if (pid == server_) {
        server_ = -1;
        Report(status);
      }
    }
  }

  // The test is gone (or asked): the server gets its signal and grace, then every process
  // below us is killed until none is left.
  [[noreturn]] void KillEverything() {
    if (server_ > 0) {
      kill(server_, death_signal_);
      const long long deadline = NowMs() + (death_signal_ == SIGKILL ? 0 : grace_ms_);
      while (server_ > 0 && NowMs() < deadline) {
        Reap();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    const long long deadline = NowMs() + 30000;
    while (Reap() && NowMs() < deadline) {
      for (pid_t pid : Descendants(getpid())) kill(pid, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    _exit(0);
  }

 private:
  void Report(int value) {
    if (report_fd_ < 0) return;
    if (write(report_fd_, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) {
      close(report_fd_);  // the test is gone: nobody to tell
      report_fd_ = -1;
    }
  }

  int report_fd_;
  int death_signal_;
  long long grace_ms_;
  pid_t server_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7 || std::string(argv[5]) != "--") {
    Fail("usage: allgo-test-keeper TEST_PID REPORT_FD DEATH_SIGNAL GRACE_MS -- PROGRAM ARGS...");
  }
  const pid_t test = static_cast<pid_t>(atol(argv[1]));
  const int report_fd = atoi(argv[2]);
  const int death_signal = atoi(argv[3]);
  const long long grace_ms = atoll(argv[4]);
  // The pidfd, then the parent check: if the parent is still the test, the pidfd is the test's
  // (not a recycled pid's); if it is not, the test died before we got here.
  int test_fd = static_cast<int>(syscall(SYS_pidfd_open, test, 0));
  if (test_fd < 0 || getppid() != test) Fail("the test process is gone before its server started");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) Fail(std::string("PR_SET_CHILD_SUBREAPER: ") + strerror(errno));

  // Blocked rather than ignored, so the server inherits the test's dispositions untouched
  // (StartServer restores the mask). SIGPIPE: a report to a test that is gone.
  sigset_t handled, blocked, old_mask;
  sigemptyset(&handled);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&handled, s);
  blocked = handled;
  sigaddset(&blocked, SIGPIPE);
  sigprocmask(SIG_BLOCK, &blocked, &old_mask);
  int sig_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sig_fd < 0) Fail(std::string("signalfd: ") + strerror(errno));
  fcntl(test_fd, F_SETFD, FD_CLOEXEC);
  fcntl(report_fd, F_SETFD, FD_CLOEXEC);

  Keeper keeper(report_fd, death_signal, grace_ms);
  keeper.StartServer(argv + 6, old_mask);
  for (;;) {
    pollfd fds[2] = {{sig_fd, POLLIN, 0}, {test_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) Fail(std::string("poll: ") + strerror(errno));
    if (fds[1].revents != 0) keeper.KillEverything();
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(sig_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo != SIGCHLD) keeper.KillEverything();
      }
      if (!keeper.Reap()) return 0;
    }
  }
}
