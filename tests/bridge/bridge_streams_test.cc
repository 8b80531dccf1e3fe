// The stream mode of the bridge (protocol version 3, docs/protocol.md "Version 3: streams")
// end to end: the real static allgo-sandbox-agent in a bubblewrap sandbox with its OWN network
// namespace (--unshare-net, as a container with --network none), a client written here
// against the codec, and real servers inside the sandbox's namespace (sockets made there with
// setns). What a forward opens, it opens inside the sandbox: its loopback, its /tmp.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "allgo/bridge/io.h"
#include "allgo/bridge/protocol.h"
#include "allgo/unique_fd.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;
namespace bridge = allgo::bridge;
using bridge::Message;

constexpr uid_t kWebappUid = 4242;  // the uid the sandbox belongs to (no NSS name needed)
constexpr gid_t kWebappGid = 4242;
constexpr uint32_t kClientWindow = 256 * 1024;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    memcpy(&s[i], &v, 8);
  }
  return s;
}

// ---- processes and namespaces ----

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    if (end > at) out.push_back(std::stoi(text.substr(at, end - at)));
    at = end + 1;
  }
  return out;
}

bool IsAgent(pid_t pid) { return ReadFile("/proc/" + std::to_string(pid) + "/comm").rfind("allgo-sandbox-a", 0) == 0; }

// The agent below a bwrap process (bwrap → bwrap as pid 1 of the sandbox → the agent).
pid_t FindAgentBelow(pid_t root) {
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (p != root && IsAgent(p)) return p;
    for (pid_t c : ChildrenOf(p)) todo.push_back(c);
  }
  return 0;
}

// The agent's forked stream-mode children.
std::vector<pid_t> StreamChildren(pid_t agent) {
  std::vector<pid_t> out;
  for (pid_t c : ChildrenOf(agent)) {
    if (IsAgent(c)) out.push_back(c);
  }
  return out;
}

size_t RssKiB(pid_t pid) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find("VmRSS:");
  return at == std::string::npos ? 0 : std::stoul(status.substr(at + 6));
}

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n;
}

