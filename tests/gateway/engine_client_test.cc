// The Engine API client against real private engines (tests/support/test_docker.h): the
// shared one over its unix socket, a second one as a remote node over TLS with client
// certificates on a loopback port, and stalled servers for the time-outs.
#include "allgo/engine_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "allgo/stdcopy.h"
#include "exec_test_helpers.h"
#include "allgo/unique_fd.h"
#include "test_docker.h"
#include "test_support.h"

namespace allgo::engine {
namespace {

using namespace std::chrono_literals;
using test::TestDocker;

std::unique_ptr<EngineClient> Client(const NodeOptions& options) {
  std::unique_ptr<EngineClient> client;
  Status s = EngineClient::Create(options, &client);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return client;
}

// Reads until `needle` is in what came (true) or 10 s pass (false).
bool ReadUntil(ExecStream& stream, const std::string& needle, std::string* all) {
  std::string chunk;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (all->find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (!stream.Read(&chunk, 4096, 5s).ok() || chunk.empty()) return false;
    *all += chunk;
  }
  return true;
}

// A container for one test, removed at the end.
class Container {
 public:
  Container(TestDocker& docker, std::string name) : docker_(docker), name_(std::move(name)) {
    docker_.Docker({"rm", "-f", name_});
  }
  ~Container() { docker_.Docker({"rm", "-f", name_}); }
  const std::string& name() const { return name_; }

 private:
  TestDocker& docker_;
  std::string name_;
};

std::string RunContainer(TestDocker& docker, const std::string& name, const std::string& image,
                         const std::vector<std::string>& command) {
  std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", name, image};
  args.insert(args.end(), command.begin(), command.end());
  test::RunResult r = docker.Docker(args, {.timeout_seconds = 60});
  return r.exit_code == 0 ? "" : "docker run " + name + ": " + r.err;
}

class EngineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    docker_ = TestDocker::Get(&why);
    if (!docker_) GTEST_SKIP() << "Docker cannot run here: " << why;
    image_ = docker_->BusyboxImage(&why);
    if (image_.empty()) GTEST_SKIP() << "no busybox image: " << why;
    client_ = Client({.url = "unix://" + docker_->socket(), .api_timeout = 10s});
    ASSERT_TRUE(client_);
  }
  TestDocker* docker_ = nullptr;
  std::string image_;
  std::unique_ptr<EngineClient> client_;
};

TEST_F(EngineClientTest, InspectsRunningStoppedAndMissingContainers) {
  Container running(*docker_, "engine-running"), stopped(*docker_, "engine-stopped");
  ASSERT_EQ(RunContainer(*docker_, running.name(), image_, {"sleep", "100000"}), "");
  ASSERT_EQ(RunContainer(*docker_, stopped.name(), image_, {"sh", "-c", "exit 3"}), "");
  ASSERT_TRUE(test::WaitFor([&] { return TrimNewlines(docker_->Docker({"inspect", "-f", "{{.State.Status}}", stopped.name()}).out) == "exited"; }, 10000));

  ContainerInfo info;
  Status s = client_->InspectContainer(running.name(), &info);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(info.running);
  EXPECT_EQ(info.status, "running");
  EXPECT_EQ(info.name, running.name());
  EXPECT_EQ(info.id, TrimNewlines(docker_->Docker({"inspect", "-f", "{{.Id}}", running.name()}).out));
  EXPECT_TRUE(IsValidExecId(info.id));  // 64 hex, like an exec id

  s = client_->InspectContainer(stopped.name(), &info);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(info.running);
  EXPECT_EQ(info.status, "exited");
  EXPECT_EQ(info.exit_code, 3);

  s = client_->InspectContainer("engine-missing", &info);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find("No such container"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(docker_->socket()), std::string::npos) << "names the node: " << s.message();

  // An exec in a stopped container: the engine's reason, as Unavailable.
  std::string id;
  s = client_->CreateExec(stopped.name(), {.cmd = {"true"}}, &id);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("is not running"), std::string::npos) << s.message();
  s = client_->CreateExec("engine-missing", {.cmd = {"true"}}, &id);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
}

