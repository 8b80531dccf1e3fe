// MysqlConnection against a real MariaDB server (tests/support).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <set>

#include "allgo/config.h"
#include "allgo/database.h"
#include "test_support.h"

namespace allgo {
namespace {

using test::TestDatabase;

Config TestConfig(const std::string& extra = "") {
  Config c;
  Status s = ParseConfig(TestDatabase::Get().ConfigText(extra), "test", &c);
  EXPECT_TRUE(s.ok()) << s.message();
  return c;
}

std::string ConnectionId(MysqlConnection& conn) {
  std::vector<SqlRow> rows;
  Status s = conn.Query("SELECT CONNECTION_ID()", {}, 1, &rows);
  EXPECT_TRUE(s.ok()) << s.message();
  return rows.empty() ? "" : rows[0][0].value_or("");
}

class Database : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDatabase::Get().Start();
    TestDatabase::Get().Clear();
  }
};

TEST_F(Database, ParametersAreBoundNeverInterpolated) {
  auto& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("a@example.org");
  db.AddWebapp("plain", owner);
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  const std::string sql = "SELECT docker_name FROM webapps WHERE docker_name = ?";
  ASSERT_TRUE(conn.Query(sql, {std::string("x' OR '1'='1")}, 1, &rows).ok());
  EXPECT_TRUE(rows.empty());
  ASSERT_TRUE(conn.Query(sql, {std::string("plain")}, 1, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "plain");
}

TEST_F(Database, LongTextAndNullColumnsComeBackWhole) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  ASSERT_TRUE(conn.Query("SELECT REPEAT('k', 5000), NULL, ?", {uint64_t{42}}, 3, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], std::string(5000, 'k'));
  EXPECT_FALSE(rows[0][1].has_value());
  EXPECT_EQ(rows[0][2], "42");
}

TEST_F(Database, WrongShapeOfAnOverriddenQueryIsReported) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  Status s = conn.Query("SELECT id FROM webapps", {}, 5, &rows);
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_EQ(s.message(), "query returns 1 columns, expected 5: SELECT id FROM webapps");
  s = conn.Query("SELECT nosuchcolumn FROM webapps", {}, 1, &rows);
  EXPECT_TRUE(s.IsInvalid());
  EXPECT_NE(s.message().find("nosuchcolumn"), std::string::npos) << s.message();
}

TEST_F(Database, ReadOnlyAccountCannotWrite) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  Status s = conn.Query("DELETE FROM webapps", {}, 0, &rows);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("command denied"), std::string::npos) << s.message();
}

TEST_F(Database, StoppedServerIsUnavailableQuicklyAndRecoveredWithoutRestart) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  ASSERT_FALSE(ConnectionId(conn).empty());
  TestDatabase::Get().Stop();
  auto start = std::chrono::steady_clock::now();
  std::vector<SqlRow> rows;
  Status s = conn.Query("SELECT 1", {}, 1, &rows);
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(s.IsUnavailable()) << s.message();
  EXPECT_NE(s.message().find("cannot connect to MySQL at " + TestDatabase::Get().socket()),
            std::string::npos) << s.message();
  EXPECT_LT(elapsed, std::chrono::seconds(c.mysql.connect_timeout));
  TestDatabase::Get().Start();
  s = conn.Query("SELECT 1", {}, 1, &rows);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_F(Database, ServerRestartBehindAnOpenConnectionIsTransparent) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::string before = ConnectionId(conn);
  TestDatabase::Get().Stop();
  TestDatabase::Get().Start();
  // The first statement on the dead connection fails as "server gone"; the retry on a fresh
  // connection answers, so the caller sees no error at all.
  std::string after = ConnectionId(conn);
  EXPECT_FALSE(before.empty());
  EXPECT_FALSE(after.empty());
  EXPECT_NE(before, after);
}

TEST_F(Database, HangingServerIsUnavailableWithinTheTimeout) {
  // A socket that accepts connections (the kernel does, through the backlog) but never
  // speaks: the MySQL handshake must time out, not hang.
  test::TempDir dir;
  std::string path = dir / "hang.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  Config c;
  ASSERT_TRUE(ParseConfig("[mysql]\nsocket = " + path + "\nconnect_timeout = 1\n", "t", &c).ok());
  MysqlConnection conn(c.mysql);
  auto start = std::chrono::steady_clock::now();
  std::vector<SqlRow> rows;
  Status s = conn.Query("SELECT 1", {}, 1, &rows);
  auto elapsed = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_TRUE(s.IsUnavailable()) << s.message();
  EXPECT_LT(elapsed, std::chrono::milliseconds(3500)) << "connect_timeout = 1 must bound the wait";
}

TEST_F(Database, ForkedChildNeverTalksOverTheParentsConnection) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::string parent_id = ConnectionId(conn);
  pid_t pid = fork();
  if (pid == 0) {
    // In the child the inherited connection is abandoned silently and a new one is made.
    std::vector<SqlRow> rows;
    Status s = conn.Query("SELECT CONNECTION_ID()", {}, 1, &rows);
    bool ok = s.ok() && rows.size() == 1 && rows[0][0] != parent_id;
    conn.Close();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child could not query on its own connection";
  // Had the child sent COM_QUIT on the shared socket, the parent would have had to reconnect.
  EXPECT_EQ(ConnectionId(conn), parent_id);
}

std::set<int> OpenFds() {
  std::set<int> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.insert(std::stoi(e.path().filename()));
  }
  return fds;
}

TEST_F(Database, SocketClosedBehindOurBackIsNeitherUsedNorClosedAgain) {
  // A host program (the NSS module lives in arbitrary ones) closes every fd, then opens a file
  // that gets our old fd number. We must reconnect and leave its file alone.
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::set<int> before = OpenFds();
  ASSERT_FALSE(ConnectionId(conn).empty());
  std::set<int> after = OpenFds();
  int ours = -1;
  for (int fd : after) {
    if (!before.count(fd)) ours = fd;
  }
  ASSERT_GE(ours, 3);
  close(ours);
  int theirs = open("/dev/null", O_RDONLY);
  ASSERT_EQ(theirs, ours) << "the host's new file should reuse the number";
  EXPECT_FALSE(ConnectionId(conn).empty());
  conn.Close();
  EXPECT_EQ(std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(theirs)), "/dev/null");
  close(theirs);
}

TEST_F(Database, PreparedStatementsAreReusedAcrossQueries) {
  Config c = TestConfig();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  auto prepares = [&] {
    std::vector<SqlRow> r;
    EXPECT_TRUE(conn.Query("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
                           "WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'", {}, 1, &r).ok());
    return r.empty() ? -1 : std::stoi(r[0][0].value_or("-1"));
  };
  ASSERT_TRUE(conn.Query("SELECT ?", {uint64_t{1}}, 1, &rows).ok());
  int first = prepares();
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(conn.Query("SELECT ?", {i}, 1, &rows).ok());
    ASSERT_EQ(rows[0][0], std::to_string(i));
  }
  EXPECT_EQ(prepares(), first) << "each Query prepared its statement again";
}

}  // namespace
}  // namespace allgo