// A socket of the sandbox's network namespace: made by a thread that entered it (a socket
// keeps the namespace it was made in; the test process itself stays on the frontend's).
UniqueFd SandboxSocket(pid_t agent, int domain = AF_INET) {
  int result = -1;
  std::thread([&] {
    UniqueFd ns(open(("/proc/" + std::to_string(agent) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (ns && setns(ns.get(), CLONE_NEWNET) == 0) result = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }).join();
  EXPECT_GE(result, 0) << "cannot make a socket in the sandbox's network namespace";
  return UniqueFd(result);
}

// The sandbox's network namespace differs from the test's (--unshare-net).
std::string NetNs(pid_t pid) {
  char buf[64] = "";
  ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), buf, sizeof buf - 1);
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

int ListenLoopback(int fd, int port = 0) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

int ConnectLoopback(int fd, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

int ConnectUnix(int fd, const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  return connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

uint32_t LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// Everything until EOF; what came within 5 s if the end does not come.
std::string ReadToEof(int fd) {
  timeval limit{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// A server on a listening socket, one thread per connection: `serve` gets each connection.
class Server {
 public:
  Server(UniqueFd listener, std::function<void(int)> serve) : listener_(std::move(listener)) {
    thread_ = std::thread([this, serve = std::move(serve)] {
      for (;;) {
        int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // shut down
        connections_.push_back(fd);
        workers_.emplace_back([serve, fd] { serve(fd); });
      }
    });
  }
  ~Server() {
    shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
    for (int fd : connections_) shutdown(fd, SHUT_RDWR);  // unblocks a worker stuck in write
    for (std::thread& t : workers_) t.join();
    for (int fd : connections_) close(fd);
  }

 private:
  UniqueFd listener_;
  std::thread thread_;
  std::vector<int> connections_;
  std::vector<std::thread> workers_;
};

void Echo(int fd) {
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (!bridge::WriteAll(fd, buf, static_cast<size_t>(n))) return;
  }
  shutdown(fd, SHUT_WR);
}

// ---- the client ----

// What the client knows of one stream.
struct StreamState {
  bool accepted = false, refused = false, eof = false, closed = false;
  bridge::StreamRefuse refusal;
  std::string received;
  uint64_t send_window = 0;   // what the agent still accepts from us
  uint64_t our_window = 0;    // what we still accept from the agent
  uint64_t beyond_window = 0;  // bytes the agent sent past our window (must stay 0)
};

// A version 3 client on a connected socket, written against the codec alone. Everything the
// agent sends is recorded (PumpUntil); data received is granted back at once unless
// auto_grant is off. Writes never block the reading: while the socket is full, input is read.
class StreamClient {
 public:
  explicit StreamClient(UniqueFd fd) : fd_(std::move(fd)) { bridge::SetNonBlocking(fd_.get(), true); }
  int fd() const { return fd_.get(); }

  bool auto_grant = true;
  std::map<uint32_t, StreamState> streams;
  std::vector<bridge::StreamOpen> opens;  // agent-opened streams, in order
  std::map<uint32_t, bridge::ListenResult> listens;
  std::vector<std::string> errors;
  bool hello = false;
  bool closed = false;

  void Send(const Message& m) {
    EXPECT_EQ(bridge::Validate(m, bridge::Mode::kStream), "");
    Write(bridge::EncodeFrame(m));
  }
  void Write(std::string_view bytes) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!bytes.empty() && !closed) {
      ssize_t n = send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        closed = true;  // the agent closed the connection
        return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the agent stopped reading";
      pollfd p{fd_.get(), POLLIN | POLLOUT, 0};
      poll(&p, 1, 1000);
      if (p.revents & POLLIN) ReadSome();
    }
  }

  void Hello() {
    Send(bridge::Hello{});
    ASSERT_TRUE(PumpUntil([&] { return hello; })) << "no hello from the agent";
  }

  // Opens a stream (odd id) to host:port or a unix path; waits for accept or refuse.
  StreamState& Open(uint32_t id, bridge::StreamKind kind, const std::string& host, uint32_t port,
                    uint32_t window = kClientWindow) {
    bridge::StreamOpen open;
    open.stream = id;
    open.kind = kind;
    open.host = host;
    open.port = port;
    if (kind == bridge::StreamKind::kTcp) {
      open.origin_host = "192.0.2.7";
      open.origin_port = 50000;
    }
    open.window = window;
    streams[id].our_window = window;
    Send(open);
    EXPECT_TRUE(PumpUntil([&] { return streams[id].accepted || streams[id].refused; }, 20000))
        << "no answer to stream-open " << id;
    return streams[id];
  }

  // Sends bytes within the agent's window, waiting for stream-window as needed.
  void SendData(uint32_t id, std::string_view bytes) {
    while (!bytes.empty()) {
      ASSERT_TRUE(PumpUntil([&] { return streams[id].send_window > 0 || closed; })) << "window never opened";
      ASSERT_FALSE(closed);
      size_t n = std::min<size_t>({bytes.size(), bridge::kMaxData, streams[id].send_window});
      streams[id].send_window -= n;
      Send(bridge::StreamData{id, std::string(bytes.substr(0, n))});
      bytes.remove_prefix(n);
      PumpFor(0);
    }
  }

  void Accept(uint32_t id, uint32_t window = kClientWindow) {
    streams[id].our_window = window;
    streams[id].accepted = true;
    Send(bridge::StreamAccept{id, window});
  }
  void Grant(uint32_t id, uint32_t n) {
    streams[id].our_window += n;
    Send(bridge::StreamWindow{id, n});
  }

  // Reads and records what the agent sends until done() or timeout_ms.
  bool PumpUntil(const std::function<bool()>& done, int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!done()) {
      if (closed) return done();
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_.get(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200))) > 0) ReadSome();
    }
    return true;
  }
  void PumpFor(int ms) {
    PumpUntil([] { return false; }, ms);
  }

  // Closes our end (EOF for the agent).
  void Hangup() { fd_.reset(); }

 private:
  void ReadSome() {
    char buf[64 * 1024];
    for (;;) {
      size_t room = std::min(sizeof buf, reader_.Room());
      if (room == 0) {
        Drain();
        continue;
      }
      ssize_t n = recv(fd_.get(), buf, room, MSG_DONTWAIT);
      if (n == 0) {
        closed = true;
        break;
      }
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) closed = true;
        break;
      }
      reader_.Append(std::string_view(buf, static_cast<size_t>(n)));
      Drain();
    }
    Drain();
  }

  void Drain() {
    for (;;) {
      Message m;
      std::string error;
      auto r = reader_.Next(&m, &error);
      if (r == bridge::FrameReader::Result::kNeedMore) return;
      if (r == bridge::FrameReader::Result::kError) {
        ADD_FAILURE() << "the agent sent a bad frame: " << error;
        closed = true;
        return;
      }
      Record(m);
    }
  }

  void Record(Message& m) {
    if (std::holds_alternative<bridge::Hello>(m)) {
      hello = true;
    } else if (auto* e = std::get_if<bridge::Error>(&m)) {
      errors.push_back(e->text);
    } else if (auto* a = std::get_if<bridge::StreamAccept>(&m)) {
      streams[a->stream].accepted = true;
      streams[a->stream].send_window = a->window;
    } else if (auto* r = std::get_if<bridge::StreamRefuse>(&m)) {
      streams[r->stream].refused = true;
      streams[r->stream].refusal = *r;
    } else if (auto* d = std::get_if<bridge::StreamData>(&m)) {
      StreamState& s = streams[d->stream];
      if (d->bytes.size() > s.our_window) {
        s.beyond_window += d->bytes.size() - s.our_window;
        s.our_window = 0;
      } else {
        s.our_window -= d->bytes.size();
      }
      s.received += d->bytes;
      if (auto_grant && !s.closed) Grant(d->stream, static_cast<uint32_t>(d->bytes.size()));
    } else if (auto* w = std::get_if<bridge::StreamWindow>(&m)) {
      streams[w->stream].send_window += w->increment;
    } else if (auto* eof = std::get_if<bridge::StreamEof>(&m)) {
      streams[eof->stream].eof = true;
    } else if (auto* c = std::get_if<bridge::StreamClose>(&m)) {
      streams[c->stream].closed = true;
    } else if (auto* o = std::get_if<bridge::StreamOpen>(&m)) {
      opens.push_back(*o);
      streams[o->stream].send_window = o->window;
    } else if (auto* l = std::get_if<bridge::ListenResult>(&m)) {
      listens[l->listener] = *l;
    } else {
      ADD_FAILURE() << "unexpected message from the agent";
    }
  }

  UniqueFd fd_;
  bridge::FrameReader reader_{bridge::Mode::kStream};
};

// One byte and room for one fd (SCM_RIGHTS).
struct FdMessage {
  char byte = 'x';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  FdMessage() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};

