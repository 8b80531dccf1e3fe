// WebappDirectory::DefaultQueries in an object of its own: config.cc needs these defaults, and
// pulling directory.cc for them would link the database client into every program that only
// reads the config (allgo-shell, whose idle sessions must not carry libmariadb: see
// allgo-shell/CMakeLists.txt).
#include "allgo/directory.h"

namespace allgo {

const QueriesConfig& WebappDirectory::DefaultQueries() {
  static const QueriesConfig defaults = [] {
    QueriesConfig q;
    const std::string columns = "SELECT id, docker_name, name, user_id, sandbox_state FROM webapps";
    q.webapp_by_name = columns + " WHERE docker_name = ?";
    q.webapp_by_id = columns + " WHERE id = ?";
    q.webapp_list = columns + " ORDER BY id";
    q.webapp_keys =
        "SELECT u.id, u.email, u.is_active, u.is_superuser, u.id = w.user_id, k.public_key "
        "FROM webapps w JOIN users u ON (u.id = w.user_id OR u.is_superuser = 1) "
        "JOIN ssh_keys k ON k.user_id = u.id WHERE w.id = ? ORDER BY u.id = w.user_id DESC, k.id";
    return q;
  }();
  return defaults;
}

}  // namespace allgo
