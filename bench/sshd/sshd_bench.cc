// sshd_bench: allgo-sshd against a stock OpenSSH sshd, measured in the same run.
//
// Both servers serve the same webapp through the same NSS module (private namespace of the
// test support library, real MariaDB fixture); OpenSSH gets its keys from allgo-authkeys as
// AuthorizedKeysCommand (user allgo-authkeys, as conf/sshd_config.d), allgo-sshd looks them up in-process. The client is
// the system's OpenSSH client with its default key exchange (post-quantum when allgo-sshd is
// built on libssh >= 0.12); the latency is measured a second time with kex pinned to curve25519.
//
// Prints a markdown table: connect+auth+`true` latency (median, p95), 1 GiB download and
// upload throughput for every default cipher (median of --rounds, with the CPU per GiB of the
// server side and of the client, and the client's ceiling), memory per idle interactive (PTY)
// session (PSS and RSS of the server's processes), and N concurrent sessions.
// Then floods, with each server's *default* connection limits (a second pair of servers):
// 100 simultaneous logins (with the client's default kex and with curve25519 only; served, wall
// time, and the CPU time per login of the clients, the server, MariaDB and the sandbox agent),
// and a login while 200 idle + 20 slowloris connections are held open (time to the first
// success, against an unloaded login of the same run; server memory).
// ALLGO_BENCH_SERVER_PREFIX="perf record -o FILE --" (or strace, perf stat...) wraps allgo-sshd.
//
//   sshd_bench [--runs 50] [--gib 1] [--idle 20] [--concurrent 200] [--flood-only | --no-flood] [--hold S]
//
// With --sandboxes: allgo-sshd alone, the webapp's sessions in a plain local shell (no
// bridge), in a bubblewrap sandbox, and in a Docker container (Debian 12 image, private
// engine, docs/sandbox.md): login latency, download throughput, memory per idle PTY session
// (frontend processes plus the sandbox's), and the ratios, so the container's cost is a number.
//
// With --gateway (issue 11): the same Docker container through the local bridge and through
// allgo-sandbox-gateway (Engine API exec over TLS on loopback): login latency, download and
// upload throughput, frontend memory per idle session, and sessions spread over two nodes.
//
// With --forward (issue 19, forward_bench.cc, bench/sshd/forward.md): -L throughput into a
// bubblewrap sandbox against OpenSSH sshd's own -L and a session's stdout, the CPU of each
// process group, channel opens on a warm connection (with --gateway also through the docker
// backend), 200 concurrent checked forwards and the memory per idle forward.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "allgo/engine_client.h"
#include "bench_util.h"
#include "forward_bench.h"
#include "test_docker.h"
#include "test_gateway.h"
#include "test_support.h"

extern char** environ;

namespace allgo::bench {
namespace {

using test::Artifact;
using test::TempDir;
using test::TestDatabase;

// CPU seconds (user + system) of this process (RUSAGE_SELF) or of its reaped children, the
// ssh clients (RUSAGE_CHILDREN).
double RusageCpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Server {
  std::string name;
  int port = 0;
  std::unique_ptr<Child> process;
};

class Bench {
 public:
  Bench(int runs, double gib, int idle, int concurrent, bool bridge, int flood, int hold_s)
      : runs_(runs),
        bytes_(static_cast<long long>(gib * 1024 * 1024 * 1024)),
        idle_(idle),
        concurrent_(concurrent),
        bridge_(bridge),
        flood_(flood),
        hold_s_(hold_s) {}

  void set_cipher_rounds(int rounds) { cipher_rounds_ = rounds; }