// Connects to a unix socket as uid/gid (in a child process, which passes the connected fd
// back): SO_PEERCRED is the connecting process's, as for allgo-shell.
UniqueFd ConnectAs(const std::string& path, uid_t uid, gid_t gid) {
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(3);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ConnectUnix(fd, path) != 0) _exit(4);
    FdMessage m;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&m.msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    _exit(sendmsg(pair[1], &m.msg, 0) == 1 ? 0 : 5);
  }
  close(pair[1]);
  FdMessage m;
  int fd = -1;
  if (recvmsg(pair[0], &m.msg, MSG_CMSG_CLOEXEC) == 1 && CMSG_FIRSTHDR(&m.msg) != nullptr) {
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m.msg)), sizeof fd);
  }
  close(pair[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(status, 0) << "connecting as uid " << uid << " failed";
  return UniqueFd(fd);
}

class BridgeStreams : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge_ = tmp_ / "bridge";
    mark_ = tmp_ / "mark";
    fs::create_directories(bridge_);
    fs::create_directories(mark_);
    chmod(bridge_.c_str(), 0755);  // root's: the agent serves --allow-uid (and root)
    chmod(mark_.c_str(), 0777);
  }
  void TearDown() override {
    if (agent_) agent_->Stop(SIGTERM, 5000);
  }

  // The sandbox with its own network namespace and a private /tmp.
  void StartAgent(std::vector<std::string> bwrap_extra = {}, std::vector<std::string> agent_args = {}) {
    bwrap_extra.insert(bwrap_extra.begin(), "--unshare-net");
    agent_args.insert(agent_args.end(), {"--allow-uid", std::to_string(kWebappUid)});
    std::vector<std::string> argv =
        SandboxCommand(bridge_, {.binds = {mark_}, .bwrap_extra = bwrap_extra, .agent_args = agent_args});
    agent_log_ = tmp_ / "agent.log";
    agent_ = std::make_unique<Daemon>(argv, agent_log_);
    ASSERT_TRUE(WaitFor([&] { return ReadFile(agent_log_).find("listening on") != std::string::npos; }, 10000))
        << ReadFile(agent_log_);
    agent_pid_ = FindAgentBelow(agent_->pid());
    ASSERT_GT(agent_pid_, 0);
    ASSERT_NE(NetNs(agent_pid_), NetNs(getpid())) << "the sandbox must have its own network namespace";
  }

  std::unique_ptr<StreamClient> Connect() {
    auto client = std::make_unique<StreamClient>(ConnectAs(bridge_ + "/agent.sock", kWebappUid, kWebappGid));
    EXPECT_GE(client->fd(), 0);
    return client;
  }
  std::unique_ptr<StreamClient> ConnectHello() {
    auto client = Connect();
    client->Hello();
    return client;
  }

  // A server listening on the sandbox's 127.0.0.1.
  std::unique_ptr<Server> SandboxServer(std::function<void(int)> serve, int* port) {
    UniqueFd l = SandboxSocket(agent_pid_);
    *port = ListenLoopback(l.get());
    EXPECT_GT(*port, 0);
    return std::make_unique<Server>(std::move(l), std::move(serve));
  }

  // A path inside the sandbox, seen from the test (the sandbox's /tmp is its own tmpfs).
  std::string InSandbox(const std::string& path) const { return "/proc/" + std::to_string(agent_pid_) + "/root" + path; }

  std::string AgentLog() const { return ReadFile(agent_log_); }

  TempDir tmp_{"allgo-streams"};
  std::string bridge_, mark_, agent_log_;
  std::unique_ptr<Daemon> agent_;
  pid_t agent_pid_ = 0;
};

TEST_F(BridgeStreams, TcpStreamReachesTheSandboxsLoopbackAndCarries8MiBBothWays) {
  StartAgent();
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  // A server on the frontend's own loopback, on a port of its own.
  UniqueFd frontend(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int frontend_port = ListenLoopback(frontend.get());
  ASSERT_GT(frontend_port, 0);

  auto client = ConnectHello();
  ASSERT_TRUE(client->hello);
  EXPECT_EQ(StreamChildren(agent_pid_).size(), 1u) << "a stream connection is served by a child of the agent";

  // The frontend's server is not reachable: the connect happens inside the sandbox.
  StreamState& refused = client->Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(frontend_port));
  ASSERT_TRUE(refused.refused);
  EXPECT_EQ(refused.refusal.reason, bridge::RefuseReason::kConnectFailed);
  EXPECT_EQ(refused.refusal.text, "cannot connect to 127.0.0.1 port " + std::to_string(frontend_port) +
                                      ": Connection refused");

  StreamState& s = client->Open(3, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port));
  ASSERT_TRUE(s.accepted) << s.refusal.text;
  EXPECT_EQ(s.send_window, 256u * 1024) << "the agent's window";
  std::string data = RandomBytes(8 << 20, 19);
  client->SendData(3, data);
  client->Send(bridge::StreamEof{3});
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[3].closed; }, 60000))
      << client->streams[3].received.size() << " bytes back";
  StreamState& done = client->streams[3];
  EXPECT_TRUE(done.eof) << "stream-eof before stream-close";
  EXPECT_EQ(done.received.size(), data.size());
  EXPECT_TRUE(done.received == data) << "the echo differs";
  EXPECT_EQ(done.beyond_window, 0u);
  client->Send(bridge::StreamClose{3});
  // The id is free again: a new stream with it works.
  StreamState& again = client->Open(3, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port));
  EXPECT_TRUE(again.accepted);
  EXPECT_TRUE(client->errors.empty()) << client->errors[0];
}

TEST_F(BridgeStreams, NamesResolveOnlyFromTheSandboxsHostsFile) {
  std::string hosts = tmp_ / "hosts";
  WriteFile(hosts,
            "# the sandbox's own hosts file\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n"
            "not-an-address bogus-name\n127.0.0.1 Webapp-DB db.internal # the database\n");
  StartAgent({"--ro-bind", hosts, "/etc/hosts"});
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  auto client = ConnectHello();
  uint32_t id = 1;
  for (const char* name : {"localhost", "webapp-db", "DB.INTERNAL"}) {
    StreamState& s = client->Open(id, bridge::StreamKind::kTcp, name, static_cast<uint32_t>(port));
    EXPECT_TRUE(s.accepted) << name << ": " << s.refusal.text;
    client->SendData(id, "ping");
    EXPECT_TRUE(client->PumpUntil([&] { return client->streams[id].received == "ping"; })) << name;
    id += 2;
  }
  for (const char* name : {"bogus-name", "example.org", "no-such-host"}) {
    StreamState& s = client->Open(id, bridge::StreamKind::kTcp, name, 80);
    ASSERT_TRUE(s.refused) << name;
    EXPECT_EQ(s.refusal.reason, bridge::RefuseReason::kConnectFailed);
    EXPECT_EQ(s.refusal.text, std::string("name resolution of ") + name +
                                  " is not supported by the agent; use an address or an /etc/hosts name");
    id += 2;
  }
  // An IPv6 literal: the sandbox's ::1 (nothing listens there: refused, from inside).
  StreamState& v6 = client->Open(id, bridge::StreamKind::kTcp, "::1", static_cast<uint32_t>(port));
  EXPECT_TRUE(v6.refused);
  EXPECT_EQ(v6.refusal.text.rfind("cannot connect to ::1 port " + std::to_string(port) + ": ", 0), 0u) << v6.refusal.text;
}

