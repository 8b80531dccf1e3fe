#include "service_users.h"

#include <vector>

#include "allgo/privileges.h"

namespace allgo::sshd {
namespace {

Status Resolve(const Config& config, const char* key, const std::string& name, ServiceUser* out) {
  ServiceAccount account;
  Status st = ResolveServiceAccount(config, config.path + ": [sshd] " + key + " = " + name, name, &account);
  if (!st.ok()) return st;
  out->name = account.name;
  out->uid = account.uid;
  out->gid = account.gid;
  return Status::Ok();
}

}  // namespace

Status ResolveServiceUsers(const Config& config, ServiceUsers* out) {
  struct Role {
    const char* key;
    const std::string& name;
    ServiceUser* user;
  };
  std::vector<Role> roles = {{"privsep_user", config.sshd.privsep_user, &out->privsep},
                             {"lookup_user", config.sshd.lookup_user, &out->lookup}};
  if (!config.sshd.metrics_listen.empty()) roles.push_back({"metrics_user", config.sshd.metrics_user, &out->metrics});
  for (size_t i = 0; i < roles.size(); ++i) {
    Status st = Resolve(config, roles[i].key, roles[i].name, roles[i].user);
    if (!st.ok()) return st;
    for (size_t j = 0; j < i; ++j) {
      if (roles[j].user->uid == roles[i].user->uid || roles[j].user->gid == roles[i].user->gid) {
        return Status::Invalid(config.path + ": [sshd] " + roles[i].key + " = " + roles[i].name + " and " +
                               roles[j].key + " = " + roles[j].name +
                               " share a uid or gid; each role needs a user (and group) of its own");
      }
    }
  }
  return Status::Ok();
}

}  // namespace allgo::sshd
