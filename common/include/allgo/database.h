// MySQL access through MariaDB Connector/C: one RAII connection, prepared statements only.
//
// A MysqlConnection is used by one thread at a time. It remembers the pid that opened it:
// in a forked child it is abandoned without sending anything on the parent's socket
// (see Close()), so a child never talks over its parent's connection.
//
// Statements are prepared once per connection and reused.
//
// Every network operation is bounded by mysql.connect_timeout (connect, read and write).
// A statement that fails because the server went away is retried once on a fresh connection,
// so a long-lived process recovers from a database restart by itself.
#pragma once

#include <mysql.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <variant>

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"

namespace allgo {

// A bound statement parameter; only what our queries need.
using SqlParam = std::variant<std::string, uint64_t>;
// One result row; NULL columns are std::nullopt.
using SqlRow = std::vector<std::optional<std::string>>;

class MysqlConnection {
 public:
  explicit MysqlConnection(MysqlConfig config);
  ~MysqlConnection();
  MysqlConnection(const MysqlConnection&) = delete;
  MysqlConnection& operator=(const MysqlConnection&) = delete;

  // Runs `sql` as a prepared statement with `params` bound to its '?' markers and collects
  // every row. `expected_columns` (if non-zero) is checked against the statement's result
  // shape, so a misconfigured [queries] override fails with a clear message.
  // Errors: Unavailable when the server cannot be reached (after one reconnect), Invalid when
  // the statement itself is rejected.
  Status Query(const std::string& sql, const std::vector<SqlParam>& params,
               unsigned expected_columns, std::vector<SqlRow>* rows);

  // Drops the connection (the next Query reconnects). In a forked child nothing is sent.
  void Close();

 private:
  Status Connect();
  Status QueryOnce(const std::string& sql, const std::vector<SqlParam>& params,
                   unsigned expected_columns, std::vector<SqlRow>* rows, bool* lost);

  MysqlConfig config_;
  // Abandons a connection whose socket the host program closed (and maybe reused) behind our
  // back: mysql_close() would close someone else's fd, so the handle is leaked instead.
  bool SocketStillOurs() const;

  MYSQL* mysql_ = nullptr;
  pid_t owner_pid_ = 0;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  // Statements prepared on this connection, by SQL text: a lookup costs one round trip
  // (execute + fetch) instead of three (prepare, execute, close).
  std::map<std::string, MYSQL_STMT*> prepared_;
};

}  // namespace allgo
