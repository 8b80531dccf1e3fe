// The keys allowed to log in as a webapp: the one decision shared by allgo-authkeys and
// allgo-sshd's in-process lookup, so both servers accept exactly the same keys.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "allgo/directory.h"
#include "allgo/model.h"
#include "allgo/pubkey.h"
#include "allgo/status.h"

namespace allgo {

struct AllowedKey {
  PublicKey key;
  uint32_t user_id = 0;  // the allgo account the key belongs to
  std::string email;
};

struct AllowedKeys {
  Webapp webapp;
  std::vector<AllowedKey> keys;
  std::vector<std::string> dropped;  // one message per invalid key, for the log
};

// NotFound for an unknown or invalid user name (nothing to print, not an error for sshd),
// Unavailable when the database cannot be reached.
Status LookupAllowedKeys(WebappDirectory& directory, std::string_view user, AllowedKeys* out);
// The same for a webapp already found (directory.FindByName).
Status LookupAllowedKeys(WebappDirectory& directory, const Webapp& webapp, AllowedKeys* out);

}  // namespace allgo
