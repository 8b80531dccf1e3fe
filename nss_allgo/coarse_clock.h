// CoarseClock: the module's clock for cache expiry and config re-checks, read on the hit path
// without a system call.
//
// CLOCK_MONOTONIC_COARSE is served by the vDSO on every clocksource: it returns the time of the
// kernel's last timekeeping update without reading hardware. CLOCK_MONOTONIC (what
// std::chrono::steady_clock reads) falls back to a real clock_gettime() system call when the
// clocksource cannot be read from user space (hpet, acpi_pm, some hypervisors), which would put
// a system call on every cache hit. Both count from the same origin.
//
// now() lags the true time by up to a tick or a few (4 ms ticks, measured up to ~6 ms on a
// busy VM), and is never ahead of it. precise() is CLOCK_MONOTONIC itself, for the miss path:
// an entry stamped with precise() at insertion and compared with now() expires no earlier
// than cache_ttl after it was made (at most a few ms later).
#pragma once

#include <time.h>

#include <chrono>

namespace allgo::nss {

struct CoarseClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<CoarseClock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept { return Read(CLOCK_MONOTONIC_COARSE); }
  static time_point precise() noexcept { return Read(CLOCK_MONOTONIC); }

 private:
  static time_point Read(clockid_t clock) noexcept {
    struct timespec ts {};
    clock_gettime(clock, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

}  // namespace allgo::nss
