#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace allgo::sshd {
namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr char kV1Signature[] = "PROXY ";
constexpr size_t kMaxV1 = 107;

// Is data[0..size) a prefix of (or starts with) `sig`?
bool MatchesPrefix(const uint8_t* data, size_t size, const uint8_t* sig, size_t sig_len) {
  return std::memcmp(data, sig, size < sig_len ? size : sig_len) == 0;
}

bool ParseIp(const std::string& text, int family, uint16_t port, sockaddr_storage* out) {
  *out = sockaddr_storage{};
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    return inet_pton(AF_INET, text.c_str(), &sin->sin_addr) == 1;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  return inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) == 1;
}

bool ParsePort(const std::string& text, uint16_t* port) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  if (text.size() > 1 && text[0] == '0') return false;  // the spec forbids leading zeros
  unsigned long v = std::stoul(text);
  if (v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

ProxyParse ParseV1(const uint8_t* data, size_t size, ProxyHeader* out, std::string* error) {
  const uint8_t* end = static_cast<const uint8_t*>(std::memchr(data, '\n', size < kMaxV1 ? size : kMaxV1));
  if (!end) {
    if (size >= kMaxV1) {
      *error = "PROXY v1 header longer than 107 bytes";
      return ProxyParse::kInvalid;
    }
    return ProxyParse::kNeedMore;
  }
  size_t line_len = static_cast<size_t>(end - data) + 1;
  if (line_len < 2 || data[line_len - 2] != '\r') {
    *error = "PROXY v1 header not terminated by CRLF";
    return ProxyParse::kInvalid;
  }
  std::string line(reinterpret_cast<const char*>(data), line_len - 2);
  for (char c : line) {
    if (c < 0x20 || c > 0x7e) {
      *error = "PROXY v1 header contains a control byte";
      return ProxyParse::kInvalid;
    }
  }
  std::vector<std::string> fields;
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string::npos) sp = line.size();
    fields.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  *out = ProxyHeader{};
  out->length = line_len;
  if (fields.size() >= 2 && fields[1] == "UNKNOWN") return ProxyParse::kComplete;
  if (fields.size() != 6 || (fields[1] != "TCP4" && fields[1] != "TCP6")) {
    *error = "PROXY v1 header must be 'PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT'";
    return ProxyParse::kInvalid;
  }
  int family = fields[1] == "TCP4" ? AF_INET : AF_INET6;
  uint16_t sport = 0, dport = 0;
  if (!ParsePort(fields[4], &sport) || !ParsePort(fields[5], &dport) ||
      !ParseIp(fields[2], family, sport, &out->source) ||
      !ParseIp(fields[3], family, dport, &out->destination)) {
    *error = "PROXY v1 header has a malformed address or port";
    return ProxyParse::kInvalid;
  }
  out->has_address = true;
  return ProxyParse::kComplete;
}

ProxyParse ParseV2(const uint8_t* data, size_t size, ProxyHeader* out, std::string* error) {
  if (size < 16) return ProxyParse::kNeedMore;
  uint8_t version_command = data[12];
  uint8_t family_protocol = data[13];
  size_t len = (size_t{data[14]} << 8) | data[15];
  if ((version_command >> 4) != 2) {
    *error = "PROXY v2 header with unsupported version";
    return ProxyParse::kInvalid;
  }
  uint8_t command = version_command & 0x0f;
  if (command > 1) {
    *error = "PROXY v2 header with unknown command";
    return ProxyParse::kInvalid;
  }
  if (16 + len > kMaxProxyHeader) {
    *error = "PROXY v2 header too long";
    return ProxyParse::kInvalid;
  }
  if (size < 16 + len) return ProxyParse::kNeedMore;
  *out = ProxyHeader{};
  out->length = 16 + len;
  if (command == 0) return ProxyParse::kComplete;  // LOCAL: health check from the proxy itself
  const uint8_t* a = data + 16;
  uint8_t family = family_protocol >> 4;
  uint8_t transport = family_protocol & 0x0f;
  if (transport != 1 || (family != 1 && family != 2)) {
    return ProxyParse::kComplete;  // not TCP over IPv4/IPv6: keep the peer address
  }
  if (family == 1) {
    if (len < 12) {
      *error = "PROXY v2 IPv4 address block too short";
      return ProxyParse::kInvalid;
    }
    auto* src = reinterpret_cast<sockaddr_in*>(&out->source);
    auto* dst = reinterpret_cast<sockaddr_in*>(&out->destination);
    src->sin_family = dst->sin_family = AF_INET;
    std::memcpy(&src->sin_addr, a, 4);
    std::memcpy(&dst->sin_addr, a + 4, 4);
    std::memcpy(&src->sin_port, a + 8, 2);
    std::memcpy(&dst->sin_port, a + 10, 2);
  } else {
    if (len < 36) {
      *error = "PROXY v2 IPv6 address block too short";
      return ProxyParse::kInvalid;
    }
    auto* src = reinterpret_cast<sockaddr_in6*>(&out->source);
    auto* dst = reinterpret_cast<sockaddr_in6*>(&out->destination);
    src->sin6_family = dst->sin6_family = AF_INET6;
    std::memcpy(&src->sin6_addr, a, 16);
    std::memcpy(&dst->sin6_addr, a + 16, 16);
    std::memcpy(&src->sin6_port, a + 32, 2);
    std::memcpy(&dst->sin6_port, a + 34, 2);
  }
  out->has_address = true;
  return ProxyParse::kComplete;
}

}  // namespace

