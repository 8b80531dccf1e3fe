// Forwarding under allgo-sshd with other client implementations than OpenSSH's (paramiko,
// asyncssh, PuTTY's plink), and the faults of issue 19: a sandbox service that closes
// mid-stream, a flood of connections on an -R listener, the sandbox's stream server killed with
// forwards open. Same sandbox as sshd_forward_test (sshd_forward_fixture.h: its own network
// namespace; "sandbox" or "frontend" tells where a forward landed). The python clients are
// tests/sshd/clients/*.py, run with Debian's /usr/bin/python3 (python3-paramiko, python3-asyncssh).
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client_flows.h"
#include "sshd_forward_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A port of the sandbox's own network namespace (nothing else listens there).
constexpr int kFaultyPort = 7101;
// What the faulty service answers before it closes: more than a stream window (256 KiB), so the
// close comes while the forward is busy moving data.
constexpr int kAnswerSize = 1024 * 1024 + 123;

// The processes of allgo-sshd below `pid` (the listener's per-connection monitors, their network
// children...), and what they hold.
struct Footprint {
  size_t processes = 0, fds = 0, threads = 0;
  long rss_kb = 0;
};
void AddTree(pid_t pid, Footprint* f) {
  ++f->processes;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++f->fds;
  }
  std::string threads = ProcStatusField(pid, "Threads"), rss = ProcStatusField(pid, "VmRSS");
  f->threads += threads.empty() ? 0 : std::stoul(threads);
  f->rss_kb += rss.empty() ? 0 : std::stol(rss);
  for (pid_t child : ChildrenOf(pid)) AddTree(child, f);
}
Footprint FootprintOf(pid_t pid) {
  Footprint f;
  AddTree(pid, &f);
  return f;
}
std::string Describe(const Footprint& f) {
  return std::to_string(f.processes) + " processes, " + std::to_string(f.fds) + " fds, " + std::to_string(f.threads) +
         " threads, " + std::to_string(f.rss_kb) + " kB RSS";
}

// utime + stime of `pid` and every process below it, in clock ticks.
long CpuTicks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  long ticks = 0;
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    // After the command: state is field 3, utime 14 and stime 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i >= 14) ticks += std::stol(field);
    }
  }
  for (pid_t child : ChildrenOf(pid)) ticks += CpuTicks(child);
  return ticks;
}

// Every process below `pid`, depth first.
void Descendants(pid_t pid, std::vector<pid_t>* out) {
  for (pid_t child : ChildrenOf(pid)) {
    out->push_back(child);
    Descendants(child, out);
  }
}

class SshdForwardClientsTest : public SshdForwardFixture {
 protected:
  SshdForwardClientsTest() : SshdForwardFixture("allgo-sshd-fwd-clients") {
    // A sandbox service that misbehaves (fault tests).
    sandbox_services_ = "/usr/bin/python3 " + ShellQuote(ClientScript("faulty_service.py")) + " " +
                        std::to_string(kFaultyPort) + " " + std::to_string(kAnswerSize) + " >/dev/null 2>&1 & ";
  }

  // What the client checks (client_flows.h) need of this sandbox.
  ClientTarget Target() const {
    return ClientTarget{.server = server_.get(), .key = key_.private_path, .user = "sleep", .local_dir = tmp_.path(),
                        .shared_dir = shared_, .port = port_, .frontend_only_port = frontend_only_port_,
                        .context = [this] { return server_->log(); }};
  }

