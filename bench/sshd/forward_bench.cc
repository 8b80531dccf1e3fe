// sshd_bench --forward: forwarding through allgo-sshd (bridge backend) into a bubblewrap
// sandbox with its own network namespace, against stock OpenSSH sshd forwarding from its own
// frontend (AllowTcpForwarding yes, the key from a plain file: allgo-authkeys never allows
// it), same ssh client, same cipher, same target program; and against a session's
// stdout/stdin through the same allgo-sshd backend. Everything in one run:
//   1. -L throughput each way: allgo -L / OpenSSH -L (goal ≥ 1.2×), allgo -L / session (≥ 0.9×),
//      and the CPU per GiB of each process group (client, server, sandbox side, target);
//   2. opening a forwarded channel on a warm connection: p50 and p90 of `opens` opens, from the
//      connect to the local -L port to the target's first line (goal p50 ≤ 5 ms); with
//      --gateway also through the docker gateway backend (goal ≤ 10 ms);
//   3. `concurrent` forwarded channels at once on one new connection, each echoing its own
//      bytes (checked), held idle before and after: memory per idle forward of the
//      connection's server-side processes (allgo: monitor, network child, the agent and its
//      stream server; OpenSSH: its connection's processes).
// The target (ServeForwardTarget) is this binary; it answers "target sandbox", "target
// frontend" (or, perl in the container, "target container"), so each forward proves where it
// landed. Results and how to read them: bench/sshd/forward.md.
#include "forward_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "test_docker.h"
#include "test_gateway.h"
#include "test_support.h"

namespace allgo::bench {
namespace {

using test::Artifact;
using test::TestDatabase;

// Milliseconds with two decimals.
std::string Ms(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads up to and including '\n' (at most 200 bytes) within timeout_ms; the line without it,
// or "" on EOF, error or timeout. Reads one byte at a time: nothing after the line is taken.
std::string ReadLine(int fd, int timeout_ms) {
  std::string line;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (line.size() < 200) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || poll(&p, 1, left) <= 0) return "";
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n <= 0) return "";
    if (c == '\n') return line;
    line.push_back(c);
  }
  return "";
}

// One connection of the target.
void ServeOne(int fd, const std::string& name) {
  std::string banner = "target " + name + "\n";
  std::string line;
  if (WriteAll(fd, banner.data(), banner.size())) line = ReadLine(fd, 600000);
  std::vector<char> buf(1 << 20, 'z');
  if (line.size() > 2 && line[0] == 'D') {
    long long left = std::atoll(line.c_str() + 2);
    while (left > 0) {
      size_t n = static_cast<size_t>(std::min<long long>(left, static_cast<long long>(buf.size())));
      if (!WriteAll(fd, buf.data(), n)) break;
      left -= static_cast<long long>(n);
    }
    shutdown(fd, SHUT_WR);
    while (read(fd, buf.data(), buf.size()) > 0) {
    }
  } else if (line.size() > 2 && line[0] == 'U') {
    long long want = std::atoll(line.c_str() + 2), got = 0;
    ssize_t n;
    while (got < want && (n = read(fd, buf.data(), buf.size())) > 0) got += n;
    std::string answer = std::to_string(got) + "\n";
    WriteAll(fd, answer.data(), answer.size());
    while (read(fd, buf.data(), buf.size()) > 0) {
    }
  } else if (line == "E") {
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) {
      if (!WriteAll(fd, buf.data(), static_cast<size_t>(n))) break;
    }
  }
  close(fd);
}

// The bytes channel `i` of the concurrency check carries: its number, then a xorshift
// sequence seeded by it, so that bytes crossed between channels are caught.
std::string Payload(int i, size_t size) {
  std::string p = "channel " + std::to_string(i) + "\n";
  uint32_t x = 2463534242u ^ static_cast<uint32_t>(i * 2654435761u);
  while (p.size() < size) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p.push_back(static_cast<char>(x & 0xff));
  }
  p.resize(size);
  return p;
}

// Sends `payload` on `fd` (after the "E" request) and reads it back while sending (poll, both
// ways at once: no deadlock whatever the buffers); true when every byte came back in order.
bool EchoCheck(int fd, const std::string& payload, int timeout_ms) {
  if (!WriteAll(fd, "E\n", 2)) return false;
  std::string back;
  size_t sent = 0;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<char> buf(64 * 1024);
  while (back.size() < payload.size()) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < payload.size() ? POLLOUT : 0)), 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || poll(&p, 1, left) <= 0) return false;
    if ((p.revents & POLLOUT) && sent < payload.size()) {
      ssize_t w = send(fd, payload.data() + sent, std::min<size_t>(payload.size() - sent, 16384), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) sent += static_cast<size_t>(w);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n == 0) return false;
      if (n > 0) back.append(buf.data(), static_cast<size_t>(n));
    }
  }
  return back == payload;
}

