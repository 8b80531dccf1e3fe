// allgo-sandbox-gateway end to end on one machine, with real parts only: MariaDB (webapps
// and their uids), the private NSS view (libnss_allgo, create-users' allgo-gateway), two
// Docker "nodes" — the shared private dockerd over its unix socket and a second one over TLS
// with client certificates on a loopback port — a busybox container per webapp with the
// toolbox's agent, the gateway started as root by the test, and allgo-shell run as the
// webapp's uid as its client. Without Docker every test here is skipped with the reason.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "allgo/bridge/protocol.h"
#include "allgo/unique_fd.h"
#include "test_docker.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
namespace bridge = allgo::bridge;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr gid_t kWebappGid = 65534;  // [nss] gid default
constexpr int kRefusalLingerMs = 2000;  // how long the gateway keeps a refused connection


// The words of `s` joined by one space (busybox pads numbers).
std::string Words(const std::string& s) {
  std::string out, word;
  std::istringstream in(s);
  while (in >> word) out += (out.empty() ? "" : " ") + word;
  return out;
}

// A process of ours started as `uid`, with stdout and stderr into files (or a pty), waited
// for and, if still running, killed by the destructor.
class Child {
 public:
  struct Options {
    uid_t uid = 0;
    gid_t gid = kWebappGid;  // with a non-zero uid
    std::map<std::string, std::string> env;
    std::string out_file, err_file;  // "" = /dev/null
    int pty_slave = -1;              // when set: the child's controlling terminal and fds 0-2
  };
  Child(const std::vector<std::string>& argv, const Options& o) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      if (o.env.count(kv.substr(0, kv.find('='))) == 0) env_strings.push_back(kv);
    }
    for (const auto& [k, v] : o.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    int out = open(o.out_file.empty() ? "/dev/null" : o.out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err = open(o.err_file.empty() ? "/dev/null" : o.err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      if (o.pty_slave >= 0) {
        setsid();
        ioctl(o.pty_slave, TIOCSCTTY, 0);
        dup2(o.pty_slave, 0);
        dup2(o.pty_slave, 1);
        dup2(o.pty_slave, 2);
      } else {
        dup2(null, 0);
        dup2(out, 1);
        dup2(err, 2);
      }
      if (o.uid != 0 && (setgroups(0, nullptr) != 0 || setgid(o.gid) != 0 || setuid(o.uid) != 0)) _exit(126);
      // Dies with the test (armed after the uid change, which would clear it).
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    close(out);
    close(err);
    close(null);
  }
  ~Child() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // The exit code (128+N for a signal), or -1 when still running after timeout_ms.
  int Wait(int timeout_ms) {
    if (status_ >= 0) return status_;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return status_;
      }
      usleep(20 * 1000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// What a process running as `uid` gets from the gateway socket after sending `bytes` (and
// keeping its side open until the gateway closes or timeout_ms passes): raw bytes.
std::string RawExchange(const std::string& socket_path, uid_t uid, const std::string& bytes, int timeout_ms = 15000) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    signal(SIGPIPE, SIG_IGN);  // a refused connection: what it answered is what we look at
    if (setgroups(0, nullptr) != 0 || setgid(kWebappGid) != 0 || setuid(uid) != 0) _exit(126);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(3);
    if (!bytes.empty() && write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) _exit(4);
    char buf[65536];
    for (int waited = 0; waited < timeout_ms;) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) == 0) {
        waited += 100;
        continue;
      }
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      if (write(pipe_fds[1], buf, static_cast<size_t>(n)) != n) break;
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string all;
  char buf[65536];
  for (;;) {
    ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    if (n <= 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return all;
}

// As `uid`: opens `idle` connections that send nothing, then one more that sends `bytes`;
// returns what that last one got (until the gateway closed it or 10 s passed).
std::string ReplyPastIdleConnections(const std::string& socket_path, uid_t uid, int idle, const std::string& bytes) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    signal(SIGPIPE, SIG_IGN);
    if (setgroups(0, nullptr) != 0 || setgid(kWebappGid) != 0 || setuid(uid) != 0) _exit(126);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    std::vector<int> held;
    for (int i = 0; i <= idle; ++i) {
      int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(3);
      held.push_back(fd);
      if (i == idle - 1) usleep(1000 * 1000);  // the gateway has taken the idle ones
    }
    int last = held.back();
    if (write(last, bytes.data(), bytes.size()) < 0) _exit(4);
    char buf[4096];
    for (int waited = 0; waited < 10000;) {
      pollfd p{last, POLLIN, 0};
      if (poll(&p, 1, 100) == 0) {
        waited += 100;
        continue;
      }
      ssize_t n = read(last, buf, sizeof buf);
      if (n <= 0) break;
      if (write(pipe_fds[1], buf, static_cast<size_t>(n)) != n) break;
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof buf)) > 0;) all.append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return all;
}

// The messages of a stdio-mode byte stream; the text of `error` messages, stdout `data`.
struct Decoded {
  std::string out;
  std::vector<std::string> errors;
  bool started = false;
  std::optional<int> exit;
};
Decoded Decode(const std::string& bytes) {
  Decoded d;
  bridge::FrameReader reader(bridge::Mode::kStdio);
  size_t at = 0;
  for (;;) {
    bridge::Message m;
    std::string error;
    auto r = reader.Next(&m, &error);
    if (r == bridge::FrameReader::Result::kError) {
      d.errors.push_back("undecodable: " + error);
      return d;
    }
    if (r == bridge::FrameReader::Result::kNeedMore) {
      if (at >= bytes.size()) return d;
      at += reader.Append(std::string_view(bytes).substr(at));
      continue;
    }
    if (auto* e = std::get_if<bridge::Error>(&m)) d.errors.push_back(e->text);
    if (std::holds_alternative<bridge::Started>(m)) d.started = true;
    if (auto* x = std::get_if<bridge::Exit>(&m)) d.exit = x->ShellStatus();
    if (auto* data = std::get_if<bridge::Data>(&m); data && data->stream == bridge::Stream::kStdout) d.out += data->bytes;
  }
}

std::string OpenFrame(const std::string& command, std::vector<std::pair<std::string, std::string>> env = {}) {
  bridge::Open open;
  open.version = bridge::kStdioProtocolVersion;
  open.command = command;
  open.env = std::move(env);
  return bridge::EncodeFrame(bridge::Message(open)) + bridge::EncodeFrame(bridge::Message(bridge::Eof{bridge::Stream::kStdin}));
}

// One webapp's container on a node: busybox, --network none, the toolbox (the agent) mounted
// read-only at /.allgo as on every node; removed by the destructor.
class Container {
 public:
  Container(TestDocker* node, std::string name, std::string hostname) : node_(node), name_(std::move(name)), hostname_(std::move(hostname)) {}
  ~Container() { Remove(); }
  // `labels`: NAME=VALUE, each a --label.
  std::string Run(const std::string& image, const std::vector<std::string>& labels = {}) {
    Remove();
    std::vector<std::string> args = {"run", "-d", "--name", name_, "--hostname", hostname_, "--network", "none",
                                     "-v", node_->toolbox() + ":" + TestDocker::kToolboxMount + ":ro"};
    for (const std::string& label : labels) args.insert(args.end(), {"--label", label});
    args.insert(args.end(), {image, "sh", "-c", "echo only-in-" + name_ + " > /mark; exec sleep 1000000"});
    RunResult r = node_->Docker(args, {.timeout_seconds = 60});
    return r.exit_code == 0 ? "" : "docker run " + name_ + ": " + r.err;
  }
  void Remove() { node_->Docker({"rm", "-f", name_}); }
  void Stop() { node_->Docker({"stop", "-t", "0", name_}); }
  void Rebind(TestDocker* node) { node_ = node; }

 private:
  TestDocker* node_;
  std::string name_, hostname_;
};

// The host pids of the spare agents (`--handshake-timeout`: a session's agent has none) that
// `docker top` shows in `container` on `node`; none when it is stopped or absent.
std::vector<std::string> SpareAgents(TestDocker* node, const std::string& container) {
  std::vector<std::string> pids;
  RunResult r = node->Docker({"top", container});
  if (r.exit_code != 0) return pids;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("allgo-sandbox-agent --stdio --handshake-timeout") == std::string::npos) continue;
    std::istringstream words(line);
    std::string uid, pid;
    words >> uid >> pid;
    pids.push_back(pid);
  }
  return pids;
}

// Webapp rows one test adds (owner: the fixture's), with their containers; all removed at its
// end, whatever happens.
class ExtraWebapps {
 public:
  explicit ExtraWebapps(uint32_t owner) : owner_(owner) {}
  ~ExtraWebapps() {
    containers_.clear();
    for (const std::string& name : names_) {
      TestDatabase::Get().Exec("DELETE FROM allgo.webapps WHERE docker_name = " + TestDatabase::Get().Quote(name));
    }
  }
  uid_t Add(const std::string& name) {
    names_.push_back(name);
    return 2000 + TestDatabase::Get().AddWebapp(name, owner_);  // [nss] uid_offset 2000
  }
  // Add, and its container NAME (hostname NAME-on-NODE_TAG, /mark only-in-NAME) run on `node`;
  // *error says why it could not run.
  uid_t AddRunning(const std::string& name, TestDocker* node, const std::string& node_tag, const std::string& image,
                   std::string* error) {
    containers_.push_back(std::make_unique<Container>(node, name, name + "-on-" + node_tag));
    *error = containers_.back()->Run(image);
    return Add(name);
  }