  // A ControlMaster connection with `forwards` (-L/-R options); sessions and new forwards join
  // it through Through(). The master is ended by the Daemon.
  std::unique_ptr<Daemon> Master(const std::vector<std::string>& forwards) {
    control_ = tmp_ / "cm.sock";
    std::vector<std::string> options = {"-M", "-S", control_, "-N", "-o", "ExitOnForwardFailure=yes"};
    options.insert(options.end(), forwards.begin(), forwards.end());
    auto master = std::make_unique<Daemon>(SshArgv(options), tmp_ / "master.log");
    EXPECT_TRUE(WaitFor([&] { return fs::exists(control_); }, 15000)) << master->Log() << server_->log();
    return master;
  }
  // A command run in a new session of the master's connection.
  RunResult Through(const std::string& command, int timeout_seconds = 90) {
    RunOptions options;
    options.timeout_seconds = timeout_seconds;
    return test::Run({"ssh", "-S", control_, "-o", "LogLevel=ERROR", "x", command}, options);
  }
  // The connection's monitor: the one child of allgo-sshd that is not in `before`.
  pid_t NewChild(const std::vector<pid_t>& before) {
    pid_t found = -1;
    for (pid_t child : ChildrenOf(server_->pid())) {
      if (std::find(before.begin(), before.end(), child) != before.end()) continue;
      if (found != -1) return -1;
      found = child;
    }
    return found;
  }

  // A connection to the frontend's 127.0.0.1:port, held open: it prints "connected", then
  // "end b''" when the far side closes it (within 60 s).
  std::unique_ptr<Daemon> HoldConnection(int port, const std::string& name) {
    return std::make_unique<Daemon>(
        std::vector<std::string>{"/usr/bin/python3", "-c",
                                 "import socket\ns = socket.create_connection(('127.0.0.1', " + std::to_string(port) +
                                     "))\nprint('connected', flush=True)\ns.settimeout(60)\n"
                                     "print('end', s.recv(1), flush=True)"},
        tmp_ / (name + ".log"));
  }
  // allgo-sshd has no child outside `before` (those may have gone meanwhile: a connection
  // that was closing).
  bool NoChildBut(const std::vector<pid_t>& before) {
    for (pid_t child : ChildrenOf(server_->pid())) {
      if (std::find(before.begin(), before.end(), child) == before.end()) return false;
    }
    return true;
  }
  // The agent's child serving the latest connection's forwards (host pid; -1 if not found): the
  // agent logs its pid in the sandbox's pid namespace, /proc/PID/status's NSpid ends with it.
  pid_t StreamServer() {
    const std::string log = agent_->Log(), marker = "stream mode, served by pid ";
    size_t at = log.rfind(marker);
    if (at == std::string::npos) return -1;
    const std::string inner = log.substr(at + marker.size(), log.find('\n', at) - at - marker.size());
    std::vector<pid_t> sandbox;
    Descendants(agent_->pid(), &sandbox);
    for (pid_t p : sandbox) {
      std::istringstream ns(ProcStatusField(p, "NSpid"));
      std::string last, word;
      while (ns >> word) last = word;
      if (last == inner) return p;
    }
    return -1;
  }

  std::string control_;
};

// ---------------------------------------------------------------------------------------
// Other clients.

TEST_F(SshdForwardClientsTest, ParamikoDirectTcpipLandsInTheSandbox) {
  ExpectParamikoDirectTcpipLandsInTheSandbox(Target());
}

TEST_F(SshdForwardClientsTest, ParamikoTcpipForwardGetsItsPortAndTheSandboxsConnections) {
  ExpectParamikoTcpipForwardGetsItsPort(Target());
}

TEST_F(SshdForwardClientsTest, AsyncsshLocalForwardAndCreateConnection) {
  ExpectAsyncsshLocalForwardLandsInTheSandbox(Target());
}

TEST_F(SshdForwardClientsTest, AsyncsshRemoteForwardReachesTheFrontendFromTheSandbox) {
  ExpectAsyncsshRemoteForwardReachesTheClientSide(Target());
}

TEST_F(SshdForwardClientsTest, AsyncsshAgentForwardingListsTheKey) {
  ExpectAsyncsshAgentForwardingListsTheKey(Target());
}

TEST_F(SshdForwardClientsTest, PlinkLocalForwardWithAPinnedHostKey) {
  ExpectPlinkLocalForwardWithAPinnedHostKey(Target());
}

// ---------------------------------------------------------------------------------------
// Faults.

