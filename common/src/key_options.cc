// authorized_keys options: the grammar and the matching follow OpenSSH's auth-options.c and
// match.c (addr_match_list); what allgo-sshd cannot honour is refused here, once, for both
// servers (allgo-authkeys prints the same text for OpenSSH).
#include "allgo/key_options.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cctype>
#include <cstring>

namespace allgo {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }

// Reads "..." at text[*pos] (which must be the opening quote); only \" is an escape, as in
// OpenSSH's opt_dequote. Advances past the closing quote.
bool Dequote(std::string_view text, size_t* pos, std::string* out) {
  if (*pos >= text.size() || text[*pos] != '"') return false;
  std::string value;
  for (size_t i = *pos + 1; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '"') {
      value.push_back('"');
      ++i;
    } else if (text[i] == '"') {
      *pos = i + 1;
      *out = std::move(value);
      return true;
    } else {
      value.push_back(text[i]);
    }
  }
  return false;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int Number(std::string_view digits) {
  int n = 0;
  for (char c : digits) n = n * 10 + (c - '0');
  return n;
}

bool ParseAddress(const std::string& text, int* family, unsigned char addr[16]) {
  std::memset(addr, 0, 16);
  if (inet_pton(AF_INET, text.c_str(), addr) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), addr) == 1) {
    *family = AF_INET6;
    return true;
  }
  return false;
}

// The client address as OpenSSH sees it: an IPv4-mapped IPv6 address is IPv4.
std::string NormaliseClient(const std::string& ip) {
  std::string lower = Lower(ip);
  if (lower.rfind("::ffff:", 0) == 0 && lower.find('.') != std::string::npos) return lower.substr(7);
  return lower;
}

bool InNetwork(const HostPattern& p, int family, const unsigned char addr[16]) {
  if (family != p.family) return false;
  unsigned full = p.mask_bits / 8, rest = p.mask_bits % 8;
  if (std::memcmp(addr, p.addr, full) != 0) return false;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (addr[full] & mask) == (p.addr[full] & mask);
}

std::string ParseHostPatterns(const std::string& list, std::vector<HostPattern>* out) {
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    std::string entry = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    HostPattern p;
    if (!entry.empty() && entry[0] == '!') {
      p.negated = true;
      entry.erase(0, 1);
    }
    if (entry.empty()) return "empty pattern in \"" + list + "\"";
    if (entry.find_first_of(" \t") != std::string::npos) return "pattern \"" + entry + "\" contains a space";
    size_t slash = entry.find('/');
    if (slash != std::string::npos) {
      p.is_cidr = true;
      std::string bits = entry.substr(slash + 1);
      if (!ParseAddress(entry.substr(0, slash), &p.family, p.addr) || !AllDigits(bits) || bits.size() > 3) {
        return "\"" + entry + "\" is not ADDRESS/MASKLEN";
      }
      p.mask_bits = static_cast<unsigned>(Number(bits));
      unsigned max = p.family == AF_INET ? 32 : 128;
      if (p.mask_bits > max) return "\"" + entry + "\": mask length above " + std::to_string(max);
      // OpenSSH refuses a network whose host bits are set ("inconsistent mask length").
      unsigned char masked[16] = {};
      std::memcpy(masked, p.addr, 16);
      for (unsigned bit = p.mask_bits; bit < max; ++bit) masked[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
      if (std::memcmp(masked, p.addr, 16) != 0) {
        return "\"" + entry + "\" has host bits set beyond /" + bits + " (write the network address)";
      }
    }
    p.pattern = Lower(entry);
    out->push_back(std::move(p));
    if (comma == std::string::npos) return "";
    start = comma + 1;
  }
}

// "YYYYMMDD[HHMM[SS]]", local time unless followed by "Z" or "UTC" (OpenSSH's
// parse_absolute_time).
std::string ParseExpiry(const std::string& value, int64_t* out) {
  std::string digits = value;
  bool utc = false;
  std::string lower = Lower(value);
  if (lower.size() > 3 && lower.compare(lower.size() - 3, 3, "utc") == 0) {
    utc = true;
    digits.resize(digits.size() - 3);
  } else if (lower.size() > 1 && lower.back() == 'z') {
    utc = true;
    digits.pop_back();
  }
  if (!AllDigits(digits) || (digits.size() != 8 && digits.size() != 12 && digits.size() != 14)) {
    return "\"" + value + "\" is not YYYYMMDD[HHMM[SS]][Z]";
  }
  std::tm tm{};
  tm.tm_year = Number(digits.substr(0, 4)) - 1900;
  tm.tm_mon = Number(digits.substr(4, 2)) - 1;
  tm.tm_mday = Number(digits.substr(6, 2));
  if (digits.size() >= 12) {
    tm.tm_hour = Number(digits.substr(8, 2));
    tm.tm_min = Number(digits.substr(10, 2));
  }
  if (digits.size() == 14) tm.tm_sec = Number(digits.substr(12, 2));
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > kDays[tm.tm_mon] ||
      tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return "\"" + value + "\" is not a valid date and time";
  }
  tm.tm_isdst = -1;
  time_t t = utc ? timegm(&tm) : mktime(&tm);
  if (t == static_cast<time_t>(-1) || t <= 0) return "\"" + value + "\" is out of range";
  *out = static_cast<int64_t>(t);
  return "";
}

