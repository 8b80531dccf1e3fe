// The Engine API client against hostile and broken fake engines (issue 18): a server thread
// in this process, over a unix socket and over TLS with the certificates the TLS node tests
// use, that answers with a chunk-size line that never ends, headers without end, a body
// without end, bytes trickling in, a refusal of our client certificate, or a close
// mid-answer. Every call must fail within api_timeout with an error saying what happened,
// and the process's peak RSS must not grow by more than 64 MiB.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "allgo/engine_client.h"
#include "allgo/unique_fd.h"
#include "test_docker.h"
#include "test_support.h"

namespace allgo::engine {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The process's peak resident set (VmHWM), KiB.
long PeakRssKib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// One accepted connection of the fake engine: writes bytes, plain or TLS.
class Peer {
 public:
  Peer(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  // False once the client is gone.
  bool Send(const std::string& bytes) {
    if (ssl_ != nullptr) return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) > 0;
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // Reads the request's head (the client's calls here have no body worth waiting for).
  void ReadRequest() {
    std::string got;
    char buf[4096];
    while (got.find("\r\n\r\n") == std::string::npos) {
      int n = ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof(buf)) : static_cast<int>(::recv(fd_, buf, sizeof(buf), 0));
      if (n <= 0) return;
      got.append(buf, n);
    }
  }

 private:
  int fd_;
  SSL* ssl_;
};

// A fake engine on a unix socket or a loopback TCP port with TLS. Serves one connection at a
// time with `behave` until the test ends.
class FakeEngine {
 public:
  struct Tls {
    std::string cert, key;
    std::string client_ca;  // "": no client certificate asked
  };

  FakeEngine(const std::string& unix_path, std::function<void(Peer&)> behave) : behave_(std::move(behave)) {
    listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    unix_path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    ::unlink(unix_path.c_str());  // a previous fake engine's socket in the same test
    EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    url_ = "unix://" + unix_path;
    Start();
  }
  FakeEngine(const Tls& tls, std::function<void(Peer&)> behave) : behave_(std::move(behave)) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx_, tls.cert.c_str()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx_, tls.key.c_str(), SSL_FILETYPE_PEM), 1);
    if (!tls.client_ca.empty()) {
      EXPECT_EQ(SSL_CTX_load_verify_locations(ctx_, tls.client_ca.c_str(), nullptr), 1);
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    listener_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    url_ = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    Start();
  }
  ~FakeEngine() {
    stop_ = true;
    ::shutdown(listener_.get(), SHUT_RDWR);
    int fd = current_.load();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    thread_.join();
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }
  const std::string& url() const { return url_; }
  bool stopping() const { return stop_; }

 private:
  void Start() {
    signal(SIGPIPE, SIG_IGN);  // SSL_write to a client that is gone: an error, not the end of the test
    EXPECT_EQ(listen(listener_.get(), 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  void Serve() {
    while (!stop_) {
      UniqueFd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) return;
      current_ = conn.get();
      timeval tv{.tv_sec = 10, .tv_usec = 0};  // never stuck on a client that stopped reading
      setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      SSL* ssl = nullptr;
      if (ctx_ != nullptr) {
        ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, conn.get());
        if (SSL_accept(ssl) != 1) {  // a client certificate refused: the alert is sent
          // Closed only once the client is done: closing with its request unread would send
          // a reset, which can overtake the alert (the client's reset case, not tested here).
          ::shutdown(conn.get(), SHUT_WR);
          char drain[4096];
          while (!stop_ && ::recv(conn.get(), drain, sizeof(drain), 0) > 0) {
          }
          SSL_free(ssl);
          ERR_clear_error();
          current_ = -1;
          continue;
        }
      }
      Peer peer(conn.get(), ssl);
      peer.ReadRequest();
      if (!stop_) behave_(peer);
      if (ssl != nullptr) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
        ERR_clear_error();
      }
      current_ = -1;
    }
  }

  std::function<void(Peer&)> behave_;
  UniqueFd listener_;
  SSL_CTX* ctx_ = nullptr;
  std::string url_;
  std::atomic<bool> stop_{false};
  std::atomic<int> current_{-1};
  std::thread thread_;
};

// Sends `head`, then `filler` again and again until the client is gone or 10 s pass.
std::function<void(Peer&)> Endless(std::string head, std::string filler) {
  return [head = std::move(head), filler = std::move(filler)](Peer& peer) {
    auto until = Clock::now() + 10s;
    if (!peer.Send(head)) return;
    while (Clock::now() < until && peer.Send(filler)) {
    }
  };
}