TEST_F(BridgeStreams, UnixStreamConnectsInsideTheSandbox) {
  StartAgent();
  // The socket lives in the sandbox's private /tmp, which the frontend's /tmp is not.
  UniqueFd l(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string outside = InSandbox("/tmp/service.sock");
  ASSERT_LT(outside.size(), sizeof a.sun_path);
  snprintf(a.sun_path, sizeof a.sun_path, "%s", outside.c_str());
  ASSERT_EQ(bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  ASSERT_EQ(listen(l.get(), 4), 0);
  ASSERT_FALSE(fs::exists("/tmp/service.sock"));
  Server server(std::move(l), [](int fd) {
    std::string got = ReadToEof(fd);
    std::string reply = "pong:" + got;
    bridge::WriteAll(fd, reply.data(), reply.size());
    shutdown(fd, SHUT_WR);
  });
  auto client = ConnectHello();
  StreamState& s = client->Open(1, bridge::StreamKind::kUnix, "/tmp/service.sock", 0);
  ASSERT_TRUE(s.accepted) << s.refusal.text;
  client->SendData(1, "ping");
  client->Send(bridge::StreamEof{1});  // half-close: the server reads to EOF, then answers
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[1].closed; }));
  EXPECT_EQ(client->streams[1].received, "pong:ping");
  EXPECT_TRUE(client->streams[1].eof);
  client->Send(bridge::StreamClose{1});

  StreamState& missing = client->Open(3, bridge::StreamKind::kUnix, "/tmp/missing.sock", 0);
  ASSERT_TRUE(missing.refused);
  EXPECT_EQ(missing.refusal.text, "cannot connect to /tmp/missing.sock: No such file or directory");
}

TEST_F(BridgeStreams, RemoteListenerInsideTheSandboxOpensForwardedStreams) {
  StartAgent();
  auto client = ConnectHello();
  client->Send(bridge::Listen{1, bridge::ListenKind::kTcp, "127.0.0.1", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(1) != 0; }));
  bridge::ListenResult result = client->listens[1];
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_GT(result.port, 0u) << "port 0 gets the allocated port back";
  EXPECT_EQ(result.path, "");
  const int port = static_cast<int>(result.port);

  // The frontend's loopback has no such listener.
  UniqueFd outside(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(ConnectLoopback(outside.get(), port), ECONNREFUSED);

  // A program in the sandbox connects: the client gets a forwarded-tcp stream-open.
  UniqueFd conn = SandboxSocket(agent_pid_);
  ASSERT_EQ(ConnectLoopback(conn.get(), port), 0);
  ASSERT_EQ(bridge::WriteAll(conn.get(), "early", 5), true);
  ASSERT_TRUE(client->PumpUntil([&] { return client->opens.size() == 1; }));
  bridge::StreamOpen open = client->opens[0];
  EXPECT_EQ(open.kind, bridge::StreamKind::kForwardedTcp);
  EXPECT_EQ(open.stream % 2, 0u) << "agent-opened ids are even";
  EXPECT_EQ(open.host, "127.0.0.1");
  EXPECT_EQ(open.port, result.port);
  EXPECT_EQ(open.origin_host, "127.0.0.1");
  EXPECT_EQ(open.origin_port, LocalPort(conn.get()));
  EXPECT_EQ(open.listener, 1u);
  EXPECT_EQ(open.window, 256u * 1024);
  // Nothing is read from the socket before the accept.
  client->PumpFor(300);
  EXPECT_EQ(client->streams[open.stream].received, "");
  client->Accept(open.stream);
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[open.stream].received == "early"; }));
  client->SendData(open.stream, "hello from the client");
  char buf[64] = {};
  ASSERT_EQ(read(conn.get(), buf, 21), 21);
  EXPECT_EQ(std::string(buf, 21), "hello from the client");
  conn.reset();  // the sandbox program closes: eof, then close
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[open.stream].eof; }));
  client->Send(bridge::StreamEof{open.stream});
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[open.stream].closed; }));
  client->Send(bridge::StreamClose{open.stream});

  // A connection the client refuses: the sandbox program sees the end.
  UniqueFd refused = SandboxSocket(agent_pid_);
  ASSERT_EQ(ConnectLoopback(refused.get(), port), 0);
  ASSERT_TRUE(client->PumpUntil([&] { return client->opens.size() == 2; }));
  client->Send(bridge::StreamRefuse{client->opens[1].stream, bridge::RefuseReason::kProhibited, "no"});
  EXPECT_EQ(ReadToEof(refused.get()), "");

  // A fixed port too.
  UniqueFd probe = SandboxSocket(agent_pid_);
  int fixed = ListenLoopback(probe.get());
  probe.reset();
  client->Send(bridge::Listen{2, bridge::ListenKind::kTcp, "127.0.0.1", static_cast<uint32_t>(fixed)});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(2) != 0; }));
  EXPECT_TRUE(client->listens[2].ok) << client->listens[2].error;
  EXPECT_EQ(client->listens[2].port, static_cast<uint32_t>(fixed));
  // ... and the same port again is refused with the reason.
  client->Send(bridge::Listen{3, bridge::ListenKind::kTcp, "127.0.0.1", static_cast<uint32_t>(fixed)});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(3) != 0; }));
  EXPECT_FALSE(client->listens[3].ok);
  EXPECT_EQ(client->listens[3].error,
            "cannot listen on 127.0.0.1 port " + std::to_string(fixed) + ": Address already in use");

  // Unlisten: the port is closed inside the sandbox.
  client->Send(bridge::Unlisten{1});
  client->PumpFor(200);
  UniqueFd late = SandboxSocket(agent_pid_);
  EXPECT_EQ(ConnectLoopback(late.get(), port), ECONNREFUSED);
  EXPECT_TRUE(client->errors.empty());
}

