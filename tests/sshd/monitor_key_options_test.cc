// The root monitor enforces [authkeys] key_options whatever its network child asks: here the
// test plays a compromised network child that skips the child's own checks and talks the
// monitor protocol directly (real monitor, real database, NSS, real session processes).
#include <signal.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "allgo/config.h"
#include "monitor_process.h"
#include "monitor_protocol.h"
#include "test_support.h"
#include "wire.h"

namespace allgo::test {
namespace {

using ::testing::HasSubstr;
using sshd::KeyAnswer;
using sshd::KeyQuery;
using sshd::SpawnRequest;
using sshd::SpawnResult;

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// The monitor with [authkeys] key_options set to `key_options`.
std::string KeyOptionsConfig(const std::string& key_options) {
  return TestDatabase::Get().ConfigText("[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = " + key_options + "\n");
}

class MonitorKeyOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    key_ = MakeKeyPair(dir_.path(), "owner");
    uint32_t owner = db.AddUser("owner@example.org");
    db.AddKey(owner, key_.public_line);
    db.AddWebapp("webapp1", owner);
  }
  TempDir dir_{"allgo-monitor-keyopts"};
  KeyPair key_;
};

TEST_F(MonitorKeyOptionsTest, PtyAndForcedCommandAreDecidedByTheMonitor) {
  MonitorProcess monitor(KeyOptionsConfig("restrict,command=\"echo forced:$SSH_ORIGINAL_COMMAND\""));
  KeyAnswer answer = monitor.Authenticate(key_.public_line);
  ASSERT_TRUE(answer.allowed);
  EXPECT_FALSE(answer.pty_allowed);
  // A child that asks for a PTY anyway is refused.
  SpawnRequest with_pty;
  with_pty.id = 1;
  with_pty.kind = sshd::SessionKind::kShell;
  with_pty.has_pty = true;
  with_pty.pty.term = "xterm";
  std::vector<UniqueFd> fds;
  SpawnResult result = monitor.Spawn(with_pty, &fds);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("PTY is not permitted"));
  EXPECT_TRUE(fds.empty());
  // Whatever command it asks for, the forced one runs.
  SpawnRequest exec;
  exec.id = 2;
  exec.kind = sshd::SessionKind::kExec;
  exec.command = "rm -rf /";
  result = monitor.Spawn(exec, &fds);
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(fds.size(), 3u);
  fds[0].reset();
  EXPECT_EQ(ReadAll(fds[1].get()), "forced:rm -rf /\n");
}

TEST_F(MonitorKeyOptionsTest, FromAndExpiryAreCheckedByTheMonitor) {
  {
    MonitorProcess monitor(KeyOptionsConfig("restrict,from=\"10.0.0.0/8\""));
    EXPECT_FALSE(monitor.Authenticate(key_.public_line).allowed);
  }
  {
    MonitorProcess monitor(KeyOptionsConfig("restrict,expiry-time=\"20200101\""));
    EXPECT_FALSE(monitor.Authenticate(key_.public_line).allowed);
  }
  MonitorProcess monitor(KeyOptionsConfig("restrict,pty,from=\"127.0.0.1\",expiry-time=\"29991231\""));
  KeyAnswer answer = monitor.Authenticate(key_.public_line);
  EXPECT_TRUE(answer.allowed);
  EXPECT_TRUE(answer.pty_allowed);
}

// Forwarding: the policy travels in the signed KeyAnswer, and OpenStreams (the carrier) is
// refused when it allows nothing, valid once, and only after auth.
TEST_F(MonitorKeyOptionsTest, ForwardPolicyFollowsConfigAndKeyOptions) {
  {
    // key_options not set: nothing is applied under allgo-sshd, forwarding per [sshd].
    MonitorProcess monitor(TestDatabase::Get().ConfigText("[nss]\nshell = /bin/sh\n"));
    KeyAnswer answer = monitor.Authenticate(key_.public_line);
    ASSERT_TRUE(answer.allowed);
    EXPECT_TRUE(answer.pty_allowed);
    const sshd::ForwardPolicy& p = answer.forward_policy;
    EXPECT_TRUE(p.local_tcp && p.remote_tcp && p.local_unix && p.remote_unix && p.agent);
    EXPECT_EQ(p.max_forwards, 64u);
  }
  {
    MonitorProcess monitor(TestDatabase::Get().ConfigText(
        "[nss]\nshell = /bin/sh\n[sshd]\nallow_agent_forwarding = no\npermit_open = localhost:8888\n"
        "[authkeys]\nkey_options = no-agent-forwarding,pty,permitopen=\"localhost:*\"\n"));
    KeyAnswer answer = monitor.Authenticate(key_.public_line);
    ASSERT_TRUE(answer.allowed);
    EXPECT_TRUE(answer.forward_policy.local_tcp);
    EXPECT_FALSE(answer.forward_policy.agent);
    EXPECT_EQ(answer.forward_policy.permit_open.size(), 2u) << "the config's list and the key option's";
  }
}

TEST_F(MonitorKeyOptionsTest, OpenStreamsIsRefusedWhenNothingMayBeForwardedAndValidOnce) {
  MonitorProcess monitor(KeyOptionsConfig("restrict,pty"));
  KeyAnswer answer = monitor.Authenticate(key_.public_line);
  ASSERT_TRUE(answer.allowed);
  EXPECT_FALSE(answer.forward_policy.Any()) << "key_options set explicitly: restrict holds under allgo-sshd";
  std::vector<UniqueFd> fds;
  sshd::StreamsResult result = monitor.OpenStreams(&fds);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("forwarding is not permitted"));
  EXPECT_TRUE(fds.empty());
  // A second one is out of state: the monitor ends the connection.
  EXPECT_EQ(monitor.Call(sshd::Encode(sshd::OpenStreams{}), sshd::MsgType::kStreamsResult, &fds, true), "");
  EXPECT_TRUE(monitor.Closed(10000));
}

TEST_F(MonitorKeyOptionsTest, OpenStreamsBeforeAuthEndsTheConnection) {
  MonitorProcess monitor(TestDatabase::Get().ConfigText("[nss]\nshell = /bin/sh\n"));
  std::vector<UniqueFd> fds;
  EXPECT_EQ(monitor.Call(sshd::Encode(sshd::OpenStreams{}), sshd::MsgType::kStreamsResult, &fds, true), "");
  EXPECT_TRUE(monitor.Closed(10000));
}

}  // namespace
}  // namespace allgo::test
