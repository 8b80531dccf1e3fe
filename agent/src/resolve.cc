#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#include "allgo/unique_fd.h"

namespace allgo::bridge {
namespace {

// An address literal, or false. Only the strict forms: dotted quad (no "127.1", no octal),
// IPv6 without a zone ("fe80::1%eth0" is not a literal we can pass on).
bool ParseLiteral(std::string_view text, uint16_t port, SocketAddress* out) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  *out = SocketAddress{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out->length = sizeof(sockaddr_in);
    return true;
  }
  *out = SocketAddress{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  if (inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out->length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

bool SameName(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The first kMaxHostsFile bytes of a regular file; "" when missing or not a regular file
// (a fifo or device planted there is never read: O_NONBLOCK, then fstat).
std::string ReadHostsFile(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st;
  if (!fd || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
  std::string text(kMaxHostsFile, '\0');
  size_t have = 0;
  while (have < text.size()) {
    ssize_t n = read(fd.get(), text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  text.resize(have);
  // A line cut by the bound is not a line.
  if (have == kMaxHostsFile) text.resize(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n'));
  return text;
}

// The addresses /etc/hosts gives `name`, in file order: "ADDRESS NAME [ALIAS...]" per line,
// '#' to the end of a line a comment; a line whose first field is no strict address literal
// is skipped, as glibc skips it.
void LookUpHostsFile(const char* path, std::string_view name, uint16_t port, std::vector<SocketAddress>* out) {
  std::string text = ReadHostsFile(path);
  std::string_view rest = text;
  while (!rest.empty() && out->size() < kMaxResolvedAddresses) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::vector<std::string_view> fields;
    while (!line.empty()) {
      size_t start = line.find_first_not_of(" \t\r");
      if (start == std::string_view::npos) break;
      line.remove_prefix(start);
      size_t stop = line.find_first_of(" \t\r");
      fields.push_back(line.substr(0, stop));
      line = stop == std::string_view::npos ? std::string_view() : line.substr(stop);
    }
    if (fields.size() < 2) continue;
    SocketAddress address;
    if (!ParseLiteral(fields[0], port, &address)) continue;
    for (size_t i = 1; i < fields.size(); ++i) {
      if (SameName(fields[i], name)) {
        out->push_back(address);
        break;
      }
    }
  }
}

}  // namespace

std::string ResolveHost(std::string_view host, uint16_t port, std::vector<SocketAddress>* out,
                        const char* hosts_file) {
  out->clear();
  SocketAddress address;
  if (ParseLiteral(host, port, &address)) {
    out->push_back(address);
    return "";
  }
  LookUpHostsFile(hosts_file, host, port, out);
  if (out->empty() && SameName(host, "localhost")) {
    // What every resolver answers for it, /etc/hosts or not.
    for (const char* loopback : {"127.0.0.1", "::1"}) {
      if (ParseLiteral(loopback, port, &address)) out->push_back(address);
    }
  }
  if (!out->empty()) return "";
  return "name resolution of " + std::string(host) +
         " is not supported by the agent; use an address or an /etc/hosts name";
}

bool UnixAddress(std::string_view path, SocketAddress* out) {
  *out = SocketAddress{};
  auto* un = reinterpret_cast<sockaddr_un*>(&out->storage);
  if (path.empty() || path.size() >= sizeof un->sun_path) return false;
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path.data(), path.size());
  out->length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

void NumericHost(const sockaddr* address, std::string* host, uint32_t* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  *port = 0;
  if (address->sa_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    *port = ntohs(v4->sin_port);
  } else if (address->sa_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    *port = ntohs(v6->sin6_port);
  }
  *host = buf;
}

}  // namespace allgo::bridge
