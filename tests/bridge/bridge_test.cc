// The sandbox bridge end to end, with real parts: allgo-sandbox-agent inside a bubblewrap
// sandbox (own pid, ipc and uts namespaces, the bridge folder bind-mounted), allgo-shell
// running as the webapp's uid, its user name coming from the allgo NSS module through
// nsswitch.conf and the real MariaDB of the fixture.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <random>
#include <thread>

#include "allgo/bridge/protocol.h"
#include "allgo/bridge/io.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
namespace bridge = allgo::bridge;

bool WaitFor(const std::function<bool()>& done, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Sha256(const std::string& path) { return test::Run({"sha256sum", path}).out.substr(0, 64); }

pid_t ParentOf(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  int ppid = 0;
  char state;
  if (sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

// A process whose comm starts with `comm` and that descends from `ancestor`.
pid_t FindDescendant(pid_t ancestor, const std::string& comm) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    std::string c = ReadFile("/proc/" + name + "/comm");
    if (c.rfind(comm.substr(0, 15), 0) != 0) continue;
    for (pid_t p = ParentOf(pid); p > 1; p = ParentOf(p)) {
      if (p == ancestor) return pid;
    }
  }
  return 0;
}

// Zombies below `ancestor`: children nobody reaped.
int ZombiesBelow(pid_t ancestor) {
  int zombies = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = ReadFile("/proc/" + name + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z') continue;
    for (pid_t p = ParentOf(std::stoi(name)); p > 1; p = ParentOf(p)) {
      if (p == ancestor) ++zombies;
    }
  }
  return zombies;
}

std::vector<std::string> SessionFolders(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename();
    if (name.rfind("s-", 0) == 0) out.push_back(name);
  }
  return out;
}

// A raw client of agent.sock, run in a child process as `uid` (root when -1): connects,
// sends `bytes`, and collects what the agent answers until it closes (or timeout_ms).
struct RawReply {
  int connect_errno = 0;
  std::string bytes;
  bool closed = false;
};
RawReply RawExchange(const std::string& socket_path, const std::string& bytes, uid_t uid = -1,
                     gid_t gid = -1, int timeout_ms = 5000) {
  int report[2];
  EXPECT_EQ(pipe(report), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(report[0]);
    if (gid != static_cast<gid_t>(-1) && (setgroups(0, nullptr) != 0 || setgid(gid) != 0)) _exit(3);
    if (uid != static_cast<uid_t>(-1) && setuid(uid) != 0) _exit(3);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
    std::string out(1, '\0');
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      out[0] = static_cast<char>(errno);
    } else {
      send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      char buf[4096];
      out.push_back('o');  // 'o' open, replaced by 'c' when the agent closed
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          out[1] = 'c';
          break;
        }
        out.append(buf, static_cast<size_t>(n));
      }
    }
    ssize_t ignored = write(report[1], out.data(), out.size());
    (void)ignored;
    _exit(0);
  }
  close(report[1]);
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(report[0], buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  close(report[0]);
  waitpid(pid, nullptr, 0);
  RawReply reply;
  if (all.empty()) return reply;
  reply.connect_errno = static_cast<unsigned char>(all[0]);
  if (all.size() >= 2) {
    reply.closed = all[1] == 'c';
    reply.bytes = all.substr(2);
  }
  return reply;
}

// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
bool Exited(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z';
}

// The IN_OPEN events an inotify fd collected (non-blocking fd).
int OpenEvents(int inotify) {
  int opens = 0;
  alignas(inotify_event) char buf[4096];
  ssize_t n;
  while ((n = read(inotify, buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < n;) {
      auto* e = reinterpret_cast<inotify_event*>(buf + off);
      if (e->mask & IN_OPEN) ++opens;
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
  return opens;
}

// The Error texts found in a stream of frames.
std::vector<std::string> ErrorTexts(const std::string& stream) {
  bridge::FrameReader reader;
  reader.Append(stream);
  std::vector<std::string> texts;
  bridge::Message m;
  std::string error;
  while (reader.Next(&m, &error) == bridge::FrameReader::Result::kMessage) {
    if (auto* e = std::get_if<bridge::Error>(&m)) texts.push_back(e->text);
  }
  return texts;
}

class Bridge : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& db = TestDatabase::Get();
    db.Start();
    db.Clear();
    owner_ = db.AddUser("owner@example.org");
    uint32_t id = db.AddWebapp("sleep", owner_);
    uid_ = id + 2000;
    sandboxes_ = tmp_ / "sandboxes";
    sandboxes_mount_ = std::make_unique<SandboxesMount>(sandboxes_);  // nosuid,nodev,noexec
    bridge_ = sandboxes_ + "/sleep";
    mark_ = tmp_ / "mark";
    fs::create_directories(bridge_);
    fs::create_directories(mark_);
    // As the allgo controller sets it up: the webapp's folder, owned by its uid.
    ASSERT_EQ(chown(bridge_.c_str(), uid_, gid_), 0);
    chmod(bridge_.c_str(), 0755);
    chmod(mark_.c_str(), 0777);
    WriteAllgoConfig(db.ConfigText("[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 5\n[nss]\nshell = " +
                                   Artifact("allgo-shell") + "\n"));
  }

  void TearDown() override {
    if (agent_) agent_->Stop(SIGTERM, 5000);
  }

  void StartAgent(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = SandboxCommand(
        bridge_, {.binds = {mark_}, .bwrap_extra = sandbox_extra_, .launcher = launcher_, .agent_args = extra});
    agent_log_ = tmp_ / ("agent" + std::to_string(++agents_started_) + ".log");
    agent_ = std::make_unique<Daemon>(argv, agent_log_);
    ASSERT_TRUE(WaitFor([&] { return Contains(agent_->Log(), "listening on"); }, 10000))
        << agent_->Log();
  }

  std::string AgentLog() const { return ReadFile(agent_log_); }

  RunOptions AsWebapp(RunOptions options = {}) const {
    options.uid = uid_;
    options.gid = gid_;
    return options;
  }
  RunResult Shell(const std::string& command, RunOptions options = {}) const {
    return test::Run({Artifact("allgo-shell"), "-c", command}, AsWebapp(std::move(options)));
  }
  std::future<RunResult> ShellAsync(const std::string& command, int timeout_seconds = 30) const {
    return std::async(std::launch::async, [this, command, timeout_seconds] {
      RunOptions options;
      options.timeout_seconds = timeout_seconds;
      return Shell(command, options);
    });
  }
  std::string Setpriv() const {
    return "setpriv --reuid=" + std::to_string(uid_) + " --regid=" + std::to_string(gid_) +
           " --clear-groups ";
  }

  TempDir tmp_{"allgo-bridge"};
  std::unique_ptr<SandboxesMount> sandboxes_mount_;
  uint32_t owner_ = 0;
  uid_t uid_ = 0;
  gid_t gid_ = 65534;
  std::string sandboxes_, bridge_, mark_, agent_log_;
  std::unique_ptr<Daemon> agent_;
  int agents_started_ = 0;
  std::vector<std::string> launcher_;  // runs the agent (e.g. prlimit ...), inside the sandbox
  std::vector<std::string> sandbox_extra_;  // more bwrap options
};

TEST_F(Bridge, LoginNameFromSshdIsTrustedOnlyWhenTheBridgeFolderProvesIt) {
  StartAgent();
  // Another webapp whose folder belongs to another uid.
  auto& db = TestDatabase::Get();
  uint32_t other = db.AddWebapp("other", owner_);
  fs::create_directories(sandboxes_ + "/other");
  ASSERT_EQ(chown((sandboxes_ + "/other").c_str(), other + 2000, gid_), 0);
  // $USER naming our own folder: no database needed at all (sshd sets USER at login).
  db.Stop();
  RunOptions own;
  own.env = {{"USER", "sleep"}};
  RunResult r = Shell("echo via-folder", own);
  db.Start();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "via-folder\n");
  // $USER naming someone else's folder is ignored: the name comes from NSS, our own sandbox
  // answers (the mark folder is only bound into ours).
  RunOptions spoofed;
  spoofed.env = {{"USER", "other"}};
  r = Shell("echo mine > " + mark_ + "/who", spoofed);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(mark_ + "/who"), "mine\n");
  // Without the hint and without the database, the name cannot be known: a clear error.
  db.Stop();
  RunOptions none;
  none.env = {{"USER", "nobody-here"}};
  r = Shell("true", none);
  db.Start();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(Contains(r.err, "has no user name")) << r.err;
}

