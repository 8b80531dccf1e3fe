// Admission control (sshd/src/admission.h) on real loopback TCP connections: what the
// listener decides for each accepted socket, without forking anything.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "admission.h"
#include "child_process.h"

namespace allgo::sshd {
namespace {

constexpr uint64_t kTag = 1ull << 56;

GreetingInfo Classify(const std::string& bytes, ProxyMode mode = ProxyMode::kOff) {
  return ClassifyGreeting(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), mode);
}

TEST(Greeting, ClassifiesTheFirstBytes) {
  EXPECT_EQ(Classify("").state, Greeting::kSilent);
  EXPECT_EQ(Classify("S").state, Greeting::kPartial);
  EXPECT_EQ(Classify("SSH-2.0-Open").state, Greeting::kPartial);
  EXPECT_EQ(Classify("SSH-2.0-OpenSSH_9.2\r\n").state, Greeting::kReady);
  EXPECT_EQ(Classify("SSH-2.0-OpenSSH_9.2\r\n\0\0\0\x14").state, Greeting::kReady);
  EXPECT_EQ(Classify("GET / HTTP/1.1\r\n").state, Greeting::kInvalid);
  EXPECT_EQ(Classify("SSX").state, Greeting::kInvalid);
  EXPECT_EQ(Classify("SSH-" + std::string(300, 'a')).state, Greeting::kInvalid);
  // Without proxy_protocol (or from an untrusted peer) a PROXY header is not SSH.
  EXPECT_EQ(Classify("PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\r\nSSH-2.0-x\r\n").state, Greeting::kInvalid);
}

TEST(Greeting, LooksPastAProxyHeader) {
  const std::string header = "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\r\n";
  for (ProxyMode mode : {ProxyMode::kOptional, ProxyMode::kRequired}) {
    GreetingInfo g = Classify(header + "SSH-2.0-x\r\n", mode);
    EXPECT_EQ(g.state, Greeting::kReady);
    EXPECT_TRUE(g.has_proxy_header);
    EXPECT_EQ(AddressToString(g.header.source), "203.0.113.9");
    g = Classify(header, mode);  // a client behind the proxy that waits for our version
    EXPECT_EQ(g.state, Greeting::kSilent);
    EXPECT_TRUE(g.has_proxy_header);
    EXPECT_EQ(Classify(header.substr(0, 20), mode).state, Greeting::kPartial);
    EXPECT_EQ(Classify("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n", mode).state, Greeting::kInvalid);
  }
  EXPECT_EQ(Classify("SSH-2.0-x\r\n", ProxyMode::kOptional).state, Greeting::kReady);
  GreetingInfo g = Classify("SSH-2.0-x\r\n", ProxyMode::kRequired);
  EXPECT_EQ(g.state, Greeting::kInvalid);
  EXPECT_EQ(g.error, "PROXY header required but not sent");
}

TEST(Greeting, SourceKeys) {
  sockaddr_storage a{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
  v4->sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.7", &v4->sin_addr);
  EXPECT_EQ(SourceKey(a), "192.0.2.7");
  a = sockaddr_storage{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
  v6->sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.0.2.7", &v6->sin6_addr);
  EXPECT_EQ(SourceKey(a), "192.0.2.7");
  inet_pton(AF_INET6, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", &v6->sin6_addr);
  EXPECT_EQ(SourceKey(a), "2001:db8:1:2::/64");
}

// A loopback listener; each Connect gives the client end (kept by the test) and offers the
// accepted end to the Admission under test.
class AdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    ASSERT_TRUE(epoll_);
    listener_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(listener_.get(), 512), 0);
    socklen_t len = sizeof a;
    getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    limits_.running = 4;  // silent share 2, one source at most 3
    limits_.total = 8;
    limits_.per_source = 6;
    limits_.version_ms = 300;
    limits_.grace_ms = 3000;
    admission_ = std::make_unique<Admission>(epoll_.get(), kTag, nullptr);
    admission_->SetLimits(limits_);
  }

  // Connects from `source` (a 127.0.0.0/8 address), optionally sends `first`, and offers
  // the accepted socket; returns the client end (invalid when refused).
  UniqueFd Connect(const std::string& source = "127.0.0.1", const std::string& first = "", bool* queued = nullptr) {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    EXPECT_EQ(bind(c.get(), reinterpret_cast<sockaddr*>(&from), sizeof from), 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(static_cast<uint16_t>(port_));
    EXPECT_EQ(connect(c.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    if (!first.empty()) {
      EXPECT_EQ(send(c.get(), first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    UniqueFd s(accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    EXPECT_TRUE(s);
    if (!first.empty()) WaitReadable(s.get());
    bool ok = admission_->Offer(std::move(s), peer, MonotonicMs());
    if (queued) *queued = ok;
    return c;
  }

  static void WaitReadable(int fd) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 2000);
  }

  // Delivers pending epoll events, as the listener's loop does.
  void Pump() {
    epoll_event events[64];
    int n;
    while ((n = epoll_wait(epoll_.get(), events, 64, 50)) > 0) {
      for (int i = 0; i < n; ++i) admission_->OnEvent(events[i].data.u64 & ~kTag, events[i].events);
    }
    admission_->Expire(MonotonicMs());
  }

  // Admits what the limits allow; returns the admitted connections.
  std::vector<AdmittedConnection> AdmitAll() {
    std::vector<AdmittedConnection> out;
    AdmittedConnection c;
    while (admission_->Next(MonotonicMs(), &c)) out.push_back(std::move(c));
    return out;
  }

  // True when the server side closed `fd` (the client reads EOF).
  static bool ClosedByServer(int fd, int timeout_ms = 1000) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char b[64];
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    // A socket closed with unread data resets the connection.
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

  UniqueFd epoll_, listener_;
  int port_ = 0;
  AdmissionLimits limits_;
  std::unique_ptr<Admission> admission_;
};

TEST_F(AdmissionTest, SilentConnectionsHoldAtMostHalfOfTheSlotsAndSpeakersGoFirst) {
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(Connect());
  auto first = AdmitAll();
  ASSERT_EQ(first.size(), 2u) << "silent connections may take half of the 4 slots";
  EXPECT_TRUE(first[0].silent);
  EXPECT_EQ(admission_->pending(), 2u);
  UniqueFd real = Connect("127.0.0.1", "SSH-2.0-OpenSSH_9.2\r\n");
  auto second = AdmitAll();
  ASSERT_EQ(second.size(), 1u) << "a client that sent its version line gets a free slot";
  EXPECT_FALSE(second[0].silent);
  EXPECT_EQ(second[0].source, "127.0.0.1");
  // Its version line is still in the socket for libssh (peeked, not consumed).
  char buf[64];
  ssize_t n = recv(second[0].fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "SSH-2.0-OpenSSH_9.2\r\n");
  // A silent slot frees: the oldest waiting silent connection takes it.
  admission_->Release(first[0].source, true);
  EXPECT_EQ(AdmitAll().size(), 1u);
  EXPECT_EQ(admission_->running(), 3u);
}

TEST_F(AdmissionTest, OneSourceCannotTakeEverySlot) {
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(Connect("127.0.0.1", "SSH-2.0-a\r\n"));
  EXPECT_EQ(AdmitAll().size(), 3u) << "one source holds at most 3/4 of the slots";
  clients.push_back(Connect("127.0.0.2", "SSH-2.0-b\r\n"));
  auto other = AdmitAll();
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].source, "127.0.0.2");
}

TEST_F(AdmissionTest, NewcomersReplaceIdleConnectionsNotSpeakers) {
  limits_.running = 1;
  admission_->SetLimits(limits_);
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 6; ++i) idle.push_back(Connect("127.0.0.2"));  // per_source = 6
  auto running = AdmitAll();
  ASSERT_EQ(running.size(), 1u);
  // Over the per-source bound: the oldest pending idle connection of that source makes room.
  bool queued = false;
  UniqueFd speaker = Connect("127.0.0.2", "SSH-2.0-x\r\n", &queued);
  EXPECT_TRUE(queued);
  EXPECT_TRUE(ClosedByServer(idle[1].get()));
  EXPECT_FALSE(ClosedByServer(idle[2].get(), 50));
  // Up to the global bound (8) nobody is evicted...
  std::vector<UniqueFd> others;
  for (int i = 0; i < 2; ++i) others.push_back(Connect("127.0.0.3", "SSH-2.0-y\r\n"));
  EXPECT_FALSE(ClosedByServer(idle[2].get(), 50));
  // ...past it, each newcomer replaces an idle connection of the source holding the most.
  for (size_t i = 2; i < 6; ++i) {
    others.push_back(Connect("127.0.0.4", "SSH-2.0-z\r\n", &queued));
    EXPECT_TRUE(queued);
    EXPECT_TRUE(ClosedByServer(idle[i].get())) << i;
  }
  // Full of connections that spoke: nothing is evicted, the newcomer is refused.
  UniqueFd late = Connect("127.0.0.5", "SSH-2.0-late\r\n", &queued);
  EXPECT_FALSE(queued);
  EXPECT_EQ(admission_->running() + admission_->pending(), limits_.total);
}

TEST_F(AdmissionTest, SlowlorisIsClosedAtVersionTimeoutIdleAtGraceTime) {
  limits_.running = 1;
  admission_->SetLimits(limits_);
  UniqueFd busy = Connect("127.0.0.1", "SSH-2.0-busy\r\n");
  ASSERT_EQ(AdmitAll().size(), 1u);  // the only slot is taken: the others must wait
  UniqueFd slow = Connect("127.0.0.1", "SSH-2.0-Op");
  UniqueFd idle = Connect("127.0.0.1");
  auto t0 = std::chrono::steady_clock::now();
  while (!ClosedByServer(slow.get(), 20) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2)) {
    if (send(slow.get(), "e", 1, MSG_NOSIGNAL) != 1) break;  // a byte at a time, never a full line
    Pump();
  }
  auto closed_after = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(closed_after, std::chrono::milliseconds(250));
  EXPECT_LT(closed_after, std::chrono::milliseconds(1500));
  EXPECT_FALSE(ClosedByServer(idle.get(), 10)) << "silence is not slowloris: it may be a client waiting for us";
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(3300)) Pump();
  EXPECT_TRUE(ClosedByServer(idle.get())) << "closed at login_grace_time";
  EXPECT_EQ(admission_->pending(), 0u);
}

TEST_F(AdmissionTest, GarbageAndRequiredProxyViolationsCloseAtOnce) {
  UniqueFd http = Connect("127.0.0.1", "GET / HTTP/1.1\r\n");
  EXPECT_TRUE(ClosedByServer(http.get()));
  std::vector<Cidr> trusted(1);
  ASSERT_TRUE(ParseCidr("127.0.0.1/32", &trusted[0]).ok());
  admission_->SetProxy(ProxyMode::kRequired, trusted);
  bool queued = true;
  UniqueFd untrusted = Connect("127.0.0.2", "", &queued);
  EXPECT_FALSE(queued);
  UniqueFd no_header = Connect("127.0.0.1", "SSH-2.0-x\r\n");
  EXPECT_TRUE(ClosedByServer(no_header.get()));
  UniqueFd proxied = Connect("127.0.0.1", "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\r\nSSH-2.0-x\r\n");
  auto admitted = AdmitAll();
  ASSERT_EQ(admitted.size(), 1u);
  EXPECT_TRUE(admitted[0].has_proxy_header);
  EXPECT_EQ(admitted[0].source, "203.0.113.9") << "behind a proxy, the header's address is the source";
}

TEST_F(AdmissionTest, AProxiedConnectionIsCountedUnderItsRealSourceOnceItsHeaderArrives) {
  limits_.running = 1;
  limits_.total = 2;
  admission_->SetLimits(limits_);
  std::vector<Cidr> trusted(1);
  ASSERT_TRUE(ParseCidr("127.0.0.1/32", &trusted[0]).ok());
  admission_->SetProxy(ProxyMode::kRequired, trusted);
  UniqueFd first = Connect("127.0.0.1", "PROXY TCP4 203.0.113.9 127.0.0.1 40001 22\r\nSSH-2.0-a\r\n");
  auto running = AdmitAll();
  ASSERT_EQ(running.size(), 1u);
  UniqueFd second = Connect("127.0.0.1");  // full now (2 of 2), its header still to come
  const std::string rest = "PROXY TCP4 198.51.100.7 127.0.0.1 40002 22\r\nSSH-2.0-b\r\n";
  ASSERT_EQ(send(second.get(), rest.data(), rest.size(), 0), static_cast<ssize_t>(rest.size()));
  Pump();
  EXPECT_FALSE(ClosedByServer(second.get(), 100)) << "already counted: its header must not make it 'over full'";
  admission_->Release(running[0].source, false);
  auto next = AdmitAll();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].source, "198.51.100.7");
}

TEST_F(AdmissionTest, OptionalProxyAdmitsAClientThatWaitsForTheServerAfterASecond) {
  std::vector<Cidr> trusted(1);
  ASSERT_TRUE(ParseCidr("127.0.0.1/32", &trusted[0]).ok());
  admission_->SetProxy(ProxyMode::kOptional, trusted);
  UniqueFd waiting = Connect("127.0.0.1");
  EXPECT_EQ(AdmitAll().size(), 0u) << "a proxy may still send its header";
  auto t0 = std::chrono::steady_clock::now();
  std::vector<AdmittedConnection> admitted;
  while (admitted.empty() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
    Pump();
    admitted = AdmitAll();
  }
  ASSERT_EQ(admitted.size(), 1u);
  EXPECT_TRUE(admitted[0].silent);
  EXPECT_FALSE(admitted[0].has_proxy_header);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
}

}  // namespace
}  // namespace allgo::sshd
