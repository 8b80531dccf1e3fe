#include "streams_carrier.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allgo/bridge/carrier.h"
#include "allgo/config.h"
#include "allgo/unique_fd.h"
#include "agent_client.h"
#include "gateway_client.h"
#include "sandbox_connect.h"
#include "session_common.h"

namespace allgo::bridge {
namespace {

// One record on stdout: `text`, with `fd` attached when it is >= 0.
bool SendRecord(const std::string& text, int fd) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(1, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(text.size());
}

// The error record (one line, bounded), and the same line on stderr.
int Fail(const std::string& why) {
  std::string line = why.substr(0, kMaxCarrierRecord - sizeof kCarrierErrorPrefix);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  Say(line);
  SendRecord(kCarrierErrorPrefix + line, -1);
  return kExitSetup;
}

}  // namespace

int RunStreamsCarrier(const std::string& config_flag, int signals) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(1, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX) {
    Say("--streams is internal: allgo-sshd starts it with a unix socket as stdout");
    return kExitUsage;
  }
  Config config;
  if (Status s = LoadConfig(ResolveConfigPath(config_flag), &config, PasswordFile::kIfReadable); !s.ok()) {
    return Fail(s.ToString());
  }
  std::string name;
  if (Status s = ResolveWebapp(config, &name); !s.ok()) return Fail(s.message());
  UniqueFd sock;
  if (config.sandbox.backend == SandboxBackend::kDocker) {
    // The gateway finds the container from our uid, as for a session.
    if (Status s = ConnectGateway(config, &sock); !s.ok()) return Fail(s.message());
  } else {
    AgentConnection conn;
    int signo = 0;
    if (Status s = ConnectSandboxAgent(config, name, signals, &conn, &signo); !s.ok()) return Fail(s.message());
    sock = std::move(conn.sock);
  }
  if (!SendRecord(kCarrierOk, sock.get())) {
    Say(ErrnoText("cannot hand the connection to allgo-sshd", errno));
    return kExitSetup;
  }
  return 0;
}

}  // namespace allgo::bridge