 private:
  uint32_t owner_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Container>> containers_;
};

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    docker_ = TestDocker::Get(&why);
    if (docker_ == nullptr) {
      skip_ = "Docker cannot run here: " + why;
      return;
    }
    image_ = docker_->BusyboxImage(&why);
    if (image_.empty()) {
      skip_ = "no busybox image: " + why;
      return;
    }
    dir_ = new TempDir("allgo-gateway");
    chmod(dir_->path().c_str(), 0755);
    if (std::string e = MakeTestCertificates(dir_->path(), "node", &certs_); !e.empty()) {
      skip_ = e;
      return;
    }
    if (std::string e = MakeTestCertificates(dir_->path(), "other", &other_); !e.empty()) {
      skip_ = e;
      return;
    }
    port_ = FreeLoopbackPort();
    if (std::string e = StartTlsNode(); !e.empty()) {
      skip_ = e;
      return;
    }
    // The client key as docs/gateway.md deploys it: the gateway user's, mode 0400.
    key_ = *dir_ / "gateway-key.pem";
    fs::copy_file(certs_.client_key, key_, fs::copy_options::overwrite_existing);
    chown(key_.c_str(), UidOf("allgo-gateway"), GidOf("allgo-gateway"));
    chmod(key_.c_str(), 0400);

    // A unix:// node's docker.sock, reachable by the gateway user through its group, as
    // docs/gateway.md says (on a real host: the docker group).
    chown(docker_->socket().c_str(), 0, GidOf("allgo-gateway"));
    chmod(docker_->socket().c_str(), 0660);

    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    uint32_t owner = owner_ = db.AddUser("owner@example.org");
    uid1_ = 2000 + db.AddWebapp("web1", owner);  // [nss] uid_offset 2000
    uid2_ = 2000 + db.AddWebapp("web2", owner);
    uid3_ = 2000 + db.AddWebapp("web3", owner);  // no container anywhere (or a stopped one)
    web1_ = new Container(docker_, "web1", "web1-on-node1");
    web2_ = new Container(node2_, "web2", "web2-on-node2");
    if (std::string e = web1_->Run(image_); !e.empty()) skip_ = e;
    if (std::string e = web2_->Run(image2_); !e.empty()) skip_ = e;
    WriteAllgoConfig(ConfigText());
    config_ = AllgoConfigPath();
  }
  static void TearDownTestSuite() {
    gateway_.reset();
    delete web1_;
    delete web2_;
    web1_ = web2_ = nullptr;
    node2_owner_.reset();
    delete dir_;
    dir_ = nullptr;
  }
  static std::string StartTlsNode() {
    std::string why;
    node2_owner_ = TestDocker::StartNode({.port = port_, .ca = certs_.ca, .cert = certs_.server_cert,
                                          .key = certs_.server_key},
                                         &why);
    node2_ = node2_owner_.get();
    if (!node2_) return "the TLS node cannot start: " + why;
    image2_ = node2_->BusyboxImage(&why);
    if (image2_.empty()) return "no busybox image on the TLS node: " + why;
    return "";
  }
  static std::string ConfigText(const std::string& socket = "", const std::string& cert = "",
                                const std::string& key = "", const std::string& extra = "") {
    return TestDatabase::Get().ConfigText() + "[sandbox]\nbackend = docker\n[docker]\nnode = node1 unix://" +
           docker_->socket() + "\nnode = node2 tcp://127.0.0.1:" + std::to_string(port_) + "\ntls_ca = " + certs_.ca +
           "\ntls_cert = " + (cert.empty() ? certs_.client_cert : cert) + "\ntls_key = " + (key.empty() ? key_ : key) +
           "\ngateway_socket = " + (socket.empty() ? SocketPath() : socket) + "\napi_timeout = 5\n" + extra;
  }
  static std::string SocketPath() { return *dir_ / "run/gateway.sock"; }
  static std::string GatewayLogPath() { return *dir_ / "gateway.log"; }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    chmod(tmp_.path().c_str(), 0777);  // webapp uids write their sockets and read configs here
    if (!gateway_ || !gateway_->Running()) {
      ASSERT_TRUE(StartGateway()) << GatewayLog();
    }
  }

  static bool StartGateway() {
    gateway_.reset();
    gateway_ = std::make_unique<Daemon>(std::vector<std::string>{Artifact("allgo-sandbox-gateway"), "--config", config_},
                                        GatewayLogPath());
    return WaitFor([] {
      struct stat st;
      return lstat(SocketPath().c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
    }, 10000);
  }
  static std::string GatewayLog() { return ReadFile(GatewayLogPath()); }

  // allgo-shell -c CMD as `uid`, the way sshd runs a webapp's login shell.
  RunResult Shell(uid_t uid, const std::string& command, RunOptions o = {}, const std::string& config = "") {
    o.uid = uid;
    o.gid = kWebappGid;
    o.env["ALLGO_SSH_CONFIG"] = config.empty() ? config_ : config;
    if (o.timeout_seconds == 60) o.timeout_seconds = 90;
    return test::Run({Artifact("allgo-shell"), "-c", command}, o);
  }
  Child::Options ShellOptions(uid_t uid, const std::string& name) {
    return {.uid = uid, .env = {{"ALLGO_SSH_CONFIG", config_}}, .out_file = tmp_ / (name + ".out"),
            .err_file = tmp_ / (name + ".err")};
  }

  // A gateway of the test's own (its socket, config and log under tmp_, named `name`),
  // `docker_extra` appended to its [docker] section; stopped by its Daemon's destructor.
  struct OwnGateway {
    std::string config, log;
    std::unique_ptr<Daemon> daemon;
    bool listening = false;
  };
  OwnGateway StartOwnGateway(const std::string& name, const std::string& docker_extra) {
    OwnGateway g{tmp_ / (name + ".conf"), tmp_ / (name + ".log"), nullptr, false};
    std::string socket = tmp_ / (name + "-gw/gw.sock");
    WriteFile(g.config, ConfigText(socket, "", "", docker_extra));
    g.daemon = std::make_unique<Daemon>(std::vector<std::string>{Artifact("allgo-sandbox-gateway"), "--config", g.config},
                                        g.log);
    g.listening = WaitFor([&] { return fs::exists(socket); }, 10000);
    return g;
  }

  static inline std::string skip_;
  static inline TestDocker* docker_ = nullptr;
  static inline std::unique_ptr<TestDocker> node2_owner_;
  static inline TestDocker* node2_ = nullptr;
  static inline std::string image_, image2_;
  static inline TempDir* dir_ = nullptr;
  static inline TestCertificates certs_, other_;
  static inline std::string key_, config_;
  static inline int port_ = 0;
  static inline uid_t uid1_ = 0, uid2_ = 0, uid3_ = 0;
  static inline uint32_t owner_ = 0;
  static inline Container *web1_ = nullptr, *web2_ = nullptr;
  static inline std::unique_ptr<Daemon> gateway_;
  TempDir tmp_{"allgo-gateway-case"};
};

TEST_F(GatewayTest, EachWebappLandsInItsOwnContainerOnItsNode) {
  RunResult r = Shell(uid1_, "hostname; cat /mark; echo oops >&2; exit 7");
  EXPECT_EQ(r.exit_code, 7) << r.err << GatewayLog();
  EXPECT_EQ(r.out, "web1-on-node1\nonly-in-web1\n");
  EXPECT_EQ(r.err, "oops\n") << "stderr apart, nothing of ours on it";
  r = Shell(uid2_, "hostname; cat /mark");  // over TLS
  EXPECT_EQ(r.exit_code, 0) << r.err << GatewayLog();
  EXPECT_EQ(r.out, "web2-on-node2\nonly-in-web2\n");
  EXPECT_EQ(Shell(uid2_, "kill -TERM $$").exit_code, 143);
  // The gateway logs each session: who, which webapp, where, and how it ended.
  std::string log = GatewayLog();
  EXPECT_THAT(log, HasSubstr("uid " + std::to_string(uid1_)));
  EXPECT_THAT(log, HasSubstr("webapp web1: node node1 container web1 exec "));
  EXPECT_THAT(log, HasSubstr("webapp web2: node node2 container web2 exec "));
  EXPECT_THAT(log, HasSubstr("end after"));
}

TEST_F(GatewayTest, BinaryDataRoundTripsAndStdinEofReachesTheCommand) {
  std::string blob(5 << 20, '\0');
  std::mt19937_64 rng(11);
  for (auto& c : blob) c = static_cast<char>(rng());
  for (uid_t uid : {uid1_, uid2_}) {
    RunOptions in;
    in.stdin_data = blob;
    RunResult r = Shell(uid, "cat", in);  // ends at stdin EOF
    EXPECT_EQ(r.exit_code, 0) << r.err << GatewayLog();
    EXPECT_EQ(r.out.size(), blob.size());
    EXPECT_TRUE(r.out == blob) << "uid " << uid;
    in.stdin_data = "abc";
    RunResult wc = Shell(uid, "wc -c", in);
    EXPECT_EQ(Words(wc.out), "3") << "uid " << uid << ": " << wc.err << GatewayLog();
    EXPECT_EQ(Words(Shell(uid, "wc -c").out), "0");  // no input: EOF at once, not a hang
  }
}

