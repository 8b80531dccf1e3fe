#include "metrics.h"

#include <sys/mman.h>

#include <new>
#include <sstream>

namespace allgo::sshd {
namespace {

void Decrement(std::atomic<uint64_t>& gauge) {
  uint64_t v = gauge.load();
  while (v > 0 && !gauge.compare_exchange_weak(v, v - 1)) {
  }
}

const char* RefusalLabel(int i) {
  switch (static_cast<AuthRefusal>(i)) {
    case AuthRefusal::kUnknownUser: return "unknown_user";
    case AuthRefusal::kKeyNotAllowed: return "key_not_allowed";
    case AuthRefusal::kDatabaseUnavailable: return "database_unavailable";
    case AuthRefusal::kTooManyTries: return "too_many_tries";
    case AuthRefusal::kCount: break;
  }
  return "other";
}

}  // namespace

Metrics* Metrics::CreateShared() {
  void* p = mmap(nullptr, sizeof(Metrics), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return new (p) Metrics();
}

void Metrics::ConnectionOpened() {
  ++connections_total_;
  ++connections_active_;
}
void Metrics::ConnectionClosed() { Decrement(connections_active_); }
void Metrics::ConnectionDropped() { ++connections_dropped_; }
void Metrics::Handshake(bool ok) { ++(ok ? handshakes_ok_ : handshakes_failed_); }
void Metrics::AuthSucceeded() { ++auth_success_; }
void Metrics::AuthRefused(AuthRefusal why) { ++auth_refused_[static_cast<int>(why)]; }
void Metrics::SessionStarted() {
  ++sessions_total_;
  ++sessions_active_;
}
void Metrics::SessionEnded(double duration_seconds) {
  Decrement(sessions_active_);
  for (int i = 0; i < kBuckets; ++i) {
    if (duration_seconds <= kBucketBounds[i]) ++duration_buckets_[i];
  }
  ++duration_count_;
  duration_sum_micros_ += static_cast<uint64_t>(duration_seconds * 1e6);
}
void Metrics::AddBytes(uint64_t in, uint64_t out) {
  bytes_in_ += in;
  bytes_out_ += out;
}
void Metrics::DatabaseError() { ++db_errors_; }

std::string Metrics::Render() const {
  std::ostringstream o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("allgo_ssh_connections_total", "counter", "TCP connections accepted.");
  o << "allgo_ssh_connections_total " << connections_total_.load() << '\n';
  family("allgo_ssh_connections_active", "gauge", "Connections open now.");
  o << "allgo_ssh_connections_active " << connections_active_.load() << '\n';
  family("allgo_ssh_connections_dropped_total", "counter",
         "Connections refused before the SSH handshake (max_startups, PROXY header errors).");
  o << "allgo_ssh_connections_dropped_total " << connections_dropped_.load() << '\n';
  family("allgo_ssh_handshakes_total", "counter", "SSH key exchanges by result.");
  o << "allgo_ssh_handshakes_total{result=\"success\"} " << handshakes_ok_.load() << '\n';
  o << "allgo_ssh_handshakes_total{result=\"failure\"} " << handshakes_failed_.load() << '\n';
  uint64_t refused = 0;
  for (const auto& c : auth_refused_) refused += c.load();
  family("allgo_ssh_auth_total", "counter", "Authentication decisions by result.");
  o << "allgo_ssh_auth_total{result=\"success\"} " << auth_success_.load() << '\n';
  o << "allgo_ssh_auth_total{result=\"failure\"} " << refused << '\n';
  family("allgo_ssh_auth_failures_total", "counter", "Refused authentications by reason.");
  for (int i = 0; i < static_cast<int>(AuthRefusal::kCount); ++i) {
    o << "allgo_ssh_auth_failures_total{reason=\"" << RefusalLabel(i) << "\"} "
      << auth_refused_[i].load() << '\n';
  }
  family("allgo_ssh_sessions_total", "counter", "Sessions (channels running a command) started.");
  o << "allgo_ssh_sessions_total " << sessions_total_.load() << '\n';
  family("allgo_ssh_sessions_active", "gauge", "Sessions running now.");
  o << "allgo_ssh_sessions_active " << sessions_active_.load() << '\n';
  family("allgo_ssh_session_duration_seconds", "histogram", "Duration of ended sessions.");
  for (int i = 0; i < kBuckets; ++i) {
    o << "allgo_ssh_session_duration_seconds_bucket{le=\"" << kBucketBounds[i] << "\"} "
      << duration_buckets_[i].load() << '\n';
  }
  o << "allgo_ssh_session_duration_seconds_bucket{le=\"+Inf\"} " << duration_count_.load() << '\n';
  o << "allgo_ssh_session_duration_seconds_sum " << static_cast<double>(duration_sum_micros_.load()) / 1e6
    << '\n';
  o << "allgo_ssh_session_duration_seconds_count " << duration_count_.load() << '\n';
  family("allgo_ssh_bytes_total", "counter", "Channel payload bytes by direction (in = from clients).");
  o << "allgo_ssh_bytes_total{direction=\"in\"} " << bytes_in_.load() << '\n';
  o << "allgo_ssh_bytes_total{direction=\"out\"} " << bytes_out_.load() << '\n';
  family("allgo_ssh_db_errors_total", "counter", "Lookups that failed because the database was unreachable.");
  o << "allgo_ssh_db_errors_total " << db_errors_.load() << '\n';
  return o.str();
}

}  // namespace allgo::sshd
