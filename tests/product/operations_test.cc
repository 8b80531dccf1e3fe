// Operations features of allgo-sshd through the real client: PROXY protocol, metrics and
// health endpoint, audit log.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

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

RunResult Http(const Stack& s, const std::string& path) {
  return test::Run({"curl", "-s", "-w", "\n%{http_code}", "--max-time", "10",
                    "http://127.0.0.1:" + std::to_string(s.metrics_port()) + path});
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
  // The endpoint (parses HTTP, holds the database password) is [sshd] metrics_user, a user of
  // its own: the one unprivileged child of the listener (the others are root monitors).
  std::string metrics_uid = std::to_string(UidOf("allgo-metrics"));
  std::string listener = "\nPPid:\t" + std::to_string(s.sshd().pid()) + "\n";
  int unprivileged = 0;
  for (pid_t pid : s.ServerProcesses()) {
    std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
    if (!Contains(status, listener) || Contains(status, "\nUid:\t0\t")) continue;
    ++unprivileged;
    EXPECT_TRUE(Contains(status, "\nUid:\t" + metrics_uid + "\t" + metrics_uid + "\t" + metrics_uid + "\t" + metrics_uid + "\n"))
        << status;
  }
  EXPECT_EQ(unprivileged, 1);
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
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));  // the health check's own cache
  r = Http(s, "/healthz");
  EXPECT_TRUE(Contains(r.out, "database unavailable")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\n503")) << r.out;
  EXPECT_TRUE(Contains(Http(s, "/metrics").out, "\nallgo_ssh_db_errors_total 1\n"));
  TestDatabase::Get().Start();
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

}  // namespace
}  // namespace allgo::test
