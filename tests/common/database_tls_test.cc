// [mysql] ssl_*: every component's connection to a MariaDB reached over TCP is TLS, the server's
// certificate checked against ssl_ca. The test's MariaDB listens on 127.0.0.1 with a certificate
// made here by openssl, and its account for TCP is REQUIRE SSL.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/database.h"
#include "test_support.h"

namespace allgo {
namespace {

using test::TestDatabase;

void Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  test::RunResult r = test::Run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// A self-signed CA DIR/NAME.pem (key DIR/NAME-key.pem).
void MakeCa(const std::string& dir, const std::string& name) {
  Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", dir + "/" + name + "-key.pem", "-out", dir + "/" + name + ".pem", "-days", "2",
           "-subj", "/CN=" + name});
}

class DatabaseTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("allgo-mysql-tls");
    const std::string d = dir_->path();
    MakeCa(d, "ca");
    MakeCa(d, "other-ca");
    // The server's certificate, for the address the clients dial (verified against `host`).
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             d + "/server-key.pem", "-out", d + "/server.csr", "-subj", "/CN=mariadb"});
    test::WriteFile(d + "/server.ext", "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n");
    Openssl({"x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca-key.pem",
             "-CAcreateserial", "-days", "2", "-extfile", d + "/server.ext", "-out", d + "/server.pem"});
    TestDatabase::Get().ListenTls({d + "/ca.pem", d + "/server.pem", d + "/server-key.pem"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    TestDatabase::Get().Start();
    TestDatabase::Get().Clear();
  }

  // The config file text for the TCP account, trusting `ca` (a file name in dir_).
  static std::string ConfigText(const std::string& ca) {
    return TestDatabase::Get().TcpMysqlConfigSection() + "ssl_ca = " + (*dir_ / ca) + "\n";
  }
  static Config ParsedConfig(const std::string& ca) {
    Config c;
    Status s = ParseConfig(ConfigText(ca), "tls.conf", &c);
    EXPECT_TRUE(s.ok()) << s.message();
    return c;
  }
  static inline test::TempDir* dir_ = nullptr;
};

TEST_F(DatabaseTls, RightCaConnectsAndTheSessionIsEncrypted) {
  MysqlConnection conn(ParsedConfig("ca.pem").mysql);
  std::vector<SqlRow> rows;
  Status s = conn.Query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", {}, 2, &rows);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NE(rows[0][1].value_or(""), "") << "no TLS cipher: the session is in clear text";
  s = conn.Query("SELECT CURRENT_USER()", {}, 1, &rows);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(rows.at(0)[0].value_or(""), "ssh@127.0.0.1") << "the TCP account (REQUIRE SSL)";
}

TEST_F(DatabaseTls, WrongCaIsRefusedWithAClearError) {
  MysqlConnection conn(ParsedConfig("other-ca.pem").mysql);
  std::vector<SqlRow> rows;
  Status s = conn.Query("SELECT 1", {}, 1, &rows);
  ASSERT_FALSE(s.ok()) << "connected although the server's certificate is not from ssl_ca";
  EXPECT_NE(s.message().find("TLS/SSL error"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cannot connect to MySQL at 127.0.0.1"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("TLS: check [mysql] ssl_ca"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find(TestDatabase::kPassword), std::string::npos);
}

// ssl_verify_server_cert = false skips the check that the certificate names `host`, not the
// chain: Connector/C still refuses a server whose certificate ssl_ca did not sign.
TEST_F(DatabaseTls, VerifyOffStillRefusesAnotherCa) {
  Config c;
  Status s = ParseConfig(ConfigText("other-ca.pem") + "ssl_verify_server_cert = false\n", "tls.conf", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  MysqlConnection conn(c.mysql);
  std::vector<SqlRow> rows;
  s = conn.Query("SELECT 1", {}, 1, &rows);
  ASSERT_FALSE(s.ok()) << "connected to a server whose certificate is not from ssl_ca";
  EXPECT_NE(s.message().find("TLS/SSL error"), std::string::npos) << s.message();
}

// The NSS module (in getent) and allgo-authkeys read the same [mysql] keys and get the webapp
// over TLS; with the wrong CA they get nothing.
TEST_F(DatabaseTls, NssLookupAndAuthkeysWorkOverTls) {
  auto& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("tls@example.org");
  test::KeyPair key = test::MakeKeyPair(dir_->path(), "tls-user");
  db.AddKey(owner, key.public_line);
  uint32_t id = db.AddWebapp("tlsapp", owner);
  const std::string good = *dir_ / "good.conf";
  const std::string bad = *dir_ / "bad.conf";
  test::WriteFile(good, ConfigText("ca.pem"));
  test::WriteFile(bad, ConfigText("other-ca.pem"));

  test::RunResult r = test::Run({"getent", "passwd", "tlsapp"}, {.env = {{"ALLGO_SSH_CONFIG", good}}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("tlsapp:*:" + std::to_string(2000 + id) + ":65534:", 0), 0u) << r.out;
  r = test::Run({test::Artifact("allgo-authkeys"), "tlsapp"}, {.env = {{"ALLGO_SSH_CONFIG", good}}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(key.public_line), std::string::npos) << r.out;

  r = test::Run({"getent", "passwd", "tlsapp"}, {.env = {{"ALLGO_SSH_CONFIG", bad}}});
  EXPECT_NE(r.exit_code, 0) << r.out;
  r = test::Run({test::Artifact("allgo-authkeys"), "tlsapp"}, {.env = {{"ALLGO_SSH_CONFIG", bad}}});
  EXPECT_EQ(r.out.find("ssh-ed25519"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("TLS: check [mysql] ssl_ca"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace allgo