class HostileEngineTest : public ::testing::TestWithParam<bool> {  // true: TLS
 protected:
  void SetUp() override {
    if (GetParam()) {
      ASSERT_EQ(test::MakeTestCertificates(dir_.path(), "fake", &certs_), "");
    }
  }
  std::unique_ptr<FakeEngine> Start(std::function<void(Peer&)> behave) {
    if (GetParam()) return std::make_unique<FakeEngine>(FakeEngine::Tls{certs_.server_cert, certs_.server_key}, behave);
    return std::make_unique<FakeEngine>(dir_ / "engine.sock", behave);
  }
  std::unique_ptr<EngineClient> Client(const FakeEngine& engine, std::chrono::milliseconds timeout) {
    NodeOptions options{.url = engine.url(), .api_timeout = timeout};
    if (GetParam()) {
      options.tls_ca = certs_.ca;
      options.tls_cert = certs_.client_cert;
      options.tls_key = certs_.client_key;
    }
    std::unique_ptr<EngineClient> client;
    Status s = EngineClient::Create(options, &client);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return client;
  }
  // Inspects through `behave`'s engine with `timeout`; the Status, and checks the bounds:
  // within the deadline (+ 500 ms of slack for a loaded machine) and < 64 MiB of peak RSS.
  Status InspectBounded(std::function<void(Peer&)> behave, std::chrono::milliseconds timeout) {
    auto engine = Start(std::move(behave));
    auto client = Client(*engine, timeout);
    if (!client) return Status::Invalid("no client");
    long peak_before = PeakRssKib();
    auto start = Clock::now();
    ContainerInfo info;
    Status s = client->InspectContainer("web1", &info);
    auto took = Clock::now() - start;
    long grew_kib = PeakRssKib() - peak_before;
    EXPECT_LT(took, timeout + 500ms) << "the call outlived api_timeout: " << s.ToString();
    EXPECT_LT(grew_kib, 64 * 1024) << "peak RSS grew by " << grew_kib << " KiB: " << s.ToString();
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(engine->url()), std::string::npos) << "names the node: " << s.message();
    return s;
  }

  test::TempDir dir_{"allgo-engine-hostile"};
  test::TestCertificates certs_;
};

constexpr auto kTimeout = 2000ms;

TEST_P(HostileEngineTest, ChunkSizeLineWithoutEnd) {
  Status s = InspectBounded(
      Endless("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1", std::string(64 * 1024, '0')), kTimeout);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("reading the answer to /containers/web1/json: a chunk-size line (or the trailer) of "
                             "the answer is longer than 1024 bytes"),
            std::string::npos)
      << s.message();
}

TEST_P(HostileEngineTest, HeadersWithoutEnd) {
  Status s = InspectBounded(Endless("HTTP/1.1 200 OK\r\n", "X-Filler: 0123456789\r\n"), kTimeout);
  EXPECT_NE(s.message().find("the status line and headers of the answer are longer than 16384 bytes"),
            std::string::npos)
      << s.message();
}

TEST_P(HostileEngineTest, StatusLineWithoutEnd) {
  Status s = InspectBounded(Endless("HTTP/1.1 200 ", std::string(64 * 1024, 'O')), kTimeout);
  EXPECT_NE(s.message().find("the status line and headers of the answer are longer than 16384 bytes"),
            std::string::npos)
      << s.message();
}

TEST_P(HostileEngineTest, BodyWithoutEnd) {
  std::string chunk(16 * 1024, 'z');
  Status s = InspectBounded(Endless("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                    "4000\r\n" + chunk + "\r\n"),
                            kTimeout);
  EXPECT_NE(s.message().find("the body of the answer is longer than 1048576 bytes"), std::string::npos)
      << s.message();
  s = InspectBounded(Endless("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", chunk), kTimeout);
  EXPECT_NE(s.message().find("the body of the answer is longer than 1048576 bytes"), std::string::npos)
      << s.message();
}

TEST_P(HostileEngineTest, TricklingBytesFailAtApiTimeout) {
  // A well-formed answer, one byte every 100 ms: each read succeeds, the call must not.
  auto trickle = [](Peer& peer) {
    std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, ' ');
    for (char c : answer) {
      if (!peer.Send(std::string(1, c))) return;
      std::this_thread::sleep_for(100ms);
    }
  };
  auto start = Clock::now();
  Status s = InspectBounded(trickle, 1000ms);
  EXPECT_GE(Clock::now() - start, 950ms);
  EXPECT_NE(s.message().find("the answer did not end within api_timeout (1000 ms): "), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("the engine sends too slowly or without end"), std::string::npos) << s.message();
}

TEST_P(HostileEngineTest, ClosedMidAnswerSaysSo) {
  Status s = InspectBounded(
      [](Peer& peer) { peer.Send("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"Id\":\"abc\""); }, kTimeout);
  EXPECT_NE(s.message().find("the engine closed the connection mid-answer, after 51 bytes (in the body)"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(s.message().find("tls_cert"), std::string::npos) << "not a certificate problem: " << s.message();
  EXPECT_EQ(s.message().find("truncated"), std::string::npos) << s.message();
}

INSTANTIATE_TEST_SUITE_P(Transports, HostileEngineTest, ::testing::Bool(),
                         [](const auto& param) { return param.param ? "Tls" : "Unix"; });

// A node whose CA did not sign our client certificate: with TLS 1.3 (the default both sides)
// its refusal comes after our side of the handshake, with the first read; with TLS 1.2 in
// the handshake itself. Either way the error says TLS handshake and the node's reason.
TEST(EngineClientTls, NodeRefusingOurCertificateSaysTlsHandshake) {
  test::TempDir dir("allgo-engine-hostile");
  test::TestCertificates node, other;
  ASSERT_EQ(test::MakeTestCertificates(dir.path(), "node", &node), "");
  ASSERT_EQ(test::MakeTestCertificates(dir.path(), "other", &other), "");
  FakeEngine engine(FakeEngine::Tls{node.server_cert, node.server_key, node.ca},
                    [](Peer& peer) { peer.Send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"); });
  std::unique_ptr<EngineClient> client;
  ASSERT_TRUE(EngineClient::Create({.url = engine.url(), .tls_ca = node.ca, .tls_cert = other.client_cert,
                                    .tls_key = other.client_key, .api_timeout = 5s},
                                   &client)
                  .ok());
  auto start = Clock::now();
  ContainerInfo info;
  Status s = client->InspectContainer("web1", &info);
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find(engine.url() + ": TLS handshake: the node refused our client certificate ("),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("alert"), std::string::npos) << "the node's reason: " << s.message();
  EXPECT_EQ(s.message().find("reading the answer"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace allgo::engine
