// Where a forward's host name points, inside the sandbox, without NSS.
//
// The agent is a static binary: glibc's getaddrinfo would dlopen the NSS modules of an image
// it knows nothing about (or fail). So the agent resolves only what needs no resolver: address
// literals (inet_pton, IPv4 dotted quad or IPv6), names listed in the sandbox's own
// /etc/hosts (read by the small strict reader below), and `localhost` when /etc/hosts does not
// name it. Anything else is refused with a clear text (docs/bridge.md "Streams").
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace allgo::bridge {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

inline constexpr size_t kMaxResolvedAddresses = 8;  // tried in order, as getaddrinfo's list
inline constexpr size_t kMaxHostsFile = 256 * 1024;  // more of /etc/hosts is ignored

// The addresses of host:port: "" and 1..kMaxResolvedAddresses entries in *out, or why not
// ("name resolution of HOST is not supported by the agent; ..."). `hosts_file` is read
// afresh on every call (it is small, and the sandbox may change it).
std::string ResolveHost(std::string_view host, uint16_t port, std::vector<SocketAddress>* out,
                        const char* hosts_file = "/etc/hosts");

// A unix socket address for an absolute path (the caller checked its length); false if too long.
bool UnixAddress(std::string_view path, SocketAddress* out);

// The numeric host and port of an IPv4/IPv6 address (for stream-open's origin fields).
void NumericHost(const sockaddr* address, std::string* host, uint32_t* port);

}  // namespace allgo::bridge
