// Integration tests of libnss_allgo.so.2 through glibc, as users meet it: getent, id, ls, su and
// nss-lookup (threads, fork, a long-lived process) run as children inside the private NSS
// namespace (`passwd: files allgo`, `group: files allgo`), against the real MariaDB fixture.
//
// Every run also checks that the module wrote nothing to stdout/stderr of its host program.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace allgo::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint32_t kUidOffset = 3000;
constexpr uint32_t kMinUid = 3000;
constexpr uint32_t kMaxUid = 59999;
constexpr gid_t kGid = 4242;
const char* const kShell = "/usr/bin/allgo-shell-test";
const char* const kHome = "/srv/allgo-home";

std::string NssSection(unsigned cache_ttl, gid_t gid = kGid, uint32_t uid_offset = kUidOffset) {
  return "[nss]\nuid_offset = " + std::to_string(uid_offset) +
         "\nmin_uid = " + std::to_string(kMinUid) + "\nmax_uid = " + std::to_string(kMaxUid) +
         "\ngid = " + std::to_string(gid) + "\ngroup_name = allgo\nshell = " + kShell +
         "\nhome = " + kHome + "\ncache_ttl = " + std::to_string(cache_ttl) + "\n";
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> Split(const std::string& line, char sep) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, sep)) fields.push_back(field);
  if (!line.empty() && line.back() == sep) fields.push_back("");
  return fields;
}

// How long a running process may keep using a config after the file changed (the module
// re-checks it once per Module::kConfigRecheck, so a cache hit needs no stat()), plus 100 ms.
const auto kConfigRecheckAndMargin = milliseconds(1100);

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The connect_timeout of the fixture's [mysql] section (what an outage may cost a lookup).
unsigned FixtureConnectTimeout() {
  std::smatch m;
  const std::string section = TestDatabase::Get().MysqlConfigSection();
  if (std::regex_search(section, m, std::regex("connect_timeout\\s*=\\s*(\\d+)"))) {
    return static_cast<unsigned>(std::stoul(m[1]));
  }
  return 2;  // the documented default
}

// A long-lived `nss-lookup serve` child: one request line in, one answer line out.
class LookupServer {
 public:
  explicit LookupServer(const std::map<std::string, std::string>& env = {}) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) ADD_FAILURE() << "pipe";
    const std::string exe = Artifact("nss-lookup");
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // Dies with the test process, however that one ends.
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
      dup2(in[0], 0);
      dup2(out[1], 1);
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      execl(exe.c_str(), "nss-lookup", "serve", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
  }
  ~LookupServer() {
    close(to_child_);  // EOF: the child exits
    const Clock::time_point deadline = Clock::now() + seconds(10);
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    close(from_child_);
  }
  LookupServer(const LookupServer&) = delete;
  LookupServer& operator=(const LookupServer&) = delete;

  // Sends one request; returns the answer line, or "<no answer>" if the child died or did
  // not answer within 15 s (a hang is a failure, not a wait).
  std::string Ask(const std::string& request) {
    const std::string line = request + "\n";
    if (write(to_child_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return "<no answer: write failed>";
    }
    const Clock::time_point deadline = Clock::now() + seconds(15);
    for (;;) {
      const size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        std::string answer = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return answer;
      }
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return "<no answer: timeout>";
      struct pollfd p = {from_child_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[512];
      const ssize_t n = read(from_child_, buf, sizeof buf);
      if (n <= 0) return "<no answer: child gone>";
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

  // Still running (a SIGPIPE or crash inside the module would have killed it).
  bool alive() {
    int status = 0;
    return waitpid(pid_, &status, WNOHANG) == 0;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string pending_;
};

// A unix socket that accepts connections and never says a word: a hung database server.
class SilentServer {
 public:
  explicit SilentServer(const std::string& path) : path_(path) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd_, 64) != 0) {
      ADD_FAILURE() << "cannot listen on " << path;
    }
    acceptor_ = std::thread([this] {
      while (!stop_) {
        struct pollfd p = {listen_fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) held_.push_back(fd);  // kept open, never read, never written
      }
    });
  }
  ~SilentServer() {
    stop_ = true;
    acceptor_.join();
    for (int fd : held_) close(fd);
    close(listen_fd_);
    unlink(path_.c_str());
  }
  size_t accepted() const { return held_.size(); }

 private:
  std::string path_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::vector<int> held_;
  std::thread acceptor_;
};

class NssTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.Clear();
    WriteAllgoConfig(db_.ConfigText(NssSection(/*cache_ttl=*/0)));
    owner_ = db_.AddUser("owner@example.org");
  }

  // Runs `getent ARGS...` (or another command) and checks the module printed nothing of its
  // own: getent writes entries to stdout and nothing to stderr.
  RunResult Getent(std::vector<std::string> args, const RunOptions& options = {}) {
    args.insert(args.begin(), {"getent", "--"});  // keys may start with '-'
    RunResult r = allgo::test::Run(args, options);
    EXPECT_EQ(r.err, "") << "stderr of getent " << args[2];
    return r;
  }

  uid_t UidOf(uint32_t id) const { return id + kUidOffset; }
  std::string Line(const std::string& name, uint32_t id, const std::string& gecos) const {
    return name + ":*:" + std::to_string(UidOf(id)) + ":" + std::to_string(kGid) + ":" + gecos +
           ":" + kHome + ":" + kShell;
  }
  // A config file outside /etc for one child (ALLGO_SSH_CONFIG), e.g. a broken one.
  RunOptions WithConfig(const std::string& text) {
    WriteFile(tmp_ / "allgo-ssh.conf", text);
    RunOptions options;
    options.env["ALLGO_SSH_CONFIG"] = tmp_ / "allgo-ssh.conf";
    return options;
  }

  TestDatabase& db_ = TestDatabase::Get();
  TempDir tmp_{"allgo-nss-test"};
  uint32_t owner_ = 0;
};

