// Unit tests of the module's positive cache (nss_allgo/cache.h), driven by a fake clock.
#include "cache.h"

#include <gtest/gtest.h>

#include <string>

namespace allgo::nss {
namespace {

using Clock = PasswdCache::Clock;
using std::chrono::seconds;

PasswdRecord Rec(const std::string& name, uid_t uid) {
  PasswdRecord r;
  r.name = name;
  r.uid = uid;
  r.shell = "/bin/sh";
  return r;
}

TEST(PasswdCache, FindsByNameAndUidUntilTheTtlRunsOut) {
  PasswdCache cache;
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("app", 2001), t0);
  PasswdRecord out;
  ASSERT_TRUE(cache.FindByName("app", t0 + seconds(4), &out));
  EXPECT_EQ(out.uid, 2001u);
  ASSERT_TRUE(cache.FindByUid(2001, t0 + seconds(4), &out));
  EXPECT_EQ(out.name, "app");
  EXPECT_FALSE(cache.FindByName("app", t0 + seconds(5), &out));
  EXPECT_FALSE(cache.FindByUid(2001, t0 + seconds(6), &out));
  EXPECT_FALSE(cache.FindByName("other", t0, &out));
}

TEST(PasswdCache, TtlZeroCachesNothing) {
  PasswdCache cache;
  cache.SetTtl(seconds(0));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("app", 2001), t0);
  PasswdRecord out;
  EXPECT_FALSE(cache.FindByName("app", t0, &out));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(PasswdCache, ARenameReplacesTheOldName) {
  PasswdCache cache;
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("old", 2001), t0);
  cache.Insert(Rec("new", 2001), t0);
  PasswdRecord out;
  EXPECT_FALSE(cache.FindByName("old", t0, &out));
  ASSERT_TRUE(cache.FindByName("new", t0, &out));
  ASSERT_TRUE(cache.FindByUid(2001, t0, &out));
  EXPECT_EQ(out.name, "new");
  // A name moving to another uid takes the name away from the first one.
  cache.Insert(Rec("new", 2002), t0);
  EXPECT_FALSE(cache.FindByUid(2001, t0, &out));
  ASSERT_TRUE(cache.FindByName("new", t0, &out));
  EXPECT_EQ(out.uid, 2002u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(PasswdCache, StaysBounded) {
  PasswdCache cache(8);
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  for (uid_t i = 0; i < 100; ++i) {
    cache.Insert(Rec("app" + std::to_string(i), 2000 + i), t0);
    EXPECT_LE(cache.size(), 8u);
  }
  PasswdRecord out;
  EXPECT_TRUE(cache.FindByUid(2099, t0, &out));  // the newest entry is always kept
}

TEST(PasswdCache, ExpiredEntriesGoFirstWhenFull) {
  PasswdCache cache(4);
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("a", 2001), t0);
  cache.Insert(Rec("b", 2002), t0);
  cache.Insert(Rec("c", 2003), t0 + seconds(4));
  cache.Insert(Rec("d", 2004), t0 + seconds(4));
  cache.Insert(Rec("e", 2005), t0 + seconds(6));  // a and b have expired: they make room
  PasswdRecord out;
  EXPECT_TRUE(cache.FindByName("c", t0 + seconds(6), &out));
  EXPECT_TRUE(cache.FindByName("d", t0 + seconds(6), &out));
  EXPECT_TRUE(cache.FindByName("e", t0 + seconds(6), &out));
  EXPECT_EQ(cache.size(), 3u);
}

TEST(PasswdCache, ChangingTheTtlEmptiesTheCache) {
  PasswdCache cache;
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("a", 2001), t0);
  cache.SetTtl(seconds(60));
  PasswdRecord out;
  EXPECT_FALSE(cache.FindByName("a", t0, &out));
}

}  // namespace
}  // namespace allgo::nss
