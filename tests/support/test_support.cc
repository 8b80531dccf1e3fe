#include "test_support.h"

#include <fcntl.h>
#include <poll.h>
#include <gtest/gtest.h>
#include <grp.h>
#include <mysql.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
namespace bp = boost::process;

namespace allgo::test {
namespace {

void RemoveOwnedTempDirs();

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "test support: %s\n", what.c_str());
  fflush(stderr);
  RemoveOwnedTempDirs();
  _exit(99);
}

// ---------------------------------------------------------------------------------------
// Temp folders: /tmp/PREFIX-XXXXXX, each with a marker /tmp/PREFIX-XXXXXX.owner saying which
// process made it ("PID STARTTIME KIND"). The owner removes them on every exit it lives
// through (destructors, atexit, Die()); a process killed outright leaves them to the next
// test process, which removes the folders whose owner is gone (the pid no longer runs, or
// runs another program since: the start time differs). A folder of a running test is never
// touched, nor one with something mounted under it in our view.

// KIND "tree": remove_all; "rmdir": only empty folders (a bind mount of the build lives there).
enum class FolderKind { kTree, kRmdir };

constexpr const char* kOwnerSuffix = ".owner";

// Field 22 of /proc/PID/stat (clock ticks after boot); "" when there is no such process.
std::string StartTime(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return "";
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;
}

bool MountedUnder(const std::string& dir) {
  return ReadFile("/proc/self/mountinfo").find(" " + dir + "/") != std::string::npos;
}

// Removes `dir` (after unmounting, lazily, what is mounted under it) and its marker.
void RemoveFolder(const std::string& dir, FolderKind kind) {
  UnmountUnder(dir);
  if (MountedUnder(dir)) return;
  std::error_code ec;
  if (kind == FolderKind::kTree) {
    fs::remove_all(dir, ec);
  } else {
    for (const auto& entry : fs::directory_iterator(dir, ec)) rmdir(entry.path().c_str());
    rmdir(dir.c_str());
  }
  unlink((dir + kOwnerSuffix).c_str());
}

// The folders this process made and has not removed yet.
struct OwnedFolders {
  std::mutex mutex;
  pid_t owner = getpid();
  std::map<std::string, FolderKind> folders;
};
OwnedFolders& Owned() {
  static auto* owned = new OwnedFolders();  // never destroyed: atexit and Die() use it last
  return *owned;
}

void RemoveOwnedTempDirs() {
  OwnedFolders& owned = Owned();
  if (getpid() != owned.owner) return;  // a forked child: the folders are its parent's
  std::map<std::string, FolderKind> folders;
  {
    std::lock_guard<std::mutex> lock(owned.mutex);
    folders.swap(owned.folders);
  }
  for (const auto& [dir, kind] : folders) RemoveFolder(dir, kind);
}

void RemoveDeadOwnersFolders() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/tmp", ec)) {
    const std::string marker = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (name.rfind("allgo-", 0) != 0 || !name.ends_with(kOwnerSuffix)) continue;
    struct stat st;
    if (lstat(marker.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
    std::istringstream text(ReadFile(marker));
    pid_t pid = 0;
    std::string start, kind;
    if (!(text >> pid >> start >> kind) || pid <= 0) continue;  // being written, or not ours
    if (StartTime(pid) == start) continue;                      // its test still runs
    const std::string dir = marker.substr(0, marker.size() - strlen(kOwnerSuffix));
    if (lstat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) continue;
    RemoveFolder(dir, kind == "rmdir" ? FolderKind::kRmdir : FolderKind::kTree);
  }
}

std::string MakeTempDir(const std::string& prefix, FolderKind kind = FolderKind::kTree) {
  static std::once_flag first;
  std::call_once(first, [] {
    RemoveDeadOwnersFolders();
    atexit(RemoveOwnedTempDirs);  // the first atexit handler of ours: it runs last
  });
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) Die("mkdtemp failed: " + std::string(strerror(errno)));
  chmod(tmpl.c_str(), 0755);  // tests run commands as webapp uids that may need to traverse
  {
    std::lock_guard<std::mutex> lock(Owned().mutex);
    Owned().folders[tmpl] = kind;
  }
  std::ofstream(tmpl + kOwnerSuffix) << getpid() << " " << StartTime(getpid()) << " "
                                     << (kind == FolderKind::kTree ? "tree" : "rmdir") << "\n";
  return tmpl;
}

