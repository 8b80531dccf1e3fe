// Any bytes as a pasted key field: parsed keys must print back to a single safe line, and
// their options (as an authorized_keys_command would print them) parse and match without
// crashing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "allgo/key_options.h"
#include "allgo/pubkey.h"

namespace {
void CheckOptions(const std::string& text) {
  allgo::KeyOptions options;
  if (!allgo::ParseKeyOptions(text, &options).ok()) return;
  for (const char* ip : {"127.0.0.1", "::1", "::ffff:10.1.2.3", "not-an-address"}) {
    (void)allgo::FromAllows(options, ip);
  }
  (void)allgo::Expired(options, 0);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string field(reinterpret_cast<const char*>(data), size);
  CheckOptions(field);
  allgo::ParsedKeyField parsed = allgo::ParsePublicKeyField(field);
  for (const allgo::PublicKey& key : parsed.keys) {
    std::string line = allgo::FormatAuthorizedKeysLine(key, "restrict");
    for (char c : line) {
      if (c == '\n' || c == '\r' || c == '\0') __builtin_trap();  // would inject a line
    }
    if (line.rfind("restrict ", 0) != 0) __builtin_trap();  // options must stay ours
    CheckOptions(key.options);
  }
  return 0;
}
