#include "privsep.h"

#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace allgo::sshd {

Status EnsurePrivsepChroot(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return Status::Invalid("privsep_chroot must be an absolute path, got '" + path + "'");
  }
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno("cannot create privsep_chroot " + path, errno);
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return Status::FromErrno("privsep_chroot " + path, errno);
  if (!S_ISDIR(st.st_mode)) return Status::Invalid("privsep_chroot " + path + " is not a directory");
  if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Status::Permission("privsep_chroot " + path +
                              " must be owned by root and not group/world writable (chown root " +
                              path + " && chmod 755 " + path + ")");
  }
  return Status::Ok();
}

Status EnterChroot(const std::string& path) {
  if (chroot(path.c_str()) != 0) return Status::FromErrno("chroot " + path, errno);
  if (chdir("/") != 0) return Status::FromErrno("chdir / in chroot " + path, errno);
  return Status::Ok();
}

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
  if (uid != 0) {
    if (setuid(0) == 0 || seteuid(0) == 0) return Status::Permission("could regain root after dropping privileges");
    if (gid != 0 && (setgid(0) == 0 || setegid(0) == 0)) {
      return Status::Permission("could regain gid 0 after dropping privileges");
    }
  }
  return Status::Ok();
}

Status SetNoNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Status::FromErrno("PR_SET_NO_NEW_PRIVS", errno);
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

}  // namespace allgo::sshd