// The sandbox's service answers 1 MiB and closes in the middle of the conversation (the client
// has not closed its side): the client gets every byte and then the end, no hang; when the
// service resets instead, the client gets what was sent and the end. The connection's other
// forward and its sessions carry on.
TEST_F(SshdForwardClientsTest, ServiceClosingMidStreamEndsOnlyItsForward) {
  ExpectServiceClosingMidStreamEndsOnlyItsForward(Target(), kFaultyPort, kAnswerSize);
}

// A client that stops reading a download, then cancels it mid-flow; and a sandbox service that
// stops reading an upload: flow control holds each forward where it is (bounded bytes in
// flight, no memory growth in the connection's processes or the sandbox's stream server), the
// download resumes, and the cancelled one is let go on the sandbox's side at once.
TEST_F(SshdForwardClientsTest, StalledReaderOnEitherSideGrowsNoMemory) {
  const int bulk = FreeLoopbackPort(), web = FreeLoopbackPort();
  const std::vector<pid_t> idle = ChildrenOf(server_->pid());
  auto master = Master({"-L", "127.0.0.1:" + std::to_string(bulk) + ":127.0.0.1:" + std::to_string(kFaultyPort), "-L",
                        "127.0.0.1:" + std::to_string(web) + ":127.0.0.1:" + std::to_string(port_)});
  // Warm: the forwarding path is open, a session has run.
  ASSERT_TRUE(WaitFor([&] { return Get(web) == "sandbox\n"; }, 15000)) << master->Log() << server_->log();
  ASSERT_EQ(Through("echo warm").out, "warm\n") << master->Log() << server_->log();
  const pid_t connection = NewChild(idle);
  ASSERT_GT(connection, 0);
  const Footprint before = FootprintOf(connection);
  const pid_t stream_server = StreamServer();
  ASSERT_GT(stream_server, 0) << agent_->Log();
  const Footprint sandbox_before = FootprintOf(stream_server);
  auto measure = [&](const char* when) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    const Footprint now = FootprintOf(connection), sandbox_now = FootprintOf(stream_server);
    std::cout << when << ": the connection's processes " << Describe(now) << " (before: " << Describe(before)
              << "); the stream server " << Describe(sandbox_now) << " (before: " << Describe(sandbox_before) << ")"
              << std::endl;
    // Windows and buffers of a few MiB; without flow control a second of either stall would
    // be gigabytes.
    EXPECT_LT(now.rss_kb, before.rss_kb + 16384) << when;
    EXPECT_LT(sandbox_now.rss_kb, sandbox_before.rss_kb + 16384) << when;
  };

  // The download: 1 MiB read, a pause where the test measures, 8 MiB more, then the client
  // closes while the service is still sending (a cancelled download), and ten more like it.
  Daemon download({"/usr/bin/python3", ClientScript("stall_client.py"), std::to_string(bulk), "download"},
                  tmp_ / "download.log");
  ASSERT_TRUE(WaitFor([&] { return download.Log().find("download stalled") != std::string::npos; }, 20000))
      << download.Log() << server_->log();
  measure("download stalled");
  ASSERT_TRUE(WaitFor([&] { return download.Log().find("download cancelled") != std::string::npos; }, 20000))
      << download.Log() << server_->log();
  EXPECT_THAT(download.Log(), HasSubstr("download resumed True"));
  // The sandbox's side lets the cancelled downloads go: their sockets to the service are closed.
  Footprint sandbox_now;
  EXPECT_TRUE(WaitFor([&] { return (sandbox_now = FootprintOf(stream_server)).fds <= sandbox_before.fds; }, 10000))
      << "the stream server before: " << Describe(sandbox_before) << "; after the cancels: " << Describe(sandbox_now)
      << server_->log();

  // The upload: the service never reads; the client pushes until nothing moves for 3 s.
  Daemon upload({"/usr/bin/python3", ClientScript("stall_client.py"), std::to_string(bulk), "upload"},
                tmp_ / "upload.log");
  ASSERT_TRUE(WaitFor([&] { return upload.Log().find("upload blocked after") != std::string::npos; }, 40000))
      << upload.Log() << server_->log();
  measure("upload stalled");
  // What the upload pushed before it blocked: kernel buffers and windows, not an open tap.
  const std::string log = upload.Log();
  EXPECT_LT(std::stoll(log.substr(log.find("upload blocked after ") + 21)), 64LL << 20) << log;
  EXPECT_EQ(Through("echo still-here").out, "still-here\n");
  // The connection's end takes the stalled forward with it, on both sides.
  master->Stop(SIGTERM, 5000);
  EXPECT_TRUE(WaitFor([&] { return NoChildBut(idle); }, 15000)) << "the connection's processes";
  EXPECT_TRUE(WaitFor([&] { return !fs::exists("/proc/" + std::to_string(stream_server)); }, 15000))
      << "the stream server";
}

