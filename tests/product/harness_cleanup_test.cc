// The test harness's own promise: every server a test starts, it stops, even when the test
// fails, dies in Die(), or is killed outright (the CI runner's SIGTERM, ctest's SIGKILL on a
// timeout). And the temp folders it made go too.
//
// Each case runs a "victim": this same binary again (HarnessVictim.* below, inert unless
// ALLGO_HARNESS_VICTIM names a report file), which starts servers through the harness and
// reports what it made. Processes are followed by pid and start time, never by name: other
// test binaries may run the same servers side by side.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "stack.h"
#include "test_gateway.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;

const char* VictimReport() { return getenv("ALLGO_HARNESS_VICTIM"); }

void Report(const std::string& line) {
  std::ofstream(VictimReport(), std::ios::app) << line << "\n";
}

// Field 2 (the command name) and field 22 (start time) of /proc/PID/stat; empty when gone.
struct ProcessId {
  pid_t pid = 0;
  std::string start;
  std::string name;
};
ProcessId Identify(pid_t pid) {
  ProcessId id{pid, "", ""};
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return id;
  id.name = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  id.start = field;
  return id;
}
bool StillRuns(const ProcessId& p) {
  ProcessId now = Identify(p.pid);
  return !now.start.empty() && now.start == p.start;
}

// Every process below `root`, by the ppid field of /proc/PID/stat.
std::vector<ProcessId> Tree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = ReadFile(e.path() / "stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    children.emplace(ppid, static_cast<pid_t>(std::stol(name)));
  }
  std::vector<ProcessId> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto [begin, end] = children.equal_range(p);
    for (auto it = begin; it != end; ++it) {
      ProcessId id = Identify(it->second);
      if (!id.start.empty()) out.push_back(id);
      todo.push_back(it->second);
    }
  }
  return out;
}

int CountNamed(const std::vector<ProcessId>& tree, const std::string& name) {
  int n = 0;
  for (const ProcessId& p : tree) n += p.name == name ? 1 : 0;
  return n;
}

// This binary again, running only `victim_test`, reporting into `report`.
pid_t StartVictim(const std::string& victim_test, const std::string& report, const std::string& log) {
  // Everything made before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env = {"ALLGO_HARNESS_VICTIM=" + report};
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("ALLGO_HARNESS_VICTIM=", 0) != 0) env.push_back(*e);
  }
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string filter = "--gtest_filter=HarnessVictim." + victim_test;
  char* argv[] = {const_cast<char*>("harness_cleanup_test"), filter.data(), nullptr};
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out, 1);
    dup2(out, 2);
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  close(out);
  return pid;
}

// The victim's report lines with `prefix`, prefix removed.
std::vector<std::string> Lines(const std::string& report, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(ReadFile(report));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
  }
  return out;
}

std::string Names(const std::vector<ProcessId>& processes) {
  std::string out;
  for (const ProcessId& p : processes) out += " " + p.name + "(" + std::to_string(p.pid) + ")";
  return out;
}

// ---------------------------------------------------------------------------------------
// The victims (skipped in a normal run).

#define ALLGO_ONLY_AS_VICTIM() \
  if (!VictimReport()) GTEST_SKIP() << "runs only as the victim of HarnessCleanup"

// A stock OpenSSH sshd, and a client connection that keeps one of its per-connection
// processes busy (it waits for the SSH banner).
struct StockSshd {
  explicit StockSshd(const TempDir& dir) {
    mkdir("/run/sshd", 0755);  // its privilege separation directory
    Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir / "stock_host_key"});
    port = FreeLoopbackPort();
    WriteFile(dir / "stock_sshd_config", "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " +
                                             (dir / "stock_host_key") + "\nPidFile none\nUsePAM no\n");
    server = std::make_unique<Daemon>(std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", dir / "stock_sshd_config"},
                                      dir / "stock_sshd.log");
    EXPECT_TRUE(WaitForTcpPort(port, 10000)) << server->Log();
    client = std::make_unique<Daemon>(
        std::vector<std::string>{"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "; sleep 600"},
        dir / "stock_client.log");
  }
  int port = 0;
  std::unique_ptr<Daemon> server, client;
};

