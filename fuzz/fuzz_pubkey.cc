// Any bytes as a pasted key field: parsed keys must print back to a single safe line.
#include <cstddef>
#include <cstdint>
#include <string>

#include "allgo/pubkey.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string field(reinterpret_cast<const char*>(data), size);
  allgo::ParsedKeyField parsed = allgo::ParsePublicKeyField(field);
  for (const allgo::PublicKey& key : parsed.keys) {
    std::string line = allgo::FormatAuthorizedKeysLine(key, "restrict");
    for (char c : line) {
      if (c == '\n' || c == '\r' || c == '\0') __builtin_trap();  // would inject a line
    }
    if (line.rfind("restrict ", 0) != 0) __builtin_trap();  // options must stay ours
  }
  return 0;
}