// Where one transfer's CPU went (seconds).
struct Cpu {
  double client = 0;   // the ssh client
  double server = 0;   // sshd / allgo-sshd: every process of the server
  double sandbox = 0;  // bwrap, the agent and its stream server; the target excluded
  double target = 0;   // the forwards' target
  Cpu operator-(const Cpu& o) const { return {client - o.client, server - o.server, sandbox - o.sandbox, target - o.target}; }
  Cpu& operator+=(const Cpu& o) {
    client += o.client, server += o.server, sandbox += o.sandbox, target += o.target;
    return *this;
  }
};

// A server under test: stock OpenSSH or allgo-sshd, with an `ssh -N -L` client kept connected.
struct Side {
  std::string name;
  std::string user = "webapp1";
  std::string log;     // the server's log file
  std::string target;  // the banner its forwards must reach: "target frontend" / "target sandbox"
  int port = 0;        // the server's
  int local = 0;       // the -L client's local port
  std::unique_ptr<test::Daemon> server;
  std::unique_ptr<test::Daemon> client;
  // The connection's server-side processes (the memory measurement).
  std::function<std::vector<pid_t>()> processes;
};

// The memory of a connection's server-side processes at one moment.
struct Snapshot {
  Mem mem;
  std::map<std::string, double> by_name;  // PSS (KiB) by process name
};

struct Concurrency {
  int correct = 0;
  double wall_ms = 0;  // open all and echo through all
  Snapshot base;       // no forward open
  Snapshot fresh;      // every forward open, only the target's first line through it
  Snapshot used;       // every forward open, after its echo
};

class ForwardBench {
 public:
  explicit ForwardBench(const ForwardBenchOptions& o) : o_(o), bytes_(static_cast<long long>(o.gib * 1073741824.0)) {}

