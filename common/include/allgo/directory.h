// WebappDirectory: the questions every component asks the allgo database, with the
// DESIGN.md rules applied in one place.
//
//  - a webapp whose docker_name is not a portable user name, or whose uid (id + uid_offset)
//    falls outside [min_uid, max_uid], does not exist: NotFound, never an error;
//  - names that could never be valid are rejected before any query is sent;
//  - a webapp whose name or uid another NSS source already answers (root, daemon, any local
//    account) does not exist either (identity.h): NotFound, with the reason;
//  - who may log in as a webapp: its owner while is_active, superusers only when
//    [authkeys] allow_superusers is true.
//
// It borrows a MysqlConnection so callers choose the connection policy (the NSS module keeps
// a small per-process pool; the command-line tools use one connection).
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "allgo/config.h"
#include "allgo/database.h"
#include "allgo/identity.h"
#include "allgo/model.h"
#include "allgo/status.h"

namespace allgo {

class WebappDirectory {
 public:
  // `caller` says how to ask the other NSS sources (identity.h): programs use the default,
  // the NSS module passes kInsideNssModule.
  WebappDirectory(const Config& config, MysqlConnection* connection,
                  OtherAccountSources::Caller caller = OtherAccountSources::Caller::kProgram);

  Status FindByName(std::string_view docker_name, Webapp* out);
  Status FindByUid(uid_t uid, Webapp* out);
  // Every valid webapp, ordered by id.
  Status List(std::vector<Webapp>* out);
  // The key rows of the accounts allowed to log in as `webapp` (policy applied).
  Status AllowedKeyRows(const Webapp& webapp, std::vector<KeyRow>* out);

  uid_t UidOf(const Webapp& webapp) const;

  // The default queries for the reference schema (conf/schema.sql).
  static const QueriesConfig& DefaultQueries();

 private:
  Status FetchWebapps(const std::string& sql, const std::vector<SqlParam>& params,
                      std::vector<Webapp>* out);
  bool ValidRow(const Webapp& webapp) const;
  // NotFound (with the reason) when another source owns the webapp's name or uid.
  Status CheckUnclaimed(const Webapp& webapp) const;

  const Config& config_;
  MysqlConnection* connection_;
  OtherAccountSources other_sources_;
};

}  // namespace allgo
