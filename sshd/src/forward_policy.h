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

namespace allgo::sshd {

// One permit_open / permitopen= / permit_listen / permitlisten= entry, OpenSSH syntax:
// "host:port", "[v6addr]:port", "port" (listen only: any loopback address), "*" as host or
// port matches any; "any" alone matches everything, "none" alone nothing.
struct PermitEntry {
  std::string host;  // "*" = any; empty = (listen) the default loopback address
  uint32_t port = 0; // 0 with any_port
  bool any_port = false;
  bool operator==(const PermitEntry&) const = default;
};

// A permit list: unrestricted (no list given, or "any"), or exactly the entries listed
// ("none" = an empty list that is restricted).
struct PermitList {
  bool restricted = false;
  std::vector<PermitEntry> entries;
  bool operator==(const PermitList&) const = default;
};

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

// Whether direct-tcpip to host:port passes every permit_open list.
bool PermitsOpen(const ForwardPolicy& policy, std::string_view host, uint32_t port);
// Whether tcpip-forward on address:port passes the permit_listen lists and gateway_ports
// (a non-loopback address needs gateway_ports; "" and "localhost" mean loopback).
bool PermitsListen(const ForwardPolicy& policy, std::string_view address, uint32_t port);

}  // namespace allgo::sshd
