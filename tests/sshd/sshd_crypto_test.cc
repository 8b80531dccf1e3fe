// allgo-sshd's algorithm policy as clients and auditors see it: the OpenSSH 9.2 client with its
// default settings negotiates a post-quantum key exchange, the [sshd] lists change what is
// offered, `--check` prints them, and ssh-audit finds no failure and fewer warnings than in the
// stock OpenSSH sshd of this machine (started here, on a loopback port).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <regex>
#include <sstream>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SshdCryptoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db().Clear();
    chmod(keys_.path().c_str(), 0755);
    key_ = MakeKeyPair(keys_.path(), "owner");
    uint32_t owner = db().AddUser("owner@example.org");
    db().AddKey(owner, key_.public_line);
    db().AddWebapp("webapp1", owner);
  }
  static TestDatabase& db() { return TestDatabase::Get(); }
  // The "kex: algorithm: NAME" line of `ssh -v` (the negotiated key exchange).
  static std::string NegotiatedKex(const std::string& ssh_verbose_log) {
    std::smatch m;
    static const std::regex line("kex: algorithm: (\\S+)");
    return std::regex_search(ssh_verbose_log, m, line) ? m[1].str() : "";
  }

  TempDir keys_{"allgo-sshd-crypto"};
  KeyPair key_;
};

TEST_F(SshdCryptoTest, DefaultOpenSshClientNegotiatesPostQuantumKex) {
  SshdServer server;
  RunResult r = server.Ssh("webapp1", key_.private_path, "echo in", {"-v"});
  ASSERT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_EQ(r.out, "in\n");
  std::string kex = NegotiatedKex(r.err);
  EXPECT_THAT(kex, ::testing::AnyOf(HasSubstr("sntrup761x25519-sha512"), HasSubstr("mlkem768x25519")))
      << "the client did not negotiate a post-quantum kex:\n" << r.err;
  // Strict key exchange (Terrapin countermeasure) is on: OpenSSH resets the packet sequence
  // numbers at NEWKEYS only in strict mode.
  EXPECT_THAT(r.err, HasSubstr("resetting send seqnr")) << r.err;
}

TEST_F(SshdCryptoTest, PinnedListsAreWhatIsNegotiated) {
  SshdServer server("kex_algorithms = curve25519-sha256\nciphers = aes128-gcm@openssh.com\n");
  RunResult r = server.Ssh("webapp1", key_.private_path, "true", {"-v"});
  ASSERT_EQ(r.exit_code, 0) << r.err << server.log();
  EXPECT_EQ(NegotiatedKex(r.err), "curve25519-sha256") << r.err;
  EXPECT_THAT(r.err, HasSubstr("cipher: aes128-gcm@openssh.com"));
  // A client that only speaks what the server removed is refused during the key exchange.
  SshdServer no_chacha("ciphers = -chacha20-poly1305@openssh.com\n");
  r = no_chacha.Ssh("webapp1", key_.private_path, "true", {"-o", "Ciphers=chacha20-poly1305@openssh.com"});
  EXPECT_EQ(r.exit_code, 255) << r.err;
  EXPECT_TRUE(no_chacha.WaitForLog("no match for method encryption client->server")) << no_chacha.log();
  EXPECT_THAT(no_chacha.log(), Not(HasSubstr("server [chacha20"))) << no_chacha.log();
}