TEST_F(Bridge, CommandsRunInTheSandboxWithTheirExitCodes) {
  StartAgent();
  RunResult r = Shell("echo hello from $(hostname); exit 7");
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_TRUE(Contains(r.out, "hello from ")) << r.out;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(Shell("true").exit_code, 0);
  // The sandbox has its own pid namespace: the agent is not the frontend's process.
  r = Shell("cat /proc/1/cmdline | tr '\\0' ' '");
  EXPECT_TRUE(Contains(r.out, "bwrap")) << r.out;
  // Killed by a signal: 128 + N, like a local shell.
  EXPECT_EQ(Shell("kill -TERM $$").exit_code, 143);
  EXPECT_EQ(Shell("kill -KILL $$").exit_code, 137);
  // The documented environment allow-list.
  RunOptions env;
  env.env = {{"LANG", "C.UTF-8"}, {"LC_TIME", "C"}, {"SECRET_TOKEN", "leak"}};
  r = Shell("echo \"$LANG|$LC_TIME|$SECRET_TOKEN\"", env);
  EXPECT_EQ(r.out, "C.UTF-8|C|\n");
  EXPECT_TRUE(SessionFolders(bridge_).empty());
}

TEST_F(Bridge, LoginShellInvocations) {
  StartAgent();
  std::string shell = Artifact("allgo-shell");
  // As sshd starts a login shell: argv[0] "-allgo-shell".
  RunResult r = test::Run({"bash", "-c", "exec -a -allgo-shell " + shell + " -c 'echo login'"}, AsWebapp());
  EXPECT_EQ(r.out, "login\n") << r.err;
  // No arguments and no terminal: the sandbox's login shell reads commands from stdin.
  RunOptions in = AsWebapp();
  in.stdin_data = "echo from-stdin\nexit 6\n";
  r = test::Run({shell}, in);
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_TRUE(Contains(r.out, "from-stdin\n")) << r.out;
  // A command that starts with '-' is still the command.
  r = Shell("-x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  r = test::Run({shell, "-c"}, AsWebapp());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "allgo: -c needs a command\n");
  // An explicit config that does not exist is named.
  r = test::Run({shell, "--config", tmp_ / "missing.conf", "-c", "true"}, AsWebapp());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "missing.conf")) << r.err;
}

TEST_F(Bridge, SessionsKeepTheSandboxsFileLimit) {
  // The agent raises its own fd limit for many sessions; its commands get the original one.
  launcher_ = {"prlimit", "--nofile=1024:4096", "--"};
  StartAgent();
  EXPECT_EQ(Shell("ulimit -n").out, "1024\n");
  pid_t agent = FindDescendant(agent_->pid(), "allgo-sandbox-agent");
  ASSERT_GT(agent, 0);
  EXPECT_TRUE(Contains(ReadFile("/proc/" + std::to_string(agent) + "/limits"), "Max open files            4096"));
}

TEST_F(Bridge, ImageWithoutAShellIsReported) {
  // An image without /bin/sh (here: an empty /usr/bin; the agent is static and lives elsewhere).
  sandbox_extra_ = {"--tmpfs", "/usr/bin"};
  StartAgent();
  RunResult r = Shell("echo never");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "allgo: the sandbox agent did not start the session: cannot run /bin/sh in the sandbox: "
            "No such file or directory\n");
  EXPECT_TRUE(agent_->Running());
  // The failed child is reaped when its SIGCHLD reaches the agent: soon, not necessarily before
  // the error line (on a loaded machine the client can be faster).
  EXPECT_TRUE(WaitFor([&] { return ZombiesBelow(agent_->pid()) == 0; }, 2000));
}

