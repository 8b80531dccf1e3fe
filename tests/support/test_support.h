// Test support with real parts: a private MariaDB server, a private NSS view of /etc, and a
// small process runner. Shared by every integration test binary.
//
// Typical integration test main (see AllgoMain below):
//   - EnterPrivateNssNamespace() runs first, before any thread or user lookup: the process
//     (and every child it starts) gets a private mount namespace where /etc is an overlay
//     holding nsswitch.conf (`passwd: files allgo`, `group: files allgo`) and
//     /etc/allgo/allgo-ssh.conf, and the multiarch lib dir is an overlay holding our
//     libnss_allgo.so.2. The service users of allgo-sshd (allgo-sshd, allgo-authkeys,
//     allgo-metrics) are created there by conf/create-users, as the install does (/var/log
//     is an overlay too: useradd writes lastlog). The host's files are never touched; it all
//     vanishes with the process.
//   - TestDatabase::Get() starts MariaDB once per test binary (datadir in a temp dir, unix
//     socket, no TCP) with the reference schema and a read-only `ssh` account, and stops it
//     at exit even when tests fail (gtest environment tear-down; a Daemon, so it dies with the
//     test process however that one ends).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace allgo::test {

// Paths baked in by CMake.
std::string SourceDir();
std::string BuildDir();
// Path of a built binary or library by file name: "allgo-authkeys", "libnss_allgo.so.2", ...
std::string Artifact(const std::string& name);

// A folder /tmp/PREFIX-XXXXXX, removed by the destructor, and on every other exit of the
// process that made it: atexit, a fatal test-support error (Die), and, after SIGKILL or a
// crash, by the next test process that makes a temp folder (a marker PATH.owner names the
// owner's pid and start time; folders of a test still running are never touched).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "allgo-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Unmounts (lazily) whatever is mounted under `dir`, deepest first.
void UnmountUnder(const std::string& dir);

void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644);
std::string ReadFile(const std::string& path);
// Whether `needle` occurs anywhere in the readable memory of process `pid` (/proc/PID/maps
// and mem; needs root). Regions the kernel refuses to read ([vvar]...) are skipped.
bool MemoryContains(pid_t pid, const std::string& needle);

struct RunResult {
  int exit_code = -1;     // exit status, or 128+signal
  std::string out;
  std::string err;
};
struct RunOptions {
  std::string stdin_data;
  std::map<std::string, std::string> env;  // added to (or replacing) the inherited environment
  int timeout_seconds = 60;                 // the child is killed after that (exit_code 137)
  uid_t uid = static_cast<uid_t>(-1);       // run as this uid/gid when set (test runs as root)
  gid_t gid = static_cast<gid_t>(-1);
};
// Runs argv[0] (PATH lookup) with the arguments; captures stdout and stderr.
// Inside a gtest fixture write test::Run: testing::Test::Run hides the unqualified name.
RunResult Run(const std::vector<std::string>& argv, const RunOptions& options = {});
// Runs a shell snippet with /bin/sh -c.
RunResult Sh(const std::string& script, const RunOptions& options = {});

// A loopback TCP port that was free a moment ago.
int FreeLoopbackPort();
// Polls until 127.0.0.1:port accepts a connection; false after timeout_ms.
bool WaitForTcpPort(int port, int timeout_ms);

// Polls `done` every 50 ms until it is true (true) or timeout_ms passed (false).
bool WaitFor(const std::function<bool()>& done, int timeout_ms);

// A long-running child (a server under test). Its stdout and stderr go to log_path. It is
// stopped by the destructor, and it dies with the test process however that one ends
// (failure, Die(), a signal, SIGKILL), together with every process it forked, even those
// that changed their credentials or their session: its parent is allgo-test-keeper
// (keeper_main.cc), which then sends `death_signal`, waits up to kKeeperGraceMs, and SIGKILLs
// what is left below it. The destructor also ends what the server left running after it
// exited (a test may first check that those leave by themselves).
class Daemon {
 public:
  // How long a server sent `death_signal` (other than SIGKILL) may take to exit when the test
  // died (dockerd stops its containers).
  static constexpr int kKeeperGraceMs = 20000;

  Daemon(const std::vector<std::string>& argv, const std::string& log_path,
         const std::map<std::string, std::string>& env = {}, int death_signal = SIGKILL);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  // The server's pid (-1 once it exited or if it never started).
  pid_t pid() const { return pid_; }
  // The keeper's pid (the server's parent).
  pid_t keeper_pid() const { return keeper_; }
  bool Running();
  // Sends `sig`, waits up to timeout_ms for the exit; SIGKILL after that. Returns the exit
  // code (128+N for a signal); for a daemon that had already exited, its exit code.
  int Stop(int sig = SIGTERM, int timeout_ms = 10000);
  std::string Log() const;

 private:
  // One int from the keeper (the server's pid, then its wait status) within timeout_ms.
  bool ReadReport(int* value, int timeout_ms);
  pid_t pid_ = -1;
  pid_t keeper_ = -1;
  int report_ = -1;  // read end of the keeper's report pipe
  int status_ = 0;
  std::string log_path_;
};

// Enters the private NSS view described above. Call once, first thing in main().
// Aborts the test binary with a clear message if the kernel refuses (needs root).
void EnterPrivateNssNamespace();
// uid and primary gid of a user (e.g. the service user "allgo-sshd"); aborts if missing.
uid_t UidOf(const std::string& user);
gid_t GidOf(const std::string& user);
// Replaces /etc/allgo/allgo-ssh.conf inside the namespace.
void WriteAllgoConfig(const std::string& text);
const char* AllgoConfigPath();  // "/etc/allgo/allgo-ssh.conf"

