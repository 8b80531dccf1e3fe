// The permit lists of forwarding, OpenSSH syntax (sshd_config(5) PermitOpen / PermitListen,
// sshd(8) permitopen= / permitlisten=): written once here for both places they appear, the
// [sshd] keys permit_open / permit_listen and the key options (key_options.h). Matching is
// sshd/src/forward_policy.h's. Pure parsing, no DNS, no I/O (the NSS module links this too).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace allgo {

// One entry: "host:port", "[v6addr]:port", "*" as host or port matches any. For a listen
// entry "port" alone means any address ("*:port", as OpenSSH); gateway_ports decides whether
// a non-loopback address may be bound at all.
struct PermitEntry {
  std::string host;  // lower-cased, without brackets; "*" = any
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

// Bounds (the monitor protocol carries these lists to the network child).
inline constexpr size_t kMaxPermitEntries = 32;
inline constexpr size_t kMaxPermitHostLen = 255;

enum class PermitKind { kOpen, kListen };

// One entry; "" or what is wrong with it ("\"x\" is not HOST:PORT ...").
std::string ParsePermitEntry(std::string_view text, PermitKind kind, PermitEntry* out);

// Adds one config value (space-separated words: entries, or "any" / "none" alone) to *list.
// A key given on several lines accumulates; "any" or "none" must be the whole list.
std::string AddPermitWords(std::string_view value, PermitKind kind, PermitList* list);

// Wildcard match with * and ? (OpenSSH's match_pattern), case-sensitive: callers lower-case
// both sides. Used for listen hosts here and for from= patterns (key_options.h).
bool MatchWildcard(const char* text, const char* pattern);

// The entry as OpenSSH writes it ("host:port", "[::1]:*"), for --check and messages.
std::string FormatPermitEntry(const PermitEntry& entry);
// "any", "none" or the entries separated by spaces.
std::string FormatPermitList(const PermitList& list);

}  // namespace allgo
