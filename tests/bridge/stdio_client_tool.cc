// allgo-stdio-client: a test-only client of `allgo-sandbox-agent --stdio` (never installed).
//
//   allgo-stdio-client [-c COMMAND] -- AGENT_ARGV...
//
// Starts AGENT_ARGV (e.g. a bubblewrap sandbox running the agent with --stdio) with its
// stdin and stdout on one end of a socketpair, and runs one session over the other end with
// RunStdioSession, exactly as allgo-shell will over the sandbox gateway's socket. A pty
// session when our stdin is a terminal, as allgo-shell decides it.
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "allgo/unique_fd.h"
#include "request.h"
#include "stdio_client.h"

int main(int argc, char** argv) {
  using namespace allgo::bridge;
  signal(SIGPIPE, SIG_IGN);
  bool login_shell = true;
  std::string command;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "-c") == 0) {
    login_shell = false;
    command = argv[i + 1];
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
    std::fprintf(stderr, "usage: allgo-stdio-client [-c COMMAND] -- AGENT_ARGV...\n");
    return 2;
  }
  std::vector<char*> agent(argv + i + 1, argv + argc);
  agent.push_back(nullptr);

  sigset_t relayed;
  sigemptyset(&relayed);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH}) sigaddset(&relayed, sig);
  sigprocmask(SIG_BLOCK, &relayed, nullptr);
  allgo::UniqueFd signals(signalfd(-1, &relayed, SFD_CLOEXEC | SFD_NONBLOCK));
  int sv[2];
  if (!signals || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    std::perror("allgo-stdio-client");
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    sigprocmask(SIG_UNBLOCK, &relayed, nullptr);
    // Its stderr stays ours (the agent's log); stdin and stdout are the stream.
    if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0) _exit(126);
    // A clean environment, as a container's exec has: nothing of the frontend's leaks in
    // (the session's variables travel in `open`, through the allow-list).
    char path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char* env[] = {path, nullptr};
    execvpe(agent[0], agent.data(), env);
    _exit(127);
  }
  close(sv[1]);
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  Open request = BuildRequest(login_shell, command, isatty(0) == 1);
  request.version = kStdioProtocolVersion;
  if (std::string invalid = Validate(request, Mode::kStdio); !invalid.empty()) {
    std::fprintf(stderr, "allgo-stdio-client: cannot send this request: %s\n", invalid.c_str());
    _exit(2);
  }
  int status = RunStdioSession(sv[0], request, signals.get(), "stdio");
  // Closing the stream ends the agent (it hangs up whatever is left); then reap it.
  close(sv[0]);
  waitpid(pid, nullptr, 0);
  _exit(status);
}