  int Main() {
    load_start_ = LoadAverage();
    if (!Setup()) return 1;
    for (Side* s : {&openssh_, &allgo_}) {
      if (!StartClient(*s)) return 1;
    }
    // 1. Throughput, rounds interleaved so that drift hits every kind alike; for the -L
    //    transfers also the CPU each process group used (robust to other load on the machine,
    //    unlike the rates). Not for sessions: their login shell and command end with them, and
    //    a parent that does not wait() for them takes their CPU time along.
    std::map<std::string, std::vector<double>> mbps;
    std::map<std::string, Cpu> cpu;
    auto measure = [&](const std::string& key, const std::function<double()>& transfer) {
      Cpu before = CpuNow();
      mbps[key].push_back(transfer());
      cpu[key] += CpuNow() - before;
    };
    const std::string size = std::to_string(bytes_);
    for (int r = 0; r < o_.rounds; ++r) {
      for (Side* s : {&openssh_, &allgo_}) {
        measure(s->name + " down", [&] { return ForwardDownload(*s); });
        measure(s->name + " up", [&] { return ForwardUpload(*s); });
      }
      mbps["session down"].push_back(
          DownloadMBps(Ssh(allgo_.port, {"head -c " + size + " /dev/zero"}), bytes_, "session"));
      mbps["session up"].push_back(UploadMBps(Ssh(allgo_.port, {"wc -c"}), bytes_, "session"));
    }
    // 2. Opens on the warm connections.
    std::map<std::string, std::vector<double>> opens;
    for (int i = 0; i < o_.opens; ++i) {
      for (Side* s : {&openssh_, &allgo_}) opens[s->name].push_back(OpenMs(*s));
    }
    // 3. Concurrent channels, held idle before and after their data.
    std::map<std::string, Concurrency> conc;
    for (Side* s : {&openssh_, &allgo_}) conc[s->name] = Concurrent(*s);
    // 4. Opens through the docker gateway backend.
    if (o_.gateway && StartGatewaySide()) {
      for (int i = 0; i < o_.opens; ++i) opens[gateway_side_.name].push_back(OpenMs(gateway_side_));
    }

    std::printf("\n## Forwarding: allgo-sshd (bridge backend, bubblewrap sandbox with its own netns) vs OpenSSH sshd's own -L\n\n");
    std::printf("client: OpenSSH %s, cipher %s, kex curve25519-sha256; transfers %.2f GiB each way, median of %d; "
                "target: a loopback server (sandbox's for allgo-sshd, frontend's for OpenSSH)\n\n",
                ClientVersion().c_str(), o_.cipher.c_str(), bytes_ / 1073741824.0, o_.rounds);
    std::printf("| direction | OpenSSH -L (MB/s) | allgo-sshd -L (MB/s) | allgo-sshd session (MB/s) | "
                "allgo -L / OpenSSH -L | allgo -L / session | goals |\n|---|---|---|---|---|---|---|\n");
    bool ok = true;
    for (const char* dir : {"down", "up"}) {
      double ref = Percentile(mbps[std::string("OpenSSH ") + dir], 0.5);
      double fwd = Percentile(mbps[std::string("allgo-sshd ") + dir], 0.5);
      double ses = Percentile(mbps[std::string("session ") + dir], 0.5);
      double r1 = ref > 0 ? fwd / ref : 0, r2 = ses > 0 ? fwd / ses : 0;
      ok = ok && r1 >= 1.2 && r2 >= 0.9;
      std::printf("| %s | %.1f | %.1f | %.1f | %.2f× | %.2f× | ≥ 1.2× %s, ≥ 0.9× %s |\n",
                  std::string(dir) == "down" ? "download (target → client)" : "upload (client → target)", ref, fwd, ses,
                  r1, r2, r1 >= 1.2 ? "met" : "MISSED", r2 >= 0.9 ? "met" : "MISSED");
    }
    std::printf("\nall rounds (MB/s):");
    for (auto& [k, v] : mbps) {
      std::printf(" %s", k.c_str());
      for (double x : v) std::printf(" %.0f", x);
      std::printf(";");
    }
    std::printf("\n\nCPU per GiB moved through -L (s, user + system, all rounds / GiB moved):\n\n"
                "| transfer | ssh client | server processes | sandbox side (agent; target excluded) | target | total |\n"
                "|---|---|---|---|---|---|\n");
    const double gib_moved = bytes_ * static_cast<double>(o_.rounds) / 1073741824.0;
    for (const char* key : {"OpenSSH down", "allgo-sshd down", "OpenSSH up", "allgo-sshd up"}) {
      const Cpu& c = cpu[key];
      std::printf("| %s -L | %.2f | %.2f | %.2f | %.2f | %.2f |\n", key, c.client / gib_moved, c.server / gib_moved,
                  c.sandbox / gib_moved, c.target / gib_moved, (c.client + c.server + c.sandbox + c.target) / gib_moved);
    }
    const std::vector<double>& gw = opens[gateway_side_.name];
    std::printf("\n| open a forwarded channel on a warm connection (connect → target's first line), %d opens | OpenSSH -L | "
                "allgo-sshd -L (bridge) | ratio | allgo-sshd -L (docker gateway) | goal |\n|---|---|---|---|---|---|\n",
                o_.opens);
    for (auto [label, p] : {std::pair{"p50 (ms)", 0.5}, std::pair{"p90 (ms)", 0.9}, std::pair{"max (ms)", 1.0}}) {
      double a = Percentile(opens["OpenSSH"], p), b = Percentile(opens["allgo-sshd"], p), g = Percentile(gw, p);
      bool goal = p == 0.5;
      if (goal) ok = ok && b <= 5 && (gw.empty() || g <= 10);
      std::string gateway = gw.empty() ? "not measured" : Ms(g);
      std::string goals = !goal ? "" : std::string(b <= 5 ? "bridge ≤ 5 ms: met" : "bridge ≤ 5 ms: MISSED") +
                                           (gw.empty() ? "" : g <= 10 ? ", gateway ≤ 10 ms: met" : ", gateway ≤ 10 ms: MISSED");
      std::printf("| %s | %.2f | %.2f | %.2f× | %s | %s |\n", label, a, b, a > 0 ? b / a : 0, gateway.c_str(), goals.c_str());
    }
    auto failed_opens = [](const std::vector<double>& v) { return std::count(v.begin(), v.end(), 1e9); };
    std::printf("\nfailed opens: OpenSSH %ld, allgo-sshd bridge %ld, gateway %ld\n",
                static_cast<long>(failed_opens(opens["OpenSSH"])), static_cast<long>(failed_opens(opens["allgo-sshd"])),
                static_cast<long>(failed_opens(gw)));
    const Concurrency& co = conc["OpenSSH"];
    const Concurrency& ca = conc["allgo-sshd"];
    int n = o_.concurrent;
    ok = ok && ca.correct == n;
    std::printf("\n| %d forwarded channels at once on one connection, %d KiB echoed each | OpenSSH -L | allgo-sshd -L | "
                "ratio | goal |\n|---|---|---|---|---|\n", n, o_.payload_kib);
    std::printf("| correct (own bytes back, in order) | %d/%d | %d/%d | | %d/%d |\n", co.correct, n, ca.correct, n, n, n);
    std::printf("| wall time: all opened and echoed (ms) | %.0f | %.0f | %.2f× | |\n", co.wall_ms, ca.wall_ms,
                co.wall_ms > 0 ? ca.wall_ms / co.wall_ms : 0);
    auto per = [n](const Snapshot& with, const Snapshot& base, bool pss) {
      return (pss ? with.mem.pss_kb - base.mem.pss_kb : with.mem.rss_kb - base.mem.rss_kb) / n;
    };
    auto mem_row = [&](const char* label, const Snapshot Concurrency::*when, bool pss) {
      double a = per(co.*when, co.base, pss), b = per(ca.*when, ca.base, pss);
      std::printf("| %s | %.1f | %.1f | %.2f× | |\n", label, a, b, a > 0 ? b / a : 0);
    };
    mem_row("memory per idle forward, just opened (target's first line read), PSS (KiB)", &Concurrency::fresh, true);
    mem_row("the same, RSS (KiB)", &Concurrency::fresh, false);
    mem_row("memory per idle forward after its echo, PSS (KiB)", &Concurrency::used, true);
    mem_row("the same, RSS (KiB)", &Concurrency::used, false);
    std::printf("| the connection's server-side PSS: no forward → %d just opened → after the echo (MiB) | %.2f → %.2f → %.2f "
                "| %.2f → %.2f → %.2f | | |\n", n, co.base.mem.pss_kb / 1024, co.fresh.mem.pss_kb / 1024,
                co.used.mem.pss_kb / 1024, ca.base.mem.pss_kb / 1024, ca.fresh.mem.pss_kb / 1024, ca.used.mem.pss_kb / 1024);
    std::printf("| its processes | %d | %d | | |\n", co.used.mem.processes, ca.used.mem.processes);
    for (const Concurrency* c : {&co, &ca}) {
      std::printf("\n%s, PSS by process name, no forward → %d just opened → after the echo (KiB):",
                  c == &co ? "OpenSSH" : "allgo-sshd", n);
      for (auto& [name, kb] : c->used.by_name) {
        auto at = [&](const Snapshot& snap) {
          auto it = snap.by_name.find(name);
          return it == snap.by_name.end() ? 0.0 : it->second;
        };
        std::printf(" %s %.0f → %.0f → %.0f;", name.c_str(), at(c->base), at(c->fresh), kb);
      }
    }
    std::printf("\n\nmachine: %u CPUs, load average %s at the start, %s at the end\n",
                std::thread::hardware_concurrency(), load_start_.c_str(), LoadAverage().c_str());
    std::printf("\ngoals: %s\n", ok ? "all met" : "some MISSED (see the rows)");
    return 0;
  }

