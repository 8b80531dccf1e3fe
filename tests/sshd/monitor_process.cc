#include "monitor_process.h"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include <gtest/gtest.h>

#include "monitor.h"
#include "test_support.h"
#include "wire.h"

namespace allgo::test {

MonitorProcess::MonitorProcess(const std::string& config_text, const std::string& config_path) {
  std::string path = config_path.empty() ? AllgoConfigPath() : config_path;
  if (config_path.empty()) {
    WriteAllgoConfig(config_text);
  } else {
    WriteFile(path, config_text);
  }
  Status st = LoadConfig(path, &config_);
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

MonitorProcess::~MonitorProcess() {
  sock_.reset();
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::string MonitorProcess::Call(const std::string& request, sshd::MsgType want, std::vector<UniqueFd>* fds,
                                 bool may_close) {
  EXPECT_TRUE(sshd::SendRecord(sock_.get(), request).ok());
  while (true) {
    sshd::WireMessage msg;
    bool closed = false;
    Status st = sshd::ReceiveRecord(sock_.get(), 60000, &msg, &closed);
    if (!st.ok() || closed) {
      if (!(may_close && st.ok())) ADD_FAILURE() << "monitor gone: " << st.ToString();
      return "";
    }
    sshd::MsgType type;
    if (sshd::PeekType(msg.payload, &type).ok() && type == want) {
      if (fds != nullptr) *fds = std::move(msg.fds);
      return msg.payload;
    }
  }
}

sshd::KeyAnswer MonitorProcess::Authenticate(const std::string& public_line, const std::string& user) {
  std::istringstream words(public_line);
  sshd::KeyQuery q;
  q.signed_phase = true;
  q.user = user;
  words >> q.key_type >> q.key_base64;
  sshd::KeyAnswer answer;
  EXPECT_TRUE(sshd::Decode(Call(sshd::Encode(q), sshd::MsgType::kKeyAnswer), &answer).ok());
  return answer;
}

sshd::SpawnResult MonitorProcess::Spawn(const sshd::SpawnRequest& r, std::vector<UniqueFd>* fds) {
  sshd::SpawnResult result;
  EXPECT_TRUE(sshd::Decode(Call(sshd::Encode(r), sshd::MsgType::kSpawnResult, fds), &result).ok());
  return result;
}

sshd::StreamsResult MonitorProcess::OpenStreams(std::vector<UniqueFd>* fds) {
  sshd::StreamsResult result;
  EXPECT_TRUE(sshd::Decode(Call(sshd::Encode(sshd::OpenStreams{}), sshd::MsgType::kStreamsResult, fds), &result).ok());
  return result;
}

bool MonitorProcess::Closed(int timeout_ms) {
  while (true) {
    sshd::WireMessage msg;
    bool closed = false;
    Status st = sshd::ReceiveRecord(sock_.get(), timeout_ms, &msg, &closed);
    if (!st.ok()) return false;  // timeout: still open
    if (closed) return true;
  }
}

}  // namespace allgo::test
