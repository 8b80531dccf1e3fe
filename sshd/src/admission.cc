#include "admission.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "child_process.h"

namespace allgo::sshd {
namespace {

constexpr unsigned kLogBurst = 20;  // lines per second before the rest are only counted

bool IsV4Mapped(const sockaddr_storage& a) {
  return a.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr);
}

}  // namespace

GreetingInfo ClassifyGreeting(const uint8_t* data, size_t size, ProxyMode mode) {
  GreetingInfo g;
  size_t offset = 0;
  if (mode != ProxyMode::kOff && size > 0) {
    switch (ParseProxyHeader(data, size, &g.header, &g.error)) {
      case ProxyParse::kComplete:
        g.has_proxy_header = true;
        offset = g.header.length;
        break;
      case ProxyParse::kNeedMore:
        g.state = Greeting::kPartial;
        return g;
      case ProxyParse::kInvalid:
        g.state = Greeting::kInvalid;
        return g;
      case ProxyParse::kNotProxy:
        g.header = ProxyHeader{};
        if (mode == ProxyMode::kRequired) {
          g.state = Greeting::kInvalid;
          g.error = "PROXY header required but not sent";
          return g;
        }
        break;
    }
  }
  const uint8_t* line = data + offset;
  size_t n = size - offset;
  if (n == 0) return g;  // silent (perhaps after a complete PROXY header)
  static constexpr char kPrefix[] = "SSH-";
  if (std::memcmp(line, kPrefix, std::min<size_t>(n, 4)) != 0) {
    g.state = Greeting::kInvalid;
    g.error = "not an SSH client: its first bytes are not an SSH version line ('SSH-...')";
    return g;
  }
  if (std::memchr(line, '\n', std::min(n, kMaxVersionLine)) != nullptr) {
    g.state = Greeting::kReady;
  } else if (n >= kMaxVersionLine) {
    g.state = Greeting::kInvalid;
    g.error = "SSH version line longer than 255 bytes";
  } else {
    g.state = Greeting::kPartial;
  }
  return g;
}

std::string SourceKey(const sockaddr_storage& address) {
  if (address.ss_family != AF_INET6 || IsV4Mapped(address)) return AddressToString(address);
  // One host usually owns a whole /64: count it as one source.
  in6_addr prefix = reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr;
  std::memset(prefix.s6_addr + 8, 0, 8);
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, &prefix, text, sizeof text);
  return std::string(text) + "/64";
}

AdmissionLimits AdmissionLimits::FromConfig(const SshdConfig& config) {
  AdmissionLimits l;
  l.running = std::max(1u, config.max_startups_begin);
  l.total = std::max(l.running, config.max_startups_full);
  l.per_source = std::max(1u, config.per_source_max_startups);
  l.grace_ms = config.login_grace_time * 1000LL;
  l.version_ms = std::min<long long>(config.version_timeout * 1000LL, l.grace_ms);
  return l;
}

Admission::Admission(int epoll_fd, uint64_t tag, Metrics* metrics)
    : epoll_fd_(epoll_fd), tag_(tag), metrics_(metrics) {}

Admission::~Admission() { Clear(); }

void Admission::SetProxy(ProxyMode mode, std::vector<Cidr> trusted) {
  proxy_mode_ = mode;
  proxy_trusted_ = std::move(trusted);
}

void Admission::Log(const std::string& line) {
  long long now = MonotonicMs();
  if (now - log_window_ms_ >= 1000) {
    if (log_suppressed_ > 0) {
      spdlog::warn("{} more admission message(s) like the above in the last second were not logged", log_suppressed_);
    }
    log_window_ms_ = now;
    log_lines_ = 0;
    log_suppressed_ = 0;
  }
  if (log_lines_ < kLogBurst) {
    ++log_lines_;
    spdlog::warn("{}", line);
  } else {
    ++log_suppressed_;
  }
}

std::string Admission::Describe(const Pending& p) const {
  std::string address = AddressToString(p.peer);
  if (p.peer.ss_family == AF_INET6 && !IsV4Mapped(p.peer)) address = "[" + address + "]";
  return address + ":" + std::to_string(AddressPort(p.peer));
}

void Admission::Count(const std::string& source, int pending_delta, int running_delta) {
  if (source.empty()) return;
  SourceCount& c = sources_[source];
  c.pending = static_cast<unsigned>(static_cast<int>(c.pending) + pending_delta);
  c.running = static_cast<unsigned>(static_cast<int>(c.running) + running_delta);
  if (c.pending == 0 && c.running == 0) sources_.erase(source);
}