// A local account of the `files` NSS source, as an administrator would add one: a line in
// /etc/passwd (and a group line) of the private namespace, removed by the destructor.
// Only inside EnterPrivateNssNamespace (the host's /etc is never touched).
class LocalAccount {
 public:
  LocalAccount(const std::string& name, uid_t uid, const std::string& home = "/nonexistent",
               const std::string& shell = "/bin/sh");
  ~LocalAccount();
  LocalAccount(const LocalAccount&) = delete;
  LocalAccount& operator=(const LocalAccount&) = delete;

 private:
  std::string passwd_before_;
  std::string group_before_;
};

// The frontend's `[sandbox] dir` mounted as docs/install.md says: its own filesystem (a tmpfs
// here), nosuid,nodev,noexec, mode 0755, so that nothing a sandbox plants in its bridge
// folder works on the frontend as a device node, a setuid program or an executable. Mounted
// at `path` (created if missing) in the test's private mount namespace, so call
// EnterPrivateNssNamespace first; the destructor unmounts it (lazily), leaving the empty
// folder to its TempDir. Aborts with a clear message when the kernel refuses.
class SandboxesMount {
 public:
  explicit SandboxesMount(const std::string& path);
  ~SandboxesMount();
  SandboxesMount(const SandboxesMount&) = delete;
  SandboxesMount& operator=(const SandboxesMount&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The bubblewrap command line of a webapp's sandbox as allgo's controller makes it: own pid,
// ipc and uts namespaces, the host read-only, a private /tmp, the bridge folder shared, the
// agent mounted in from the build (like the toolbox volume; the build may live under /tmp),
// gone when its parent goes; it runs `allgo-sandbox-agent --bridge-dir BRIDGE`. The build's
// static allgo-sftp-server (scripts/build-sftp-server) is mounted next to the agent, as the
// toolbox carries it.
struct SandboxOptions {
  // A folder to mount read-only (same path inside) and run the agent from instead of the
  // build's: a toolbox of the test's own making (e.g. with a refused allgo-sftp-server).
  std::string toolbox;
  std::string hostname;                   // --hostname, when set
  std::vector<std::string> binds;         // more folders shared read-write (same path inside)
  std::vector<std::string> bwrap_extra;   // more bwrap options
  std::vector<std::string> launcher;      // runs the agent inside (e.g. prlimit ...)
  std::vector<std::string> agent_args;    // more agent options
};
std::vector<std::string> SandboxCommand(const std::string& bridge_dir, const SandboxOptions& options = {});

// A generated ssh key pair.
struct KeyPair {
  std::string private_path;
  std::string public_line;  // "ssh-ed25519 AAAA... comment"
};
KeyPair MakeKeyPair(const std::string& dir, const std::string& name,
                    const std::string& type = "ed25519");

class TestDatabase {
 public:
  // Of the read-only `ssh` account; long enough that a freed copy keeps a searchable tail.
  static constexpr const char* kPassword = "ssh-test-password-7c41e9d2b5a80f63";

  // Starts the server on first use; later calls return the same one.
  static TestDatabase& Get();

  const std::string& socket() const { return socket_; }
  // The [mysql] section pointing at this server with the read-only account.
  std::string MysqlConfigSection() const;
  // A full config: [mysql] plus `extra` (other sections), sandbox dir etc. left default.
  std::string ConfigText(const std::string& extra = "") const;

  // Runs SQL as the server's root (test data set-up); aborts the test on failure.
  void Exec(const std::string& sql);
  // The same, returning the first column of the first row ("" when none).
  std::string Value(const std::string& sql);
  std::string Quote(const std::string& value) const;  // SQL string literal, escaped
  uint32_t AddUser(const std::string& email, bool active = true, bool superuser = false);
  void AddKey(uint32_t user_id, const std::string& public_key_text);
  uint32_t AddWebapp(const std::string& docker_name, uint32_t owner_id,
                     const std::string& state = "running", const std::string& display_name = "");
  void SetState(const std::string& docker_name, const std::string& state);
  // Empties the three tables and restarts their ids at 1.
  void Clear();

  // Stop/start the server mid-test (same datadir and socket) for outage tests.
  void Stop();
  void Start();
  bool running() const { return server_ != nullptr; }
  // The server's pid (-1 when it is not running): benches read its CPU time.
  pid_t server_pid() const { return server_ ? server_->pid() : -1; }

  // TCP with TLS for the [mysql] ssl_* tests: restarts the server listening on 127.0.0.1 too
  // (besides its socket), with these PEM files, and makes the read-only account for TCP,
  // 'ssh'@'127.0.0.1' (conf/grants.sql's grants), with REQUIRE SSL: the server itself refuses
  // that account a clear-text connection. Later Start()s keep it. Returns the port.
  struct TlsFiles {
    std::string ca, cert, key;
  };
  int ListenTls(const TlsFiles& files);
  // [mysql] for that TCP account (host, port, user, password); the test adds the ssl_* keys.
  std::string TcpMysqlConfigSection() const;

  ~TestDatabase();

 private:
  TestDatabase();
  void Install();
  std::string dir_;
  std::string socket_;
  std::unique_ptr<Daemon> server_;
  TlsFiles tls_;  // empty: --skip-networking
  int tls_port_ = 0;
};

}  // namespace allgo::test
