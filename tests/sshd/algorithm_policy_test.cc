// The [sshd] algorithm lists: OpenSSH's syntax, OpenSSH's names, checked against the libssh
// this binary is linked with (0.12 by default, 0.10 in the stock-libssh build).
#include <gtest/gtest.h>
#include <libssh/libssh.h>

#include <set>

#include "algorithm_policy.h"
#include "allgo/config.h"

namespace allgo::sshd {
namespace {

const std::vector<std::string> kKnown = {"a-1", "a-2", "b-1", "b-2@x.org", "c-1", "missing-1"};
const std::vector<std::string> kDefaults = {"b-1", "missing-1", "a-1"};

// A list over a small fixed catalogue where only "missing-1" is unimplemented.
std::string Assemble(const std::string& spec, std::vector<std::string>* out) {
  AlgorithmListInput in;
  in.spec = spec;
  in.known = kKnown;
  in.defaults = kDefaults;
  in.implemented = [](const std::string& n) { return n != "missing-1"; };
  in.noun = "test algorithm";
  in.implementation = "the test library";
  return AssembleAlgorithmList(in, out);
}

std::vector<std::string> Ok(const std::string& spec) {
  std::vector<std::string> out;
  std::string problem = Assemble(spec, &out);
  EXPECT_EQ(problem, "") << spec;
  return out;
}

std::string Problem(const std::string& spec) {
  std::vector<std::string> out;
  std::string problem = Assemble(spec, &out);
  EXPECT_NE(problem, "") << spec << " was accepted";
  return problem;
}

using V = std::vector<std::string>;

TEST(AlgorithmList, EmptyIsTheDefaultWithoutWhatTheLibraryLacks) {
  EXPECT_EQ(Ok(""), (V{"b-1", "a-1"}));
}

TEST(AlgorithmList, PlainListReplacesInTheGivenOrder) {
  EXPECT_EQ(Ok("c-1,a-2"), (V{"c-1", "a-2"}));
  EXPECT_EQ(Ok("a-*"), (V{"a-1", "a-2"}));
  EXPECT_EQ(Ok("c-1,a-?,c-1"), (V{"c-1", "a-1", "a-2"})) << "no duplicates";
}

TEST(AlgorithmList, PlusAppendsCaretPrependsMinusRemoves) {
  EXPECT_EQ(Ok("+c-1"), (V{"b-1", "a-1", "c-1"}));
  EXPECT_EQ(Ok("+a-1,b-*"), (V{"b-1", "a-1", "b-2@x.org"}));
  EXPECT_EQ(Ok("^c-1,a-1"), (V{"c-1", "a-1", "b-1"}));
  EXPECT_EQ(Ok("-b-1"), (V{"a-1"}));
  EXPECT_EQ(Ok("-*@x.org,b*"), (V{"a-1"}));
  EXPECT_EQ(Ok("-missing-1"), (V{"b-1", "a-1"})) << "removing what the library lacks is harmless";
}

TEST(AlgorithmList, UnknownAndUnimplementedNamesAreErrorsNamingThem) {
  std::string p = Problem("a-1,a-3");
  EXPECT_NE(p.find("'a-3' is not an OpenSSH test algorithm name"), std::string::npos) << p;
  p = Problem("+missing-1");
  EXPECT_NE(p.find("'missing-1' is not implemented by the test library"), std::string::npos) << p;
  p = Problem("-typo-1");
  EXPECT_NE(p.find("'typo-1'"), std::string::npos) << p;
  p = Problem("-a-*,b-*");
  EXPECT_NE(p.find("leaves no test algorithm"), std::string::npos) << p;
  p = Problem("z*");
  EXPECT_NE(p.find("leaves no"), std::string::npos) << p;
  p = Problem("!a-1");
  EXPECT_NE(p.find("negated"), std::string::npos) << p;
}

TEST(AlgorithmList, PatternsMatchLikeOpenSsh) {
  EXPECT_TRUE(AlgorithmPatternMatches("*", "anything"));
  EXPECT_TRUE(AlgorithmPatternMatches("hmac-*-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"));
  EXPECT_FALSE(AlgorithmPatternMatches("hmac-*-etm@openssh.com", "hmac-sha2-256"));
  EXPECT_TRUE(AlgorithmPatternMatches("aes1?8-ctr", "aes128-ctr"));
  EXPECT_FALSE(AlgorithmPatternMatches("aes1?-ctr", "aes128-ctr"));
  EXPECT_TRUE(AlgorithmPatternMatches("*sha1*", "diffie-hellman-group14-sha1"));
  EXPECT_FALSE(AlgorithmPatternMatches("", "x"));
}

// The built-in defaults, as the linked libssh resolves them.
TEST(AlgorithmPolicy, DefaultsAreModernOnly) {
  Config config;
  config.path = "test.conf";
  AlgorithmPolicy p;
  Status s = ResolveAlgorithmPolicy(config, &p);
  ASSERT_TRUE(s.ok()) << s.message();
  for (AlgorithmKind kind : AllAlgorithmKinds()) {
    const std::string& list = p.Get(kind);
    EXPECT_FALSE(list.empty()) << AlgorithmKey(kind);
    EXPECT_EQ(list.find("sha1"), std::string::npos) << AlgorithmKey(kind) << ": " << list;
    EXPECT_EQ(list.find("-cbc"), std::string::npos) << list;
    EXPECT_EQ(list.find("ssh-rsa"), std::string::npos) << list;
    EXPECT_EQ(list.find("ssh-dss"), std::string::npos) << list;
  }
  EXPECT_EQ(p.kex_algorithms.find("ecdh-sha2-nistp"), std::string::npos) << p.kex_algorithms;
  EXPECT_EQ(p.kex_algorithms.find("group14"), std::string::npos) << p.kex_algorithms;
  EXPECT_EQ(p.macs, "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com");
#if LIBSSH_VERSION_INT >= SSH_VERSION_INT(0, 12, 0)
  EXPECT_EQ(p.kex_algorithms.rfind("mlkem768x25519-sha256,sntrup761x25519-sha512,"
                                   "sntrup761x25519-sha512@openssh.com,curve25519-sha256,",
                                   0),
            0u)
      << "post-quantum hybrids first: " << p.kex_algorithms;
#else
  EXPECT_EQ(p.kex_algorithms.rfind("curve25519-sha256,curve25519-sha256@libssh.org", 0), 0u)
      << p.kex_algorithms;
  EXPECT_EQ(p.kex_algorithms.find("sntrup"), std::string::npos) << "libssh 0.10 has no sntrup761";
#endif
}

TEST(AlgorithmPolicy, EveryDefaultIsAnOpenSshName) {
  for (AlgorithmKind kind : AllAlgorithmKinds()) {
    const auto& known = OpenSshAlgorithmNames(kind);
    std::set<std::string> names(known.begin(), known.end());
    for (const auto& name : DefaultAlgorithmNames(kind)) {
      EXPECT_TRUE(names.count(name)) << AlgorithmKey(kind) << ": " << name;
    }
  }
}

TEST(AlgorithmPolicy, LibsshIsAskedNotAssumed) {
  EXPECT_TRUE(LibsshImplements(AlgorithmKind::kKex, "curve25519-sha256"));
  EXPECT_TRUE(LibsshImplements(AlgorithmKind::kCipher, "aes128-gcm@openssh.com"));
  EXPECT_FALSE(LibsshImplements(AlgorithmKind::kCipher, "umac-64@openssh.com")) << "a MAC, not a cipher";
  EXPECT_FALSE(LibsshImplements(AlgorithmKind::kMac, "umac-64-etm@openssh.com")) << "libssh has no UMAC";
  EXPECT_EQ(LibsshImplements(AlgorithmKind::kKex, "mlkem768x25519-sha256"),
            LIBSSH_VERSION_INT >= SSH_VERSION_INT(0, 12, 0));
}

Status Resolve(const std::string& sshd_section, AlgorithmPolicy* p) {
  Config config;
  Status s = ParseConfig("[sshd]\nlisten = 127.0.0.1:2222\n" + sshd_section, "site.conf", &config);
  if (!s.ok()) return s;
  return ResolveAlgorithmPolicy(config, p);
}

TEST(AlgorithmPolicy, ConfigKeysAndAliasesSetTheLists) {
  AlgorithmPolicy p;
  Status s = Resolve("kex = curve25519-sha256\nhostkey_algorithms = ssh-ed25519\nciphers = -chacha20*\n"
                     "macs = ^hmac-sha2-512-etm@openssh.com\npubkey_accepted_algorithms = -sk-*,ecdsa*\n",
                     &p);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(p.kex_algorithms, "curve25519-sha256");
  EXPECT_EQ(p.host_key_algorithms, "ssh-ed25519");
  EXPECT_EQ(p.ciphers.find("chacha20"), std::string::npos) << p.ciphers;
  EXPECT_EQ(p.macs, "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com");
  EXPECT_EQ(p.pubkey_accepted_algorithms, "ssh-ed25519,rsa-sha2-512,rsa-sha2-256");
  s = Resolve("kex_algorithms = +diffie-hellman-group14-sha256\nhost_key_algorithms = ssh-ed25519\n", &p);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_NE(p.kex_algorithms.find(",diffie-hellman-group14-sha256"), std::string::npos);
}

TEST(AlgorithmPolicy, ErrorsNameFileLineKeyAndName) {
  AlgorithmPolicy p;
  Status s = Resolve("log_level = info\nmacs = hmac-sha2-256-etm@openssh.com,hmac-sha3\n", &p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("site.conf:4: [sshd] macs: 'hmac-sha3' is not an OpenSSH MAC name"),
            std::string::npos)
      << s.message();
  s = Resolve("kex = ^sntrup761x25519-sha512@openssh.com\n", &p);
#if LIBSSH_VERSION_INT >= SSH_VERSION_INT(0, 12, 0)
  EXPECT_TRUE(s.ok()) << s.message();
#else
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("site.conf:3: [sshd] kex: 'sntrup761x25519-sha512@openssh.com' is not "
                             "implemented by the linked libssh 0.10"),
            std::string::npos)
      << s.message();
#endif
  s = Resolve("ciphers = -*\n", &p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("site.conf:3: [sshd] ciphers: '-*' leaves no cipher"), std::string::npos)
      << s.message();
}

TEST(AlgorithmPolicy, SyntaxErrorsAndAliasTwiceAreConfigErrors) {
  Config c;
  Status s = ParseConfig("[sshd]\nkex = curve25519-sha256\nkex_algorithms = curve25519-sha256\n", "a.conf", &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a.conf:3: [sshd] kex_algorithms: given twice (as kex and kex_algorithms"),
            std::string::npos)
      << s.message();
  s = ParseConfig("[sshd]\nciphers = aes128-ctr, aes256-ctr\n", "a.conf", &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a.conf:2: [sshd] ciphers: must be a comma-separated list"), std::string::npos)
      << s.message();
  s = ParseConfig("[sshd]\nmacs = +\n", "a.conf", &c);
  EXPECT_FALSE(s.ok());
  s = ParseConfig("[sshd]\nmacs = a,,b\n", "a.conf", &c);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace allgo::sshd
