#include "metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace allgo::sshd {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, CountsFromForkedProcessesAddUp) {
  Metrics* m = Metrics::CreateShared();
  ASSERT_NE(m, nullptr);
  m->ConnectionOpened();
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      m->ConnectionOpened();
      m->AuthSucceeded();
      m->SessionStarted();
      m->AddBytes(100, 1000);
      m->SessionEnded(2.5);
      m->ConnectionClosed();
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
  }
  m->AuthRefused(AuthRefusal::kUnknownUser);
  m->DatabaseError();
  std::string text = m->Render();
  EXPECT_TRUE(Has(text, "allgo_ssh_connections_total 5")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_connections_active 1")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_auth_total{result=\"success\"} 4")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_auth_total{result=\"failure\"} 1")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_auth_failures_total{reason=\"unknown_user\"} 1")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_sessions_active 0")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_bucket{le=\"1\"} 0")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_bucket{le=\"5\"} 4")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_bucket{le=\"+Inf\"} 4")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_sum 10")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_bytes_total{direction=\"in\"} 400")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_bytes_total{direction=\"out\"} 4000")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_db_errors_total 1")) << text;
  EXPECT_TRUE(Has(text, "# TYPE allgo_ssh_session_duration_seconds histogram")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_bucket{le=\"0.1\"} 0")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_session_duration_seconds_count 4")) << text;
  EXPECT_TRUE(Has(text, "# TYPE allgo_ssh_auth_total counter")) << text;
  EXPECT_TRUE(Has(text, "# TYPE allgo_ssh_sessions_active gauge")) << text;
  EXPECT_TRUE(Has(text, "# HELP allgo_ssh_db_errors_total Lookups that failed because the database was unreachable."))
      << text;
}

TEST(Metrics, TheCollectableSnapshotsTheSharedCounters) {
  Metrics* m = Metrics::CreateShared();
  ASSERT_NE(m, nullptr);
  m->AddBytes(7, 9);
  auto families = MetricsCollectable(m).Collect();
  const prometheus::MetricFamily* bytes = nullptr;
  for (const auto& f : families) {
    if (f.name == "allgo_ssh_bytes_total") bytes = &f;
  }
  ASSERT_NE(bytes, nullptr);
  EXPECT_EQ(bytes->type, prometheus::MetricType::Counter);
  ASSERT_EQ(bytes->metric.size(), 2u);
  EXPECT_EQ(bytes->metric[0].label[0].value, "in");
  EXPECT_EQ(bytes->metric[0].counter.value, 7);
  EXPECT_EQ(bytes->metric[1].counter.value, 9);
}

TEST(Metrics, GaugesNeverWrapBelowZero) {
  Metrics* m = Metrics::CreateShared();
  m->ConnectionClosed();
  m->SessionEnded(0.01);
  std::string text = m->Render();
  EXPECT_TRUE(Has(text, "allgo_ssh_connections_active 0")) << text;
  EXPECT_TRUE(Has(text, "allgo_ssh_sessions_active 0")) << text;
}

}  // namespace
}  // namespace allgo::sshd