 private:
  bool Setup() {
    TestDatabase& db = TestDatabase::Get();
    owner_ = AddBenchUser(dir_.path(), &key_);
    uid_t uid = 2000 + db.AddWebapp("webapp1", owner_);
    chmod(dir_.path().c_str(), 0755);
    if (RunQuiet({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key_}) != 0) return false;
    std::string sandboxes = dir_ / "sandboxes", bridge = sandboxes + "/webapp1";
    mkdir(sandboxes.c_str(), 0755);
    mkdir(bridge.c_str(), 0755);
    // As allgo's controller prepares it; the login shell (and carrier) copied where the
    // webapp's uid can run it (the build may be in a 0700 folder).
    if (chown(bridge.c_str(), uid, 65534) != 0 ||
        RunQuiet({"install", "-m", "0755", Artifact("allgo-shell"), shell_}) != 0 ||
        RunQuiet({"install", "-m", "0755", Artifact("allgo-shell-state"), dir_ / "allgo-shell-state"}) != 0) {
      std::fprintf(stderr, "forward bench: cannot prepare the bridge folder or the login shell\n");
      return false;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return false;
    self_.assign(self, static_cast<size_t>(len));
    target_port_ = test::FreeLoopbackPort();

    // The targets: one on the frontend's loopback (OpenSSH's forwards), one on the sandbox's,
    // started inside the sandbox before the agent, on the same port.
    front_target_ = std::make_unique<test::Daemon>(
        std::vector<std::string>{self_, "--serve-forward-target", std::to_string(target_port_), "--target-name", "frontend"},
        dir_ / "front-target.log");
    test::SandboxOptions sandbox;
    sandbox.bwrap_extra = {"--unshare-net", "--ro-bind", self_, self_};
    sandbox.launcher = {"sh", "-c",
                        "'" + self_ + "'" + " --serve-forward-target " + std::to_string(target_port_) +
                            " --target-name sandbox & exec \"$@\"",
                        "sh"};
    agent_ = std::make_unique<test::Daemon>(test::SandboxCommand(bridge, sandbox), dir_ / "agent.log");
    if (!test::WaitFor([&] { return test::ReadFile(dir_ / "agent.log").find("listening on") != std::string::npos; }, 10000)) {
      std::fprintf(stderr, "forward bench: the agent did not start:\n%s\n", test::ReadFile(dir_ / "agent.log").c_str());
      return false;
    }

    // allgo-sshd: forwarding is on by default; max_forwards raised for the concurrency row
    // (the protocol's bound is 256 streams per connection).
    allgo_.name = "allgo-sshd";
    allgo_.log = dir_ / "allgo-sshd.log";
    allgo_.target = "target sandbox";
    allgo_.port = test::FreeLoopbackPort();
    test::WriteAllgoConfig(db.ConfigText(
        "[sandbox]\ndir = " + sandboxes + "\nstart_wait = 5\n[nss]\nshell = " + shell_ + "\n[sshd]\nlisten = 127.0.0.1:" +
        std::to_string(allgo_.port) + "\nhost_key = " + host_key_ + "\nprivsep_chroot = " + (dir_ / "empty") +
        "\nlog_level = warn\nmax_startups = 300:30:400\nmax_forwards = " + std::to_string(std::max(64, o_.concurrent + 8)) +
        "\n"));
    allgo_.server = std::make_unique<test::Daemon>(
        std::vector<std::string>{Artifact("allgo-sshd"), "--config", test::AllgoConfigPath()}, dir_ / "allgo-sshd.log");
    pid_t agent_pid = agent_->pid();
    pid_t allgo_pid = allgo_.server->pid();
    allgo_.processes = [agent_pid, allgo_pid] {
      // The connection's monitor and network child, and the agent's side (the agent and the
      // stream server it forked for this connection); the target is not ours.
      std::vector<pid_t> pids = Descendants(allgo_pid);
      for (pid_t p : Descendants(agent_pid)) {
        std::string comm;
        std::ifstream("/proc/" + std::to_string(p) + "/comm") >> comm;
        if (comm != "sshd_bench") pids.push_back(p);
      }
      return pids;
    };

    // Stock OpenSSH with forwarding on (its own -L: connects from the frontend). The key comes
    // from a plain file (cat, as root: the webapp's uid cannot read the bench's folder), not
    // from allgo-authkeys, which never prints options that allow forwarding.
    openssh_.name = "OpenSSH";
    openssh_.log = dir_ / "openssh.log";
    openssh_.target = "target frontend";
    openssh_.port = test::FreeLoopbackPort();
    test::WriteFile(dir_ / "authorized_keys", key_.public_line + "\n");
    test::WriteFile(dir_ / "sshd_config",
                    "Port " + std::to_string(openssh_.port) + "\nListenAddress 127.0.0.1\nHostKey " + host_key_ +
                        "\nPidFile " + (dir_ / "sshd.pid") + "\nUsePAM no\nAuthorizedKeysFile none\nAuthorizedKeysCommand /bin/cat " +
                        (dir_ / "authorized_keys") + "\nAuthorizedKeysCommandUser root\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                        "AllowTcpForwarding yes\nMaxStartups 300:30:400\nUseDNS no\nLogLevel " + std::string(std::getenv("ALLGO_BENCH_VERBOSE") ? "DEBUG1" : "ERROR") + "\n");
    mkdir("/run/sshd", 0755);
    openssh_.server = std::make_unique<test::Daemon>(
        std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", dir_ / "sshd_config"}, dir_ / "openssh.log");
    pid_t openssh_pid = openssh_.server->pid();
    openssh_.processes = [openssh_pid] { return Descendants(openssh_pid); };
    for (Side* s : {&openssh_, &allgo_}) {
      if (!test::WaitFor([&] { return RunQuiet(Ssh(s->port, {"true"})) == 0; }, 15000)) {
        std::fprintf(stderr, "forward bench: %s does not accept logins: %s\nits log:\n%s\n", s->name.c_str(),
                     test::Run(Ssh(s->port, {"true"})).err.c_str(),
                     test::ReadFile(dir_ / (s == &allgo_ ? "allgo-sshd.log" : "openssh.log")).c_str());
        return false;
      }
    }
    return true;
  }

  // The docker backend: a private engine reached over TLS (node-a), allgo-sandbox-gateway, a
  // container of webapp `gw1` (Debian image, --network none) with a target on its loopback
  // (perl: perl-base is in every Debian image), and a second allgo-sshd with `backend =
  // docker` whose -L client is kept connected. False (and why) when Docker cannot run here.
  bool StartGatewaySide() {
    std::string why;
    nodes_ = test::TestNodes::Start(1, "allgo-gateway", &why);
    std::string image = nodes_ ? nodes_->node(0).DebianImage(&why) : "";
    if (image.empty()) {
      std::fprintf(stderr, "forward bench: no docker gateway column: %s\n", why.c_str());
      return false;
    }
    TestDatabase& db = TestDatabase::Get();
    db.AddWebapp("gw1", owner_);
    container_ = std::make_unique<test::DockerSandbox>(nodes_->node(0), test::DockerSandboxOptions{.name = "gw1", .image = image});
    if (std::string error = container_->Start(); !error.empty()) {
      std::fprintf(stderr, "forward bench: no docker gateway column: %s\n", error.c_str());
      return false;
    }
    const std::string script = "my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => " +
                               std::to_string(target_port_) +
                               ", Listen => 128, ReuseAddr => 1) or die $!; "
                               "while (my $c = $s->accept) { print $c \"target container\\n\"; close $c; }";
    nodes_->node(0).Docker({"exec", "-d", "gw1", "perl", "-MIO::Socket::INET", "-e", script});
    mkdir((dir_ / "run").c_str(), 0755);
    const std::string socket = dir_ / "run/gateway.sock";
    gateway_ = std::make_unique<test::TestGateway>(
        db.MysqlConfigSection() + "[sandbox]\nbackend = docker\n" + nodes_->DockerSection(socket), socket, dir_.path());
    if (std::string error = gateway_->Start(); !error.empty()) {
      std::fprintf(stderr, "forward bench: no docker gateway column: %s\n", error.c_str());
      return false;
    }
    Side& s = gateway_side_;
    s.user = "gw1";
    s.target = "target container";
    s.port = test::FreeLoopbackPort();
    s.log = dir_ / "allgo-sshd-gateway.log";
    // The bridge server keeps its settings (it read them at its start); the NSS module reads
    // the same [mysql] and [nss] sections from this file.
    test::WriteAllgoConfig(db.ConfigText("[sandbox]\nbackend = docker\nstart_wait = 5\n" + nodes_->DockerSection(socket) +
                                         "[nss]\nshell = " + shell_ + "\n[sshd]\nlisten = 127.0.0.1:" +
                                         std::to_string(s.port) + "\nhost_key = " + host_key_ + "\nprivsep_chroot = " +
                                         (dir_ / "empty") + "\nlog_level = warn\n"));
    s.server = std::make_unique<test::Daemon>(
        std::vector<std::string>{Artifact("allgo-sshd"), "--config", test::AllgoConfigPath()}, s.log);
    if (!test::WaitFor([&] { return RunQuiet(Ssh(s.port, {"true"}, {}, s.user)) == 0; }, 30000)) {
      std::fprintf(stderr, "forward bench: no docker gateway column: allgo-sshd (backend = docker) does not accept "
                   "logins; its log:\n%s\ngateway log:\n%s\n", test::ReadFile(s.log).c_str(), gateway_->log().c_str());
      return false;
    }
    return StartClient(s);
  }

  // The CPU used so far by each group (both servers and both -L clients: only the ones of
  // the transfer running move bytes).
  Cpu CpuNow() {
    Cpu c;
    c.client = ProcCpuSeconds(openssh_.client->pid(), false) + ProcCpuSeconds(allgo_.client->pid(), false);
    c.server = TreeCpuSeconds(openssh_.server->pid()) + TreeCpuSeconds(allgo_.server->pid());
    pid_t sandbox_target = SandboxTarget();
    c.sandbox = TreeCpuSeconds(agent_->pid(), sandbox_target);
    c.target = ProcCpuSeconds(front_target_->pid(), false) + (sandbox_target > 0 ? ProcCpuSeconds(sandbox_target, false) : 0);
    return c;
  }

  // The target inside the sandbox (this program, started by the sandbox's launcher).
  pid_t SandboxTarget() {
    for (pid_t p : Descendants(agent_->pid())) {
      std::string comm;
      std::ifstream("/proc/" + std::to_string(p) + "/comm") >> comm;
      if (comm == "sshd_bench") return p;
    }
    return -1;
  }

  // ssh [options] [extra] USER@127.0.0.1 [command...]
  std::vector<std::string> Ssh(int port, const std::vector<std::string>& command,
                               const std::vector<std::string>& extra = {}, const std::string& user = "webapp1") const {
    std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                                     "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
                                     "-o", "BatchMode=yes", "-o", "KexAlgorithms=curve25519-sha256", "-o",
                                     "Ciphers=" + o_.cipher, "-i", key_.private_path, "-p", std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(user + "@127.0.0.1");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  // `ssh -N -L` to the target, kept connected; ready once a forward reaches the target.
  bool StartClient(Side& s) {
    s.local = test::FreeLoopbackPort();
    std::vector<std::string> argv =
        Ssh(s.port, {}, {"-N", "-o", "ExitOnForwardFailure=yes", "-L",
                         "127.0.0.1:" + std::to_string(s.local) + ":127.0.0.1:" + std::to_string(target_port_)},
            s.user);
    s.client = std::make_unique<test::Daemon>(argv, dir_ / ("client-" + s.name + ".log"));
    std::string banner;
    test::WaitFor([&] {
      int fd = ConnectLoopback(s.local);
      if (fd < 0) return false;
      banner = ReadLine(fd, 5000);
      close(fd);
      return !banner.empty();
    }, 20000);
    if (banner != s.target) {
      std::fprintf(stderr, "forward bench: %s's -L reached \"%s\", not \"%s\"; client log:\n%s\nserver log:\n%s\n",
                   s.name.c_str(), banner.c_str(), s.target.c_str(), s.client->Log().c_str(), test::ReadFile(s.log).c_str());
      return false;
    }
    return true;
  }

  // A new forwarded channel to the target; -1 unless its banner is the expected one.
  int OpenForward(const Side& s) {
    int fd = ConnectLoopback(s.local);
    if (fd >= 0 && ReadLine(fd, 15000) == s.target) return fd;
    if (fd >= 0) close(fd);
    return -1;
  }

  double ForwardDownload(const Side& s) {
    int fd = OpenForward(s);
    if (fd < 0) return 0;
    std::string request = "D " + std::to_string(bytes_) + "\n";
    std::vector<char> buf(1 << 20);
    long long total = 0;
    auto t0 = Clock::now();
    WriteAll(fd, request.data(), request.size());
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) total += n;
    double secs = Seconds(Clock::now() - t0);
    close(fd);
    if (total != bytes_) std::fprintf(stderr, "%s -L download incomplete: %lld bytes\n", s.name.c_str(), total);
    return total / secs / 1e6;
  }

  double ForwardUpload(const Side& s) {
    int fd = OpenForward(s);
    if (fd < 0) return 0;
    std::string request = "U " + std::to_string(bytes_) + "\n";
    std::vector<char> buf(1 << 20, 'u');
    auto t0 = Clock::now();
    bool sent = WriteAll(fd, request.data(), request.size());
    for (long long left = bytes_; sent && left > 0;) {
      size_t n = static_cast<size_t>(std::min<long long>(left, static_cast<long long>(buf.size())));
      sent = WriteAll(fd, buf.data(), n);
      left -= static_cast<long long>(n);
    }
    std::string answer = ReadLine(fd, 600000);
    double secs = Seconds(Clock::now() - t0);
    close(fd);
    if (answer != std::to_string(bytes_)) std::fprintf(stderr, "%s -L upload incomplete: \"%s\"\n", s.name.c_str(), answer.c_str());
    return bytes_ / secs / 1e6;
  }

  // Milliseconds from connect() on the -L port to the target's first line; 1e9 if it fails.
  double OpenMs(const Side& s) {
    auto t0 = Clock::now();
    int fd = OpenForward(s);
    double ms = Seconds(Clock::now() - t0) * 1000;
    if (fd < 0) return 1e9;
    close(fd);
    return ms;
  }

  // On a new connection, `concurrent` channels opened one after the other without waiting;
  // once every one has its target's first line, all are held idle while the connection's
  // server-side memory is read; then each echoes its own payload (threads, all at once), and
  // the memory is read again while they are idle once more.
  Concurrency Concurrent(Side& s) {
    Concurrency c;
    // A new connection (its -L client replaces the old one), so that what the earlier
    // transfers left in the old processes' heaps does not hide what the forwards take. Its
    // first forward (StartClient's) opened the path to the sandbox; let it close first.
    s.client.reset();
    if (!StartClient(s)) return c;
    std::this_thread::sleep_for(std::chrono::seconds(2));
    c.base = Snap(s);
    const size_t size = static_cast<size_t>(o_.payload_kib) * 1024;
    std::vector<int> fds(static_cast<size_t>(o_.concurrent), -1);
    std::atomic<int> correct{0}, opened{0};
    std::atomic<bool> go{false};
    auto t0 = Clock::now();
    for (auto& fd : fds) fd = ConnectLoopback(s.local);
    std::vector<std::thread> threads;
    for (int i = 0; i < o_.concurrent; ++i) {
      threads.emplace_back([&, i] {
        int fd = fds[static_cast<size_t>(i)];
        bool ok = fd >= 0 && ReadLine(fd, 60000) == s.target;
        ++opened;
        while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (ok && EchoCheck(fd, Payload(i, size), 120000)) ++correct;
      });
    }
    while (opened < o_.concurrent) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto opened_at = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(1));  // idle
    c.fresh = Snap(s);
    auto t1 = Clock::now();
    go = true;
    for (auto& t : threads) t.join();
    c.wall_ms = Seconds((opened_at - t0) + (Clock::now() - t1)) * 1000;  // without the idle pause
    std::this_thread::sleep_for(std::chrono::seconds(1));  // idle again
    c.used = Snap(s);
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
    c.correct = correct;
    if (correct < o_.concurrent) {
      std::fprintf(stderr, "%s: %d of %d concurrent forwards not correct; client log:\n%s\n", s.name.c_str(),
                   o_.concurrent - correct.load(), o_.concurrent, s.client->Log().c_str());
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return c;
  }

  Snapshot Snap(const Side& s) {
    std::vector<pid_t> pids = s.processes();
    return {MemoryOf(pids), PssByName(pids)};
  }

  // PSS (KiB) summed by process name (comm): where an idle forward's memory is.
  static std::map<std::string, double> PssByName(const std::vector<pid_t>& pids) {
    std::map<std::string, double> by;
    for (pid_t p : pids) {
      std::string comm;
      std::ifstream("/proc/" + std::to_string(p) + "/comm") >> comm;
      by[comm] += MemoryOf({p}).pss_kb;
    }
    return by;
  }

  static std::string LoadAverage() {
    std::string one, five, fifteen;
    std::ifstream("/proc/loadavg") >> one >> five >> fifteen;
    return one + " " + five + " " + fifteen;
  }

  static std::string ClientVersion() {
    std::string v = test::Run({"ssh", "-V"}).err;
    return v.substr(0, v.find(','));
  }

  ForwardBenchOptions o_;
  long long bytes_;
  test::TempDir dir_{"allgo-forward-bench"};
  test::KeyPair key_;
  std::string self_, load_start_, host_key_ = dir_ / "host_ed25519", shell_ = dir_ / "allgo-shell";
  uint32_t owner_ = 0;
  int target_port_ = 0;
  // Declared after dir_: stopped before the folder goes; the clients before the servers.
  std::unique_ptr<test::Daemon> front_target_, agent_;
  Side openssh_, allgo_;
  // The docker backend (--gateway): stopped in this order, the container before its engine.
  std::unique_ptr<test::TestNodes> nodes_;
  std::unique_ptr<test::DockerSandbox> container_;
  std::unique_ptr<test::TestGateway> gateway_;
  Side gateway_side_{.name = "allgo-sshd (docker gateway)"};
};

}  // namespace

int RunForwardBench(const ForwardBenchOptions& options) { return ForwardBench(options).Main(); }

void ServeForwardTarget(int port, const std::string& name) {
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(ls, 1024) != 0) {
    std::fprintf(stderr, "forward target: cannot listen on 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    _exit(1);
  }
  std::fprintf(stderr, "forward target %s on 127.0.0.1:%d\n", name.c_str(), port);
  for (;;) {
    int fd = accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread(ServeOne, fd, name).detach();
  }
}

}  // namespace allgo::bench
