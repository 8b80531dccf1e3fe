#include "allgo/bridge/bridge_folder.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "allgo/bridge/io.h"

namespace allgo::bridge {
namespace {

std::string Octal(mode_t mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// The type, then the owner, then the permission bits that must be clear.
std::string Expect(const struct stat& st, mode_t type, const char* kind, uid_t uid_a, uid_t uid_b,
                   mode_t forbidden_bits, const char* forbidden_text, const std::string& what) {
  if ((st.st_mode & S_IFMT) != type) {
    return what + " is " + FileKind(st.st_mode) + ", not " + kind + "; refusing it";
  }
  if (st.st_uid != uid_a && st.st_uid != uid_b) {
    std::string owners = uid_a == uid_b ? "uid " + std::to_string(uid_a)
                                        : "uid " + std::to_string(uid_a) + " or " + std::to_string(uid_b);
    return what + " belongs to uid " + std::to_string(st.st_uid) + ", not to " + owners + "; refusing it";
  }
  if ((st.st_mode & forbidden_bits) != 0) {
    return what + " has mode " + Octal(st.st_mode) + ": it must not be " + forbidden_text + "; refusing it";
  }
  return "";
}

}  // namespace

const char* FileKind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return "a directory";
    case S_IFREG: return "a regular file";
    case S_IFLNK: return "a symlink";
    case S_IFIFO: return "a fifo";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
  }
  return "of an unknown type";
}

std::string BridgeFolderProblem(const struct stat& st, uid_t webapp_uid, const std::string& what) {
  return Expect(st, S_IFDIR, "a directory", 0, webapp_uid, S_IWGRP | S_IWOTH,
                "writable by group or others (make it 0755 or stricter)", what);
}

std::string AgentSocketProblem(const struct stat& st, uid_t webapp_uid, const std::string& what) {
  return Expect(st, S_IFSOCK, "a socket", 0, webapp_uid, 0, "", what);
}

std::string SessionFolderProblem(const struct stat& st, uid_t client_uid, const std::string& what) {
  return Expect(st, S_IFDIR, "a directory", client_uid, client_uid, 07777 & ~kSessionFolderMode,
                "open to group or others", what);
}

std::string SessionPipeProblem(const struct stat& st, uid_t client_uid, const std::string& what) {
  return Expect(st, S_IFIFO, "a fifo", client_uid, client_uid, 07777 & ~kSessionPipeMode,
                "open to group or others", what);
}

std::string ToolboxProgramProblem(const struct stat& st, const std::string& what) {
  std::string problem = Expect(st, S_IFREG, "a regular file", 0, 0, S_IWGRP | S_IWOTH, "writable by group or others", what);
  if (problem.empty() && (st.st_mode & S_IXUSR) == 0) {
    problem = what + " has mode " + Octal(st.st_mode) + ": it is not executable; refusing it";
  }
  return problem;
}

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

UniqueFd OpenChecked(int dir, const std::string& name, int flags,
                     const std::function<std::string(const struct stat&)>& check, std::string* problem) {
  UniqueFd handle(openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat checked;
  if (!handle || fstat(handle.get(), &checked) != 0) {
    *problem = ErrnoText("cannot look at " + name, errno);
    return UniqueFd();
  }
  if (std::string why = check(checked); !why.empty()) {
    *problem = why;
    return UniqueFd();
  }
  const int open_flags = (flags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_NOCTTY | O_CLOEXEC;
  UniqueFd fd(open(ProcFdPath(handle.get()).c_str(), open_flags));
  if (!fd && errno == ENOENT && access("/proc/self/fd", F_OK) != 0) {
    fd.reset(openat(dir, name.c_str(), open_flags | O_NOFOLLOW));
    struct stat now;
    if (fd && (fstat(fd.get(), &now) != 0 || now.st_dev != checked.st_dev || now.st_ino != checked.st_ino)) {
      *problem = name + " was replaced while it was being opened; refusing it";
      return UniqueFd();
    }
  }
  if (!fd) {
    int err = errno;  // kept for callers that tell ENXIO (a fifo without its other end) apart
    *problem = ErrnoText("cannot open " + name, err);
    errno = err;
  }
  return fd;
}

}  // namespace allgo::bridge