TEST_F(GatewayTest, PtySessionFollowsWindowChanges) {
  int master = -1, slave = -1;
  winsize ws{.ws_row = 25, .ws_col = 90, .ws_xpixel = 0, .ws_ypixel = 0};
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, &ws), 0);
  Child::Options o = ShellOptions(uid2_, "pty");
  o.pty_slave = slave;
  Child shell({Artifact("allgo-shell")}, o);
  close(slave);
  std::string screen;
  auto shows = [&](const std::string& needle) {
    return WaitFor(
        [&] {
          char buf[4096];
          pollfd p{master, POLLIN, 0};
          while (poll(&p, 1, 0) > 0) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n <= 0) break;
            screen.append(buf, static_cast<size_t>(n));
          }
          return screen.find(needle) != std::string::npos;
        },
        15000);
  };
  auto type = [&](const std::string& line) { ASSERT_EQ(write(master, line.data(), line.size()), static_cast<ssize_t>(line.size())); };
  type("echo SIZE=$(stty size) HOST=$(hostname)\n");
  EXPECT_TRUE(shows("SIZE=25 90 HOST=web2-on-node2")) << screen << GatewayLog();
  ws.ws_row = 43;
  ws.ws_col = 132;
  ASSERT_EQ(ioctl(master, TIOCSWINSZ, &ws), 0);  // the kernel sends allgo-shell SIGWINCH
  usleep(300 * 1000);
  type("echo NEW=$(stty size)\n");
  EXPECT_TRUE(shows("NEW=43 132")) << screen;
  type("exit 5\n");
  EXPECT_EQ(shell.Wait(15000), 5) << screen;
  close(master);
}

TEST_F(GatewayTest, SigintToAllgoShellInterruptsTheCommand) {
  Child shell({Artifact("allgo-shell"), "-c", "echo started; sleep 60"}, ShellOptions(uid1_, "int"));
  ASSERT_TRUE(WaitFor([&] { return ReadFile(tmp_ / "int.out") == "started\n"; }, 20000)) << GatewayLog();
  auto t0 = std::chrono::steady_clock::now();
  kill(shell.pid(), SIGINT);
  EXPECT_EQ(shell.Wait(10000), 130) << ReadFile(tmp_ / "int.err");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(GatewayTest, AWebappCannotReachAnotherWebappsContainerWhateverItSends) {
  // A handcrafted open from web1's uid that asks for web2 where it can (the gateway reads
  // none of it: the agent in web1's container gets it).
  std::string reply = RawExchange(SocketPath(), uid1_, OpenFrame("hostname; cat /mark # web2", {{"LANG", "web2"}}));
  Decoded d = Decode(reply);
  std::string hex;
  for (unsigned char c : reply) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
  EXPECT_TRUE(d.started) << reply.size() << " bytes: " << hex << " errors: " << testing::PrintToString(d.errors);
  EXPECT_EQ(d.out, "web1-on-node1\nonly-in-web1\n");
  EXPECT_EQ(d.exit, 0);
  // Anything else it could send: a socket-mode open, garbage, nothing at all. Each gets an
  // error (or nothing), never a byte of web2's.
  bridge::Open v1;
  v1.command = "cat /mark";
  for (const std::string& bytes : {bridge::EncodeFrame(bridge::Message(v1)), std::string("\x00\x00\x00\x05web2!", 9),
                                   std::string("web2\n"), std::string()}) {
    std::string raw = RawExchange(SocketPath(), uid1_, bytes, 4000);
    EXPECT_THAT(raw, Not(HasSubstr("only-in-web2")));
    EXPECT_THAT(raw, Not(HasSubstr("web2-on-node2")));
    EXPECT_FALSE(Decode(raw).started);
  }
}

TEST_F(GatewayTest, UidsThatAreNotWebappsAreRefusedWithOneLine) {
  for (uid_t uid : {uid_t{65534}, uid_t{2500}}) {
    std::string raw = RawExchange(SocketPath(), uid, OpenFrame("hostname"));
    Decoded d = Decode(raw);
    ASSERT_EQ(d.errors.size(), 1u) << "uid " << uid << ": " << raw.size() << " bytes; " << GatewayLog();
    EXPECT_THAT(d.errors[0], HasSubstr("uid " + std::to_string(uid) + " is not a webapp"));
    EXPECT_FALSE(d.started);
  }
  // Root too: the gateway serves webapp uids only (allgo-shell refuses uid 0 itself).
  Decoded d = Decode(RawExchange(SocketPath(), 0, OpenFrame("hostname")));
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_THAT(d.errors[0], HasSubstr("uid 0 is not a webapp"));
}

TEST_F(GatewayTest, OneUidCannotTakeEverySession) {
  // 64 sessions of web1 that never send their open (each waits in its agent's handshake):
  // the 65th is refused with a line saying so, and web2 is served meanwhile.
  std::future<std::string> flood = std::async(std::launch::async, [] {
    return ReplyPastIdleConnections(SocketPath(), uid1_, 64, OpenFrame("hostname"));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Shell(uid2_, "hostname").out, "web2-on-node2\n");
  Decoded d = Decode(flood.get());
  ASSERT_EQ(d.errors.size(), 1u) << GatewayLog();
  EXPECT_THAT(d.errors[0], HasSubstr("uid " + std::to_string(uid1_) + " already has 64 sessions open through the "
                                     "sandbox gateway (the limit); end some first"));
  // Once they are gone, web1 is served again.
  ASSERT_TRUE(WaitFor([] { return Decode(RawExchange(SocketPath(), uid1_, OpenFrame("hostname"), 5000)).started; },
                      15000));
}

TEST_F(GatewayTest, AWebappWithoutARunningContainerGetsOneLineNamingTheState) {
  RunResult r = Shell(uid3_, "hostname");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "allgo: the session in the sandbox of 'web3' did not start: no container web3 for 'web3' on any "
                   "node (node1, node2); start its sandbox from the allgo web interface\n");
  Container web3(docker_, "web3", "web3");
  ASSERT_EQ(web3.Run(image_), "");
  web3.Stop();
  r = Shell(uid3_, "hostname");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the sandbox of 'web3' is not running (container web3 on node node1: exited); "
                               "start it from the allgo web interface"));
}

