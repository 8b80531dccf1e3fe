// `cmake --install` into a temporary prefix gives a real layout, and the installed binaries run.
#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace allgo::test {
namespace {

class Install : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prefix_ = new TempDir("allgo-install");
    RunResult r = test::Run({"cmake", "--install", BuildDir(), "--prefix", prefix_->path()},
                            {.timeout_seconds = 300});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    install_log_ = new std::string(r.out);
  }
  static void TearDownTestSuite() {
    delete prefix_;
    delete install_log_;
  }
  static std::string P(const std::string& rel) { return prefix_->path() + "/" + rel; }
  static bool Executable(const std::string& rel) { return access(P(rel).c_str(), X_OK) == 0; }
  static inline TempDir* prefix_ = nullptr;
  static inline std::string* install_log_ = nullptr;
};

TEST_F(Install, LayoutHasEveryPart) {
  EXPECT_TRUE(Executable("sbin/allgo-sshd"));
  EXPECT_TRUE(Executable("sbin/allgo-sandbox-gateway"));
  EXPECT_TRUE(Executable("bin/allgo-shell"));
  EXPECT_TRUE(Executable("bin/allgo-shell-state")) << "allgo-shell runs it from its own folder";
  EXPECT_TRUE(Executable("bin/allgo-authkeys"));
  EXPECT_TRUE(Executable("bin/allgo-sandbox-agent"));
  EXPECT_EQ(access(P("lib/" ALLGO_MULTIARCH "/libnss_allgo.so.2").c_str(), R_OK), 0);
  struct stat st;
  ASSERT_EQ(stat(P("etc/allgo/allgo-ssh.conf").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "the NSS module and allgo-shell must read it";
  for (const char* f : {"share/allgo-ssh/schema.sql", "share/allgo-ssh/grants.sql",
                        "share/allgo-ssh/nsswitch.snippet", "share/allgo-ssh/sshd_config.d/allgo.conf",
                        "lib/systemd/system/allgo-sshd.service", "lib/systemd/system/allgo-sandbox-gateway.service",
                        "share/doc/allgo-ssh/install.md", "share/allgo-ssh/nginx/docker-api-allowlist.conf"}) {
    EXPECT_EQ(access(P(f).c_str(), R_OK), 0) << f;
  }
}

TEST_F(Install, AgentIsFullyStatic) {
  RunResult r = test::Run({"readelf", "-l", P("bin/allgo-sandbox-agent")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("INTERP"), std::string::npos) << "has a dynamic loader";
  r = test::Run({"readelf", "-d", P("bin/allgo-sandbox-agent")});
  EXPECT_EQ(r.out.find("NEEDED"), std::string::npos) << r.out;
}

// Every idle session runs one allgo-shell: it must not load the database client and the TLS
// libraries behind it (their relocations were ~0.5 MiB per session); allgo-shell-state does.
TEST_F(Install, LoginShellLoadsNoDatabaseClient) {
  RunResult r = test::Run({"ldd", P("bin/allgo-shell")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* lib : {"libmariadb", "libssl", "libcrypto"}) EXPECT_EQ(r.out.find(lib), std::string::npos) << r.out;
  r = test::Run({"ldd", P("bin/allgo-shell-state")});
  EXPECT_NE(r.out.find("libmariadb"), std::string::npos) << r.out;
}

TEST_F(Install, InstalledConfigIsTheCommentedExampleAndParses) {
  std::string conf = ReadFile(P("etc/allgo/allgo-ssh.conf"));
  // key_options is shipped commented out: unset, allgo-sshd forwards into the sandbox and
  // allgo-authkeys still prints restrict,pty (docs/configuration.md).
  EXPECT_NE(conf.find("\n; key_options = restrict,pty"), std::string::npos);
  for (const char* key : {"socket", "uid_offset", "start_wait", "listen", "host_key",
                          "privsep_user", "lookup_user", "metrics_user", "max_startups", "proxy_protocol", "metrics_listen",
                          "audit_log", "banner"}) {
    EXPECT_NE(conf.find(std::string("\n") + key), std::string::npos) << key;
  }
  EXPECT_NE(conf.find("shell = " + P("bin/allgo-shell")), std::string::npos)
      << "the example must name the installed allgo-shell";
  // allgo-sshd --check reads it: the only complaint may be the missing host key.
  RunResult r = test::Run({P("sbin/allgo-sshd"), "--check", "--config", P("etc/allgo/allgo-ssh.conf")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("ssh-keygen"), std::string::npos) << r.out << r.err;
}

TEST_F(Install, CreateUsersMakesDedicatedSystemUsersOnce) {
  // This binary runs in a private mount namespace whose /etc is an overlay (test_support.h):
  // the users appear there only. The host's passwd is read through pid 1's root.
  std::string script = P("share/allgo-ssh/create-users");
  ASSERT_TRUE(Executable("share/allgo-ssh/create-users"));
  EXPECT_NE(install_log_->find("create-users"), std::string::npos) << "a non-/usr install says to run it";
  std::string host_before = ReadFile("/proc/1/root/etc/passwd");
  RunResult r = test::Run({script, "allgo-test-role"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  RunResult entry = test::Run({"getent", "passwd", "allgo-test-role"});
  ASSERT_EQ(entry.exit_code, 0);
  std::vector<std::string> fields;
  std::stringstream ss(entry.out.substr(0, entry.out.find('\n')));
  for (std::string f; std::getline(ss, f, ':');) fields.push_back(f);
  ASSERT_EQ(fields.size(), 7u) << entry.out;
  EXPECT_GT(std::stoul(fields[2]), 0u);
  EXPECT_LT(std::stoul(fields[2]), 1000u) << "a system user";
  EXPECT_NE(fields[2], "65534");
  EXPECT_EQ(fields[6], "/usr/sbin/nologin");
  EXPECT_EQ(test::Run({"getent", "group", "allgo-test-role"}).exit_code, 0) << "a group of its own";
  // Idempotent: the second run changes nothing.
  std::string passwd = ReadFile("/etc/passwd");
  r = test::Run({script, "allgo-test-role"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("exists"), std::string::npos) << r.out;
  EXPECT_EQ(ReadFile("/etc/passwd"), passwd);
  // The default roles are distinct users (made when this binary started, by the same script).
  EXPECT_NE(UidOf("allgo-sshd"), UidOf("allgo-authkeys"));
  EXPECT_NE(UidOf("allgo-authkeys"), UidOf("allgo-metrics"));
  EXPECT_EQ(ReadFile("/proc/1/root/etc/passwd"), host_before);
  EXPECT_EQ(host_before.find("allgo-test-role:"), std::string::npos) << "the host's /etc was changed";
}

TEST_F(Install, ReinstallKeepsTheOperatorsConfig) {
  WriteFile(P("etc/allgo/allgo-ssh.conf"), "[nss]\nhome = /srv\n");
  RunResult r = test::Run({"cmake", "--install", BuildDir(), "--prefix", prefix_->path()},
                          {.timeout_seconds = 300});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(P("etc/allgo/allgo-ssh.conf")), "[nss]\nhome = /srv\n");
}

TEST_F(Install, InstalledBinariesRun) {
  for (const char* bin : {"sbin/allgo-sshd", "sbin/allgo-sandbox-gateway", "bin/allgo-shell", "bin/allgo-shell-state", "bin/allgo-authkeys",
                          "bin/allgo-sandbox-agent"}) {
    RunResult r = test::Run({P(bin), "--version"});
    EXPECT_EQ(r.exit_code, 0) << bin << ": " << r.err;
    EXPECT_NE(r.out.find("0."), std::string::npos) << bin << ": " << r.out;
    r = test::Run({P(bin), "--help"});
    EXPECT_EQ(r.exit_code, 0) << bin << ": " << r.err;
  }
  // The installed helper answers from a real database.
  auto& db = TestDatabase::Get();
  db.Start();
  db.Clear();
  TempDir tmp;
  KeyPair key = MakeKeyPair(tmp.path(), "k");
  uint32_t owner = db.AddUser("installed@example.org");
  db.AddKey(owner, key.public_line);
  db.AddWebapp("inst", owner);
  WriteFile(tmp / "c.conf", db.ConfigText());
  RunResult r = test::Run({P("bin/allgo-authkeys"), "--config", tmp / "c.conf", "inst"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "restrict,pty " + key.public_line + "\n");
}

// The installed programs load the libssh they were built against (the private 0.12 of
// scripts/build-libssh through their RUNPATH, or the system's), and the NSS module, loaded into
// every process, links no libssh and carries no RUNPATH.
TEST_F(Install, ProgramsFindTheirLibsshAndTheNssModuleNone) {
  char expected[PATH_MAX];
  ASSERT_NE(realpath(ALLGO_LIBSSH_FILE, expected), nullptr) << ALLGO_LIBSSH_FILE;
  for (const char* bin : {"sbin/allgo-sshd", "bin/allgo-authkeys"}) {
    RunResult r = test::Run({"ldd", P(bin)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    size_t at = r.out.find("libssh.so.4 => ");
    ASSERT_NE(at, std::string::npos) << r.out;
    std::string path = r.out.substr(at + 15, r.out.find(' ', at + 15) - (at + 15));
    char loaded[PATH_MAX];
    ASSERT_NE(realpath(path.c_str(), loaded), nullptr) << path;
    EXPECT_STREQ(loaded, expected) << bin << " would load another libssh:\n" << r.out;
  }
  RunResult r = test::Run({"readelf", "-d", P("lib/" ALLGO_MULTIARCH "/libnss_allgo.so.2")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("libssh"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("RUNPATH"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("RPATH"), std::string::npos) << r.out;
}

TEST_F(Install, UnitAndSnippetNameTheInstalledPaths) {
  std::string unit = ReadFile(P("lib/systemd/system/allgo-sshd.service"));
  EXPECT_NE(unit.find("/allgo-sshd"), std::string::npos);
  EXPECT_EQ(unit.find("@SBINDIR@"), std::string::npos) << "unexpanded placeholder";
  EXPECT_NE(unit.find("NoNewPrivileges=yes"), std::string::npos);
  EXPECT_NE(unit.find("CapabilityBoundingSet="), std::string::npos);
  std::string gateway = ReadFile(P("lib/systemd/system/allgo-sandbox-gateway.service"));
  EXPECT_NE(gateway.find("/sbin/allgo-sandbox-gateway --check"), std::string::npos) << gateway;
  EXPECT_EQ(gateway.find("@SBINDIR@"), std::string::npos) << "unexpanded placeholder";
  std::string snippet = ReadFile(P("share/allgo-ssh/sshd_config.d/allgo.conf"));
  EXPECT_NE(snippet.find("AuthorizedKeysCommand /"), std::string::npos);
  EXPECT_EQ(snippet.find("@BINDIR@"), std::string::npos);
  // sshd itself accepts the snippet (syntax check in test mode with a throw-away host key).
  TempDir tmp;
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / "hk"}).exit_code, 0);
  WriteFile(tmp / "sshd_config", "HostKey " + (tmp / "hk") + "\nInclude " +
                                     P("share/allgo-ssh/sshd_config.d/allgo.conf") + "\n");
  mkdir("/run/sshd", 0755);
  RunResult r = test::Run({"/usr/sbin/sshd", "-t", "-f", tmp / "sshd_config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The snippet's Match applies to a webapp of the default config ([nss] gid 65534, the group
// /etc/group calls nogroup) and to no local account: sshd's own evaluation for a connection
// (`sshd -T -C`) shows the allgo settings for the webapp, the stock ones for root.
TEST_F(Install, SnippetMatchAppliesToWebappsOfTheDefaultConfig) {
  TestDatabase& db = TestDatabase::Get();
  db.AddWebapp("snippetapp", db.AddUser("snippet@example.org"));
  TempDir tmp;
  const std::string config = tmp / "allgo-ssh.conf";
  WriteFile(config, db.ConfigText());  // [nss] left default: gid 65534
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / "hk"}).exit_code, 0);
  WriteFile(tmp / "sshd_config", "HostKey " + (tmp / "hk") + "\nInclude " +
                                     P("share/allgo-ssh/sshd_config.d/allgo.conf") + "\n");
  mkdir("/run/sshd", 0755);
  auto effective = [&](const std::string& user) {
    RunResult r = test::Run({"/usr/sbin/sshd", "-T", "-f", tmp / "sshd_config", "-C",
                             "user=" + user + ",host=client.example.org,addr=127.0.0.1"},
                            {.env = {{"ALLGO_SSH_CONFIG", config}}});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  std::string webapp = effective("snippetapp");
  EXPECT_NE(webapp.find("\nauthorizedkeyscommand " + P("bin/allgo-authkeys") + " %u %U\n"), std::string::npos) << webapp;
  EXPECT_NE(webapp.find("\nauthorizedkeyscommanduser allgo-authkeys\n"), std::string::npos) << webapp;
  EXPECT_NE(webapp.find("\nallowtcpforwarding no\n"), std::string::npos) << webapp;
  EXPECT_NE(webapp.find("\nauthorizedkeysfile none\n"), std::string::npos) << webapp;
  EXPECT_NE(webapp.find("\nexposeauthinfo yes\n"), std::string::npos) << webapp;
  EXPECT_NE(webapp.find("\npasswordauthentication no\n"), std::string::npos) << webapp;
  std::string root = effective("root");
  EXPECT_EQ(root.find("allgo-authkeys"), std::string::npos) << root;
  EXPECT_NE(root.find("\nallowtcpforwarding yes\n"), std::string::npos) << root;
}

}  // namespace
}  // namespace allgo::test