// Restarts the database when a test that stopped it ends, whatever happened.
struct DatabaseRestarter {
  ~DatabaseRestarter() { TestDatabase::Get().Start(); }
};

// ---- lookups through glibc ------------------------------------------------------------------

TEST_F(NssTest, GetentPasswdByNameAndUid) {
  const uint32_t id = db_.AddWebapp("webapp1", owner_, "running", "My Web App");
  RunResult r = Getent({"passwd", "webapp1"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("webapp1", id, "My Web App") + "\n");

  r = Getent({"passwd", std::to_string(UidOf(id))});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("webapp1", id, "My Web App") + "\n");
}

TEST_F(NssTest, UnknownNameAndUidAreNotFound) {
  db_.AddWebapp("webapp1", owner_);
  for (const std::string& key : {std::string("nosuchapp"), std::to_string(UidOf(999)),
                                 std::to_string(kMaxUid + 1), std::string("4000000000")}) {
    const RunResult r = Getent({"passwd", key});
    EXPECT_EQ(r.exit_code, 2) << key;  // getent: "key not found"
    EXPECT_EQ(r.out, "") << key;
  }
  // System accounts still come from files.
  const RunResult root = Getent({"passwd", "root"});
  EXPECT_EQ(root.exit_code, 0);
  EXPECT_EQ(root.out.rfind("root:x:0:0:", 0), 0u) << root.out;
}

TEST_F(NssTest, EnumerationListsFilesThenEveryWebappOnce) {
  std::vector<std::string> expected;
  for (int i = 0; i < 25; ++i) {
    const std::string name = "app" + std::to_string(i);
    const uint32_t id = db_.AddWebapp(name, owner_, "idle", "App " + std::to_string(i));
    expected.push_back(Line(name, id, "App " + std::to_string(i)));
  }
  const RunResult r = Getent({"passwd"});
  ASSERT_EQ(r.exit_code, 0);
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front().rfind("root:", 0), 0u);
  // The webapps come after the files entries, in id order, each exactly once.
  const auto first = std::find(lines.begin(), lines.end(), expected.front());
  ASSERT_NE(first, lines.end()) << r.out;
  EXPECT_EQ(std::vector<std::string>(first, lines.end()), expected);
}

TEST_F(NssTest, IdShowsUidAndTheConfiguredGroup) {
  const uint32_t id = db_.AddWebapp("webapp1", owner_);
  const RunResult r = allgo::test::Run({"id", "webapp1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string uid = std::to_string(UidOf(id));
  const std::string gid = std::to_string(kGid);
  EXPECT_EQ(r.out, "uid=" + uid + "(webapp1) gid=" + gid + "(allgo) groups=" + gid + "(allgo)\n");
}

TEST_F(NssTest, LsShowsWebappNamesAsOwners) {
  const uint32_t a = db_.AddWebapp("alpha", owner_);
  const uint32_t b = db_.AddWebapp("beta", owner_);
  TempDir dir("allgo-ls");
  for (int i = 0; i < 50; ++i) {
    const std::string file = dir / ("f" + std::to_string(i));
    WriteFile(file, "x");
    ASSERT_EQ(chown(file.c_str(), UidOf(i % 2 == 0 ? a : b), kGid), 0);
  }
  const RunResult r = allgo::test::Run({"ls", "-l", dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  int alpha = 0, beta = 0;
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("total", 0) == 0) continue;
    std::istringstream fields(line);
    std::string mode, links, user, group;
    fields >> mode >> links >> user >> group;
    EXPECT_EQ(group, "allgo") << line;
    if (user == "alpha") ++alpha;
    if (user == "beta") ++beta;
  }
  EXPECT_EQ(alpha, 25);
  EXPECT_EQ(beta, 25);
}

TEST_F(NssTest, GroupOfTheConfiguredGidWhenNoOtherSourceHasIt) {
  RunResult r = Getent({"group", std::to_string(kGid)});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "allgo:*:" + std::to_string(kGid) + ":\n");
  r = Getent({"group", "allgo"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "allgo:*:" + std::to_string(kGid) + ":\n");
  r = Getent({"group"});
  EXPECT_EQ(r.exit_code, 0);
  const std::vector<std::string> lines = Lines(r.out);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), "allgo:*:" + std::to_string(kGid) + ":"), 1);
  // Other gids are not ours.
  EXPECT_EQ(Getent({"group", std::to_string(kGid + 1)}).exit_code, 2);
}

TEST_F(NssTest, GroupFromFilesWinsForItsGid) {
  // gid 65534 is nogroup in /etc/group: the module does not add a second name for it,
  // neither by name, nor by gid, nor in the enumeration.
  const RunOptions options = WithConfig(db_.ConfigText(NssSection(0, 65534)));
  RunResult r = Getent({"group", "allgo"}, options);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  r = Getent({"group", "65534"}, options);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("nogroup:", 0), 0u) << r.out;
  r = Getent({"group"}, options);
  EXPECT_EQ(r.exit_code, 0);
  int with_gid = 0;
  for (const std::string& line : Lines(r.out)) {
    const std::vector<std::string> f = Split(line, ':');
    if (f.size() >= 3 && f[2] == "65534") ++with_gid;
  }
  EXPECT_EQ(with_gid, 1) << r.out;
  // A webapp's primary group then shows as nogroup.
  db_.AddWebapp("webapp1", owner_);
  r = allgo::test::Run({"id", "-gn", "webapp1"}, options);
  EXPECT_EQ(r.out, "nogroup\n");
}

// ---- hostile and invalid data ----------------------------------------------------------------

