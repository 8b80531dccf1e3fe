// PermitOpen / PermitListen entries, parsed as OpenSSH's servconf.c and auth-options.c do.
#include "allgo/forward_permits.h"

#include <cctype>

namespace allgo {
namespace {

bool ParsePort(std::string_view text, PermitEntry* out) {
  if (text == "*") {
    out->any_port = true;
    out->port = 0;
    return true;
  }
  if (text.empty() || text.size() > 5) return false;
  uint32_t n = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n < 1 || n > 65535) return false;
  out->port = n;
  out->any_port = false;
  return true;
}

}  // namespace

std::string ParsePermitEntry(std::string_view text, PermitKind kind, PermitEntry* out) {
  const bool listen = kind == PermitKind::kListen;
  const std::string quoted = "\"" + std::string(text) + "\"";
  const std::string usage = listen ? " is not [HOST:]PORT (PORT may be *)" : " is not HOST:PORT (HOST or PORT may be *)";
  PermitEntry entry;
  std::string_view host, port;
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    // OpenSSH turns a bare listen port into "*:PORT".
    if (!listen) return quoted + usage;
    host = "*";
    port = text;
  } else {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
      return quoted + usage + " (write an IPv6 address in brackets: [::1]:8080)";
    }
  }
  if (host.empty() || host.size() > kMaxPermitHostLen) return quoted + usage;
  for (char c : host) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '.' || c == '-' || c == '_' || c == ':' || c == '*' || c == '?' || c == '%')) {
      return quoted + usage + ": '" + std::string(1, c) + "' cannot be part of a host";
    }
    entry.host.push_back(static_cast<char>(std::tolower(u)));
  }
  if (!ParsePort(port, &entry)) return quoted + usage + ": the port must be 1-65535 or *";
  *out = std::move(entry);
  return "";
}

std::string AddPermitWords(std::string_view value, PermitKind kind, PermitList* list) {
  std::vector<std::string_view> words;
  size_t pos = 0;
  while (pos < value.size()) {
    size_t start = value.find_first_not_of(" \t", pos);
    if (start == std::string_view::npos) break;
    size_t end = value.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = value.size();
    words.push_back(value.substr(start, end - start));
    pos = end;
  }
  if (words.empty()) return "must be any, none, or a space-separated list of entries";
  for (std::string_view w : words) {
    if (w != "any" && w != "none") continue;
    // Like OpenSSH: "any" and "none" stand alone, and only on the first line of the key.
    if (words.size() != 1 || list->restricted || !list->entries.empty()) {
      return "\"" + std::string(w) + "\" must be the whole list (one line, nothing else)";
    }
  }
  if (words.size() == 1 && (words[0] == "any" || words[0] == "none")) {
    list->restricted = words[0] == "none";
    list->entries.clear();
    return "";
  }
  if (list->restricted && list->entries.empty()) return "entries after \"none\" (none must be the whole list)";
  PermitList added = *list;
  added.restricted = true;
  for (std::string_view w : words) {
    PermitEntry e;
    std::string problem = ParsePermitEntry(w, kind, &e);
    if (!problem.empty()) return problem;
    if (added.entries.size() >= kMaxPermitEntries) {
      return "more than " + std::to_string(kMaxPermitEntries) + " entries";
    }
    added.entries.push_back(std::move(e));
  }
  *list = std::move(added);
  return "";
}

bool MatchWildcard(const char* s, const char* p) {
  for (;;) {
    if (*p == '\0') return *s == '\0';
    if (*p == '*') {
      while (*p == '*') ++p;
      if (*p == '\0') return true;
      for (; *s != '\0'; ++s) {
        if (MatchWildcard(s, p)) return true;
      }
      return false;
    }
    if (*s == '\0') return false;
    if (*p != '?' && *p != *s) return false;
    ++s;
    ++p;
  }
}

std::string FormatPermitEntry(const PermitEntry& entry) {
  std::string host = entry.host.find(':') != std::string::npos ? "[" + entry.host + "]" : entry.host;
  return host + ":" + (entry.any_port ? std::string("*") : std::to_string(entry.port));
}

std::string FormatPermitList(const PermitList& list) {
  if (!list.restricted) return "any";
  if (list.entries.empty()) return "none";
  std::string out;
  for (const PermitEntry& e : list.entries) {
    if (!out.empty()) out.push_back(' ');
    out += FormatPermitEntry(e);
  }
  return out;
}

}  // namespace allgo
