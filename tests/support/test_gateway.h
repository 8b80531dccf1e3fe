// Issue 11's deployment in miniature, for the gateway tests and the benchmark: K Docker
// "nodes" (private engines, each also listening on tcp://127.0.0.1:PORT with --tlsverify,
// TestDocker::StartNode), the TLS files of allgo-sandbox-gateway deployed as an operator
// deploys them (the client key mode 0400, owned by the gateway's user, so nothing else on
// the frontend can read it), and the gateway itself as a child of the test.
//
// Everything is on loopback: the nodes listen on 127.0.0.1 only and every container runs with
// `--network none`. Every engine and the gateway are stopped by their destructors (by pid).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "test_docker.h"
#include "test_support.h"

namespace allgo::test {

// Which client certificate a gateway config presents to the nodes.
enum class ClientCertificate {
  kTrusted,  // signed by the CA the nodes trust (the deployed copy: 0400, gateway's user)
  kRogue,    // a valid certificate from another CA: the nodes refuse the handshake
  kMissing,  // tls_cert / tls_key name files that do not exist
};

class TestNodes {
 public:
  // Makes the certificates (one CA; one server certificate for IP:127.0.0.1 that every node
  // presents; the gateway's client certificate; and an unrelated "rogue" set), creates
  // `gateway_user` if missing (conf/create-users), deploys the client key for it, and starts
  // `count` nodes named node-a, node-b, ... nullptr and *why when they cannot run.
  static std::unique_ptr<TestNodes> Start(int count, const std::string& gateway_user, std::string* why);
  ~TestNodes();
  TestNodes(const TestNodes&) = delete;
  TestNodes& operator=(const TestNodes&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  TestDocker& node(int i) { return *nodes_.at(i); }
  static std::string Name(int i);  // "node-a", "node-b", ...
  // The `[docker]` section for these nodes and a gateway listening on `gateway_socket`,
  // presenting `which` client certificate; `extra` lines are appended.
  std::string DockerSection(const std::string& gateway_socket, ClientCertificate which = ClientCertificate::kTrusted,
                            const std::string& extra = "") const;
  const std::string& client_key() const { return client_key_; }  // the deployed copy
  const std::string& client_cert() const { return client_cert_; }
  const std::string& ca() const { return certs_.ca; }
  const std::string& dir() const { return dir_.path(); }

 private:
  TestNodes() = default;
  TempDir dir_{"allgo-nodes"};
  TestCertificates certs_, rogue_;
  std::string client_cert_, client_key_, rogue_cert_, rogue_key_;  // deployed copies
  std::vector<std::unique_ptr<TestDocker>> nodes_;
};

// `allgo-sandbox-gateway --config FILE` started as root, as its unit does; it binds its
// socket and drops to [docker] gateway_user by itself.
class TestGateway {
 public:
  // `config` is the whole file (written root-only next to the log in `dir`).
  TestGateway(const std::string& config, const std::string& socket, const std::string& dir);
  ~TestGateway();  // Stop()
  TestGateway(const TestGateway&) = delete;
  TestGateway& operator=(const TestGateway&) = delete;

  // Starts it and waits until it logs that it listens: "" or why not (with the log).
  std::string Start();
  // SIGTERM by its pid; its exit code (-1 when it was not running).
  int Stop();
  std::string Restart() {
    Stop();
    return Start();
  }
  bool running() const;
  pid_t pid() const;
  std::string log() const;
  bool WaitForLog(const std::string& needle, int timeout_ms = 5000) const;
  const std::string& config_path() const { return config_path_; }

 private:
  std::string socket_, config_path_, log_path_;
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace allgo::test
