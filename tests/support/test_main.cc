// main() of every integration test binary: the private NSS view must exist before gtest
// (or anything else) starts a thread or looks up a user.
#include <gtest/gtest.h>

#include "test_support.h"

int main(int argc, char** argv) {
  allgo::test::EnterPrivateNssNamespace();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
