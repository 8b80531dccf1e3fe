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
  const PasswdRecord* by_name = cache.FindByName("app", t0 + seconds(4));
  ASSERT_NE(by_name, nullptr);
  EXPECT_EQ(by_name->uid, 2001u);
  const PasswdRecord* by_uid = cache.FindByUid(2001, t0 + seconds(4));
  ASSERT_NE(by_uid, nullptr);
  EXPECT_EQ(by_uid->name, "app");
  EXPECT_EQ(by_uid, by_name) << "one record, found by name and by uid, never copied";
  EXPECT_EQ(cache.FindByName("app", t0 + seconds(5)), nullptr);
  EXPECT_EQ(cache.FindByUid(2001, t0 + seconds(6)), nullptr);
  EXPECT_EQ(cache.FindByName("other", t0), nullptr);
}

TEST(PasswdCache, TtlZeroCachesNothing) {
  PasswdCache cache;
  cache.SetTtl(seconds(0));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("app", 2001), t0);
  EXPECT_EQ(cache.FindByName("app", t0), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(PasswdCache, ARenameReplacesTheOldName) {
  PasswdCache cache;
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("old", 2001), t0);
  cache.Insert(Rec("new", 2001), t0);
  EXPECT_EQ(cache.FindByName("old", t0), nullptr);
  ASSERT_NE(cache.FindByName("new", t0), nullptr);
  const PasswdRecord* renamed = cache.FindByUid(2001, t0);
  ASSERT_NE(renamed, nullptr);
  EXPECT_EQ(renamed->name, "new");
  // A name moving to another uid takes the name away from the first one.
  cache.Insert(Rec("new", 2002), t0);
  EXPECT_EQ(cache.FindByUid(2001, t0), nullptr);
  const PasswdRecord* moved = cache.FindByName("new", t0);
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->uid, 2002u);
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
  EXPECT_NE(cache.FindByUid(2099, t0), nullptr);  // the newest entry is always kept
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
  EXPECT_NE(cache.FindByName("c", t0 + seconds(6)), nullptr);
  EXPECT_NE(cache.FindByName("d", t0 + seconds(6)), nullptr);
  EXPECT_NE(cache.FindByName("e", t0 + seconds(6)), nullptr);
  EXPECT_EQ(cache.size(), 3u);
}

TEST(PasswdCache, ChangingTheTtlEmptiesTheCache) {
  PasswdCache cache;
  cache.SetTtl(seconds(5));
  const Clock::time_point t0 = Clock::now();
  cache.Insert(Rec("a", 2001), t0);
  cache.SetTtl(seconds(60));
  EXPECT_EQ(cache.FindByName("a", t0), nullptr);
}

// CoarseClock::now() is never ahead of the true monotonic time: an entry stamped with
// precise() at insertion therefore never expires before its TTL has really passed.
TEST(CoarseClock, NowIsNeverAheadOfTheMonotonicClock) {
  for (int i = 0; i < 100000; ++i) {
    const CoarseClock::time_point before = CoarseClock::precise();
    const CoarseClock::time_point now = CoarseClock::now();
    const CoarseClock::time_point after = CoarseClock::precise();
    ASSERT_LE(before, after);
    ASSERT_LE(now, after);
    ASSERT_GT(now, after - seconds(1)) << "not the same clock origin";
  }
}

}  // namespace
}  // namespace allgo::nss
