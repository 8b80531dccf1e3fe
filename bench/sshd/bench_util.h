// Helpers shared by sshd_bench's modes: child processes, process trees and their memory,
// and the session throughput of an ssh command line.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace allgo::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A child process with optional pipes to its stdin/stdout; stderr goes to /dev/null or a file.
class Child {
 public:
  Child(const std::vector<std::string>& argv, bool pipe_in, bool pipe_out, const std::string& err_path = "") {
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (pipe_in && pipe2(in, O_CLOEXEC) != 0) return;
    if (pipe_out && pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (pipe_in) {
      posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    if (pipe_out) {
      posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    } else {
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    }
    posix_spawn_file_actions_addopen(&fa, 2, err_path.empty() ? "/dev/null" : err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> cargv;
    for (const auto& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
    cargv.push_back(nullptr);
    if (posix_spawnp(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (pipe_in) {
      close(in[0]);
      in_ = in[1];
    }
    if (pipe_out) {
      close(out[1]);
      out_ = out[0];
    }
  }
  ~Child() {
    CloseIn();
    if (out_ >= 0) close(out_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      Wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  int in() const { return in_; }
  int out() const { return out_; }
  void CloseIn() {
    if (in_ >= 0) close(in_);
    in_ = -1;
  }
  int Wait() {
    if (pid_ <= 0) return status_;
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  int status_ = -1;
};

int RunQuiet(const std::vector<std::string>& argv);
// Every process below `root` (children, their children...), from /proc.
std::vector<pid_t> Descendants(pid_t root);

struct Mem {
  double pss_kb = 0, rss_kb = 0;
  int processes = 0;
};

// A login shell or the command of a session (not the server's own process).
bool IsSessionProcess(pid_t p);
// Sum of PSS and RSS over `pids` (those gone meanwhile are skipped).
Mem MemoryOf(const std::vector<pid_t>& pids);
// Sum over the server's processes (listener excluded: it is a constant); with
// `with_sessions`, the webapp's own processes (login shell, command) are counted too.
Mem ServerMemory(pid_t listener, bool with_sessions = true);
// Runs `ssh_argv` (which writes `bytes` to stdout) and returns the rate it was read at.
double DownloadMBps(const std::vector<std::string>& ssh_argv, long long bytes, const std::string& label);
// Writes `bytes` into `wc -c` run by `ssh_argv`: MB/s. The far end counts the bytes, so the
// measurement ends when all of them arrived.
double UploadMBps(const std::vector<std::string>& ssh_argv, long long bytes, const std::string& label);
// A TCP connection to 127.0.0.1:port (blocking, close-on-exec), -1 if refused.
int ConnectLoopback(int port);
// A fresh database with the bench's user and a new client key made in `dir`: the owner's id.
uint32_t AddBenchUser(const std::string& dir, test::KeyPair* key);
// CPU seconds (user + system) of `pid` alone; with `children`, also of its reaped children
// (0 when it is gone). Unlike wall time on a shared machine, this is what the work cost.
double ProcCpuSeconds(pid_t pid, bool children);
// CPU seconds a process tree has used: every live process's own and its reaped children's
// (a child that ended was reaped by its parent in the tree, so nothing is counted twice);
// `skip`: a process left out.
double TreeCpuSeconds(pid_t root, pid_t skip = -1);
// The value at fraction p (0.5: median) of `v`; 0 when empty.
double Percentile(std::vector<double> v, double p);

}  // namespace allgo::bench