// Flags that allgo-sshd cannot grant or check; the text says why and what to do.
const char* RefusedFlag(const std::string& name) {
  if (name == "x11-forwarding") {
    return "allgo-sshd never offers X11 forwarding; remove it (no-X11-forwarding is accepted)";
  }
  if (name == "user-rc") return "allgo-sshd never runs ~/.ssh/rc; remove it (no-user-rc is accepted)";
  if (name == "cert-authority") return "allgo-sshd does not accept certificates; remove it";
  if (name == "touch-required" || name == "no-touch-required" || name == "verify-required") {
    return "allgo-sshd does not check FIDO authenticator flags; remove it";
  }
  return nullptr;
}

// What one option text has collected so far besides *out.
struct ParseState {
  bool seen_from = false;
  PermitList open, listen;  // this text's permitopen= / permitlisten= entries
};

// Applies one option to *out; "" or the problem (without the option name).
std::string ApplyOption(const std::string& name, bool has_value, const std::string& value, KeyOptions* out,
                        ParseState* state) {
  static const char* const kNoOps[] = {"no-x11-forwarding", "no-user-rc", "no-verify-required"};
  // Flags that switch one permission, OpenSSH's auth-options.c: later ones win, so
  // "restrict,port-forwarding" forwards ports and nothing else.
  struct Flag {
    const char* name;
    bool KeyOptions::*field;
    bool value;
  };
  static const Flag kFlags[] = {
      {"pty", &KeyOptions::pty, true},
      {"no-pty", &KeyOptions::pty, false},
      {"port-forwarding", &KeyOptions::port_forwarding, true},
      {"no-port-forwarding", &KeyOptions::port_forwarding, false},
      {"agent-forwarding", &KeyOptions::agent_forwarding, true},
      {"no-agent-forwarding", &KeyOptions::agent_forwarding, false},
  };
  if (!has_value) {
    if (name == "restrict") {
      // No PTY, no forwarding (and no X11, no ~/.ssh/rc: never offered by allgo-sshd).
      out->pty = out->port_forwarding = out->agent_forwarding = false;
      return "";
    }
    for (const Flag& f : kFlags) {
      if (name == f.name) {
        out->*(f.field) = f.value;
        return "";
      }
    }
    for (const char* n : kNoOps) {
      if (name == n) return "";
    }
    if (const char* why = RefusedFlag(name)) return why;
    if (name == "command" || name == "from" || name == "expiry-time" || name == "environment" ||
        name == "permitopen" || name == "permitlisten" || name == "principals" || name == "tunnel") {
      return "needs a value: " + name + "=\"...\"";
    }
    return "unknown option (OpenSSH refuses every key line that carries it)";
  }
  if (name == "command") {
    if (out->has_command) return "given twice (OpenSSH refuses multiple command clauses)";
    out->has_command = true;
    out->command = value;
    return "";
  }
  if (name == "from") {
    if (state->seen_from) return "given twice (OpenSSH refuses multiple from clauses)";
    state->seen_from = true;
    std::vector<HostPattern> list;
    std::string problem = ParseHostPatterns(value, &list);
    if (!problem.empty()) return problem;
    out->from.push_back(std::move(list));
    return "";
  }
  if (name == "expiry-time") {
    int64_t t = 0;
    std::string problem = ParseExpiry(value, &t);
    if (!problem.empty()) return problem;
    if (out->expires_at == 0 || t < out->expires_at) out->expires_at = t;
    return "";
  }
  if (name == "permitopen" || name == "permitlisten") {
    // Each one adds an entry to this text's list (OpenSSH: several permitopen= options are
    // one list).
    bool listen = name == "permitlisten";
    PermitList& list = listen ? state->listen : state->open;
    PermitEntry entry;
    std::string problem = ParsePermitEntry(value, listen ? PermitKind::kListen : PermitKind::kOpen, &entry);
    if (!problem.empty()) return problem;
    if (list.entries.size() >= kMaxPermitEntries) return "more than " + std::to_string(kMaxPermitEntries) + " entries";
    list.restricted = true;
    list.entries.push_back(std::move(entry));
    return "";
  }
  if (name == "environment") {
    return "allgo-sshd has no PermitUserEnvironment and never sets it; remove it (set the "
           "variable in the webapp instead)";
  }
  if (name == "principals") return "allgo-sshd does not accept certificates; remove it";
  if (name == "tunnel") return "allgo-sshd never offers tun forwarding; remove it";
  if (name == "restrict" || RefusedFlag(name) != nullptr) return "takes no value";
  for (const Flag& f : kFlags) {
    if (name == f.name) return "takes no value";
  }
  for (const char* n : kNoOps) {
    if (name == n) return "takes no value";
  }
  return "unknown option (OpenSSH refuses every key line that carries it)";
}

}  // namespace

