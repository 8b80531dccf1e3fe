// bench_bridge: throughput and latency of the sandbox bridge against local references
// measured in the same run (run as root: it builds the same private NSS view, MariaDB and
// bubblewrap sandbox as the integration tests).
//
//   build/bin/bench_bridge [--size-mib N] [--runs N]
//
// Prints a markdown table. Goals (issue 3): bridge throughput >= 50% of a plain pipe,
// <= 5 ms added per `allgo-shell -c true` compared with `sh -c true`.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <grp.h>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace {

using namespace allgo::test;
using Clock = std::chrono::steady_clock;

struct Identity {
  uid_t uid;
  gid_t gid;
  const char* name;  // $USER, as sshd sets it for a login
};

// Runs argv as `who` with stdin/stdout on /dev/null; returns the wall time in seconds, or a
// negative value when it failed.
double TimeOnce(const std::vector<std::string>& argv, Identity who) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (setgroups(0, nullptr) != 0 || setgid(who.gid) != 0 || setuid(who.uid) != 0) _exit(126);
    setenv("USER", who.name, 1);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? seconds : -1;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Best of `runs` (the least disturbed run on a shared machine) for a shell pipeline.
double BestSeconds(const std::string& script, Identity who, int runs) {
  double best = -1;
  for (int i = 0; i < runs; ++i) {
    double s = TimeOnce({"/bin/sh", "-c", script}, who);
    if (s < 0) {
      std::fprintf(stderr, "bench_bridge: failed: %s\n", script.c_str());
      std::exit(1);
    }
    if (best < 0 || s < best) best = s;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  long size_mib = 1024;
  int runs = 3;
  int latency_runs = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--size-mib") == 0) size_mib = std::atol(argv[i + 1]);
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--latency-runs") == 0) latency_runs = std::atoi(argv[i + 1]);
  }
  if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::printf("usage: bench_bridge [--size-mib N] [--runs N] [--latency-runs N]  (as root)\n");
    return 0;
  }

  EnterPrivateNssNamespace();
  TestDatabase& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("bench@example.org");
  uint32_t id = db.AddWebapp("bench", owner);
  Identity who{id + 2000, 65534, "bench"};

  TempDir tmp("allgo-bench-bridge");
  std::string sandboxes = tmp / "sandboxes";
  std::string bridge = sandboxes + "/bench";
  std::filesystem::create_directories(bridge);
  chmod(sandboxes.c_str(), 0755);
  if (chown(bridge.c_str(), who.uid, who.gid) != 0) return 1;
  WriteAllgoConfig(db.ConfigText("[sandbox]\ndir = " + sandboxes + "\n"));
  auto start_agent = [&](const std::string& dir, const std::string& log) {
    // --log-level warn keeps the per-session log lines out of the measurement.
    auto agent = std::make_unique<Daemon>(
        SandboxCommand(dir, {.agent_args = {"--log-level", "warn"}}),
        log);
    std::string sock = dir + "/agent.sock";
    auto deadline = Clock::now() + std::chrono::seconds(10);
    struct stat st;
    while (!(lstat(sock.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // bind → listen
    return agent;
  };
  auto agent = start_agent(bridge, tmp / "agent.log");

  std::string shell = Artifact("allgo-shell");
  std::string size = std::to_string(size_mib) + "M";
  double mib = static_cast<double>(size_mib);

  double plain_in = BestSeconds("head -c " + size + " /dev/zero | cat > /dev/null", who, runs);
  double bridge_in = BestSeconds("head -c " + size + " /dev/zero | " + shell + " -c 'cat > /dev/null'", who, runs);
  double plain_out = BestSeconds("sh -c 'head -c " + size + " /dev/zero' | cat > /dev/null", who, runs);
  double bridge_out = BestSeconds(shell + " -c 'head -c " + size + " /dev/zero' | cat > /dev/null", who, runs);

  // The stdio mode (docs/protocol.md): the same transfers through `allgo-sandbox-agent --stdio`
  // in the same kind of sandbox, one stream for data and control, driven by RunStdioSession
  // (allgo-stdio-client, which stands in for the sandbox gateway). As root: the client starts
  // the sandbox itself; each run includes starting it.
  std::vector<std::string> stdio_argv = SandboxCommand(tmp / "stdio", {.agent_args = {}});
  std::filesystem::create_directories(tmp / "stdio");
  stdio_argv.resize(stdio_argv.size() - 2);  // `--bridge-dir DIR`: not taken by --stdio
  std::string stdio_agent;
  for (const std::string& a : stdio_argv) stdio_agent += " '" + a + "'";
  stdio_agent += " --stdio --log-level warn";
  std::string client = Artifact("allgo-stdio-client");
  Identity root{0, 0, "root"};
  double stdio_in = BestSeconds("head -c " + size + " /dev/zero | " + client + " -c 'cat > /dev/null' --" + stdio_agent,
                                root, runs);
  double stdio_out = BestSeconds(client + " -c 'head -c " + size + " /dev/zero' --" + stdio_agent + " | cat > /dev/null",
                                 root, runs);

  std::vector<double> sh_times, bridge_times, getent_times;
  for (int i = 0; i < latency_runs; ++i) {
    // Not a goal, an explanation: the share of the NSS module's database round trip
    // (allgo-shell must learn its webapp name through getpwuid).
    getent_times.push_back(TimeOnce({"getent", "passwd", std::to_string(who.uid)}, who));
    sh_times.push_back(TimeOnce({"sh", "-c", "true"}, who));
    bridge_times.push_back(TimeOnce({shell, "-c", "true"}, who));
    if (sh_times.back() < 0 || bridge_times.back() < 0) {
      std::fprintf(stderr, "bench_bridge: a latency run failed\n%s", agent->Log().c_str());
      return 1;
    }
  }
  double sh_ms = Median(sh_times) * 1000, bridge_ms = Median(bridge_times) * 1000;
  double getent_ms = Median(getent_times) * 1000;

  std::printf("| measurement | reference | allgo-shell + agent | ratio / added | goal |\n");
  std::printf("|---|---|---|---|---|\n");
  std::printf("| stdin → `cat >/dev/null` (%ld MiB, best of %d) | plain pipe %.0f MiB/s | %.0f MiB/s | %.0f%% | ≥ 50%% |\n",
              size_mib, runs, mib / plain_in, mib / bridge_in, 100 * plain_in / bridge_in);
  std::printf("| `head -c %s /dev/zero` → stdout (best of %d) | plain pipe %.0f MiB/s | %.0f MiB/s | %.0f%% | ≥ 50%% |\n",
              size.c_str(), runs, mib / plain_out, mib / bridge_out, 100 * plain_out / bridge_out);
  std::printf("| stdin → `cat >/dev/null`, stdio mode (`agent --stdio`, one stream) | fifo bridge %.0f MiB/s | %.0f MiB/s | %.0f%% of the fifo bridge, %.0f%% of a pipe | ≥ 50%% of the fifo bridge (issue 11, through the gateway) |\n",
              mib / bridge_in, mib / stdio_in, 100 * bridge_in / stdio_in, 100 * plain_in / stdio_in);
  std::printf("| `head -c %s /dev/zero` → stdout, stdio mode | fifo bridge %.0f MiB/s | %.0f MiB/s | %.0f%% of the fifo bridge, %.0f%% of a pipe | ≥ 50%% of the fifo bridge (issue 11, through the gateway) |\n",
              size.c_str(), mib / bridge_out, mib / stdio_out, 100 * bridge_out / stdio_out, 100 * plain_out / stdio_out);
  std::printf("| `-c true` latency (median of %d) | `sh -c true` %.2f ms | %.2f ms | +%.2f ms | ≤ +5 ms |\n",
              latency_runs, sh_ms, bridge_ms, bridge_ms - sh_ms);
  std::printf("| of which: NSS lookup, `getent passwd %u` (median of %d) | | %.2f ms | | |\n",
              who.uid, latency_runs, getent_ms);
  agent->Stop(SIGTERM, 5000);
  return 0;
}
