// The database questions of the gateway: which webapp a uid is, and (optionally, [queries]
// sandbox_location) where its sandbox runs.
//
// One MysqlConnection behind a mutex: MysqlConnection is not thread-safe, a lookup is one
// round trip of a prepared statement (well under a millisecond), and every network step is
// bounded by [mysql] connect_timeout, so the queue behind the mutex stays short even while
// the database is down. The identity rule (a uid or name another account source owns is no
// webapp) is applied by WebappDirectory.
#pragma once

#include <sys/types.h>

#include <mutex>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/database.h"
#include "allgo/directory.h"
#include "allgo/model.h"
#include "allgo/status.h"

namespace allgo::gateway {

class WebappLookup {
 public:
  explicit WebappLookup(const Config& config);

  // NotFound when the uid is no webapp; Unavailable when the database does not answer.
  Status FindByUid(uid_t uid, Webapp* out);
  // Every webapp FindByUid would answer ([queries] webapp_list, the same validity and
  // identity rules: a row another account source owns is left out), ordered by id.
  Status List(std::vector<Webapp>* out);
  // With [queries] sandbox_location: Ok and the node and container the database knows;
  // NotFound when it has no row (or the query is not configured).
  Status SandboxLocation(const Webapp& webapp, std::string* node, std::string* container);

 private:
  const Config& config_;
  std::mutex mu_;
  MysqlConnection connection_;  // guarded by mu_
  WebappDirectory directory_;   // guarded by mu_
};

// The container of a webapp: [docker] container with {docker_name} and {id} replaced.
std::string ContainerNameOf(const std::string& container_template, const Webapp& webapp);

}  // namespace allgo::gateway
