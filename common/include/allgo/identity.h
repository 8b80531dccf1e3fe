// The identity rule of DESIGN.md ("A webapp is only ever its own uid"), in one place.
//
// Anyone who can create a webapp chooses its docker_name, so a name or a uid that another
// NSS source already answers (`files`: root, daemon, every local account; `systemd`; LDAP...)
// must never become a webapp: not for NSS, not for key lookup, not for login. And the account
// a login runs as is built from the webapp row and [nss] alone — never taken from whatever
// getpwnam returns, which for `root` would be the real root.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "allgo/config.h"
#include "allgo/model.h"
#include "allgo/status.h"

namespace allgo {

// The one "is this a webapp uid" rule, used by every component that admits or refuses a uid
// (the monitor, allgo-shell, the gateway, the directory, the NSS module, the service-user
// check): never 0, inside [min_uid, max_uid], and at least uid_offset (so that it is the uid
// of some webapp id). A 64-bit argument so that `id + uid_offset` is checked before any
// truncation to uid_t.
bool IsWebappUid(const NssConfig& nss, uint64_t uid);
// "[min_uid, max_uid]", for messages that say which uids are webapps.
std::string WebappUidRange(const NssConfig& nss);

// The Unix account of a webapp: uid = id + uid_offset, gid, home and shell from [nss].
struct WebappAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};
WebappAccount AccountOf(const Config& config, const Webapp& webapp);

// The environment variable that makes libnss_allgo answer "not found" for everything, so
// that a glibc lookup shows only what the *other* sources know. Read by the module with
// secure_getenv: setuid programs ignore it (and it can only ever hide webapps).
inline constexpr char kNssBypassVariable[] = "ALLGO_NSS_BYPASS";

// The session environment variable in which allgo-sshd hands the webapp's name (from its
// row) to the login shell: allgo-shell's name when getpwuid cannot answer (NSS without the
// database password). Only ever used to name the sandbox: the agent and the gateway check
// the caller's uid themselves.
inline constexpr char kWebappNameVariable[] = "ALLGO_WEBAPP";

// Asks glibc whether an NSS source other than allgo knows a user name, a uid or a gid.
class OtherAccountSources {
 public:
  enum class Caller {
    // A program of ours (allgo-authkeys, allgo-sshd's lookup child, allgo-shell): the
    // lookups run with ALLGO_NSS_BYPASS set for their duration. setenv is not thread-safe:
    // such callers look users up from one thread only.
    kProgram,
    // The NSS module itself: the calling thread is inside the module, whose recursion guard
    // already makes the nested lookup skip allgo. The environment is never touched.
    kInsideNssModule,
  };
  explicit OtherAccountSources(Caller caller) : caller_(caller) {}

  // Ok when neither `name` nor `uid` belongs to another source; NotFound saying which
  // account owns them otherwise; Unavailable when a source failed to answer (fail closed).
  Status CheckUnclaimed(std::string_view name, uid_t uid) const;
  // Whether another source knows the group `gid` (false also when one failed to answer).
  bool HasGroup(gid_t gid) const;
  // The uid another source gives the user `name` (a system user such as [docker]
  // gateway_user, which a webapp of the same name must never stand in for): NotFound when
  // none knows it, Unavailable when a source failed to answer.
  Status UidOfName(std::string_view name, uid_t* uid) const;

 private:
  Caller caller_;
};

}  // namespace allgo