TEST_F(GatewayTest, TheClientKeyIsReadableByTheGatewayUserOnly) {
  struct stat st;
  ASSERT_EQ(stat(key_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  EXPECT_EQ(st.st_uid, UidOf("allgo-gateway"));
  RunResult r = Sh("cat " + key_, {.uid = uid1_, .gid = kWebappGid});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("Permission denied"));
  // The gateway runs as its own user (it dropped root before loading the key).
  std::string status = ReadFile("/proc/" + std::to_string(gateway_->pid()) + "/status");
  std::string uid = std::to_string(UidOf("allgo-gateway"));
  EXPECT_THAT(status, HasSubstr("Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid));
  EXPECT_THAT(status, HasSubstr("Groups:\t" + std::to_string(GidOf("allgo-gateway")) + " \n"));
  // The socket: anyone may connect, the gateway user owns it.
  ASSERT_EQ(lstat(SocketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  EXPECT_EQ(st.st_uid, UidOf("allgo-gateway"));
}

TEST_F(GatewayTest, CheckSaysWhatIsWrongWithAConfig) {
  RunResult r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", config_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("node node1 unix://" + docker_->socket() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("node node2 tcp://127.0.0.1:" + std::to_string(port_) + "\n"));
  EXPECT_THAT(r.out, HasSubstr("spares 256 (closed after 300 s unused), prewarm no\n"));
  auto check = [&](const std::string& text) {
    std::string path = tmp_ / "check.conf";
    WriteFile(path, text);
    return test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", path});
  };
  // A key others may read.
  std::string loose = tmp_ / "loose-key.pem";
  fs::copy_file(certs_.client_key, loose);
  chown(loose.c_str(), UidOf("allgo-gateway"), 0);
  chmod(loose.c_str(), 0644);
  r = check(ConfigText("", "", loose));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("chown allgo-gateway " + loose + " && chmod 0400 " + loose));
  // A key of root: the gateway user could not read it.
  std::string roots = tmp_ / "root-key.pem";
  fs::copy_file(certs_.client_key, roots);
  chmod(roots.c_str(), 0400);
  r = check(ConfigText("", "", roots));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not by the gateway user allgo-gateway"));
  // The wrong backend, a shared or privileged gateway user, a key that is not the certificate's.
  std::string text = ConfigText();
  std::string bridge = text;
  bridge.replace(bridge.find("backend = docker"), 16, "backend = bridge");
  r = check(bridge);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("[sandbox] backend is not docker"));
  r = check(text + "spares = 3\nprewarm = yes\nprewarm_every = 20\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("spares 3 (closed after 300 s unused), prewarm yes (a round every 20 s)\n"));
  r = check(text + "spares = 0\nprewarm = yes\n");
  EXPECT_THAT(r.out, HasSubstr("spares 0 (closed after 300 s unused), prewarm yes but spares = 0: none\n"));
  r = check(text + "gateway_user = nobody\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("must be a dedicated user of its own, not nobody"));
  r = check(text + "gateway_user = no-such-user\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no such user"));
  std::string other_key = tmp_ / "other-key.pem";
  fs::copy_file(other_.client_key, other_key);
  chown(other_key.c_str(), UidOf("allgo-gateway"), 0);
  chmod(other_key.c_str(), 0400);
  r = check(ConfigText("", "", other_key));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("node = node2"));
}

TEST_F(GatewayTest, StartedAsAnotherUserItRefuses) {
  std::string path = tmp_ / "user.conf";
  WriteFile(path, ConfigText(tmp_ / "x.sock"));
  RunResult r = test::Run({Artifact("allgo-sandbox-gateway"), "--config", path}, {.uid = uid1_, .gid = kWebappGid});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("runs as root (it then drops to allgo-gateway) or as allgo-gateway itself, not as uid " +
                               std::to_string(uid1_)));
}

TEST_F(GatewayTest, StartedDirectlyAsTheGatewayUserItServesToo) {
  // No root at all (e.g. a unit with User=allgo-gateway): the folder is the operator's.
  std::string folder = tmp_ / "as-user";
  ASSERT_EQ(mkdir(folder.c_str(), 0775), 0);
  chown(folder.c_str(), 0, GidOf("allgo-gateway"));
  chmod(folder.c_str(), 0775);
  std::string path = tmp_ / "as-user.conf";
  WriteFile(path, ConfigText(folder + "/gw.sock"));
  Child gateway({Artifact("allgo-sandbox-gateway"), "--config", path},
                {.uid = UidOf("allgo-gateway"), .gid = GidOf("allgo-gateway"), .out_file = tmp_ / "as-user.out",
                 .err_file = tmp_ / "as-user.log"});
  ASSERT_TRUE(WaitFor([&] { return fs::exists(folder + "/gw.sock"); }, 10000)) << ReadFile(tmp_ / "as-user.log");
  EXPECT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n") << ReadFile(tmp_ / "as-user.log");
  EXPECT_EQ(Shell(uid2_, "hostname", {}, path).out, "web2-on-node2\n") << ReadFile(tmp_ / "as-user.log");
  kill(gateway.pid(), SIGTERM);
  EXPECT_EQ(gateway.Wait(15000), 0) << ReadFile(tmp_ / "as-user.log");
  EXPECT_FALSE(fs::exists(folder + "/gw.sock"));
}

TEST_F(GatewayTest, ASymlinkOrAFileAtTheSocketPathIsRefusedAStaleSocketReplaced) {
  std::string folder = tmp_ / "links";
  ASSERT_EQ(mkdir(folder.c_str(), 0755), 0);
  std::string path = tmp_ / "links.conf";
  WriteFile(path, ConfigText(folder + "/gw.sock"));
  std::string target = tmp_ / "target";
  WriteFile(target, "precious\n");
  ASSERT_EQ(symlink(target.c_str(), (folder + "/gw.sock").c_str()), 0);
  RunResult r = test::Run({Artifact("allgo-sandbox-gateway"), "--config", path}, {.timeout_seconds = 20});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(folder + "/gw.sock exists and is not a socket (a symlink)"));
  EXPECT_EQ(ReadFile(target), "precious\n");
  // A stale socket (a gateway that was killed) is replaced.
  ASSERT_EQ(unlink((folder + "/gw.sock").c_str()), 0);
  {
    UniqueFd stale(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, (folder + "/gw.sock").c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  Daemon gateway({Artifact("allgo-sandbox-gateway"), "--config", path}, tmp_ / "links.log");
  ASSERT_TRUE(WaitFor([&] { return ReadFile(tmp_ / "links.log").find("listening on") != std::string::npos; }, 10000))
      << ReadFile(tmp_ / "links.log");
  EXPECT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n");
}

TEST_F(GatewayTest, NoGatewayRunningIsOneClearLine) {
  std::string path = tmp_ / "nogw.conf";
  WriteFile(path, ConfigText(tmp_ / "none.sock"));
  RunResult r = Shell(uid1_, "hostname", {}, path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "allgo: the sandbox gateway is not running (connect " + (tmp_ / "none.sock") +
                       ": No such file or directory); tell the allgo operators\n");
  // A socket some other user serves is not the gateway: allgo-shell sends it nothing.
  std::string fake = tmp_ / "fake.sock";
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(kWebappGid) != 0 || setuid(uid2_) != 0) _exit(126);
    umask(0);  // connectable by anyone, like the real gateway's socket
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, fake.c_str(), sizeof addr.sun_path - 1);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4) != 0) _exit(3);
    pollfd a{fd, POLLIN, 0};
    if (poll(&a, 1, 20000) <= 0) _exit(2);  // allgo-shell never connected
    int c = accept(fd, nullptr, nullptr);
    char buf[100];
    pollfd p{c, POLLIN, 0};
    _exit(poll(&p, 1, 3000) > 0 && read(c, buf, sizeof buf) > 0 ? 1 : 0);  // 1: it got bytes
  }
  ASSERT_TRUE(WaitFor([&] { return fs::exists(fake); }, 5000));
  WriteFile(path, ConfigText(fake));
  r = Shell(uid1_, "hostname", {}, path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("refusing the sandbox gateway at " + fake + ": it is served by uid " +
                               std::to_string(uid2_) + ", not by [docker] gateway_user allgo-gateway"));
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the impostor received bytes or no connection: " << st;
}

TEST_F(GatewayTest, AStoppedNodeOnlyAffectsItsWebappsAndRecoversWithoutARestart) {
  ASSERT_EQ(Shell(uid2_, "hostname").out, "web2-on-node2\n");
  web2_->Rebind(docker_);  // (no web2 there: its destructor's rm -f finds nothing)
  node2_owner_.reset();  // the TLS node goes away with its containers
  node2_ = nullptr;
  RunResult r = Shell(uid2_, "hostname");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("node2 (tcp://127.0.0.1:" + std::to_string(port_) + ")"));
  EXPECT_THAT(r.err, HasSubstr("where the Engine API failed"));
  EXPECT_THAT(r.err, HasSubstr("tell the allgo operators"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(Shell(uid1_, "hostname").out, "web1-on-node1\n") << "the other node's webapp is unaffected";
  // The node comes back (same address and certificates), the controller starts web2 again.
  ASSERT_EQ(StartTlsNode(), "");
  web2_->Rebind(node2_);
  ASSERT_EQ(web2_->Run(image2_), "");
  r = Shell(uid2_, "hostname");
  EXPECT_EQ(r.out, "web2-on-node2\n") << r.err << GatewayLog();
  EXPECT_TRUE(gateway_->Running());
}

TEST_F(GatewayTest, ANodeThatHangsDelaysALoginByTheClaimGraceAtMost) {
  // node3 accepts connections and never answers (an engine stuck or a proxy black-holing).
  std::string stall = tmp_ / "stall.sock";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, stall.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener.get(), 64), 0);
  chmod(stall.c_str(), 0666);
  std::string path = tmp_ / "stall.conf";
  std::string socket = tmp_ / "stall-gw/gw.sock";
  WriteFile(path, ConfigText(socket, "", "", "node = node3 unix://" + stall + "\n"));
  Daemon gateway({Artifact("allgo-sandbox-gateway"), "--config", path}, tmp_ / "stall.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(socket); }, 10000)) << ReadFile(tmp_ / "stall.log");
  // web1 runs on node1: node3 gets the claim grace (2 s) to say it has a web1 too (it would
  // refuse the login, issue 18), not the whole api_timeout (5 s).
  auto t0 = std::chrono::steady_clock::now();
  RunResult r = Shell(uid1_, "hostname", {}, path);
  EXPECT_EQ(r.out, "web1-on-node1\n") << r.err << ReadFile(tmp_ / "stall.log");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4)) << "found on node1 without waiting for node3";
  t0 = std::chrono::steady_clock::now();
  r = Shell(uid1_, "hostname", {}, path);  // the location is cached: node3 is not asked
  EXPECT_EQ(r.out, "web1-on-node1\n") << r.err << ReadFile(tmp_ / "stall.log");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // A webapp whose container is nowhere: node3 might have it, so its answer is waited for,
  // as long as api_timeout (5 s) and no longer.
  t0 = std::chrono::steady_clock::now();
  r = Shell(uid3_, "hostname", {}, path);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("may be on node node3 (unix://" + stall + "), where the Engine API failed"));
  EXPECT_THAT(r.err, HasSubstr("api_timeout"));
  EXPECT_GE(took, std::chrono::seconds(4));
  EXPECT_LT(took, std::chrono::seconds(9));
}

