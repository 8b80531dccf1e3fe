#include "allgo/allowed_keys.h"

#include "allgo/names.h"

namespace allgo {

Status LookupAllowedKeys(WebappDirectory& directory, std::string_view user, AllowedKeys* out) {
  Webapp webapp;
  Status s = directory.FindByName(user, &webapp);
  if (!s.ok()) return s;
  return LookupAllowedKeys(directory, webapp, out);
}

Status LookupAllowedKeys(WebappDirectory& directory, const Webapp& webapp, AllowedKeys* out) {
  *out = AllowedKeys{};
  out->webapp = webapp;
  std::vector<KeyRow> rows;
  Status s = directory.AllowedKeyRows(out->webapp, &rows);
  if (!s.ok()) return s;
  for (const KeyRow& row : rows) {
    ParsedKeyField parsed = ParsePublicKeyField(row.public_key);
    for (const std::string& error : parsed.errors) {
      out->dropped.push_back("key of user " + std::to_string(row.user_id) + " (" +
                             SanitizeForLog(row.email, 64) + ") dropped: " + error);
    }
    for (PublicKey& key : parsed.keys) {
      out->keys.push_back(AllowedKey{std::move(key), row.user_id, row.email});
    }
  }
  return Status::Ok();
}

}  // namespace allgo