  int Main() {
    if (!Setup()) return 1;
    if (flood_ == 2) return Floods();
    std::vector<Server*> servers = {&openssh_, &allgo_};
    std::printf("\n## allgo-sshd vs OpenSSH sshd (same machine, same run)\n\n");
    std::printf("client: OpenSSH with its default kex (but the rows saying curve25519-sha256); "
                "allgo-sshd on libssh %s; webapp via libnss_allgo, login shell %s; "
                "MariaDB max_connections 2000\n\n",
                ALLGO_LIBSSH_VERSION, bridge_ ? "allgo-shell → allgo-sandbox-agent in bwrap" : "/bin/sh (no bridge)");
    std::printf("| measurement | OpenSSH | allgo-sshd | ratio (allgo/OpenSSH) | goal |\n|---|---|---|---|---|\n");

    // Latency, interleaved so drift hits both equally: first each side's default key exchange
    // (post-quantum on both with libssh >= 0.12), then kex pinned to curve25519 on the client.
    for (const char* kex : {"", "curve25519-sha256"}) {
      kex_ = kex;
      std::map<Server*, std::vector<double>> lat;
      for (int i = 0; i < runs_; ++i) {
        for (Server* s : servers) {
          auto t0 = Clock::now();
          int rc = RunQuiet(Ssh(*s, "aes128-gcm@openssh.com", {"true"}));
          if (rc != 0) ++failures_[s];
          lat[s].push_back(Seconds(Clock::now() - t0) * 1000);
        }
      }
      std::string label = std::string("connect+auth+`true`, kex ") + (*kex ? kex : "default (post-quantum)");
      Row((label + " median (ms)").c_str(), Percentile(lat[&openssh_], 0.5), Percentile(lat[&allgo_], 0.5), "≤ 0.5", 1);
      Row((label + " p95 (ms)").c_str(), Percentile(lat[&openssh_], 0.95), Percentile(lat[&allgo_], 0.95), "", 1);
    }
    kex_.clear();

    // Every cipher the OpenSSH 9.2 client offers by default (`ssh -Q cipher` order), both ways:
    // issue 20 asks for >= 1.3x OpenSSH on each. Rounds alternate the servers so that load
    // drifts hit both; each row is the median round. The CPU rows (seconds per GiB: the whole
    // machine, the client, the server side = the rest, sandbox agent and helpers included on
    // both) need a quiet machine. The client's CPU per GiB gives its ceiling: the rate it could
    // reach with a core of its own and an infinitely fast server ("the client into a null
    // sink"). On this 2-core machine client and server share the cores, so the ratio to that
    // ceiling says how much of the way we are.
    for (const char* cipher : {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                               "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}) {
      std::string c = std::string(cipher).substr(0, std::string(cipher).find('@'));
      for (bool upload : {false, true}) {
        std::vector<Transfer> t[2];
        for (int round = 0; round < cipher_rounds_; ++round) {
          for (int i = 0; i < 2; ++i) t[i].push_back(Measure(*servers[i], cipher, upload));
        }
        Transfer m[2] = {MedianOf(t[0]), MedianOf(t[1])};
        std::string what = (upload ? "upload " : "download ") + c;
        Row((what + " (MB/s)").c_str(), m[0].mbps, m[1].mbps, "≥ 1.3", 0);
        Row(("  " + what + ": whole machine's CPU per GiB (s)").c_str(), m[0].machine_s, m[1].machine_s, "", 2);
        Row(("  " + what + ": client's CPU per GiB (s)").c_str(), m[0].client_s, m[1].client_s, "", 2);
        Row(("  " + what + ": server side's CPU per GiB (s)").c_str(), m[0].server_s, m[1].server_s, "", 2);
        double ceiling = m[1].client_s > 0 ? 1073741824.0 / m[1].client_s / 1e6 : 0;
        std::printf("|   %s: client ceiling (MB/s), allgo-sshd's share of it | %.0f | %.0f | %.2f× | |\n",
                    what.c_str(), ceiling, m[1].mbps, ceiling > 0 ? m[1].mbps / ceiling : 0.0);
        std::fflush(stdout);
      }
    }

    std::array<Mem, 2> idle[2];
    for (int i = 0; i < 2; ++i) idle[i] = IdleSessions(*servers[i]);
    Row("memory per idle PTY session, server processes, PSS (KiB)", idle[0][0].pss_kb / idle_,
        idle[1][0].pss_kb / idle_, "", 0);
    Row("memory per idle PTY session, server processes, RSS (KiB)", idle[0][0].rss_kb / idle_,
        idle[1][0].rss_kb / idle_, "", 0);
    // Issue 9's bar: what a session costs the frontend, the login shell (allgo-shell) included.
    Row("memory per idle PTY session incl. login shell, PSS (KiB)", idle[0][1].pss_kb / idle_,
        idle[1][1].pss_kb / idle_, "≤ 0.5", 0);

    int ok[2];
    Mem peak[2];
    for (int i = 0; i < 2; ++i) {
      ok[i] = Concurrent(*servers[i], &peak[i]);
      WaitIdle(*servers[i], 90);  // the next server must not meet this one's leftovers
    }
    std::printf("| %d concurrent sessions: succeeded | %d/%d | %d/%d | | %d/%d |\n", concurrent_, ok[0], concurrent_,
                ok[1], concurrent_, concurrent_, concurrent_);
    Row(("total server RSS with " + std::to_string(concurrent_) + " sessions (MiB)").c_str(), peak[0].rss_kb / 1024,
        peak[1].rss_kb / 1024, "", 0);
    Row(("total server PSS with " + std::to_string(concurrent_) + " sessions (MiB)").c_str(), peak[0].pss_kb / 1024,
        peak[1].pss_kb / 1024, "", 0);
    std::printf("\nlatency runs per server: %d (failures: OpenSSH %d, allgo-sshd %d); transfer size %.2f GiB\n", runs_,
                failures_[&openssh_], failures_[&allgo_], bytes_ / 1073741824.0);
    return flood_ == 1 ? Floods() : 0;
  }

  // Floods against a second pair of servers that keep their default connection limits.
  int Floods() {
    Server openssh, allgo;
    openssh.name = "OpenSSH";
    allgo.name = "allgo-sshd";
    if (!StartServers(&openssh, &allgo, "", "flood-")) return 1;
    std::vector<Server*> servers = {&openssh, &allgo};
    std::printf("\n## Floods, default limits (OpenSSH MaxStartups 10:30:100, LoginGraceTime 120; allgo-sshd "
                "max_startups 32:30:1000, per_source_max_startups 200, version_timeout 5, login_grace_time 30)\n\n");
    std::printf("| measurement | OpenSSH | allgo-sshd | ratio (allgo/OpenSSH) | goal |\n|---|---|---|---|---|\n");
    double unloaded[2], flood_ms[2];
    Burst burst[2][2];  // [server][0: default kex, 1: curve25519-sha256]
    int in[2];
    Mem mem[2];
    size_t procs[2];
    for (int i = 0; i < 2; ++i) {
      Server& s = *servers[i];
      // Reference: an unloaded login on this very server, median of 5.
      std::vector<double> ref;
      for (int k = 0; k < 5; ++k) {
        auto t0 = Clock::now();
        RunQuiet(Ssh(s, "aes128-gcm@openssh.com", {"true"}));
        ref.push_back(Seconds(Clock::now() - t0) * 1000);
      }
      std::sort(ref.begin(), ref.end());
      unloaded[i] = ref[2];
      // 100 logins at once from one client (a parallel scp/rsync script), with the client's
      // default kex (post-quantum) and again pinned to curve25519.
      for (int k = 0; k < 2; ++k) {
        kex_ = k == 0 ? "" : "curve25519-sha256";
        burst[i][k] = RunBurst(s);
      }
      kex_.clear();
      Clock::time_point t0;
      // 200 idle connections and 20 slowloris ones (a version line at one byte a second).
      std::vector<int> idle, slow;
      for (int k = 0; k < 200; ++k) idle.push_back(ConnectLoopback(s.port));
      for (int k = 0; k < 20; ++k) slow.push_back(ConnectLoopback(s.port));
      std::atomic<bool> stop{false};
      std::thread loris([&] {
        const std::string line = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
        for (size_t b = 0; b < line.size() && !stop; ++b) {
          for (int fd : slow) {
            if (fd >= 0) (void)!send(fd, &line[b], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
          }
          for (int t = 0; t < 10 && !stop; ++t) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      });
      std::this_thread::sleep_for(std::chrono::seconds(1));
      mem[i] = TreeMemory(s.process->pid(), &procs[i]);
      // Ten logins in a row while the flood is held (no retries).
      std::vector<double> lat;
      in[i] = 0;
      for (int k = 0; k < 10; ++k) {
        t0 = Clock::now();
        if (RunQuiet(Ssh(s, "aes128-gcm@openssh.com", {"-o", "ConnectTimeout=10", "true"})) == 0) {
          ++in[i];
          lat.push_back(Seconds(Clock::now() - t0) * 1000);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      std::sort(lat.begin(), lat.end());
      flood_ms[i] = lat.empty() ? 0 : lat[lat.size() / 2];
      stop = true;
      loris.join();
      for (int fd : idle) close(fd);
      for (int fd : slow) close(fd);
      WaitIdle(s, 150);
    }
    for (int k = 0; k < 2; ++k) {
      const Burst& o = burst[0][k];
      const Burst& a = burst[1][k];
      std::string kex = k == 0 ? "kex default (post-quantum)" : "kex curve25519-sha256";
      std::printf("| 100 simultaneous logins, %s: served | %d/100 | %d/100 | %.2f× | 100/100 |\n", kex.c_str(), o.served,
                  a.served, o.served > 0 ? static_cast<double>(a.served) / o.served : 0.0);
      Row(("100 simultaneous logins, " + kex + ": wall time until all ended (ms)").c_str(), o.wall_ms, a.wall_ms,
          "≤ 1500 ms", 0);
      // Where the CPU went, per login served (CPU time: what the work cost, whatever else the
      // machine ran meanwhile).
      Row("the same: CPU per login, ssh clients (ms)", o.PerLogin(o.client_s), a.PerLogin(a.client_s), "", 1);
      Row("the same: CPU per login, server processes (ms)", o.PerLogin(o.server_s), a.PerLogin(a.server_s), "",
          1);
      Row("the same: CPU per login, database server (ms)", o.PerLogin(o.db_s), a.PerLogin(a.db_s), "", 1);
      Row("the same: CPU per login, sandbox agent (ms)", o.PerLogin(o.agent_s), a.PerLogin(a.agent_s), "", 1);
    }
    Row("unloaded login, reference of this run (ms)", unloaded[0], unloaded[1], "", 1);
    std::printf("| 10 logins in a row under 200 idle + 20 slowloris connections: served | %d/10 | %d/10 | %.2f× | 10/10 |\n",
                in[0], in[1], in[0] > 0 ? static_cast<double>(in[1]) / in[0] : 0.0);
    Row("the same: median login of those served (ms)", flood_ms[0], flood_ms[1], "≤ 10000", 0);
    std::printf("| the same, relative to the unloaded login | %.2f× | %.2f× | | |\n",
                unloaded[0] > 0 ? flood_ms[0] / unloaded[0] : 0.0, unloaded[1] > 0 ? flood_ms[1] / unloaded[1] : 0.0);
    Row("server PSS under that flood, listener included (MiB)", mem[0].pss_kb / 1024, mem[1].pss_kb / 1024, "bounded", 1);
    Row("server processes under that flood", static_cast<double>(procs[0]), static_cast<double>(procs[1]), "", 0);
    return 0;
  }

 private:
  struct Burst {
    int served = 0;
    double wall_ms = 0;
    double client_s = 0, server_s = 0, db_s = 0, agent_s = 0;  // CPU seconds over the burst
    double PerLogin(double seconds) const { return served > 0 ? seconds * 1000 / served : 0; }
  };

  // 100 `ssh … true` started at once; served, wall time until all ended, and the CPU time
  // each side spent: the clients (reaped here), the server's connection processes (reaped by
  // its listener once it is idle again), the database server and the sandbox agent.
  Burst RunBurst(Server& s) {
    Burst b;
    pid_t db = TestDatabase::Get().server_pid();
    pid_t agent = agent_ ? agent_->pid() : -1;
    double client0 = RusageCpuSeconds(RUSAGE_CHILDREN), server0 = ProcCpuSeconds(s.process->pid(), true);
    double db0 = db > 0 ? ProcCpuSeconds(db, true) : 0, agent0 = agent > 0 ? TreeCpuSeconds(agent) : 0;
    auto t0 = Clock::now();
    std::vector<std::unique_ptr<Child>> clients;
    for (int k = 0; k < 100; ++k) {
      clients.push_back(std::make_unique<Child>(Ssh(s, "aes128-gcm@openssh.com", {"true"}), false, false));
    }
    for (auto& c : clients) b.served += c->Wait() == 0 ? 1 : 0;
    b.wall_ms = Seconds(Clock::now() - t0) * 1000;
    clients.clear();
    WaitIdle(s, 30);
    b.client_s = RusageCpuSeconds(RUSAGE_CHILDREN) - client0;
    b.server_s = ProcCpuSeconds(s.process->pid(), true) - server0;
    b.db_s = db > 0 ? ProcCpuSeconds(db, true) - db0 : 0;
    b.agent_s = agent > 0 ? TreeCpuSeconds(agent) - agent0 : 0;
    return b;
  }

  void Row(const char* what, double openssh, double allgo, const char* goal, int decimals) {
    char a[64], b[64];
    std::snprintf(a, sizeof(a), "%.*f", decimals, openssh);
    std::snprintf(b, sizeof(b), "%.*f", decimals, allgo);
    std::printf("| %s | %s | %s | %.2f× | %s |\n", what, a, b, openssh > 0 ? allgo / openssh : 0.0, goal);
    std::fflush(stdout);
  }

  std::vector<std::string> Ssh(const Server& s, const std::string& cipher, const std::vector<std::string>& tail,
                               bool tty = false) {
    std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                     "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o",
                                     "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "Ciphers=" + cipher, "-i",
                                     key_.private_path, "-p", std::to_string(s.port)};
    if (!kex_.empty()) argv.insert(argv.begin() + 1, {"-o", "KexAlgorithms=" + kex_});
    if (tty) argv.push_back("-tt");
    argv.push_back("webapp1@127.0.0.1");
    argv.insert(argv.end(), tail.begin(), tail.end());
    return argv;
  }

  double Download(Server& s, const char* cipher) {
    return DownloadMBps(Ssh(s, cipher, {"head -c " + std::to_string(bytes_) + " /dev/zero"}), bytes_, s.name);
  }

  double Upload(Server& s, const char* cipher) { return UploadMBps(Ssh(s, cipher, {"wc -c"}), bytes_, s.name); }

  struct Transfer {
    double mbps = 0, server_s = 0, client_s = 0, machine_s = 0;  // CPU seconds per GiB
  };

  // Busy CPU seconds of the whole machine (/proc/stat: every state but idle and iowait).
  static double MachineCpuSeconds() {
    std::ifstream f("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    f >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    return (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

  // One transfer of bytes_ with its CPU. The server side's is the whole machine's busy time
  // minus the client's (this process's only child reaped meanwhile, RUSAGE_CHILDREN) and this
  // process's own: counting the server's process trees instead missed most of OpenSSH's (its
  // per-connection processes' time does not all reach the listener's cutime), so this needs a
  // quiet machine, which the rates need anyway. The session is waited for until it is reaped.
  Transfer Measure(Server& s, const char* cipher, bool upload) {
    size_t agent_baseline = agent_ ? Descendants(agent_->pid()).size() : 0;
    double client0 = RusageCpuSeconds(RUSAGE_CHILDREN), self0 = RusageCpuSeconds(RUSAGE_SELF);
    double machine0 = MachineCpuSeconds();
    Transfer t;
    t.mbps = upload ? Upload(s, cipher) : Download(s, cipher);
    double client1 = RusageCpuSeconds(RUSAGE_CHILDREN);
    WaitIdle(s, 30);
    for (int i = 0; i < 100 && agent_ && Descendants(agent_->pid()).size() > agent_baseline; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    double machine1 = MachineCpuSeconds(), self1 = RusageCpuSeconds(RUSAGE_SELF);
    double gib = bytes_ / 1073741824.0;
    t.client_s = (client1 - client0) / gib;
    t.machine_s = (machine1 - machine0) / gib;
    t.server_s = t.machine_s - t.client_s - (self1 - self0) / gib;
    return t;
  }

  static Transfer MedianOf(std::vector<Transfer> t) {
    std::sort(t.begin(), t.end(), [](const Transfer& a, const Transfer& b) { return a.mbps < b.mbps; });
    return t[t.size() / 2];
  }

  // The server's processes, its listener included (a flood's queue lives in the listener).
  static Mem TreeMemory(pid_t listener, size_t* processes) {
    Mem m = ServerMemory(listener);
    std::ifstream f("/proc/" + std::to_string(listener) + "/smaps_rollup");
    std::string key;
    double value = 0;
    while (f >> key) {
      if (key == "Rss:" && f >> value) m.rss_kb += value;
      if (key == "Pss:" && f >> value) m.pss_kb += value;
    }
    *processes = Descendants(listener).size() + 1;
    return m;
  }

  // Until the server has no connection process left.
  void WaitIdle(Server& s, int timeout_s) {
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Clock::now() < deadline && !Descendants(s.process->pid()).empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  bool WaitForShells(pid_t listener, int count, int timeout_s) {
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Clock::now() < deadline) {
      int shells = 0;
      for (pid_t p : Descendants(listener)) {
        std::ifstream f("/proc/" + std::to_string(p) + "/comm");
        std::string comm;
        f >> comm;
        if (comm == "sh" || comm == "sleep" || comm == "allgo-shell") ++shells;
      }
      if (shells >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Per-session memory: [0] server processes only, [1] with the session's own processes.
  std::array<Mem, 2> IdleSessions(Server& s) {
    Mem base = ServerMemory(s.process->pid());
    std::vector<std::unique_ptr<Child>> clients;
    for (int i = 0; i < idle_; ++i) {
      clients.push_back(std::make_unique<Child>(Ssh(s, "aes128-gcm@openssh.com", {}, true), true, true));
    }
    if (!WaitForShells(s.process->pid(), idle_, 30)) std::fprintf(stderr, "%s: idle sessions did not all start\n", s.name.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    Mem with = ServerMemory(s.process->pid());
    Mem server_only = ServerMemory(s.process->pid(), false);
    if (getenv("ALLGO_BENCH_VERBOSE") != nullptr) {
      for (pid_t p : Descendants(s.process->pid())) {
        std::string comm, line, pss = "?", rss = "?";
        std::ifstream(("/proc/" + std::to_string(p) + "/comm").c_str()) >> comm;
        std::ifstream f("/proc/" + std::to_string(p) + "/smaps_rollup");
        while (std::getline(f, line)) {
          if (line.rfind("Pss:", 0) == 0) pss = line.substr(4);
          if (line.rfind("Rss:", 0) == 0) rss = line.substr(4);
        }
        std::fprintf(stderr, "%s pid %d %s: Rss %s Pss %s\n", s.name.c_str(), p, comm.c_str(), rss.c_str(), pss.c_str());
      }
    }
    if (hold_s_ > 0) {  // --hold: time to read each process's /proc/PID/smaps by hand
      std::fprintf(stderr, "%s: %d idle sessions held %d s under listener pid %d\n", s.name.c_str(), idle_, hold_s_,
                   s.process->pid());
      std::this_thread::sleep_for(std::chrono::seconds(hold_s_));
    }
    clients.clear();  // closes stdin (shell exits on EOF… or SIGTERM to the clients)
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return {Mem{server_only.pss_kb - base.pss_kb, server_only.rss_kb - base.rss_kb, 0},
            Mem{with.pss_kb - base.pss_kb, with.rss_kb - base.rss_kb, 0}};
  }

  int Concurrent(Server& s, Mem* peak) {
    std::vector<std::unique_ptr<Child>> clients;
    for (int i = 0; i < concurrent_; ++i) {
      clients.push_back(std::make_unique<Child>(Ssh(s, "aes128-gcm@openssh.com", {"sleep 10; echo ok"}), false, true));
    }
    WaitForShells(s.process->pid(), concurrent_, 60);
    *peak = ServerMemory(s.process->pid());
    int ok = 0;
    for (auto& c : clients) {
      char buf[16] = {0};
      ssize_t n = read(c->out(), buf, sizeof(buf) - 1);
      if (c->Wait() == 0 && n > 0 && std::string(buf) == "ok\n") ++ok;
    }
    if (ok < concurrent_) {
      std::string log = test::ReadFile(dir_ / (&s == &openssh_ ? "openssh.log" : "allgo-sshd.log"));
      std::fprintf(stderr, "%s: %d/%d concurrent sessions failed; end of its log:\n%s\n", s.name.c_str(),
                   concurrent_ - ok, concurrent_, log.substr(log.size() > 3000 ? log.size() - 3000 : 0).c_str());
    }
    return ok;
  }

  bool Setup() {
    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    // OpenSSH keeps the NSS module's database connection open in every connection process;
    // MariaDB's default of 151 connections would fail its 200-session run for that alone.
    db.Exec("SET GLOBAL max_connections = 2000");
    key_ = test::MakeKeyPair(dir_.path(), "client");
    uint32_t owner = db.AddUser("bench@example.org");
    db.AddKey(owner, key_.public_line);
    uint32_t webapp_id = db.AddWebapp("webapp1", owner);
    chmod(dir_.path().c_str(), 0755);
    std::string host_key = dir_ / "host_ed25519";
    if (RunQuiet({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key}) != 0) return false;

    // sshd insists on a root-owned helper path whose every directory is not group/world
    // writable: copy allgo-authkeys next to the config (/etc/allgo is the namespace's overlay).
    std::string authkeys = "/etc/allgo/allgo-authkeys";
    if (RunQuiet({"install", "-m", "0755", Artifact("allgo-authkeys"), authkeys}) != 0) {
      std::fprintf(stderr, "allgo-authkeys not built (%s)\n", Artifact("allgo-authkeys").c_str());
      return false;
    }
    openssh_.name = "OpenSSH";
    allgo_.name = "allgo-sshd";
    std::string login_shell = "/bin/sh", sandbox_section;
    if (bridge_) {
      // The real path: allgo-shell as login shell, the agent in a bubblewrap sandbox.
      std::string sandboxes = dir_ / "sandboxes", folder = sandboxes + "/webapp1";
      mkdir(sandboxes.c_str(), 0755);
      mkdir(folder.c_str(), 0755);
      if (chown(folder.c_str(), 2000 + webapp_id, 65534) != 0) return false;
      login_shell = Artifact("allgo-shell");
      sandbox_section = "[sandbox]\ndir = " + sandboxes + "\n";
      agent_ = std::make_unique<Child>(
          test::SandboxCommand(folder),
          false, false, dir_ / "agent.log");
      for (int i = 0; i < 100 && test::ReadFile(dir_ / "agent.log").find("listening on") == std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    sandbox_section_ = sandbox_section + "[nss]\nshell = " + login_shell + "\n";
    return StartServers(&openssh_, &allgo_, "300:30:400", "");
  }

  // Starts both servers on fresh ports; `limits` = max_startups for both (empty: each
  // server's default limits); `prefix` keeps their files apart.
  bool StartServers(Server* openssh, Server* allgo, const std::string& limits, const std::string& prefix) {
    TestDatabase& db = TestDatabase::Get();
    openssh->port = FreePort();
    allgo->port = FreePort();
    std::string host_key = dir_ / "host_ed25519";
    std::string authkeys = "/etc/allgo/allgo-authkeys";
    std::string allgo_config = prefix.empty() ? test::AllgoConfigPath() : dir_ / (prefix + "allgo-ssh.conf");
    std::string allgo_limits = limits.empty() ? "" : "max_startups = " + limits + "\nlogin_grace_time = 60\n";
    std::string openssh_limits = limits.empty() ? "" : "MaxStartups " + limits + "\nLoginGraceTime 60\n";
    std::string text = db.ConfigText(sandbox_section_ + "[sshd]\nlisten = 127.0.0.1:" + std::to_string(allgo->port) +
                                     "\nhost_key = " + host_key + "\nprivsep_chroot = " + (dir_ / "empty") +
                                     "\nlog_level = warn\n" + allgo_limits);
    if (prefix.empty()) {
      test::WriteAllgoConfig(text);
    } else {
      test::WriteFile(allgo_config, text);
    }
    std::string sshd_config = dir_ / (prefix + "sshd_config");
    test::WriteFile(sshd_config,
                    "Port " + std::to_string(openssh->port) + "\nListenAddress 127.0.0.1\nHostKey " + host_key +
                        "\nPidFile " + (dir_ / (prefix + "sshd.pid")) +
                        "\nUsePAM no\nAuthorizedKeysFile none\nAuthorizedKeysCommand " + authkeys + " --config " +
                        test::AllgoConfigPath() +
                        " %u\nAuthorizedKeysCommandUser allgo-authkeys\nPasswordAuthentication no\n"
                        "KbdInteractiveAuthentication no\nStrictModes no\n" + openssh_limits +
                        "LogLevel ERROR\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
                        "PrintMotd no\nPrintLastLog no\nUseDNS no\n");
    mkdir("/run/sshd", 0755);
    openssh->process = std::make_unique<Child>(std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", sshd_config},
                                               false, false, dir_ / (prefix + "openssh.log"));
    // ALLGO_BENCH_SERVER_PREFIX="strace -f -c -o FILE" (split on spaces) runs allgo-sshd under
    // a profiler for the whole run: counts per login are its totals over the logins made.
    std::vector<std::string> allgo_argv;
    if (const char* wrap = getenv("ALLGO_BENCH_SERVER_PREFIX")) {
      std::istringstream words(wrap);
      for (std::string w; words >> w;) allgo_argv.push_back(w);
    }
    allgo_argv.insert(allgo_argv.end(), {Artifact("allgo-sshd"), "--config", allgo_config});
    allgo->process = std::make_unique<Child>(allgo_argv, false, false, dir_ / (prefix + "allgo-sshd.log"));
    for (Server* s : {openssh, allgo}) {
      bool up = false;
      for (int i = 0; i < 100 && !up; ++i) {
        up = RunQuiet(Ssh(*s, "aes128-gcm@openssh.com", {"true"})) == 0;
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!up) {
        std::string log = test::ReadFile(dir_ / (prefix + (s == openssh ? "openssh.log" : "allgo-sshd.log")));
        std::fprintf(stderr, "%s does not accept logins; its log:\n%s\n", s->name.c_str(), log.c_str());
        return false;
      }
    }
    return true;
  }

  static int FreePort() {
    static int next = 0;
    if (next == 0) next = 30000 + getpid() % 20000;
    return next++;
  }

  int runs_;
  long long bytes_;
  int idle_;
  int concurrent_;
  bool bridge_;
  int flood_;  // 0: no floods, 1: after the rest, 2: floods only
  int hold_s_;  // seconds the idle sessions stay open after their measurement
  int cipher_rounds_ = 3;  // transfers per cipher, direction and server (the median is printed)
  std::string sandbox_section_;  // [sandbox] and [nss] of the allgo-sshd config
  TempDir dir_{"allgo-sshd-bench"};
  std::unique_ptr<Child> agent_;  // declared after dir_: stopped before the folder goes
  test::KeyPair key_;
  Server openssh_, allgo_;
  std::map<Server*, int> failures_;
  std::string kex_;  // client KexAlgorithms; empty: the client's default
};

// allgo-sshd with the sessions in a plain shell, bubblewrap, or a Docker container.
class SandboxBench {
 public:
  SandboxBench(int runs, double gib, int idle) : runs_(runs), bytes_(static_cast<long long>(gib * 1073741824)), idle_(idle) {}

  int Main() {
    if (!Setup()) return 1;
    std::string why;
    docker_ = test::TestDocker::Get(&why);
    std::string image = docker_ ? docker_->DebianImage(&why) : "";
    std::vector<std::string> kinds = {"plain", "bwrap"};
    if (!image.empty()) {
      kinds.push_back("docker");
    } else {
      std::fprintf(stderr, "sandbox bench: Docker cannot run here (%s): no Docker column\n", why.c_str());
    }
    std::map<std::string, std::array<double, 4>> results;  // median, p95, MB/s, KiB per session
    for (const std::string& kind : kinds) {
      if (!StartSandbox(kind, image) || !StartServer(kind)) return 1;
      std::vector<double> lat;
      for (int i = 0; i < runs_; ++i) {
        auto t0 = Clock::now();
        if (RunQuiet(Ssh({"true"})) != 0) ++failures_[kind];
        lat.push_back(Seconds(Clock::now() - t0) * 1000);
      }
      results[kind] = {Percentile(lat, 0.5), Percentile(lat, 0.95), Download(), IdleMemoryKb()};
      server_.reset();
      bwrap_.reset();
      container_.reset();
    }
    std::printf("\n## allgo-sshd: plain shell vs bubblewrap vs Docker sandbox (same machine, same run)\n\n");
    std::printf("| measurement | plain shell | bubblewrap | Docker | Docker/bubblewrap | Docker/plain |\n|---|---|---|---|---|---|\n");
    const char* names[] = {"connect+auth+`true` median (ms)", "connect+auth+`true` p95 (ms)",
                           "download aes128-gcm (MB/s)", "memory per idle PTY session, PSS (KiB)"};
    for (int i = 0; i < 4; ++i) {
      double plain = results["plain"][i], bwrap = results["bwrap"][i];
      bool has_docker = results.count("docker") > 0;
      double docker = has_docker ? results["docker"][i] : 0;
      std::printf("| %s | %.1f | %.1f | %s | %s | %s |\n", names[i], plain, bwrap,
                  has_docker ? Fixed(docker).c_str() : "n/a", has_docker && bwrap > 0 ? (Fixed(docker / bwrap, 2) + "×").c_str() : "",
                  has_docker && plain > 0 ? (Fixed(docker / plain, 2) + "×").c_str() : "");
    }
    std::printf("\nlatency runs per sandbox: %d (failures: plain %d, bubblewrap %d, Docker %d); transfer %.2f GiB; %d idle sessions\n",
                runs_, failures_["plain"], failures_["bwrap"], failures_["docker"], bytes_ / 1073741824.0, idle_);
    return 0;
  }

 private:
  static std::string Fixed(double v, int decimals = 1) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
  }

  bool Setup() {
    TestDatabase& db = TestDatabase::Get();
    uint32_t owner = AddBenchUser(dir_.path(), &key_);
    uid_ = 2000 + db.AddWebapp("webapp1", owner);
    chmod(dir_.path().c_str(), 0755);
    host_key_ = dir_ / "host_ed25519";
    if (RunQuiet({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key_}) != 0) return false;
    sandboxes_ = dir_ / "sandboxes";
    bridge_ = sandboxes_ + "/webapp1";
    mkdir(sandboxes_.c_str(), 0755);
    mkdir(bridge_.c_str(), 0755);
    // A reachable copy of the login shell (the build may be in a 0700 folder).
    shell_ = dir_ / "allgo-shell";
    return chown(bridge_.c_str(), uid_, 65534) == 0 && RunQuiet({"install", "-m", "0755", Artifact("allgo-shell"), shell_}) == 0 &&
           RunQuiet({"install", "-m", "0755", Artifact("allgo-shell-state"), dir_ / "allgo-shell-state"}) == 0;
  }

  bool StartSandbox(const std::string& kind, const std::string& image) {
    if (kind == "bwrap") {
      bwrap_ = std::make_unique<Child>(test::SandboxCommand(bridge_), false, false, dir_ / "agent.log");
    } else if (kind == "docker") {
      container_ = std::make_unique<test::DockerSandbox>(
          *docker_, test::DockerSandboxOptions{.name = "webapp1", .image = image, .bridge_dir = bridge_, .allow_uid = uid_});
      if (std::string error = container_->Start(); !error.empty()) {
        std::fprintf(stderr, "%s\n", error.c_str());
        return false;
      }
    }
    return true;
  }

  bool StartServer(const std::string& kind) {
    port_ = 30000 + (getpid() + ++servers_) % 20000;
    std::string shell = kind == "plain" ? "/bin/sh" : shell_;
    test::WriteAllgoConfig(TestDatabase::Get().ConfigText(
        "[sandbox]\ndir = " + sandboxes_ + "\nstart_wait = 5\n[nss]\nshell = " + shell + "\n[sshd]\nlisten = 127.0.0.1:" +
        std::to_string(port_) + "\nhost_key = " + host_key_ + "\nprivsep_chroot = " + (dir_ / "empty") +
        "\nlog_level = warn\nmax_startups = 300:30:400\n"));
    server_ = std::make_unique<Child>(std::vector<std::string>{Artifact("allgo-sshd"), "--config", test::AllgoConfigPath()},
                                      false, false, dir_ / ("allgo-sshd-" + kind + ".log"));
    for (int i = 0; i < 100; ++i) {
      if (RunQuiet(Ssh({"true"})) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::fprintf(stderr, "allgo-sshd (%s) does not accept logins; its log:\n%s\n", kind.c_str(),
                 test::ReadFile(dir_ / ("allgo-sshd-" + kind + ".log")).c_str());
    return false;
  }

  std::vector<std::string> Ssh(const std::vector<std::string>& tail, bool tty = false) const {
    std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                     "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
                                     "-o", "BatchMode=yes", "-o", "KexAlgorithms=curve25519-sha256", "-o",
                                     "Ciphers=aes128-gcm@openssh.com", "-i", key_.private_path, "-p", std::to_string(port_)};
    if (tty) argv.push_back("-tt");
    argv.push_back("webapp1@127.0.0.1");
    argv.insert(argv.end(), tail.begin(), tail.end());
    return argv;
  }

  double Download() {
    return DownloadMBps(Ssh({"head -c " + std::to_string(bytes_) + " /dev/zero"}), bytes_, "allgo-sshd");
  }

  // Every process serving the webapp: allgo-sshd's connection processes and login shells, and
  // the sandbox's (bwrap and what runs in it; the container's, as `docker top` lists them).
  std::vector<pid_t> ServingProcesses() {
    std::vector<pid_t> pids = Descendants(server_->pid());
    if (bwrap_) {
      std::vector<pid_t> more = Descendants(bwrap_->pid());
      pids.insert(pids.end(), more.begin(), more.end());
    }
    if (container_) {
      std::istringstream top(docker_->Docker({"top", "webapp1", "-eo", "pid"}).out);
      std::string line;
      std::getline(top, line);  // header
      while (std::getline(top, line)) {
        if (pid_t p = std::atoi(line.c_str()); p > 0) pids.push_back(p);
      }
    }
    return pids;
  }

  double IdleMemoryKb() {
    Mem base = MemoryOf(ServingProcesses());
    std::vector<std::unique_ptr<Child>> clients;
    for (int i = 0; i < idle_; ++i) clients.push_back(std::make_unique<Child>(Ssh({}, true), true, true));
    // Each idle session: a login shell in the sandbox (or on the frontend for "plain").
    auto shells = [&] {
      int n = 0;
      for (pid_t p : ServingProcesses()) {
        std::string comm;
        std::ifstream(("/proc/" + std::to_string(p) + "/comm").c_str()) >> comm;
        n += comm == "bash" || comm == "sh";
      }
      return n;
    };
    test::WaitFor([&] { return shells() >= idle_; }, 30000);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    Mem with = MemoryOf(ServingProcesses());
    clients.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return (with.pss_kb - base.pss_kb) / idle_;
  }

  int runs_;
  long long bytes_;
  int idle_;
  TempDir dir_{"allgo-sandbox-bench"};
  test::KeyPair key_;
  uid_t uid_ = 0;
  std::string host_key_, sandboxes_, bridge_, shell_;
  int port_ = 0, servers_ = 0;
  test::TestDocker* docker_ = nullptr;
  // Declared after dir_: stopped before the folder goes.
  std::unique_ptr<Child> bwrap_;
  std::unique_ptr<test::DockerSandbox> container_;
  std::unique_ptr<Child> server_;
  std::map<std::string, int> failures_;
};


// allgo-sshd with the sessions in the same Docker container reached two ways (issue 11):
// `[sandbox] backend = bridge` (allgo-shell ⇄ agent.sock in the shared bridge folder) and
// `backend = docker` (allgo-shell ⇄ allgo-sandbox-gateway ⇄ Engine API exec over TLS on
// loopback ⇄ `allgo-sandbox-agent --stdio`); then the gateway with sessions spread over two
// nodes. The container of webapp1 runs on node-a with its bridge folder and agent, so both
// backends reach the very same container; webapp2 runs on node-b.
class GatewayBench {
 public:
  GatewayBench(int runs, double gib, int idle, bool pin_nodes)
      : runs_(runs), bytes_(static_cast<long long>(gib * 1073741824)), idle_(idle), pin_nodes_(pin_nodes) {}

  int Main() {
    if (!Setup()) return 1;
    struct Result {
      double median = 0, p95 = 0, down = 0, up = 0, pss_kb = 0;
    };
    std::map<std::string, Result> results;
    std::vector<std::string> backends = {"bridge"};
    if (gateway_why_.empty()) backends.push_back("docker");
    for (const std::string& backend : backends) {
      if (!StartServer(backend)) return 1;
      Result& r = results[backend];
      std::vector<double> lat = Latencies({"webapp1"});
      r.median = Percentile(lat, 0.5);
      r.p95 = Percentile(lat, 0.95);
      r.down = Download("webapp1");
      r.up = Upload("webapp1");
      r.pss_kb = IdleFrontendPssKb(backend == "docker");
      if (backend == "docker") {
        exec_floor_ms_ = ExecFloorMs();
        exec_stream_mbps_ = ExecStreamMBps();
        exec_upload_mbps_ = ExecStreamUploadMBps();
        std::vector<double> spread = Latencies({"webapp1", "webapp2"});
        spread_median_ = Percentile(spread, 0.5);
        one_node_mbps_ = ParallelDownload({"webapp1", "webapp1", "webapp1", "webapp1"});
        two_nodes_mbps_ = ParallelDownload({"webapp1", "webapp2", "webapp1", "webapp2"});
        // Cold logins: the gateway again with `spares = 0`, so every login execs, as the first
        // login of a webapp (or one after spare_idle without any) does with spares on.
        if (!RestartGateway("spares = 0\n")) return 1;
        std::vector<double> cold = Latencies({"webapp1"});
        cold_median_ = Percentile(cold, 0.5);
        cold_p95_ = Percentile(cold, 0.95);
        // A webapp's first login with `prewarm = yes`: its container got a spare from a
        // prewarm round, nobody logged in for longer than the location cache lasts.
        if (!RestartGateway("prewarm = yes\nprewarm_every = 2\n")) return 1;
        std::vector<double> first = FirstLoginsPrewarmed();
        if (first.empty()) return 1;
        first_median_ = Percentile(first, 0.5);
        first_p95_ = Percentile(first, 0.95);
      }
      server_.reset();
    }
    const Result& b = results["bridge"];
    if (!gateway_why_.empty()) {
      std::printf("\n## allgo-sshd, local bridge into a container on a node (the gateway could not start: %s)\n\n"
                  "| measurement | bridge |\n|---|---|\n| login median (ms) | %.1f |\n| login p95 (ms) | %.1f |\n"
                  "| download aes128-gcm (MB/s) | %.1f |\n| upload aes128-gcm (MB/s) | %.1f |\n"
                  "| PSS per idle PTY session on the frontend (KiB) | %.1f |\n",
                  gateway_why_.c_str(), b.median, b.p95, b.down, b.up, b.pss_kb);
      return 1;
    }
    const Result& d = results["docker"];
    std::printf("\n## allgo-sshd: local bridge vs allgo-sandbox-gateway (same container, same machine, same run%s)\n\n",
                pin_text_.empty() ? "" : ("; " + pin_text_).c_str());
    std::printf("| measurement | bridge (agent.sock) | gateway (Engine API over TLS) | gateway − bridge | gateway/bridge | goal |\n"
                "|---|---|---|---|---|---|\n");
    auto row = [](const char* name, double bridge, double gateway, const char* goal) {
      std::printf("| %s | %.1f | %.1f | %+.1f | %.2f× | %s |\n", name, bridge, gateway, gateway - bridge,
                  bridge > 0 ? gateway / bridge : 0.0, goal);
    };
    row("login `ssh host true`, warm (the webapp's spare exec), median (ms)", b.median, d.median, "gateway adds ≤ 20 ms");
    row("login `ssh host true`, warm, p95 (ms)", b.p95, d.p95, "");
    row("login `ssh host true`, cold (no spare: a fresh exec, as a webapp's first login), median (ms)", b.median,
        cold_median_, "gateway adds ≤ 20 ms");
    row("login `ssh host true`, cold, p95 (ms)", b.p95, cold_p95_, "");
    row(("login `ssh host true`, a webapp's first ever, `prewarm = yes` (the spare a round made in its container; "
         "its location no longer cached), median of " + std::to_string(kFreshWebapps) + " webapps (ms)").c_str(),
        b.median, first_median_, "gateway adds ≤ 20 ms");
    row("login `ssh host true`, a webapp's first ever, `prewarm = yes`, p95 (ms)", b.p95, first_p95_, "");
    std::printf("| Engine API exec alone over TLS: create + start + `true` to its end, median (ms) | | %.1f | | | the floor of one exec per session |\n",
                exec_floor_ms_);
    row("download aes128-gcm (MB/s)", b.down, d.down, "≥ 0.50×");
    std::printf("| exec stream alone over TLS: `head -c` read by the Engine API client (MB/s) | | %.1f | | | the engine's side of the download path |\n",
                exec_stream_mbps_);
    row("upload aes128-gcm (MB/s)", b.up, d.up, "≥ 0.50×");
    std::printf("| exec stream alone over TLS: written into `head -c` by the Engine API client (MB/s) | | %.1f | | | the engine's side of the upload path |\n",
                exec_upload_mbps_);
    row("PSS per idle PTY session on the frontend (KiB)", b.pss_kb, d.pss_kb, "");
    std::printf("\n### the gateway with sessions spread over two nodes\n\n"
                "| measurement | node-a only | node-a and node-b | ratio |\n|---|---|---|---|\n");
    std::printf("| login median (ms), alternating webapps | %.1f | %.1f | %.2f× |\n", d.median, spread_median_,
                d.median > 0 ? spread_median_ / d.median : 0.0);
    std::printf("| 4 parallel downloads, aggregate (MB/s) | %.1f | %.1f | %.2f× |\n", one_node_mbps_, two_nodes_mbps_,
                one_node_mbps_ > 0 ? two_nodes_mbps_ / one_node_mbps_ : 0.0);
    std::printf("\nlatency runs per backend: %d (failures: bridge %d, gateway %d); transfer %.2f GiB each way; "
                "%d idle sessions; PSS = allgo-sshd's processes and allgo-shell (and the gateway's growth)\n",
                runs_, failures_["bridge"], failures_["docker"], bytes_ / 1073741824.0, idle_);
    bool latency_ok = d.median - b.median <= 20;
    bool cold_ok = cold_median_ - b.median <= 20;
    bool down_ok = b.down > 0 && d.down / b.down >= 0.5;
    bool up_ok = b.up > 0 && d.up / b.up >= 0.5;
    bool prewarmed_ok = first_median_ > 0 && first_median_ - b.median <= 20;
    std::printf("goals: login warm %s, login cold %s, first login with prewarm %s, download %s, upload %s\n",
                latency_ok ? "met" : "MISSED", cold_ok ? "met" : "MISSED", prewarmed_ok ? "met" : "MISSED",
                down_ok ? "met" : "MISSED", up_ok ? "met" : "MISSED");
    return 0;
  }

 private:
  bool Setup() {
    TestDatabase& db = TestDatabase::Get();
    uint32_t owner = AddBenchUser(dir_.path(), &key_);
    uid_t uid1 = 2000 + db.AddWebapp("webapp1", owner);
    db.AddWebapp("webapp2", owner);
    chmod(dir_.path().c_str(), 0755);
    host_key_ = dir_ / "host_ed25519";
    if (RunQuiet({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key_}) != 0) return false;
    sandboxes_ = dir_ / "sandboxes";
    std::string bridge = sandboxes_ + "/webapp1";
    mkdir(sandboxes_.c_str(), 0755);
    mkdir(bridge.c_str(), 0755);
    mkdir((dir_ / "run").c_str(), 0755);
    socket_ = dir_ / "run/gateway.sock";
    shell_ = dir_ / "allgo-shell";  // a reachable copy (the build may be in a 0700 folder)
    if (chown(bridge.c_str(), uid1, 65534) != 0 || RunQuiet({"install", "-m", "0755", Artifact("allgo-shell"), shell_}) != 0) {
      return false;
    }
    std::string why;
    // --pin-nodes: the engines (and so their containerd, shims and containers, which inherit
    // it) on the last CPU, everything started after them (the servers, the gateway, ssh, this
    // bench) on the others: the CPU split of nodes on other hosts than the frontend.
    cpu_set_t all, node_cpu, frontend_cpus;
    if (pin_nodes_) {
      if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2) {
        std::fprintf(stderr, "gateway bench: --pin-nodes needs at least 2 CPUs\n");
        return false;
      }
      CPU_ZERO(&node_cpu);
      frontend_cpus = all;
      for (int c = CPU_SETSIZE - 1; c >= 0; --c) {
        if (CPU_ISSET(c, &all)) {
          CPU_SET(c, &node_cpu);
          CPU_CLR(c, &frontend_cpus);
          pin_text_ = "nodes on CPU " + std::to_string(c) + ", frontend and client on the other " +
                      std::to_string(CPU_COUNT(&frontend_cpus));
          break;
        }
      }
      if (sched_setaffinity(0, sizeof node_cpu, &node_cpu) != 0) return false;
    }
    nodes_ = test::TestNodes::Start(2, "allgo-gateway", &why);
    if (!nodes_) {
      std::fprintf(stderr, "gateway bench: the Docker nodes cannot start: %s\n", why.c_str());
      return false;
    }
    for (int i = 0; i < 2; ++i) {
      std::string image = nodes_->node(i).DebianImage(&why);
      if (image.empty()) {
        std::fprintf(stderr, "gateway bench: %s\n", why.c_str());
        return false;
      }
      std::string name = "webapp" + std::to_string(i + 1);
      // webapp1 also gets its bridge folder and agent: the bridge backend's path into it.
      if (!StartContainer(i, {.name = name, .image = image, .bridge_dir = i == 0 ? bridge : "", .allow_uid = uid1})) {
        return false;
      }
    }
    // Webapps that never log in before the prewarm measurement, each with its container on
    // node-a: their first login ever is what `prewarm = yes` is for.
    for (int k = 1; k <= kFreshWebapps; ++k) {
      std::string name = "fresh" + std::to_string(k);
      db.AddWebapp(name, owner);
      if (!StartContainer(0, {.name = name, .image = nodes_->node(0).DebianImage(&why)})) return false;
    }
    if (pin_nodes_ && sched_setaffinity(0, sizeof frontend_cpus, &frontend_cpus) != 0) return false;
    // Without a gateway the bridge column is still measured (and the run fails at the end).
    gateway_why_ = StartGateway("");
    if (!gateway_why_.empty()) std::fprintf(stderr, "gateway bench: %s\n", gateway_why_.c_str());
    return true;
  }

  // A container on node `node`, kept until the bench ends; false (and why, on stderr) if it
  // does not start.
  bool StartContainer(int node, test::DockerSandboxOptions options) {
    containers_.push_back(std::make_unique<test::DockerSandbox>(nodes_->node(node), std::move(options)));
    if (std::string error = containers_.back()->Start(); !error.empty()) {
      std::fprintf(stderr, "gateway bench: %s\n", error.c_str());
      return false;
    }
    return true;
  }

  // The gateway with `docker_extra` lines added to its [docker] section: "" or why not.
  std::string StartGateway(const std::string& docker_extra) {
    gateway_.reset();
    gateway_ = std::make_unique<test::TestGateway>(TestDatabase::Get().MysqlConfigSection() +
                                                       "[sandbox]\nbackend = docker\n" +
                                                       nodes_->DockerSection(socket_) + docker_extra,
                                                   socket_, dir_.path());
    return gateway_->Start();
  }
  bool RestartGateway(const std::string& docker_extra) {
    std::string why = StartGateway(docker_extra);
    if (!why.empty()) std::fprintf(stderr, "gateway bench: restarting the gateway: %s\n", why.c_str());
    return why.empty();
  }

  bool StartServer(const std::string& backend) {
    backend_ = backend;
    port_ = 30000 + (getpid() + ++servers_) % 20000;
    test::WriteAllgoConfig(TestDatabase::Get().ConfigText(
        "[sandbox]\nbackend = " + backend + "\ndir = " + sandboxes_ + "\nstart_wait = 5\n" +
        nodes_->DockerSection(socket_) + "[nss]\nshell = " + shell_ + "\n[sshd]\nlisten = 127.0.0.1:" +
        std::to_string(port_) + "\nhost_key = " + host_key_ + "\nprivsep_chroot = " + (dir_ / "empty") +
        "\nlog_level = warn\nmax_startups = 300:30:400\n"));
    std::string log = dir_ / ("allgo-sshd-" + backend + ".log");
    server_ = std::make_unique<Child>(std::vector<std::string>{Artifact("allgo-sshd"), "--config", test::AllgoConfigPath()},
                                      false, false, log);
    for (int i = 0; i < 100; ++i) {
      if (RunQuiet(Ssh("webapp1", {"true"})) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::fprintf(stderr, "allgo-sshd (backend = %s) does not accept logins; its log:\n%s\ngateway log:\n%s\n",
                 backend.c_str(), test::ReadFile(log).c_str(), gateway_->log().c_str());
    return false;
  }

  std::vector<std::string> Ssh(const std::string& webapp, const std::vector<std::string>& tail, bool tty = false) const {
    std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                     "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
                                     "-o", "BatchMode=yes", "-o", "KexAlgorithms=curve25519-sha256", "-o",
                                     "Ciphers=aes128-gcm@openssh.com", "-i", key_.private_path, "-p", std::to_string(port_)};
    if (tty) argv.push_back("-tt");
    argv.push_back(webapp + "@127.0.0.1");
    argv.insert(argv.end(), tail.begin(), tail.end());
    return argv;
  }

  // What one exec costs the engine, without ssh, allgo-shell or the relay: the gateway's two
  // Engine API calls (each a TLS connection) and the process start in the container.
  double ExecFloorMs() {
    std::vector<double> ms;
    for (int i = 0; i < runs_; ++i) {
      auto t0 = Clock::now();
      if (ExecAlone({"true"}) < 0) continue;
      ms.push_back(Seconds(Clock::now() - t0) * 1000);
    }
    return Percentile(ms, 0.5);
  }

  // The exec stream alone over TLS (the engine's side of the gateway's download path):
  // `head -c bytes_ /dev/zero` read and discarded by the Engine API client.
  double ExecStreamMBps() {
    auto t0 = Clock::now();
    long long got = ExecAlone({"head", "-c", std::to_string(bytes_), "/dev/zero"});
    if (got < bytes_) std::fprintf(stderr, "exec stream incomplete: %lld bytes\n", got);  // frames add 8 bytes each
    return got < 0 ? 0 : bytes_ / Seconds(Clock::now() - t0) / 1e6;
  }

  // The other way: bytes_ written into `head -c bytes_ >/dev/null` through the exec stream
  // (TLS cannot half-close, so the command ends by count, as the agent's stdio EOF message does).
  double ExecStreamUploadMBps() {
    auto t0 = Clock::now();
    long long got = ExecAlone({"sh", "-c", "head -c " + std::to_string(bytes_) + " >/dev/null; echo done"}, bytes_);
    if (got < 0) return 0;
    return bytes_ / Seconds(Clock::now() - t0) / 1e6;
  }

  // Runs `cmd` in webapp1's container through the Engine API (TLS, node-a), writing `upload`
  // bytes to its stdin first (none: no stdin attached); the stream bytes read (stdcopy frames
  // included), -1 on an error.
  long long ExecAlone(const std::vector<std::string>& cmd, long long upload = 0) {
    if (!engine_) {
      engine::NodeOptions node{nodes_->node(0).tcp_url(), nodes_->ca(), nodes_->client_cert(), nodes_->client_key()};
      if (Status s = engine::EngineClient::Create(node, &engine_); !s.ok()) {
        std::fprintf(stderr, "gateway bench: %s\n", s.message().c_str());
        return -1;
      }
    }
    engine::ExecOptions options;
    options.cmd = cmd;
    options.attach_stdin = upload > 0;
    std::string id, chunk;
    std::unique_ptr<engine::ExecStream> stream;
    Status s = engine_->CreateExec("webapp1", options, &id);
    if (s.ok()) s = engine_->StartExec(id, false, &stream);
    const std::string block(1 << 16, 'x');
    for (long long left = upload; s.ok() && left > 0; left -= static_cast<long long>(block.size())) {
      s = stream->Write(std::string_view(block).substr(0, static_cast<size_t>(std::min<long long>(left, block.size()))),
                        std::chrono::seconds(30));
    }
    long long total = 0;
    while (s.ok() && (s = stream->Read(&chunk, 1 << 20, std::chrono::seconds(30))).ok() && !chunk.empty()) total += chunk.size();
    if (!s.ok()) {
      std::fprintf(stderr, "gateway bench: exec: %s\n", s.message().c_str());
      return -1;
    }
    return total;
  }

  // The gateway restarted with `prewarm = yes`; once a round put a spare in every fresh
  // webapp's container, and longer than the location cache lasts after it, one login per
  // fresh webapp (their first ever), back to back after one login to warm the machine.
  std::vector<double> FirstLoginsPrewarmed() {
    if (!RestartGateway("prewarm = yes\nprewarm_every = 2\n")) return {};
    const std::string all_ready = " " + std::to_string(kFreshWebapps + 2) + " with a spare";
    if (!test::WaitFor([&] { return gateway_->log().find(all_ready) != std::string::npos; }, 60000)) {
      std::fprintf(stderr, "gateway bench: prewarm did not make every spare; gateway log:\n%s\n", gateway_->log().c_str());
      return {};
    }
    std::this_thread::sleep_for(kLocationCacheExpiry);
    Latencies({"webapp1"}, 1);
    std::vector<std::string> fresh;
    for (int k = 1; k <= kFreshWebapps; ++k) fresh.push_back("fresh" + std::to_string(k));
    std::vector<double> lat = Latencies(fresh, kFreshWebapps);
    if (std::getenv("ALLGO_BENCH_VERBOSE") != nullptr) {
      std::fprintf(stderr, "gateway log (prewarm):\n%s\n", gateway_->log().c_str());
      for (double ms : lat) std::fprintf(stderr, "first login: %.1f ms\n", ms);
    }
    return lat;
  }

  // `runs_` logins, cycling through `webapps`; milliseconds each.
  std::vector<double> Latencies(const std::vector<std::string>& webapps, int runs = 0) {
    std::vector<double> lat;
    for (int i = 0; i < (runs > 0 ? runs : runs_); ++i) {
      auto t0 = Clock::now();
      if (RunQuiet(Ssh(webapps[i % webapps.size()], {"true"})) != 0) ++failures_[backend_];
      lat.push_back(Seconds(Clock::now() - t0) * 1000);
    }
    return lat;
  }

  double Download(const std::string& webapp) {
    return DownloadMBps(Ssh(webapp, {"head -c " + std::to_string(bytes_) + " /dev/zero"}), bytes_, webapp);
  }

  double Upload(const std::string& webapp) { return UploadMBps(Ssh(webapp, {"wc -c"}), bytes_, webapp); }

  // Downloads of bytes_/N each, all at once, one per entry of `webapps`: aggregate MB/s.
  double ParallelDownload(const std::vector<std::string>& webapps) {
    long long each = bytes_ / static_cast<long long>(webapps.size());
    std::vector<std::thread> threads;
    std::atomic<long long> total{0};
    auto t0 = Clock::now();
    for (const std::string& w : webapps) {
      threads.emplace_back([&, w] {
        Child c(Ssh(w, {"head -c " + std::to_string(each) + " /dev/zero"}), false, true);
        std::vector<char> buf(1 << 20);
        ssize_t n;
        long long got = 0;
        while ((n = read(c.out(), buf.data(), buf.size())) > 0) got += n;
        if (c.Wait() != 0 || got != each) std::fprintf(stderr, "%s parallel download incomplete: %lld\n", w.c_str(), got);
        total += got;
      });
    }
    for (auto& t : threads) t.join();
    return total.load() / Seconds(Clock::now() - t0) / 1e6;
  }

  // The frontend's cost of an idle PTY session: allgo-sshd's processes and allgo-shell, plus
  // (gateway) what the gateway grew by; the container's side is the same for both backends.
  double IdleFrontendPssKb(bool gateway) {
    auto pids = [&] {
      std::vector<pid_t> p = Descendants(server_->pid());
      if (gateway) {
        p.push_back(gateway_->pid());
        std::vector<pid_t> more = Descendants(gateway_->pid());
        p.insert(p.end(), more.begin(), more.end());
      }
      return p;
    };
    auto shells = [&] {
      int n = 0;
      for (pid_t p : Descendants(server_->pid())) {
        std::string comm;
        std::ifstream(("/proc/" + std::to_string(p) + "/comm").c_str()) >> comm;
        n += comm == "allgo-shell";
      }
      return n;
    };
    Mem base = MemoryOf(pids());
    std::vector<std::unique_ptr<Child>> clients;
    for (int i = 0; i < idle_; ++i) clients.push_back(std::make_unique<Child>(Ssh("webapp1", {}, true), true, true));
    test::WaitFor([&] { return shells() >= idle_; }, 60000);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the shells' prompts are out
    Mem with = MemoryOf(pids());
    clients.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return (with.pss_kb - base.pss_kb) / idle_;
  }

  int runs_;
  long long bytes_;
  int idle_;
  TempDir dir_{"allgo-gateway-bench"};
  test::KeyPair key_;
  std::string host_key_, sandboxes_, shell_, socket_, backend_, gateway_why_;
  int port_ = 0, servers_ = 0;
  double cold_median_ = 0, cold_p95_ = 0;
  static constexpr int kFreshWebapps = 12;
  // Longer than the gateway's location cache (10 s): the login asks the node again.
  static constexpr std::chrono::seconds kLocationCacheExpiry{11};
  double first_median_ = 0, first_p95_ = 0;
  bool pin_nodes_ = false;
  std::string pin_text_;
  double spread_median_ = 0, one_node_mbps_ = 0, two_nodes_mbps_ = 0, exec_floor_ms_ = 0, exec_stream_mbps_ = 0,
         exec_upload_mbps_ = 0;
  std::unique_ptr<engine::EngineClient> engine_;
  std::map<std::string, int> failures_;
  // Declared after dir_: stopped before the folder goes; the server before the gateway before
  // the containers before their engines.
  std::unique_ptr<test::TestNodes> nodes_;
  std::vector<std::unique_ptr<test::DockerSandbox>> containers_;
  std::unique_ptr<test::TestGateway> gateway_;
  std::unique_ptr<Child> server_;
};

}  // namespace
}  // namespace allgo::bench

int main(int argc, char** argv) {
  CLI::App app{"sshd_bench: allgo-sshd against a stock OpenSSH sshd on this machine (run as root)"};
  int runs = 50, idle = 20, concurrent = 200;
  double gib = 1;
  app.add_option("--runs", runs, "connect+auth+true runs per server")->check(CLI::PositiveNumber);
  app.add_option("--gib", gib, "GiB per throughput transfer")->check(CLI::PositiveNumber);
  app.add_option("--idle", idle, "idle PTY sessions for the memory measurement")->check(CLI::PositiveNumber);
  app.add_option("--concurrent", concurrent, "concurrent sessions")->check(CLI::PositiveNumber);
  bool no_bridge = false, flood_only = false, no_flood = false;
  app.add_flag("--no-bridge", no_bridge, "webapps log in with /bin/sh instead of allgo-shell + agent");
  app.add_flag("--flood-only", flood_only, "only the flood measurements (default limits of each server)");
  app.add_flag("--no-flood", no_flood, "skip the flood measurements");
  int hold = 0;
  app.add_option("--hold", hold,
                 "keep each server's idle sessions open SECONDS after measuring them (prints the listener pid: "
                 "read the processes' /proc/PID/smaps meanwhile; ALLGO_BENCH_VERBOSE=1 lists their PSS)")
      ->check(CLI::NonNegativeNumber);
  bool sandboxes = false;
  app.add_flag("--sandboxes", sandboxes,
               "allgo-sshd only: plain shell vs bubblewrap vs Docker sandbox (uses --runs, --gib, --idle)");
  bool pin_nodes = false;
  app.add_flag("--pin-nodes", pin_nodes,
               "with --gateway: the Docker engines and their containers on the last CPU, the frontend and the client "
               "on the others (nodes on other hosts, as deployed)");
  bool gateway = false;
  app.add_flag("--gateway", gateway,
               "allgo-sshd only: the local bridge vs allgo-sandbox-gateway into the same Docker container, "
               "and sessions spread over two nodes (uses --runs, --gib, --idle)");
  bool forward = false;
  allgo::bench::ForwardBenchOptions fwd;
  app.add_flag("--forward", forward,
               "forwarding (issue 19): allgo-sshd -L into a bubblewrap sandbox vs OpenSSH sshd's own -L and vs a "
               "session's stdout; channel opens; --concurrent channels at once and memory per idle forward "
               "(uses --gib, --concurrent, --rounds, --opens, --cipher)");
  app.add_option("--rounds", fwd.rounds,
                 "transfers per kind and direction, median printed (--forward's rows and the cipher rows)")
      ->check(CLI::PositiveNumber);
  app.add_option("--opens", fwd.opens, "with --forward: channel opens on a warm connection")->check(CLI::PositiveNumber);
  app.add_option("--payload-kib", fwd.payload_kib, "with --forward: KiB echoed through each concurrent channel")
      ->check(CLI::PositiveNumber);
  app.add_option("--cipher", fwd.cipher, "with --forward: the ssh client's cipher");
  int serve_port = 0;
  std::string target_name = "target";
  app.add_option("--serve-forward-target", serve_port, "(internal) run --forward's target on 127.0.0.1:PORT");
  app.add_option("--target-name", target_name, "(internal) the name the target answers with");
  app.set_version_flag("--version", "sshd_bench 1");
  CLI11_PARSE(app, argc, argv);
  if (serve_port > 0) allgo::bench::ServeForwardTarget(serve_port, target_name);
  allgo::test::EnterPrivateNssNamespace();
  signal(SIGPIPE, SIG_IGN);
  if (forward) {
    fwd.gib = gib;
    fwd.concurrent = concurrent;
    fwd.gateway = gateway;
    int rc = allgo::bench::RunForwardBench(fwd);
    if (auto* docker = allgo::test::TestDocker::Get(nullptr)) docker->Stop();
    return rc;
  }
  if (gateway) {
    int rc = allgo::bench::GatewayBench(runs, gib, idle, pin_nodes).Main();
    return rc;
  }
  if (sandboxes) {
    allgo::bench::SandboxBench bench(runs, gib, idle);
    int rc = bench.Main();
    if (auto* docker = allgo::test::TestDocker::Get(nullptr)) docker->Stop();
    return rc;
  }
  allgo::bench::Bench bench(runs, gib, idle, concurrent, !no_bridge, flood_only ? 2 : no_flood ? 0 : 1, hold);
  bench.set_cipher_rounds(fwd.rounds);
  return bench.Main();
}