TEST_F(NssTest, InvalidRowsDoNotExist) {
  const uint32_t good = db_.AddWebapp("good", owner_);
  db_.AddWebapp("Bad.Name", owner_);
  db_.AddWebapp("9starts-with-digit", owner_);
  db_.AddWebapp("has space", owner_);
  db_.AddWebapp("waytoolongwaytoolongwaytoolongwaytoolong", owner_);
  // An id whose uid falls above max_uid.
  db_.Exec("INSERT INTO allgo.webapps (id, name, docker_name, user_id) VALUES (" +
           std::to_string(kMaxUid - kUidOffset + 1) + ", 'Too high', 'toohigh', " +
           std::to_string(owner_) + ")");
  for (const std::string& key :
       {std::string("Bad.Name"), std::string("bad.name"), std::string("9starts-with-digit"),
        std::string("has space"), std::string("waytoolongwaytoolongwaytoolongwaytoolong"),
        std::string("toohigh"), std::to_string(kMaxUid + 1)}) {
    const RunResult r = Getent({"passwd", key});
    EXPECT_EQ(r.exit_code, 2) << key;
    EXPECT_EQ(r.out, "") << key;
  }
  // The enumeration holds the valid webapp only.
  const RunResult all = Getent({"passwd"});
  std::vector<std::string> ours;
  for (const std::string& line : Lines(all.out)) {
    const std::vector<std::string> f = Split(line, ':');
    if (f.size() == 7 && f[6] == kShell) ours.push_back(f[0]);
  }
  EXPECT_EQ(ours, std::vector<std::string>{"good"});
  EXPECT_EQ(Getent({"passwd", std::to_string(UidOf(good))}).exit_code, 0);
}

