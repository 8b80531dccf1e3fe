#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "allgo/pubkey.h"

namespace allgo {
namespace {

// Real keys made by the real ssh-keygen, once per test binary.
class Keys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/allgo-keys-XXXXXX";
    dir_ = mkdtemp(tmpl);
    for (const auto& [name, args] : std::vector<std::pair<std::string, std::string>>{
             {"ed25519", "-t ed25519"}, {"ecdsa", "-t ecdsa -b 384"}, {"rsa", "-t rsa -b 2048"},
             {"rsa1024", "-t rsa -b 1024"}}) {
      std::string cmd = "ssh-keygen -q " + args + " -N '' -C user@" + name + " -f " + dir_ + "/" +
                        name + " >/dev/null 2>&1";
      ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
    }
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string Pub(const std::string& name) {
    std::ifstream f(dir_ + "/" + name + ".pub");
    std::string line;
    std::getline(f, line);
    return line;
  }
  static std::string Fingerprint(const std::string& name) {
    std::string cmd = "ssh-keygen -l -E sha256 -f " + dir_ + "/" + name + ".pub";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[512] = {0};
    fgets(buf, sizeof buf, p);
    pclose(p);
    std::istringstream in(buf);
    std::string bits, fp;
    in >> bits >> fp;
    return fp;
  }
  static std::string Field(const std::string& line, int n) {
    std::istringstream in(line);
    std::string f;
    for (int i = 0; i <= n; ++i) in >> f;
    return f;
  }
  static inline std::string dir_;
};

TEST_F(Keys, ParsesEveryCommonTypeLikeSshKeygen) {
  for (const char* name : {"ed25519", "ecdsa", "rsa"}) {
    PublicKey k;
    Status s = ParsePublicKeyLine(Pub(name), &k);
    ASSERT_TRUE(s.ok()) << name << ": " << s.message();
    EXPECT_EQ(k.type, Field(Pub(name), 0));
    EXPECT_EQ(k.base64, Field(Pub(name), 1));
    EXPECT_EQ(k.comment, std::string("user@") + name);
    EXPECT_EQ(k.fingerprint, Fingerprint(name));
    EXPECT_FALSE(k.had_options);
  }
  PublicKey k;
  ASSERT_TRUE(ParsePublicKeyLine(Pub("rsa"), &k).ok());
  EXPECT_EQ(k.bits, 2048u);
  ASSERT_TRUE(ParsePublicKeyLine(Pub("ecdsa"), &k).ok());
  EXPECT_EQ(k.bits, 384u);
}

TEST_F(Keys, SmallRsaRejected) {
  PublicKey k;
  Status s = ParsePublicKeyLine(Pub("rsa1024"), &k);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "RSA key of 1024 bits; at least 2048 required");
}

TEST_F(Keys, OptionsAreParsedPastAndNeverKept) {
  std::string line = "command=\"/bin/sh -c 'evil; x'\",no-pty,environment=\"A=b c\" " + Pub("ed25519");
  PublicKey k;
  ASSERT_TRUE(ParsePublicKeyLine(line, &k).ok());
  EXPECT_TRUE(k.had_options);
  std::string printed = FormatAuthorizedKeysLine(k, "restrict,pty");
  EXPECT_EQ(printed, "restrict,pty " + Pub("ed25519"));
  EXPECT_EQ(printed.find("command"), std::string::npos);
  EXPECT_EQ(FormatAuthorizedKeysLine(k, ""), Pub("ed25519"));
  // Their text is kept apart, for an authorized_keys_command's output (never printed).
  EXPECT_EQ(k.options, "command=\"/bin/sh -c 'evil; x'\",no-pty,environment=\"A=b c\"");
  ASSERT_TRUE(ParsePublicKeyLine("command=\"a \\\" b\",no-pty " + Pub("ed25519"), &k).ok());
  EXPECT_EQ(k.options, "command=\"a \\\" b\",no-pty");
  // Only \" is an escape inside quotes, as in OpenSSH: in "a\\" b" the quote after the two
  // backslashes is escaped, and the value runs on to the last quote.
  ASSERT_TRUE(ParsePublicKeyLine("command=\"a\\\\\" b\" " + Pub("ed25519"), &k).ok());
  EXPECT_EQ(k.options, "command=\"a\\\\\" b\"");
}