// Removes a folder MakeTempDir made, now.
void RemoveTempDir(const std::string& dir) {
  FolderKind kind = FolderKind::kTree;
  {
    std::lock_guard<std::mutex> lock(Owned().mutex);
    auto it = Owned().folders.find(dir);
    if (it == Owned().folders.end()) return;
    kind = it->second;
    Owned().folders.erase(it);
  }
  RemoveFolder(dir, kind);
}

// Runs in the child between fork and exec: the optional identity change of RunOptions, then
// the parent-death signal (after it: a credential change clears it), so that a command still
// running when the test process dies (an ssh client holding a session open) dies with it.
struct RunAs : bp::extend::handler {
  uid_t uid;
  gid_t gid;
  pid_t parent;
  template <class Executor>
  void on_exec_setup(Executor&) const {
    if (gid != static_cast<gid_t>(-1) && (setgroups(0, nullptr) != 0 || setgid(gid) != 0)) _exit(126);
    if (uid != static_cast<uid_t>(-1) && setuid(uid) != 0) _exit(126);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
  }
};

// Serialises the spawns of Run() and Daemon (see Run()).
std::mutex& SpawnMutex() {
  static std::mutex m;
  return m;
}

}  // namespace

std::string SourceDir() { return ALLGO_SOURCE_DIR; }

void UnmountUnder(const std::string& dir) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::vector<std::string> points;
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (point.rfind(dir + "/", 0) == 0) points.push_back(point);
  }
  std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const std::string& p : points) umount2(p.c_str(), MNT_DETACH);
}
std::string BuildDir() { return ALLGO_BUILD_DIR; }

namespace {
// Inside the private namespace: the build folder bind-mounted under a folder every uid can
// traverse (EnterPrivateNssNamespace), so webapp uids can run allgo-shell even when the clone
// lives in a mode-0700 folder such as /root. Empty outside the namespace.
std::string g_build_view;
}  // namespace

std::string Artifact(const std::string& name) {
  const std::string build = g_build_view.empty() ? BuildDir() : g_build_view + "/build";
  for (const char* sub : {"/bin/", "/lib/"}) {
    std::string p = build + sub + name;
    if (access(p.c_str(), F_OK) == 0) return p;
  }
  return build + "/bin/" + name;
}

TempDir::TempDir(const std::string& prefix) : path_(MakeTempDir(prefix)) {}
TempDir::~TempDir() { RemoveTempDir(path_); }

void WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) Die("cannot write " + tmp);
    f << content;
  }
  chmod(tmp.c_str(), mode);
  if (rename(tmp.c_str(), path.c_str()) != 0) Die("cannot rename to " + path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

RunResult Run(const std::vector<std::string>& argv, const RunOptions& options) {
  RunResult result;
  boost::asio::io_context ios;
  std::future<std::string> out, err;
  bp::environment env = boost::this_process::environment();
  for (const auto& [k, v] : options.env) env[k] = v;
  boost::filesystem::path exe = argv.at(0);
  if (argv[0].find('/') == std::string::npos) exe = bp::search_path(argv[0]);
  if (exe.empty()) {
    result.err = "command not found: " + argv[0];
    result.exit_code = 127;
    return result;
  }
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  bp::async_pipe in(ios);
  std::error_code ec;
  bp::child child;
  {
    // Pipes are made without O_CLOEXEC: a child forked by another thread between their creation
    // and our parent-side close would hold them open and our child would never see EOF. So
    // spawns are serialised, and the one end we keep (stdin's write end) is close-on-exec.
    std::lock_guard<std::mutex> lock(SpawnMutex());
    fcntl(in.native_sink(), F_SETFD, FD_CLOEXEC);
    child = bp::child(exe, bp::args(args), bp::std_in < in, bp::std_out > out, bp::std_err > err,
                      env, ios, RunAs{{}, options.uid, options.gid, getpid()}, ec);
  }
  if (ec) {
    result.err = "cannot start " + argv[0] + ": " + ec.message();
    return result;
  }
  auto data = std::make_shared<std::string>(options.stdin_data);
  boost::asio::async_write(in, boost::asio::buffer(*data),
                           [&in, data](const boost::system::error_code&, size_t) { in.close(); });
  ios.run_for(std::chrono::seconds(options.timeout_seconds));
  bool timed_out = !ios.stopped();
  if (timed_out) {
    child.terminate();
    ios.run_for(std::chrono::seconds(5));
  }
  child.wait();
  int status = child.native_exit_code();
  result.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  if (timed_out) result.exit_code = 137;
  if (out.wait_for(std::chrono::seconds(0)) == std::future_status::ready) result.out = out.get();
  if (err.wait_for(std::chrono::seconds(0)) == std::future_status::ready) result.err = err.get();
  return result;
}

RunResult Sh(const std::string& script, const RunOptions& options) {
  return Run({"/bin/sh", "-c", script}, options);
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die("cannot find a free loopback port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool WaitForTcpPort(int port, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool WaitFor(const std::function<bool()>& done, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

Daemon::Daemon(const std::vector<std::string>& argv, const std::string& log_path,
               const std::map<std::string, std::string>& env, int death_signal)
    : log_path_(log_path) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    if (!env.count(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  // The keeper (keeper_main.cc) is the server's parent: REPORT_FD 3 is our pipe.
  const std::string keeper = Artifact("allgo-test-keeper");
  if (access(keeper.c_str(), X_OK) != 0) Die(keeper + " is not built (the allgo-test-keeper target)");
  std::vector<std::string> full = {keeper, std::to_string(getpid()), "3", std::to_string(death_signal),
                                   std::to_string(kKeeperGraceMs), "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> cargv, cenv;
  for (const auto& a : full) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (auto& e : env_strings) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) Die("pipe2 failed: " + std::string(strerror(errno)));
  {
    std::lock_guard<std::mutex> lock(SpawnMutex());  // see Run()
    keeper_ = fork();
    if (keeper_ < 0) Die("fork failed");
    if (keeper_ == 0) {
      int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int devnull = open("/dev/null", O_RDONLY);
      if (log < 0 || devnull < 0) _exit(127);
      dup2(report[1], 3);  // clears close-on-exec on the copy
      dup2(devnull, 0);
      dup2(log, 1);
      dup2(log, 2);
      execve(cargv[0], cargv.data(), cenv.data());
      _exit(127);
    }
  }
  close(report[1]);
  report_ = report[0];
  // The keeper writes the server's pid as soon as it forked it; EOF if it could not.
  int value = 0;
  if (ReadReport(&value, 10000)) {
    pid_ = value;
  } else {
    waitpid(keeper_, &status_, 0);
    keeper_ = -1;
  }
}

Daemon::~Daemon() {
  Stop(SIGTERM, 5000);
  // What the server left running (orphans re-parented to the keeper) goes now.
  if (keeper_ > 0) {
    kill(keeper_, SIGTERM);
    int status = 0;
    if (!WaitFor([&] { return waitpid(keeper_, &status, WNOHANG) == keeper_; }, 40000)) {
      kill(keeper_, SIGKILL);
      waitpid(keeper_, &status, 0);
    }
  }
  if (report_ >= 0) close(report_);
}

bool Daemon::ReadReport(int* value, int timeout_ms) {
  if (report_ < 0) return false;
  pollfd p{report_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  // Native ints through a pipe: written and read whole.
  if (read(report_, value, sizeof *value) == static_cast<ssize_t>(sizeof *value)) return true;
  close(report_);  // EOF: the keeper is gone
  report_ = -1;
  return false;
}

bool Daemon::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (ReadReport(&status, 0)) {
    status_ = status;
    pid_ = -1;
    return false;
  }
  if (report_ < 0) {  // the keeper died without a word (killed): the server with it
    pid_ = -1;
    status_ = SIGKILL;
    return false;
  }
  return true;
}

int Daemon::Stop(int sig, int timeout_ms) {
  if (!Running()) return WIFSIGNALED(status_) ? 128 + WTERMSIG(status_) : WEXITSTATUS(status_);
  kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      WaitFor([&] { return !Running(); }, 10000);
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFSIGNALED(status_) ? 128 + WTERMSIG(status_) : WEXITSTATUS(status_);
}

std::string Daemon::Log() const { return ReadFile(log_path_); }

// ---------------------------------------------------------------------------------------
// The private NSS view.

namespace {
std::string g_ns_dir;

void MountOverlay(const std::string& target, const std::string& upper, const std::string& work) {
  fs::create_directories(upper);
  fs::create_directories(work);
  std::string opts = "lowerdir=" + target + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", target.c_str(), "overlay", 0, opts.c_str()) != 0) {
    Die("cannot mount an overlay on " + target + ": " + strerror(errno) +
        " (integration tests need root and overlayfs)");
  }
}

std::string NsswitchWithAllgo() {
  std::istringstream in(ReadFile("/etc/nsswitch.conf"));
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.rfind("passwd:", 0) == 0 || line.rfind("group:", 0) == 0) continue;
    out += line + "\n";
  }
  return "passwd:         files allgo\ngroup:          files allgo\n" + out;
}

void RemoveNamespaceDir() {
  // The mounts die with the namespace; only the files of the overlays remain to remove.
  umount2("/etc", MNT_DETACH);
  umount2("/usr/lib/" ALLGO_MULTIARCH, MNT_DETACH);
  umount2("/var/log", MNT_DETACH);
  RemoveTempDir(g_ns_dir);
  // Unmounts the build first, then only ever rmdir (FolderKind::kRmdir).
  if (!g_build_view.empty()) RemoveTempDir(g_build_view);
}

// Webapp uids run our binaries (allgo-shell as login shell, the agent in sandboxes): give them
// a path to the build that needs no traversal of the clone's parents.
void MountReachableBuildView() {
  const std::string view = MakeTempDir("allgo-build", FolderKind::kRmdir);
  const std::string mount_point = view + "/build";
  if (chmod(view.c_str(), 0755) != 0 || mkdir(mount_point.c_str(), 0755) != 0 ||
      mount(BuildDir().c_str(), mount_point.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    Die("cannot bind-mount the build folder at " + mount_point + ": " + strerror(errno));
  }
  g_build_view = view;
}
}  // namespace

const char* AllgoConfigPath() { return "/etc/allgo/allgo-ssh.conf"; }

void EnterPrivateNssNamespace() {
  if (unshare(CLONE_NEWNS) != 0) Die("unshare(CLONE_NEWNS) failed (run as root): " + std::string(strerror(errno)));
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    Die("cannot make / private: " + std::string(strerror(errno)));
  }
  g_ns_dir = MakeTempDir("allgo-nss");
  std::string etc_upper = g_ns_dir + "/etc";
  fs::create_directories(etc_upper + "/allgo");
  WriteFile(etc_upper + "/nsswitch.conf", NsswitchWithAllgo());
  WriteFile(etc_upper + "/allgo/allgo-ssh.conf", "");
  MountOverlay("/etc", etc_upper, g_ns_dir + "/etc-work");

  std::string module = BuildDir() + "/lib/libnss_allgo.so.2";
  if (access(module.c_str(), R_OK) == 0) {
    std::string lib_upper = g_ns_dir + "/lib";
    fs::create_directories(lib_upper);
    fs::copy_file(module, lib_upper + "/libnss_allgo.so.2");
    MountOverlay("/usr/lib/" ALLGO_MULTIARCH, lib_upper, g_ns_dir + "/lib-work");
  }
  // The service users, made by the install's own script: useradd also writes lastlog and
  // faillog, hence the overlay on /var/log too; the host's files never change.
  MountOverlay("/var/log", g_ns_dir + "/log", g_ns_dir + "/log-work");
  MountReachableBuildView();
  atexit(RemoveNamespaceDir);
  RunResult users = Run({SourceDir() + "/conf/create-users"});
  if (users.exit_code != 0) Die("conf/create-users failed in the private namespace: " + users.out + users.err);
}

uid_t UidOf(const std::string& user) {
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) Die("no user " + user + " in the private namespace");
  return pw->pw_uid;
}