TEST_F(NssTest, HostileNamesAreSimplyNotFound) {
  const uint32_t id = db_.AddWebapp("webapp1", owner_);
  const std::vector<std::string> names = {
      "x' OR '1'='1",  "webapp1' -- ", "webapp1'; DROP TABLE webapps; --", "w_bapp1",
      "webapp%",       "%",            "\\",                               "webapp1\\",
      "\"webapp1\"",   "WEBAPP1",      "webapp1 ",                         " webapp1",
      "../etc/passwd", "webapp1\t",    std::string(300, 'a'),              std::string(300, 'x') + "'",
      "webapp1:0:0",   "-webapp1",     "webäpp1"};
  for (const std::string& name : names) {
    const RunResult r = Getent({"passwd", name});
    EXPECT_EQ(r.exit_code, 2) << name;
    EXPECT_EQ(r.out, "") << name;
  }
  // The table is intact and the module still answers.
  const RunResult r = Getent({"passwd", "webapp1"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("webapp1", id, "webapp1") + "\n");
}

TEST_F(NssTest, DisplayNameCannotBreakThePasswdFormat) {
  const std::string evil = "Evil:App,Room 1\nroot::0:0:x:/:/bin/sh\t\x01\x7f" "end";
  const uint32_t id = db_.AddWebapp("evil", owner_, "running", evil);
  const RunResult r = Getent({"passwd", "evil"});
  ASSERT_EQ(r.exit_code, 0);
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  const std::vector<std::string> fields = Split(lines[0], ':');
  ASSERT_EQ(fields.size(), 7u) << lines[0];
  EXPECT_EQ(fields[0], "evil");
  EXPECT_EQ(fields[2], std::to_string(UidOf(id)));
  EXPECT_EQ(fields[4], "EvilAppRoom 1root00x//bin/shend");
  // The enumeration line too.
  const RunResult all = Getent({"passwd"});
  for (const std::string& line : Lines(all.out)) {
    EXPECT_EQ(Split(line, ':').size(), 7u) << line;
  }
}

// The identity rule (DESIGN.md, identity.h): anyone who can create a webapp picks its name, so
// a webapp named like an account another source already has — root, daemon, a local user —
// or whose uid a local account owns, does not exist for the module. Checked with allgo both
// after and before `files` in nsswitch.conf, so the module itself is asked every time.
TEST_F(NssTest, WebappsClaimingAnotherSourcesNameOrUidDoNotExist) {
  const uint32_t good = db_.AddWebapp("good", owner_);
  const uint32_t root_app = db_.AddWebapp("root", owner_);
  const uint32_t daemon_app = db_.AddWebapp("daemon", owner_);
  const uint32_t local_app = db_.AddWebapp("localdev", owner_);
  const uint32_t victim = db_.AddWebapp("victim", owner_);
  const LocalAccount localdev("localdev", 1500);
  const LocalAccount squatter("squatter", UidOf(victim));  // owns the uid victim would get
  const std::string nsswitch = ReadFile("/etc/nsswitch.conf");
  struct RestoreNsswitch {
    std::string text;
    ~RestoreNsswitch() { WriteFile("/etc/nsswitch.conf", text); }
  } restore{nsswitch};

  for (const std::string order : {"files allgo", "allgo files"}) {
    SCOPED_TRACE("passwd: " + order);
    std::string edited;
    std::istringstream in(nsswitch);
    for (std::string line; std::getline(in, line);) {
      edited += (line.rfind("passwd:", 0) == 0 ? "passwd: " + order : line) + "\n";
    }
    WriteFile("/etc/nsswitch.conf", edited);

    // By name: the other source's account, never the webapp.
    EXPECT_EQ(Getent({"passwd", "root"}).out.rfind("root:x:0:0:", 0), 0u);
    EXPECT_EQ(Getent({"passwd", "daemon"}).out.rfind("daemon:x:1:1:", 0), 0u);
    EXPECT_EQ(Getent({"passwd", "localdev"}).out.rfind("localdev:x:1500:", 0), 0u);
    EXPECT_EQ(Getent({"passwd", "squatter"}).out.rfind("squatter:x:" + std::to_string(UidOf(victim)), 0), 0u);
    const RunResult victim_by_name = Getent({"passwd", "victim"});
    EXPECT_EQ(victim_by_name.exit_code, 2) << victim_by_name.out;
    // By uid: the uids these rows would get are nobody's (or the squatter's).
    for (uint32_t id : {root_app, daemon_app, local_app}) {
      const RunResult r = Getent({"passwd", std::to_string(UidOf(id))});
      EXPECT_EQ(r.exit_code, 2) << id << ": " << r.out;
    }
    EXPECT_EQ(Getent({"passwd", std::to_string(UidOf(victim))}).out.rfind("squatter:", 0), 0u);
    // The enumeration holds each name once, and of the webapps only the good one.
    std::vector<std::string> ours;
    std::map<std::string, int> seen;
    for (const std::string& line : Lines(Getent({"passwd"}).out)) {
      const std::vector<std::string> f = Split(line, ':');
      ++seen[f[0]];
      if (f.size() == 7 && f[6] == kShell) ours.push_back(f[0]);
    }
    EXPECT_EQ(ours, std::vector<std::string>{"good"});
    for (const char* name : {"root", "daemon", "localdev", "squatter"}) EXPECT_EQ(seen[name], 1) << name;
    // The unclaimed webapp is served as always.
    EXPECT_EQ(Getent({"passwd", "good"}).out, Line("good", good, "good") + "\n");
  }
}

// ALLGO_NSS_BYPASS (identity.h) hides the module: how our programs see the other sources.
TEST_F(NssTest, BypassVariableHidesWebappsOnly) {
  db_.AddWebapp("good", owner_);
  RunOptions bypass;
  bypass.env["ALLGO_NSS_BYPASS"] = "1";
  EXPECT_EQ(Getent({"passwd", "good"}, bypass).exit_code, 2);
  EXPECT_EQ(Getent({"passwd", "root"}, bypass).exit_code, 0);
  EXPECT_EQ(Getent({"passwd", "good"}).exit_code, 0);
}

// Decision (docs/nss.md): NSS describes webapps, not who may log in. A webapp whose owner is
// inactive still has its passwd entry (its files keep a name in `ls -l`); allgo-authkeys
// and the servers refuse the login.
TEST_F(NssTest, WebappOfAnInactiveOwnerStillExists) {
  const uint32_t inactive = db_.AddUser("gone@example.org", /*active=*/false);
  const uint32_t id = db_.AddWebapp("orphan", inactive);
  const RunResult r = Getent({"passwd", "orphan"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("orphan", id, "orphan") + "\n");
}

// ---- glibc's buffer contract ------------------------------------------------------------------

TEST_F(NssTest, TinyBufferGivesErangeAndGlibcRetries) {
  // In this very process, straight through glibc's getpwnam_r.
  const uint32_t id = db_.AddWebapp("webapp1", owner_, "running", "A display name");
  char tiny[16];
  struct passwd pw {};
  struct passwd* result = nullptr;
  EXPECT_EQ(getpwnam_r("webapp1", &pw, tiny, sizeof tiny, &result), ERANGE);
  EXPECT_EQ(result, nullptr);
  EXPECT_EQ(getpwuid_r(UidOf(id), &pw, tiny, sizeof tiny, &result), ERANGE);
  EXPECT_EQ(result, nullptr);
  const struct passwd* full = getpwnam("webapp1");
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->pw_uid, UidOf(id));
  EXPECT_STREQ(full->pw_gecos, "A display name");
  full = getpwuid(UidOf(id));
  ASSERT_NE(full, nullptr);
  EXPECT_STREQ(full->pw_name, "webapp1");

  // The group entry too.
  struct group gr {};
  struct group* gresult = nullptr;
  char small[8];
  EXPECT_EQ(getgrgid_r(kGid, &gr, small, sizeof small, &gresult), ERANGE);
  const struct group* g = getgrgid(kGid);
  ASSERT_NE(g, nullptr);
  EXPECT_STREQ(g->gr_name, "allgo");
  ASSERT_NE(g->gr_mem, nullptr);
  EXPECT_EQ(g->gr_mem[0], nullptr);

  // And in a separate process (nothing cached by this one).
  const RunResult r = allgo::test::Run({Artifact("nss-lookup"), "erange", "webapp1"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(NssTest, EnumerationSurvivesErangeAndInterleavedLookups) {
  for (int i = 0; i < 30; ++i) db_.AddWebapp("app" + std::to_string(i), owner_);
  const uint32_t other = db_.AddWebapp("other", owner_);
  (void)other;
  const RunResult plain = allgo::test::Run({Artifact("nss-lookup"), "enum"});
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  const std::vector<std::string> names = Lines(plain.out);
  ASSERT_NE(std::find(names.begin(), names.end(), "app29"), names.end());
  ASSERT_NE(std::find(names.begin(), names.end(), "root"), names.end());
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size())
      << "an entry came twice";

  // ERANGE on every entry first: nothing skipped, nothing repeated.
  const RunResult tiny = allgo::test::Run({Artifact("nss-lookup"), "enum", "--tiny-first"});
  EXPECT_EQ(tiny.exit_code, 0) << tiny.out;
  EXPECT_EQ(Lines(tiny.out), names);
  // A getpwnam between entries does not move the cursor.
  const RunResult mixed = allgo::test::Run({Artifact("nss-lookup"), "enum", "--interleave", "other"});
  EXPECT_EQ(mixed.exit_code, 0) << mixed.out;
  EXPECT_EQ(Lines(mixed.out), names);
  EXPECT_EQ(tiny.err + mixed.err, "");
}

// ---- living inside other processes -------------------------------------------------------------

TEST_F(NssTest, ModuleFdsAreCloexecAndNeverStdio) {
  db_.AddWebapp("webapp1", owner_);
  // Cache off and on: either way the pooled connection stays open after the lookup.
  for (unsigned ttl : {0u, 30u}) {
    const RunResult r =
        allgo::test::Run({Artifact("nss-lookup"), "fds", "webapp1"}, WithConfig(db_.ConfigText(NssSection(ttl))));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.rfind("ok ", 0), 0u) << r.out;
    EXPECT_NE(r.out, "ok 0\n") << "expected the module's connection to be open";
    EXPECT_EQ(r.err, "");
  }
}

TEST_F(NssTest, UnprivilegedProcessesResolveWebapps) {
  // The config is world-readable (0644): a process running as nobody resolves webapps.
  const uint32_t id = db_.AddWebapp("webapp1", owner_, "running", "Web App");
  RunOptions as_nobody;
  as_nobody.uid = 65534;
  as_nobody.gid = 65534;
  const RunResult r = Getent({"passwd", "webapp1"}, as_nobody);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("webapp1", id, "Web App") + "\n");
}

// ---- setuid programs ---------------------------------------------------------------------------

constexpr uid_t kNobody = 65534;

RunOptions AsNobody() {
  RunOptions options;
  options.uid = kNobody;
  options.gid = kNobody;
  return options;
}

// A library of an unprivileged user's, and the environment that tells Connector/C to load it:
// LIBMYSQL_PLUGINS=allgo_marker with MARIADB_PLUGIN_DIR=<its folder> makes the client library
// dlopen("<folder>/allgo_marker.so") when it initialises. The library (marker_plugin.cc) writes
// the file $ALLGO_TEST_MARKER when loaded; each run gets its own marker file.
class PluginTrap {
 public:
  PluginTrap() {
    namespace fs = std::filesystem;
    fs::create_directory(plugins_dir());
    fs::copy_file(Artifact("connector-marker-plugin.so"), plugins_dir() + "/allgo_marker.so");
    chmod((plugins_dir() + "/allgo_marker.so").c_str(), 0644);
    // Markers are written by whoever runs the library: nobody in an ordinary process.
    fs::create_directory(markers_dir());
    EXPECT_EQ(chown(markers_dir().c_str(), kNobody, kNobody), 0);
  }

  // `options` plus the trap's environment for run `run`.
  RunOptions Arm(const std::string& run, RunOptions options) const {
    options.env["LIBMYSQL_PLUGINS"] = "allgo_marker";
    options.env["MARIADB_PLUGIN_DIR"] = plugins_dir();
    options.env["ALLGO_TEST_MARKER"] = Marker(run);
    options.env["LC_ALL"] = "C";  // su's messages in English
    return options;
  }
  // What the library wrote during run `run` ("ruid=R euid=E"), or "" if it never ran.
  std::string Sprung(const std::string& run) const {
    return access(Marker(run).c_str(), F_OK) == 0 ? ReadFile(Marker(run)) : "";
  }

 private:
  std::string plugins_dir() const { return dir_ / "plugins"; }
  std::string markers_dir() const { return dir_ / "markers"; }
  std::string Marker(const std::string& run) const { return markers_dir() + "/" + run; }

  TempDir dir_{"allgo-plugin-trap"};  // 0755: nobody can traverse it
};

// A root-owned setuid copy of nss-lookup (a setuid program that reports what happened inside
// it), reachable only by root and group nogroup: a folder root:nogroup 0750.
class SetuidLookup {
 public:
  SetuidLookup() {
    EXPECT_EQ(chown(dir_.path().c_str(), 0, kNobody), 0);
    EXPECT_EQ(chmod(dir_.path().c_str(), 0750), 0);
    std::filesystem::copy_file(Artifact("nss-lookup"), path());
    EXPECT_EQ(chown(path().c_str(), 0, 0), 0);
    EXPECT_EQ(chmod(path().c_str(), 04755), 0);
  }
  std::string path() const { return dir_ / "nss-lookup"; }

 private:
  TempDir dir_{"allgo-setuid"};
};

TEST_F(NssTest, ConnectorPluginVariablesLoadCodeIntoOrdinaryProcesses) {
  // The control: the environment below really makes Connector/C run a library of the
  // caller's, in any process that is not setuid. (Harmless there: the library runs as the
  // user who could run it anyway.) Without this, a missing marker below would prove nothing.
  const uint32_t id = db_.AddWebapp("webapp1", owner_, "running", "Web App");
  const PluginTrap trap;
  const RunResult r = Getent({"passwd", "webapp1"}, trap.Arm("getent", AsNobody()));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, Line("webapp1", id, "Web App") + "\n");
  EXPECT_EQ(trap.Sprung("getent"), "ruid=65534 euid=65534\n");
}

