// [sshd] privsep_user / lookup_user / metrics_user: each an existing, unprivileged user of its
// own. Uses accounts every Debian system has (daemon = uid 1, bin = uid 2, sys = uid 3).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "service_users.h"

namespace allgo::sshd {
namespace {

using ::testing::HasSubstr;

Config WithUsers(const std::string& privsep, const std::string& lookup, const std::string& metrics = "") {
  Config c;
  c.path = "test.conf";
  c.sshd.privsep_user = privsep;
  c.sshd.lookup_user = lookup;
  if (!metrics.empty()) {
    c.sshd.metrics_user = metrics;
    c.sshd.metrics_listen = "127.0.0.1:9122";
  }
  return c;
}

std::string ErrorOf(const Config& c) {
  ServiceUsers users;
  Status st = ResolveServiceUsers(c, &users);
  EXPECT_FALSE(st.ok());
  return st.message();
}

TEST(ServiceUsers, DistinctExistingUsersResolve) {
  ServiceUsers users;
  ASSERT_TRUE(ResolveServiceUsers(WithUsers("daemon", "bin", "sys"), &users).ok());
  EXPECT_EQ(users.privsep.uid, 1u);
  EXPECT_EQ(users.lookup.uid, 2u);
  EXPECT_EQ(users.metrics.uid, 3u);
  // Without metrics_listen the metrics user is not needed, so not checked.
  ASSERT_TRUE(ResolveServiceUsers(WithUsers("daemon", "bin", "") , &users).ok());
}

TEST(ServiceUsers, RefusalsNameTheKeyAndTheFix) {
  std::string e = ErrorOf(WithUsers("allgo-no-such-user", "bin"));
  EXPECT_THAT(e, HasSubstr("test.conf: [sshd] privsep_user = allgo-no-such-user: no such user"));
  EXPECT_THAT(e, HasSubstr("adduser --system --no-create-home --group --shell /usr/sbin/nologin allgo-no-such-user"));
  EXPECT_THAT(ErrorOf(WithUsers("daemon", "nobody")), HasSubstr("[sshd] lookup_user = nobody: must be a dedicated user"));
  EXPECT_THAT(ErrorOf(WithUsers("root", "bin")), HasSubstr("[sshd] privsep_user = root: must be a dedicated user"));
  EXPECT_THAT(ErrorOf(WithUsers("daemon", "daemon")),
              HasSubstr("[sshd] lookup_user = daemon and privsep_user = daemon share a uid or gid"));
  EXPECT_THAT(ErrorOf(WithUsers("daemon", "bin", "daemon")), HasSubstr("metrics_user = daemon and privsep_user"));
  Config in_range = WithUsers("daemon", "bin");
  in_range.nss.min_uid = 1;
  in_range.nss.max_uid = 10;
  in_range.nss.uid_offset = 0;  // uids 1..10 could be webapps: the service users must not be among them
  EXPECT_THAT(ErrorOf(in_range), HasSubstr("inside the webapp uid range"));
}

}  // namespace
}  // namespace allgo::sshd
