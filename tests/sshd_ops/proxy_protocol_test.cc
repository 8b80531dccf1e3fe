#include "proxy_protocol.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace allgo::sshd {
namespace {

ProxyParse Parse(const std::string& bytes, ProxyHeader* h, std::string* err) {
  return ParseProxyHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), h, err);
}

std::string V2(uint8_t command, uint8_t family_proto, const std::string& addresses) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h.push_back(static_cast<char>(0x20 | command));
  h.push_back(static_cast<char>(family_proto));
  h.push_back(static_cast<char>(addresses.size() >> 8));
  h.push_back(static_cast<char>(addresses.size() & 0xff));
  return h + addresses;
}

TEST(ProxyV1, Tcp4AndTcp6) {
  ProxyHeader h;
  std::string err;
  std::string line = "PROXY TCP4 203.0.113.7 10.0.0.1 51234 22\r\n";
  ASSERT_EQ(Parse(line + "SSH-2.0-OpenSSH_9.2\r\n", &h, &err), ProxyParse::kComplete) << err;
  EXPECT_EQ(h.length, line.size());
  EXPECT_TRUE(h.has_address);
  EXPECT_EQ(AddressToString(h.source), "203.0.113.7");
  EXPECT_EQ(AddressPort(h.source), 51234);
  EXPECT_EQ(AddressPort(h.destination), 22);
  ASSERT_EQ(Parse("PROXY TCP6 2001:db8::1 ::1 4000 2222\r\n", &h, &err), ProxyParse::kComplete);
  EXPECT_EQ(AddressToString(h.source), "2001:db8::1");
  ASSERT_EQ(Parse("PROXY UNKNOWN\r\n", &h, &err), ProxyParse::kComplete);
  EXPECT_FALSE(h.has_address);
}

TEST(ProxyV1, PrefixesNeedMoreAndGarbageIsInvalid) {
  ProxyHeader h;
  std::string err;
  EXPECT_EQ(Parse("PRO", &h, &err), ProxyParse::kNeedMore);
  EXPECT_EQ(Parse("PROXY TCP4 1.2.3.4", &h, &err), ProxyParse::kNeedMore);
  EXPECT_EQ(Parse("SSH-2.0-x\r\n", &h, &err), ProxyParse::kNotProxy);
  for (const std::string& bad : std::vector<std::string>{
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "PROXY TCP4 1.2.3.4\x01 5.6.7.8 1 2\r\n",
        "PROXY " + std::string(120, 'x')}) {
    EXPECT_EQ(Parse(bad, &h, &err), ProxyParse::kInvalid) << bad;
    EXPECT_FALSE(err.empty());
  }
}

TEST(ProxyV2, ProxyLocalAndTlvs) {
  ProxyHeader h;
  std::string err;
  std::string addrs("\xcb\x00\x71\x07" "\x0a\x00\x00\x01" "\xc8\x22" "\x00\x16", 12);
  std::string tlv("\x04\x00\x02xy", 5);  // a NOOP TLV to skip
  std::string header = V2(1, 0x11, addrs + tlv);
  ASSERT_EQ(Parse(header + "SSH-2.0-x", &h, &err), ProxyParse::kComplete) << err;
  EXPECT_EQ(h.length, header.size());
  EXPECT_EQ(AddressToString(h.source), "203.0.113.7");
  EXPECT_EQ(AddressPort(h.source), 51234);
  EXPECT_EQ(AddressPort(h.destination), 22);
  ASSERT_EQ(Parse(V2(0, 0x00, ""), &h, &err), ProxyParse::kComplete);
  EXPECT_FALSE(h.has_address) << "LOCAL keeps the real peer";
  EXPECT_EQ(Parse(header.substr(0, 20), &h, &err), ProxyParse::kNeedMore);
  EXPECT_EQ(Parse(V2(1, 0x11, "\x01\x02"), &h, &err), ProxyParse::kInvalid);
  std::string bad_version = header;
  bad_version[12] = 0x31;
  EXPECT_EQ(Parse(bad_version, &h, &err), ProxyParse::kInvalid);
  std::string huge = V2(1, 0x11, std::string(1000, 'a'));
  EXPECT_EQ(Parse(huge, &h, &err), ProxyParse::kInvalid);
}