TEST_F(BridgeStreams, AgentAndUnixListenersArePrivateAndRemovedAtUnlisten) {
  StartAgent();
  auto client = ConnectHello();
  client->Send(bridge::Listen{7, bridge::ListenKind::kAuthAgent, "", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(7) != 0; }));
  bridge::ListenResult agent = client->listens[7];
  ASSERT_TRUE(agent.ok) << agent.error;
  EXPECT_EQ(agent.port, 0u);
  ASSERT_EQ(agent.path.rfind("/tmp/allgo-agent-", 0), 0u) << agent.path;
  ASSERT_EQ(fs::path(agent.path).filename(), "agent.sock");
  std::string folder = fs::path(agent.path).parent_path();
  struct stat st;
  ASSERT_EQ(stat(InSandbox(folder).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(lstat(InSandbox(agent.path).c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A program in the sandbox uses SSH_AUTH_SOCK: an auth-agent stream.
  UniqueFd user(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(ConnectUnix(user.get(), InSandbox(agent.path)), 0);
  ASSERT_TRUE(client->PumpUntil([&] { return client->opens.size() == 1; }));
  EXPECT_EQ(client->opens[0].kind, bridge::StreamKind::kAuthAgent);
  EXPECT_EQ(client->opens[0].listener, 7u);
  EXPECT_EQ(client->opens[0].host, "");
  uint32_t id = client->opens[0].stream;
  client->Accept(id);
  ASSERT_TRUE(bridge::WriteAll(user.get(), "\0\0\0\1\v", 5));  // SSH2_AGENTC_REQUEST_IDENTITIES
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[id].received.size() == 5; }));
  client->SendData(id, std::string("\0\0\0\5\f\0\0\0\0", 9));
  char answer[9];
  ASSERT_EQ(read(user.get(), answer, 9), 9);
  EXPECT_EQ(std::string(answer, 9), std::string("\0\0\0\5\f\0\0\0\0", 9));

  // A -R to a unix path: 0600, refused over an existing file, removed at unlisten.
  client->Send(bridge::Listen{8, bridge::ListenKind::kUnix, "/tmp/forward.sock", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(8) != 0; }));
  ASSERT_TRUE(client->listens[8].ok) << client->listens[8].error;
  EXPECT_EQ(client->listens[8].path, "/tmp/forward.sock");
  ASSERT_EQ(lstat(InSandbox("/tmp/forward.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  UniqueFd fwd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(ConnectUnix(fwd.get(), InSandbox("/tmp/forward.sock")), 0);
  ASSERT_TRUE(client->PumpUntil([&] { return client->opens.size() == 2; }));
  EXPECT_EQ(client->opens[1].kind, bridge::StreamKind::kForwardedUnix);
  EXPECT_EQ(client->opens[1].host, "/tmp/forward.sock");
  EXPECT_EQ(client->opens[1].listener, 8u);
  WriteFile(InSandbox("/tmp/precious"), "keep me");
  client->Send(bridge::Listen{9, bridge::ListenKind::kUnix, "/tmp/precious", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(9) != 0; }));
  EXPECT_FALSE(client->listens[9].ok);
  EXPECT_EQ(client->listens[9].error, "/tmp/precious exists");
  EXPECT_EQ(ReadFile(InSandbox("/tmp/precious")), "keep me");

  client->Send(bridge::Unlisten{7});
  client->Send(bridge::Unlisten{8});
  client->Send(bridge::Unlisten{9});  // failed: nothing to do, no error
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(InSandbox(folder)) && !fs::exists(InSandbox("/tmp/forward.sock")); },
                      5000));
  // The streams already open stay open (as OpenSSH's cancel-tcpip-forward).
  client->SendData(id, "still");
  ASSERT_EQ(read(user.get(), answer, 5), 5);
  EXPECT_EQ(std::string(answer, 5), "still");
  client->PumpFor(100);
  EXPECT_TRUE(client->errors.empty());
  EXPECT_FALSE(client->closed);
}

TEST_F(BridgeStreams, TheAgentKeepsToTheWindowAndItsMemoryStaysBounded) {
  StartAgent();
  // A sandbox service that writes 100 MiB to whoever connects.
  std::atomic<uint64_t> written{0};
  int port = 0;
  auto flood = SandboxServer(
      [&](int fd) {
        std::string chunk(64 * 1024, 'z');
        for (uint64_t sent = 0; sent < (100u << 20);) {
          ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
          if (n <= 0) return;
          sent += static_cast<uint64_t>(n);
          written += static_cast<uint64_t>(n);
        }
      },
      &port);

  // A client that grants 100000 bytes and then nothing.
  auto stingy = ConnectHello();
  stingy->auto_grant = false;
  ASSERT_EQ(StreamChildren(agent_pid_).size(), 1u);
  pid_t child = StreamChildren(agent_pid_)[0];
  size_t rss_before = RssKiB(child);
  StreamState& s = stingy->Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port), 100000);
  ASSERT_TRUE(s.accepted);
  stingy->PumpFor(2000);
  EXPECT_EQ(stingy->streams[1].received.size(), 100000u) << "exactly the window, never more";
  EXPECT_EQ(stingy->streams[1].beyond_window, 0u);
  stingy->Grant(1, 12345);
  stingy->PumpFor(1000);
  EXPECT_EQ(stingy->streams[1].received.size(), 112345u);
  EXPECT_EQ(stingy->streams[1].beyond_window, 0u);

  // A client that grants 16 MiB and then never reads its connection at all.
  auto deaf = ConnectHello();
  ASSERT_EQ(StreamChildren(agent_pid_).size(), 2u);
  pid_t deaf_child = 0;
  for (pid_t p : StreamChildren(agent_pid_)) {
    if (p != child) deaf_child = p;
  }
  size_t deaf_rss_before = RssKiB(deaf_child);
  StreamState& d = deaf->Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port),
                              bridge::kMaxStreamWindow);
  ASSERT_TRUE(d.accepted);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the service writes what it can
  uint64_t total = written.load();
  EXPECT_LT(total, 40u << 20) << "the service is stalled, not drained into the agent";
  size_t rss_stingy = RssKiB(child), rss_deaf = RssKiB(deaf_child);
  // Bounded: the 1 MiB output queue (its buffer at most 4x), the reader, no per-byte growth.
  EXPECT_LT(rss_stingy, rss_before + 4 * 1024) << "KiB; before " << rss_before;
  EXPECT_LT(rss_deaf, deaf_rss_before + 8 * 1024) << "KiB; before " << deaf_rss_before;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_LT(RssKiB(deaf_child), deaf_rss_before + 8 * 1024);
  EXPECT_LT(written.load(), total + (4u << 20)) << "nothing moves while nobody reads";
  std::cout << "written " << written.load() << " bytes; RSS KiB stingy " << rss_before << " -> " << rss_stingy
            << ", deaf " << deaf_rss_before << " -> " << rss_deaf << "\n";
}

