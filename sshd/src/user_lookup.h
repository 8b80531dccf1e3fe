// Who is this user and which keys may log in as them — answered in a short-lived child of
// the monitor. The monitor itself then never loads the NSS module nor opens a database
// connection: it stays a small copy-on-write image of the listener for the whole connection
// (memory per session), and the database client code runs in a throwaway process.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"
#include "key_source.h"
#include "spawn.h"

namespace allgo::sshd {

struct UserLookup {
  bool exists = false;  // a webapp that is only its own uid (identity.h), with usable keys
  std::string reason;   // why not, when !exists (for the log)
  Account account;      // built from the webapp row; allgo_account left empty: it depends
                        // on the matching key
  std::vector<AllowedEntry> keys;
};

// In a child that first drops to lookup_uid/lookup_gid ([sshd] lookup_user, checked, with
// PR_SET_NO_NEW_PRIVS): the webapp row (WebappDirectory::FindByName, which applies the
// identity rule: a name or uid another NSS source owns is no webapp), the account built from
// that row alone (never from getpwnam), then the allowed keys (MakeKeySource). Unavailable
// when the lookup failed (database down, helper failed, child timed out, the drop failed) —
// not the same as "no such user". `user` must already be a valid user name.
Status LookupUserInChild(const Config& config, uid_t lookup_uid, gid_t lookup_gid, const std::string& user,
                         UserLookup* out);

}  // namespace allgo::sshd