TEST_F(GatewayTest, SandboxLocationFromTheDatabase) {
  // The database knows where web2 and web3 run (web3: on a node this frontend does not have);
  // it has no row for web1, which is then looked for on every node.
  std::string path = tmp_ / "location.conf";
  std::string socket = tmp_ / "location-gw/gw.sock";
  WriteFile(path, ConfigText(socket, "", "",
                             "[queries]\nsandbox_location = SELECT IF(docker_name = 'web3', 'node9', 'node2'),\n"
                             "  docker_name FROM webapps WHERE id = ? AND docker_name <> 'web1'\n"));
  Daemon gateway({Artifact("allgo-sandbox-gateway"), "--config", path}, tmp_ / "location.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(socket); }, 10000)) << ReadFile(tmp_ / "location.log");
  EXPECT_EQ(Shell(uid2_, "hostname", {}, path).out, "web2-on-node2\n") << ReadFile(tmp_ / "location.log");
  EXPECT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n") << ReadFile(tmp_ / "location.log");
  RunResult r = Shell(uid3_, "hostname", {}, path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the database places the sandbox of 'web3' on node 'node9', which is not a [docker] "
                               "node of this frontend (node1, node2); tell the allgo operators"));
}

TEST_F(GatewayTest, AContainerRemovedMidSessionEndsItAndTheGatewayServesOn) {
  Child shell({Artifact("allgo-shell"), "-c", "echo started; sleep 60"}, ShellOptions(uid1_, "rm"));
  ASSERT_TRUE(WaitFor([&] { return ReadFile(tmp_ / "rm.out") == "started\n"; }, 20000)) << GatewayLog();
  web1_->Remove();
  EXPECT_EQ(shell.Wait(20000), 255);
  EXPECT_THAT(ReadFile(tmp_ / "rm.err"), HasSubstr("allgo: lost the connection to the sandbox of 'web1'"));
  EXPECT_EQ(Shell(uid2_, "hostname").out, "web2-on-node2\n");
  // The sandbox is started again: the cached location is stale, the gateway finds it anew.
  ASSERT_EQ(web1_->Run(image_), "");
  RunResult r = Shell(uid1_, "hostname");
  EXPECT_EQ(r.out, "web1-on-node1\n") << r.err << GatewayLog();
}

TEST_F(GatewayTest, ARestartedGatewayEndsRunningSessionsClearlyAndServesNewOnes) {
  Child shell({Artifact("allgo-shell"), "-c", "echo started; sleep 60"}, ShellOptions(uid2_, "restart"));
  ASSERT_TRUE(WaitFor([&] { return ReadFile(tmp_ / "restart.out") == "started\n"; }, 20000)) << GatewayLog();
  EXPECT_EQ(gateway_->Stop(SIGTERM, 15000), 0) << GatewayLog();
  EXPECT_THAT(GatewayLog(), HasSubstr("the gateway is stopping"));
  EXPECT_FALSE(fs::exists(SocketPath())) << "the socket is removed";
  EXPECT_EQ(shell.Wait(10000), 255);
  EXPECT_THAT(ReadFile(tmp_ / "restart.err"), HasSubstr("allgo: lost the connection to the sandbox of 'web2'"));
  ASSERT_TRUE(StartGateway());
  EXPECT_EQ(Shell(uid2_, "hostname").out, "web2-on-node2\n");
}

// Warm spares (docs/gateway.md): after a login the gateway holds one started exec of the
// agent in that container; the webapp's next login takes it without any Engine API call.
TEST_F(GatewayTest, TheNextLoginTakesTheSpareEvenWithTheNodesApiUnreachable) {
  // A gateway of its own: its first login locates web1 now, so the second (seconds later)
  // finds the location cached and needs no Engine API call at all when a spare is ready.
  std::string path = tmp_ / "spare.conf";
  std::string socket = tmp_ / "spare-gw/gw.sock";
  std::string log_path = tmp_ / "spare.log";
  WriteFile(path, ConfigText(socket));
  Daemon gateway({Artifact("allgo-sandbox-gateway"), "--config", path}, log_path);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(socket); }, 10000)) << ReadFile(log_path);
  ASSERT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n") << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("(a spare"))) << "the first login has none";
  ASSERT_TRUE(WaitFor([&] { return ReadFile(log_path).find("webapp web1: spare exec ") != std::string::npos; }, 10000))
      << ReadFile(log_path);
  // node1's Engine API socket closed to the gateway user: no exec can be made now. Restored
  // whatever happens.
  struct Restore {
    std::string path;
    ~Restore() { chmod(path.c_str(), 0660); }
  } restore{docker_->socket()};
  ASSERT_EQ(chmod(docker_->socket().c_str(), 0600), 0);
  RunResult r = Shell(uid1_, "hostname; cat /mark", {}, path);
  EXPECT_EQ(r.exit_code, 0) << r.err << ReadFile(log_path);
  EXPECT_EQ(r.out, "web1-on-node1\nonly-in-web1\n");
  EXPECT_THAT(ReadFile(log_path),
              testing::ContainsRegex("webapp web1: node node1 container web1 exec [0-9a-f]+ \\(a spare made"));
  // With the API still closed, the spare that login asked for could not be made: the next
  // login execs, fails like any login on an unreachable node, and the log says why.
  r = Shell(uid1_, "hostname", {}, path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("node1"));
  EXPECT_THAT(ReadFile(log_path), HasSubstr("webapp web1: no spare made on node node1 container web1"));
  chmod(docker_->socket().c_str(), 0660);
  EXPECT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n") << ReadFile(log_path);
  // Stopping closes the spares it holds (once the one that login asked for is ready).
  auto count = [&](const std::string& needle) {
    std::string log = ReadFile(log_path);
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_TRUE(WaitFor([&] { return count("webapp web1: spare exec ") == 2; }, 10000)) << ReadFile(log_path);
  EXPECT_EQ(gateway.Stop(SIGTERM, 15000), 0);
  EXPECT_THAT(ReadFile(log_path), HasSubstr("closing 1 spare exec(s)"));
}

TEST_F(GatewayTest, ASpareOfOneWebappIsNeverUsedByAnother) {
  // Interleaved logins, each webapp's spare waiting while the other logs in.
  for (int i = 0; i < 4; ++i) {
    RunResult a = Shell(uid1_, "hostname; cat /mark");
    EXPECT_EQ(a.out, "web1-on-node1\nonly-in-web1\n") << a.err << GatewayLog();
    RunResult b = Shell(uid2_, "hostname; cat /mark");
    EXPECT_EQ(b.out, "web2-on-node2\nonly-in-web2\n") << b.err << GatewayLog();
  }
  // Spares were used, by their own webapp only (the log's exec line names the webapp and
  // where the exec ran; the output above proves the container).
  std::string log = GatewayLog();
  EXPECT_THAT(log, testing::ContainsRegex("webapp web1: node node1 container web1 exec [0-9a-f]+ \\(a spare"));
  EXPECT_THAT(log, testing::ContainsRegex("webapp web2: node node2 container web2 exec [0-9a-f]+ \\(a spare"));
  EXPECT_THAT(log, Not(testing::ContainsRegex("webapp web1: node node2")));
  EXPECT_THAT(log, Not(testing::ContainsRegex("webapp web2: node node1")));
}

TEST_F(GatewayTest, AContainerRestartedAfterItsSpareWasMadeStillGivesAWorkingSession) {
  size_t seen = GatewayLog().size();
  ASSERT_EQ(Shell(uid2_, "hostname").out, "web2-on-node2\n") << GatewayLog();
  // The spare this login asked for is ready (made in web2 as it runs now).
  ASSERT_TRUE(WaitFor([&] { return GatewayLog().find("webapp web2: spare exec ", seen) != std::string::npos; }, 10000))
      << GatewayLog();
  seen = GatewayLog().size();
  ASSERT_EQ(node2_->Docker({"restart", "-t", "0", "web2"}).exit_code, 0);  // the spare's agent dies with it
  RunResult r = Shell(uid2_, "hostname; cat /mark");
  EXPECT_EQ(r.exit_code, 0) << r.err << GatewayLog();
  EXPECT_EQ(r.out, "web2-on-node2\nonly-in-web2\n");
  std::string log = GatewayLog().substr(seen);
  EXPECT_THAT(log, HasSubstr("has ended (container restarted or stopped?); a fresh exec instead")) << log;
}

// Prewarm ([docker] prewarm = yes): a spare in every running container, made before anyone
// logs in, so that a webapp's first login is warm too.
TEST_F(GatewayTest, PrewarmPutsASpareInEveryRunningContainerBeforeAnyLogin) {
  ExtraWebapps rows(owner_);
  std::string e1, e2, e3, e4;
  const uid_t uid_a = rows.AddRunning("pwa", docker_, "node1", image_, &e1);
  const uid_t uid_b = rows.AddRunning("pwb", node2_, "node2", image2_, &e2);
  rows.AddRunning("pwc", docker_, "node1", image_, &e3);     // its container is stopped below
  rows.AddRunning("daemon", docker_, "node1", image_, &e4);  // the identity rule refuses it: /etc/passwd has daemon
  ASSERT_EQ(e1 + e2 + e3 + e4, "");
  ASSERT_EQ(docker_->Docker({"stop", "-t", "0", "pwc"}).exit_code, 0);
  OwnGateway gateway = StartOwnGateway("prewarm", "prewarm = yes\nprewarm_every = 1\n");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  const std::string& path = gateway.config;
  const std::string& log_path = gateway.log;

  // What the webapps' users see: one idle agent in each running container, on either node.
  ASSERT_TRUE(WaitFor([&] { return SpareAgents(docker_, "pwa").size() == 1 && SpareAgents(node2_, "pwb").size() == 1; },
                      15000))
      << ReadFile(log_path);
  // The round's summary (one line, after every webapp was seen): the refused row is not even
  // listed, and neither it nor the stopped container has an agent.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(log_path).find("prewarm: ") != std::string::npos &&
                                   ReadFile(log_path).find("webapp(s) listed") != std::string::npos; },
                      10000))
      << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path), HasSubstr("prewarm: 6 webapp(s) listed;")) << "web1-3, pwa, pwb, pwc";
  EXPECT_TRUE(SpareAgents(docker_, "daemon").empty()) << "a row another account source owns gets nothing";
  EXPECT_TRUE(SpareAgents(docker_, "pwc").empty());
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("pwc"))) << "no line per webapp without a running container";
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("web3")));

  // pwa's first login takes its spare with node1's Engine API closed to the gateway user
  // (the location the round found is still cached): no exec was needed.
  {
    struct Restore {
      std::string path;
      ~Restore() { chmod(path.c_str(), 0660); }
    } restore{docker_->socket()};
    ASSERT_EQ(chmod(docker_->socket().c_str(), 0600), 0);
    RunResult r = Shell(uid_a, "hostname; cat /mark", {}, path);
    EXPECT_EQ(r.exit_code, 0) << r.err << ReadFile(log_path);
    EXPECT_EQ(r.out, "pwa-on-node1\nonly-in-pwa\n");
  }
  RunResult r = Shell(uid_b, "hostname; cat /mark", {}, path);
  EXPECT_EQ(r.out, "pwb-on-node2\nonly-in-pwb\n") << r.err << ReadFile(log_path);
  r = Shell(uid_a, "hostname; cat /mark", {}, path);  // API open again: a spare or a fresh exec
  EXPECT_EQ(r.out, "pwa-on-node1\nonly-in-pwa\n") << r.err << ReadFile(log_path);
  std::string log = ReadFile(log_path);
  EXPECT_THAT(log, testing::ContainsRegex("webapp pwa: node node1 container pwa exec [0-9a-f]+ \\(a spare made"));
  EXPECT_THAT(log, testing::ContainsRegex("webapp pwb: node node2 container pwb exec [0-9a-f]+ \\(a spare made"));
  EXPECT_THAT(log, Not(HasSubstr("webapp pwa: node node2"))) << "a spare of one webapp never serves another";
  EXPECT_THAT(log, Not(HasSubstr("webapp pwb: node node1")));

  // The stopped sandbox is started: the next round gives it a spare.
  ASSERT_EQ(docker_->Docker({"start", "pwc"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return SpareAgents(docker_, "pwc").size() == 1; }, 10000)) << ReadFile(log_path);
  EXPECT_TRUE(SpareAgents(docker_, "daemon").empty());

  // Stopping stays quick with rounds running, and ends every spare agent.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gateway.daemon->Stop(SIGTERM, 15000), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_TRUE(WaitFor([&] { return SpareAgents(docker_, "pwa").empty() && SpareAgents(node2_, "pwb").empty(); }, 10000));
}