// nginx as the gateway docs deploy it: a root master and a worker as nobody; SIGTERM when
// the test dies.
std::unique_ptr<Daemon> StartNginx(const TempDir& dir) {
  int port = FreeLoopbackPort();
  const std::string d = dir / "nginx";
  fs::create_directories(d);
  WriteFile(d + "/nginx.conf", "daemon off;\nworker_processes 1;\nuser nobody nogroup;\npid " + d +
                                   "/nginx.pid;\nerror_log " + d + "/error.log;\nevents { worker_connections 16; }\n"
                                   "http { access_log off; client_body_temp_path " + d + "/body; proxy_temp_path " +
                                   d + "/proxy; fastcgi_temp_path " + d + "/fcgi; uwsgi_temp_path " + d +
                                   "/uwsgi; scgi_temp_path " + d + "/scgi;\n  server { listen 127.0.0.1:" +
                                   std::to_string(port) + "; return 204; } }\n");
  auto nginx = std::make_unique<Daemon>(
      std::vector<std::string>{"/usr/sbin/nginx", "-p", d + "/", "-e", d + "/error.log", "-c", d + "/nginx.conf"},
      d + "/nginx.out", std::map<std::string, std::string>{}, SIGTERM);
  EXPECT_TRUE(WaitForTcpPort(port, 10000)) << ReadFile(d + "/error.log");
  return nginx;
}

TEST(HarnessVictim, StartsEveryKindOfServerThenWaits) {
  ALLGO_ONLY_AS_VICTIM();
  // MariaDB, the bwrap sandbox with its agent, allgo-sshd with its metrics process.
  Stack s;
  // A session in progress, its client run as tests run theirs (Run, from a thread): a
  // monitor, a network child (its own uid), allgo-shell.
  std::thread([&s] { s.Ssh("sleep 600"); }).detach();
  ASSERT_TRUE(WaitFor([&] { return s.ServerProcesses().size() >= 5; }, 20000)) << s.SshdLog();
  StockSshd stock(s.dir());
  std::unique_ptr<Daemon> nginx = StartNginx(s.dir());
  // The gateway drops to its own user: the kernel clears PR_SET_PDEATHSIG on that change.
  std::string why;
  std::unique_ptr<TestNodes> nodes = TestNodes::Start(1, "allgo-gateway", &why);
  std::unique_ptr<TestGateway> gateway;
  if (nodes) {
    const std::string socket = s.dir() / "gateway.sock";
    gateway = std::make_unique<TestGateway>(TestDatabase::Get().MysqlConfigSection() +
                                                "[sandbox]\nbackend = docker\n" + nodes->DockerSection(socket),
                                            socket, s.dir().path());
    std::string error = gateway->Start();
    ASSERT_EQ(error, "");
    Report("gateway " + std::to_string(gateway->pid()));
    Report("docker-dir " + nodes->node(0).dir());
  } else {
    Report("no-gateway " + why);
  }
  Report("ready");
  pause();  // until killed
}

TEST(HarnessVictim, MakesTempFoldersThenDies) {
  ALLGO_ONLY_AS_VICTIM();
  TempDir a("allgo-victim"), b("allgo-victim");
  TestDatabase::Get();  // its datadir too
  Report("folder " + a.path());
  Report("folder " + b.path());
  // The others the harness made (the private namespace's, MariaDB's), by their owner marker.
  for (const auto& e : fs::directory_iterator("/tmp")) {
    std::string p = e.path().string();
    if (p != a.path() && p != b.path() && ReadFile(p + ".owner").rfind(std::to_string(getpid()) + " ", 0) == 0) {
      Report("folder " + p);
    }
  }
  Report("ready");
  if (std::string(getenv("ALLGO_HARNESS_HOW")) == "die") UidOf("no-such-user-here");  // Die(): exit 99
  pause();  // until killed
}

TEST(HarnessVictim, MakesATempFolder) {
  ALLGO_ONLY_AS_VICTIM();
  TempDir a("allgo-victim");  // its first temp folder: the sweep of dead owners runs now
  Report("done");
}

// ---------------------------------------------------------------------------------------

