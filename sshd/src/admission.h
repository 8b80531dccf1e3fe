// Admission control for new connections (max_startups, per_source_max_startups,
// version_timeout): which accepted connection gets its monitor + network processes, and when.
//
// OpenSSH drops connections at random once `begin` are unauthenticated; a burst of 100
// legitimate logins then loses about half of them. Here an accepted connection first waits
// in this queue, costing a socket and a few hundred bytes of listener memory, no process:
//
//   accept ─▶ pending ──(a slot is free)──▶ fork monitor + network child ──▶ authenticated
//               │                                   (a running slot)
//               └─ closed: garbage, version_timeout, login_grace_time, room for a newcomer
//
// What the listener knows about a pending connection comes from peeking (MSG_PEEK) at its
// first bytes, never consuming them: libssh reads the client's version line itself later.
// The peek sees the PROXY header (trusted proxies), then the client's SSH version line:
//   - ready:   the version line is complete: a real SSH client. Admitted first (fairly
//              across sources: the source with the fewest running connections goes first).
//   - silent:  nothing sent yet. Most clients speak first, but some (libssh's) wait for the
//              server's version, and only a process can send it (libssh writes it). Silent
//              connections may hold at most half of the running slots, so idle connections
//              can never keep real clients out.
//   - partial: a version line that is not complete: it must complete within version_timeout
//              (a slowloris client sending a byte a second is closed).
//   - invalid: not SSH, or a bad PROXY header: closed at once.
//
// Limits (`begin:rate:full` of max_startups):
//   - at most `begin` connections run unauthenticated at once (their processes exist);
//     one source holds at most 3/4 of those slots, silent connections at most 1/2;
//   - at most `full` unauthenticated connections in all (running + pending), at most
//     per_source_max_startups from one source address (IPv4 /32, IPv6 /64; behind a trusted
//     proxy, the address of its PROXY header). A newcomer over either bound takes the place
//     of the oldest pending connection that has not sent its version line (from the same
//     source, or else from the source holding the most), and is refused only when none is left;
//   - `rate` (OpenSSH's random early drop) is accepted and not used: random drops are what
//     lose legitimate bursts.
// Every pending connection is closed at login_grace_time after its accept; the monitor's
// grace deadline also counts from the accept.
//
// Single-threaded: used by the listener's event loop only.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "allgo/config.h"
#include "allgo/unique_fd.h"
#include "metrics.h"
#include "proxy_protocol.h"

namespace allgo::sshd {

// RFC 4253 4.2: the version line is at most 255 characters including CR LF.
inline constexpr size_t kMaxVersionLine = 255;
// A proxy sends its PROXY header right after connecting; a trusted connection that sent
// nothing for this long under proxy_protocol = optional is a client waiting for our version.
inline constexpr long long kProxySilenceMs = 1000;

enum class Greeting { kSilent, kPartial, kReady, kInvalid };

struct GreetingInfo {
  Greeting state = Greeting::kSilent;
  bool has_proxy_header = false;  // a complete PROXY header precedes the SSH bytes
  ProxyHeader header;
  std::string error;  // kInvalid: what is wrong, for the log
};

// Classifies the first bytes of a connection. `mode` is kOff when the peer is not in
// proxy_trusted (then a PROXY header is not SSH, hence invalid). Pure: fuzzable and unit-tested.
GreetingInfo ClassifyGreeting(const uint8_t* data, size_t size, ProxyMode mode);

// The accounting key of an address: IPv4 (also v4-mapped) as is, IPv6 as its /64.
std::string SourceKey(const sockaddr_storage& address);

struct AdmissionLimits {
  unsigned running = 32;          // max_startups begin
  unsigned total = 1000;          // max_startups full
  unsigned per_source = 200;      // per_source_max_startups
  long long version_ms = 5000;    // version_timeout
  long long grace_ms = 30000;     // login_grace_time
  unsigned SilentRunning() const { return running > 1 ? running / 2 : 1; }
  unsigned SourceRunning() const { return running > 1 ? running - running / 4 : 1; }
  static AdmissionLimits FromConfig(const SshdConfig& config);
};

// A connection leaving the queue for its processes.
struct AdmittedConnection {
  UniqueFd fd;
  sockaddr_storage peer{};
  std::string source;
  bool silent = false;            // admitted before sending anything (holds a silent slot)
  bool has_proxy_header = false;  // a complete PROXY header waits in the socket
  long long accepted_ms = 0;
};

class Admission {
 public:
  // Pending sockets are registered in `epoll_fd` (edge-triggered) with data.u64 = tag | id;
  // the caller routes those events to OnEvent. `metrics` may be null.
  Admission(int epoll_fd, uint64_t tag, Metrics* metrics);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  void SetLimits(const AdmissionLimits& limits) { limits_ = limits; }
  // PROXY settings ([sshd] proxy_protocol, proxy_trusted) for connections accepted from now on.
  void SetProxy(ProxyMode mode, std::vector<Cidr> trusted);

