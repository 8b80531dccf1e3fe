// The forwarding policy, OpenSSH's meaning (servconf.c, auth-options.c, channels.c
// open_match / remote_open_match).
#include "forward_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace allgo::sshd {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "[::1]" as a client writes it in a global request is "::1".
std::string Unbracket(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return Lower(host);
}

bool PortMatches(const PermitEntry& e, uint32_t port) { return e.any_port || e.port == port; }

// Every restricted list must hold an entry that `match` accepts.
template <typename Match>
bool AllListsAllow(const std::vector<PermitList>& lists, Match match) {
  for (const PermitList& list : lists) {
    if (!list.restricted) continue;
    bool found = false;
    for (const PermitEntry& e : list.entries) {
      if (match(e)) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

bool IsLoopback(const std::string& address) {
  if (address.empty() || address == "localhost") return true;
  unsigned char addr[16];
  if (inet_pton(AF_INET, address.c_str(), addr) == 1) return addr[0] == 127;
  if (inet_pton(AF_INET6, address.c_str(), addr) == 1) {
    static const unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(addr, addr + 16, kLoopback6);
  }
  return false;
}

bool Allows(ForwardDirections d, bool remote) {
  return d == ForwardDirections::kAll || d == (remote ? ForwardDirections::kRemote : ForwardDirections::kLocal);
}

}  // namespace

ForwardPolicy ComputeForwardPolicy(const SshdConfig& config, const KeyOptions& key) {
  ForwardPolicy p;
  p.local_tcp = key.port_forwarding && Allows(config.allow_tcp_forwarding, false);
  p.remote_tcp = key.port_forwarding && Allows(config.allow_tcp_forwarding, true);
  p.local_unix = key.port_forwarding && Allows(config.allow_stream_local_forwarding, false);
  p.remote_unix = key.port_forwarding && Allows(config.allow_stream_local_forwarding, true);
  p.agent = key.agent_forwarding && config.allow_agent_forwarding;
  p.gateway_ports = config.gateway_ports != GatewayPorts::kNo;
  // Only restricted lists travel: an unrestricted one allows everything anyway.
  if (config.permit_open.restricted) p.permit_open.push_back(config.permit_open);
  if (config.permit_listen.restricted) p.permit_listen.push_back(config.permit_listen);
  for (const PermitList& l : key.permit_open) {
    if (l.restricted) p.permit_open.push_back(l);
  }
  for (const PermitList& l : key.permit_listen) {
    if (l.restricted) p.permit_listen.push_back(l);
  }
  p.max_forwards = config.max_forwards;
  p.max_listeners = config.max_listeners;
  return p;
}

bool PermitsOpen(const ForwardPolicy& policy, std::string_view host, uint32_t port) {
  if (!policy.local_tcp) return false;
  std::string h = Unbracket(host);
  return AllListsAllow(policy.permit_open, [&](const PermitEntry& e) {
    return PortMatches(e, port) && (e.host == "*" || e.host == h);
  });
}

bool PermitsListen(const ForwardPolicy& policy, std::string_view address, uint32_t port) {
  if (!policy.remote_tcp) return false;
  std::string a = Unbracket(address);
  if (!policy.gateway_ports && !IsLoopback(a)) return false;
  // A listen request names "localhost" when the client gave no address (ssh -R PORT:...).
  std::string name = a.empty() ? "localhost" : a;
  return AllListsAllow(policy.permit_listen, [&](const PermitEntry& e) {
    return PortMatches(e, port) && MatchWildcard(name.c_str(), e.host.c_str());
  });
}

}  // namespace allgo::sshd
