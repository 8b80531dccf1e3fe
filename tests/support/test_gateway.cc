#include "test_gateway.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace allgo::test {
namespace {

namespace fs = std::filesystem;

std::string Tail(const std::string& text, size_t bytes) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// Copies `from` to `to` owned by `uid`:`gid` with `mode`, as an operator installs a file.
std::string Deploy(const std::string& from, const std::string& to, uid_t uid, gid_t gid, mode_t mode) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return "cannot copy " + from + " to " + to + ": " + ec.message();
  if (chown(to.c_str(), uid, gid) != 0 || chmod(to.c_str(), mode) != 0) {
    return "cannot set the owner and mode of " + to + ": " + std::strerror(errno);
  }
  return "";
}

}  // namespace

std::string TestNodes::Name(int i) { return std::string("node-") + static_cast<char>('a' + i); }

std::unique_ptr<TestNodes> TestNodes::Start(int count, const std::string& gateway_user, std::string* why) {
  std::unique_ptr<TestNodes> nodes(new TestNodes());
  const std::string& dir = nodes->dir_.path();
  chmod(dir.c_str(), 0755);  // the gateway's user reads its files in here
  if (std::string e = MakeTestCertificates(dir, "cluster", &nodes->certs_); !e.empty()) {
    *why = e;
    return nullptr;
  }
  if (std::string e = MakeTestCertificates(dir, "rogue", &nodes->rogue_); !e.empty()) {
    *why = e;
    return nullptr;
  }
  // The gateway's own user, as the install makes it (safe to run again).
  RunResult users = Run({SourceDir() + "/conf/create-users", gateway_user});
  if (users.exit_code != 0) {
    *why = "conf/create-users " + gateway_user + " failed: " + users.out + users.err;
    return nullptr;
  }
  // Deployed like docs/gateway.md says: the key readable by the gateway's user alone.
  std::string deployed = dir + "/deployed";
  fs::create_directories(deployed);
  chmod(deployed.c_str(), 0755);
  nodes->client_cert_ = deployed + "/gateway-cert.pem";
  nodes->client_key_ = deployed + "/gateway-key.pem";
  for (auto [from, to, mode] : {std::tuple{nodes->certs_.client_cert, nodes->client_cert_, 0444},
                                std::tuple{nodes->certs_.client_key, nodes->client_key_, 0400}}) {
    if (std::string e = Deploy(from, to, UidOf(gateway_user), GidOf(gateway_user), mode); !e.empty()) {
      *why = e;
      return nullptr;
    }
  }
  chmod(nodes->certs_.ca.c_str(), 0444);
  // The rogue set deployed the same way (the gateway refuses a key others may read).
  nodes->rogue_cert_ = deployed + "/rogue-cert.pem";
  nodes->rogue_key_ = deployed + "/rogue-key.pem";
  for (auto [from, to, mode] : {std::tuple{nodes->rogue_.client_cert, nodes->rogue_cert_, 0444},
                                std::tuple{nodes->rogue_.client_key, nodes->rogue_key_, 0400}}) {
    if (std::string e = Deploy(from, to, UidOf(gateway_user), GidOf(gateway_user), mode); !e.empty()) {
      *why = e;
      return nullptr;
    }
  }
  for (int i = 0; i < count; ++i) {
    TestDocker::TlsListener tls{FreeLoopbackPort(), nodes->certs_.ca, nodes->certs_.server_cert,
                                nodes->certs_.server_key};
    std::string node_why;
    auto node = TestDocker::StartNode(tls, &node_why);
    if (!node) {
      *why = Name(i) + ": " + node_why;
      return nullptr;
    }
    nodes->nodes_.push_back(std::move(node));
  }
  return nodes;
}

TestNodes::~TestNodes() {
  // Both at once would double the peak of containerd shutdowns; one after the other is fine.
  for (auto& node : nodes_) node->Stop();
}

std::string TestNodes::DockerSection(const std::string& gateway_socket, ClientCertificate which,
                                     const std::string& extra) const {
  std::string text = "[docker]\n";
  for (int i = 0; i < size(); ++i) text += "node = " + Name(i) + " " + nodes_[i]->tcp_url() + "\n";
  std::string cert = client_cert_, key = client_key_;
  if (which == ClientCertificate::kRogue) {
    cert = rogue_cert_;
    key = rogue_key_;
  } else if (which == ClientCertificate::kMissing) {
    cert = dir_ / "no-such-cert.pem";
    key = dir_ / "no-such-key.pem";
  }
  text += "tls_ca = " + certs_.ca + "\ntls_cert = " + cert + "\ntls_key = " + key + "\n";
  text += "gateway_socket = " + gateway_socket + "\napi_timeout = 5\n" + extra;
  return text;
}

TestGateway::TestGateway(const std::string& config, const std::string& socket, const std::string& dir)
    : socket_(socket), config_path_(dir + "/gateway.conf"), log_path_(dir + "/gateway.log") {
  WriteFile(config_path_, config, 0600);
}

TestGateway::~TestGateway() { Stop(); }

std::string TestGateway::Start() {
  if (running()) return "";
  std::string binary = Artifact("allgo-sandbox-gateway");
  if (access(binary.c_str(), X_OK) != 0) return binary + " is not built (the gateway target)";
  const size_t log_before = log().size();  // a restart appends to the same log
  // SIGTERM if the test dies: the gateway then closes its sessions like on a service stop.
  daemon_ = std::make_unique<Daemon>(std::vector<std::string>{binary, "--config", config_path_}, log_path_,
                                     std::map<std::string, std::string>{}, SIGTERM);
  // Ready once it says it listens (after the drop and the TLS files): a probe connection
  // would be logged as a refused session and mislead whoever reads a failing test's log.
  bool up = WaitFor(
      [&] { return !daemon_->Running() || log().find("listening on " + socket_, log_before) != std::string::npos; },
      15000);
  if (!up || !daemon_->Running()) {
    std::string why = std::string(daemon_->Running() ? "does not say it listens on " + socket_ + " within 15 s"
                                                     : "exited with " + std::to_string(daemon_->Stop()));
    return "allgo-sandbox-gateway " + why + "; its log:\n" + Tail(log(), 2000);
  }
  return "";
}

int TestGateway::Stop() {
  if (!daemon_) return -1;
  int code = daemon_->Stop(SIGTERM, 10000);
  daemon_.reset();
  return code;
}

bool TestGateway::running() const { return daemon_ && daemon_->Running(); }
pid_t TestGateway::pid() const { return daemon_ ? daemon_->pid() : -1; }

std::string TestGateway::log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool TestGateway::WaitForLog(const std::string& needle, int timeout_ms) const {
  return WaitFor([&] { return log().find(needle) != std::string::npos; }, timeout_ms);
}

}  // namespace allgo::test