bool Admission::Offer(UniqueFd fd, const sockaddr_storage& peer, long long now_ms) {
  Pending p;
  p.fd = std::move(fd);
  p.peer = peer;
  p.accepted_ms = now_ms;
  for (const Cidr& cidr : proxy_trusted_) p.proxy_trusted = p.proxy_trusted || CidrContains(cidr, peer);
  if (proxy_mode_ == ProxyMode::kRequired && !p.proxy_trusted) {
    Log("connection from " + Describe(p) + " refused: proxy_protocol = required and " + AddressToString(peer) +
        " is not in proxy_trusted");
    if (metrics_) metrics_->ConnectionDropped();
    return false;
  }
  // Behind a trusted proxy the real source is only known from its header.
  if (!p.proxy_trusted || proxy_mode_ == ProxyMode::kOff) p.source = SourceKey(peer);
  std::string full = MakeRoom(p.source, 0, /*global=*/true);
  if (!full.empty()) {
    Log("connection from " + Describe(p) + " refused: " + full);
    if (metrics_) metrics_->ConnectionDropped();
    return false;
  }
  uint64_t id = next_id_++;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = tag_ | id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, p.fd.get(), &ev) != 0) {
    spdlog::error("connection from {} dropped: epoll_ctl: {}", Describe(p), std::strerror(errno));
    if (metrics_) metrics_->ConnectionDropped();
    return false;
  }
  Count(p.source, 1, 0);
  auto it = pending_.emplace(id, std::move(p)).first;
  changed_ = true;
  std::string why = Inspect(it->first, it->second);
  if (!why.empty()) {
    Close(it, why);
  } else {
    Wake(it->second);
  }
  return true;
}

std::string Admission::Inspect(uint64_t id, Pending& p) {
  uint8_t buf[kMaxProxyHeader + kMaxVersionLine];
  ssize_t n = recv(p.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return "-";  // the client left before admission: nothing worth a log line
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return "-";
    n = 0;
  }
  ProxyMode mode = p.proxy_trusted ? proxy_mode_ : ProxyMode::kOff;
  GreetingInfo g = ClassifyGreeting(buf, static_cast<size_t>(n), mode);
  if (g.state == Greeting::kInvalid) return g.error;
  if (p.source.empty() && (g.has_proxy_header || (n > 0 && g.state != Greeting::kPartial))) {
    // The real client is known now: count it against its own per-source bound.
    std::string key = g.has_proxy_header && g.header.has_address ? SourceKey(g.header.source) : SourceKey(p.peer);
    std::string full = MakeRoom(key, id, /*global=*/false);  // it is already counted globally
    if (!full.empty()) return full;
    p.source = key;
    Count(p.source, 1, 0);
    changed_ = true;
  }
  if (g.state != p.greeting.state) changed_ = true;
  p.greeting = std::move(g);
  return "";
}

void Admission::OnEvent(uint64_t id, uint32_t events) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // closed or admitted meanwhile
  std::string why = (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ? "-" : Inspect(id, it->second);
  if (!why.empty()) {
    Close(it, why);
  } else {
    Wake(it->second);
  }
}

bool Admission::SilentEligible(const Pending& p, long long now_ms) const {
  if (p.greeting.state != Greeting::kSilent) return false;
  if (!p.proxy_trusted || proxy_mode_ == ProxyMode::kOff || p.greeting.has_proxy_header) return true;
  if (proxy_mode_ == ProxyMode::kRequired) return false;  // its header must come first
  return now_ms >= p.accepted_ms + kProxySilenceMs;
}

bool Admission::WaitingForBytes(const Pending& p) const {
  return p.greeting.state == Greeting::kPartial ||
         (p.greeting.state == Greeting::kSilent && p.proxy_trusted && proxy_mode_ == ProxyMode::kRequired &&
          !p.greeting.has_proxy_header);
}

long long Admission::ExpiresAt(const Pending& p) const {
  return p.accepted_ms + (WaitingForBytes(p) ? limits_.version_ms : limits_.grace_ms);
}

void Admission::Wake(const Pending& p) {
  long long at = ExpiresAt(p);
  if (p.greeting.state == Greeting::kSilent && p.proxy_trusted && proxy_mode_ == ProxyMode::kOptional &&
      !p.greeting.has_proxy_header) {
    at = std::min(at, p.accepted_ms + kProxySilenceMs);
  }
  if (next_deadline_ < 0 || at < next_deadline_) next_deadline_ = at;
}

int Admission::Expire(long long now_ms) {
  if (next_deadline_ >= 0 && now_ms >= next_deadline_) {
    next_deadline_ = -1;
    changed_ = true;  // silence may have made a connection eligible
    for (auto it = pending_.begin(); it != pending_.end();) {
      auto current = it++;
      const Pending& p = current->second;
      if (now_ms < ExpiresAt(p)) {
        Wake(p);
        continue;
      }
      Close(current, !WaitingForBytes(p) ? "not admitted within login_grace_time (" + std::to_string(limits_.grace_ms / 1000) +
                                 " s); max_startups is too low for this load, or a flood"
                           : "no complete SSH version line (or PROXY header) within version_timeout (" +
                                 std::to_string(limits_.version_ms / 1000) + " s)");
    }
  }
  if (next_deadline_ < 0) return -1;
  return static_cast<int>(std::max(0LL, next_deadline_ - now_ms));
}