TEST_F(Bridge, StdinEofReachesTheCommand) {
  StartAgent();
  RunOptions in;
  in.stdin_data = "abc";
  in.timeout_seconds = 20;
  RunResult r = Shell("cat", in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "abc");
  r = Shell("wc -c", in);
  EXPECT_EQ(r.out, "3\n");
  // Same through a real shell pipeline as the webapp user.
  r = Sh("printf abc | " + Artifact("allgo-shell") + " -c cat", AsWebapp(in));
  EXPECT_EQ(r.out, "abc");
}

TEST_F(Bridge, StdoutAndStderrStaySeparateAndBinarySafe) {
  StartAgent();
  RunResult r = Shell("echo out; echo err >&2; printf '\\000\\377\\n' ; printf 'e\\000' >&2; exit 4");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.out, std::string("out\n\0\377\n", 7));
  EXPECT_EQ(r.err, std::string("err\ne\0", 6));
}

TEST_F(Bridge, NonBlockingStdoutIsWaitedForNotDropped) {
  StartAgent();
  // Some parents hand over stdio with O_NONBLOCK set; a slow reader must not lose data.
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
  std::string shell = Artifact("allgo-shell");
  pid_t pid = fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(p[1], 1);
    if (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 || setuid(uid_) != 0) _exit(126);
    execl(shell.c_str(), "allgo-shell", "-c", "head -c 5M /dev/zero", nullptr);
    _exit(127);
  }
  close(p[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the pipe fills: EAGAIN
  size_t total = 0;
  char buf[65536];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) {
    total += static_cast<size_t>(n);
    if (total < (1u << 20)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(total, 5u << 20);
}

TEST_F(Bridge, HundredMegabytesRoundTripUnchanged) {
  StartAgent();
  std::string in = tmp_ / "in.bin";
  ASSERT_EQ(Sh("head -c 100M /dev/urandom > " + in).exit_code, 0);
  RunOptions o = AsWebapp();
  o.timeout_seconds = 120;
  RunResult r = Sh(Artifact("allgo-shell") + " -c cat < " + in + " | sha256sum", o);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 64), Sha256(in));
  r = Sh(Artifact("allgo-shell") + " -c 'wc -c' < " + in, o);
  EXPECT_EQ(r.out, "104857600\n");
}

TEST_F(Bridge, InteractiveSessionInTmuxFollowsResizeAndCtrlC) {
  StartAgent();
  std::string sock = tmp_ / "tmux.sock";
  std::string tmux = "tmux -f /dev/null -S " + sock + " ";
  std::string inner = "stty -g > " + mark_ + "/before; " + Artifact("allgo-shell") + "; echo \\$? > " +
                      mark_ + "/status; stty -g > " + mark_ + "/after";
  ASSERT_EQ(Sh(tmux + "new-session -d -s t -x 100 -y 30 \"" + Setpriv() + "sh -c '" + inner + "'\"").exit_code, 0);
  auto pane = [&] { return Sh(tmux + "capture-pane -p -t t").out; };
  auto type = [&](const std::string& keys) { Sh(tmux + "send-keys -t t " + keys); };
  type("'stty size' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "30 100"); }, 10000)) << pane() << AgentLog();
  ASSERT_EQ(Sh(tmux + "resize-window -t t -x 120 -y 40").exit_code, 0);
  type("'stty size' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "40 120"); }, 10000)) << pane();
  // Ctrl-C interrupts the sandbox's foreground process, not the bridge.
  type("'sleep 100' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "sleep 100"); }, 5000));
  type("C-c");
  type("'echo rc=$?' Enter");
  EXPECT_TRUE(WaitFor([&] { return Contains(pane(), "rc=130"); }, 10000)) << pane();
  type("'exit 5' Enter");
  // The shell's redirection creates the file before stty writes its line: wait for the line.
  EXPECT_TRUE(WaitFor([&] { return Contains(ReadFile(mark_ + "/after"), "\n"); }, 10000)) << pane();
  EXPECT_EQ(ReadFile(mark_ + "/status"), "5\n");
  // The local terminal is restored.
  EXPECT_EQ(ReadFile(mark_ + "/before"), ReadFile(mark_ + "/after"));
  Sh(tmux + "kill-server");
  EXPECT_TRUE(SessionFolders(bridge_).empty());
}

TEST_F(Bridge, SftpSessionThroughSftpServer) {
  StartAgent();
  std::string local = mark_ + "/local.bin", remote = mark_ + "/remote.bin", back = mark_ + "/back.bin";
  WriteFile(local, RandomBytes(5 << 20, 7), 0644);
  WriteFile(tmp_ / "batch", "put " + local + " " + remote + "\nls -l " + remote + "\nget " + remote + " " + back + "\n");
  RunOptions o = AsWebapp();
  o.timeout_seconds = 60;
  RunResult r = test::Run({"sftp", "-b", tmp_ / "batch", "-D", Artifact("allgo-shell") + " -c /usr/lib/openssh/sftp-server"}, o);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << AgentLog();
  EXPECT_TRUE(Contains(r.out, "5242880")) << r.out;
  // The file was written inside the sandbox (by its root), and came back unchanged.
  struct stat st;
  ASSERT_EQ(stat(remote.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(Sha256(remote), Sha256(local));
  EXPECT_EQ(Sha256(back), Sha256(local));
}

TEST_F(Bridge, TwentyConcurrentSessions) {
  StartAgent();
  // One shell starts the 20 clients at once (test::Run is not meant to be called from
  // several threads: a concurrently forked child could inherit another run's stdin pipe).
  std::string dir = tmp_ / "many";
  fs::create_directories(dir);
  chmod(dir.c_str(), 0777);
  std::vector<std::string> inputs;
  for (unsigned i = 0; i < 20; ++i) {
    inputs.push_back(RandomBytes(256 * 1024 + i, i));
    WriteFile(dir + "/in" + std::to_string(i), inputs.back());
  }
  std::string script = "cd " + dir + " && for i in $(seq 0 19); do (" + Artifact("allgo-shell") +
                       " -c \"sleep 0.5; cat; echo $i >&2\" < in$i > out$i 2> err$i; echo $? > rc$i) & done; wait";
  RunOptions o = AsWebapp();
  o.timeout_seconds = 60;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Sh(script, o).exit_code, 0);
  // They overlapped: 20 sessions of 0.5 s each took far less than 20 × 0.5 s.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(8));
  for (unsigned i = 0; i < 20; ++i) {
    std::string n = std::to_string(i);
    EXPECT_EQ(ReadFile(dir + "/rc" + n), "0\n") << i;
    EXPECT_TRUE(ReadFile(dir + "/out" + n) == inputs[i]) << "session " << i;
    EXPECT_EQ(ReadFile(dir + "/err" + n), n + "\n");
  }
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  EXPECT_EQ(ZombiesBelow(agent_->pid()), 0) << "every session's process was reaped";
}

TEST_F(Bridge, SignalsAreRelayedToTheSandboxProcess) {
  StartAgent();
  auto run = ShellAsync("trap 'echo term > " + mark_ + "/term; exit 3' TERM; touch " + mark_ +
                        "/started; while :; do sleep 0.1; done");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000)) << AgentLog();
  pid_t shell = FindDescendant(getpid(), "allgo-shell");
  ASSERT_GT(shell, 0);
  kill(shell, SIGTERM);
  RunResult r = run.get();
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(ReadFile(mark_ + "/term"), "term\n");
}

TEST_F(Bridge, AgentKilledMidSession) {
  StartAgent();
  auto run = ShellAsync("echo started; touch " + mark_ + "/started; sleep 30");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000)) << AgentLog();
  pid_t agent = FindDescendant(agent_->pid(), "allgo-sandbox-agent");
  ASSERT_GT(agent, 0);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(agent, SIGKILL), 0);
  RunResult r = run.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_EQ(r.err,
            "allgo: lost the connection to the sandbox of 'sleep' (the agent closed the connection); "
            "the sandbox agent stopped, so the command's outcome is unknown\n");
  EXPECT_TRUE(SessionFolders(bridge_).empty());
}

