#include "service_users.h"

#include <pwd.h>

#include <cerrno>
#include <vector>

namespace allgo::sshd {
namespace {

constexpr uid_t kOverflowUid = 65534;  // `nobody`: shared by every daemon that uses it

Status Resolve(const Config& config, const char* key, const std::string& name, ServiceUser* out) {
  std::string where = config.path + ": [sshd] " + key + " = " + name;
  if (name == "root" || name == "nobody") {
    return Status::Invalid(where + ": must be a dedicated user of its own, not " + name +
                           " (the default is created by `adduser --system --no-create-home --group "
                           "--shell /usr/sbin/nologin USER`)");
  }
  errno = 0;
  struct passwd* pw = getpwnam(name.c_str());
  if (pw == nullptr) {
    return Status::Invalid(where + ": no such user; create it with `adduser --system --no-create-home --group "
                           "--shell /usr/sbin/nologin " + name + "` (the install does: share/allgo-ssh/create-users)");
  }
  if (pw->pw_uid == 0 || pw->pw_gid == 0) return Status::Invalid(where + ": has uid or gid 0; it must be unprivileged");
  if (pw->pw_uid == kOverflowUid) {
    return Status::Invalid(where + ": has the uid of nobody (" + std::to_string(kOverflowUid) +
                           "), shared with other daemons; give it a uid of its own");
  }
  if (pw->pw_uid >= config.nss.min_uid && pw->pw_uid <= config.nss.max_uid) {
    return Status::Invalid(where + ": uid " + std::to_string(pw->pw_uid) + " is inside the webapp uid range [" +
                           std::to_string(config.nss.min_uid) + ", " + std::to_string(config.nss.max_uid) +
                           "] ([nss] min_uid/max_uid): a webapp could be that uid; use a system user");
  }
  out->name = name;
  out->uid = pw->pw_uid;
  out->gid = pw->pw_gid;
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