TEST_F(EngineClientTest, TtyExecThroughTheHijackedStreamWithResize) {
  Container c(*docker_, "engine-tty");
  ASSERT_EQ(RunContainer(*docker_, c.name(), image_, {"sleep", "100000"}), "");
  std::string id;
  // `read` waits for our line, so the resize lands before stty reads the size.
  Status s = client_->CreateExec(c.name(), {.cmd = {"sh", "-c", "read line; echo got:$line; stty size; exit 5"}, .tty = true}, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<ExecStream> stream;
  s = client_->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream);
  EXPECT_GE(stream->fd(), 0);
  ExecInfo info;
  // The engine records the pid a moment after the start.
  ASSERT_TRUE(test::WaitFor([&] { return client_->InspectExec(id, &info).ok() && info.running && info.pid > 0; }, 10000))
      << "running " << info.running << " pid " << info.pid;
  EXPECT_FALSE(info.exit_code.has_value());
  s = client_->ResizeExec(id, 33, 101);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream->Write("hello\n", 5s).ok());
  std::string out = ReadToEof(*stream);
  EXPECT_NE(out.find("got:hello"), std::string::npos) << out;
  EXPECT_NE(out.find("33 101"), std::string::npos) << out;
  EXPECT_EQ(ExitCode(*client_, id), 5);
}

TEST_F(EngineClientTest, TtyCatEndsOnControlD) {
  Container c(*docker_, "engine-cat");
  ASSERT_EQ(RunContainer(*docker_, c.name(), image_, {"sleep", "100000"}), "");
  std::string id;
  ASSERT_TRUE(client_->CreateExec(c.name(), {.cmd = {"cat"}, .tty = true}, &id).ok());
  std::unique_ptr<ExecStream> stream;
  Status s = client_->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream->Write("ping\n", 5s).ok());
  std::string all;
  // The terminal echoes the line, then cat prints it: twice.
  ASSERT_TRUE(ReadUntil(*stream, "ping\r\nping\r\n", &all)) << all;
  ASSERT_TRUE(stream->Write("\x04", 5s).ok());  // ^D: the terminal's EOF
  ReadToEof(*stream);
  EXPECT_EQ(ExitCode(*client_, id), 0);
}

TEST_F(EngineClientTest, MultiplexedExecDemultiplexedWithStdinEof) {
  Container c(*docker_, "engine-mux");
  ASSERT_EQ(RunContainer(*docker_, c.name(), image_, {"sleep", "100000"}), "");
  std::string id;
  Status s = client_->CreateExec(c.name(), {.cmd = {"sh", "-c", "cat; echo to-stderr >&2; exit 7"}, .tty = false, .user = "65534:65534"}, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<ExecStream> stream;
  s = client_->StartExec(id, false, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string big(100000, 'x');
  ASSERT_TRUE(stream->Write("abc\n" + big, 10s).ok());
  s = stream->CloseWrite();  // cat sees EOF
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string raw = ReadToEof(*stream);
  StdcopyDemuxer demux;
  std::string out, err;
  s = demux.Feed(raw, [&](StdStream which, std::string_view bytes) {
    (which == StdStream::kStdout ? out : err) += bytes;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(demux.AtFrameBoundary());
  EXPECT_EQ(out, "abc\n" + big);
  EXPECT_EQ(err, "to-stderr\n");
  EXPECT_EQ(ExitCode(*client_, id), 7);
}

TEST_F(EngineClientTest, ExecStreamReadTimesOutAndFdPolls) {
  Container c(*docker_, "engine-poll");
  ASSERT_EQ(RunContainer(*docker_, c.name(), image_, {"sleep", "100000"}), "");
  std::string id;
  ASSERT_TRUE(client_->CreateExec(c.name(), {.cmd = {"sh", "-c", "read x; echo late:$x"}, .tty = true}, &id).ok());
  std::unique_ptr<ExecStream> stream;
  Status s = client_->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // The way a relay waits: poll() on fd() unless bytes are already buffered.
  pollfd p{.fd = stream->fd(), .events = POLLIN, .revents = 0};
  EXPECT_EQ(stream->Buffered(), 0u);
  EXPECT_EQ(poll(&p, 1, 300), 0) << "nothing to read before we write";
  ASSERT_TRUE(stream->Write("x\n", 5s).ok());
  std::string all;
  ASSERT_TRUE(ReadUntil(*stream, "late:x", &all)) << all;
  ReadToEof(*stream);

  // A second exec that says nothing: Read gives up after its time-out.
  ASSERT_TRUE(client_->CreateExec(c.name(), {.cmd = {"sleep", "30"}, .tty = true}, &id).ok());
  s = client_->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto start = std::chrono::steady_clock::now();
  std::string chunk;
  s = stream->Read(&chunk, 100, 400ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_GE(took, 350ms);
  EXPECT_LT(took, 3s);
}

TEST_F(EngineClientTest, UnknownExecIsNotFound) {
  ExecInfo info;
  Status s = client_->InspectExec(std::string(64, 'a'), &info);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  std::unique_ptr<ExecStream> stream;
  s = client_->StartExec(std::string(64, 'b'), true, &stream);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_FALSE(stream);
}

// A server that accepts connections (the kernel's backlog does) and never answers: an
// inspect through `client` (api_timeout 700 ms) fails after about that long, saying `expect`.
void ExpectTimeOut(EngineClient* client, const std::string& expect) {
  ASSERT_TRUE(client);
  ContainerInfo info;
  auto start = std::chrono::steady_clock::now();
  Status s = client->InspectContainer("webapp", &info);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 3s);
}

TEST(EngineClientTimeout, StalledUnixServerFailsWithinApiTimeout) {
  test::TempDir dir("allgo-engine");
  std::string path = dir / "stalled.sock";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener.get(), 8), 0);
  auto client = Client({.url = "unix://" + path, .api_timeout = 700ms});
  ExpectTimeOut(client.get(), "no answer within api_timeout (700 ms)");
}

TEST(EngineClientTimeout, StalledTlsServerFailsWithinApiTimeout) {
  test::TempDir dir("allgo-engine");
  test::TestCertificates certs;
  ASSERT_EQ(test::MakeTestCertificates(dir.path(), "stall", &certs), "");
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(listen(listener.get(), 8), 0);
  auto client = Client({.url = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), .tls_ca = certs.ca,
                        .tls_cert = certs.client_cert, .tls_key = certs.client_key, .api_timeout = 700ms});
  ExpectTimeOut(client.get(), "TLS handshake: no answer within api_timeout");
}

TEST(EngineClientTimeout, NothingListeningIsAClearError) {
  test::TempDir dir("allgo-engine");
  auto client = Client({.url = "unix://" + (dir / "absent.sock"), .api_timeout = 2s});
  ContainerInfo info;
  Status s = client->InspectContainer("webapp", &info);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("connecting: No such file or directory"), std::string::npos) << s.message();
}

