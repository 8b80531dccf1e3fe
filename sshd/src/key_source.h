// Where the monitor learns which keys may log in as a user: in-process through the common
// library (LookupAllowedKeys, the same decision as allgo-authkeys), or, when [sshd]
// authorized_keys_command is set, by running that helper the way OpenSSH runs an
// AuthorizedKeysCommand.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/directory.h"
#include "allgo/model.h"
#include "allgo/status.h"

namespace allgo::sshd {

struct AllowedEntry {
  std::string base64;   // canonical base64 of the key blob
  std::string account;  // allgo account (email) the key belongs to; empty with the command
  // authorized_keys options the command printed before this key (already checked with
  // ParseKeyOptions); they restrict further what [authkeys] key_options allows. Empty for
  // in-process keys: options pasted into the database are never honoured.
  std::string options;
};

class KeySource {
 public:
  virtual ~KeySource() = default;
  // The keys allowed for `webapp` (already found in the directory). NotFound when it has no
  // usable key; Unavailable when the database (or the helper) failed.
  virtual Status Allowed(const Webapp& webapp, std::vector<AllowedEntry>* out) = 0;
};

// The command runs as (run_uid, run_gid) — [sshd] lookup_user, as OpenSSH runs its helper as
// AuthorizedKeysCommandUser; the caller may already be that user — with argv split on spaces
// and %u / %U replaced by the user name / the webapp's uid, stdin /dev/null, a minimal environment, output capped at
// 1 MiB and a time limit. The in-process source reads the keys through `directory`, which
// must outlive it.
std::unique_ptr<KeySource> MakeKeySource(const Config& config, WebappDirectory* directory, uid_t run_uid,
                                         gid_t run_gid);

// Splits a command line on spaces and substitutes %u (the user name), %U (the webapp's uid,
// from its row: `allgo-authkeys %u %U` then checks the pair, as under OpenSSH) and %%
// (exposed for tests).
std::vector<std::string> ExpandCommand(const std::string& command, const std::string& user, uid_t uid);

}  // namespace allgo::sshd
