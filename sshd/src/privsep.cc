#include "privsep.h"

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

Status SetNoNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Status::FromErrno("PR_SET_NO_NEW_PRIVS", errno);
  return Status::Ok();
}

}  // namespace allgo::sshd
