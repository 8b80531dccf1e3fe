#include "allgo/identity.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>

#include <cerrno>
#include <optional>
#include <vector>

namespace allgo {
namespace {

constexpr size_t kMaxBuffer = size_t{1} << 20;

// ALLGO_NSS_BYPASS=1 for the lifetime of the object, the previous value restored after.
class ScopedBypass {
 public:
  explicit ScopedBypass(bool active) : active_(active) {
    if (!active_) return;
    if (const char* old = getenv(kNssBypassVariable)) previous_ = old;
    setenv(kNssBypassVariable, "1", 1);
  }
  ~ScopedBypass() {
    if (!active_) return;
    if (previous_) {
      setenv(kNssBypassVariable, previous_->c_str(), 1);
    } else {
      unsetenv(kNssBypassVariable);
    }
  }
  ScopedBypass(const ScopedBypass&) = delete;
  ScopedBypass& operator=(const ScopedBypass&) = delete;

 private:
  bool active_;
  std::optional<std::string> previous_;
};

// The values getpw*_r/getgr*_r return for "no such entry" (getpwnam_r(3)): a source that
// simply does not know the entry. Anything else means some source could not answer.
bool MeansNotFound(int err) { return err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM; }

// Runs a reentrant lookup `call(buffer, size, &found)` with a growing buffer.
// Returns 1 found, 0 not found, -1 a source failed (errno-style code in *error).
template <typename Call>
int Lookup(Call&& call, int* error) {
  std::vector<char> buffer(1024);
  while (true) {
    bool found = false;
    const int err = call(buffer.data(), buffer.size(), &found);
    if (err == ERANGE && buffer.size() < kMaxBuffer) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (found) return 1;
    if (MeansNotFound(err)) return 0;
    *error = err;
    return -1;
  }
}

}  // namespace

bool IsWebappUid(const NssConfig& nss, uint64_t uid) {
  return uid != 0 && uid >= nss.min_uid && uid <= nss.max_uid && uid >= nss.uid_offset;
}

std::string WebappUidRange(const NssConfig& nss) {
  return "[" + std::to_string(nss.min_uid) + ", " + std::to_string(nss.max_uid) + "]";
}

WebappAccount AccountOf(const Config& config, const Webapp& webapp) {
  WebappAccount account;
  account.name = webapp.docker_name;
  account.uid = static_cast<uid_t>(uint64_t{webapp.id} + config.nss.uid_offset);
  account.gid = config.nss.gid;
  account.home = config.nss.home;
  account.shell = config.nss.shell;  // LoadConfig fills in the installed allgo-shell
  return account;
}

Status OtherAccountSources::CheckUnclaimed(std::string_view name, uid_t uid) const {
  const ScopedBypass bypass(caller_ == Caller::kProgram);
  const std::string name_string(name);
  uid_t owner_uid = 0;
  int error = 0;
  const int by_name = Lookup(
      [&](char* buf, size_t size, bool* found) {
        struct passwd entry {};
        struct passwd* result = nullptr;
        errno = 0;
        const int err = getpwnam_r(name_string.c_str(), &entry, buf, size, &result);
        if (result != nullptr) owner_uid = entry.pw_uid;
        *found = result != nullptr;
        return err;
      },
      &error);
  if (by_name == 1) {
    return Status::NotFound("the name '" + name_string + "' belongs to another account (uid " +
                            std::to_string(owner_uid) + ")");
  }
  std::string owner_name;
  const int by_uid = by_name < 0 ? -1 : Lookup(
      [&](char* buf, size_t size, bool* found) {
        struct passwd entry {};
        struct passwd* result = nullptr;
        errno = 0;
        const int err = getpwuid_r(uid, &entry, buf, size, &result);
        if (result != nullptr) owner_name = entry.pw_name ? entry.pw_name : "";
        *found = result != nullptr;
        return err;
      },
      &error);
  if (by_uid == 1) {
    return Status::NotFound("its uid " + std::to_string(uid) + " belongs to another account ('" +
                            owner_name + "')");
  }
  if (by_uid < 0) {
    return Status::Unavailable("cannot tell whether another account source owns '" + name_string +
                               "' or uid " + std::to_string(uid) + " (error " +
                               std::to_string(error) + ")");
  }
  return Status::Ok();
}

Status OtherAccountSources::UidOfName(std::string_view name, uid_t* uid) const {
  const ScopedBypass bypass(caller_ == Caller::kProgram);
  const std::string name_string(name);
  int error = 0;
  const int found = Lookup(
      [&](char* buf, size_t size, bool* hit) {
        struct passwd entry {};
        struct passwd* result = nullptr;
        errno = 0;
        const int err = getpwnam_r(name_string.c_str(), &entry, buf, size, &result);
        if (result != nullptr) *uid = entry.pw_uid;
        *hit = result != nullptr;
        return err;
      },
      &error);
  if (found == 1) return Status::Ok();
  if (found == 0) return Status::NotFound("no user '" + name_string + "' (outside the allgo webapps)");
  return Status::Unavailable("cannot look up the user '" + name_string + "' (error " + std::to_string(error) + ")");
}

bool OtherAccountSources::HasGroup(gid_t gid) const {
  const ScopedBypass bypass(caller_ == Caller::kProgram);
  int error = 0;
  return Lookup(
             [&](char* buf, size_t size, bool* found) {
               struct group entry {};
               struct group* result = nullptr;
               const int err = getgrgid_r(gid, &entry, buf, size, &result);
               *found = result != nullptr;
               return err;
             },
             &error) == 1;
}

}  // namespace allgo