// 2000 connections at once from inside the sandbox to an -R listener: at most max_forwards
// reach the client, the rest are closed at once (never left hanging), the connection and its
// session carry on, its processes hold no more than before once the flood is over, and the
// next client is served.
TEST_F(SshdForwardClientsTest, ListenerFloodIsBoundedAndLeavesNothingBehind) {
  constexpr int kMaxForwards = 20, kFlood = 2000;
  const int metrics_port = FreeLoopbackPort();
  const std::string audit = tmp_ / "audit.jsonl";
  StartServer("max_forwards = " + std::to_string(kMaxForwards) + "\nmetrics_listen = 127.0.0.1:" +
              std::to_string(metrics_port) + "\naudit_log = " + audit + "\n");
  const int hold_port = FreeLoopbackPort(), remote = FreeLoopbackPort();
  Daemon hold({"/usr/bin/python3", ClientScript("hold_server.py"), std::to_string(hold_port)}, tmp_ / "hold.log");
  ASSERT_TRUE(WaitFor([&] { return hold.Log().find("ready") != std::string::npos; }, 10000)) << hold.Log();
  const std::vector<pid_t> idle = ChildrenOf(server_->pid());
  auto master = Master({"-R", "127.0.0.1:" + std::to_string(remote) + ":127.0.0.1:" + std::to_string(hold_port)});
  // Warm up the connection (a session, one forwarded connection) before the baseline.
  ASSERT_THAT(Through("/usr/bin/python3 " + ShellQuote(ClientScript("flood.py")) + " " + std::to_string(remote) + " 1 10").out,
              HasSubstr("served=1 closed=0 hanging=0"))
      << master->Log() << server_->log();
  ASSERT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward forwarded-tcpip end") == 1; }, 10000));
  const pid_t connection = NewChild(idle);
  ASSERT_GT(connection, 0) << "one connection, one monitor";
  ASSERT_TRUE(WaitFor([&] { return FootprintOf(connection).processes == 2; }, 10000))
      << "the monitor and its network child: " << Describe(FootprintOf(connection));
  const Footprint before = FootprintOf(connection);
  // The sandbox's side of the connection: its stream server (one process, its listener, its socket).
  const pid_t stream_server = StreamServer();
  ASSERT_GT(stream_server, 0) << agent_->Log();
  const Footprint sandbox_before = FootprintOf(stream_server);

  RunResult flood = Through("HOLD=3 /usr/bin/python3 " + ShellQuote(ClientScript("flood.py")) + " " + std::to_string(remote) +
                                " " + std::to_string(kFlood) + " 60",
                            120);
  EXPECT_EQ(flood.exit_code, 0) << flood.err;
  EXPECT_THAT(flood.out, HasSubstr("served=" + std::to_string(kMaxForwards) + " closed=" +
                                   std::to_string(kFlood - kMaxForwards) + " hanging=0"))
      << flood.err << server_->log().substr(0, 4000);
  // allgo-sshd refused the excess (the agent's own bound is higher), and counted it.
  const std::string metrics =
      test::Run({"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"}).out;
  EXPECT_THAT(metrics, HasSubstr("allgo_ssh_forwards_total{kind=\"forwarded-tcpip\",result=\"accepted\"} " +
                                 std::to_string(kMaxForwards + 1) + "\n"));
  // The client never got more channels than the limit.
  EXPECT_EQ(Occurrences(hold.Log(), "accepted "), static_cast<size_t>(kMaxForwards + 1));
  // Every served forward ends with the flood, and the connection is back to what it held.
  EXPECT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward forwarded-tcpip end") == kMaxForwards + 1; },
                      20000))
      << server_->log().substr(0, 4000);
  EXPECT_EQ(Through("echo still-here").out, "still-here\n");
  Footprint after;
  EXPECT_TRUE(WaitFor([&] {
    after = FootprintOf(connection);
    return after.processes == before.processes && after.fds <= before.fds && after.threads <= before.threads;
  }, 10000)) << "before: " << Describe(before) << "; after: " << Describe(after);
  std::cout << "the connection's processes before the flood: " << Describe(before) << "; after: " << Describe(after)
            << std::endl;
  // Buffers are bounded per forward and freed with it; allow the allocator some slack.
  EXPECT_LT(after.rss_kb, before.rss_kb + 4096) << "before: " << Describe(before) << "; after: " << Describe(after);
  Footprint sandbox_after;
  EXPECT_TRUE(WaitFor([&] {
    sandbox_after = FootprintOf(stream_server);
    return sandbox_after.processes == sandbox_before.processes && sandbox_after.fds <= sandbox_before.fds;
  }, 10000)) << "the stream server before: " << Describe(sandbox_before) << "; after: " << Describe(sandbox_after);
  // The listener still serves, and so does the server.
  EXPECT_THAT(Through("/usr/bin/python3 " + ShellQuote(ClientScript("flood.py")) + " " + std::to_string(remote) + " 1 10").out,
              HasSubstr("served=1 closed=0 hanging=0"));
  EXPECT_THAT(Stdio("127.0.0.1:" + std::to_string(port_)).out, HasSubstr("sandbox"));
  master->Stop(SIGTERM, 5000);
  // The sandbox's flood does not flood the audit log: 20 refusals a minute get their own line,
  // one line sums up the rest when the connection ends.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(audit).find("not audited one by one") != std::string::npos; }, 15000))
      << ReadFile(audit).substr(0, 4000);
  const std::string lines = ReadFile(audit);
  const size_t one_by_one = Occurrences(lines, "\"result\":\"refused: max_forwards reached");
  EXPECT_GE(one_by_one, 20u);
  EXPECT_LE(one_by_one, 40u) << "20 a minute; the flood lasts less than two";
  uint64_t summed = 0;
  const std::regex summary("\"result\":\"refused: (\\d+) more refusals");
  for (auto it = std::sregex_iterator(lines.begin(), lines.end(), summary); it != std::sregex_iterator(); ++it) {
    summed += std::stoull((*it)[1].str());
  }
  EXPECT_GT(summed, 0u);
  // Every refusal the metrics counted is in the audit log, one way or the other (read once the
  // connection is over: its monitor has reported everything).
  uint64_t refused = 0;
  EXPECT_TRUE(WaitFor([&] {
    const std::string scraped =
        test::Run({"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"}).out;
    std::smatch m;
    static const std::regex kRefused("allgo_ssh_forwards_total\\{kind=\"forwarded-tcpip\",result=\"refused\"\\} (\\d+)");
    if (!std::regex_search(scraped, m, kRefused)) return false;
    refused = std::stoull(m[1].str());
    return refused == one_by_one + summed;
  }, 10000)) << "metrics: " << refused << " refused; audit: " << one_by_one << " lines + " << summed << " summed";
}

