// Unit tests of the buffer packing (nss_allgo/pack.h): what glibc's *_r contract requires of
// the bytes we hand back.
#include "pack.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace allgo::nss {
namespace {

PasswdRecord SamplePasswd() {
  PasswdRecord r;
  r.name = "webapp1";
  r.passwd = "*";
  r.uid = 2001;
  r.gid = 65534;
  r.gecos = "My App";
  r.dir = "/";
  r.shell = "/usr/bin/allgo-shell";
  return r;
}

bool Inside(const void* p, const char* buf, size_t len) {
  const auto* c = static_cast<const char*>(p);
  return c >= buf && c < buf + len;
}

TEST(PackPasswd, FillsEveryFieldWithPointersIntoTheBuffer) {
  const PasswdRecord r = SamplePasswd();
  std::vector<char> buf(256, 'X');
  struct passwd pw {};
  ASSERT_EQ(PackPasswd(r, &pw, buf.data(), buf.size()), PackResult::kOk);
  EXPECT_STREQ(pw.pw_name, "webapp1");
  EXPECT_STREQ(pw.pw_passwd, "*");
  EXPECT_EQ(pw.pw_uid, 2001u);
  EXPECT_EQ(pw.pw_gid, 65534u);
  EXPECT_STREQ(pw.pw_gecos, "My App");
  EXPECT_STREQ(pw.pw_dir, "/");
  EXPECT_STREQ(pw.pw_shell, "/usr/bin/allgo-shell");
  for (const char* p : {pw.pw_name, pw.pw_passwd, pw.pw_gecos, pw.pw_dir, pw.pw_shell}) {
    EXPECT_TRUE(Inside(p, buf.data(), buf.size()));
    EXPECT_TRUE(Inside(p + std::strlen(p), buf.data(), buf.size()));  // the NUL too
  }
}

TEST(PackPasswd, ExactSizeFitsOneByteLessDoesNot) {
  const PasswdRecord r = SamplePasswd();
  const size_t need = PasswdBufferSize(r);
  EXPECT_EQ(need, 8u + 2u + 7u + 2u + 21u);
  std::vector<char> exact(need);
  struct passwd pw {};
  EXPECT_EQ(PackPasswd(r, &pw, exact.data(), exact.size()), PackResult::kOk);
  EXPECT_STREQ(pw.pw_shell, "/usr/bin/allgo-shell");

  // Too small: kRange and not a single byte written past the given length.
  std::vector<char> guarded(need + 16, 'G');
  struct passwd untouched {};
  EXPECT_EQ(PackPasswd(r, &untouched, guarded.data(), need - 1), PackResult::kRange);
  for (char c : guarded) EXPECT_EQ(c, 'G');
  EXPECT_EQ(untouched.pw_name, nullptr);
}

TEST(PackPasswd, TinyAndEmptyBuffers) {
  const PasswdRecord r = SamplePasswd();
  char tiny[16];
  struct passwd pw {};
  EXPECT_EQ(PackPasswd(r, &pw, tiny, sizeof tiny), PackResult::kRange);
  EXPECT_EQ(PackPasswd(r, &pw, tiny, 0), PackResult::kRange);
  EXPECT_EQ(PackPasswd(r, &pw, nullptr, 0), PackResult::kRange);
}

TEST(PackPasswd, EmptyStringsStillGetTheirOwnNul) {
  PasswdRecord r;
  r.name = "a";
  std::vector<char> buf(PasswdBufferSize(r));
  EXPECT_EQ(buf.size(), 2u + 4u);
  struct passwd pw {};
  ASSERT_EQ(PackPasswd(r, &pw, buf.data(), buf.size()), PackResult::kOk);
  EXPECT_STREQ(pw.pw_name, "a");
  EXPECT_STREQ(pw.pw_gecos, "");
  EXPECT_TRUE(Inside(pw.pw_shell, buf.data(), buf.size()));
}

GroupRecord SampleGroup(std::vector<std::string> members) {
  GroupRecord g;
  g.name = "allgo";
  g.passwd = "*";
  g.gid = 4242;
  g.members = std::move(members);
  return g;
}

TEST(PackGroup, NoMembersIsAnAlignedNullTerminatedArray) {
  const GroupRecord g = SampleGroup({});
  alignas(8) char storage[128];
  // Every misalignment of the start address.
  for (size_t offset = 0; offset < alignof(char*); ++offset) {
    char* buf = storage + offset;
    const size_t len = sizeof storage - offset;
    struct group gr {};
    ASSERT_EQ(PackGroup(g, &gr, buf, len), PackResult::kOk) << "offset " << offset;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(gr.gr_mem) % alignof(char*), 0u) << offset;
    EXPECT_TRUE(Inside(gr.gr_mem, buf, len));
    EXPECT_EQ(gr.gr_mem[0], nullptr);
    EXPECT_STREQ(gr.gr_name, "allgo");
    EXPECT_STREQ(gr.gr_passwd, "*");
    EXPECT_EQ(gr.gr_gid, 4242u);
    EXPECT_TRUE(Inside(gr.gr_name, buf, len));
  }
}

TEST(PackGroup, MembersAreCopiedInOrder) {
  const GroupRecord g = SampleGroup({"alpha", "beta", "c"});
  alignas(8) char storage[256];
  char* buf = storage + 3;
  struct group gr {};
  ASSERT_EQ(PackGroup(g, &gr, buf, sizeof storage - 3), PackResult::kOk);
  ASSERT_NE(gr.gr_mem, nullptr);
  EXPECT_STREQ(gr.gr_mem[0], "alpha");
  EXPECT_STREQ(gr.gr_mem[1], "beta");
  EXPECT_STREQ(gr.gr_mem[2], "c");
  EXPECT_EQ(gr.gr_mem[3], nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Inside(gr.gr_mem[i], buf, sizeof storage - 3));
}

TEST(PackGroup, SizeCountsPaddingAndRefusesOneByteLess) {
  const GroupRecord g = SampleGroup({"m1"});
  alignas(8) char storage[128];
  for (size_t offset = 0; offset < alignof(char*); ++offset) {
    char* buf = storage + offset;
    const size_t padding = (alignof(char*) - offset % alignof(char*)) % alignof(char*);
    const size_t need = GroupBufferSize(g, buf);
    EXPECT_EQ(need, padding + 2 * sizeof(char*) + 6 + 2 + 3) << offset;
    struct group gr {};
    EXPECT_EQ(PackGroup(g, &gr, buf, need - 1), PackResult::kRange) << offset;
    EXPECT_EQ(PackGroup(g, &gr, buf, need), PackResult::kOk) << offset;
    EXPECT_STREQ(gr.gr_mem[0], "m1");
  }
}

TEST(PackGroup, TinyBuffer) {
  const GroupRecord g = SampleGroup({});
  char tiny[4];
  struct group gr {};
  EXPECT_EQ(PackGroup(g, &gr, tiny, sizeof tiny), PackResult::kRange);
  EXPECT_EQ(PackGroup(g, &gr, nullptr, 0), PackResult::kRange);
}

}  // namespace
}  // namespace allgo::nss
