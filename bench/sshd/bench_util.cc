#include "bench_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace allgo::bench {

int RunQuiet(const std::vector<std::string>& argv) {
  Child c(argv, false, false);
  return c.Wait();
}

std::vector<pid_t> Descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string s;
    std::getline(f, s);
    auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(s.substr(rp + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    kids[ppid].push_back(pid);
  }
  closedir(d);
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    for (pid_t k : kids[p]) {
      out.push_back(k);
      todo.push_back(k);
    }
  }
  return out;
}

bool IsSessionProcess(pid_t p) {
  std::string comm;
  std::ifstream(("/proc/" + std::to_string(p) + "/comm").c_str()) >> comm;
  return comm == "sh" || comm == "sleep" || comm == "allgo-shell";
}

Mem MemoryOf(const std::vector<pid_t>& pids) {
  Mem m;
  for (pid_t p : pids) {
    std::ifstream f("/proc/" + std::to_string(p) + "/smaps_rollup");
    std::string line;
    bool any = false;
    while (std::getline(f, line)) {
      std::istringstream fields(line);
      std::string key;
      double value = 0;
      if (!(fields >> key >> value)) continue;  // the "[rollup]" header line
      if (key == "Rss:") m.rss_kb += value, any = true;
      if (key == "Pss:") m.pss_kb += value;
    }
    if (any) ++m.processes;
  }
  return m;
}

Mem ServerMemory(pid_t listener, bool with_sessions) {
  std::vector<pid_t> pids;
  for (pid_t p : Descendants(listener)) {
    if (with_sessions || !IsSessionProcess(p)) pids.push_back(p);
  }
  return MemoryOf(pids);
}

double DownloadMBps(const std::vector<std::string>& ssh_argv, long long bytes, const std::string& label) {
  Child c(ssh_argv, false, true);
  std::vector<char> buf(1 << 20);
  long long total = 0;
  auto t0 = Clock::now();
  ssize_t n;
  while ((n = read(c.out(), buf.data(), buf.size())) > 0) total += n;
  double secs = Seconds(Clock::now() - t0);
  if (c.Wait() != 0 || total != bytes) std::fprintf(stderr, "%s download incomplete: %lld bytes\n", label.c_str(), total);
  return total / secs / 1e6;
}

double UploadMBps(const std::vector<std::string>& ssh_argv, long long bytes, const std::string& label) {
  Child c(ssh_argv, true, true);
  std::vector<char> buf(1 << 20, 'x');
  auto t0 = Clock::now();
  long long left = bytes;
  while (left > 0) {
    ssize_t n = write(c.in(), buf.data(), static_cast<size_t>(std::min<long long>(left, buf.size())));
    if (n <= 0) break;
    left -= n;
  }
  c.CloseIn();
  char out[64] = {0};
  ssize_t got = read(c.out(), out, sizeof(out) - 1);
  double secs = Seconds(Clock::now() - t0);
  if (c.Wait() != 0 || got <= 0 || std::atoll(out) != bytes) {
    std::fprintf(stderr, "%s upload incomplete: %s\n", label.c_str(), out);
  }
  return bytes / secs / 1e6;
}
int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

uint32_t AddBenchUser(const std::string& dir, test::KeyPair* key) {
  test::TestDatabase& db = test::TestDatabase::Get();
  db.Clear();
  *key = test::MakeKeyPair(dir, "client");
  uint32_t owner = db.AddUser("bench@example.org");
  db.AddKey(owner, key->public_line);
  return owner;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

// CPU seconds (user + system) of `pid` alone; with `children`, also of its reaped children.
double ProcCpuSeconds(pid_t pid, bool children) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(f, s);
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream rest(s.substr(rp + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 17 && rest >> field; ++i) {  // fields 14-17: utime stime cutime cstime
    if (i == 14 || i == 15 || (children && (i == 16 || i == 17))) ticks += std::atof(field.c_str());
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds a process tree has used: every live process's own and its reaped children's
// (a child that ended was reaped by its parent in the tree, so nothing is counted twice);
// `skip`: processes left out (with their threads).
double TreeCpuSeconds(pid_t root, pid_t skip) {
  double total = ProcCpuSeconds(root, true);
  for (pid_t p : Descendants(root)) total += p == skip ? 0 : ProcCpuSeconds(p, true);
  return total;
}

}  // namespace allgo::bench