// The sandbox's stream server (the agent's child serving this connection's forwards) is killed
// with a -L and an -R forward open: both end (the client's sockets see the end), the session
// still works, nothing is left running, and a new connection forwards again.
TEST_F(SshdForwardClientsTest, StreamServerKilledEndsEveryForwardAndLeaksNothing) {
  const int hold_port = FreeLoopbackPort(), remote = FreeLoopbackPort(), web = FreeLoopbackPort(),
            bulk = FreeLoopbackPort();
  Daemon hold({"/usr/bin/python3", ClientScript("hold_server.py"), std::to_string(hold_port)}, tmp_ / "hold.log");
  ASSERT_TRUE(WaitFor([&] { return hold.Log().find("ready") != std::string::npos; }, 10000)) << hold.Log();
  const std::vector<pid_t> idle = ChildrenOf(server_->pid());
  auto master = Master({"-L", "127.0.0.1:" + std::to_string(web) + ":127.0.0.1:" + std::to_string(port_), "-L",
                        "127.0.0.1:" + std::to_string(bulk) + ":127.0.0.1:" + std::to_string(kFaultyPort), "-R",
                        "127.0.0.1:" + std::to_string(remote) + ":127.0.0.1:" + std::to_string(hold_port)});
  ASSERT_TRUE(WaitFor([&] { return Get(web) == "sandbox\n"; }, 15000)) << master->Log() << server_->log();
  const pid_t connection = NewChild(idle);
  ASSERT_GT(connection, 0);
  // Busy: an endless download through -L, bytes in flight everywhere when the kill comes...
  Daemon download({"/usr/bin/python3", "-c",
                   "import socket\ns = socket.create_connection(('127.0.0.1', " + std::to_string(bulk) +
                       "))\ns.sendall(b'endless')\ns.settimeout(60)\nn = 0\nwhile True:\n"
                       "    chunk = s.recv(65536)\n    if not chunk: break\n    n += len(chunk)\n"
                       "    if n >= 4 << 20 and n - len(chunk) < 4 << 20: print('flowing', flush=True)\n"
                       "print('end after', n, flush=True)"},
                  tmp_ / "download.log");
  ASSERT_TRUE(WaitFor([&] { return download.Log().find("flowing") != std::string::npos; }, 15000))
      << download.Log() << server_->log();
  // ... a connection held open through -L (the frontend side waits for the end)...
  auto local_side = HoldConnection(web, "local-side");
  // ... and one from inside the sandbox through -R to the frontend's hold server.
  Daemon sandbox_side({"ssh", "-S", control_, "-o", "LogLevel=ERROR", "x",
                       "/usr/bin/python3 -c \"import socket\ns = socket.create_connection(('127.0.0.1', " +
                           std::to_string(remote) + "))\nprint('got', s.recv(7), flush=True)\ns.settimeout(60)\n"
                           "print('end', s.recv(1), flush=True)\""},
                      tmp_ / "sandbox-side.log");
  ASSERT_TRUE(WaitFor([&] { return local_side->Log().find("connected") != std::string::npos; }, 10000))
      << local_side->Log();
  ASSERT_TRUE(WaitFor([&] { return sandbox_side.Log().find("got b'served\\n'") != std::string::npos; }, 15000))
      << sandbox_side.Log() << server_->log();
  ASSERT_TRUE(WaitFor([&] { return hold.Log().find("accepted 1") != std::string::npos; }, 10000)) << hold.Log();

  const pid_t stream_server = StreamServer();
  ASSERT_GT(stream_server, 0) << agent_->Log();
  ASSERT_EQ(kill(stream_server, SIGKILL), 0);

  // Both forwards end: the -L socket on the frontend and the -R one in the sandbox see the end,
  // and the client closed its side towards the hold server.
  EXPECT_TRUE(WaitFor([&] { return local_side->Log().find("end b''") != std::string::npos; }, 15000))
      << local_side->Log() << server_->log();
  EXPECT_TRUE(WaitFor([&] { return sandbox_side.Log().find("end b''") != std::string::npos; }, 15000))
      << sandbox_side.Log();
  EXPECT_TRUE(WaitFor([&] { return hold.Log().find("closed 1") != std::string::npos; }, 15000)) << hold.Log();
  EXPECT_TRUE(WaitFor([&] { return download.Log().find("end after") != std::string::npos; }, 15000))
      << download.Log();
  EXPECT_TRUE(server_->WaitForLog("forwarding path to the sandbox lost")) << server_->log();
  EXPECT_THAT(server_->log(), HasSubstr("result=aborted: the path to the sandbox was lost"));
  // The stream server is gone for good (reaped by the agent, not a zombie).
  EXPECT_TRUE(WaitFor([&] { return !fs::exists("/proc/" + std::to_string(stream_server)); }, 10000))
      << ProcStatusField(stream_server, "State");
  // The connection's session still works; a new forward on it fails cleanly (no hang).
  EXPECT_EQ(Through("echo still-here").out, "still-here\n");
  EXPECT_EQ(Get(web), "");
  // And its processes rest: no loop left polling for forwards that are gone.
  const long busy = CpuTicks(connection);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_LT(CpuTicks(connection) - busy, 30) << "CPU ticks of the connection's processes in 3 s of quiet";
  // The connection ends: nothing of it is left.
  master->Stop(SIGTERM, 5000);
  EXPECT_TRUE(WaitFor([&] { return NoChildBut(idle); }, 15000))
      << "the connection's processes are gone";
  // A new connection gets a new path to the sandbox.
  RunResult r = Stdio("127.0.0.1:" + std::to_string(port_));
  EXPECT_THAT(r.out, HasSubstr("sandbox")) << r.err << server_->log();
}

