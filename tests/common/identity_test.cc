// The one "is this a webapp uid" rule (allgo/identity.h), which every component applies.
#include "allgo/identity.h"

#include <gtest/gtest.h>

namespace allgo {
namespace {

TEST(IsWebappUid, OnlyUidsOfSomeWebappInsideTheRange) {
  NssConfig nss;  // uid_offset 2000, [2000, 59999]
  EXPECT_FALSE(IsWebappUid(nss, 0));
  EXPECT_FALSE(IsWebappUid(nss, 1999));
  EXPECT_TRUE(IsWebappUid(nss, 2000));
  EXPECT_TRUE(IsWebappUid(nss, 2001));
  EXPECT_TRUE(IsWebappUid(nss, 59999));
  EXPECT_FALSE(IsWebappUid(nss, 60000));
  EXPECT_FALSE(IsWebappUid(nss, 65534));  // nobody
  // id + uid_offset is checked before any truncation to uid_t: 2^32 + 2001 is not 2001.
  EXPECT_FALSE(IsWebappUid(nss, (uint64_t{1} << 32) + 2001));

  // A range that starts below the offset: a uid under the offset is no webapp's (its id
  // would be negative), even inside [min_uid, max_uid].
  nss.min_uid = 1000;
  nss.uid_offset = 3000;
  EXPECT_FALSE(IsWebappUid(nss, 1000));
  EXPECT_FALSE(IsWebappUid(nss, 2999));
  EXPECT_TRUE(IsWebappUid(nss, 3000));

  // Root never, whatever the range says.
  nss.min_uid = 0;
  nss.uid_offset = 0;
  EXPECT_FALSE(IsWebappUid(nss, 0));
  EXPECT_TRUE(IsWebappUid(nss, 1));
  EXPECT_EQ(WebappUidRange(nss), "[0, 59999]");
}

}  // namespace
}  // namespace allgo
