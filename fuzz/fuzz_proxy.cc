// Any bytes as the start of a connection behind a load balancer.
#include <cstddef>
#include <cstdint>
#include <string>

#include "proxy_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  allgo::sshd::ProxyHeader header;
  std::string error;
  auto verdict = allgo::sshd::ParseProxyHeader(data, size, &header, &error);
  if (verdict == allgo::sshd::ProxyParse::kComplete) {
    if (header.length == 0 || header.length > size || header.length > allgo::sshd::kMaxProxyHeader) {
      __builtin_trap();  // must consume a real, bounded prefix
    }
    (void)allgo::sshd::AddressToString(header.source);
  }
  if (verdict == allgo::sshd::ProxyParse::kInvalid && error.empty()) __builtin_trap();
  return 0;
}