gid_t GidOf(const std::string& user) {
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) Die("no user " + user + " in the private namespace");
  return pw->pw_gid;
}

void WriteAllgoConfig(const std::string& text) { WriteFile(AllgoConfigPath(), text, 0644); }

LocalAccount::LocalAccount(const std::string& name, uid_t uid, const std::string& home,
                           const std::string& shell)
    : passwd_before_(ReadFile("/etc/passwd")), group_before_(ReadFile("/etc/group")) {
  if (g_ns_dir.empty()) Die("LocalAccount outside the private NSS namespace");
  const std::string id = std::to_string(uid);
  WriteFile("/etc/passwd", passwd_before_ + name + ":x:" + id + ":" + id + ":local test account:" + home + ":" +
                               shell + "\n");
  WriteFile("/etc/group", group_before_ + name + ":x:" + id + ":\n");
}

LocalAccount::~LocalAccount() {
  WriteFile("/etc/passwd", passwd_before_);
  WriteFile("/etc/group", group_before_);
}

SandboxesMount::SandboxesMount(const std::string& path) : path_(path) {
  fs::create_directories(path_);
  if (mount("allgo-sandboxes", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") != 0) {
    Die("cannot mount a nosuid,nodev,noexec tmpfs on " + path_ + ": " + strerror(errno) +
        " (integration tests need root and a private mount namespace)");
  }
}

SandboxesMount::~SandboxesMount() { umount2(path_.c_str(), MNT_DETACH); }

std::vector<std::string> SandboxCommand(const std::string& bridge_dir, const SandboxOptions& options) {
  std::string agent = options.toolbox.empty() ? Artifact("allgo-sandbox-agent") : options.toolbox + "/allgo-sandbox-agent";
  std::vector<std::string> argv = {"bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                                   "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
                                   "--proc", "/proc", "--tmpfs", "/tmp", "--bind", bridge_dir,
                                   bridge_dir};
  if (!options.toolbox.empty()) {
    argv.insert(argv.end(), {"--ro-bind", options.toolbox, options.toolbox});
  } else {
    argv.insert(argv.end(), {"--ro-bind", agent, agent});
    // The agent finds the toolbox's sftp server next to itself (the build keeps them together).
    std::string sftp_server = Artifact("allgo-sftp-server");
    if (access(sftp_server.c_str(), F_OK) == 0) argv.insert(argv.end(), {"--ro-bind", sftp_server, sftp_server});
  }
  if (!options.hostname.empty()) argv.insert(argv.end(), {"--hostname", options.hostname});
  for (const std::string& dir : options.binds) argv.insert(argv.end(), {"--bind", dir, dir});
  argv.insert(argv.end(), options.bwrap_extra.begin(), options.bwrap_extra.end());
  argv.push_back("--");
  argv.insert(argv.end(), options.launcher.begin(), options.launcher.end());
  argv.insert(argv.end(), {agent, "--bridge-dir", bridge_dir});
  argv.insert(argv.end(), options.agent_args.begin(), options.agent_args.end());
  return argv;
}

KeyPair MakeKeyPair(const std::string& dir, const std::string& name, const std::string& type) {
  KeyPair kp;
  kp.private_path = dir + "/" + name;
  unlink(kp.private_path.c_str());
  unlink((kp.private_path + ".pub").c_str());
  std::vector<std::string> argv = {"ssh-keygen", "-q", "-t", type, "-N", "", "-C", name, "-f",
                                   kp.private_path};
  if (type == "rsa") {
    argv.insert(argv.begin() + 4, {"-b", "2048"});
  }
  RunResult r = Run(argv);
  if (r.exit_code != 0) Die("ssh-keygen failed: " + r.err);
  kp.public_line = ReadFile(kp.private_path + ".pub");
  while (!kp.public_line.empty() && kp.public_line.back() == '\n') kp.public_line.pop_back();
  return kp;
}

// ---------------------------------------------------------------------------------------
// MariaDB.

namespace {
constexpr const char* kSshPassword = TestDatabase::kPassword;

MYSQL* RootConnect(const std::string& socket) {
  MYSQL* m = mysql_init(nullptr);
  unsigned timeout = 5;
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  if (!mysql_real_connect(m, "localhost", "root", nullptr, nullptr, 0, socket.c_str(),
                          CLIENT_MULTI_STATEMENTS)) {
    mysql_close(m);
    return nullptr;
  }
  return m;
}

// conf/grants.sql with the test password, for the account 'ssh'@HOST.
std::string ReadOnlyAccountSql(const std::string& host) {
  std::string grants = ReadFile(SourceDir() + "/conf/grants.sql");
  size_t at = grants.find("change-me");
  if (at == std::string::npos) Die("conf/grants.sql has no 'change-me' password placeholder");
  grants.replace(at, 9, kSshPassword);
  for (at = 0; (at = grants.find("'localhost'", at)) != std::string::npos; at += host.size() + 2) {
    grants.replace(at, 11, "'" + host + "'");
  }
  return grants;
}

// Stops the server when the tests end; atexit covers binaries that exit another way, and
// its keeper (Daemon) covers a crash or a kill.
class TeardownEnvironment : public ::testing::Environment {
 public:
  void TearDown() override;
};

TestDatabase* g_database = nullptr;
void TeardownEnvironment::TearDown() {
  if (g_database) g_database->Stop();
}
}  // namespace

TestDatabase& TestDatabase::Get() {
  if (!g_database) {
    g_database = new TestDatabase();
    ::testing::AddGlobalTestEnvironment(new TeardownEnvironment());
    atexit([] {
      delete g_database;
      g_database = nullptr;
    });
  }
  return *g_database;
}

TestDatabase::TestDatabase() {
  dir_ = MakeTempDir("allgo-mariadb");
  socket_ = dir_ + "/mysqld.sock";
  Install();
  Start();
  Exec("CREATE DATABASE allgo; USE allgo; " + ReadFile(SourceDir() + "/conf/schema.sql"));
  Exec(ReadOnlyAccountSql("localhost"));
}

TestDatabase::~TestDatabase() {
  Stop();
  RemoveTempDir(dir_);
}

void TestDatabase::Install() {
  // A private tmpdir: servers of test binaries running side by side never share temp files.
  fs::create_directories(dir_ + "/tmp");
  RunResult r = Run({"mariadb-install-db", "--no-defaults", "--datadir=" + dir_ + "/data", "--tmpdir=" + dir_ + "/tmp",
                     "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db",
                     "--skip-name-resolve"},
                    {.timeout_seconds = 120});
  if (r.exit_code != 0) Die("mariadb-install-db failed: " + r.out + r.err);
}

void TestDatabase::Start() {
  if (server_) return;
  std::vector<std::string> argv = {"mariadbd", "--no-defaults", "--datadir=" + dir_ + "/data", "--socket=" + socket_,
                                   "--pid-file=" + dir_ + "/mysqld.pid", "--tmpdir=" + dir_ + "/tmp",
                                   "--skip-networking", "--user=root", "--skip-name-resolve",
                                   "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--max-connections=500",
                                   "--innodb-flush-log-at-trx-commit=0"};
  if (tls_port_ != 0) {
    argv[6] = "--bind-address=127.0.0.1";
    argv.insert(argv.end(), {"--port=" + std::to_string(tls_port_), "--ssl-ca=" + tls_.ca,
                             "--ssl-cert=" + tls_.cert, "--ssl-key=" + tls_.key});
  }
  // Under a keeper like every server: it dies with the test process, however that one ends.
  server_ = std::make_unique<Daemon>(argv, dir_ + "/mysqld.log");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (MYSQL* m = RootConnect(socket_)) {
      mysql_close(m);
      return;
    }
    if (!server_->Running()) {
      server_.reset();
      Die("mariadbd exited at start; log: " + ReadFile(dir_ + "/mysqld.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Die("mariadbd did not accept connections within 60 s; log: " + ReadFile(dir_ + "/mysqld.log"));
}

void TestDatabase::Stop() {
  if (!server_) return;
  server_->Stop(SIGTERM, 30000);
  server_.reset();
}

std::string TestDatabase::MysqlConfigSection() const {
  return "[mysql]\nsocket = " + socket_ + "\ndatabase = allgo\nuser = ssh\npassword = " +
         kSshPassword + "\nconnect_timeout = 2\n";
}

int TestDatabase::ListenTls(const TlsFiles& files) {
  Stop();
  tls_ = files;
  if (tls_port_ == 0) tls_port_ = FreeLoopbackPort();
  Start();
  if (!WaitForTcpPort(tls_port_, 30000)) Die("mariadbd does not listen on 127.0.0.1:" + std::to_string(tls_port_));
  Exec(ReadOnlyAccountSql("127.0.0.1") + "\nALTER USER 'ssh'@'127.0.0.1' REQUIRE SSL");
  return tls_port_;
}

std::string TestDatabase::TcpMysqlConfigSection() const {
  return "[mysql]\nhost = 127.0.0.1\nport = " + std::to_string(tls_port_) +
         "\ndatabase = allgo\nuser = ssh\npassword = " + kSshPassword + "\nconnect_timeout = 2\n";
}

std::string TestDatabase::ConfigText(const std::string& extra) const {
  return MysqlConfigSection() + extra;
}

namespace {
// Runs SQL as root; returns the first column of the last result's first row, if any.
std::string RootQuery(const std::string& socket, const std::string& sql) {
  MYSQL* m = RootConnect(socket);
  if (!m) Die("cannot connect to the test MariaDB as root");
  if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
    std::string e = mysql_error(m);
    mysql_close(m);
    Die("SQL failed: " + e + "\n  in: " + sql.substr(0, 400));
  }
  std::string value;
  do {
    if (MYSQL_RES* res = mysql_store_result(m)) {
      if (MYSQL_ROW row = mysql_fetch_row(res); row && row[0]) value = row[0];
      mysql_free_result(res);
    }
  } while (mysql_next_result(m) == 0);
  if (mysql_errno(m) != 0) {
    std::string e = mysql_error(m);
    mysql_close(m);
    Die("SQL failed: " + e + "\n  in: " + sql.substr(0, 400));
  }
  mysql_close(m);
  return value;
}
}  // namespace

void TestDatabase::Exec(const std::string& sql) { RootQuery(socket_, sql); }

std::string TestDatabase::Value(const std::string& sql) { return RootQuery(socket_, sql); }

std::string TestDatabase::Quote(const std::string& value) const {
  std::string out = "'";
  for (char c : value) {
    switch (c) {
      case '\0': out += "\\0"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\\': out += "\\\\"; break;
      case '\'': out += "\\'"; break;
      case '"': out += "\\\""; break;
      case '\x1a': out += "\\Z"; break;
      default: out.push_back(c);
    }
  }
  return out + "'";
}

uint32_t TestDatabase::AddUser(const std::string& email, bool active, bool superuser) {
  std::string id = RootQuery(socket_, "INSERT INTO allgo.users (email, is_active, is_superuser) VALUES (" +
                                          Quote(email) + ", " + (active ? "1" : "0") + ", " +
                                          (superuser ? "1" : "0") + "); SELECT LAST_INSERT_ID()");
  return static_cast<uint32_t>(std::stoul(id));
}

void TestDatabase::AddKey(uint32_t user_id, const std::string& public_key_text) {
  Exec("INSERT INTO allgo.ssh_keys (user_id, public_key) VALUES (" + std::to_string(user_id) +
       ", " + Quote(public_key_text) + ")");
}

uint32_t TestDatabase::AddWebapp(const std::string& docker_name, uint32_t owner_id,
                                 const std::string& state, const std::string& display_name) {
  std::string id = RootQuery(
      socket_, "INSERT INTO allgo.webapps (name, docker_name, user_id, sandbox_state) VALUES (" +
                   Quote(display_name.empty() ? docker_name : display_name) + ", " +
                   Quote(docker_name) + ", " + std::to_string(owner_id) + ", " + Quote(state) +
                   "); SELECT LAST_INSERT_ID()");
  return static_cast<uint32_t>(std::stoul(id));
}

void TestDatabase::SetState(const std::string& docker_name, const std::string& state) {
  Exec("UPDATE allgo.webapps SET sandbox_state = " + Quote(state) +
       " WHERE docker_name = " + Quote(docker_name));
}

void TestDatabase::Clear() {
  Exec("TRUNCATE TABLE allgo.ssh_keys; TRUNCATE TABLE allgo.webapps; TRUNCATE TABLE allgo.users");
}

bool MemoryContains(pid_t pid, const std::string& needle) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  int mem = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(mem, 0) << "/proc/" << pid << "/mem: " << strerror(errno);
  bool found = false;
  std::string line;
  while (!found && std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r') continue;
    std::string region(end - start, '\0');
    ssize_t n = pread(mem, region.data(), region.size(), static_cast<off_t>(start));
    if (n <= 0) continue;
    region.resize(static_cast<size_t>(n));
    found = region.find(needle) != std::string::npos;
  }
  close(mem);
  return found;
}

}  // namespace allgo::test