TEST_F(Bridge, ClientKilledMidSessionHangsUpTheSandboxProcess) {
  StartAgent();
  // stderr goes to /dev/null: once the client is gone, a write to the session's stderr
  // pipe (dash reporting the killed `sleep`) would end the shell with SIGPIPE first.
  auto run = ShellAsync("exec 2>/dev/null; trap 'echo hup > " + mark_ + "/hup; exit 1' HUP; touch " + mark_ +
                        "/started; while :; do sleep 0.1; done");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000)) << AgentLog();
  pid_t shell = FindDescendant(getpid(), "allgo-shell");
  ASSERT_GT(shell, 0);
  ASSERT_EQ(kill(shell, SIGKILL), 0);
  EXPECT_EQ(run.get().exit_code, 137);
  EXPECT_TRUE(WaitFor([&] { return ReadFile(mark_ + "/hup") == "hup\n"; }, 10000)) << AgentLog();
  EXPECT_TRUE(WaitFor([&] { return Contains(AgentLog(), "client went away"); }, 5000)) << AgentLog();
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  // The agent keeps serving.
  EXPECT_EQ(Shell("echo still").out, "still\n");
}

TEST_F(Bridge, StoppedSandboxSaysSoOnOneLine) {
  RunResult r = Shell("echo never");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  // state "running" in the database but nobody listens
  EXPECT_TRUE(Contains(r.err, "allgo: the sandbox of 'sleep' does not answer (state: running")) << r.err;
  TestDatabase::Get().SetState("sleep", "idle");
  r = Shell("echo never");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "allgo: the sandbox of 'sleep' is not running (state: idle); start it from the allgo web "
            "interface\n");
  // An agent that is gone but left its socket behind is the same thing.
  StartAgent();
  agent_->Stop(SIGKILL);
  r = Shell("echo never");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "is not running (state: idle)")) << r.err;
}

TEST_F(Bridge, StartingSandboxIsAwaited) {
  TestDatabase::Get().SetState("sleep", "starting");
  auto run = ShellAsync("echo ready");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  TestDatabase::Get().SetState("sleep", "running");
  StartAgent();
  RunResult r = run.get();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ready\n");  // nothing of ours on stdout
  EXPECT_EQ(r.err, "allgo: the sandbox of 'sleep' is starting; waiting up to 5 s for it\n");
}

TEST_F(Bridge, ForeignUidIsRefused) {
  StartAgent();
  uint32_t other = TestDatabase::Get().AddWebapp("other", owner_);
  uid_t other_uid = other + 2000;
  std::string sock = bridge_ + "/agent.sock";
  std::string open = bridge::EncodeFrame(bridge::Open{bridge::kProtocolVersion, false, false, "id", "", {}, {}, {}});
  // The socket belongs to the webapp's uid: others cannot even connect...
  RawReply reply = RawExchange(sock, open, other_uid, gid_);
  EXPECT_EQ(reply.connect_errno, EACCES);
  // ...and if its permissions were loosened, the agent still refuses by peer credentials.
  ASSERT_EQ(chmod(sock.c_str(), 0777), 0);
  reply = RawExchange(sock, open, other_uid, gid_);
  EXPECT_EQ(reply.connect_errno, 0);
  EXPECT_TRUE(reply.closed);
  EXPECT_EQ(ErrorTexts(reply.bytes),
            std::vector<std::string>{"uid " + std::to_string(other_uid) + " may not use this sandbox"});
  EXPECT_TRUE(Contains(AgentLog(), "refused connection from uid " + std::to_string(other_uid))) << AgentLog();
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  // The webapp itself is still served.
  EXPECT_EQ(Shell("echo mine").out, "mine\n");
}

// A webapp is only ever its own uid: a login shell of root (a passwd entry pointing root's
// shell at allgo-shell, a misconfigured server) or of a uid outside the webapp range refuses
// to run, before any sandbox is reached, and says why.
TEST_F(Bridge, RefusesToRunAsRootOrOutsideTheWebappRange) {
  StartAgent();
  for (uid_t uid : {uid_t{0}, uid_t{1500}, uid_t{60000}}) {
    RunOptions as;
    as.uid = uid;
    as.gid = gid_;
    RunResult r = test::Run({Artifact("allgo-shell"), "-c", "echo reached"}, as);
    EXPECT_EQ(r.exit_code, 1) << uid;
    EXPECT_EQ(r.out, "") << uid;
    EXPECT_TRUE(Contains(r.err, "refusing to run as uid " + std::to_string(uid))) << r.err;
  }
  EXPECT_EQ(Shell("echo reached").out, "reached\n");  // the webapp's own uid is served
}

