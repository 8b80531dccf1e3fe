// Operations features of allgo-sshd through the real client: PROXY protocol, metrics and
// health endpoint, audit log.
#include <pwd.h>
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "stack.h"

namespace allgo::test {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::vector<nlohmann::json> AuditLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// ssh through a ProxyCommand that prepends `header` (printf format) to the TCP stream, as
// HAProxy does, from `source` (a loopback address).
RunResult SshViaProxy(const Stack& s, const std::string& header, const std::string& command,
                      const std::string& source = "127.0.0.1") {
  std::vector<std::string> argv = s.SshArgv(command);
  // socat is exec'd so that nothing else holds ssh's end open once the server hangs up.
  std::string proxy = "bash -c 'exec socat - TCP:127.0.0.1:" + std::to_string(s.port()) + ",bind=" +
                      source + " < <(printf \"" + header + "\"; exec cat)'";
  argv.insert(argv.begin() + 1, {"-o", "ProxyCommand=" + proxy});
  return test::Run(argv, {.timeout_seconds = 30});
}

RunResult Http(const Stack& s, const std::string& path, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"curl", "-s", "-w", "\n%{http_code}", "--max-time", "10"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("http://127.0.0.1:" + std::to_string(s.metrics_port()) + path);
  return test::Run(argv);
}

// A TCP connection to 127.0.0.1:port, closed when it goes out of scope.
class TcpClient {
 public:
  explicit TcpClient(int port) : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Close();
  }
  ~TcpClient() { Close(); }
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;
  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  bool Send(const std::string& data) {
    return send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Reads from `fd` until `text` has arrived or timeout_ms passed; everything read so far.
std::string ReadUntil(int fd, const std::string& text, int timeout_ms) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.find(text) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// A process that exists and is not a zombie.
bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

template <typename Predicate>
bool WaitFor(Predicate done, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// One field of /proc/PID/status ("Uid" → "1001\t1001\t1001\t1001"); "" when absent.
std::string StatusField(const std::string& status_path, const std::string& field) {
  std::istringstream in(ReadFile(status_path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":\t", 0) == 0) return line.substr(field.size() + 2);
  }
  return "";
}

// Every thread of `pid` runs as `user` for good: real, effective, saved and filesystem ids,
// no supplementary group but its own, no_new_privs.
void ExpectDroppedTo(pid_t pid, const std::string& user) {
  const struct passwd* pw = getpwnam(user.c_str());
  ASSERT_NE(pw, nullptr) << user << ": conf/create-users did not run in the test namespace";
  const std::string uid = std::to_string(pw->pw_uid), gid = std::to_string(pw->pw_gid);
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::string status = task.path() / "status";
    const std::string where = user + ", task " + task.path().string();
    EXPECT_EQ(StatusField(status, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid) << where;
    EXPECT_EQ(StatusField(status, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid) << where;
    std::string groups = StatusField(status, "Groups");
    EXPECT_TRUE(groups == gid + " " || groups == "" || groups == " ") << user << ": groups " << groups;
    EXPECT_EQ(StatusField(status, "NoNewPrivs"), "1") << where;
    ++threads;
  }
  EXPECT_GE(threads, 1);
}

// The listener's two long-lived helpers, found by their users: the metrics process
// ([sshd] metrics_user) and the /healthz database check ([sshd] lookup_user).
struct Helpers {
  pid_t metrics = -1;
  pid_t health = -1;
};
Helpers FindHelpers(Stack& s) {
  Helpers h;
  const std::string listener = std::to_string(s.sshd().pid());
  const std::string metrics_uid = std::to_string(UidOf("allgo-metrics"));
  const std::string lookup_uid = std::to_string(UidOf("allgo-authkeys"));
  for (pid_t pid : s.ServerProcesses()) {
    std::string status = "/proc/" + std::to_string(pid) + "/status";
    if (StatusField(status, "PPid") != listener) continue;
    std::string uid = StatusField(status, "Uid");
    if (uid.rfind(metrics_uid + "\t", 0) == 0) h.metrics = pid;
    if (uid.rfind(lookup_uid + "\t", 0) == 0) h.health = pid;
  }
  return h;
}

// Whether a socket of `pid` can be reached from outside the process: a TCP socket in LISTEN,
// any UDP socket, or a listening unix socket (read from /proc/PID/net, the process's own
// network namespace).
bool HasReachableSocket(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<std::string> inodes;
  for (const auto& fd : std::filesystem::directory_iterator(proc + "/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  using Row = std::vector<std::string>;
  auto scan = [&](const std::string& table, int inode_column, const std::function<bool(const Row&)>& reachable) {
    std::istringstream in(ReadFile(proc + "/net/" + table));
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      Row f{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
      if (static_cast<int>(f.size()) > inode_column && inodes.count(f[inode_column]) && reachable(f)) return true;
    }
    return false;
  };
  auto tcp_listen = [](const Row& f) { return f[3] == "0A"; };
  auto any = [](const Row&) { return true; };
  auto unix_listen = [](const Row& f) { return f[3] == "00010000"; };  // __SO_ACCEPTCON
  return scan("tcp", 9, tcp_listen) || scan("tcp6", 9, tcp_listen) || scan("udp", 9, any) ||
         scan("udp6", 9, any) || scan("unix", 6, unix_listen);
}

TEST(Operations, ProxyHeadersFromTrustedSourcesGiveTheRealClientAddress) {
  Stack s("proxy_protocol = required\nproxy_trusted = 127.0.0.1/32");
  RunResult r = SshViaProxy(s, "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\\r\\n", "echo v1");
  EXPECT_EQ(r.out, "v1\n") << r.err << s.SshdLog();
  r = SshViaProxy(s, "\\r\\n\\r\\n\\0\\r\\nQUIT\\n\\041\\021\\0\\014\\306\\063\\144\\007\\177\\0\\0\\001\\234\\104\\0\\026",
                  "echo v2");
  EXPECT_EQ(r.out, "v2\n") << r.err << s.SshdLog();
  auto lines = AuditLines(s.audit_path());
  std::vector<std::string> clients;
  for (const auto& l : lines) {
    if (l["event"] == "auth" && l["result"] == "success") clients.push_back(l["client"]);
  }
  EXPECT_EQ(clients, (std::vector<std::string>{"203.0.113.9:40001", "198.51.100.7:40004"}));
  EXPECT_TRUE(Contains(s.SshdLog(), "connection from 203.0.113.9:40001 via proxy 127.0.0.1:")) << s.SshdLog();

  // required: a plain connection is refused; a header from an untrusted source too.
  r = s.Ssh("echo plain");
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "");
  r = SshViaProxy(s, "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\\r\\n", "echo forged", "127.0.0.2");
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(Contains(s.SshdLog(), "is not in proxy_trusted")) << s.SshdLog();
  EXPECT_TRUE(Contains(s.SshdLog(), "PROXY header required but not sent")) << s.SshdLog();
  // Garbage after the signature is refused, and the server serves on.
  r = SshViaProxy(s, "PROXY TCP4 999.1.1.1 127.0.0.1 1 2\\r\\n", "echo bad");
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(SshViaProxy(s, "PROXY UNKNOWN\\r\\n", "echo unknown").out, "unknown\n");
}

TEST(Operations, OptionalProxyServesATrustedClientThatWaitsForTheServerVersion) {
  Stack s("proxy_protocol = optional\nproxy_trusted = 127.0.0.1/32");
  // This client writes nothing before it has read the server's version (RFC 4253 allows it).
  TcpClient client(s.port());
  ASSERT_TRUE(client.connected());
  auto start = std::chrono::steady_clock::now();
  std::string banner = ReadUntil(client.fd(), "\r\n", 8000);
  EXPECT_EQ(banner.rfind("SSH-2.0-", 0), 0u) << banner << s.SshdLog();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // It then gets a key exchange, not a hang-up.
  ASSERT_TRUE(client.Send("SSH-2.0-WaitingClient_1.0\r\n"));
  std::string kex = ReadUntil(client.fd(), "curve25519-sha256", 5000);
  EXPECT_NE(kex.find("curve25519-sha256"), std::string::npos) << s.SshdLog();
  client.Close();
  // And a proxied connection still gives the client's address.
  EXPECT_EQ(SshViaProxy(s, "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\\r\\n", "echo proxied").out, "proxied\n")
      << s.SshdLog();
  EXPECT_TRUE(Contains(s.SshdLog(), "connection from 203.0.113.9:40001 via proxy")) << s.SshdLog();
}

TEST(Operations, OptionalProxyAcceptsBothKinds) {
  Stack s("proxy_protocol = optional");
  EXPECT_EQ(s.Ssh("echo plain").out, "plain\n") << s.SshdLog();
  EXPECT_EQ(SshViaProxy(s, "PROXY TCP6 2001:db8::5 ::1 5000 22\\r\\n", "echo six").out, "six\n");
  EXPECT_TRUE(Contains(s.SshdLog(), "connection from 2001:db8::5:5000 via proxy")) << s.SshdLog();
}

// The value of one sample line ("name{labels} value") in a /metrics text; -1 if absent.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(Operations, MetricsCountWhatHappenedAndHealthFollowsTheDatabase) {
  Stack s;
  // The endpoint (parses HTTP) is [sshd] metrics_user, a user of its own; the /healthz
  // database check (holds the password, parses no network input) is [sshd] lookup_user. They
  // are the listener's only unprivileged children (the others are root monitors).
  Helpers h;
  ASSERT_TRUE(WaitFor([&] { return (h = FindHelpers(s)).metrics > 0 && h.health > 0; }, 5000)) << s.SshdLog();
  int unprivileged = 0;
  const std::string listener = std::to_string(s.sshd().pid());
  for (pid_t pid : s.ServerProcesses()) {
    std::string status = "/proc/" + std::to_string(pid) + "/status";
    if (StatusField(status, "PPid") == listener && StatusField(status, "Uid").rfind("0\t", 0) != 0) ++unprivileged;
  }
  EXPECT_EQ(unprivileged, 2);
  RunResult r = Http(s, "/metrics");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string before = r.out;
  ASSERT_EQ(s.Ssh("head -c 1000 /dev/zero").out.size(), 1000u);
  ASSERT_EQ(s.Ssh("exit 3").exit_code, 3);
  RunResult bad = test::Run(s.SshArgv("true", "nosuchapp"));
  EXPECT_EQ(bad.exit_code, 255);
  r = Http(s, "/metrics");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string& m = r.out;
  auto delta = [&](const std::string& series) { return Sample(m, series) - Sample(before, series); };
  EXPECT_EQ(delta("allgo_ssh_connections_total"), 3) << m;
  EXPECT_EQ(delta("allgo_ssh_auth_total{result=\"success\"}"), 2) << m;
  EXPECT_EQ(delta("allgo_ssh_auth_failures_total{reason=\"unknown_user\"}"), 1) << m;
  EXPECT_EQ(delta("allgo_ssh_sessions_total"), 2) << m;
  EXPECT_EQ(delta("allgo_ssh_session_duration_seconds_count"), 2) << m;
  EXPECT_EQ(delta("allgo_ssh_bytes_total{direction=\"out\"}"), 1000) << m;
  EXPECT_EQ(Sample(m, "allgo_ssh_db_errors_total"), 0) << m;
  EXPECT_EQ(Sample(m, "allgo_ssh_sessions_active"), 0) << m;
  EXPECT_TRUE(m.size() > 4 && m.substr(m.size() - 4) == "\n200") << m;

  r = Http(s, "/healthz");
  EXPECT_EQ(r.out, "ok\n\n200");
  TestDatabase::Get().Stop();
  EXPECT_EQ(s.Ssh("true").exit_code, 255);
  // The next check (every 2 s) sees it. A generic answer: the database's own error text
  // (socket path, server message) stays in the server's log.
  EXPECT_TRUE(WaitFor([&] { return (r = Http(s, "/healthz")).out == "database unavailable\n\n503"; }, 6000)) << r.out;
  EXPECT_TRUE(Contains(s.SshdLog(), "/healthz: the database check failed")) << s.SshdLog();
  EXPECT_TRUE(Contains(Http(s, "/metrics").out, "\nallgo_ssh_db_errors_total 1\n"));
  TestDatabase::Get().Start();
  EXPECT_TRUE(WaitFor([&] { return (r = Http(s, "/healthz")).out == "ok\n\n200"; }, 6000)) << r.out;
  EXPECT_TRUE(Contains(s.SshdLog(), "/healthz: the database answers again")) << s.SshdLog();
}

// Polling /healthz cannot make the database busier: the health child checks every 2 s on
// its own, and nothing the metrics process receives reaches it.
TEST(Operations, HealthzChecksTheDatabaseEveryTwoSecondsWhateverThePolling) {
  Stack s;
  // Every check is one prepared statement executed; the stack is otherwise idle.
  auto executed = [] {
    return std::stol(TestDatabase::Get().Value(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'"));
  };
  long before = executed();
  auto start = std::chrono::steady_clock::now();
  int polls = 0, ok = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(7)) {
    ok += Http(s, "/healthz").out == "ok\n\n200";
    ++polls;
  }
  long checks = executed() - before;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ok, polls);
  EXPECT_GE(polls, 20);
  EXPECT_GE(checks, 2) << "the health child does not check the database";
  EXPECT_LE(checks, static_cast<long>(seconds / 2) + 1) << checks << " checks in " << seconds << " s, " << polls
                                                        << " polls";
}

// The private half (the 32-byte seed) of an unencrypted OpenSSH ed25519 key file: in the
// private section, "ssh-ed25519", the 32-byte public key, then 64 bytes: seed || public key.
std::string Ed25519Seed(const std::string& path) {
  RunResult r = test::Run({"sh", "-c", "sed '1d;$d' \"$0\" | base64 -d", path});
  const std::string type = std::string("\0\0\0\x0bssh-ed25519\0\0\0\x20", 19);
  size_t at = r.out.rfind(type);
  if (r.exit_code != 0 || at == std::string::npos || at + 19 + 32 + 4 + 64 > r.out.size()) return "";
  std::string pub = r.out.substr(at + 19, 32);
  std::string priv = r.out.substr(at + 19 + 32 + 4, 64);
  if (r.out.compare(at + 19 + 32, 4, std::string("\0\0\0\x40", 4)) != 0 || priv.substr(32) != pub) return "";
  return priv.substr(0, 32);
}

// The endpoint parses HTTP from the network: it must hold neither the [mysql] password nor
// the host keys. Controls: the same search finds the password in the listener and in the
// health child (which need it), and does read the metrics process (its listen address).
TEST(Operations, TheMetricsProcessHoldsNoSecret) {
  Stack s;
  Helpers h;
  ASSERT_TRUE(WaitFor([&] { return (h = FindHelpers(s)).metrics > 0 && h.health > 0; }, 5000)) << s.SshdLog();
  ASSERT_EQ(Http(s, "/healthz").out, "ok\n\n200");
  ASSERT_TRUE(Contains(Http(s, "/metrics").out, "\n200"));
  const std::string password = TestDatabase::kPassword;
  ASSERT_THAT(ReadFile(AllgoConfigPath()), testing::HasSubstr("password = " + password));
  EXPECT_TRUE(MemoryContains(s.sshd().pid(), password)) << "the control failed: the listener holds the password";
  EXPECT_TRUE(MemoryContains(h.health, password)) << "the control failed: the health child holds the password";
  EXPECT_TRUE(MemoryContains(h.metrics, "127.0.0.1:" + std::to_string(s.metrics_port())));
  // A freed copy loses its first 16 bytes to the allocator's links, a reused one its head:
  // the metrics process must hold neither end of the password.
  EXPECT_FALSE(MemoryContains(h.metrics, password.substr(0, 16))) << "the metrics process holds the [mysql] password";
  EXPECT_FALSE(MemoryContains(h.metrics, password.substr(password.size() - 16)))
      << "the metrics process holds the [mysql] password";
  // The host key: loaded after both helpers were forked (the listener is the control).
  std::string seed = Ed25519Seed(s.dir() / "host_key");
  ASSERT_EQ(seed.size(), 32u);
  EXPECT_TRUE(MemoryContains(s.sshd().pid(), seed)) << "the control failed: the listener holds the host key";
  EXPECT_FALSE(MemoryContains(h.metrics, seed)) << "the metrics process holds the host key";
  EXPECT_FALSE(MemoryContains(h.health, seed)) << "the health child holds the host key";
}

// The health child keeps the [mysql] settings it started with: a reload that changes them
// says so (and one that does not, does not), and /healthz answers on.
TEST(Operations, AReloadThatChangesMysqlWarnsThatHealthzKeepsTheOldSettings) {
  Stack s;
  kill(s.sshd().pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Contains(s.SshdLog(), "configuration reloaded"); }, 5000)) << s.SshdLog();
  EXPECT_FALSE(Contains(s.SshdLog(), "[mysql] changed")) << s.SshdLog();
  std::string config = ReadFile(AllgoConfigPath());
  size_t at = config.find("connect_timeout = 2\n");
  ASSERT_NE(at, std::string::npos) << config;
  WriteAllgoConfig(config.replace(at, 20, "connect_timeout = 3\n"));
  kill(s.sshd().pid(), SIGHUP);
  const std::string warning =
      "SIGHUP: [mysql] changed; /healthz checks the database with the old settings until a restart";
  EXPECT_TRUE(WaitFor([&] { return Contains(s.SshdLog(), warning); }, 5000)) << s.SshdLog();
  EXPECT_EQ(Http(s, "/healthz").out, "ok\n\n200");
}

// The health child: dropped for good, and nothing of it listens (the only way in is the
// shared verdict page it writes); the metrics process, which does listen, is the control.
TEST(Operations, TheHealthChildIsUnprivilegedAndUnreachable) {
  Stack s;
  Helpers h;
  ASSERT_TRUE(WaitFor([&] { return (h = FindHelpers(s)).metrics > 0 && h.health > 0; }, 5000)) << s.SshdLog();
  ExpectDroppedTo(h.health, "allgo-authkeys");
  EXPECT_TRUE(HasReachableSocket(h.metrics)) << "the control failed: the metrics process listens";
  EXPECT_FALSE(HasReachableSocket(h.health)) << "the health child has a socket reachable from outside";
}

TEST(Operations, AuditLogHasOneLinePerDecisionAndPerSession) {
  Stack s;
  ASSERT_EQ(s.Ssh("echo out; echo err >&2; exit 4").exit_code, 4);
  RunResult bad = test::Run(s.SshArgv("true", "ghost"));
  ASSERT_EQ(bad.exit_code, 255);
  auto lines = AuditLines(s.audit_path());
  ASSERT_GE(lines.size(), 3u) << ReadFile(s.audit_path());
  const nlohmann::json* success = nullptr;
  const nlohmann::json* session = nullptr;
  const nlohmann::json* failure = nullptr;
  for (const auto& l : lines) {
    for (const char* key : {"time", "event", "client", "user"}) EXPECT_TRUE(l.contains(key)) << l;
    if (l["event"] == "auth" && l["result"] == "success") success = &l;
    if (l["event"] == "auth" && l["result"] == "failure") failure = &l;
    if (l["event"] == "session") session = &l;
  }
  ASSERT_TRUE(success && session && failure) << ReadFile(s.audit_path());
  EXPECT_EQ((*success)["user"], "sleep");
  EXPECT_EQ((*success)["account"], "owner@example.org");
  EXPECT_EQ((*success)["fingerprint"].get<std::string>().rfind("SHA256:", 0), 0u);
  EXPECT_EQ((*failure)["user"], "ghost");
  EXPECT_EQ((*failure)["account"], "");
  EXPECT_EQ((*session)["kind"], "exec");
  EXPECT_EQ((*session)["exit_status"], 4);
  EXPECT_EQ((*session)["bytes_out"], 8);  // "out\n" + "err\n"
  EXPECT_EQ((*session)["account"], "owner@example.org");
  EXPECT_GE((*session)["duration"].get<double>(), 0.0);
}

TEST(Operations, MetricsEndpointRefusesBodiesAndOtherMethodsAndServesOn) {
  Stack s;
  std::string body = s.dir() / "body";
  WriteFile(body, std::string(8 << 20, 'x'));
  // A large POST: refused without its body being read (the connection is closed).
  RunResult r = Http(s, "/metrics", {"-X", "POST", "--data-binary", "@" + body});
  EXPECT_TRUE(Contains(r.out, "\n405") || Contains(r.out, "\n000")) << r.out;
  EXPECT_FALSE(Contains(r.out, "allgo_ssh_connections_total")) << r.out;
  // A GET carrying a body: refused too.
  r = Http(s, "/metrics", {"-X", "GET", "--data-binary", "@" + body});
  EXPECT_TRUE(Contains(r.out, "\n413") || Contains(r.out, "\n000")) << r.out;
  EXPECT_FALSE(Contains(r.out, "allgo_ssh_connections_total")) << r.out;
  // The same on a raw socket: the body is never read, the answer is 413 and a close.
  TcpClient client(s.metrics_port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"));
  std::string answer = ReadUntil(client.fd(), "\r\n\r\n", 5000);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_TRUE(Contains(answer, "Connection: close")) << answer;
  client.Close();
  // Endless header lines: the server stops reading after its request-size cap (16 KiB),
  // it does not buffer them.
  TcpClient flood(s.metrics_port());
  ASSERT_TRUE(flood.connected());
  ASSERT_TRUE(flood.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
  std::string line = "X-Filler: " + std::string(8000, 'a') + "\r\n";
  size_t sent = 0;
  while (sent < (64u << 20) && flood.Send(line)) sent += line.size();
  EXPECT_LT(sent, 32u << 20) << "the endpoint kept reading header lines";
  flood.Close();
  // It serves on.
  r = Http(s, "/metrics");
  EXPECT_TRUE(Contains(r.out, "\nallgo_ssh_connections_total ")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\n200")) << r.out;
  EXPECT_EQ(Http(s, "/healthz").out, "ok\n\n200");
}

TEST(Operations, TheMetricsProcessDiesWithAKilledListenerAndARestartGetsThePort) {
  Stack s;
  pid_t listener = s.sshd().pid();
  std::vector<pid_t> tree;
  // Once the start-up probe's connection has ended: the listener, its metrics process and
  // its health child.
  ASSERT_TRUE(WaitFor([&] { return (tree = s.ServerProcesses()).size() == 3; }, 5000)) << tree.size();
  Helpers h = FindHelpers(s);
  ASSERT_GT(h.metrics, 0);
  ASSERT_GT(h.health, 0);
  pid_t metrics = h.metrics;
  // Every thread of it unprivileged (the dedicated allgo-metrics user), with no_new_privs.
  ExpectDroppedTo(h.metrics, "allgo-metrics");
  EXPECT_GE(std::distance(std::filesystem::directory_iterator("/proc/" + std::to_string(metrics) + "/task"),
                          std::filesystem::directory_iterator()),
            2);
  ASSERT_TRUE(Contains(Http(s, "/metrics").out, "\n200"));
  kill(listener, SIGKILL);
  s.sshd().Stop();
  EXPECT_TRUE(WaitFor([&] { return !Alive(metrics); }, 5000)) << "the metrics process outlived its listener";
  EXPECT_TRUE(WaitFor([&] { return !Alive(h.health); }, 5000)) << "the health child outlived its listener";
  ASSERT_TRUE(s.RestartSshd()) << s.SshdLog();
  EXPECT_NE(s.sshd().pid(), listener);
  RunResult r = Http(s, "/metrics");
  EXPECT_TRUE(Contains(r.out, "\n200")) << r.out << s.SshdLog();
  EXPECT_EQ(s.Ssh("echo again").out, "again\n") << s.SshdLog();
}

TEST(Operations, AfterRotationEveryProcessWritesToTheNewAuditLog) {
  Stack s;
  // A long-lived session: its connection's monitor has been running since before the rotation.
  RunResult longer;
  std::thread session([&] { longer = s.Ssh("sleep 3; echo done"); });
  ASSERT_TRUE(WaitFor([&] { return Contains(ReadFile(s.audit_path()), "\"result\":\"success\""); }, 15000))
      << s.SshdLog();
  std::string rotated = s.audit_path() + ".1";
  ASSERT_EQ(std::rename(s.audit_path().c_str(), rotated.c_str()), 0);
  kill(s.sshd().pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Contains(s.SshdLog(), "configuration reloaded"); }, 5000)) << s.SshdLog();
  ASSERT_EQ(s.Ssh("echo new").out, "new\n");
  session.join();
  EXPECT_EQ(longer.out, "done\n") << longer.err;
  ASSERT_TRUE(WaitFor([&] { return AuditLines(s.audit_path()).size() >= 3; }, 5000)) << ReadFile(s.audit_path());
  auto old_lines = AuditLines(rotated);
  auto new_lines = AuditLines(s.audit_path());
  // Before the rotation: the long session's authentication only.
  ASSERT_EQ(old_lines.size(), 1u) << ReadFile(rotated);
  EXPECT_EQ(old_lines[0]["event"], "auth");
  // After: the new connection's two lines and the long session's end.
  std::vector<std::string> kinds;
  for (const auto& l : new_lines) kinds.push_back(l["event"].get<std::string>());
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "session"), 2) << ReadFile(s.audit_path());
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "auth"), 1) << ReadFile(s.audit_path());
  bool long_session = false;
  for (const auto& l : new_lines) long_session = long_session || (l["event"] == "session" && l["duration"] > 2.5);
  EXPECT_TRUE(long_session) << ReadFile(s.audit_path());
}

}  // namespace
}  // namespace allgo::test
