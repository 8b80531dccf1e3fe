// allgo-authkeys as sshd runs it, then under a real OpenSSH sshd.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <sstream>

#include "test_support.h"

namespace allgo::test {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

class Authkeys : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& db = TestDatabase::Get();
    db.Start();
    db.Clear();
    WriteAllgoConfig(db.ConfigText("[nss]\nshell = /bin/sh\n"));
    owner_ = MakeKeyPair(tmp_.path(), "owner");
    other_ = MakeKeyPair(tmp_.path(), "other");
    admin_ = MakeKeyPair(tmp_.path(), "admin");
    gone_ = MakeKeyPair(tmp_.path(), "gone");
    uint32_t owner = db.AddUser("owner@example.org");
    uint32_t other = db.AddUser("other@example.org");
    uint32_t admin = db.AddUser("admin@example.org", true, true);
    uint32_t gone = db.AddUser("gone@example.org", false);
    db.AddKey(owner, owner_.public_line);
    db.AddKey(other, other_.public_line);
    db.AddKey(admin, admin_.public_line);
    db.AddKey(gone, gone_.public_line);
    db.AddWebapp("sleep", owner);
    db.AddWebapp("other-app", other);
    db.AddWebapp("gone-app", gone);
  }
  RunResult Authkeys_(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Artifact("allgo-authkeys")};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::Run(argv);
  }
  TempDir tmp_;
  KeyPair owner_, other_, admin_, gone_;
};

TEST_F(Authkeys, PrintsTheOwnersKeysWithTheConfiguredOptions) {
  RunResult r = Authkeys_({"sleep"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{"restrict,pty " + owner_.public_line});
}

TEST_F(Authkeys, ConfigPathFromFlagAndEnvironment) {
  std::string conf = tmp_ / "alt.conf";
  WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_options = restrict\n"));
  RunResult r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{"restrict " + owner_.public_line});
  r = test::Run({Artifact("allgo-authkeys"), "sleep"}, {.env = {{"ALLGO_SSH_CONFIG", conf}}});
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{"restrict " + owner_.public_line});
}

TEST_F(Authkeys, SuperusersOnlyWhenAllowed) {
  std::string conf = tmp_ / "su.conf";
  WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nallow_superusers = true\n"));
  RunResult r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(Lines(r.out), (std::vector<std::string>{"restrict,pty " + owner_.public_line,
                                                     "restrict,pty " + admin_.public_line}));
}

TEST_F(Authkeys, UnknownInvalidAndHostileUsersGetNothingAndExitZero) {
  for (const std::string& user : {std::string("nobody-here"), std::string("gone-app"),
                                  std::string("x' OR '1'='1"), std::string(300, 'a'),
                                  std::string("Sleep"), std::string("sleep\nsleep")}) {
    RunResult r = Authkeys_({user});
    EXPECT_EQ(r.exit_code, 0) << user << ": " << r.err;
    EXPECT_EQ(r.out, "") << user;
  }
}

// The identity rule: a webapp named like an account another NSS source has (root, daemon, a
// local user), or whose uid a local account owns, has no keys — whoever owns the row.
TEST_F(Authkeys, WebappsClaimingOtherAccountsGetNoKeys) {
  auto& db = TestDatabase::Get();
  const uint32_t owner = db.AddUser("attacker@example.org");
  db.AddKey(owner, MakeKeyPair(tmp_.path(), "attacker").public_line);
  db.AddWebapp("root", owner);
  db.AddWebapp("daemon", owner);
  db.AddWebapp("localdev", owner);
  const uint32_t victim = db.AddWebapp("victim", owner);
  db.AddWebapp("fine", owner);
  const LocalAccount localdev("localdev", 1500);
  const LocalAccount squatter("squatter", 2000 + victim);
  for (const char* name : {"root", "daemon", "localdev", "victim"}) {
    RunResult r = Authkeys_({name});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    EXPECT_EQ(r.out, "") << name;
  }
  EXPECT_THAT(Authkeys_({"--log-level", "info", "root"}).err,
              ::testing::HasSubstr("the name 'root' belongs to another account (uid 0)"));
  EXPECT_THAT(Authkeys_({"--log-level", "info", "victim"}).err,
              ::testing::HasSubstr("belongs to another account ('squatter')"));
  EXPECT_EQ(Lines(Authkeys_({"fine"}).out).size(), 1u) << "the control webapp keeps its key";
}

