// What one authenticated connection may forward (docs/forwarding.md "Policy"): the [sshd]
// keys named after OpenSSH's (allow_tcp_forwarding, allow_stream_local_forwarding,
// allow_agent_forwarding, permit_open, permit_listen, gateway_ports), narrowed by the key's
// options (restrict, no-port-forwarding, no-agent-forwarding, permitopen=, permitlisten=,
// port-forwarding, agent-forwarding) with OpenSSH's meaning. The monitor computes it at the
// signed KeyAnswer; the network child applies it to every forward request before anything
// reaches the sandbox, and the monitor refuses OpenStreams when nothing may be forwarded.
//
// Every forward lands inside the webapp's sandbox (the agent opens the socket there), so this
// policy is about what the user may do in their own sandbox, never about the frontend.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "allgo/config.h"
#include "allgo/forward_permits.h"
#include "allgo/key_options.h"

namespace allgo::sshd {

// One permit_open / permitopen= / permit_listen / permitlisten= entry and a list of them,
// OpenSSH syntax (common/include/allgo/forward_permits.h, shared with the config and the key
// options): "host:port", "[v6addr]:port", "*" as host or port matches any; a listen entry of
// "port" alone is "*:port" (any address, as OpenSSH; gateway_ports still decides whether a
// non-loopback address may be bound); "any" alone matches everything, "none" alone nothing.
using allgo::PermitEntry;
using allgo::PermitList;

struct ForwardPolicy {
  bool local_tcp = false;      // direct-tcpip (ssh -L, -D, -W, -J)
  bool remote_tcp = false;     // tcpip-forward (ssh -R)
  bool local_unix = false;     // direct-streamlocal@openssh.com
  bool remote_unix = false;    // streamlocal-forward@openssh.com
  bool agent = false;          // auth-agent-req@openssh.com (ssh -A)
  bool gateway_ports = false;  // -R may bind a non-loopback address (inside the sandbox)
  // Every list that applies must allow a target: the config's, then each key option's.
  std::vector<PermitList> permit_open;
  std::vector<PermitList> permit_listen;
  uint32_t max_forwards = 0;   // forwarded channels open at once per connection
  uint32_t max_listeners = 0;  // -R listeners per connection

  bool Any() const { return local_tcp || remote_tcp || local_unix || remote_unix || agent; }
  bool operator==(const ForwardPolicy&) const = default;
};

// [sshd]'s forwarding keys narrowed by the key's options (config.authkeys.sshd_options
// restricted by the key line's own), with OpenSSH's meaning: port forwarding off in the key
// turns off TCP and streamlocal both ways; the config's permit lists, then the key's.
ForwardPolicy ComputeForwardPolicy(const SshdConfig& config, const KeyOptions& key);

// Whether direct-tcpip to host:port passes every permit_open list.
bool PermitsOpen(const ForwardPolicy& policy, std::string_view host, uint32_t port);
// Whether tcpip-forward on address:port passes the permit_listen lists and gateway_ports
// (a non-loopback address needs gateway_ports; "", "localhost", 127.0.0.0/8 and ::1 mean
// loopback). Hosts match case-insensitively; listen hosts may be wildcards (* and ?), as in
// OpenSSH's match_pattern; open hosts are literal or "*".
bool PermitsListen(const ForwardPolicy& policy, std::string_view address, uint32_t port);

}  // namespace allgo::sshd
