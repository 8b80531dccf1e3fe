#include "allgo/database.h"

#include <errmsg.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <mysqld_error.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>

namespace allgo {
namespace {

std::once_flag library_once;

// Errors after which the connection is gone and a fresh one may succeed.
bool IsConnectionLost(unsigned err) {
  switch (err) {
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_COMMANDS_OUT_OF_SYNC:
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_QUERY_INTERRUPTED:
      return true;
    default:
      return false;
  }
}

// While connecting, fds 0-2 are kept occupied so the socket never lands on a standard
// stream of a host program that closed them (the NSS module lives in arbitrary processes).
class StdioPlaceholders {
 public:
  StdioPlaceholders() {
    for (int fd = 0; fd <= 2; ++fd) {
      if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
        int p = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (p == fd) {
          placeholders_[fd] = true;
        } else if (p >= 0) {
          close(p);
        }
      }
    }
  }
  ~StdioPlaceholders() {
    for (int fd = 0; fd <= 2; ++fd) {
      if (placeholders_[fd]) close(fd);
    }
  }

 private:
  bool placeholders_[3] = {false, false, false};
};

struct StmtCloser {
  void operator()(MYSQL_STMT* s) const { mysql_stmt_close(s); }
};
struct ResCloser {
  void operator()(MYSQL_RES* r) const { mysql_free_result(r); }
};

}  // namespace

MysqlConnection::MysqlConnection(MysqlConfig config) : config_(std::move(config)) {
  std::call_once(library_once, [] { mysql_library_init(0, nullptr, nullptr); });
}

MysqlConnection::~MysqlConnection() { Close(); }

bool MysqlConnection::SocketStillOurs() const {
  struct stat st;
  int fd = static_cast<int>(mysql_get_socket(mysql_));
  return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_;
}

void MysqlConnection::Close() {
  if (!mysql_) return;
  if (!SocketStillOurs()) {
    prepared_.clear();
    mysql_ = nullptr;  // leaked on purpose, see SocketStillOurs()
    return;
  }
  if (getpid() != owner_pid_) {
    // Inherited across fork: the socket is shared with the parent. mysql_close() would send
    // COM_QUIT and end the parent's session, so the socket is first pointed at /dev/null.
    int fd = static_cast<int>(mysql_get_socket(mysql_));
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0 && devnull >= 0) dup3(devnull, fd, O_CLOEXEC);
    if (devnull >= 0) close(devnull);
  }
  for (auto& [sql, stmt] : prepared_) mysql_stmt_close(stmt);
  prepared_.clear();
  mysql_close(mysql_);
  mysql_ = nullptr;
}

Status MysqlConnection::Connect() {
  Close();
  MYSQL* m = mysql_init(nullptr);
  if (!m) return Status::Unavailable("MySQL: out of memory");
  unsigned timeout = config_.connect_timeout;
  my_bool no = 0;
  unsigned int local_infile = 0;
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
  mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
  mysql_options(m, MYSQL_OPT_RECONNECT, &no);
  mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &local_infile);
  mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  bool use_socket = config_.host.empty();
  if (use_socket) {
    unsigned protocol = MYSQL_PROTOCOL_SOCKET;
    mysql_options(m, MYSQL_OPT_PROTOCOL, &protocol);
  }
  if (!config_.ssl_ca.empty()) {
    // TLS required: ENFORCE makes Connector/C fail rather than fall back to clear text when
    // the server offers no TLS. The files were checked by LoadConfig (config.cc).
    my_bool enforce = 1;
    my_bool verify = config_.ssl_verify_server_cert ? 1 : 0;
    mysql_options(m, MYSQL_OPT_SSL_CA, config_.ssl_ca.c_str());
    if (!config_.ssl_cert.empty()) {
      mysql_options(m, MYSQL_OPT_SSL_CERT, config_.ssl_cert.c_str());
      mysql_options(m, MYSQL_OPT_SSL_KEY, config_.ssl_key.c_str());
    }
    mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &enforce);
    mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
  }
  const char* where = use_socket ? config_.socket.c_str() : config_.host.c_str();
  MYSQL* ok;
  {
    StdioPlaceholders keep_stdio_busy;
    // An explicit user: with none, the client library would look up the current user,
    // which from inside the NSS module would recurse into ourselves.
    ok = mysql_real_connect(m, use_socket ? "localhost" : config_.host.c_str(),
                            config_.user.c_str(), config_.password.c_str(),
                            config_.database.c_str(), use_socket ? 0 : config_.port,
                            use_socket ? config_.socket.c_str() : nullptr, 0);
  }
  if (!ok) {
    std::string msg = std::string("cannot connect to MySQL at ") + where + " as '" + config_.user +
                      "': " + mysql_error(m);
    if (mysql_errno(m) == CR_SSL_CONNECTION_ERROR) {
      msg += " (TLS: check [mysql] ssl_ca, ssl_cert, ssl_key, and that the server's certificate is "
             "signed by ssl_ca and names host " + config_.host + ")";
    }
    mysql_close(m);
    return Status::Unavailable(msg);
  }
  int fd = static_cast<int>(mysql_get_socket(m));
  if (fd >= 0) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    mysql_close(m);
    return Status::Unavailable(std::string("MySQL connection to ") + where + " has no socket");
  }
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  mysql_ = m;
  owner_pid_ = getpid();
  return Status::Ok();
}