TEST_F(GatewayTest, APrewarmedSpareOutlivesSpareIdleAndARestartedContainerGetsAFreshOne) {
  ExtraWebapps rows(owner_);
  std::string error;
  const uid_t uid = rows.AddRunning("pwr", node2_, "node2", image2_, &error);
  ASSERT_EQ(error, "");
  OwnGateway gateway = StartOwnGateway("prewarm-idle", "spare_idle = 10\nprewarm = yes\nprewarm_every = 1\n");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  const std::string& path = gateway.config;
  const std::string& log_path = gateway.log;
  ASSERT_TRUE(WaitFor([&] { return SpareAgents(node2_, "pwr").size() == 1; }, 15000)) << ReadFile(log_path);
  const std::vector<std::string> first = SpareAgents(node2_, "pwr");
  // Unused past spare_idle, with the reaper looking every 5 s: the same agent is still there
  // (kept, not closed and made again round after round).
  std::this_thread::sleep_for(std::chrono::seconds(17));
  EXPECT_EQ(SpareAgents(node2_, "pwr"), first) << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("unused too long")));

  // The container restarts (its agent dies with it): the next round makes a fresh spare, and
  // the login after takes it.
  ASSERT_EQ(node2_->Docker({"restart", "-t", "0", "pwr"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    std::vector<std::string> now = SpareAgents(node2_, "pwr");
    return now.size() == 1 && now != first;
  }, 10000)) << ReadFile(log_path);
  size_t seen = ReadFile(log_path).size();
  RunResult r = Shell(uid, "hostname; cat /mark", {}, path);
  EXPECT_EQ(r.out, "pwr-on-node2\nonly-in-pwr\n") << r.err << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path).substr(seen),
              testing::ContainsRegex("webapp pwr: node node2 container pwr exec [0-9a-f]+ \\(a spare made"));
}

TEST_F(GatewayTest, WithoutPrewarmASpareComesOnlyAfterALogin) {
  ExtraWebapps rows(owner_);
  std::string error;
  const uid_t uid = rows.AddRunning("pwo", docker_, "node1", image_, &error);
  ASSERT_EQ(error, "");
  OwnGateway gateway = StartOwnGateway("no-prewarm", "prewarm = no\nprewarm_every = 1\n");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  const std::string& path = gateway.config;
  const std::string& log_path = gateway.log;
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(SpareAgents(docker_, "pwo").empty()) << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("prewarm:"))) << "no round runs";
  RunResult r = Shell(uid, "hostname", {}, path);
  EXPECT_EQ(r.out, "pwo-on-node1\n") << r.err << ReadFile(log_path);
  EXPECT_THAT(ReadFile(log_path), Not(HasSubstr("(a spare"))) << "the first login execs";
  EXPECT_TRUE(WaitFor([&] { return SpareAgents(docker_, "pwo").size() == 1; }, 10000)) << ReadFile(log_path);
}

// Issue 18 finding 2: without sandbox_location every node is asked; a node that claims a
// running container of a webapp that another node also runs (a compromised node answering for
// every webapp, or a sandbox started twice) must not get the login, whoever answers first.
TEST_F(GatewayTest, TwoNodesClaimingOneWebappsRunningContainerRefuseTheLogin) {
  OwnGateway gateway = StartOwnGateway("claims", "");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  // The start warns: two nodes and no sandbox_location.
  EXPECT_THAT(ReadFile(gateway.log), HasSubstr("[docker] has 2 nodes and [queries] sandbox_location is not set"));
  Container impostor(node2_, "web1", "web1-impostor-on-node2");
  ASSERT_EQ(impostor.Run(image2_), "");
  RunResult r = Shell(uid1_, "hostname; cat /mark", {}, gateway.config);
  EXPECT_EQ(r.exit_code, 1) << r.out << ReadFile(gateway.log);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "allgo: the session in the sandbox of 'web1' did not start: the sandbox of 'web1' has a running "
                   "container web1 on more than one node (node1, node2), so the gateway cannot tell which is its own "
                   "and refuses the login; tell the allgo operators\n");
  EXPECT_THAT(ReadFile(gateway.log), HasSubstr("container web1 of 'web1' (id " + std::to_string(uid1_ - 2000) +
                                               ") runs on nodes node1, node2: login refused"));
  EXPECT_THAT(ReadFile(gateway.log), Not(HasSubstr("webapp web1: node ")));
  // With sandbox_location, the database says node1: the other claim is never asked for.
  OwnGateway located = StartOwnGateway("claims-located", "[queries]\nsandbox_location = SELECT 'node1', docker_name "
                                                         "FROM webapps WHERE id = ?\n");
  ASSERT_TRUE(located.listening) << ReadFile(located.log);
  EXPECT_THAT(ReadFile(located.log), Not(HasSubstr("sandbox_location is not set")));
  EXPECT_EQ(Shell(uid1_, "hostname", {}, located.config).out, "web1-on-node1\n") << ReadFile(located.log);
  // The impostor gone, the first gateway serves web1 again (refusals are not cached).
  impostor.Remove();
  EXPECT_EQ(Shell(uid1_, "hostname", {}, gateway.config).out, "web1-on-node1\n") << ReadFile(gateway.log);

  // --check says so too, on stderr, and still exits 0.
  r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", gateway.config});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("warning: " + gateway.config + ": [docker] has 2 nodes and [queries] sandbox_location "
                               "is not set: any node can claim any webapp's sandbox"));
  EXPECT_THAT(r.out, HasSubstr("sandbox_location not set\n"));
  r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", located.config});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("warning")));
  std::string one_node = tmp_ / "one-node.conf";
  std::string text = ConfigText();
  text.erase(text.find("\nnode = node2"), text.find('\n', text.find("\nnode = node2") + 1) - text.find("\nnode = node2"));
  WriteFile(one_node, text);
  r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", one_node});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("node node2")));
  EXPECT_THAT(r.err, Not(HasSubstr("warning"))) << "one node: nobody else can claim";
}

