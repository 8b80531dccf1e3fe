// Fault and load tests of the whole product: real processes, real failures.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "stack.h"

namespace allgo::test {
namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
bool WaitUntil(F condition, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The number of allgo-sshd processes once connections that just ended are gone.
size_t SettledServerProcesses(const Stack& s) {
  size_t last = s.ServerProcesses().size();
  for (int stable = 0, i = 0; stable < 5 && i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    size_t now = s.ServerProcesses().size();
    stable = now == last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

// A session left running in the background: ssh's output goes to a file.
std::unique_ptr<Daemon> Background(const Stack& s, const std::string& command, const std::string& log) {
  return std::make_unique<Daemon>(s.SshArgv(command), log);
}

TEST(Faults, DatabaseOutageFailsNewLoginsQuicklyKeepsSessionsAndRecovers) {
  Stack s;
  ASSERT_EQ(s.Ssh("echo hi").out, "hi\n") << s.SshdLog();
  auto session = Background(s, "for i in $(seq 1 40); do echo tick $i; sleep 0.1; done; echo finished",
                            s.dir() / "session.log");
  ASSERT_TRUE(WaitUntil([&] { return Contains(session->Log(), "tick 1"); }, 15000)) << session->Log();

  TestDatabase::Get().Stop();
  auto start = Clock::now();
  RunResult r = s.Ssh("echo should-not-run");
  auto login_time = Clock::now() - start;
  EXPECT_EQ(r.exit_code, 255) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_LT(login_time, std::chrono::seconds(10)) << "login refusal must come within the timeout";
  EXPECT_TRUE(Contains(s.SshdLog(), "the allgo database is unreachable or failing, logins are refused")) << s.SshdLog();

  // NSS lookups answer without hanging and without printing.
  start = Clock::now();
  r = test::Run({"getent", "passwd", "sleep"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out + r.err, "");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));

  // The running session never needed the database again.
  EXPECT_EQ(session->Stop(0, 20000), 0);
  EXPECT_TRUE(WaitUntil([&] { return !session->Running(); }, 20000));
  EXPECT_TRUE(Contains(session->Log(), "finished")) << session->Log();

  // Back without restarting anything of ours.
  TestDatabase::Get().Start();
  EXPECT_EQ(s.Ssh("echo back").out, "back\n") << s.SshdLog();
}

TEST(Faults, AgentKilledMidSessionEndsItClearlyAndTheServerServesOn) {
  Stack s;
  auto session = Background(s, "echo started; sleep 30", s.dir() / "session.log");
  ASSERT_TRUE(WaitUntil([&] { return Contains(session->Log(), "started"); }, 15000)) << session->Log();
  s.sandbox().Stop(SIGKILL, 5000);
  ASSERT_TRUE(WaitUntil([&] { return !session->Running(); }, 15000)) << "session hangs after the agent died";
  EXPECT_NE(session->Stop(), 0);
  EXPECT_TRUE(Contains(session->Log(), "allgo:")) << "no clear line: " << session->Log();
  s.StartSandbox();
  EXPECT_EQ(s.Ssh("echo again").out, "again\n");
}

TEST(Faults, SandboxFolderRemovedGivesAClearRefusal) {
  Stack s;
  s.StopSandbox();
  std::filesystem::remove_all(s.bridge_dir());
  RunResult r = s.Ssh("echo x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  // The database says running, but nothing answers: the message says so and what to do.
  EXPECT_TRUE(Contains(r.err, "allgo: the sandbox of 'sleep' does not answer (state: running;")) << r.err;
  // The server itself is fine: a webapp whose sandbox comes back is served.
  std::filesystem::create_directories(s.bridge_dir());
  ASSERT_EQ(chown(s.bridge_dir().c_str(), 2001, 65534), 0);
  s.StartSandbox();
  EXPECT_EQ(s.Ssh("echo served").out, "served\n") << s.SshdLog();
}

TEST(Faults, ClientKilledMidTransferLeavesNothingBehind) {
  Stack s;
  size_t baseline = SettledServerProcesses(s);
  Daemon client({"sh", "-c", "exec " + s.SshLine() + " 'cat > /dev/null' < /dev/zero"},
                s.dir() / "client.log");
  // Wait until the transfer is running (a session exists on the server).
  ASSERT_TRUE(WaitUntil([&] { return s.ServerProcesses().size() > baseline + 1; }, 15000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  client.Stop(SIGKILL, 5000);
  // The connection's processes (and the sandbox-side command, through SIGHUP) go away.
  EXPECT_TRUE(WaitUntil([&] { return s.ServerProcesses().size() == baseline; }, 15000))
      << s.ServerProcesses().size() << " server processes left";
  auto session_folders = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(s.bridge_dir())) {
      n += e.path().filename().string().rfind("s-", 0) == 0 ? 1 : 0;
    }
    return n;
  };
  EXPECT_TRUE(WaitUntil([&] { return session_folders() == 0; }, 10000))
      << session_folders() << " session folders left in the bridge folder";
  EXPECT_EQ(s.Ssh("echo ok").out, "ok\n");
}

TEST(Faults, SigtermStopsAcceptingAndLetsSessionsFinish) {
  Stack s;
  auto session = Background(s, "echo started; sleep 2; echo finished", s.dir() / "session.log");
  ASSERT_TRUE(WaitUntil([&] { return Contains(session->Log(), "started"); }, 15000)) << session->Log();
  kill(s.sshd().pid(), SIGTERM);
  EXPECT_TRUE(WaitUntil([&] { return !WaitForTcpPort(s.port(), 100); }, 5000)) << "still accepting";
  EXPECT_TRUE(WaitUntil([&] { return !session->Running(); }, 15000));
  EXPECT_EQ(session->Stop(), 0) << session->Log();
  EXPECT_TRUE(Contains(session->Log(), "finished"));
  EXPECT_TRUE(WaitUntil([&] { return !s.sshd().Running(); }, 10000)) << "server did not exit";
}

TEST(Load, TwoHundredSessionsThenABurstOf500ThenBackToBaseline) {
  Stack s;
  ASSERT_EQ(s.Ssh("true").exit_code, 0);
  size_t baseline_procs = SettledServerProcesses(s);
  long baseline_rss = s.ServerRssKib();

  // 200 concurrent sessions, started over a few seconds as real users would arrive. The clients
  // share the server's cores here: their post-quantum key generation (sntrup761, ~60 ms of CPU
  // each) would count as server slowness, so they use curve25519 (sshd_crypto_test covers PQ).
  std::string script = "cd " + s.dir().path() + " && for i in $(seq 1 200); do " + s.SshLine() +
                       " -o KexAlgorithms=curve25519-sha256 'sleep 6; echo ok' > out.$i 2>&1 & sleep 0.02; done; wait";
  Daemon clients({"sh", "-c", script}, s.dir() / "clients.log");
  size_t peak = 0;
  WaitUntil([&] {
    peak = std::max(peak, s.ServerProcesses().size());
    return !clients.Running();
  }, 180000);
  ASSERT_FALSE(clients.Running()) << "clients did not finish";
  int served = 0;
  std::string failures;
  for (int i = 1; i <= 200; ++i) {
    std::string out = ReadFile(s.dir() / ("out." + std::to_string(i)));
    if (out == "ok\n") {
      ++served;
    } else if (failures.size() < 2000) {
      failures += "client " + std::to_string(i) + ": " + out + "\n";
    }
  }
  EXPECT_EQ(served, 200) << failures;
  EXPECT_GE(peak, baseline_procs + 200) << "sessions did not overlap";

  // A burst of 500 connections that never send a byte. They wait in the listener without a
  // process (at most half of max_startups' 32 running slots go to silent ones), newcomers past
  // per_source_max_startups (200) take the place of the oldest waiting ones, the server stays
  // up and small, and a real user gets in while the burst is still held open.
  std::vector<int> fds;
  int refused = 0;
  for (int i = 0; i < 500; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(s.port()));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ++refused;
      close(fd);
      continue;
    }
    fds.push_back(fd);
  }
  EXPECT_TRUE(WaitUntil([&] { return s.Ssh("echo during-burst").out == "during-burst\n"; }, 30000)) << s.SshdLog();
  EXPECT_LE(s.ServerProcesses().size(), baseline_procs + 2 * 32) << "waiting connections must not have processes";
  int banners = 0, closed = 0, waiting = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    char buf[64];
    ssize_t n = poll(&p, 1, 0) == 1 ? recv(fd, buf, sizeof buf, MSG_DONTWAIT) : -1;
    if (n > 0 && std::string(buf, static_cast<size_t>(n)).rfind("SSH-2.0-", 0) == 0) {
      ++banners;
    } else if (p.revents != 0) {
      ++closed;  // made room for a newer connection
    } else {
      ++waiting;
    }
  }
  EXPECT_EQ(banners + closed + waiting + refused, 500);
  EXPECT_GT(banners, 0) << "silent connections get a share of the slots";
  EXPECT_GT(closed, 0) << "per_source_max_startups never made room";
  EXPECT_TRUE(s.sshd().Running()) << s.SshdLog();
  for (int fd : fds) close(fd);
  EXPECT_TRUE(WaitUntil([&] { return s.Ssh("echo after-burst").out == "after-burst\n"; }, 30000));

  // Everything closes; the server returns to its resting size.
  EXPECT_TRUE(WaitUntil([&] { return s.ServerProcesses().size() == baseline_procs; }, 30000))
      << s.ServerProcesses().size() << " processes, baseline " << baseline_procs;
  long after = s.ServerRssKib();
  EXPECT_LE(after, baseline_rss + 4096) << "RSS " << after << " KiB, baseline " << baseline_rss;
}

}  // namespace
}  // namespace allgo::test
