// Any bytes as the first bytes of a connection, as the listener peeks at them before a
// connection has a process (sshd/src/admission.h): the long-lived root process must never
// crash on them, and a verdict must be consistent with the bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "admission.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using allgo::sshd::Greeting;
  for (auto mode : {allgo::sshd::ProxyMode::kOff, allgo::sshd::ProxyMode::kOptional, allgo::sshd::ProxyMode::kRequired}) {
    allgo::sshd::GreetingInfo g = allgo::sshd::ClassifyGreeting(data, size, mode);
    size_t offset = g.has_proxy_header ? g.header.length : 0;
    if (offset > size) __builtin_trap();
    if (g.state == Greeting::kInvalid && g.error.empty()) __builtin_trap();
    if (g.state == Greeting::kSilent && offset != size) __builtin_trap();
    if (g.state == Greeting::kReady &&
        (size - offset < 4 || std::memcmp(data + offset, "SSH-", 4) != 0 ||
         std::memchr(data + offset, '\n', size - offset) == nullptr)) {
      __builtin_trap();
    }
  }
  return 0;
}