Status ParseKeyOptions(std::string_view text, KeyOptions* out) {
  KeyOptions options;
  ParseState state;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    while (pos < text.size() && IsNameChar(text[pos])) ++pos;
    std::string name = Lower(text.substr(start, pos - start));
    if (name.empty()) {
      std::string at(text.substr(pos, 20));
      return Status::Invalid(start == 0 ? "unexpected \"" + at + "\" (expected an option name)"
                                        : "unexpected \"" + at + "\" after a ',' (expected an option name; "
                                          "options are separated by ',' without spaces)");
    }
    bool has_value = false;
    std::string value;
    if (pos < text.size() && text[pos] == '=') {
      ++pos;
      has_value = true;
      if (!Dequote(text, &pos, &value)) {
        return Status::Invalid(name + ": the value must be in double quotes and end with one: " + name +
                               "=\"...\"");
      }
      if (value.find('\0') != std::string::npos) return Status::Invalid(name + ": the value contains a NUL byte");
    }
    std::string problem = ApplyOption(name, has_value, value, &options, &state);
    if (!problem.empty()) return Status::Invalid(name + ": " + problem);
    if (pos == text.size()) break;
    if (text[pos] != ',') {
      return Status::Invalid(name + ": unexpected \"" + std::string(text.substr(pos, 20)) +
                             "\" after it (options are separated by ',' without spaces)");
    }
    ++pos;
    if (pos == text.size()) return Status::Invalid("a ',' ends the options (OpenSSH refuses that)");
  }
  if (state.open.restricted) options.permit_open.push_back(std::move(state.open));
  if (state.listen.restricted) options.permit_listen.push_back(std::move(state.listen));
  *out = std::move(options);
  return Status::Ok();
}

KeyOptions DefaultKeyOptions() {
  KeyOptions options;  // "restrict,pty": a PTY, no forwarding
  options.port_forwarding = false;
  options.agent_forwarding = false;
  return options;
}

std::string OpenSshForwardingProblem(const KeyOptions& options) {
  if (!options.port_forwarding && !options.agent_forwarding) return "";
  std::string what = options.port_forwarding && options.agent_forwarding ? "ports and the agent"
                     : options.port_forwarding                           ? "ports"
                                                                         : "the agent";
  return "these options let stock OpenSSH forward " + what +
         " from the frontend itself (its network: the database, the Docker API); start them with "
         "restrict (e.g. restrict,pty) or add no-port-forwarding,no-agent-forwarding, and remove "
         "port-forwarding / agent-forwarding. Forwarding into the sandbox is allgo-sshd's "
         "(docs/configuration.md, \"[authkeys] key_options\")";
}

Status RestrictKeyOptions(const KeyOptions& a, const KeyOptions& b, KeyOptions* out) {
  if (a.has_command && b.has_command && a.command != b.command) {
    return Status::Invalid("two different forced commands (command=) apply to this key");
  }
  KeyOptions r = a;
  r.pty = a.pty && b.pty;
  r.port_forwarding = a.port_forwarding && b.port_forwarding;
  r.agent_forwarding = a.agent_forwarding && b.agent_forwarding;
  for (const auto& list : b.permit_open) r.permit_open.push_back(list);
  for (const auto& list : b.permit_listen) r.permit_listen.push_back(list);
  if (b.has_command) {
    r.has_command = true;
    r.command = b.command;
  }
  for (const auto& list : b.from) r.from.push_back(list);
  if (b.expires_at != 0 && (r.expires_at == 0 || b.expires_at < r.expires_at)) r.expires_at = b.expires_at;
  *out = std::move(r);
  return Status::Ok();
}

int MatchHostPatterns(const std::vector<HostPattern>& patterns, const std::string& client_ip) {
  std::string ip = NormaliseClient(client_ip);
  int family = 0;
  unsigned char addr[16];
  bool numeric = ParseAddress(ip, &family, addr);
  int result = 0;
  for (const auto& p : patterns) {
    bool matched = p.is_cidr ? numeric && InNetwork(p, family, addr) : MatchWildcard(ip.c_str(), p.pattern.c_str());
    if (!matched) continue;
    if (p.negated) return -1;
    result = 1;
  }
  return result;
}

bool FromAllows(const KeyOptions& options, const std::string& client_ip) {
  for (const auto& list : options.from) {
    if (MatchHostPatterns(list, client_ip) != 1) return false;
  }
  return true;
}

bool Expired(const KeyOptions& options, time_t now) {
  return options.expires_at != 0 && static_cast<int64_t>(now) > options.expires_at;
}

}  // namespace allgo