// Issue 18 finding 7a: webapp A (ra) is renamed rb, and a new webapp B of another owner takes
// the name ra with its own container mh-ra. A's logins in the next seconds (its location
// cached under its id, a warm spare ready) must land in A's container, never in B's.
TEST_F(GatewayTest, ARenamedWebappNeverLandsInTheContainerItsOldNameNowNames) {
  struct Cleanup {
    TestDocker* node;
    ~Cleanup() {
      for (const char* name : {"mh-ra", "mh-rb", "mh-tmp"}) node->Docker({"rm", "-f", name});
      TestDatabase::Get().Exec("DELETE FROM allgo.webapps WHERE docker_name IN ('ra', 'rb')");
      TestDatabase::Get().Exec("DELETE FROM allgo.users WHERE email = 'other-owner@example.org'");
    }
  } cleanup{docker_};
  OwnGateway gateway = StartOwnGateway("rename", "container = mh-{docker_name}\n");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  const std::string& log_path = gateway.log;
  Container a(docker_, "mh-ra", "a-host"), b(docker_, "mh-tmp", "b-host");
  ASSERT_EQ(a.Run(image_), "");
  ASSERT_EQ(b.Run(image_), "");  // B's container, under a name of no webapp for now
  TestDatabase& db = TestDatabase::Get();
  const uint32_t id_a = db.AddWebapp("ra", owner_);
  const uid_t uid_a = 2000 + id_a;

  const auto window = std::chrono::steady_clock::now();  // A's location is cached from here
  ASSERT_EQ(Shell(uid_a, "hostname", {}, gateway.config).out, "a-host\n") << ReadFile(log_path);
  ASSERT_TRUE(WaitFor([&] { return ReadFile(log_path).find("webapp ra: spare exec ") != std::string::npos; }, 5000))
      << ReadFile(log_path);
  // The rename, as the controller does it: the row, then the containers; B takes the old name.
  db.Exec("UPDATE allgo.webapps SET docker_name = 'rb' WHERE id = " + std::to_string(id_a));
  ASSERT_EQ(docker_->Docker({"rename", "mh-ra", "mh-rb"}).exit_code, 0);
  ASSERT_EQ(docker_->Docker({"rename", "mh-tmp", "mh-ra"}).exit_code, 0);
  const uid_t uid_b = 2000 + db.AddWebapp("ra", db.AddUser("other-owner@example.org"));

  for (int login = 0; login < 2; ++login) {
    RunResult r = Shell(uid_a, "hostname; cat /mark", {}, gateway.config);
    EXPECT_EQ(r.out, "a-host\nonly-in-mh-ra\n") << "login " << login << ": " << r.err << ReadFile(log_path);
    // The next login may take a spare: wait for it, as a user who logs in again would.
    WaitFor([&] {
      std::string log = ReadFile(log_path);
      size_t n = 0;
      for (size_t at = log.find("webapp rb: spare exec "); at != std::string::npos; at = log.find("webapp rb: spare exec ", at + 1)) ++n;
      return n > static_cast<size_t>(login);
    }, 5000);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - window, std::chrono::seconds(10))  // SandboxLocator::kCacheTtl
      << "the logins above must fall within the location cache's window to test it";
  std::string log = ReadFile(log_path);
  EXPECT_THAT(log, Not(HasSubstr("webapp rb: node node1 container mh-ra ")));
  EXPECT_THAT(log, HasSubstr("its row now gives container mh-rb, not the cached mh-ra on node node1: asking again"));
  EXPECT_THAT(log, HasSubstr("webapp rb: node node1 container mh-rb exec "));
  // B, for its part, lands in its own container.
  EXPECT_EQ(Shell(uid_b, "hostname; cat /mark", {}, gateway.config).out, "b-host\nonly-in-mh-tmp\n") << ReadFile(log_path);
}

// Issue 18 finding 7b: a template that maps two webapps to one container is refused by
// --check and at start, naming file, line, key and the fix.
TEST_F(GatewayTest, AnAmbiguousContainerTemplateIsRefusedByCheckAndAtStart) {
  std::string path = tmp_ / "ambiguous.conf";
  std::string text = ConfigText(tmp_ / "ambiguous.sock");
  const size_t line = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  WriteFile(path, text + "container = mh-{docker_name}{id}\n");
  const std::string expected = path + ":" + std::to_string(line) +
                               ": [docker] container: 'mh-{docker_name}{id}' maps two webapps to one container";
  RunResult r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(expected));
  EXPECT_THAT(r.err, HasSubstr("put a non-digit between them, e.g. mh-{docker_name}-{id}"));
  r = test::Run({Artifact("allgo-sandbox-gateway"), "--config", path}, {.timeout_seconds = 20});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(expected));
  EXPECT_FALSE(fs::exists(tmp_ / "ambiguous.sock"));
  WriteFile(path, text + "container = mh-{docker_name}-{id}\n");
  r = test::Run({Artifact("allgo-sandbox-gateway"), "--check", "--config", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("container mh-{docker_name}-{id}, webapp_label off"));
}

// Issue 18 finding 7c: with [docker] webapp_label, a container whose label names another
// webapp id (or none) gets no exec.
TEST_F(GatewayTest, AContainerLabelledForAnotherWebappIsRefused) {
  ExtraWebapps rows(owner_);
  const uid_t uid = rows.Add("lbl");
  const std::string id = std::to_string(uid - 2000);
  Container container(docker_, "lbl", "lbl-host");
  ASSERT_EQ(container.Run(image_, {"allgo.webapp_id=" + std::to_string(uid - 2000 + 1000)}), "");
  OwnGateway gateway = StartOwnGateway("label", "webapp_label = allgo.webapp_id\n");
  ASSERT_TRUE(gateway.listening) << ReadFile(gateway.log);
  RunResult r = Shell(uid, "hostname", {}, gateway.config);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "allgo: the session in the sandbox of 'lbl' did not start: the container lbl on node node1 is "
                   "labelled allgo.webapp_id=" + std::to_string(uid - 2000 + 1000) + ", not allgo.webapp_id=" + id +
                   ": it is not the sandbox of 'lbl'; tell the allgo operators\n");
  EXPECT_THAT(ReadFile(gateway.log), HasSubstr("container lbl on node node1 is labelled allgo.webapp_id="));
  EXPECT_THAT(ReadFile(gateway.log), Not(HasSubstr("webapp lbl: node node1 container lbl exec")));
  EXPECT_TRUE(SpareAgents(docker_, "lbl").empty()) << "no exec at all";
  // No label at all: refused as well.
  ASSERT_EQ(container.Run(image_), "");
  r = Shell(uid, "hostname", {}, gateway.config);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the container lbl on node node1 has no label allgo.webapp_id, not allgo.webapp_id=" + id));
  // The same where the database says which node runs it.
  OwnGateway located = StartOwnGateway("label-located", "webapp_label = allgo.webapp_id\n[queries]\nsandbox_location = "
                                                        "SELECT 'node1', docker_name FROM webapps WHERE id = ?\n");
  ASSERT_TRUE(located.listening) << ReadFile(located.log);
  r = Shell(uid, "hostname", {}, located.config);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the container lbl on node node1 has no label allgo.webapp_id, not allgo.webapp_id=" + id));
  // Its own id: served.
  ASSERT_EQ(container.Run(image_, {"allgo.webapp_id=" + id}), "");
  EXPECT_EQ(Shell(uid, "hostname", {}, gateway.config).out, "lbl-host\n") << ReadFile(gateway.log);
  EXPECT_EQ(Shell(uid, "hostname", {}, located.config).out, "lbl-host\n") << ReadFile(located.log);
}

TEST_F(GatewayTest, AWrongClientCertificateIsOneLineAndLogged) {
  std::string other_key = tmp_ / "other-key.pem";
  fs::copy_file(other_.client_key, other_key);
  chown(other_key.c_str(), UidOf("allgo-gateway"), 0);
  chmod(other_key.c_str(), 0400);
  std::string path = tmp_ / "wrong.conf";
  std::string socket = tmp_ / "wrong/gw.sock";
  WriteFile(path, ConfigText(socket, other_.client_cert, other_key));
  Daemon wrong({Artifact("allgo-sandbox-gateway"), "--config", path}, tmp_ / "wrong.log");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(socket); }, 10000)) << ReadFile(tmp_ / "wrong.log");
  RunResult r = Shell(uid2_, "hostname", {}, path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("node2"));
  EXPECT_THAT(r.err, HasSubstr("check tls_cert and tls_key"));
  EXPECT_THAT(ReadFile(tmp_ / "wrong.log"), HasSubstr("check tls_cert and tls_key"));
  // The unix node needs no certificate: its webapp still works through this gateway.
  EXPECT_EQ(Shell(uid1_, "hostname", {}, path).out, "web1-on-node1\n");
}


// ---- Limits (issue 18): floods of connections and a noisy agent (docs/gateway.md "Limits") ----

