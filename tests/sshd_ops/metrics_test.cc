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
