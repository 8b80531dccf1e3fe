// Other SSH clients and the developer flows through the docker backend (issue 19, "real
// clients; both backends"): the checks of sshd_forward_clients_test and sshd_devtools_test
// (client_flows.h: paramiko, asyncssh with agent forwarding, PuTTY's plink -L, VS Code's
// `ssh -T -D PORT host bash` with a WebSocket through SOCKS, Jupyter's kernel over its
// WebSocket through -L), with the sandbox a Docker container (`--network none`: its loopback is
// not the frontend's) reached through allgo-sandbox-gateway, as issue 11 deploys it: a private
// dockerd "node" listening on tcp://127.0.0.1 with --tlsverify, the gateway started as root
// (it drops to allgo-gateway), allgo-sshd with `[sandbox] backend = docker`.
//
// The container runs the Debian "devtools" image (scripts/sandbox-images debian-devtools:
// python3, python3-websockets, jupyter-notebook, openssh-client) and, from its start, a web
// server on 127.0.0.1:port answering "sandbox"; the frontend serves "frontend" on the same
// port and on one the container lacks, so every answer tells where a forward landed.
// One deployment for the suite (the engine and the image import are the slow part); a fresh
// allgo-sshd per test, so each test reads its own log. Of the faults, the service closing
// mid-stream runs here too. Without Docker or a Debian mirror every
// test is skipped with the reason, as in sshd_gateway_test.
#include <sys/stat.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client_flows.h"
#include "sshd_fixture.h"
#include "sshd_forward_fixture.h"
#include "test_docker.h"
#include "test_gateway.h"
#include "test_support.h"

namespace allgo::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kWebapp = "sleep";
constexpr const char* kHostname = "sleep-on-node-a";
// The container's misbehaving service (tests/sshd/clients/faulty_service.py), as in
// sshd_forward_clients_test: a port of the container's own network namespace, and an answer
// larger than a stream window.
constexpr int kFaultyPort = 7101;
constexpr int kAnswerSize = 1024 * 1024 + 123;

// What the suite shares; built by SetUpTestSuite, torn down (servers first) by TearDownTestSuite.
struct Deployment {
  std::string skip;   // non-empty: why every test skips (Docker or the image cannot be had here)
  std::string error;  // non-empty: the set-up failed, every test fails with it
  TempDir tmp{"allgo-gateway-clients"};
  std::unique_ptr<TestNodes> nodes;
  std::unique_ptr<DockerSandbox> sandbox;
  std::unique_ptr<Daemon> front, front_only;
  KeyPair key;
  std::string shared, socket;
  std::unique_ptr<TestGateway> gateway;
  int port = 0, frontend_only_port = 0;
};
Deployment* g = nullptr;

class SshdGatewayClientsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Deployment();
    g->error = Deploy();
  }

  // "" or why the deployment failed (g->skip set instead when Docker or the image cannot be had).
  static std::string Deploy() {
    std::string why;
    chmod(g->tmp.path().c_str(), 0755);
    g->nodes = TestNodes::Start(1, "allgo-gateway", &why);
    if (!g->nodes) {  // no docker.io, not root, no overlay or cgroups here: like sshd_gateway_test
      g->skip = "Docker cannot run here: " + why;
      return "";
    }
    const std::string image = g->nodes->node(0).DevtoolsImage(&why);
    if (image.empty()) {  // no Debian mirror reachable, say: skipped, like sshd_gateway_test
      g->skip = "node-a: " + why;
      return "";
    }
    TestDatabase& db = TestDatabase::Get();
    db.Clear();
    g->key = MakeKeyPair(g->tmp.path(), "owner");
    const uint32_t owner = db.AddUser("owner@example.org");
    db.AddKey(owner, g->key.public_line);
    db.AddWebapp(kWebapp, owner);
    g->shared = g->tmp / "shared";  // the same path on the frontend and in the container
    fs::create_directories(g->shared + "/www");
    chmod(g->shared.c_str(), 0777);
    WriteFile(g->shared + "/www/marker.txt", "sandbox\n");
    fs::create_directories(g->tmp / "run");
    chmod((g->tmp / "run").c_str(), 0755);
    g->socket = g->tmp / "run/gateway.sock";
    // The frontend's servers: one on the container's port, one on a port only the frontend has.
    g->port = FreeLoopbackPort();
    g->frontend_only_port = FreeLoopbackPort();
    fs::create_directories(g->tmp / "front");
    WriteFile(g->tmp / "front/marker.txt", "frontend\n");
    g->front = std::make_unique<Daemon>(HttpServer(g->port, g->tmp / "front"), g->tmp / "front.log");
    g->front_only = std::make_unique<Daemon>(HttpServer(g->frontend_only_port, g->tmp / "front"), g->tmp / "front-only.log");
    // The container, as allgo's controller runs it on a node (no bridge folder: the gateway
    // starts the agent per connection), with its own web server and faulty service from the start.
    fs::copy_file(ClientScript("faulty_service.py"), g->shared + "/faulty_service.py");
    const std::string server = "python3 -m http.server " + std::to_string(g->port) + " --bind 127.0.0.1 --directory " +
                               ShellQuote(g->shared + "/www") + " >/dev/null 2>&1 & python3 " +
                               ShellQuote(g->shared + "/faulty_service.py") + " " + std::to_string(kFaultyPort) + " " +
                               std::to_string(kAnswerSize) + " >/dev/null 2>&1 & exec sleep infinity";
    g->sandbox = std::make_unique<DockerSandbox>(
        g->nodes->node(0), DockerSandboxOptions{.name = kWebapp, .image = image, .hostname = kHostname,
                                                .binds = {g->shared}, .command = {"sh", "-c", server},
                                                .run_options = {"--stop-timeout", "1"}});
    std::string e = g->sandbox->Start();
    if (!e.empty()) return "the container: " + e;
    g->gateway = std::make_unique<TestGateway>(
        TestDatabase::Get().MysqlConfigSection() + "[sandbox]\nbackend = docker\n" + g->nodes->DockerSection(g->socket),
        g->socket, g->tmp.path());
    e = g->gateway->Start();
    if (!e.empty()) return "the gateway: " + e;
    // Generous: python's start takes seconds on a loaded machine.
    if (!WaitFor([] { return GetMarker(g->port) == "frontend\n"; }, 30000)) return "the frontend's web server";
    return "";
  }

  static void TearDownTestSuite() {
    if (!g) return;
    g->gateway.reset();
    g->sandbox.reset();
    g->nodes.reset();
    g->front.reset();
    g->front_only.reset();
    delete g;
    g = nullptr;
  }

  void SetUp() override {
    if (!g->skip.empty()) GTEST_SKIP() << g->skip;
    ASSERT_EQ(g->error, "");
    if (!g->gateway->running()) {  // a test that failed half-way may have stopped it
      ASSERT_EQ(g->gateway->Start(), "");
    }
    server_ = std::make_unique<SshdServer>("", "[sandbox]\nbackend = docker\nstart_wait = 3\n" +
                                                    g->nodes->DockerSection(g->socket),
                                           Artifact("allgo-shell"));
    ASSERT_FALSE(HasFailure()) << server_->log();
    // The container's own server answers inside it (and a session lands on its hostname).
    RunResult r;
    ASSERT_TRUE(WaitFor([&] {
      r = Target().Ssh("hostname; python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:" +
                       std::to_string(g->port) + "/marker.txt', timeout=5).read().decode())\"");
      return r.out == std::string(kHostname) + "\nsandbox\n\n";
    }, 30000)) << r.out << r.err << Context();
  }

  void TearDown() override { server_.reset(); }

  ClientTarget Target() const {
    return ClientTarget{.server = server_.get(), .key = g->key.private_path, .user = kWebapp,
                        .local_dir = g->tmp.path(), .shared_dir = g->shared, .port = g->port,
                        .frontend_only_port = g->frontend_only_port, .context = [this] { return Context(); }};
  }

  std::string Context() const {
    return "\n--- allgo-sshd:\n" + (server_ ? server_->log() : std::string()) + "\n--- gateway:\n" + g->gateway->log() +
           "\n--- container:\n" + g->sandbox->Logs();
  }

  std::unique_ptr<SshdServer> server_;
};

TEST_F(SshdGatewayClientsTest, ParamikoDirectTcpipLandsInTheContainer) {
  ExpectParamikoDirectTcpipLandsInTheSandbox(Target());
}

TEST_F(SshdGatewayClientsTest, ParamikoTcpipForwardGetsItsPortInTheContainer) {
  ExpectParamikoTcpipForwardGetsItsPort(Target());
}

TEST_F(SshdGatewayClientsTest, AsyncsshLocalForwardAndCreateConnectionLandInTheContainer) {
  ExpectAsyncsshLocalForwardLandsInTheSandbox(Target());
}

TEST_F(SshdGatewayClientsTest, AsyncsshRemoteForwardReachesTheFrontendFromTheContainer) {
  ExpectAsyncsshRemoteForwardReachesTheClientSide(Target());
}

TEST_F(SshdGatewayClientsTest, AsyncsshAgentForwardingListsTheKeyInTheContainer) {
  ExpectAsyncsshAgentForwardingListsTheKey(Target());
}

TEST_F(SshdGatewayClientsTest, PlinkLocalForwardWithAPinnedHostKey) {
  ExpectPlinkLocalForwardWithAPinnedHostKey(Target());
}

TEST_F(SshdGatewayClientsTest, VsCodeLikeFlowHttpAndWebSocketThroughSocks) {
  ASSERT_EQ(MissingPackages({kWebsocketClient}), "");
  ExpectVsCodeLikeFlowThroughSocks(Target());
}

TEST_F(SshdGatewayClientsTest, JupyterKernelRunsCodeOverItsWebSocketThroughLocalForward) {
  ASSERT_EQ(MissingPackages({kWebsocketClient}), "");
  ExpectJupyterKernelRunsCodeThroughLocalForward(Target());
}

// The container's service closes (or resets) mid-stream: only that forward ends.
TEST_F(SshdGatewayClientsTest, ServiceClosingMidStreamEndsOnlyItsForward) {
  ExpectServiceClosingMidStreamEndsOnlyItsForward(Target(), kFaultyPort, kAnswerSize);
}

}  // namespace
}  // namespace allgo::test
