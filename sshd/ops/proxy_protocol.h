// PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy sends them in front of a TCP
// stream (https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt).
//
// The parser is pure (bytes in, verdict out) so it can be fuzzed; ReadProxyHeader applies it
// to a socket, consuming exactly the header and never a byte of the SSH stream after it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "allgo/status.h"

namespace allgo::sshd {

struct ProxyHeader {
  bool has_address = false;  // false for v1 UNKNOWN / v2 LOCAL / non-IP families: keep the peer
  sockaddr_storage source{};
  sockaddr_storage destination{};
  size_t length = 0;         // bytes of the header in the stream
};

enum class ProxyParse {
  kComplete,   // *out filled; out->length bytes are the header
  kNeedMore,   // a valid prefix; read more bytes
  kNotProxy,   // the stream does not start with a PROXY signature
  kInvalid,    // a PROXY signature followed by garbage; *error says what
};

// Longest header we accept: v1 is at most 107 bytes; v2 is 16 + address block, whose TLVs we
// skip but bound.
inline constexpr size_t kMaxProxyHeader = 16 + 536;

ProxyParse ParseProxyHeader(const uint8_t* data, size_t size, ProxyHeader* out, std::string* error);

enum class ProxyMode { kOff, kOptional, kRequired };
Status ParseProxyMode(const std::string& text, ProxyMode* out);

// An address range such as 10.0.0.0/8 or ::1/128 (an address alone is a single host).
struct Cidr {
  sockaddr_storage network{};
  unsigned prefix = 0;
};
Status ParseCidr(const std::string& text, Cidr* out);
bool CidrContains(const Cidr& cidr, const sockaddr_storage& address);

// How long kOptional waits for a first byte before deciding there is no header. A proxy
// writes its header as soon as the TCP connection is up, so it arrives within a round trip;
// an SSH client may legitimately send nothing until it has read the server's version
// (RFC 4253 4.2 allows either side to wait), and such a client is served after this wait.
inline constexpr int kOptionalProxyWaitMs = 1000;

// Reads a PROXY header from `fd` (blocking socket) within timeout_ms. With kOptional, a stream
// that does not start with a signature, or a peer silent for optional_wait_ms, is left
// untouched (`*out` without address). With kRequired, its absence is an error. The caller
// checks the peer is trusted before calling.
Status ReadProxyHeader(int fd, ProxyMode mode, int timeout_ms, ProxyHeader* out,
                       int optional_wait_ms = kOptionalProxyWaitMs);

// "1.2.3.4" or "2001:db8::1" (no port).
std::string AddressToString(const sockaddr_storage& address);
uint16_t AddressPort(const sockaddr_storage& address);

}  // namespace allgo::sshd
