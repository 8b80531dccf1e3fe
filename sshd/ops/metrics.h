// Prometheus metrics of allgo-sshd, shared by all its processes.
//
// allgo-sshd runs a process per connection, so an in-process registry would only see the
// listener. The counters live instead in one MAP_SHARED anonymous mapping made by the
// listener before it forks: every process adds to the same atomics. prometheus-cpp (Debian's
// prometheus-cpp-dev, core library only) renders them: a prometheus::Collectable reads the
// shared block and prometheus::TextSerializer writes the exposition format, so names, label
// escaping and number formatting are the library's, not ours. Its own Counter/Registry types
// are not used: they live in one process's heap, and these counters must live in shared memory.
// A compromised connection process could corrupt these numbers, nothing else: they are
// counters, never read for any decision.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace allgo::sshd {

enum class AuthRefusal { kUnknownUser, kKeyNotAllowed, kDatabaseUnavailable, kTooManyTries, kCount };
// Forwards by kind (docs/forwarding.md): the `kind` label of allgo_ssh_forwards_total.
enum class ForwardMetricKind {
  kDirectTcpip,
  kForwardedTcpip,
  kAuthAgent,
  kTcpipForward,
  kDirectStreamlocal,
  kForwardedStreamlocal,
  kStreamlocalForward,
  kCount
};

class Metrics {
 public:
  // Maps the shared block; nullptr if mmap fails (metrics are then simply off).
  static Metrics* CreateShared();

  void ConnectionOpened();
  void ConnectionClosed();
  void ConnectionDropped();  // refused before the handshake (max_startups, PROXY errors)
  void Handshake(bool ok);
  void AuthSucceeded();
  void AuthRefused(AuthRefusal why);
  void SessionStarted();
  void SessionEnded(double duration_seconds);
  void AddBytes(uint64_t in, uint64_t out);
  void DatabaseError();
  // A forward accepted (opened, or a -R listener set up) or refused; `opened` ones are active
  // until ForwardEnded.
  void ForwardAccepted(ForwardMetricKind kind, bool opened);
  void ForwardRefused(ForwardMetricKind kind);
  void ForwardEnded(uint64_t in, uint64_t out);

  // The Prometheus text exposition format (version 0.0.4), via prometheus::TextSerializer.
  std::string Render() const;

  static constexpr int kBuckets = 11;
  static constexpr double kBucketBounds[kBuckets] = {0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400};

 private:
  Metrics() = default;
  using Counter = std::atomic<uint64_t>;
  static_assert(Counter::is_always_lock_free, "shared-memory counters must be lock free");
  Counter connections_total_{0};
  Counter connections_active_{0};
  Counter connections_dropped_{0};
  Counter handshakes_ok_{0};
  Counter handshakes_failed_{0};
  Counter auth_success_{0};
  Counter auth_refused_[static_cast<int>(AuthRefusal::kCount)] = {};
  Counter sessions_total_{0};
  Counter sessions_active_{0};
  Counter duration_buckets_[kBuckets] = {};
  Counter duration_count_{0};
  Counter duration_sum_micros_{0};
  Counter bytes_in_{0};
  Counter bytes_out_{0};
  Counter db_errors_{0};
  Counter forwards_accepted_[static_cast<int>(ForwardMetricKind::kCount)] = {};
  Counter forwards_refused_[static_cast<int>(ForwardMetricKind::kCount)] = {};
  Counter forwards_active_{0};

  friend class MetricsCollectable;
};

// The shared counters as Prometheus metric families (a snapshot of the atomics).
class MetricsCollectable : public prometheus::Collectable {
 public:
  explicit MetricsCollectable(const Metrics* metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Metrics* metrics_;
};

}  // namespace allgo::sshd