TEST_F(Bridge, PlantedSymlinksRedirectNothing) {
  // A decoy listener someone wants allgo-shell to talk to.
  std::string decoy_dir = tmp_ / "decoy";
  fs::create_directories(decoy_dir);
  chmod(decoy_dir.c_str(), 0777);
  std::string decoy = decoy_dir + "/agent.sock";
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", decoy.c_str());
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  chmod(decoy.c_str(), 0777);
  ASSERT_EQ(symlink(decoy.c_str(), (bridge_ + "/agent.sock").c_str()), 0);

  RunResult r = Shell("echo never");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(Contains(r.err, "agent.sock is a symlink, not a socket; refusing it")) << r.err;
  EXPECT_LT(accept(listener, nullptr, nullptr), 0);  // nobody knocked

  // Stale and planted session folders and lock: the agent removes the names, never the targets.
  std::string victim = tmp_ / "victim";
  fs::create_directories(victim);
  WriteFile(victim + "/keep.txt", "keep");
  WriteFile(victim + "/lock.txt", "keep");
  ASSERT_EQ(symlink(victim.c_str(), (bridge_ + "/s-0123456789abcdef0123456789abcdef").c_str()), 0);
  ASSERT_EQ(symlink((victim + "/lock.txt").c_str(), (bridge_ + "/agent.lock").c_str()), 0);
  std::string stale = bridge_ + "/s-fedcba9876543210fedcba9876543210";
  ASSERT_EQ(mkdir(stale.c_str(), 0700), 0);
  ASSERT_EQ(mkfifo((stale + "/in").c_str(), 0600), 0);

  StartAgent();
  EXPECT_EQ(ReadFile(victim + "/keep.txt"), "keep");
  EXPECT_EQ(ReadFile(victim + "/lock.txt"), "keep");
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  struct stat st;
  ASSERT_EQ(lstat((bridge_ + "/agent.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(Shell("echo served").out, "served\n");
  EXPECT_LT(accept(listener, nullptr, nullptr), 0);
  close(listener);
}

TEST_F(Bridge, GarbageAndOversizedMessagesDoNotHurtOtherSessions) {
  StartAgent({"--handshake-timeout", "1"});
  std::string sock = bridge_ + "/agent.sock";
  auto running = ShellAsync("sleep 2; echo long-done");

  // A half-open connection that never says anything, held during the rest of the test.
  int idle = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  RawReply r = RawExchange(sock, std::string("\xff\xff\xff\xff", 4) + std::string(100000, 'x'));
  EXPECT_TRUE(r.closed);
  ASSERT_EQ(ErrorTexts(r.bytes).size(), 1u);
  EXPECT_TRUE(Contains(ErrorTexts(r.bytes)[0], "frame length 4294967295 outside 1..65536"));

  r = RawExchange(sock, std::string("\0\0\0\3\x63zz", 7));
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(ErrorTexts(r.bytes), std::vector<std::string>{"protocol error: unknown message type 99"});

  bridge::Open future;
  future.version = 9;
  future.command = "id";
  r = RawExchange(sock, bridge::EncodeFrame(future));
  EXPECT_EQ(ErrorTexts(r.bytes),
            std::vector<std::string>{"protocol error: open: unsupported protocol version 9 (this side speaks 1)"});

  // A client that opens a session and never attaches: its folder goes at the deadline.
  r = RawExchange(sock, bridge::EncodeFrame(bridge::Open{bridge::kProtocolVersion, false, false, "id", "", {}, {}, {}}),
                  -1, -1, 3000);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(ErrorTexts(r.bytes), std::vector<std::string>{"handshake timed out"});

  // Meanwhile everybody else is served.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Shell("echo ok " + std::to_string(i)).out, "ok " + std::to_string(i) + "\n");
  RunResult long_run = running.get();
  EXPECT_EQ(long_run.out, "long-done\n");
  EXPECT_EQ(long_run.exit_code, 0);
  EXPECT_TRUE(agent_->Running());
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  // The silent connection was dropped at its deadline.
  pollfd p{idle, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);
  close(idle);
}

TEST_F(Bridge, PtyClientThatNeverReadsBlocksOnlyItself) {
  StartAgent();
  // A raw client (root may connect) opens a pty session running `yes`, attaches, and then
  // never reads its output: the agent's 64 KiB buffer for it fills and stays full.
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", bridge_.c_str());
  ASSERT_EQ(connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  bridge::Open open{bridge::kProtocolVersion, false, true, "yes", "xterm", {24, 80, 0, 0}, {}, {}};
  ASSERT_EQ(bridge::SendMessage(sock, open), "");
  bridge::FrameReader reader;
  bridge::Message m;
  ASSERT_EQ(bridge::ReadMessage(sock, &reader, &m, 5000), "");
  auto* opened = std::get_if<bridge::Opened>(&m);
  ASSERT_NE(opened, nullptr);
  std::string session = bridge_ + "/" + opened->session;
  // What another uid would find: a private folder of private fifos.
  struct stat st;
  ASSERT_EQ(lstat(session.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  for (const char* fifo : {"in", "out"}) {
    ASSERT_EQ(lstat((session + "/" + fifo).c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u) << fifo;
  }
  int out = ::open((session + "/out").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int in = ::open((session + "/in").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(out, 0);
  ASSERT_GE(in, 0);
  ASSERT_EQ(bridge::SendMessage(sock, bridge::Attached{}), "");
  ASSERT_EQ(bridge::ReadMessage(sock, &reader, &m, 5000), "");
  ASSERT_TRUE(std::holds_alternative<bridge::Started>(m));

  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let `yes` fill everything
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Shell("echo ok").out, "ok\n");
  pid_t agent = FindDescendant(agent_->pid(), "allgo-sandbox-agent");
  ASSERT_GT(agent, 0);
  std::string status = ReadFile("/proc/" + std::to_string(agent) + "/status");
  long rss_kb = std::stol(status.substr(status.find("VmRSS:") + 6));
  EXPECT_LT(rss_kb, 32 * 1024) << "the agent's memory stays bounded";
  // Going away hangs the session up.
  close(sock);
  close(in);
  close(out);
  EXPECT_TRUE(WaitFor([&] { return Contains(AgentLog(), "client went away"); }, 5000)) << AgentLog();
  EXPECT_EQ(Shell("echo still").out, "still\n");
}

TEST_F(Bridge, SandboxesDirIsMountedNosuidNodevNoexec) {
  // As docs/install.md says to mount [sandbox] dir on the frontend, and as an operator checks it.
  RunResult r = test::Run({"findmnt", "-n", "-o", "OPTIONS", "--target", bridge_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* option : {"nosuid", "nodev", "noexec"}) EXPECT_TRUE(Contains(r.out, option)) << r.out;
  struct statvfs vfs;
  ASSERT_EQ(statvfs(bridge_.c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC), ST_NOSUID | ST_NODEV | ST_NOEXEC);
  // What it means: a device node planted there does not work, as a pipe or otherwise.
  std::string node = bridge_ + "/planted-null";
  ASSERT_EQ(mknod(node.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_LT(::open(node.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC), 0);
  EXPECT_EQ(errno, EACCES);
}

TEST_F(Bridge, AgentAndShellRefuseTheSameBridgeFolders) {
  // Both sides apply one rule (bridge_folder.h): a folder that others may write, or that
  // belongs to someone else, is served by neither, and both say why in the same words.
  auto agent_refuses = [&](const std::vector<std::string>& args, const std::string& why) {
    Daemon agent(SandboxCommand(bridge_, {.agent_args = args}), tmp_ / "refusing-agent.log");
    EXPECT_TRUE(WaitFor([&] { return !agent.Running(); }, 10000)) << "the agent serves it: " << agent.Log();
    EXPECT_EQ(agent.Stop(), 1);
    EXPECT_TRUE(Contains(agent.Log(), why)) << agent.Log();
  };
  auto shell_refuses = [&](const std::string& why) {
    RunResult r = Shell("echo never");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(Contains(r.err, why)) << r.err;
  };
  for (mode_t mode : {0775, 0757, 01777}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(chmod(bridge_.c_str(), mode), 0);
    char octal[8];
    snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    std::string why = bridge_ + " has mode " + octal + ": it must not be writable by group or others";
    agent_refuses({}, why);
    shell_refuses(why);
  }
  ASSERT_EQ(chmod(bridge_.c_str(), 0755), 0);
  // Owned by another webapp's uid: not ours to use, nor the agent's to serve to us.
  ASSERT_EQ(chown(bridge_.c_str(), uid_ + 1, gid_), 0);
  std::string why = bridge_ + " belongs to uid " + std::to_string(uid_ + 1) + ", not to uid 0 or " + std::to_string(uid_);
  agent_refuses({"--allow-uid", std::to_string(uid_)}, why);
  shell_refuses(why);
  // Put right, both are content.
  ASSERT_EQ(chown(bridge_.c_str(), uid_, gid_), 0);
  StartAgent();
  EXPECT_EQ(Shell("echo served").out, "served\n");
}

// Plays the agent's side of one session on `listener` as a hostile agent would: it answers
// `open` with a session folder made like the real agent makes it (0700, fifos 0600, owned by
// the client, a reader held on `in`), except that `plant` first replaces one entry; `plant`
// returns the file whose opening would show (watched with inotify). Returns once the client
// hung up; *attached tells whether the client went on as if the pipes were fine.
void ServeHostileSession(int listener, const std::string& bridge, uid_t uid, gid_t gid, int inotify,
                         const std::function<std::string(const std::string&)>& plant, bool* attached) {
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "allgo-shell never connected";
  int sock = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(sock, 0);
  bridge::FrameReader reader;
  bridge::Message m;
  ASSERT_EQ(bridge::ReadMessage(sock, &reader, &m, 10000), "");
  ASSERT_TRUE(std::holds_alternative<bridge::Open>(m));
  std::string name = "s-" + bridge::RandomHex16();
  std::string session = bridge + "/" + name;
  ASSERT_EQ(mkdir(session.c_str(), 0700), 0);
  for (const char* fifo : {"in", "out", "err"}) {
    std::string path = session + "/" + fifo;
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    ASSERT_EQ(chown(path.c_str(), uid, gid), 0);
  }
  int in_reader = ::open((session + "/in").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_EQ(chown(session.c_str(), uid, gid), 0);
  std::string watched = plant(session);
  ASSERT_GE(inotify_add_watch(inotify, watched.c_str(), IN_OPEN), 0) << watched;
  ASSERT_EQ(bridge::SendMessage(sock, bridge::Opened{bridge::kProtocolVersion, name}), "");
  std::string end = bridge::ReadMessage(sock, &reader, &m, 10000);
  *attached = end.empty() && std::holds_alternative<bridge::Attached>(m);
  close(in_reader);
  close(sock);
  fs::remove_all(session);
}

TEST_F(Bridge, AnythingButOurFifoInPlaceOfASessionPipeIsRefusedUnopened) {
  // No real agent: the test answers on agent.sock (as root, which allgo-shell accepts).
  std::string sock_path = bridge_ + "/agent.sock";
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  ASSERT_EQ(chown(sock_path.c_str(), uid_, gid_), 0);
  // A fifo of the webapp's outside the session, for the symlink to point at.
  std::string decoy = mark_ + "/decoy-fifo";
  ASSERT_EQ(mkfifo(decoy.c_str(), 0600), 0);
  ASSERT_EQ(chown(decoy.c_str(), uid_, gid_), 0);

  struct Plant {
    std::string kind;
    std::function<std::string(const std::string& path)> make;  // returns the file to watch
    std::string refusal;
  };
  auto owned = [&](const std::string& path, mode_t mode) {
    chown(path.c_str(), uid_, gid_);
    chmod(path.c_str(), mode);
    return path;
  };
  std::vector<Plant> plants = {
      {"device", [&](const std::string& path) {
         // /dev/null's numbers: opening it has no visible effect of its own, so the message
         // (refused by type, not by the nodev mount's EACCES) and inotify tell.
         EXPECT_EQ(mknod(path.c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);
         return owned(path, 0600);
       }, "is a character device, not a fifo"},
      {"regular file", [&](const std::string& path) {
         WriteFile(path, "planted", 0600);
         return owned(path, 0600);
       }, "is a regular file, not a fifo"},
      {"symlink", [&](const std::string& path) {
         EXPECT_EQ(symlink(decoy.c_str(), path.c_str()), 0);
         return decoy;
       }, "is a symlink, not a fifo"},
      {"root's fifo", [&](const std::string& path) {
         EXPECT_EQ(mkfifo(path.c_str(), 0600), 0);
         chmod(path.c_str(), 0666);
         return path;
       }, "belongs to uid 0, not to uid " + std::to_string(uid_)},
      {"fifo open to others", [&](const std::string& path) {
         EXPECT_EQ(mkfifo(path.c_str(), 0600), 0);
         return owned(path, 0666);
       }, "has mode 0666: it must not be open to group or others"},
  };
  // allgo-shell opens out, err, then in: each position is reached with the others genuine.
  for (const char* pipe_name : {"out", "err", "in"}) {
    for (const Plant& plant : plants) {
      SCOPED_TRACE(std::string(pipe_name) + " replaced by a " + plant.kind);
      int inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
      ASSERT_GE(inotify, 0);
      bool attached = false;
      std::thread agent([&] {
        ServeHostileSession(listener, bridge_, uid_, gid_, inotify, [&](const std::string& session) {
          std::string path = session + "/" + pipe_name;
          unlink(path.c_str());
          return plant.make(path);
        }, &attached);
      });
      RunResult r = Shell("echo never");
      agent.join();
      EXPECT_EQ(r.exit_code, 1);
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(r.err, "allgo: the session pipe " + std::string(pipe_name) + " " + plant.refusal + "; refusing it\n");
      EXPECT_FALSE(attached);
      EXPECT_EQ(OpenEvents(inotify), 0) << "allgo-shell opened what it refused";
      close(inotify);
    }
  }
  close(listener);
  EXPECT_TRUE(SessionFolders(bridge_).empty());
}

TEST_F(Bridge, HangupEndsTheFrontendSideEvenWhenTheCommandIgnoresIt) {
  StartAgent();
  // As allgo-sshd does when the connection drops: SIGHUP to allgo-shell.
  auto run = ShellAsync("trap '' HUP; touch " + mark_ + "/started; exec sleep 1000");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 10000)) << AgentLog();
  pid_t shell = FindDescendant(getpid(), "allgo-shell");
  ASSERT_GT(shell, 0);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(shell, SIGHUP), 0);
  RunResult r = run.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(r.exit_code, 129);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(Contains(r.err, "allgo: hung up: leaving the session in the sandbox of 'sleep'")) << r.err;
  EXPECT_TRUE(WaitFor([&] { return Contains(AgentLog(), "client went away"); }, 5000)) << AgentLog();
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  // The command chose to ignore the hang-up: it keeps running in the sandbox, like nohup.
  EXPECT_GT(FindDescendant(agent_->pid(), "sleep"), 0);
}

// Kills a `sleep` left running in the sandbox on purpose; true once it is gone.
bool KillLeftover(pid_t sandbox) {
  pid_t sleeper = FindDescendant(sandbox, "sleep");
  if (sleeper > 0) kill(sleeper, SIGKILL);
  return WaitFor([&] { return FindDescendant(sandbox, "sleep") == 0; }, 5000);
}

// sshd (OpenSSH, for a command without a pty) does not signal the login shell when the
// connection drops: it closes its ends of the pipes (or of one socketpair for stdin and
// stdout) and exits. Runs allgo-shell so, then does that.
void ExpectClosedStdioEndsTheFrontendSide(bool socketpair_stdio, const std::string& shell, uid_t uid, gid_t gid,
                                          const std::string& mark, const std::string& bridge_dir, pid_t sandbox) {
  int ours_in, ours_out = -1, theirs_in, theirs_out, err[2];
  if (socketpair_stdio) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ours_in = sv[0];
    theirs_in = theirs_out = sv[1];
  } else {
    int i[2], o[2];
    ASSERT_EQ(pipe2(i, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(o, O_CLOEXEC), 0);
    ours_in = i[1], theirs_in = i[0], ours_out = o[0], theirs_out = o[1];
  }
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  std::string command = "trap '' HUP; touch " + mark + "/started; exec sleep 1000";
  pid_t pid = fork();
  if (pid == 0) {
    dup2(theirs_in, 0);
    dup2(theirs_out, 1);
    dup2(err[1], 2);
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
    execl(shell.c_str(), "allgo-shell", "-c", command.c_str(), nullptr);
    _exit(127);
  }
  close(theirs_in);
  if (theirs_out != theirs_in) close(theirs_out);
  close(err[1]);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark + "/started"); }, 10000));
  auto t0 = std::chrono::steady_clock::now();
  close(ours_in);
  if (ours_out >= 0) close(ours_out);
  close(err[0]);
  int status = 0;
  bool ended = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 8000);
  EXPECT_TRUE(ended) << "allgo-shell outlived its client";
  if (!ended) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 129) << status;
  EXPECT_TRUE(SessionFolders(bridge_dir).empty());
  EXPECT_GT(FindDescendant(sandbox, "sleep"), 0) << "the command that ignores SIGHUP keeps running";
  EXPECT_TRUE(KillLeftover(sandbox));
  fs::remove(mark + "/started");
}

TEST_F(Bridge, ClosedPipesEndTheFrontendSideEvenWhenTheCommandIgnoresHangups) {
  StartAgent();
  for (bool socketpair_stdio : {false, true}) {
    SCOPED_TRACE(socketpair_stdio ? "stdin and stdout on a socketpair" : "pipes");
    ExpectClosedStdioEndsTheFrontendSide(socketpair_stdio, Artifact("allgo-shell"), uid_, gid_, mark_, bridge_,
                                         agent_->pid());
  }
  EXPECT_TRUE(Contains(AgentLog(), "client went away")) << AgentLog();
}

// The whole path as users take it: a stock OpenSSH sshd, the user resolved by glibc through
// the allgo NSS module, keys from allgo-authkeys, and allgo-shell as the login shell that
// NSS reports ([nss] shell) — for ssh commands, a pty, scp (SFTP mode) and rsync.
class BridgeUnderOpenSsh : public Bridge {
 protected:
  void SetUp() override {
    Bridge::SetUp();
    key_ = MakeKeyPair(tmp_.path(), "owner");
    TestDatabase::Get().AddKey(owner_, key_.public_line);
    // sshd wants the helper and its directories root-owned; /etc/allgo is the test's overlay.
    fs::copy_file(Artifact("allgo-authkeys"), "/etc/allgo/allgo-authkeys",
                  fs::copy_options::overwrite_existing);
    chmod("/etc/allgo/allgo-authkeys", 0755);
    mkdir("/run/sshd", 0755);
    RunResult keygen = test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_ / "host_key"});
    ASSERT_EQ(keygen.exit_code, 0) << keygen.err;
    port_ = FreeLoopbackPort();
    WriteFile(tmp_ / "sshd_config",
              "Port " + std::to_string(port_) + "\nListenAddress 127.0.0.1\nHostKey " + (tmp_ / "host_key") +
                  "\nPidFile none\nUsePAM no\nAuthorizedKeysFile none\n"
                  "AuthorizedKeysCommand /etc/allgo/allgo-authkeys %u\n"
                  "AuthorizedKeysCommandUser nobody\nPasswordAuthentication no\n"
                  "KbdInteractiveAuthentication no\nStrictModes no\n"
                  "Subsystem sftp /usr/lib/openssh/sftp-server\n");
    sshd_ = std::make_unique<Daemon>(
        std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", tmp_ / "sshd_config"}, tmp_ / "sshd.log");
    ASSERT_TRUE(WaitForTcpPort(port_, 10000)) << sshd_->Log();
    StartAgent();
  }
  void TearDown() override {
    sshd_.reset();
    Bridge::TearDown();
  }
  std::string SshOptions() const {
    return "-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
           "-o BatchMode=yes -o LogLevel=ERROR -i " + key_.private_path + " -o Port=" + std::to_string(port_);
  }
  RunResult Ssh(const std::string& args) {
    RunOptions o;
    o.timeout_seconds = 60;
    return Sh("ssh " + SshOptions() + " " + args, o);
  }
  KeyPair key_;
  int port_ = 0;
  std::unique_ptr<Daemon> sshd_;
};

TEST_F(BridgeUnderOpenSsh, SshScpRsyncAndPtyReachTheSandbox) {
  RunResult r = Ssh("sleep@127.0.0.1 'echo in-sandbox; cat /proc/1/cmdline | tr \"\\0\" \" \"; exit 3'");
  EXPECT_EQ(r.exit_code, 3) << r.err << sshd_->Log();
  EXPECT_TRUE(Contains(r.out, "in-sandbox\nbwrap")) << r.out;
  r = Ssh("-tt sleep@127.0.0.1 'tty; echo $TERM'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "/dev/pts/")) << r.out;

  std::string local = tmp_ / "payload.bin";
  WriteFile(local, RandomBytes(3 << 20, 11));
  RunOptions o;
  o.timeout_seconds = 60;
  // scp in its default SFTP mode: sshd runs `allgo-shell -c /usr/lib/openssh/sftp-server`.
  r = Sh("scp " + SshOptions() + " " + local + " sleep@127.0.0.1:" + mark_ + "/scp.bin", o);
  ASSERT_EQ(r.exit_code, 0) << r.err << sshd_->Log();
  EXPECT_EQ(Sha256(mark_ + "/scp.bin"), Sha256(local));
  r = Sh("scp " + SshOptions() + " sleep@127.0.0.1:" + mark_ + "/scp.bin " + (tmp_ / "scp-back.bin"), o);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Sha256(tmp_ / "scp-back.bin"), Sha256(local));
  // rsync runs `rsync --server` in the sandbox through the same path.
  r = Sh("rsync -e 'ssh " + SshOptions() + "' " + local + " sleep@127.0.0.1:" + mark_ + "/rsync.bin", o);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Sha256(mark_ + "/rsync.bin"), Sha256(local));
  EXPECT_TRUE(SessionFolders(bridge_).empty());
}

TEST_F(BridgeUnderOpenSsh, DroppedConnectionLeavesNothingOnTheFrontend) {
  Daemon client({"sh", "-c", "exec ssh " + SshOptions() + " sleep@127.0.0.1 'trap \"\" HUP; touch " + mark_ +
                                 "/started; exec sleep 1000'"},
                tmp_ / "client.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mark_ + "/started"); }, 15000)) << client.Log() << sshd_->Log();
  pid_t shell = FindDescendant(sshd_->pid(), "allgo-shell");
  ASSERT_GT(shell, 0);
  client.Stop(SIGKILL, 5000);  // the connection drops without a goodbye
  EXPECT_TRUE(WaitFor([&] { return Exited(shell); }, 6000)) << "allgo-shell outlived its SSH connection";
  EXPECT_TRUE(SessionFolders(bridge_).empty());
  EXPECT_GT(FindDescendant(agent_->pid(), "sleep"), 0) << "the command that ignores SIGHUP keeps running";
}

TEST(BridgeAgent, IsFullyStatic) {
  std::string agent = Artifact("allgo-sandbox-agent");
  RunResult headers = test::Run({"readelf", "-l", agent});
  ASSERT_EQ(headers.exit_code, 0) << headers.err;
  EXPECT_FALSE(Contains(headers.out, "INTERP"));
  EXPECT_TRUE(Contains(test::Run({"readelf", "-d", agent}).out, "There is no dynamic section"));
  EXPECT_TRUE(Contains(test::Run({"file", "-L", agent}).out, "statically linked"));
}

TEST(BridgeAgent, HelpAndVersion) {
  for (const char* program : {"allgo-sandbox-agent", "allgo-shell"}) {
    RunResult r = test::Run({Artifact(program), "--version"});
    EXPECT_EQ(r.exit_code, 0) << program;
    EXPECT_TRUE(Contains(r.out, program)) << r.out;
    r = test::Run({Artifact(program), "--help"});
    EXPECT_EQ(r.exit_code, 0) << program;
    EXPECT_TRUE(Contains(r.out, "sandbox")) << r.out;
  }
  RunResult r = test::Run({Artifact("allgo-sandbox-agent")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(Contains(r.err, "--bridge-dir")) << r.err;
}

}  // namespace
}  // namespace allgo::test