// sshd's %U: the uid sshd resolved the name to (through NSS, cached up to [nss] cache_ttl).
// Two webapps whose names are swapped in that window must not let the owner of one in as
// the other's uid: the row must still give that uid, else no key.
TEST_F(Authkeys, TheUidFromSshdMustStillBeTheWebapps) {
  auto& db = TestDatabase::Get();
  RunResult r = Authkeys_({"sleep", "2001"});  // sleep is webapp 1: uid 2001
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{"restrict,pty " + owner_.public_line});
  // sshd looked `other-app` up as uid 2002; then the two webapps swap their names.
  db.Exec("UPDATE allgo.webapps SET docker_name = 'swapping' WHERE docker_name = 'sleep'");
  db.Exec("UPDATE allgo.webapps SET docker_name = 'sleep' WHERE docker_name = 'other-app'");
  db.Exec("UPDATE allgo.webapps SET docker_name = 'other-app' WHERE docker_name = 'swapping'");
  r = Authkeys_({"other-app", "2002"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "") << "the owner of webapp 1 would log in as uid 2002";
  EXPECT_THAT(r.err, ::testing::HasSubstr("no keys for 'other-app': sshd resolved it to uid 2002, but webapp "
                                          "'other-app' has uid 2001 in the database"));
  // The name with its current uid works; without %U the old behaviour stays.
  EXPECT_EQ(Lines(Authkeys_({"other-app", "2001"}).out), std::vector<std::string>{"restrict,pty " + owner_.public_line});
  EXPECT_EQ(Lines(Authkeys_({"sleep", "2002"}).out), std::vector<std::string>{"restrict,pty " + other_.public_line});
  EXPECT_EQ(Lines(Authkeys_({"other-app"}).out).size(), 1u);
  // A uid that is not a number is an error (sshd denies), naming the argument.
  for (const std::string& bad : {std::string("20x1"), std::string("2001 "), std::string("99999999999")}) {
    r = Authkeys_({"sleep", bad});
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_EQ(r.out, "") << bad;
    EXPECT_THAT(r.err, ::testing::HasSubstr("is not a number (sshd's %U)")) << bad;
  }
}

TEST_F(Authkeys, InjectedOptionsAndBadKeysNeverReachTheOutput) {
  auto& db = TestDatabase::Get();
  uint32_t user = db.AddUser("tricky@example.org");
  KeyPair k = MakeKeyPair(tmp_.path(), "tricky");
  // Options pasted with the key, a second line smuggling a whole authorized_keys entry, a
  // broken key, and a key whose comment tries to start a new line.
  db.AddKey(user, "command=\"/bin/evil\",no-restrict " + k.public_line +
                      "\nfrom=\"*\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD\nnot-a-key at all");
  db.AddWebapp("tricky", user);
  RunResult r = Authkeys_({"tricky"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{"restrict,pty " + k.public_line});
  // One stderr line per dropped key, naming the account.
  std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 2u) << r.err;
  EXPECT_NE(err[0].find("tricky@example.org"), std::string::npos) << err[0];
  EXPECT_NE(err[0].find("line 2"), std::string::npos) << err[0];
  EXPECT_NE(err[1].find("line 3"), std::string::npos) << err[1];
}

TEST_F(Authkeys, DatabaseDownMeansNoOutputNonZeroAndAClearMessage) {
  TestDatabase::Get().Stop();
  RunResult r = Authkeys_({"sleep"});
  TestDatabase::Get().Start();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("cannot list keys for 'sleep': cannot connect to MySQL at"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find(TestDatabase::kPassword), std::string::npos) << "password leaked";
}

