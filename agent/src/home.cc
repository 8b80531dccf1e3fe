#include "home.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "allgo/bridge/io.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {
namespace {

constexpr const char* kTmp = "/tmp";

bool WritableFolder(const char* path) {
  struct stat st;
  return path && path[0] == '/' && stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK | X_OK) == 0;
}

// Why `st` (of /tmp) cannot hold a private folder of `uid`: someone else could rename or
// remove its entry (the owner of a sticky folder may).
std::string TmpProblem(const struct stat& st, uid_t uid) {
  if (st.st_uid != 0 && st.st_uid != uid) return "/tmp is owned by uid " + std::to_string(st.st_uid);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return "/tmp is writable by others without the sticky bit";
  }
  return "";
}

// Why `st` (of /tmp/allgo-home-<uid>, not followed) is not a private home of `uid`.
std::string HomeProblem(const struct stat& st, uid_t uid) {
  if (S_ISLNK(st.st_mode)) return "a symbolic link";
  if (!S_ISDIR(st.st_mode)) return "not a folder";
  if (st.st_uid != uid) return "owned by uid " + std::to_string(st.st_uid) + ", not " + std::to_string(uid);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return "writable by group or others";
  return "";
}

}  // namespace

std::string PrivateHomePath(uid_t uid) { return std::string(kTmp) + "/allgo-home-" + std::to_string(uid); }

std::string SessionHome(const char* agent_home, std::string* refusal) {
  const std::string keep = agent_home ? agent_home : "";
  if (WritableFolder(agent_home)) return keep;
  const uid_t uid = geteuid();
  const std::string path = PrivateHomePath(uid);
  const std::string name = path.substr(path.rfind('/') + 1);
  auto refuse = [&](const std::string& why) {
    *refusal = "sessions keep HOME=" + (keep.empty() ? std::string("(unset)") : keep) + ", not " + path + ": " + why;
    return keep;
  };
  // Everything relative to one handle on the real /tmp: no path is resolved twice.
  UniqueFd tmp(open(kTmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!tmp || fstat(tmp.get(), &st) != 0) return refuse(ErrnoText("cannot open /tmp", errno));
  if (std::string problem = TmpProblem(st, uid); !problem.empty()) return refuse(problem);
  // mkdirat never follows a symlink in the last component: a planted one makes it EEXIST,
  // and the check below sees it as the link it is.
  if (mkdirat(tmp.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return refuse(ErrnoText("mkdir", errno));
  if (fstatat(tmp.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return refuse(ErrnoText("stat", errno));
  if (std::string problem = HomeProblem(st, uid); !problem.empty()) return refuse("it exists and is " + problem);
  return path;
}

}  // namespace allgo::bridge