// A second engine as a remote node: TLS with client certificates on a loopback port.
class TlsNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    if (!TestDocker::Get(&why)) {  // the same preconditions; skip the same way
      skip_ = "Docker cannot run here: " + why;
      return;
    }
    dir_ = new test::TempDir("allgo-engine-tls");
    chmod(dir_->path().c_str(), 0755);
    std::string error = test::MakeTestCertificates(dir_->path(), "node", &certs_);
    if (error.empty()) error = test::MakeTestCertificates(dir_->path(), "other", &other_);
    if (!error.empty()) {
      skip_ = error;
      return;
    }
    node_ = TestDocker::StartNode({.port = test::FreeLoopbackPort(), .ca = certs_.ca, .cert = certs_.server_cert,
                                   .key = certs_.server_key},
                                  &why)
                .release();
    if (!node_) skip_ = "the TLS node cannot start: " + why;
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  NodeOptions Options() const {
    return {.url = node_->tcp_url(), .tls_ca = certs_.ca, .tls_cert = certs_.client_cert,
            .tls_key = certs_.client_key, .api_timeout = 10s};
  }
  static inline std::string skip_;
  static inline test::TempDir* dir_ = nullptr;
  static inline test::TestCertificates certs_, other_;
  static inline TestDocker* node_ = nullptr;
};

