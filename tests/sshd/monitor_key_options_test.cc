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
#include "monitor.h"
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

// One connection's monitor in a child process, as the listener runs it; the test holds the
// other end of its socket.
class MonitorProcess {
 public:
  explicit MonitorProcess(const std::string& key_options) {
    TestDatabase& db = TestDatabase::Get();
    WriteAllgoConfig(db.ConfigText("[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = " + key_options + "\n"));
    Status st = LoadConfig(AllgoConfigPath(), &config_);
    EXPECT_TRUE(st.ok()) << st.message();
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    sock_.reset(sv[0]);
    UniqueFd monitor_end(sv[1]);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // The monitor dies with the test process; its network child dies with it.
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
      sock_.reset();
      // The network child it watches: nothing but a process to outlive.
      pid_t net = fork();
      if (net == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pause();
        _exit(0);
      }
      sshd::MonitorSettings settings;
      settings.config = &config_;
      settings.conn = {"127.0.0.1", 40000, "127.0.0.1", 2222};
      // The lookup child drops to [sshd] lookup_user as under allgo-sshd (the private
      // namespace has the service users, conf/create-users).
      if (const struct passwd* lookup = getpwnam(config_.sshd.lookup_user.c_str())) {
        settings.lookup_uid = lookup->pw_uid;
        settings.lookup_gid = lookup->pw_gid;
      }
      sshd::Monitor monitor(settings, std::move(monitor_end), net, UniqueFd());
      _exit(monitor.Run());
    }
  }
  ~MonitorProcess() {
    sock_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

  // Sends a request and returns the answer of the wanted type (Exited notices skipped).
  std::string Call(const std::string& request, sshd::MsgType want, std::vector<UniqueFd>* fds = nullptr) {
    EXPECT_TRUE(sshd::SendRecord(sock_.get(), request).ok());
    while (true) {
      sshd::WireMessage msg;
      bool closed = false;
      Status st = sshd::ReceiveRecord(sock_.get(), 20000, &msg, &closed);
      if (!st.ok() || closed) {
        ADD_FAILURE() << "monitor gone: " << st.ToString();
        return "";
      }
      sshd::MsgType type;
      if (sshd::PeekType(msg.payload, &type).ok() && type == want) {
        if (fds != nullptr) *fds = std::move(msg.fds);
        return msg.payload;
      }
    }
  }

  KeyAnswer Authenticate(const std::string& public_line) {
    std::istringstream words(public_line);
    KeyQuery q;
    q.signed_phase = true;
    q.user = "webapp1";
    words >> q.key_type >> q.key_base64;
    KeyAnswer answer;
    EXPECT_TRUE(sshd::Decode(Call(sshd::Encode(q), sshd::MsgType::kKeyAnswer), &answer).ok());
    return answer;
  }

  SpawnResult Spawn(const SpawnRequest& r, std::vector<UniqueFd>* fds) {
    SpawnResult result;
    EXPECT_TRUE(sshd::Decode(Call(sshd::Encode(r), sshd::MsgType::kSpawnResult, fds), &result).ok());
    return result;
  }

 private:
  Config config_;
  UniqueFd sock_;
  pid_t pid_ = -1;
};

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
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
  MonitorProcess monitor("restrict,command=\"echo forced:$SSH_ORIGINAL_COMMAND\"");
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
    MonitorProcess monitor("restrict,from=\"10.0.0.0/8\"");
    EXPECT_FALSE(monitor.Authenticate(key_.public_line).allowed);
  }
  {
    MonitorProcess monitor("restrict,expiry-time=\"20200101\"");
    EXPECT_FALSE(monitor.Authenticate(key_.public_line).allowed);
  }
  MonitorProcess monitor("restrict,pty,from=\"127.0.0.1\",expiry-time=\"29991231\"");
  KeyAnswer answer = monitor.Authenticate(key_.public_line);
  EXPECT_TRUE(answer.allowed);
  EXPECT_TRUE(answer.pty_allowed);
}

}  // namespace
}  // namespace allgo::test