std::string Admission::MakeRoom(const std::string& source, uint64_t except_id, bool global) {
  auto evictable = [&](const PendingMap::value_type& e) {
    return e.first != except_id && e.second.greeting.state != Greeting::kReady;
  };
  if (!source.empty()) {
    auto c = sources_.find(source);
    unsigned held = c == sources_.end() ? 0 : c->second.pending + c->second.running;
    if (held >= limits_.per_source) {
      auto victim = std::find_if(pending_.begin(), pending_.end(),
                                 [&](const auto& e) { return evictable(e) && e.second.source == source; });
      if (victim == pending_.end()) {
        return std::to_string(held) + " unauthenticated connections from " + source + " (per_source_max_startups)";
      }
      Close(victim, "closed to make room for a newer connection from the same source: it has not sent an SSH "
                    "version line (per_source_max_startups " + std::to_string(limits_.per_source) + ")");
    }
  }
  if (global && running_ + pending_.size() >= limits_.total) {
    // The victim comes from the source holding the most: a flood pays for itself.
    auto victim = pending_.end();
    unsigned victim_held = 0;
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (!evictable(*it)) continue;
      auto c = sources_.find(it->second.source);
      unsigned held = c == sources_.end() ? 0 : c->second.pending + c->second.running;
      if (victim == pending_.end() || held > victim_held) {
        victim = it;
        victim_held = held;
      }
    }
    if (victim == pending_.end()) {
      return std::to_string(running_ + pending_.size()) + " unauthenticated connections (max_startups full " +
             std::to_string(limits_.total) + ")";
    }
    Close(victim, "closed to make room for a newer connection: it has not sent an SSH version line (max_startups "
                  "full " + std::to_string(limits_.total) + ")");
  }
  return "";
}

bool Admission::Next(long long now_ms, AdmittedConnection* out) {
  if (running_ >= limits_.running || !changed_) return false;
  auto running_from = [&](const Pending& p) {
    auto c = sources_.find(p.source.empty() ? SourceKey(p.peer) : p.source);
    return c == sources_.end() ? 0u : c->second.running;
  };
  // Clients that spoke first, the source with the fewest running connections first, then
  // in accept order; then silent ones within their share.
  auto chosen = pending_.end();
  unsigned chosen_running = 0;
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->second.greeting.state != Greeting::kReady) continue;
    unsigned r = running_from(it->second);
    if (r >= limits_.SourceRunning()) continue;
    if (chosen == pending_.end() || r < chosen_running) {
      chosen = it;
      chosen_running = r;
    }
  }
  bool silent = false;
  if (chosen == pending_.end() && running_silent_ < limits_.SilentRunning()) {
    chosen = std::find_if(pending_.begin(), pending_.end(), [&](const auto& e) {
      return SilentEligible(e.second, now_ms) && running_from(e.second) < limits_.SourceRunning();
    });
    silent = chosen != pending_.end();
  }
  if (chosen == pending_.end()) {
    changed_ = false;  // nothing to do until a connection speaks, leaves or a slot frees
    return false;
  }
  Pending& p = chosen->second;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p.fd.get(), nullptr);  // the child shares the socket
  out->fd = std::move(p.fd);
  out->peer = p.peer;
  out->silent = silent;
  out->has_proxy_header = p.greeting.has_proxy_header;
  out->accepted_ms = p.accepted_ms;
  if (p.source.empty()) {
    out->source = SourceKey(p.peer);
    Count(out->source, 0, 1);
  } else {
    out->source = p.source;
    Count(out->source, -1, 1);
  }
  ++running_;
  if (silent) ++running_silent_;
  pending_.erase(chosen);
  return true;
}

void Admission::Release(const std::string& source, bool silent) {
  Count(source, 0, -1);
  if (running_ > 0) --running_;
  if (silent && running_silent_ > 0) --running_silent_;
  changed_ = true;
}

void Admission::Close(PendingMap::iterator it, const std::string& why) {
  Pending& p = it->second;
  if (why != "-") Log("connection from " + Describe(p) + " closed before admission: " + why);
  if (metrics_) metrics_->ConnectionDropped();
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p.fd.get(), nullptr);
  Count(p.source, -1, 0);
  pending_.erase(it);
  changed_ = true;
}

void Admission::Clear() {
  while (!pending_.empty()) Close(pending_.begin(), "-");
}

void Admission::CloseInChild() {
  for (auto& [id, p] : pending_) p.fd.reset();  // a dup of the parent's: epoll is untouched
  pending_.clear();
  sources_.clear();
}

}  // namespace allgo::sshd