TEST_F(SshdCryptoTest, CheckPrintsTheEffectiveListsAndNamesBadOnes) {
  TempDir t("allgo-sshd-crypto-check");
  std::string key = t / "hk";
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}).exit_code, 0);
  auto check = [&](const std::string& lines) {
    std::string conf = t / "c.conf";
    WriteFile(conf, db().ConfigText("[sshd]\nhost_key = " + key + "\nprivsep_chroot = " + (t / "empty") +
                                    "\n" + lines));
    return test::Run({Artifact("allgo-sshd"), "--config", conf, "--check"});
  };
  RunResult r = check("");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\nkex_algorithms = mlkem768x25519-sha256,sntrup761x25519-sha512,"
                               "sntrup761x25519-sha512@openssh.com,curve25519-sha256,"));
  EXPECT_THAT(r.out, HasSubstr("\nmacs = hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com\n"));
  EXPECT_THAT(r.out, HasSubstr("\nciphers = chacha20-poly1305@openssh.com,"));
  EXPECT_THAT(r.out, HasSubstr("\nhost_key_algorithms = ssh-ed25519,"));
  EXPECT_THAT(r.out, HasSubstr("\npubkey_accepted_algorithms = ssh-ed25519,"));
  EXPECT_THAT(r.out, HasSubstr("libssh = 0.12"));

  r = check("kex = -sntrup*,mlkem*\nhostkey_algorithms = +ssh-rsa\nmacs = ^hmac-sha2-512-etm@openssh.com\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\nkex_algorithms = curve25519-sha256,curve25519-sha256@libssh.org,"));
  EXPECT_THAT(r.out, HasSubstr(",ssh-rsa\n"));
  EXPECT_THAT(r.out, HasSubstr("\nmacs = hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com\n"));

  // The [sshd] header is line 1 of the appended text; ConfigText() puts other sections first.
  r = check("log_level = info\nciphers = aes128-ctr,blowfish-cbc\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::ContainsRegex(
                         "c\\.conf:[0-9]+: \\[sshd\\] ciphers: 'blowfish-cbc' is not an OpenSSH cipher name"));
  r = check("kex_algorithms = curve25519-sha256\nkex = curve25519-sha256\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("[sshd] kex: given twice (as kex_algorithms and kex"));
  r = check("macs = -*etm*\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("[sshd] macs: '-*etm*' leaves no MAC to offer"));
}

struct AuditResult {
  int fails = 0;
  int warnings = 0;
  std::string text;
};

AuditResult Audit(int port) {
  RunResult r = Run({"ssh-audit", "-n", "127.0.0.1:" + std::to_string(port)}, {.timeout_seconds = 60});
  AuditResult a;
  a.text = r.out + r.err;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.find("[fail]") != std::string::npos) ++a.fails;
    if (line.find("[warn]") != std::string::npos) ++a.warnings;
  }
  return a;
}

TEST_F(SshdCryptoTest, SshAuditFindsNoFailureAndFewerWarningsThanStockOpenSsh) {
  SshdServer ours;
  AuditResult allgo = Audit(ours.port());
  ASSERT_THAT(allgo.text, HasSubstr("# key exchange algorithms")) << allgo.text;

  // The stock OpenSSH sshd of this machine with its default algorithms, on a loopback port.
  TempDir t("allgo-sshd-audit");
  ASSERT_EQ(test::Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", t / "hk"}).exit_code, 0);
  int port = FreeLoopbackPort();
  WriteFile(t / "sshd_config", "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " +
                                   (t / "hk") + "\nPidFile none\nUsePAM no\n");
  mkdir("/run/sshd", 0755);
  Daemon stock({"/usr/sbin/sshd", "-D", "-e", "-f", t / "sshd_config"}, t / "sshd.log");
  ASSERT_TRUE(WaitForTcpPort(port, 10000)) << stock.Log();
  AuditResult openssh = Audit(port);
  ASSERT_THAT(openssh.text, HasSubstr("OpenSSH")) << openssh.text;

  EXPECT_EQ(allgo.fails, 0) << allgo.text;
  EXPECT_THAT(allgo.text, HasSubstr("kex-strict-s-v00@openssh.com")) << "Terrapin countermeasure";
  EXPECT_LT(allgo.warnings, openssh.warnings) << "allgo-sshd:\n" << allgo.text << "\nOpenSSH:\n" << openssh.text;
  std::printf("ssh-audit: allgo-sshd %d fail / %d warn, OpenSSH sshd %d fail / %d warn\n", allgo.fails,
              allgo.warnings, openssh.fails, openssh.warnings);
}

}  // namespace
}  // namespace allgo::test