TEST_F(TlsNodeTest, ExecWithTheRightClientCertificate) {
  std::string why;
  std::string image = node_->BusyboxImage(&why);
  ASSERT_FALSE(image.empty()) << why;
  Container c(*node_, "engine-tls");
  ASSERT_EQ(RunContainer(*node_, c.name(), image, {"sleep", "100000"}), "");
  auto client = Client(Options());
  ASSERT_TRUE(client);
  ContainerInfo info;
  Status s = client->InspectContainer(c.name(), &info);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(info.running);
  s = client->InspectContainer("engine-missing", &info);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();

  std::string id;
  ASSERT_TRUE(client->CreateExec(c.name(), {.cmd = {"sh", "-c", "read x; echo tls:$x; exit 4"}, .tty = true}, &id).ok());
  std::unique_ptr<ExecStream> stream;
  s = client->StartExec(id, true, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(client->ResizeExec(id, 40, 120).ok());
  ASSERT_TRUE(stream->Write("over-tls\n", 5s).ok());
  std::string out = ReadToEof(*stream);
  EXPECT_NE(out.find("tls:over-tls"), std::string::npos) << out;
  EXPECT_EQ(ExitCode(*client, id), 4);

  // Multiplexed output over TLS too.
  ASSERT_TRUE(client->CreateExec(c.name(), {.cmd = {"sh", "-c", "echo out; echo err >&2"}, .attach_stdin = false}, &id).ok());
  s = client->StartExec(id, false, &stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(stream->CloseWrite().IsInvalid());  // said, not silently ignored
  std::string raw = ReadToEof(*stream), o, e;
  StdcopyDemuxer demux;
  ASSERT_TRUE(demux.Feed(raw, [&](StdStream w, std::string_view b) { (w == StdStream::kStdout ? o : e) += b; }).ok());
  EXPECT_EQ(o, "out\n");
  EXPECT_EQ(e, "err\n");
}

// Output that arrives in several TLS records at once: poll() on fd() sees the socket only,
// not what Asio's TLS layer already read ahead; ReadAvailable hands all of it out, never
// waiting, and reports the end.
TEST_F(TlsNodeTest, ReadAvailableGetsEveryRecordWithoutWaiting) {
  std::string why;
  std::string image = node_->BusyboxImage(&why);
  ASSERT_FALSE(image.empty()) << why;
  Container c(*node_, "engine-tls-avail");
  ASSERT_EQ(RunContainer(*node_, c.name(), image, {"sleep", "100000"}), "");
  auto client = Client(Options());
  ASSERT_TRUE(client);
  std::string id;
  ASSERT_TRUE(client->CreateExec(c.name(), {.cmd = {"sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done"},
                                            .attach_stdin = false},
                                 &id)
                  .ok());
  std::unique_ptr<ExecStream> stream;
  ASSERT_TRUE(client->StartExec(id, false, &stream).ok());
  std::optional<int> code = ExitCode(*client, id);  // everything was sent before we read
  EXPECT_EQ(code, 0);
  std::string raw;
  char chunk[7];  // small reads: records stay buffered
  size_t got = 0;
  bool eof = false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!eof && std::chrono::steady_clock::now() < deadline) {
    auto t0 = std::chrono::steady_clock::now();
    Status s = stream->ReadAvailable(chunk, sizeof chunk, &got, &eof);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "it must not wait";
    raw.append(chunk, got);
    if (got == 0 && !eof) {
      pollfd p{stream->fd(), POLLIN, 0};
      poll(&p, 1, 200);
    }
  }
  ASSERT_TRUE(eof);
  std::string o, e;
  StdcopyDemuxer demux;
  ASSERT_TRUE(demux.Feed(raw, [&](StdStream w, std::string_view b) { (w == StdStream::kStdout ? o : e) += b; }).ok());
  EXPECT_EQ(o, "out1\nout2\nout3\nout4\nout5\nout6\nout7\nout8\n");
  EXPECT_EQ(e, "err1\nerr2\nerr3\nerr4\nerr5\nerr6\nerr7\nerr8\n");
}

TEST_F(TlsNodeTest, ClientCertificateOfAnotherCaIsRefused) {
  NodeOptions options = Options();
  options.tls_cert = other_.client_cert;
  options.tls_key = other_.client_key;
  auto client = Client(options);
  ASSERT_TRUE(client);
  ContainerInfo info;
  Status s = client->InspectContainer("engine-tls", &info);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  // Its alert (`TLS handshake: the node refused our client certificate (...)`), or, when the
  // reset of its close overtook the alert, the drop right after the handshake: both say so.
  EXPECT_NE(s.message().find("our client certificate"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("check tls_cert and tls_key"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(node_->tcp_url()), std::string::npos) << s.message();
}

TEST_F(TlsNodeTest, NodeCertificateOfAnotherCaIsRefused) {
  NodeOptions options = Options();
  options.tls_ca = other_.ca;  // we do not trust the node
  auto client = Client(options);
  ASSERT_TRUE(client);
  ContainerInfo info;
  Status s = client->InspectContainer("engine-tls", &info);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("TLS handshake: certificate verify failed"), std::string::npos) << s.message();
}

TEST_F(TlsNodeTest, NoClientCertificateIsRefused) {
  // A client with no certificate at all (the CLI without --tlscert): the engine refuses.
  test::RunResult r = test::Run({"curl", "-sS", "--max-time", "10", "--cacert", certs_.ca,
                                 "https://127.0.0.1:" + node_->tcp_url().substr(node_->tcp_url().rfind(':') + 1) +
                                     "/v1.41/containers/json"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  // Our client does not even try without one.
  std::unique_ptr<EngineClient> client;
  NodeOptions options = Options();
  options.tls_cert.clear();
  options.tls_key.clear();
  Status s = EngineClient::Create(options, &client);
  EXPECT_TRUE(s.IsInvalid()) << s.ToString();
  // The key of another certificate is refused when loading.
  options = Options();
  options.tls_key = other_.client_key;
  s = EngineClient::Create(options, &client);
  EXPECT_NE(s.message().find("it must be the key of tls_cert"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace allgo::engine