// Threads and resident memory of a process, sampled every 10 ms while alive; the highest seen.
class ProcessWatch {
 public:
  explicit ProcessWatch(pid_t pid) : pid_(pid), thread_([this] { Loop(); }) {}
  ~ProcessWatch() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  size_t max_threads() const { return max_threads_; }
  long max_rss_kib() const { return max_rss_kib_; }

  static size_t Threads(pid_t pid) {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  }
  static long RssKib(pid_t pid) {
    std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
    size_t at = status.find("VmRSS:");
    return at == std::string::npos ? 0 : std::atol(status.c_str() + at + 6);
  }
  // utime + stime, in clock ticks.
  static long CpuTicks(pid_t pid) {
    std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
      if (i == 14) utime = std::atol(field.c_str());
      if (i == 15) stime = std::atol(field.c_str());
    }
    return utime + stime;
  }

 private:
  void Loop() {
    while (!stop_) {
      max_threads_ = std::max(max_threads_.load(), Threads(pid_));
      max_rss_kib_ = std::max(max_rss_kib_.load(), RssKib(pid_));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  pid_t pid_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> max_threads_{0};
  std::atomic<long> max_rss_kib_{0};
  std::thread thread_;
};

// As `uid`, rounds of `per_round` connections to the gateway socket, as fast as connect()
// goes, each round held open until the next one is made, until `seconds` passed (at least
// one round); returns how many connections were made.
long FloodConnections(const std::string& socket_path, uid_t uid, int per_round, double seconds) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    rlimit files{static_cast<rlim_t>(per_round) * 2 + 64, static_cast<rlim_t>(per_round) * 2 + 64};
    setrlimit(RLIMIT_NOFILE, &files);  // as root, before the drop
    if (setgroups(0, nullptr) != 0 || setgid(kWebappGid) != 0 || setuid(uid) != 0) _exit(126);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    long made = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::vector<int> held;
    do {
      std::vector<int> round;
      for (int i = 0; i < per_round; ++i) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) break;
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          close(fd);
          continue;
        }
        round.push_back(fd);
        ++made;
      }
      for (int fd : held) close(fd);
      held.swap(round);
    } while (std::chrono::steady_clock::now() < until);
    for (int fd : held) close(fd);
    ssize_t ignored = write(pipe_fds[1], &made, sizeof made);
    (void)ignored;
    _exit(0);
  }
  close(pipe_fds[1]);
  long made = -1;
  if (read(pipe_fds[0], &made, sizeof made) != static_cast<ssize_t>(sizeof made)) made = -1;
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return made;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

TEST_F(GatewayTest, AConnectionFloodFromAnotherUidCostsNoThreadAndASessionGoesOnWhole) {
  const pid_t pid = gateway_->pid();
  const size_t log_before = GatewayLog().size();
  std::string blob(16 << 20, '\0');
  std::mt19937_64 rng(18);
  for (auto& c : blob) c = static_cast<char>(rng());
  RunOptions in;
  in.stdin_data = blob;

  // The same transfer without, then with a flood of `nobody` (3000 connections a round,
  // rounds until it ended): its bytes intact; the gateway's threads and memory bounded.
  auto t0 = std::chrono::steady_clock::now();
  RunResult quiet = Shell(uid1_, "cat", in);
  const double quiet_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err << GatewayLog();
  const size_t threads_idle = ProcessWatch::Threads(pid);
  const long rss_idle = ProcessWatch::RssKib(pid);

  ProcessWatch watch(pid);
  const double flood_s = std::max(2.0, 3 * quiet_s);  // outlasts the transfer
  auto flood_start = std::chrono::steady_clock::now();
  std::future<long> flood = std::async(std::launch::async, [&] {
    return FloodConnections(SocketPath(), 65534, 3000, flood_s);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  t0 = std::chrono::steady_clock::now();
  RunResult r = Shell(uid1_, "cat", in);
  const double busy_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long flooded = flood.get();
  const double flood_took = std::chrono::duration<double>(std::chrono::steady_clock::now() - flood_start).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(kRefusalLingerMs + 500));
  watch.Stop();
  EXPECT_GE(flooded, 3000) << "the flood's connections were accepted";
  EXPECT_EQ(r.exit_code, 0) << r.err << GatewayLog().substr(log_before, 20000);
  EXPECT_EQ(r.out.size(), blob.size());
  EXPECT_TRUE(r.out == blob) << "the session's bytes are intact under the flood";
  EXPECT_TRUE(gateway_->Running());
  EXPECT_LE(watch.max_threads(), threads_idle + 8) << "refused connections take no thread";
  EXPECT_LE(watch.max_rss_kib(), rss_idle + 64 * 1024) << "idle " << rss_idle << " KiB";
  // The log: at most 20 refusal lines a minute, then one line that counts the rest.
  const std::string log = GatewayLog().substr(log_before);
  EXPECT_LE(Count(log, "refused: uid 65534 is not a webapp"), 20u);
  EXPECT_THAT(log, Not(HasSubstr("terminate called")));
  // The ones not logged are counted in one line (a minute later, or at the stop).
  EXPECT_EQ(gateway_->Stop(SIGTERM, 15000), 0);
  EXPECT_THAT(GatewayLog().substr(log_before), testing::ContainsRegex("[0-9]+ more connections refused in the last "
                                                                      "[0-9]+ s, not logged one by one"));
  std::cout << "[ bench ] 16 MiB through `cat` (web1, unix node): " << quiet_s << " s quiet, " << busy_s
            << " s under a flood of " << flooded << " connections from uid 65534 in " << flood_took
            << " s; gateway threads idle " << threads_idle << ", at most " << watch.max_threads()
            << " under the flood; RSS idle " << rss_idle << " KiB, at most " << watch.max_rss_kib() << " KiB\n";
}

TEST_F(GatewayTest, ANoisyAgentEndsItsSessionWithOneLineAndBoundedGatewayCpu) {
  // Something in the container writes to the agent's stderr (the exec's, which the gateway
  // reads as the agent's log) without end: the command's shell's parent is the agent.
  const pid_t pid = gateway_->pid();
  const size_t log_before = GatewayLog().size();
  const long cpu_before = ProcessWatch::CpuTicks(pid);
  auto t0 = std::chrono::steady_clock::now();
  RunOptions o;
  o.timeout_seconds = 30;
  RunResult r = Shell(uid1_, "echo before; yes 0123456789abcdef0123456789abcdef0123456789abcdef > /proc/$PPID/fd/2", o);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_s = static_cast<double>(ProcessWatch::CpuTicks(pid) - cpu_before) / sysconf(_SC_CLK_TCK);
  EXPECT_EQ(r.exit_code, 255) << r.err << GatewayLog().substr(log_before, 20000);
  EXPECT_EQ(r.out, "before\n") << "what the command wrote before stays whole";
  EXPECT_THAT(r.err, HasSubstr("allgo: lost the connection to the sandbox of 'web1' (the sandbox gateway ended the "
                               "session: the sandbox agent's log (its stderr) went past 1 MiB at once"));
  EXPECT_LT(took, 15.0);
  EXPECT_LT(cpu_s, 3.0) << "gateway CPU for the whole session";
  // The session's end line says why and how much; the agent's lines in the log stay bounded.
  const std::string log = GatewayLog().substr(log_before);
  EXPECT_THAT(log, HasSubstr("webapp web1: end after"));
  EXPECT_THAT(log, HasSubstr(": the sandbox agent's log (its stderr) went past 1 MiB"));
  EXPECT_LE(Count(log, "webapp web1 agent: 0123456789abcdef"), 61u);
  std::cout << "[ bench ] noisy agent: session ended after " << took << " s, gateway CPU " << cpu_s << " s\n";
  // The webapp is served again at once.
  EXPECT_EQ(Shell(uid1_, "hostname").out, "web1-on-node1\n") << GatewayLog().substr(log_before, 20000);
}

TEST_F(GatewayTest, TheWebappsOfOneOwnerShareTheirOwnersLimit) {
  // max_sessions_per_owner = 2: two idle sessions of web1 leave none for another of web1 or
  // for web2 (same owner); a line says so.
  OwnGateway g = StartOwnGateway("owner", "max_sessions_per_owner = 2\n");
  ASSERT_TRUE(g.listening) << ReadFile(g.log);
  const std::string socket = tmp_ / "owner-gw/gw.sock";
  std::future<std::string> held = std::async(std::launch::async, [&] {
    return ReplyPastIdleConnections(socket, uid1_, 2, OpenFrame("hostname"));
  });
  Decoded d = Decode(held.get());
  ASSERT_EQ(d.errors.size(), 1u) << ReadFile(g.log);
  EXPECT_EQ(d.errors[0], "the webapps of the owner of 'web1' already have 2 sessions open through the sandbox "
                         "gateway (the limit per owner); end some first");
  // Once they are gone, web2 is served.
  ASSERT_TRUE(WaitFor([&] { return Decode(RawExchange(socket, uid2_, OpenFrame("hostname"), 5000)).started; }, 15000))
      << ReadFile(g.log);
}

}  // namespace
}  // namespace allgo::test
