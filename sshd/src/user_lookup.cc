#include "user_lookup.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "allgo/unique_fd.h"
#include "wire.h"

namespace allgo::sshd {
namespace {

constexpr size_t kMaxAnswer = 4 << 20;
constexpr uint32_t kMaxKeys = 10000;

std::string Encode(const Status& st, const UserLookup& u) {
  WireWriter w;
  w.PutU8(st.ok() ? 0 : 1);
  w.PutString(st.ok() ? "" : st.ToString());
  w.PutU8(u.exists ? 1 : 0);
  w.PutString(u.account.name);
  w.PutU32(u.account.uid);
  w.PutU32(u.account.gid);
  w.PutString(u.account.home);
  w.PutString(u.account.shell);
  w.PutU32(static_cast<uint32_t>(u.keys.size()));
  for (const auto& k : u.keys) {
    w.PutString(k.base64);
    w.PutString(k.account);
  }
  return w.data();
}

Status Decode(const std::string& data, UserLookup* u) {
  WireReader r(data);
  uint8_t failed = 0, exists = 0;
  std::string error;
  uint32_t count = 0;
  if (r.GetU8(&failed) && r.GetString(&error, 4096) && r.GetU8(&exists) && r.GetString(&u->account.name, 256) &&
      r.GetU32(&u->account.uid) && r.GetU32(&u->account.gid) && r.GetString(&u->account.home, 4096) &&
      r.GetString(&u->account.shell, 4096) && r.GetU32(&count) && count <= kMaxKeys) {
    for (uint32_t i = 0; i < count; ++i) {
      AllowedEntry e;
      if (!r.GetString(&e.base64, 16384) || !r.GetString(&e.account, 512)) break;
      u->keys.push_back(std::move(e));
    }
  }
  if (!r.Finish()) return Status::Invalid("malformed answer from the lookup process");
  if (failed) return Status::Unavailable(error);
  u->exists = exists == 1;
  return Status::Ok();
}

// In the child: the actual lookup.
Status Lookup(const Config& config, uid_t helper_uid, gid_t helper_gid, const std::string& user, UserLookup* u) {
  errno = 0;
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    if (errno != 0 && errno != ENOENT && errno != ESRCH) {
      return Status::FromErrno("getpwnam(" + user + ")", errno);
    }
    return Status::Ok();  // no such user
  }
  u->account.name = pw->pw_name;
  u->account.uid = pw->pw_uid;
  u->account.gid = pw->pw_gid;
  u->account.home = (pw->pw_dir && pw->pw_dir[0]) ? pw->pw_dir : "/";
  u->account.shell = (pw->pw_shell && pw->pw_shell[0]) ? pw->pw_shell : "/bin/sh";
  Status st = MakeKeySource(config, helper_uid, helper_gid)->Allowed(user, &u->keys);
  if (st.IsNotFound()) return Status::Ok();  // not a webapp, or nobody may log in
  if (!st.ok()) return st;
  u->exists = true;
  return Status::Ok();
}

long long NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

}  // namespace

Status LookupUserInChild(const Config& config, uid_t helper_uid, gid_t helper_gid, const std::string& user,
                         UserLookup* out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  UniqueFd read_end(p[0]), write_end(p[1]);
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork", errno);
  if (pid == 0) {
    read_end.reset();
    // The monitor blocks SIGCHLD for its signalfd; the key helper's child needs it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    UserLookup u;
    Status st = Lookup(config, helper_uid, helper_gid, user, &u);
    std::string answer = Encode(st, u);
    size_t off = 0;
    while (off < answer.size()) {
      ssize_t n = write(write_end.get(), answer.data() + off, answer.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(1);
      off += static_cast<size_t>(n);
    }
    _exit(0);
  }
  write_end.reset();
  // Every database operation is bounded by connect_timeout (and retried once); the helper
  // command by its own limit. This is the backstop.
  long long deadline = NowMs() + 1000LL * (4 * config.mysql.connect_timeout + 35);
  std::string data;
  char buf[16384];
  bool timed_out = false;
  while (true) {
    long long left = deadline - NowMs();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{read_end.get(), POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t n = read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxAnswer) break;
  }
  if (timed_out || data.size() > kMaxAnswer) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Status::Unavailable("user lookup timed out");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status::Unavailable("user lookup process failed");
  return Decode(data, out);
}

}  // namespace allgo::sshd