Status MysqlConnection::Query(const std::string& sql, const std::vector<SqlParam>& params,
                              unsigned expected_columns, std::vector<SqlRow>* rows) {
  if (mysql_ && (getpid() != owner_pid_ || !SocketStillOurs())) Close();
  bool reused = mysql_ != nullptr;
  if (!mysql_) {
    auto start = std::chrono::steady_clock::now();
    Status s = Connect();
    // A connection refused or reset at once (a busy server dropping a handshake) gets one
    // more try; a slow failure does not, so a dead server never costs more than the timeout.
    if (!s.ok() && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200)) {
      struct timespec pause = {0, 20 * 1000 * 1000};
      nanosleep(&pause, nullptr);
      s = Connect();
    }
    if (!s.ok()) return s;
  }
  bool lost = false;
  Status s = QueryOnce(sql, params, expected_columns, rows, &lost);
  if (lost) {
    Close();
    // Only a connection that had been working gets a second chance (the server restarted
    // since); a fresh one failing means the server is down, and retrying would double the
    // time a caller waits.
    if (!reused) return s;
    s = Connect();
    if (!s.ok()) return s;
    s = QueryOnce(sql, params, expected_columns, rows, &lost);
    if (lost) Close();
  }
  return s;
}

Status MysqlConnection::QueryOnce(const std::string& sql, const std::vector<SqlParam>& params,
                                  unsigned expected_columns, std::vector<SqlRow>* rows,
                                  bool* lost) {
  rows->clear();
  *lost = false;
  std::unique_ptr<MYSQL_STMT, StmtCloser> stmt;
  bool cached = false;
  if (auto it = prepared_.find(sql); it != prepared_.end()) {
    stmt.reset(it->second);
    prepared_.erase(it);  // back in the cache only if this run succeeds
    cached = true;
  } else {
    stmt.reset(mysql_stmt_init(mysql_));
  }
  if (!stmt) {
    *lost = true;
    return Status::Unavailable(std::string("MySQL: ") + mysql_error(mysql_));
  }
  auto fail = [&](const char* stage) {
    unsigned err = mysql_stmt_errno(stmt.get());
    std::string msg = std::string("MySQL ") + stage + " failed: " + mysql_stmt_error(stmt.get());
    if (IsConnectionLost(err)) {
      *lost = true;
      return Status::Unavailable(msg);
    }
    return Status::Invalid(msg + " (query: " + sql + ")");
  };
  if (!cached && mysql_stmt_prepare(stmt.get(), sql.data(), sql.size()) != 0) return fail("prepare");
  if (mysql_stmt_param_count(stmt.get()) != params.size()) {
    return Status::Invalid("query expects " + std::to_string(mysql_stmt_param_count(stmt.get())) +
                           " parameters, got " + std::to_string(params.size()) + ": " + sql);
  }
  std::vector<MYSQL_BIND> binds(params.size());
  std::vector<unsigned long> lengths(params.size());
  std::vector<unsigned long long> numbers(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    MYSQL_BIND& b = binds[i];
    b = MYSQL_BIND{};
    if (const auto* text = std::get_if<std::string>(&params[i])) {
      lengths[i] = text->size();
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = const_cast<char*>(text->data());
      b.buffer_length = text->size();
      b.length = &lengths[i];
    } else {
      numbers[i] = std::get<uint64_t>(params[i]);
      b.buffer_type = MYSQL_TYPE_LONGLONG;
      b.buffer = &numbers[i];
      b.is_unsigned = 1;
    }
  }
  if (!binds.empty() && mysql_stmt_bind_param(stmt.get(), binds.data()) != 0) {
    return fail("bind");
  }
  std::unique_ptr<MYSQL_RES, ResCloser> meta(mysql_stmt_result_metadata(stmt.get()));
  unsigned columns = meta ? mysql_num_fields(meta.get()) : 0;
  if (expected_columns != 0 && columns != expected_columns) {
    return Status::Invalid("query returns " + std::to_string(columns) + " columns, expected " +
                           std::to_string(expected_columns) + ": " + sql);
  }
  if (mysql_stmt_execute(stmt.get()) != 0) return fail("execute");
  if (columns == 0) {
    prepared_[sql] = stmt.release();
    return Status::Ok();
  }
  if (mysql_stmt_store_result(stmt.get()) != 0) return fail("fetch");

  // Every column is fetched as text; a value longer than its buffer is fetched again whole.
  constexpr unsigned long kInitial = 256;
  std::vector<std::vector<char>> buffers(columns, std::vector<char>(kInitial));
  std::vector<unsigned long> out_len(columns);
  std::vector<my_bool> is_null(columns);
  std::vector<MYSQL_BIND> result(columns);
  for (unsigned i = 0; i < columns; ++i) {
    result[i] = MYSQL_BIND{};
    result[i].buffer_type = MYSQL_TYPE_STRING;
    result[i].buffer = buffers[i].data();
    result[i].buffer_length = kInitial;
    result[i].length = &out_len[i];
    result[i].is_null = &is_null[i];
  }
  if (mysql_stmt_bind_result(stmt.get(), result.data()) != 0) return fail("bind result");
  for (;;) {
    int rc = mysql_stmt_fetch(stmt.get());
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1) return fail("fetch");
    SqlRow row(columns);
    for (unsigned i = 0; i < columns; ++i) {
      if (is_null[i]) continue;
      if (out_len[i] <= kInitial) {
        row[i] = std::string(buffers[i].data(), out_len[i]);
        continue;
      }
      std::string whole(out_len[i], '\0');
      MYSQL_BIND again{};
      again.buffer_type = MYSQL_TYPE_STRING;
      again.buffer = whole.data();
      again.buffer_length = out_len[i];
      unsigned long got = 0;
      again.length = &got;
      if (mysql_stmt_fetch_column(stmt.get(), &again, i, 0) != 0) return fail("fetch column");
      row[i] = std::move(whole);
    }
    rows->push_back(std::move(row));
  }
  mysql_stmt_free_result(stmt.get());
  prepared_[sql] = stmt.release();
  return Status::Ok();
}

}  // namespace allgo
