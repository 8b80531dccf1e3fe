#include "metrics.h"

#include <sys/mman.h>

#include <iterator>
#include <new>

#include <prometheus/text_serializer.h>

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
void Metrics::ForwardAccepted(ForwardMetricKind kind, bool opened) {
  ++forwards_accepted_[static_cast<int>(kind)];
  if (opened) ++forwards_active_;
}
void Metrics::ForwardRefused(ForwardMetricKind kind) { ++forwards_refused_[static_cast<int>(kind)]; }
void Metrics::ForwardEnded(uint64_t in, uint64_t out) {
  Decrement(forwards_active_);
  AddBytes(in, out);
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(const char* name, MetricType type, const char* help) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

// One sample of a counter or gauge, with at most one label.
void AddSample(MetricFamily* family, uint64_t value, const char* label = nullptr, const char* label_value = nullptr) {
  ClientMetric m;
  if (label != nullptr) m.label.push_back({label, label_value});
  if (family->type == MetricType::Counter) {
    m.counter.value = static_cast<double>(value);
  } else {
    m.gauge.value = static_cast<double>(value);
  }
  family->metric.push_back(std::move(m));
}

}  // namespace

std::vector<MetricFamily> MetricsCollectable::Collect() const {
  const Metrics& m = *metrics_;
  std::vector<MetricFamily> out;
  auto single = [&](const char* name, MetricType type, const char* help, const std::atomic<uint64_t>& value) {
    out.push_back(Family(name, type, help));
    AddSample(&out.back(), value.load());
  };
  single("allgo_ssh_connections_total", MetricType::Counter, "TCP connections accepted.", m.connections_total_);
  single("allgo_ssh_connections_active", MetricType::Gauge, "Connections open now.", m.connections_active_);
  single("allgo_ssh_connections_dropped_total", MetricType::Counter,
         "Connections refused before the SSH handshake (max_startups, PROXY header errors).",
         m.connections_dropped_);

  out.push_back(Family("allgo_ssh_handshakes_total", MetricType::Counter, "SSH key exchanges by result."));
  AddSample(&out.back(), m.handshakes_ok_.load(), "result", "success");
  AddSample(&out.back(), m.handshakes_failed_.load(), "result", "failure");

  uint64_t refused = 0;
  for (const auto& c : m.auth_refused_) refused += c.load();
  out.push_back(Family("allgo_ssh_auth_total", MetricType::Counter, "Authentication decisions by result."));
  AddSample(&out.back(), m.auth_success_.load(), "result", "success");
  AddSample(&out.back(), refused, "result", "failure");
  out.push_back(Family("allgo_ssh_auth_failures_total", MetricType::Counter, "Refused authentications by reason."));
  for (int i = 0; i < static_cast<int>(AuthRefusal::kCount); ++i) {
    AddSample(&out.back(), m.auth_refused_[i].load(), "reason", RefusalLabel(i));
  }

  single("allgo_ssh_sessions_total", MetricType::Counter, "Sessions (channels running a command) started.",
         m.sessions_total_);
  single("allgo_ssh_sessions_active", MetricType::Gauge, "Sessions running now.", m.sessions_active_);

  out.push_back(Family("allgo_ssh_session_duration_seconds", MetricType::Histogram, "Duration of ended sessions."));
  ClientMetric histogram;
  // Each bucket counter already holds the cumulative count (SessionEnded adds to every
  // bucket whose bound is at least the duration). The serializer adds the +Inf bucket.
  for (int i = 0; i < Metrics::kBuckets; ++i) {
    histogram.histogram.bucket.push_back({m.duration_buckets_[i].load(), Metrics::kBucketBounds[i]});
  }
  histogram.histogram.sample_count = m.duration_count_.load();
  histogram.histogram.sample_sum = static_cast<double>(m.duration_sum_micros_.load()) / 1e6;
  out.back().metric.push_back(std::move(histogram));

  out.push_back(Family("allgo_ssh_bytes_total", MetricType::Counter,
                       "Channel payload bytes by direction (in = from clients)."));
  AddSample(&out.back(), m.bytes_in_.load(), "direction", "in");
  AddSample(&out.back(), m.bytes_out_.load(), "direction", "out");
  single("allgo_ssh_db_errors_total", MetricType::Counter,
         "Lookups that failed because the database was unreachable.", m.db_errors_);

  static constexpr const char* kForwardKinds[] = {"direct-tcpip",       "forwarded-tcpip",       "auth-agent",
                                                  "tcpip-forward",      "direct-streamlocal",    "forwarded-streamlocal",
                                                  "streamlocal-forward"};
  static_assert(std::size(kForwardKinds) == static_cast<size_t>(ForwardMetricKind::kCount));
  out.push_back(Family("allgo_ssh_forwards_total", MetricType::Counter,
                       "Forwards into the sandbox by kind and result (tcpip-forward, streamlocal-forward: -R "
                       "listeners)."));
  for (int i = 0; i < static_cast<int>(ForwardMetricKind::kCount); ++i) {
    for (bool accepted : {true, false}) {
      ClientMetric sample;
      sample.label = {{"kind", kForwardKinds[i]}, {"result", accepted ? "accepted" : "refused"}};
      sample.counter.value =
          static_cast<double>((accepted ? m.forwards_accepted_[i] : m.forwards_refused_[i]).load());
      out.back().metric.push_back(std::move(sample));
    }
  }
  single("allgo_ssh_forwards_active", MetricType::Gauge, "Forwarded channels open now.", m.forwards_active_);
  return out;
}

std::string Metrics::Render() const {
  return prometheus::TextSerializer().Serialize(MetricsCollectable(this).Collect());
}

}  // namespace allgo::sshd