  // A freshly accepted connection: queued (true) or refused and closed (false).
  bool Offer(UniqueFd fd, const sockaddr_storage& peer, long long now_ms);
  // An epoll event for the pending connection `id` (data.u64 without the tag).
  void OnEvent(uint64_t id, uint32_t events);
  // Closes pending connections past their deadline; returns ms until the next deadline
  // (-1: none).
  int Expire(long long now_ms);
  // Takes the next connection to run, if a slot is free; it counts as running until Release.
  bool Next(long long now_ms, AdmittedConnection* out);
  // A running connection authenticated or ended.
  void Release(const std::string& source, bool silent);
  // Closes every pending connection (shutdown).
  void Clear();
  // In a forked child: closes the inherited pending sockets, leaving the shared epoll
  // instance and the parent's state untouched.
  void CloseInChild();

  size_t pending() const { return pending_.size(); }
  size_t running() const { return running_; }

 private:
  struct Pending {
    UniqueFd fd;
    sockaddr_storage peer{};
    std::string source;  // "" while unknown (a trusted proxy's header has not arrived)
    bool proxy_trusted = false;
    long long accepted_ms = 0;
    GreetingInfo greeting;
  };
  struct SourceCount {
    unsigned pending = 0, running = 0;
  };
  using PendingMap = std::map<uint64_t, Pending>;  // by id, i.e. in accept order

  // Peeks at the socket and updates the greeting: "" to keep the connection, else why it
  // must close ("-": without a log line).
  std::string Inspect(uint64_t id, Pending& p);
  bool SilentEligible(const Pending& p, long long now_ms) const;
  // Partial version line, or a header that `required` waits for: version_timeout applies.
  bool WaitingForBytes(const Pending& p) const;
  long long ExpiresAt(const Pending& p) const;
  // Brings the next wake-up forward to what `p` waits for (expiry, or eligibility).
  void Wake(const Pending& p);
  // Makes room for one more connection from `source` ("" = no per-source bound), and with
  // `global` under `full`, by closing a pending connection that has not spoken (never
  // `except_id`); "" on success, else what is full.
  std::string MakeRoom(const std::string& source, uint64_t except_id, bool global);
  void Count(const std::string& source, int pending_delta, int running_delta);
  void Close(PendingMap::iterator it, const std::string& why);
  std::string Describe(const Pending& p) const;
  void Log(const std::string& line);

  int epoll_fd_;
  uint64_t tag_;
  Metrics* metrics_;
  AdmissionLimits limits_;
  ProxyMode proxy_mode_ = ProxyMode::kOff;
  std::vector<Cidr> proxy_trusted_;
  uint64_t next_id_ = 1;
  PendingMap pending_;
  std::unordered_map<std::string, SourceCount> sources_;
  size_t running_ = 0, running_silent_ = 0;
  long long next_deadline_ = -1;
  bool changed_ = false;  // something happened since Next last found nothing to admit
  // Flood-proof logging: a bounded number of lines a second, then a count of the rest.
  long long log_window_ms_ = 0;
  unsigned log_lines_ = 0, log_suppressed_ = 0;
};

}  // namespace allgo::sshd
