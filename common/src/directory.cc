#include "allgo/directory.h"

#include <cerrno>
#include <cstdlib>

#include "allgo/names.h"

namespace allgo {
namespace {

constexpr unsigned kWebappColumns = 5;
constexpr unsigned kKeyColumns = 6;

bool ParseId(const std::optional<std::string>& field, uint64_t* out) {
  if (!field || field->empty() || field->find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  errno = 0;
  unsigned long long v = std::strtoull(field->c_str(), nullptr, 10);
  if (errno != 0) return false;
  *out = v;
  return true;
}

bool ParseFlag(const std::optional<std::string>& field) {
  return field && !field->empty() && *field != "0";
}

}  // namespace

WebappDirectory::WebappDirectory(const Config& config, MysqlConnection* connection,
                                 OtherAccountSources::Caller caller)
    : config_(config), connection_(connection), other_sources_(caller) {}

Status WebappDirectory::CheckUnclaimed(const Webapp& webapp) const {
  Status s = other_sources_.CheckUnclaimed(webapp.docker_name, UidOf(webapp));
  if (s.ok()) return s;
  const std::string why = "webapp '" + webapp.docker_name + "' is not served: " + s.message();
  return s.IsUnavailable() ? Status::Unavailable(why) : Status::NotFound(why);
}

uid_t WebappDirectory::UidOf(const Webapp& webapp) const {
  return static_cast<uid_t>(uint64_t{webapp.id} + config_.nss.uid_offset);
}

bool WebappDirectory::ValidRow(const Webapp& webapp) const {
  return IsValidUserName(webapp.docker_name) && IsWebappUid(config_.nss, uint64_t{webapp.id} + config_.nss.uid_offset);
}

Status WebappDirectory::FetchWebapps(const std::string& sql, const std::vector<SqlParam>& params,
                                     std::vector<Webapp>* out) {
  std::vector<SqlRow> rows;
  Status s = connection_->Query(sql, params, kWebappColumns, &rows);
  if (!s.ok()) return s;
  out->clear();
  for (const SqlRow& row : rows) {
    uint64_t id = 0, owner = 0;
    if (!ParseId(row[0], &id) || id > UINT32_MAX || !row[1]) continue;
    ParseId(row[3], &owner);
    Webapp w;
    w.id = static_cast<uint32_t>(id);
    w.docker_name = *row[1];
    w.display_name = row[2].value_or("");
    w.owner_id = static_cast<uint32_t>(owner <= UINT32_MAX ? owner : 0);
    w.sandbox_state = row[4].value_or("");
    if (ValidRow(w)) out->push_back(std::move(w));
  }
  return Status::Ok();
}

Status WebappDirectory::FindByName(std::string_view docker_name, Webapp* out) {
  if (!IsValidUserName(docker_name)) return Status::NotFound("not a valid webapp name");
  std::vector<Webapp> found;
  Status s = FetchWebapps(config_.queries.webapp_by_name, {std::string(docker_name)}, &found);
  if (!s.ok()) return s;
  // The database's collation may compare case- or space-insensitively; we do not.
  for (Webapp& w : found) {
    if (w.docker_name == docker_name) {
      if (Status claimed = CheckUnclaimed(w); !claimed.ok()) return claimed;
      *out = std::move(w);
      return Status::Ok();
    }
  }
  return Status::NotFound("no webapp named '" + std::string(docker_name) + "'");
}

Status WebappDirectory::FindByUid(uid_t uid, Webapp* out) {
  if (!IsWebappUid(config_.nss, uid)) return Status::NotFound("uid outside the webapp range");
  uint64_t id = uint64_t{uid} - config_.nss.uid_offset;
  std::vector<Webapp> found;
  Status s = FetchWebapps(config_.queries.webapp_by_id, {id}, &found);
  if (!s.ok()) return s;
  for (Webapp& w : found) {
    if (w.id == id) {
      if (Status claimed = CheckUnclaimed(w); !claimed.ok()) return claimed;
      *out = std::move(w);
      return Status::Ok();
    }
  }
  return Status::NotFound("no webapp with uid " + std::to_string(uid));
}

Status WebappDirectory::List(std::vector<Webapp>* out) {
  Status s = FetchWebapps(config_.queries.webapp_list, {}, out);
  if (!s.ok()) return s;
  // A row another source owns is left out, and so is one that cannot be checked right now.
  std::erase_if(*out, [this](const Webapp& w) { return !CheckUnclaimed(w).ok(); });
  return Status::Ok();
}

Status WebappDirectory::AllowedKeyRows(const Webapp& webapp, std::vector<KeyRow>* out) {
  std::vector<SqlRow> rows;
  Status s = connection_->Query(config_.queries.webapp_keys, {uint64_t{webapp.id}}, kKeyColumns,
                                &rows);
  if (!s.ok()) return s;
  out->clear();
  for (const SqlRow& row : rows) {
    uint64_t user_id = 0;
    if (!ParseId(row[0], &user_id) || user_id > UINT32_MAX || !row[5]) continue;
    KeyRow k;
    k.user_id = static_cast<uint32_t>(user_id);
    k.email = row[1].value_or("");
    k.is_active = ParseFlag(row[2]);
    k.is_superuser = ParseFlag(row[3]);
    k.is_owner = ParseFlag(row[4]) && k.user_id == webapp.owner_id;
    k.public_key = *row[5];
    // The policy of DESIGN.md, applied here whatever the query returned.
    bool allowed = k.is_active && (k.is_owner || (k.is_superuser && config_.authkeys.allow_superusers));
    if (allowed) out->push_back(std::move(k));
  }
  return Status::Ok();
}

}  // namespace allgo
