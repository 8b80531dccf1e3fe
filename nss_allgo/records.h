// The records the module hands to glibc, as plain C++ values.
//
// The module builds these from the database (passwd) or the config (group), keeps them in its
// cache and enumeration snapshots, and only at the very end packs them into the caller's
// buffer (pack.h). Keeping them separate from `struct passwd` means nothing in the module ever
// points into memory it does not own.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace allgo::nss {

struct PasswdRecord {
  std::string name;
  std::string passwd;  // "*": webapps have no password (and no shadow entry)
  uid_t uid = 0;
  gid_t gid = 0;
  std::string gecos;
  std::string dir;
  std::string shell;
};

struct GroupRecord {
  std::string name;
  std::string passwd;  // "*"
  gid_t gid = 0;
  std::vector<std::string> members;
};

}  // namespace allgo::nss