TEST_F(NssTest, SetuidProgramsNeverLoadConnectorPlugins) {
  db_.AddWebapp("webapp1", owner_);
  const PluginTrap trap;

  // su run by root is not a secure-execution process: it resolves the webapp through the
  // module, Connector/C included (so su does reach our lookup with the environment intact).
  RunResult r = allgo::test::Run({"su", "-s", "/bin/true", "webapp1", "-c", "true"},
                                 trap.Arm("su-by-root", {}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(trap.Sprung("su-by-root"), "ruid=0 euid=0\n");

  // The same su run by nobody: setuid root, so the library would run as root. su looks the
  // webapp up before it asks for any password; the module answers UNAVAIL without touching
  // Connector/C, so su reports that the user does not exist, and nothing was loaded.
  r = allgo::test::Run({"su", "webapp1", "-c", "true"}, trap.Arm("su-by-nobody", AsNobody()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("user webapp1 does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(trap.Sprung("su-by-nobody"), "");

  // Inside a setuid program: it is a secure-execution process running as root, glibc did
  // load the module for the lookup, the module answered "service unavailable" (ENOENT, like a
  // missing config) — and the library still never ran.
  const SetuidLookup lookup;
  r = allgo::test::Run({lookup.path(), "secure", "webapp1"}, trap.Arm("setuid", AsNobody()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "at_secure=1 ruid=65534 euid=0 module=loaded lookup=errno=ENOENT\n");
  EXPECT_EQ(trap.Sprung("setuid"), "");

  // The same program without the setuid bit's effect (run by root) resolves the webapp.
  r = allgo::test::Run({lookup.path(), "secure", "webapp1"}, trap.Arm("root", {}));
  EXPECT_EQ(r.out, "at_secure=0 ruid=0 euid=0 module=loaded lookup=found\n");
  EXPECT_EQ(trap.Sprung("root"), "ruid=0 euid=0\n");
}

// ---- threads, fork -----------------------------------------------------------------------------

std::vector<std::string> LookupArgs(const std::vector<std::pair<std::string, uid_t>>& apps) {
  std::vector<std::string> args;
  for (const auto& [name, uid] : apps) args.push_back(name + ":" + std::to_string(uid));
  return args;
}

TEST_F(NssTest, ManyThreadsLookUpConcurrently) {
  std::vector<std::pair<std::string, uid_t>> apps;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "thr" + std::to_string(i);
    apps.emplace_back(name, UidOf(db_.AddWebapp(name, owner_)));
  }
  apps.emplace_back("root", 0);  // files answers in between
  std::vector<std::string> argv = {Artifact("nss-lookup"), "threads", "8", "15"};
  const std::vector<std::string> pairs = LookupArgs(apps);
  argv.insert(argv.end(), pairs.begin(), pairs.end());

  // Every lookup a database round trip (cache off), then with the cache on.
  RunResult r = allgo::test::Run(argv, {.timeout_seconds = 120});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "ok " + std::to_string(8 * 15 * 2 * apps.size()) + "\n");
  EXPECT_EQ(r.err, "");
  r = allgo::test::Run(argv, WithConfig(db_.ConfigText(NssSection(/*cache_ttl=*/30))));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST_F(NssTest, ForkedChildrenLookUpWhileParentThreadsDo) {
  std::vector<std::pair<std::string, uid_t>> apps;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "frk" + std::to_string(i);
    apps.emplace_back(name, UidOf(db_.AddWebapp(name, owner_)));
  }
  std::vector<std::string> argv = {Artifact("nss-lookup"), "fork", "25"};
  const std::vector<std::string> pairs = LookupArgs(apps);
  argv.insert(argv.end(), pairs.begin(), pairs.end());
  for (unsigned ttl : {0u, 30u}) {
    const RunResult r = allgo::test::Run(argv, WithConfig(db_.ConfigText(NssSection(ttl))));
    EXPECT_EQ(r.exit_code, 0) << "cache_ttl " << ttl << ": " << r.out;
    EXPECT_EQ(r.out, "ok\n");
    EXPECT_EQ(r.err, "");
  }
}

// ---- outages --------------------------------------------------------------------------------

TEST_F(NssTest, DatabaseStoppedMeansNotFoundQuicklyAndSilently) {
  db_.AddWebapp("webapp1", owner_);
  DatabaseRestarter restart;
  db_.Stop();
  const double limit = FixtureConnectTimeout() + 1.5;

  Clock::time_point start = Clock::now();
  RunResult r = Getent({"passwd", "webapp1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_LT(SecondsSince(start), limit);

  start = Clock::now();
  r = Getent({"passwd", std::to_string(UidOf(1))});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_LT(SecondsSince(start), limit);

  // files keeps working; the enumeration lists files only and still succeeds.
  r = Getent({"passwd", "root"});
  EXPECT_EQ(r.exit_code, 0);
  start = Clock::now();
  r = Getent({"passwd"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("root:", 0), 0u);
  EXPECT_EQ(r.out.find("webapp1"), std::string::npos);
  EXPECT_LT(SecondsSince(start), limit);
  // The group entry comes from the config alone.
  r = Getent({"group", std::to_string(kGid)});
  EXPECT_EQ(r.exit_code, 0);

  db_.Start();
  r = Getent({"passwd", "webapp1"});
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(NssTest, LongLivedProcessRecoversAfterDatabaseRestart) {
  const uint32_t id = db_.AddWebapp("webapp1", owner_, "running", "Web App");
  const std::string found = "found webapp1 " + std::to_string(UidOf(id)) + " " +
                            std::to_string(kGid) + " Web App";
  LookupServer server;
  ASSERT_EQ(server.Ask("name webapp1"), found);
  {
    DatabaseRestarter restart;
    db_.Stop();
    // UNAVAIL reaches the caller as getpwnam_r's EAGAIN (files said "not found" before us).
    EXPECT_EQ(server.Ask("name webapp1"), "error EAGAIN");
    EXPECT_EQ(server.Ask("uid " + std::to_string(UidOf(id))), "error EAGAIN");
    EXPECT_EQ(server.Ask("name root"), "found root 0 0 root");
  }  // restarted here
  // The pooled connection is dead; the module reconnects by itself.
  EXPECT_EQ(server.Ask("name webapp1"), found);
  EXPECT_EQ(server.Ask("uid " + std::to_string(UidOf(id))), found);
  EXPECT_TRUE(server.alive()) << "the lookup process died (SIGPIPE?)";
}

TEST_F(NssTest, ServerRestartWhileConnectionsArePooled) {
  // Kill the server under a pooled connection: the next write hits a closed socket. Without
  // the module's SIGPIPE handling the host process would die.
  const uint32_t id = db_.AddWebapp("webapp1", owner_);
  LookupServer server;
  ASSERT_EQ(server.Ask("name webapp1").rfind("found webapp1", 0), 0u);
  db_.Stop();
  db_.Start();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(server.Ask("uid " + std::to_string(UidOf(id))).rfind("found webapp1", 0), 0u);
  }
  EXPECT_TRUE(server.alive());
}

TEST_F(NssTest, HungDatabaseIsUnavailableWithinConnectTimeout) {
  db_.AddWebapp("webapp1", owner_);
  SilentServer silent(tmp_ / "silent.sock");
  const RunOptions options = WithConfig(
      "[mysql]\nsocket = " + (tmp_ / "silent.sock") +
      "\ndatabase = allgo\nuser = ssh\npassword = x\nconnect_timeout = 1\n" + NssSection(0));
  Clock::time_point start = Clock::now();
  RunResult r = Getent({"passwd", "webapp1"}, options);
  const double elapsed = SecondsSince(start);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_LT(elapsed, 1 + 1.5);
  EXPECT_GE(silent.accepted(), 1u) << "the module never reached the hung server";

  start = Clock::now();
  r = Getent({"passwd"}, options);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_LT(SecondsSince(start), 1 + 1.5);
}

TEST_F(NssTest, MissingOrBrokenConfigIsUnavailableNotFatal) {
  db_.AddWebapp("webapp1", owner_);
  RunOptions missing;
  missing.env["ALLGO_SSH_CONFIG"] = tmp_ / "does-not-exist.conf";
  const RunOptions broken = WithConfig(db_.ConfigText(NssSection(0) + "no_such_key = 1\n"));
  for (const RunOptions* options : std::vector<const RunOptions*>{&missing, &broken}) {
    RunResult r = Getent({"passwd", "webapp1"}, *options);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.out, "");
    r = Getent({"passwd", "root"}, *options);
    EXPECT_EQ(r.exit_code, 0);
    r = Getent({"passwd"}, *options);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out.find("webapp1"), std::string::npos);
  }
}

// ---- cache and config reload -------------------------------------------------------------------

TEST_F(NssTest, RenameIsSeenAfterCacheTtlNotBefore) {
  constexpr int kTtl = 2;
  const uint32_t id = db_.AddWebapp("before", owner_);
  WriteAllgoConfig(db_.ConfigText(NssSection(kTtl)));
  LookupServer server;
  const std::string uid = std::to_string(UidOf(id));
  const Clock::time_point first = Clock::now();
  ASSERT_EQ(server.Ask("uid " + uid).rfind("found before ", 0), 0u);

  db_.Exec("UPDATE allgo.webapps SET docker_name = 'after' WHERE id = " + std::to_string(id));
  // The entry was cached after `first`, so it is still valid until first + ttl.
  const std::string cached = server.Ask("uid " + uid);
  if (SecondsSince(first) < kTtl) {
    EXPECT_EQ(cached.rfind("found before ", 0), 0u) << cached;
  }
  // Then the new name appears, no earlier than the ttl.
  const Clock::time_point deadline = first + seconds(kTtl + 10);
  std::string answer;
  while (Clock::now() < deadline) {
    answer = server.Ask("uid " + uid);
    if (answer.rfind("found after ", 0) == 0) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(answer.rfind("found after ", 0), 0u) << answer;
  EXPECT_GE(SecondsSince(first), kTtl);

  // With the cache off (once the process has seen the new config), the next rename is seen
  // at once.
  WriteAllgoConfig(db_.ConfigText(NssSection(0)));
  std::this_thread::sleep_for(kConfigRecheckAndMargin);
  db_.Exec("UPDATE allgo.webapps SET docker_name = 'again' WHERE id = " + std::to_string(id));
  EXPECT_EQ(server.Ask("uid " + uid).rfind("found again ", 0), 0u);
}

// A global status counter of the server (e.g. statements executed, connections made so far),
// read as the server's root.
long ServerCounter(const std::string& name) {
  const RunResult r = allgo::test::Run({"mariadb", "--no-defaults", "--socket=" + TestDatabase::Get().socket(),
                                        "-uroot", "-N", "-B", "-e",
                                        "SHOW GLOBAL STATUS LIKE '" + name + "'"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::istringstream fields(r.out);
  std::string label;
  long value = -1;
  fields >> label >> value;
  return value;
}

TEST_F(NssTest, CacheSparesTheDatabaseARoundTripPerLookup) {
  // What `ls -l`, `ps` or `find -printf %u` do: the same few uids over and over.
  const uid_t a = UidOf(db_.AddWebapp("owner-a", owner_));
  const uid_t b = UidOf(db_.AddWebapp("owner-b", owner_));
  auto executed_for_200_lookups = [&](unsigned ttl) {
    WriteAllgoConfig(db_.ConfigText(NssSection(ttl)));
    LookupServer server;
    const long before = ServerCounter("Com_stmt_execute");
    const long connections_before = ServerCounter("Connections");
    for (int i = 0; i < 200; ++i) {
      const std::string answer = server.Ask("uid " + std::to_string(i % 2 == 0 ? a : b));
      EXPECT_EQ(answer.rfind(i % 2 == 0 ? "found owner-a " : "found owner-b ", 0), 0u) << answer;
    }
    // The connection is pooled: one for the whole process (the other is our counter query).
    EXPECT_LE(ServerCounter("Connections") - connections_before, 2) << "cache_ttl " << ttl;
    return ServerCounter("Com_stmt_execute") - before;
  };
  EXPECT_GE(executed_for_200_lookups(0), 200);  // cache off: one query per lookup
  EXPECT_LE(executed_for_200_lookups(60), 2);   // cache on: one per webapp
}

TEST_F(NssTest, ConfigChangeIsPickedUpByARunningProcess) {
  const uint32_t id = db_.AddWebapp("webapp1", owner_);
  WriteAllgoConfig(db_.ConfigText(NssSection(/*cache_ttl=*/60)));
  LookupServer server;
  EXPECT_EQ(server.Ask("name webapp1"),
            "found webapp1 " + std::to_string(UidOf(id)) + " " + std::to_string(kGid) + " webapp1");
  // A new uid_offset (and gid) applies within a second (the re-check interval), cache or not.
  WriteAllgoConfig(db_.ConfigText(NssSection(60, kGid + 1, kUidOffset + 100)));
  std::this_thread::sleep_for(kConfigRecheckAndMargin);
  EXPECT_EQ(server.Ask("name webapp1"), "found webapp1 " + std::to_string(UidOf(id) + 100) + " " +
                                            std::to_string(kGid + 1) + " webapp1");
}

// One line of `strace -ttt`: when the call started, and the call ("write(1, ...) = 5").
struct TracedCall {
  double at = 0;
  std::string call;
};

std::vector<TracedCall> ParseStrace(const std::string& log) {
  std::vector<TracedCall> calls;
  for (const std::string& line : Lines(log)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    calls.push_back({std::stod(line.substr(0, space)), line.substr(space + 1)});
  }
  return calls;
}

// Index of the first write(1, "<text>...") at or after `from`, or calls.size().
size_t FindWrite(const std::vector<TracedCall>& calls, const std::string& text, size_t from = 0) {
  for (size_t i = from; i < calls.size(); ++i) {
    if (calls[i].call.rfind("write(1, \"" + text, 0) == 0) return i;
  }
  return calls.size();
}

bool StatsConfig(const TracedCall& c) {
  return c.call.find("stat") != std::string::npos &&
         c.call.find(AllgoConfigPath()) != std::string::npos;
}

TEST_F(NssTest, WarmCacheHitMakesNoSystemCall) {
  // `ls -l`, `ps`, `id` ask for the same few webapps thousands of times: once the entry is
  // cached, answering it must not enter the kernel at all (no signal masking, no clock
  // syscall, no getpid). glibc itself makes none with `passwd: allgo` set by
  // __nss_configure_lookup, so every system call between the markers is the module's. The one
  // the design allows is the config re-check, once per second (Module::kConfigRecheck): it is
  // counted apart, and must not happen within a second of the last one.
  const uint32_t id = db_.AddWebapp("webapp1", owner_);
  WriteAllgoConfig(db_.ConfigText(NssSection(/*cache_ttl=*/60)));
  constexpr int kHits = 500;
  const std::string log = tmp_ / "strace.log";
  const RunResult r = allgo::test::Run({"strace", "-o", log, "-qq", "-ttt", "-s", "48",
                                        Artifact("nss-lookup"), "hits", "allgo", "webapp1",
                                        std::to_string(UidOf(id)), std::to_string(kHits)});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(r.out, "warm\ndone " + std::to_string(kHits) + "\n");

  const std::vector<TracedCall> calls = ParseStrace(ReadFile(log));
  const size_t warm = FindWrite(calls, "warm");
  const size_t done = FindWrite(calls, "done", warm);
  ASSERT_LT(done, calls.size()) << "markers missing from the strace log";
  double last_check = -1;  // the config stat of the warming lookups
  for (size_t i = 0; i < warm; ++i) {
    if (StatsConfig(calls[i])) last_check = calls[i].at;
  }
  ASSERT_GE(last_check, 0) << "the warming lookups never checked the config";

  std::string others;
  int other_count = 0, config_checks = 0;
  for (size_t i = warm + 1; i < done; ++i) {
    if (StatsConfig(calls[i])) {
      ++config_checks;
    } else if (++other_count <= 20) {
      others += "\n  " + calls[i].call;
    }
  }
  EXPECT_EQ(other_count, 0) << other_count << " system calls for " << 2 * kHits
                            << " warm hits, first ones:" << others;
  // Allowed: one config check per second that passed since the warming one (0.1 s margin for
  // the coarse clock the module reads).
  const double seconds_since_check = calls[done].at - last_check;
  const int allowed = seconds_since_check < 0.9 ? 0 : static_cast<int>(seconds_since_check + 0.1);
  EXPECT_LE(config_checks, allowed) << "config stat()ed " << config_checks << " times in "
                                    << seconds_since_check << " s of warm hits";
}

// ---- the shared object itself -----------------------------------------------------------------

TEST(NssModuleBinary, ExportsOnlyTheNssEntryPoints) {
  const std::string lib = Artifact("libnss_allgo.so.2");
  const RunResult nm = allgo::test::Run({"nm", "-D", "--defined-only", lib});
  ASSERT_EQ(nm.exit_code, 0) << nm.err;
  std::set<std::string> exported;
  for (const std::string& line : Lines(nm.out)) {
    std::istringstream fields(line);
    std::string addr, type, name;
    fields >> addr >> type >> name;
    exported.insert(name);
    EXPECT_EQ(name.rfind("_nss_allgo_", 0), 0u) << "exported: " << line;
  }
  for (const char* fn : {"getpwnam_r", "getpwuid_r", "setpwent", "getpwent_r", "endpwent",
                         "getgrnam_r", "getgrgid_r", "setgrent", "getgrent_r", "endgrent",
                         "initgroups_dyn"}) {
    EXPECT_TRUE(exported.count(std::string("_nss_allgo_") + fn)) << fn;
  }

  const RunResult elf = allgo::test::Run({"readelf", "-dW", lib});
  ASSERT_EQ(elf.exit_code, 0);
  EXPECT_NE(elf.out.find("Library soname: [libnss_allgo.so.2]"), std::string::npos);
  // Linked to Connector/C and inih (through allgo::common) and the C/C++ runtimes, no more.
  const std::set<std::string> allowed = {"libmariadb.so.3", "libinih.so.1", "libstdc++.so.6",
                                         "libgcc_s.so.1",   "libc.so.6",    "libm.so.6",
                                         "ld-linux-x86-64.so.2"};
  std::smatch m;
  std::string rest = elf.out;
  const std::regex needed("\\(NEEDED\\)\\s+Shared library: \\[([^\\]]+)\\]");
  while (std::regex_search(rest, m, needed)) {
    EXPECT_TRUE(allowed.count(m[1])) << "unexpected dependency " << m[1];
    rest = m.suffix();
  }
}

}  // namespace
}  // namespace allgo::test