ProxyParse ParseProxyHeader(const uint8_t* data, size_t size, ProxyHeader* out, std::string* error) {
  if (size == 0) return ProxyParse::kNeedMore;
  if (MatchesPrefix(data, size, kV2Signature, sizeof kV2Signature)) {
    if (size < sizeof kV2Signature) return ProxyParse::kNeedMore;
    return ParseV2(data, size, out, error);
  }
  const auto* v1 = reinterpret_cast<const uint8_t*>(kV1Signature);
  if (MatchesPrefix(data, size, v1, sizeof kV1Signature - 1)) {
    if (size < sizeof kV1Signature - 1) return ProxyParse::kNeedMore;
    return ParseV1(data, size, out, error);
  }
  return ProxyParse::kNotProxy;
}

Status ParseProxyMode(const std::string& text, ProxyMode* out) {
  if (text == "off") *out = ProxyMode::kOff;
  else if (text == "optional") *out = ProxyMode::kOptional;
  else if (text == "required") *out = ProxyMode::kRequired;
  else return Status::Invalid("proxy_protocol must be off, optional or required");
  return Status::Ok();
}

Status ParseCidr(const std::string& text, Cidr* out) {
  size_t slash = text.find('/');
  std::string addr = text.substr(0, slash);
  *out = Cidr{};
  int family = addr.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (!ParseIp(addr, family, 0, &out->network)) return Status::Invalid("bad address in '" + text + "'");
  unsigned max = family == AF_INET ? 32 : 128;
  out->prefix = max;
  if (slash != std::string::npos) {
    std::string bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(bits) > max) {
      return Status::Invalid("bad prefix length in '" + text + "'");
    }
    out->prefix = static_cast<unsigned>(std::stoul(bits));
  }
  return Status::Ok();
}

bool CidrContains(const Cidr& cidr, const sockaddr_storage& address) {
  const uint8_t* net = nullptr;
  const uint8_t* addr = nullptr;
  uint8_t mapped[4];
  if (cidr.network.ss_family == AF_INET) {
    net = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&cidr.network)->sin_addr);
    if (address.ss_family == AF_INET) {
      addr = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&address)->sin_addr);
    } else if (address.ss_family == AF_INET6) {
      // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
      const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr;
      if (!IN6_IS_ADDR_V4MAPPED(a6)) return false;
      std::memcpy(mapped, a6->s6_addr + 12, 4);
      addr = mapped;
    } else {
      return false;
    }
  } else {
    if (address.ss_family != AF_INET6) return false;
    net = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(&cidr.network)->sin6_addr);
    addr = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr);
  }
  unsigned full = cidr.prefix / 8, rest = cidr.prefix % 8;
  if (std::memcmp(net, addr, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (net[full] & mask) == (addr[full] & mask);
}

Status ReadProxyHeader(int fd, ProxyMode mode, int timeout_ms, ProxyHeader* out, int optional_wait_ms) {
  *out = ProxyHeader{};
  if (mode == ProxyMode::kOff) return Status::Ok();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  uint8_t buf[kMaxProxyHeader];
  size_t have = 0;
  for (;;) {
    std::string error;
    ProxyParse verdict = ParseProxyHeader(buf, have, out, &error);
    if (verdict == ProxyParse::kComplete) {
      // Consume exactly the header; the SSH stream after it stays in the socket.
      size_t done = 0;
      while (done < out->length) {
        ssize_t n = recv(fd, buf, out->length - done, 0);
        if (n <= 0) return Status::IoError("connection closed inside the PROXY header");
        done += static_cast<size_t>(n);
      }
      return Status::Ok();
    }
    if (verdict == ProxyParse::kInvalid) return Status::Invalid(error);
    if (verdict == ProxyParse::kNotProxy) {
      *out = ProxyHeader{};
      if (mode == ProxyMode::kRequired) return Status::Invalid("PROXY header required but not sent");
      return Status::Ok();
    }
    // Need more: wait for bytes beyond what we have already peeked.
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) return Status::Unavailable("no complete PROXY header within the timeout");
    // Optional and nothing yet: the peer may be a client waiting for our version.
    bool first_byte = mode == ProxyMode::kOptional && have == 0;
    int wait = first_byte ? std::min(left, optional_wait_ms) : left;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && first_byte) {
      *out = ProxyHeader{};
      return Status::Ok();
    }
    if (r <= 0) return Status::Unavailable("no complete PROXY header within the timeout");
    ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK);
    if (n <= 0) return Status::IoError("connection closed before the PROXY header ended");
    if (static_cast<size_t>(n) == have) {
      // Nothing new arrived (poll woke for data we had already seen); avoid spinning.
      struct timespec ts = {0, 2 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    have = static_cast<size_t>(n);
  }
}

std::string AddressToString(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr, text, sizeof text);
  } else if (address.ss_family == AF_INET6) {
    const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      inet_ntop(AF_INET, a6->s6_addr + 12, text, sizeof text);
    } else {
      inet_ntop(AF_INET6, a6, text, sizeof text);
    }
  }
  return text;
}

uint16_t AddressPort(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  return 0;
}

}  // namespace allgo::sshd