// The sandbox's agent itself is killed (its sandbox goes down with it, as a container whose
// main process dies) with a forward open: the forward ends, the session gets a clear error
// instead of a hang, nothing of the connection is left once the client goes, and once the
// sandbox is started again a new connection forwards into it.
TEST_F(SshdForwardClientsTest, SandboxAgentKilledEndsForwardsAndARestartedSandboxServesAgain) {
  const int web = FreeLoopbackPort();
  const std::vector<pid_t> idle = ChildrenOf(server_->pid());
  auto master = Master({"-L", "127.0.0.1:" + std::to_string(web) + ":127.0.0.1:" + std::to_string(port_)});
  ASSERT_TRUE(WaitFor([&] { return Get(web) == "sandbox\n"; }, 15000)) << master->Log() << server_->log();
  auto held = HoldConnection(web, "held");
  ASSERT_TRUE(WaitFor([&] { return held->Log().find("connected") != std::string::npos; }, 10000)) << held->Log();
  ASSERT_TRUE(WaitFor([&] { return Occurrences(server_->log(), "forward direct-tcpip open:") >= 2; }, 10000))
      << server_->log();
  // The agent: the process of the sandbox whose parent is not an agent too (its children are).
  std::vector<pid_t> sandbox;
  Descendants(agent_->pid(), &sandbox);
  pid_t agent = -1;
  for (pid_t p : sandbox) {
    if (ReadFile("/proc/" + std::to_string(p) + "/comm").rfind("allgo-sandbox", 0) != 0) continue;
    const std::string parent = ProcStatusField(p, "PPid");
    if (ReadFile("/proc/" + parent + "/comm").rfind("allgo-sandbox", 0) != 0) agent = p;
  }
  ASSERT_GT(agent, 0) << "no agent in the sandbox";
  ASSERT_EQ(kill(agent, SIGKILL), 0);

  EXPECT_TRUE(WaitFor([&] { return held->Log().find("end b''") != std::string::npos; }, 15000))
      << held->Log() << server_->log();
  EXPECT_TRUE(server_->WaitForLog("forwarding path to the sandbox lost")) << server_->log();
  EXPECT_EQ(Get(web), "");  // a new forward on that connection fails at once
  RunResult session = Through("echo never", 60);
  EXPECT_NE(session.exit_code, 0);
  EXPECT_THAT(session.out, Not(HasSubstr("never")));
  EXPECT_THAT(session.err, HasSubstr("does not answer")) << session.err;  // "...; restart it ..."
  master->Stop(SIGTERM, 5000);
  EXPECT_TRUE(WaitFor([&] { return NoChildBut(idle); }, 15000)) << "the connection's processes";

  StartSandbox();
  ASSERT_FALSE(HasFatalFailure());
  std::string got;
  EXPECT_TRUE(WaitFor([&] { return (got = Stdio("127.0.0.1:" + std::to_string(port_)).out).find("sandbox") != std::string::npos; },
                      20000))
      << got << server_->log();
}

}  // namespace
}  // namespace allgo::test
