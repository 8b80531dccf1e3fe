// authorized_keys options (OpenSSH's sshd(8) "AUTHORIZED_KEYS FILE FORMAT"), as they appear in
// [authkeys] key_options and in front of a key printed by an authorized_keys_command.
//
// Syntax, like OpenSSH: comma-separated options, no spaces between them; names are
// case-insensitive; a value is written NAME="..." and only \" is an escape inside it.
// Every option OpenSSH knows is recognised; each is either honoured by allgo-sshd or refused
// here, so a value never means one thing under OpenSSH and another under allgo-sshd:
//
//   honoured   restrict (no forwarding, no PTY), [no-]pty, [no-]port-forwarding,
//              [no-]agent-forwarding, permitopen="host:port", permitlisten="[host:]port",
//              command="...", from="pattern-list", expiry-time="..."; under allgo-sshd
//              every forward lands inside the sandbox (docs/forwarding.md)
//   no-ops     no-X11-forwarding, no-user-rc, no-verify-required (allgo-sshd never
//              forwards X11, never runs ~/.ssh/rc)
//   refused    X11-forwarding, user-rc (they would grant what allgo-sshd never offers),
//              environment= (no PermitUserEnvironment), cert-authority, principals= (no
//              certificates), tunnel= (no tun forwarding), touch-required,
//              no-touch-required, verify-required (FIDO authenticator flags are not
//              checked by allgo-sshd)
//   unknown    anything else: refused, as OpenSSH refuses the key line
//
// Under stock OpenSSH the same options would forward from the frontend itself: allgo-authkeys
// refuses to print any set that leaves forwarding on (OpenSshForwardingProblem).
//
// Pure parsing and matching: no DNS, no I/O (the NSS module links this too).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "allgo/forward_permits.h"
#include "allgo/status.h"

namespace allgo {

// One entry of a from="..." list.
struct HostPattern {
  bool negated = false;     // written "!pattern"
  bool is_cidr = false;     // ADDRESS/MASKLEN, else a wildcard pattern (* and ?)
  std::string pattern;      // as written, without the '!'
  int family = 0;           // AF_INET / AF_INET6 for a CIDR entry
  unsigned char addr[16] = {};
  unsigned mask_bits = 0;
};

// Without any option everything is allowed (OpenSSH's meaning of a bare key line).
struct KeyOptions {
  bool pty = true;
  bool port_forwarding = true;   // -L/-D/-W/-R and streamlocal; off by restrict, no-port-forwarding
  bool agent_forwarding = true;  // -A; off by restrict, no-agent-forwarding
  // permitopen= / permitlisten=: the entries of one option text form one restricted list;
  // after RestrictKeyOptions each list applies (a target must pass all of them).
  std::vector<PermitList> permit_open;
  std::vector<PermitList> permit_listen;
  // Forced command: every exec, shell and subsystem request runs it instead, with
  // SSH_ORIGINAL_COMMAND set to what the client asked for.
  bool has_command = false;
  std::string command;
  // from="...": each list must let the client address in (several lists after Restrict()).
  std::vector<std::vector<HostPattern>> from;
  // expiry-time: the key is refused after this instant (seconds since the epoch); 0 = never.
  int64_t expires_at = 0;
};

// The parsed default of [authkeys] key_options, "restrict,pty": what allgo-authkeys prints for
// stock OpenSSH when the key is not set (allgo-sshd then applies no option: config.h).
KeyOptions DefaultKeyOptions();

// Parses `text` (may be empty). An error names the offending option first, e.g.
// "environment: allgo-sshd has no PermitUserEnvironment; ...".
Status ParseKeyOptions(std::string_view text, KeyOptions* out);

// The stricter of the two: pty and each forwarding only if both allow it, every from=,
// permitopen= and permitlisten= list, the earlier expiry. Two different forced commands
// cannot both hold: Invalid.
Status RestrictKeyOptions(const KeyOptions& a, const KeyOptions& b, KeyOptions* out);

// Whether the client address (numeric, IPv4 or IPv6; an IPv4-mapped IPv6 address counts as
// IPv4) passes every from= list. Like OpenSSH with UseDNS no: patterns are matched against
// the address text, CIDR entries against the address; a negated match refuses.
bool FromAllows(const KeyOptions& options, const std::string& client_ip);

// For the stock OpenSSH path (allgo-authkeys): "" when these options leave OpenSSH no
// forwarding (restrict, or no-port-forwarding and no-agent-forwarding, not re-enabled);
// else what would be forwarded from the frontend.
std::string OpenSshForwardingProblem(const KeyOptions& options);

// Whether the key has expired at `now`.
bool Expired(const KeyOptions& options, time_t now);

// One from= pattern list on its own (exposed for tests): 1 match, 0 no match, -1 negated match.
int MatchHostPatterns(const std::vector<HostPattern>& patterns, const std::string& client_ip);

}  // namespace allgo