TEST_F(Keys, InnerTypeMustMatchDeclaredType) {
  // An ed25519 key data declared as RSA.
  PublicKey k;
  Status s = ParsePublicKeyLine("ssh-rsa " + Field(Pub("ed25519"), 1), &k);
  EXPECT_FALSE(s.ok());
  // A blob whose inner name says ecdsa but whose body is an ed25519 key, declared ed25519:
  // libssh alone would accept it; the re-encoding check does not.
  std::string b64 = Field(Pub("ed25519"), 1);
  std::vector<unsigned char> blob(b64.size());
  int n = EVP_DecodeBlock(blob.data(), reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  ASSERT_GT(n, 0);
  blob.resize(static_cast<size_t>(n));
  std::string inner = "ecdsa-sha2-nistp256";
  std::vector<unsigned char> forged = {0, 0, 0, static_cast<unsigned char>(inner.size())};
  forged.insert(forged.end(), inner.begin(), inner.end());
  forged.insert(forged.end(), blob.begin() + 4 + 11, blob.begin() + 4 + 11 + 36);  // string(32-byte key)
  std::vector<unsigned char> out(forged.size() * 2 + 4);
  int m = EVP_EncodeBlock(out.data(), forged.data(), static_cast<int>(forged.size()));
  s = ParsePublicKeyLine("ssh-ed25519 " + std::string(out.begin(), out.begin() + m), &k);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "ssh-ed25519 key data does not match its declared type");
}

TEST_F(Keys, GarbageIsRejectedWithAReason) {
  PublicKey k;
  EXPECT_EQ(ParsePublicKeyLine("ssh-ed25519", &k).message(), "ssh-ed25519 key without key data");
  EXPECT_EQ(ParsePublicKeyLine("ssh-ed25519 not*base64", &k).message(),
            "ssh-ed25519 key data is not valid base64");
  EXPECT_EQ(ParsePublicKeyLine("ssh-ed25519 AAAA", &k).message(),
            "ssh-ed25519 key data does not decode to a ssh-ed25519 key");
  EXPECT_EQ(ParsePublicKeyLine("ssh-dss AAAAB3NzaC1kc3M= x", &k).message(),
            "unsupported key type 'ssh-dss' (use ssh-ed25519, ecdsa-sha2-* or ssh-rsa of 2048 "
            "bits or more)");
  EXPECT_EQ(ParsePublicKeyLine("no-pty AAAA x", &k).message(),
            "unsupported or unknown key type 'AAAA'");
  EXPECT_EQ(ParsePublicKeyLine("from=\"x ssh-ed25519 AAAA", &k).message(),
            "unterminated quote in key options");
  EXPECT_EQ(ParsePublicKeyLine("ssh-ed25519-cert-v01@openssh.com AAAA x", &k).message().substr(0, 55),
            "unsupported key type 'ssh-ed25519-cert-v01@openssh.com'");
  EXPECT_EQ(ParsePublicKeyLine("restrict", &k).message(), "no key type found");
  EXPECT_FALSE(ParsePublicKeyLine(Pub("ed25519") + std::string("\0", 1) + "x", &k).ok());
  EXPECT_FALSE(ParsePublicKeyLine(std::string(20000, 'A'), &k).ok());
}

TEST_F(Keys, FieldWithSeveralLines) {
  std::string field = "# my keys\r\n" + Pub("ed25519") + "\r\n\n  " + Pub("rsa") +
                      "\nnot a key\n" + Pub("rsa1024") + "\n" + Pub("ecdsa");
  ParsedKeyField parsed = ParsePublicKeyField(field);
  ASSERT_EQ(parsed.keys.size(), 3u);
  EXPECT_EQ(parsed.keys[0].type, "ssh-ed25519");
  EXPECT_EQ(parsed.keys[1].type, "ssh-rsa");
  EXPECT_EQ(parsed.keys[2].type, Field(Pub("ecdsa"), 0));
  ASSERT_EQ(parsed.errors.size(), 2u);
  EXPECT_EQ(parsed.errors[0].substr(0, 8), "line 5: ");
  EXPECT_EQ(parsed.errors[1], "line 6: RSA key of 1024 bits; at least 2048 required");
}

TEST_F(Keys, CommentWithControlCharactersIsDropped) {
  PublicKey k;
  std::string line = Field(Pub("ed25519"), 0) + " " + Field(Pub("ed25519"), 1) + " evil\x1b[2J";
  ASSERT_TRUE(ParsePublicKeyLine(line, &k).ok());
  EXPECT_EQ(k.comment, "");
}

}  // namespace
}  // namespace allgo
