#include "audit_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace allgo::sshd {
namespace {

class Audit : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/allgo-audit-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/audit.log";
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::vector<nlohmann::json> Lines() {
    std::vector<nlohmann::json> out;
    std::ifstream f(path_);
    std::string line;
    while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  std::string dir_, path_;
};

TEST_F(Audit, AuthAndSessionLinesCarryTheDocumentedFields) {
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(path_, &log).ok());
  ASSERT_TRUE(log->Auth({"203.0.113.7:5000", "sleep", "SHA256:abc", "owner@example.org", "success", ""}).ok());
  SessionEvent s;
  s.client = "203.0.113.7:5000";
  s.user = "sleep";
  s.account = "owner@example.org";
  s.kind = "exec";
  s.exit_status = 3;
  s.bytes_in = 10;
  s.bytes_out = 20;
  s.duration = 1.5;
  ASSERT_TRUE(log->Session(s).ok());
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  for (const char* key : {"time", "event", "client", "user", "fingerprint", "account", "result"}) {
    EXPECT_TRUE(lines[0].contains(key)) << key;
  }
  EXPECT_EQ(lines[0]["event"], "auth");
  EXPECT_EQ(lines[0]["fingerprint"], "SHA256:abc");
  EXPECT_EQ(lines[1]["event"], "session");
  EXPECT_EQ(lines[1]["kind"], "exec");
  EXPECT_EQ(lines[1]["exit_status"], 3);
  EXPECT_EQ(lines[1]["bytes_in"], 10);
  EXPECT_EQ(lines[1]["bytes_out"], 20);
  EXPECT_EQ(lines[1]["duration"], 1.5);
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Audit, HostileUserNamesStayInsideOneJsonLine) {
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(path_, &log).ok());
  std::string evil = "x\"}\n{\"event\":\"forged\"\xff\xfe";
  ASSERT_TRUE(log->Auth({"1.2.3.4:1", evil, "", "", "failure", "unknown user"}).ok());
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["event"], "auth");
  EXPECT_EQ(lines[0]["reason"], "unknown user");
}

TEST_F(Audit, ConcurrentProcessesNeverInterleave) {
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(path_, &log).ok());
  std::vector<pid_t> pids;
  for (int p = 0; p < 4; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < 200; ++i) {
        log->Auth({"1.2.3.4:1", "user" + std::to_string(p), std::string(300, 'f'), "a", "success", ""});
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  EXPECT_EQ(Lines().size(), 800u);  // parse() throws on any torn line
}

TEST_F(Audit, ARenamedFileIsReplacedByTheNextLine) {
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(path_, &log).ok());
  ASSERT_TRUE(log->Auth({"1.2.3.4:1", "before", "", "", "failure", "x"}).ok());
  std::string rotated = path_ + ".1";
  ASSERT_EQ(rename(path_.c_str(), rotated.c_str()), 0);
  // A process that opened the log before the rotation (a long-lived connection).
  pid_t pid = fork();
  if (pid == 0) _exit(log->Auth({"1.2.3.4:1", "after", "", "", "failure", "x"}).ok() ? 0 : 1);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(status, 0);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["user"], "after");
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream old(rotated);
  std::string line;
  ASSERT_TRUE(std::getline(old, line));
  EXPECT_EQ(nlohmann::json::parse(line)["user"], "before");
  EXPECT_FALSE(std::getline(old, line));
  unlink(rotated.c_str());
}

TEST_F(Audit, SymlinkedPathIsRefused) {
  ASSERT_EQ(symlink("/etc/passwd", path_.c_str()), 0);
  std::unique_ptr<AuditLog> log;
  EXPECT_FALSE(AuditLog::Open(path_, &log).ok());
}

}  // namespace
}  // namespace allgo::sshd