TEST_F(BridgeStreams, AtMost256StreamsAnd64ListenersPerConnection) {
  StartAgent();
  // A service whose connections wait in its backlog: connects succeed, nothing is accepted.
  UniqueFd l = SandboxSocket(agent_pid_);
  int port = ListenLoopback(l.get());
  ASSERT_EQ(listen(l.get(), 1024), 0);
  auto client = ConnectHello();
  for (uint32_t i = 0; i < 256; ++i) {
    bridge::StreamOpen open{2 * i + 1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port), "", 0, 0, 1000};
    client->streams[open.stream].our_window = 1000;
    client->Send(open);
  }
  ASSERT_TRUE(client->PumpUntil(
      [&] {
        size_t answered = 0;
        for (auto& [id, s] : client->streams) answered += s.accepted || s.refused;
        return answered == 256;
      },
      20000));
  for (auto& [id, s] : client->streams) ASSERT_TRUE(s.accepted) << id << ": " << s.refusal.text;
  StreamState& extra = client->Open(1001, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port));
  ASSERT_TRUE(extra.refused);
  EXPECT_EQ(extra.refusal.reason, bridge::RefuseReason::kResourceShortage);
  EXPECT_EQ(extra.refusal.text, "too many streams on this connection (256)");
  // Closing one frees its place.
  client->Send(bridge::StreamClose{1});
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[1].closed; }));
  client->streams.erase(1001);
  EXPECT_TRUE(client->Open(1001, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port)).accepted);

  for (uint32_t i = 1; i <= 65; ++i) client->Send(bridge::Listen{i, bridge::ListenKind::kTcp, "127.0.0.1", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.size() == 65; }));
  for (uint32_t i = 1; i <= 64; ++i) EXPECT_TRUE(client->listens[i].ok) << i;
  EXPECT_FALSE(client->listens[65].ok);
  EXPECT_EQ(client->listens[65].error, "too many listeners on this connection (64)");
  EXPECT_TRUE(client->errors.empty());
}

TEST_F(BridgeStreams, AConnectThatHangsIsRefusedAfter10SecondsWithoutStallingOthers) {
  StartAgent();
  // A listener whose accept queue is full drops new SYNs: a connect to it hangs.
  UniqueFd full = SandboxSocket(agent_pid_);
  int full_port = ListenLoopback(full.get());
  ASSERT_EQ(listen(full.get(), 0), 0);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 2; ++i) {
    fillers.push_back(SandboxSocket(agent_pid_));
    bridge::SetNonBlocking(fillers.back().get(), true);
    ConnectLoopback(fillers.back().get(), full_port);
  }
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  auto client = ConnectHello();
  bridge::StreamOpen hanging{1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(full_port), "", 0, 0, 1000};
  auto start = std::chrono::steady_clock::now();
  client->Send(hanging);
  // Meanwhile another stream of the same connection works.
  StreamState& other = client->Open(3, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port));
  ASSERT_TRUE(other.accepted);
  client->SendData(3, "meanwhile");
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[3].received == "meanwhile"; }));
  EXPECT_FALSE(client->streams[1].refused || client->streams[1].accepted);
  ASSERT_TRUE(client->PumpUntil([&] { return client->streams[1].refused; }, 15000));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(seconds, 9.5);
  EXPECT_EQ(client->streams[1].refusal.text,
            "cannot connect to 127.0.0.1 port " + std::to_string(full_port) + ": timed out after 10 s");
}

TEST_F(BridgeStreams, FramesSentTogetherWithTheHelloAreNotLost) {
  StartAgent();
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  // hello, a listen, a stream-open and more in one write: the agent reads them with the
  // hello, before it knows the mode, and hands them on to the child serving the connection.
  auto client = Connect();
  bridge::StreamOpen open{1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port), "", 0, 0, 1000};
  client->streams[1].our_window = 1000;
  std::string burst = bridge::EncodeFrame(bridge::Hello{}) +
                      bridge::EncodeFrame(bridge::Listen{1, bridge::ListenKind::kTcp, "127.0.0.1", 0}) +
                      bridge::EncodeFrame(open);
  for (uint32_t i = 2; i <= 40; ++i) burst += bridge::EncodeFrame(bridge::Listen{i, bridge::ListenKind::kAuthAgent, "", 0});
  client->Write(burst);
  ASSERT_TRUE(client->PumpUntil([&] { return client->hello && client->listens.size() == 40 && client->streams[1].accepted; }))
      << client->listens.size();
  for (auto& [id, result] : client->listens) EXPECT_TRUE(result.ok) << id << ": " << result.error;
  EXPECT_TRUE(client->errors.empty());
}