TEST(Cidr, ContainsV4V6AndMapped) {
  Cidr loop, six;
  ASSERT_TRUE(ParseCidr("127.0.0.0/8", &loop).ok());
  ASSERT_TRUE(ParseCidr("2001:db8::/32", &six).ok());
  ProxyHeader h;
  std::string err;
  Parse("PROXY TCP4 127.9.8.7 1.1.1.1 1 2\r\n", &h, &err);
  EXPECT_TRUE(CidrContains(loop, h.source));
  Parse("PROXY TCP4 128.0.0.1 1.1.1.1 1 2\r\n", &h, &err);
  EXPECT_FALSE(CidrContains(loop, h.source));
  Parse("PROXY TCP6 ::ffff:127.0.0.1 ::1 1 2\r\n", &h, &err);
  EXPECT_TRUE(CidrContains(loop, h.source));
  Parse("PROXY TCP6 2001:db8:ffff::1 ::1 1 2\r\n", &h, &err);
  EXPECT_TRUE(CidrContains(six, h.source));
  EXPECT_FALSE(CidrContains(loop, h.source));
  Cidr bad;
  EXPECT_FALSE(ParseCidr("10.0.0.0/33", &bad).ok());
  EXPECT_FALSE(ParseCidr("nonsense", &bad).ok());
}

class SocketPair : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  void TearDown() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  void Send(const std::string& s) { ASSERT_EQ(write(fds_[1], s.data(), s.size()), static_cast<ssize_t>(s.size())); }
  std::string Rest() {
    char buf[256];
    ssize_t n = recv(fds_[0], buf, sizeof buf, MSG_DONTWAIT);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  int fds_[2];
};

TEST_F(SocketPair, HeaderConsumedExactlySshStreamUntouched) {
  Send("PROXY TCP4 198.51.100.1 10.0.0.1 1000 22\r\nSSH-2.0-client\r\n");
  ProxyHeader h;
  ASSERT_TRUE(ReadProxyHeader(fds_[0], ProxyMode::kRequired, 1000, &h).ok());
  EXPECT_EQ(AddressToString(h.source), "198.51.100.1");
  EXPECT_EQ(Rest(), "SSH-2.0-client\r\n");
}

TEST_F(SocketPair, HeaderArrivingInPiecesIsAssembled) {
  std::thread writer([this] {
    Send("PROXY TCP4 198.51.100.1 ");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Send("10.0.0.1 1000 22\r\nSSH-2.0-x\r\n");
  });
  ProxyHeader h;
  Status s = ReadProxyHeader(fds_[0], ProxyMode::kRequired, 2000, &h);
  writer.join();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(Rest(), "SSH-2.0-x\r\n");
}

TEST_F(SocketPair, OptionalModeLetsPlainSshThrough) {
  Send("SSH-2.0-OpenSSH_9.2\r\n");
  ProxyHeader h;
  ASSERT_TRUE(ReadProxyHeader(fds_[0], ProxyMode::kOptional, 1000, &h).ok());
  EXPECT_FALSE(h.has_address);
  EXPECT_EQ(Rest(), "SSH-2.0-OpenSSH_9.2\r\n");
}

TEST_F(SocketPair, OptionalModeServesAPeerWaitingForTheServerVersion) {
  ProxyHeader h;
  auto start = std::chrono::steady_clock::now();
  Status s = ReadProxyHeader(fds_[0], ProxyMode::kOptional, 5000, &h, 100);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(h.has_address);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
  // What the client sends after our version is left for SSH.
  Send("SSH-2.0-late\r\n");
  EXPECT_EQ(Rest(), "SSH-2.0-late\r\n");
}

TEST_F(SocketPair, OptionalModeStillWaitsForTheRestOfAStartedHeader) {
  std::thread writer([this] {
    Send("PROXY TCP4 ");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Send("198.51.100.1 10.0.0.1 1000 22\r\n");
  });
  ProxyHeader h;
  Status s = ReadProxyHeader(fds_[0], ProxyMode::kOptional, 2000, &h, 500);
  writer.join();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(h.has_address);
  EXPECT_EQ(AddressToString(h.source), "198.51.100.1");
}

TEST_F(SocketPair, RequiredModeRefusesPlainSshAndSilentPeersTimeOut) {
  ProxyHeader h;
  auto start = std::chrono::steady_clock::now();
  Status s = ReadProxyHeader(fds_[0], ProxyMode::kRequired, 200, &h);
  EXPECT_TRUE(s.IsUnavailable()) << s.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
  Send("SSH-2.0-OpenSSH_9.2\r\n");
  s = ReadProxyHeader(fds_[0], ProxyMode::kRequired, 1000, &h);
  EXPECT_EQ(s.message(), "PROXY header required but not sent");
}

}  // namespace
}  // namespace allgo::sshd
