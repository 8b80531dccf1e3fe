#include <gtest/gtest.h>

#include "allgo/names.h"

namespace allgo {

TEST(UserName, AcceptsPortableNames) {
  for (const char* name : {"sleep", "_x", "a", "web-app_2", "abcdefghijklmnopqrstuvwxyz012345"}) {
    EXPECT_TRUE(IsValidUserName(name)) << name;
  }
}

TEST(UserName, RejectsEverythingElse) {
  std::string long_name(33, 'a');
  std::string three_hundred(300, 'a');
  for (const std::string& name :
       {std::string(), long_name, three_hundred, std::string("Sleep"), std::string("1abc"),
        std::string("-abc"), std::string("a b"), std::string("a'; DROP TABLE webapps; --"),
        std::string("a:b"), std::string("a\nb"), std::string("caf\xc3\xa9"), std::string("a.b"),
        std::string("a/b"), std::string("a\0b", 3), std::string("root\n")}) {
    EXPECT_FALSE(IsValidUserName(name)) << name;
  }
}

TEST(Gecos, RemovesSeparatorsAndControlCharacters) {
  EXPECT_EQ(SanitizeGecos("Deep: learning, v2\nline two\r\t\x7f end"), "Deep learning v2line two end");
  EXPECT_EQ(SanitizeGecos("Caf\xc3\xa9 ok"), "Caf\xc3\xa9 ok");  // UTF-8 kept
  EXPECT_EQ(SanitizeGecos(std::string(400, 'x')).size(), 255u);
}

TEST(LogText, ControlCharactersCannotForgeLogLines) {
  EXPECT_EQ(SanitizeForLog("a\nb\x1b[31m"), "a?b?[31m");
  EXPECT_EQ(SanitizeForLog(std::string(300, 'x'), 10), std::string(10, 'x') + "...");
}

}  // namespace allgo
