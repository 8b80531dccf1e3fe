#include "allgo/privileges.h"

#include "allgo/identity.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace allgo {

Status DropPrivileges(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (setgroups(groups.size(), groups.empty() ? nullptr : groups.data()) != 0) {
    return Status::FromErrno("setgroups", errno);
  }
  if (setresgid(gid, gid, gid) != 0) return Status::FromErrno("setresgid " + std::to_string(gid), errno);
  if (setresuid(uid, uid, uid) != 0) return Status::FromErrno("setresuid " + std::to_string(uid), errno);
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
    return Status::FromErrno("getresuid/getresgid", errno);
  }
  if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid) {
    return Status::Permission("privilege drop did not take effect");
  }
  // The supplementary groups read back: the set asked for, nothing kept from before.
  int n = getgroups(0, nullptr);
  std::vector<gid_t> have(n > 0 ? static_cast<size_t>(n) : 0);
  if (n < 0 || getgroups(n, have.data()) != n) return Status::FromErrno("getgroups", errno);
  std::vector<gid_t> want = groups;
  for (auto* v : {&have, &want}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  if (have != want) return Status::Permission("privilege drop: the supplementary groups did not take effect");
  if (uid != 0) {
    if (setuid(0) == 0 || seteuid(0) == 0) return Status::Permission("could regain root after dropping privileges");
    if (gid != 0 && (setgid(0) == 0 || setegid(0) == 0)) {
      return Status::Permission("could regain gid 0 after dropping privileges");
    }
  }
  return Status::Ok();
}

std::vector<gid_t> GroupsOf(const std::string& user, gid_t gid) {
  int n = 32;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  for (int attempt = 0; attempt < 4; ++attempt) {
    int count = n;
    if (getgrouplist(user.c_str(), gid, groups.data(), &count) >= 0) {
      groups.resize(static_cast<size_t>(count));
      return groups;
    }
    n = count > n ? count : n * 2;
    groups.resize(static_cast<size_t>(n));
  }
  return {gid};
}

namespace {
constexpr uid_t kOverflowUid = 65534;  // `nobody`: shared by every daemon that uses it
}  // namespace

Status ResolveServiceAccount(const Config& config, const std::string& where, const std::string& name,
                             ServiceAccount* out) {
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
  if (IsWebappUid(config.nss, pw->pw_uid)) {
    return Status::Invalid(where + ": uid " + std::to_string(pw->pw_uid) + " is inside the webapp uid range " +
                           WebappUidRange(config.nss) +
                           " ([nss] min_uid/max_uid): a webapp could be that uid; use a system user");
  }
  out->name = name;
  out->uid = pw->pw_uid;
  out->gid = pw->pw_gid;
  return Status::Ok();
}

}  // namespace allgo