TEST(HarnessCleanup, SigkillOfTheTestLeavesNoServerProcessBehind) {
  TempDir dir("allgo-harness");
  const std::string report = dir / "report", log = dir / "victim.log";
  pid_t victim = StartVictim("StartsEveryKindOfServerThenWaits", report, log);
  bool ready = WaitFor([&] { return !Lines(report, "ready").empty(); }, 240000);
  if (!ready) kill(victim, SIGKILL);
  ASSERT_TRUE(ready) << ReadFile(log);
  std::vector<ProcessId> tree = Tree(victim);
  // What the victim started, as the kernel sees it.
  EXPECT_EQ(CountNamed(tree, "mariadbd"), 1) << Names(tree);
  EXPECT_GE(CountNamed(tree, "allgo-sshd"), 4) << "listener, metrics, monitor, network child:" << Names(tree);
  EXPECT_GE(CountNamed(tree, "sshd"), 2) << "stock listener and a per-connection process:" << Names(tree);
  EXPECT_EQ(CountNamed(tree, "nginx"), 2) << "master and worker:" << Names(tree);
  EXPECT_GE(CountNamed(tree, "bwrap"), 1) << Names(tree);
  if (Lines(report, "gateway ").empty()) {
    // Like every Docker test where Docker cannot run: the other servers are still checked.
    std::cerr << "note: no gateway checked (it needs the private dockerd): " << Lines(report, "no-gateway ").at(0)
              << "\n";
  } else {
    pid_t gateway = std::stoi(Lines(report, "gateway ").at(0));
    std::string status = ReadFile("/proc/" + std::to_string(gateway) + "/status");
    EXPECT_NE(status.find("\nUid:\t"), std::string::npos) << status;
    EXPECT_EQ(status.find("\nUid:\t0\t"), std::string::npos) << "the gateway dropped root (what clears PR_SET_PDEATHSIG)";
    EXPECT_GE(CountNamed(tree, "dockerd"), 1) << Names(tree);
  }

  kill(victim, SIGKILL);
  int status = 0;
  waitpid(victim, &status, 0);
  auto left = [&] {
    std::vector<ProcessId> out;
    for (const ProcessId& p : tree) {
      if (StillRuns(p)) out.push_back(p);
    }
    return out;
  };
  // Servers whose death signal is SIGKILL at once; SIGTERM ones (nginx, the gateway, dockerd
  // stopping its engine) within their grace.
  EXPECT_TRUE(WaitFor([&] { return left().empty(); }, 5000 + Daemon::kKeeperGraceMs))
      << "still running after the test process was killed:" << Names(left());
  // The engine's folder (not a TempDir: its own sweep waits 10 minutes) once its engine is gone.
  for (const std::string& engine_dir : Lines(report, "docker-dir ")) {
    if (left().empty() && engine_dir.rfind("/tmp/allgo-docker.", 0) == 0) {
      UnmountUnder(engine_dir);
      std::error_code ec;
      fs::remove_all(engine_dir, ec);
    }
  }
}

TEST(HarnessCleanup, TempFoldersGoOnDieAndAfterSigkillButNotWhileTheOwnerRuns) {
  TempDir dir("allgo-harness");
  // Die(): the victim removes its own folders on the way out.
  {
    const std::string report = dir / "die.report";
    setenv("ALLGO_HARNESS_HOW", "die", 1);
    pid_t victim = StartVictim("MakesTempFoldersThenDies", report, dir / "die.log");
    int status = 0;
    waitpid(victim, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 99) << status << ReadFile(dir / "die.log");
    std::vector<std::string> folders = Lines(report, "folder ");
    EXPECT_GE(folders.size(), 5u) << "two TempDirs, MariaDB's, the namespace's two: " << ReadFile(report);
    for (const std::string& f : folders) {
      EXPECT_FALSE(fs::exists(f)) << f << " outlived Die()";
      EXPECT_FALSE(fs::exists(f + ".owner")) << f;
    }
  }
  // SIGKILL: the folders stay while the owner runs, then the next test start removes them.
  {
    const std::string report = dir / "kill.report";
    setenv("ALLGO_HARNESS_HOW", "kill", 1);
    pid_t victim = StartVictim("MakesTempFoldersThenDies", report, dir / "kill.log");
    ASSERT_TRUE(WaitFor([&] { return !Lines(report, "ready").empty(); }, 120000)) << ReadFile(dir / "kill.log");
    std::vector<std::string> folders = Lines(report, "folder ");
    EXPECT_GE(folders.size(), 5u) << "two TempDirs, MariaDB's, the namespace's two: " << ReadFile(report);
    // Another test starting while the owner runs: nothing of the owner's goes.
    pid_t other = StartVictim("MakesATempFolder", dir / "other.report", dir / "other.log");
    int status = 0;
    waitpid(other, &status, 0);
    ASSERT_FALSE(Lines(dir / "other.report", "done").empty()) << ReadFile(dir / "other.log");
    for (const std::string& f : folders) EXPECT_TRUE(fs::exists(f)) << f << " removed while its test runs";
    EXPECT_TRUE(fs::exists(dir.path())) << "our own folder";

    kill(victim, SIGKILL);
    waitpid(victim, &status, 0);
    for (const std::string& f : folders) EXPECT_TRUE(fs::exists(f)) << f;  // nobody ran yet
    other = StartVictim("MakesATempFolder", dir / "next.report", dir / "next.log");
    waitpid(other, &status, 0);
    ASSERT_FALSE(Lines(dir / "next.report", "done").empty()) << ReadFile(dir / "next.log");
    for (const std::string& f : folders) {
      EXPECT_FALSE(fs::exists(f)) << f << " left after its test was killed and another started";
      EXPECT_FALSE(fs::exists(f + ".owner")) << f;
    }
    EXPECT_TRUE(fs::exists(dir.path())) << "the folder of this running test";
  }
}

}  // namespace
}  // namespace allgo::test
