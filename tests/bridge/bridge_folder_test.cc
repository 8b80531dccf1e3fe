// The bridge folder rules that allgo-sandbox-agent and allgo-shell share (bridge_folder.h),
// and OpenChecked on real files.
#include "allgo/bridge/bridge_folder.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace allgo::bridge {
namespace {

struct stat Stat(mode_t type_and_mode, uid_t uid) {
  struct stat st{};
  st.st_mode = type_and_mode;
  st.st_uid = uid;
  return st;
}

constexpr uid_t kWebapp = 2001;

TEST(BridgeFolder, TheFolderBelongsToRootOrTheWebappAndOnlyItsOwnerWrites) {
  for (mode_t mode : {0755, 0700, 0711, 0750, 0555, 01755}) {
    EXPECT_EQ(BridgeFolderProblem(Stat(S_IFDIR | mode, kWebapp), kWebapp, "D"), "") << std::oct << mode;
    EXPECT_EQ(BridgeFolderProblem(Stat(S_IFDIR | mode, 0), kWebapp, "D"), "") << std::oct << mode;
  }
  for (mode_t mode : {0775, 0757, 0777, 01777, 0770, 0722}) {
    std::string why = BridgeFolderProblem(Stat(S_IFDIR | mode, kWebapp), kWebapp, "D");
    EXPECT_NE(why.find("must not be writable by group or others"), std::string::npos) << std::oct << mode << why;
  }
  EXPECT_EQ(BridgeFolderProblem(Stat(S_IFDIR | 0755, 2002), kWebapp, "D"),
            "D belongs to uid 2002, not to uid 0 or 2001; refusing it");
  EXPECT_EQ(BridgeFolderProblem(Stat(S_IFLNK | 0777, kWebapp), kWebapp, "D"),
            "D is a symlink, not a directory; refusing it");
}

TEST(BridgeFolder, TheSocketBelongsToRootOrTheWebapp) {
  EXPECT_EQ(AgentSocketProblem(Stat(S_IFSOCK | 0700, kWebapp), kWebapp, "S"), "");
  EXPECT_EQ(AgentSocketProblem(Stat(S_IFSOCK | 0777, 0), kWebapp, "S"), "");
  EXPECT_EQ(AgentSocketProblem(Stat(S_IFSOCK | 0700, 5), kWebapp, "S"),
            "S belongs to uid 5, not to uid 0 or 2001; refusing it");
  EXPECT_EQ(AgentSocketProblem(Stat(S_IFREG | 0600, kWebapp), kWebapp, "S"),
            "S is a regular file, not a socket; refusing it");
}

TEST(BridgeFolder, SessionFolderAndPipesArePrivateToTheClient) {
  EXPECT_EQ(SessionFolderProblem(Stat(S_IFDIR | kSessionFolderMode, kWebapp), kWebapp, "s"), "");
  EXPECT_EQ(SessionPipeProblem(Stat(S_IFIFO | kSessionPipeMode, kWebapp), kWebapp, "in"), "");
  EXPECT_EQ(SessionFolderProblem(Stat(S_IFDIR | 0710, kWebapp), kWebapp, "s"),
            "s has mode 0710: it must not be open to group or others; refusing it");
  EXPECT_EQ(SessionPipeProblem(Stat(S_IFIFO | 0604, kWebapp), kWebapp, "in"),
            "in has mode 0604: it must not be open to group or others; refusing it");
  // Root's fifo is not ours, even though root could have made it for us.
  EXPECT_EQ(SessionPipeProblem(Stat(S_IFIFO | 0600, 0), kWebapp, "in"),
            "in belongs to uid 0, not to uid 2001; refusing it");
  EXPECT_EQ(SessionPipeProblem(Stat(S_IFCHR | 0600, kWebapp), kWebapp, "out"),
            "out is a character device, not a fifo; refusing it");
  EXPECT_EQ(SessionPipeProblem(Stat(S_IFREG | 0600, kWebapp), kWebapp, "out"),
            "out is a regular file, not a fifo; refusing it");
}

class OpenCheckedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/allgo-folder-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    path_ = tmpl;
    dir_ = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dir_, 0);
  }
  void TearDown() override {
    close(dir_);
    std::filesystem::remove_all(path_);
  }
  std::string path_;
  int dir_ = -1;
};

TEST_F(OpenCheckedTest, ASymlinkIsSeenAsOneAndNeverFollowed) {
  ASSERT_EQ(mkfifo((path_ + "/target").c_str(), 0600), 0);
  ASSERT_EQ(symlink("target", (path_ + "/link").c_str()), 0);
  std::string problem;
  UniqueFd fd = OpenChecked(dir_, "link", O_RDONLY | O_NONBLOCK,
                            [](const struct stat& st) { return SessionPipeProblem(st, getuid(), "link"); },
                            &problem);
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(problem, "link is a symlink, not a fifo; refusing it");
}

TEST_F(OpenCheckedTest, OpensTheInodeThatWasCheckedWithTheAskedFlags) {
  ASSERT_EQ(mkfifo((path_ + "/out").c_str(), 0600), 0);
  std::string problem;
  UniqueFd fd = OpenChecked(dir_, "out", O_RDONLY | O_NONBLOCK,
                            [](const struct stat& st) { return SessionPipeProblem(st, getuid(), "out"); },
                            &problem);
  ASSERT_TRUE(fd.valid()) << problem;
  struct stat by_fd, by_name;
  ASSERT_EQ(fstat(fd.get(), &by_fd), 0);
  ASSERT_EQ(stat((path_ + "/out").c_str(), &by_name), 0);
  EXPECT_EQ(by_fd.st_ino, by_name.st_ino);
  int flags = fcntl(fd.get(), F_GETFL);
  EXPECT_EQ(flags & O_ACCMODE, O_RDONLY);
  EXPECT_NE(flags & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0);
  // A writer without a reader: the fifo's own ENXIO comes back, not a made-up error.
  ASSERT_EQ(mkfifo((path_ + "/in").c_str(), 0600), 0);
  UniqueFd in = OpenChecked(dir_, "in", O_WRONLY | O_NONBLOCK, [](const struct stat&) { return std::string(); },
                            &problem);
  EXPECT_FALSE(in.valid());
  EXPECT_EQ(errno, ENXIO);
  EXPECT_EQ(problem, "cannot open in: No such device or address");
}

TEST_F(OpenCheckedTest, TheCheckersVerdictIsTheProblem) {
  std::string problem;
  UniqueFd fd = OpenChecked(dir_, "missing", O_RDONLY, [](const struct stat&) { return std::string(); }, &problem);
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(problem, "cannot look at missing: No such file or directory");
  int f = open((path_ + "/file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(f, 0);
  close(f);
  fd = OpenChecked(dir_, "file", O_RDONLY, [](const struct stat&) { return std::string("no thanks"); }, &problem);
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(problem, "no thanks");
}

}  // namespace
}  // namespace allgo::bridge
