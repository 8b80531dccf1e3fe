#include "user_lookup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "allgo/database.h"
#include "allgo/directory.h"
#include "allgo/identity.h"
#include "allgo/unique_fd.h"
#include "child_process.h"
#include "privsep.h"
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
  w.PutString(u.reason);
  w.PutString(u.account.name);
  w.PutU32(u.account.uid);
  w.PutU32(u.account.gid);
  w.PutString(u.account.home);
  w.PutString(u.account.shell);
  w.PutU32(static_cast<uint32_t>(u.keys.size()));
  for (const auto& k : u.keys) {
    w.PutString(k.base64);
    w.PutString(k.account);
    w.PutString(k.options);
  }
  return w.data();
}

Status Decode(const std::string& data, UserLookup* u) {
  WireReader r(data);
  uint8_t failed = 0, exists = 0;
  std::string error;
  uint32_t count = 0;
  if (r.GetU8(&failed) && r.GetString(&error, 4096) && r.GetU8(&exists) && r.GetString(&u->reason, 1024) &&
      r.GetString(&u->account.name, 256) &&
      r.GetU32(&u->account.uid) && r.GetU32(&u->account.gid) && r.GetString(&u->account.home, 4096) &&
      r.GetString(&u->account.shell, 4096) && r.GetU32(&count) && count <= kMaxKeys) {
    for (uint32_t i = 0; i < count; ++i) {
      AllowedEntry e;
      if (!r.GetString(&e.base64, 16384) || !r.GetString(&e.account, 512) || !r.GetString(&e.options, 16384)) break;
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
  MysqlConnection connection(config.mysql);
  WebappDirectory directory(config, &connection);
  Webapp webapp;
  Status st = directory.FindByName(user, &webapp);
  if (st.IsNotFound()) {  // not a webapp, or one whose name or uid another source owns
    u->reason = st.message();
    return Status::Ok();
  }
  if (!st.ok()) return st;
  st = MakeKeySource(config, &directory, helper_uid, helper_gid)->Allowed(webapp, &u->keys);
  if (st.IsNotFound()) {
    u->reason = "no usable key";
    return Status::Ok();
  }
  if (!st.ok()) return st;
  static_cast<WebappAccount&>(u->account) = AccountOf(config, webapp);
  if (u->account.home.empty()) u->account.home = "/";
  u->exists = true;
  return Status::Ok();
}

}  // namespace

Status LookupUserInChild(const Config& config, uid_t lookup_uid, gid_t lookup_gid, const std::string& user,
                         UserLookup* out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  UniqueFd read_end(p[0]), write_end(p[1]);
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork", errno);
  if (pid == 0) {
    read_end.reset();
    ResetSignalsInChild();  // the key helper's own child needs SIGCHLD
    // Nothing of the monitor (its socket to the network child) is left to this process,
    // which runs the NSS module and the database client.
    int keep = write_end.get();
    if (keep > 3) close_range(3, static_cast<unsigned>(keep - 1), 0);
    close_range(static_cast<unsigned>(keep + 1), ~0U, 0);
    // Everything below parses what the database (or NSS, or the helper) returns: never as
    // root. The config, password included, is already in memory, so a password_file only
    // root may read still works; the helper runs as this same user.
    UserLookup u;
    Status st = DropPrivileges(lookup_uid, lookup_gid, {lookup_gid});
    if (st.ok()) st = SetNoNewPrivs();
    if (!st.ok()) st = Status::Unavailable("cannot drop to [sshd] lookup_user: " + st.ToString());
    if (st.ok()) st = Lookup(config, lookup_uid, lookup_gid, user, &u);
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
  std::string data;
  int status = 0;
  Status st = CollectChildOutput(pid, read_end.get(), kMaxAnswer, 1000LL * (4 * config.mysql.connect_timeout + 35),
                                 "user lookup", &data, &status);
  if (!st.ok()) return st;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status::Unavailable("user lookup process failed");
  return Decode(data, out);
}

}  // namespace allgo::sshd
