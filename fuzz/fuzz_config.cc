// Any bytes as a config file: an error or a config, never a crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "allgo/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  allgo::Config config;
  std::string text(reinterpret_cast<const char*>(data), size);
  allgo::Status s = allgo::ParseConfig(text, "fuzz.conf", &config);
  if (!s.ok() && s.message().rfind("fuzz.conf", 0) != 0) __builtin_trap();  // errors name the file
  return 0;
}