TEST_F(BridgeStreams, ProtocolErrorsEndOnlyTheirOwnConnection) {
  StartAgent();
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  // A service that accepts and never reads, with a small receive buffer.
  UniqueFd sink_listener = SandboxSocket(agent_pid_);
  int small = 4096;
  setsockopt(sink_listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  int sink_port = ListenLoopback(sink_listener.get());
  Server sink(std::move(sink_listener), [](int) {});
  auto bystander = ConnectHello();
  ASSERT_TRUE(bystander->Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port)).accepted);

  struct Case {
    const char* name;
    std::function<void(StreamClient&)> misbehave;
    std::string error;
  };
  std::vector<Case> cases = {
      {"duplicate id",
       [&](StreamClient& c) {
         ASSERT_TRUE(c.Open(5, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port)).accepted);
         bridge::StreamOpen again{5, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port), "", 0, 0, 1000};
         c.Send(again);
       },
       "protocol error: stream-open: stream 5 is in use"},
      {"data beyond the window",
       [&](StreamClient& c) {
         // To a service that never reads: once its socket is full, the agent grants nothing
         // more, and the client's view of the window is exactly the agent's.
         ASSERT_TRUE(c.Open(5, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(sink_port)).accepted);
         std::string chunk(bridge::kMaxData, 'x');
         while (c.PumpUntil([&] { return c.streams[5].send_window > 0; }, 1000)) {
           size_t n = std::min<size_t>(chunk.size(), c.streams[5].send_window);
           c.streams[5].send_window -= n;
           c.Send(bridge::StreamData{5, chunk.substr(0, n)});
         }
         c.Send(bridge::StreamData{5, "!"});
       },
       "protocol error: stream-data beyond the window of stream 5 (1 bytes, window 0)"},
      {"unknown stream",
       [&](StreamClient& c) { c.Send(bridge::StreamData{99, "who?"}); },
       "protocol error: stream-data for unknown stream 99"},
      {"an agent-side kind",
       [&](StreamClient& c) {
         c.Send(bridge::StreamOpen{4, bridge::StreamKind::kAuthAgent, "", 0, "", 0, 1, 1000});
       },
       "protocol error: stream-open: a auth-agent stream is opened by the agent only"},
      {"accept of a stream the agent never opened",
       [&](StreamClient& c) { c.Send(bridge::StreamAccept{2, 1000}); },
       "protocol error: stream-accept for stream 2, which awaits no accept"},
      {"a tcp stream with an even (agent-side) id",
       [&](StreamClient& c) {
         // Written raw: the codec's Validate refuses to build it, the agent's decoder too.
         c.Write(bridge::EncodeFrame(
             bridge::StreamOpen{6, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port), "", 0, 0, 1000}));
       },
       "protocol error: stream-open: stream id of the wrong side for its kind"},
      {"a second hello", [&](StreamClient& c) { c.Send(bridge::Hello{}); }, "protocol error: a second hello"},
      {"a bad frame",
       [&](StreamClient& c) { c.Write(std::string("\0\0\0\2\x0b\x00", 6)); },
       "protocol error: stream-open: truncated message"},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.name);
    auto c = ConnectHello();
    test.misbehave(*c);
    ASSERT_TRUE(c->PumpUntil([&] { return c->closed; })) << "the agent closes the connection";
    ASSERT_EQ(c->errors.size(), 1u);
    if (std::string(test.name) == "a bad frame") {
      EXPECT_EQ(c->errors[0].rfind("protocol error: ", 0), 0u) << c->errors[0];
    } else {
      EXPECT_EQ(c->errors[0], test.error);
    }
  }
  // The other connection did not notice.
  bystander->SendData(1, "still here");
  EXPECT_TRUE(bystander->PumpUntil([&] { return bystander->streams[1].received == "still here"; }));
  EXPECT_TRUE(bystander->errors.empty());
  EXPECT_TRUE(WaitFor([&] { return StreamChildren(agent_pid_).size() == 1; }, 5000));
  EXPECT_TRUE(AgentLog().find("stream-data beyond the window of stream 5") != std::string::npos) << AgentLog();
}

TEST_F(BridgeStreams, ConnectionEofClosesEverythingItOpened) {
  StartAgent();
  int port = 0;
  std::atomic<bool> echo_saw_eof{false};
  auto echo = SandboxServer(
      [&](int fd) {
        Echo(fd);
        echo_saw_eof = true;
      },
      &port);
  // The agent process's fds when idle.
  size_t agent_fds = OpenFds(agent_pid_);

  auto client = ConnectHello();
  pid_t child = StreamChildren(agent_pid_).at(0);
  ASSERT_TRUE(client->Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port)).accepted);
  client->Send(bridge::Listen{1, bridge::ListenKind::kTcp, "127.0.0.1", 0});
  client->Send(bridge::Listen{2, bridge::ListenKind::kUnix, "/tmp/r.sock", 0});
  client->Send(bridge::Listen{3, bridge::ListenKind::kAuthAgent, "", 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.size() == 3; }));
  for (auto& [id, result] : client->listens) ASSERT_TRUE(result.ok) << id << ": " << result.error;
  int listen_port = static_cast<int>(client->listens[1].port);
  std::string agent_folder = fs::path(client->listens[3].path).parent_path();
  // One forwarded connection waiting for the client's accept.
  UniqueFd pending = SandboxSocket(agent_pid_);
  ASSERT_EQ(ConnectLoopback(pending.get(), listen_port), 0);
  ASSERT_TRUE(client->PumpUntil([&] { return client->opens.size() == 1; }));
  EXPECT_GT(OpenFds(child), 5u);

  client->Hangup();
  EXPECT_TRUE(WaitFor([&] { return StreamChildren(agent_pid_).empty(); }, 5000)) << "the child serving it ends";
  EXPECT_TRUE(WaitFor([&] { return echo_saw_eof.load(); }, 5000)) << "the sandbox service sees the end";
  EXPECT_EQ(ReadToEof(pending.get()), "") << "the waiting connection is closed";
  EXPECT_FALSE(fs::exists(InSandbox("/tmp/r.sock")));
  EXPECT_FALSE(fs::exists(InSandbox(agent_folder)));
  UniqueFd probe = SandboxSocket(agent_pid_);
  EXPECT_EQ(ConnectLoopback(probe.get(), listen_port), ECONNREFUSED) << "no listener left bound";
  EXPECT_EQ(OpenFds(agent_pid_), agent_fds) << "the agent holds nothing of it";
  EXPECT_TRUE(AgentLog().find("stream mode ended") != std::string::npos) << AgentLog();
}