TEST_F(Authkeys, BadConfigIsReportedWithFileAndLine) {
  std::string conf = tmp_ / "bad.conf";
  WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_option = restrict\n"));
  RunResult r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(conf + ":8: [authkeys] key_option: unknown key"), std::string::npos) << r.err;
  r = Authkeys_({"--config", tmp_ / "missing.conf", "sleep"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST_F(Authkeys, KeyOptionsOpenSshWouldRejectAreRefusedAndGoodOnesPrintedAsWritten) {
  std::string conf = tmp_ / "opts.conf";
  // OpenSSH refuses a key line with an unknown option: printing it would lock everyone out.
  WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_options = restrict,bogus\n"));
  RunResult r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(conf + ":8: [authkeys] key_options: bogus: unknown option"), std::string::npos) << r.err;
  WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_options = restrict,pty,\n"));
  r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  WriteFile(conf, TestDatabase::Get().ConfigText(
                      "[authkeys]\nkey_options = restrict,command=\"echo a, b\",from=\"127.0.0.0/8\"\n"));
  r = Authkeys_({"--config", conf, "sleep"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out),
            std::vector<std::string>{"restrict,command=\"echo a, b\",from=\"127.0.0.0/8\" " + owner_.public_line});
}

// Stock OpenSSH forwards from the frontend itself: allgo-authkeys never prints options that
// leave forwarding on, and names the line to fix.
TEST_F(Authkeys, KeyOptionsThatLetOpenSshForwardAreAConfigError) {
  std::string conf = tmp_ / "fwd.conf";
  for (const std::string options : {"pty", "no-port-forwarding,pty", "restrict,pty,port-forwarding",
                                    "restrict,agent-forwarding", "no-agent-forwarding"}) {
    WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_options = " + options + "\n"));
    RunResult r = Authkeys_({"--config", conf, "sleep"});
    EXPECT_EQ(r.exit_code, 1) << options;
    EXPECT_EQ(r.out, "") << options;
    EXPECT_THAT(r.err, HasSubstr(conf + ":8: [authkeys] key_options: \"" + options + "\": these options let stock OpenSSH forward"))
        << r.err;
    EXPECT_THAT(r.err, HasSubstr("start them with restrict")) << "the fix is named";
    r = Authkeys_({"--config", conf, "--check"});
    EXPECT_EQ(r.exit_code, 1) << options;
    EXPECT_THAT(r.err, HasSubstr(conf + ":8: [authkeys] key_options:")) << r.err;
  }
  // Off both ways: accepted and printed as written.
  for (const std::string options : {"no-port-forwarding,no-agent-forwarding,pty", "restrict,permitopen=\"localhost:80\""}) {
    WriteFile(conf, TestDatabase::Get().ConfigText("[authkeys]\nkey_options = " + options + "\n"));
    RunResult r = Authkeys_({"--config", conf, "sleep"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Lines(r.out), std::vector<std::string>{options + " " + owner_.public_line});
  }
}

TEST_F(Authkeys, CheckWithoutKeyOptionsSaysRestrictPty) {
  RunResult r = Authkeys_({"--check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "key_options = restrict,pty\n");
  EXPECT_THAT(r.err, HasSubstr("configuration OK"));
}

TEST_F(Authkeys, HelpAndVersion) {
  RunResult r = Authkeys_({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("USER"), std::string::npos);
  r = Authkeys_({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("allgo-authkeys ", 0), 0u) << r.out;
  r = Authkeys_({});
  EXPECT_NE(r.exit_code, 0);
}

// The real thing: a stock OpenSSH sshd asking allgo-authkeys, users resolved by glibc
// through our NSS module.
class UnderOpenSsh : public Authkeys {
 protected:
  void SetUp() override {
    Authkeys::SetUp();
    // sshd insists that the helper and every directory above it are root-owned and not
    // writable by others; /etc/allgo is inside this test's private overlay.
    std::filesystem::copy_file(Artifact("allgo-authkeys"), "/etc/allgo/allgo-authkeys",
                               std::filesystem::copy_options::overwrite_existing);
    chmod("/etc/allgo/allgo-authkeys", 0755);
    mkdir("/run/sshd", 0755);  // sshd's privilege separation directory
    RunResult keygen = test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_ / "host_key"});
    ASSERT_EQ(keygen.exit_code, 0) << keygen.err;
    port_ = FreeLoopbackPort();
    WriteFile(tmp_ / "sshd_config",
              "Port " + std::to_string(port_) + "\nListenAddress 127.0.0.1\nHostKey " +
                  (tmp_ / "host_key") +
                  "\nPidFile none\nUsePAM no\nAuthorizedKeysFile none\n"
                  "AuthorizedKeysCommand /etc/allgo/allgo-authkeys %u %U\n"
                  "AuthorizedKeysCommandUser allgo-authkeys\nPasswordAuthentication no\n"
                  "KbdInteractiveAuthentication no\nStrictModes no\nLogLevel VERBOSE\n");
    sshd_ = std::make_unique<Daemon>(
        std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", tmp_ / "sshd_config"},
        tmp_ / "sshd.log");
    ASSERT_TRUE(WaitForTcpPort(port_, 10000)) << sshd_->Log();
  }
  void TearDown() override { sshd_.reset(); }
  RunResult Ssh(const KeyPair& key, const std::string& user, const std::string& command) {
    return test::Run({"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR", "-i", key.private_path, "-p", std::to_string(port_),
                user + "@127.0.0.1", command},
               {.timeout_seconds = 30});
  }
  int port_ = 0;
  std::unique_ptr<Daemon> sshd_;
};

TEST_F(UnderOpenSsh, OwnersKeyLogsInAsTheWebappUser) {
  RunResult r = Ssh(owner_, "sleep", "id -un; id -u");
  ASSERT_EQ(r.exit_code, 0) << r.err << sshd_->Log();
  EXPECT_EQ(Lines(r.out), (std::vector<std::string>{"sleep", "2001"}));
}

// The same key_options as the allgo-sshd tests (tests/sshd/sshd_key_options_test.cc), here
// enforced by OpenSSH itself: both servers give the same answers.
TEST_F(UnderOpenSsh, KeyOptionsMeanWhatTheyMeanUnderAllgoSshd) {
  auto& db = TestDatabase::Get();
  WriteAllgoConfig(db.ConfigText(
      "[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = restrict,command=\"echo forced:$SSH_ORIGINAL_COMMAND\"\n"));
  RunResult r = Ssh(owner_, "sleep", "rm -rf / anything");
  EXPECT_EQ(r.out, "forced:rm -rf / anything\n") << r.err << sshd_->Log();
  WriteAllgoConfig(db.ConfigText("[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = restrict\n"));
  r = test::Run({"ssh", "-tt", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                 "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o",
                 "LogLevel=ERROR", "-i", owner_.private_path, "-p", std::to_string(port_), "sleep@127.0.0.1",
                 "echo ran"},
                {.timeout_seconds = 30});
  EXPECT_EQ(r.exit_code, 255);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("PTY allocation request failed on channel 0"), std::string::npos) << r.err;
  WriteAllgoConfig(db.ConfigText("[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = restrict,from=\"10.0.0.0/8\"\n"));
  EXPECT_EQ(Ssh(owner_, "sleep", "true").exit_code, 255);
  WriteAllgoConfig(db.ConfigText("[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = restrict,expiry-time=\"20200101\"\n"));
  EXPECT_EQ(Ssh(owner_, "sleep", "true").exit_code, 255);
  WriteAllgoConfig(db.ConfigText(
      "[nss]\nshell = /bin/sh\n[authkeys]\nkey_options = restrict,from=\"127.0.0.0/8\",expiry-time=\"29991231\"\n"));
  r = Ssh(owner_, "sleep", "echo in");
  EXPECT_EQ(r.out, "in\n") << r.err << sshd_->Log();
}

TEST_F(UnderOpenSsh, EveryoneElseIsRefused) {
  EXPECT_EQ(Ssh(other_, "sleep", "true").exit_code, 255) << "another user's key";
  EXPECT_EQ(Ssh(gone_, "gone-app", "true").exit_code, 255) << "inactive owner";
  EXPECT_EQ(Ssh(admin_, "sleep", "true").exit_code, 255) << "superuser, default config";
  EXPECT_EQ(Ssh(owner_, "nosuchapp", "true").exit_code, 255) << "unknown webapp";
  RunResult ok = Ssh(owner_, "sleep", "echo still-serving");
  EXPECT_EQ(ok.out, "still-serving\n") << ok.err;
}

// A stock OpenSSH asking allgo-authkeys for root, daemon, a local account, or a webapp whose
// uid a local account owns: the webapp owner's key opens none of them.
TEST_F(UnderOpenSsh, WebappsClaimingOtherAccountsCannotLogIn) {
  auto& db = TestDatabase::Get();
  const uint32_t owner = db.AddUser("attacker@example.org");
  const KeyPair attacker = MakeKeyPair(tmp_.path(), "attacker");
  db.AddKey(owner, attacker.public_line);
  db.AddWebapp("root", owner);
  db.AddWebapp("daemon", owner);
  db.AddWebapp("localdev", owner);
  const uint32_t victim = db.AddWebapp("victim", owner);
  db.AddWebapp("fine", owner);
  const LocalAccount localdev("localdev", 1500, "/", "/bin/sh");
  const LocalAccount squatter("squatter", 2000 + victim, "/", "/bin/sh");
  for (const char* name : {"root", "daemon", "localdev", "victim", "squatter"}) {
    RunResult r = Ssh(attacker, name, "id -u");
    EXPECT_EQ(r.exit_code, 255) << name << " let the owner of a webapp in: " << r.out;
    EXPECT_EQ(r.out, "") << name;
  }
  RunResult ok = Ssh(attacker, "fine", "id -u");
  EXPECT_EQ(ok.exit_code, 0) << ok.err << sshd_->Log();
}

}  // namespace
}  // namespace allgo::test