TEST_F(BridgeStreams, AgentStopEndsItsStreamConnectionsCleanly) {
  StartAgent();
  auto client = ConnectHello();
  std::string path = mark_ + "/stop.sock";  // shared with the test: it outlives the sandbox
  client->Send(bridge::Listen{1, bridge::ListenKind::kUnix, path, 0});
  ASSERT_TRUE(client->PumpUntil([&] { return client->listens.count(1) != 0; }));
  ASSERT_TRUE(client->listens[1].ok) << client->listens[1].error;
  ASSERT_TRUE(fs::exists(path));
  // SIGTERM to the agent (as `docker stop` sends to a container's first process).
  ASSERT_EQ(kill(agent_pid_, SIGTERM), 0);
  EXPECT_TRUE(client->PumpUntil([&] { return client->closed; })) << "the connection ends";
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(path); }, 5000)) << "the listener's file is removed";
  EXPECT_TRUE(WaitFor([&] { return AgentLog().find("signal 15") != std::string::npos; }, 5000)) << AgentLog();
}

TEST_F(BridgeStreams, StreamConnectionsCountAsSessionsAndOldClientsStillWork) {
  StartAgent({}, {"--max-sessions", "1"});
  auto client = ConnectHello();
  // The one slot is the stream connection's: a version 1 client is refused meanwhile.
  bridge::Open v1;
  v1.command = "true";
  auto old = Connect();
  old->Write(bridge::EncodeFrame(v1));
  bridge::FrameReader reader;
  std::string got;
  ASSERT_TRUE(WaitFor(
      [&] {
        char buf[4096];
        ssize_t n = recv(old->fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<size_t>(n));
        return n == 0;
      },
      5000));
  reader.Append(got);
  Message m;
  std::string error;
  ASSERT_EQ(reader.Next(&m, &error), bridge::FrameReader::Result::kMessage) << error;
  ASSERT_TRUE(std::holds_alternative<bridge::Error>(m));
  EXPECT_EQ(std::get<bridge::Error>(m).text, "too many sessions in this sandbox; try again later");

  client->Hangup();
  ASSERT_TRUE(WaitFor([&] { return StreamChildren(agent_pid_).empty(); }, 5000));
  ASSERT_TRUE(WaitFor([&] { return AgentLog().find("stream mode ended") != std::string::npos; }, 5000));
  // A version 1 client, as before: its `open` gets `opened`.
  auto again = Connect();
  again->Write(bridge::EncodeFrame(v1));
  bridge::FrameReader v1_reader;
  std::optional<Message> answer;
  ASSERT_TRUE(WaitFor(
      [&] {
        char buf[4096];
        ssize_t n = recv(again->fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) v1_reader.Append(std::string_view(buf, static_cast<size_t>(n)));
        Message next;
        if (v1_reader.Next(&next, &error) == bridge::FrameReader::Result::kMessage) answer = next;
        return answer.has_value() || n == 0;
      },
      5000));
  ASSERT_TRUE(answer.has_value());
  ASSERT_TRUE(std::holds_alternative<bridge::Opened>(*answer)) << "a version 1 open is served as before";
  EXPECT_TRUE(bridge::IsValidSessionName(std::get<bridge::Opened>(*answer).session));
}

// --stdio: the sandbox gateway's path (one byte stream per Engine API exec).
TEST_F(BridgeStreams, StdioModeServesStreamsToo) {
  std::vector<std::string> argv = SandboxCommand(bridge_, {.binds = {mark_}, .bwrap_extra = {"--unshare-net"}});
  argv.resize(argv.size() - 2);  // no --bridge-dir under --stdio
  argv.push_back("--stdio");
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  std::string log = tmp_ / "stdio.log";
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pair[1], 0);
    dup2(pair[1], 1);
    int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(err, 2);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pair[1]);
  StreamClient client{UniqueFd(pair[0])};
  pid_t agent = 0;
  ASSERT_TRUE(WaitFor([&] { return (agent = FindAgentBelow(pid)) > 0; }, 10000));
  agent_pid_ = agent;
  // A spare exec waits for its first frame: the hello comes late, and with more frames.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  client.Write(bridge::EncodeFrame(bridge::Hello{}) +
               bridge::EncodeFrame(bridge::Listen{9, bridge::ListenKind::kTcp, "127.0.0.1", 0}));
  ASSERT_TRUE(client.PumpUntil([&] { return client.hello && client.listens.count(9) != 0; })) << ReadFile(log);
  EXPECT_TRUE(client.listens[9].ok);
  int port = 0;
  auto echo = SandboxServer(Echo, &port);
  StreamState& s = client.Open(1, bridge::StreamKind::kTcp, "127.0.0.1", static_cast<uint32_t>(port));
  ASSERT_TRUE(s.accepted) << s.refusal.text;
  std::string data = RandomBytes(1 << 20, 7);
  client.SendData(1, data);
  client.Send(bridge::StreamEof{1});
  ASSERT_TRUE(client.PumpUntil([&] { return client.streams[1].closed; }, 30000));
  EXPECT_TRUE(client.streams[1].received == data);
  // A listener in a folder shared with the test (the sandbox's /tmp goes with it).
  std::string socket_path = mark_ + "/stdio.sock";
  client.Send(bridge::Listen{1, bridge::ListenKind::kUnix, socket_path, 0});
  ASSERT_TRUE(client.PumpUntil([&] { return client.listens.count(1) != 0; }));
  EXPECT_TRUE(client.listens[1].ok) << client.listens[1].error;
  ASSERT_TRUE(fs::exists(socket_path));
  // The gateway closes the stream: the agent removes its listener and exits 0.
  client.Hangup();
  int status = -1;
  ASSERT_TRUE(WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 10000)) << ReadFile(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ReadFile(log);
  EXPECT_TRUE(ReadFile(log).find("stream mode") != std::string::npos) << ReadFile(log);
  EXPECT_FALSE(fs::exists(socket_path));
}

}  // namespace
}  // namespace allgo::test
