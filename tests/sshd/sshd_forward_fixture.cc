#include "sshd_forward_fixture.h"

#include <signal.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace allgo::test {

namespace fs = std::filesystem;

size_t Occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::vector<std::string> HttpServer(int port, const std::string& dir) {
  return {"python3", "-m", "http.server", std::to_string(port), "--bind", "127.0.0.1", "--directory", dir};
}

SshAgentProcess::~SshAgentProcess() {
  if (pid_ > 0) kill(pid_, SIGTERM);
}

void SshAgentProcess::Start(const std::string& sock, const std::string& key) {
  RunResult started = test::Run({"ssh-agent", "-a", sock});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  size_t at = started.out.find("SSH_AGENT_PID=");
  ASSERT_NE(at, std::string::npos) << started.out;
  pid_ = static_cast<pid_t>(std::stol(started.out.substr(at + 14)));
  RunOptions env;
  env.env["SSH_AUTH_SOCK"] = sock;
  RunResult added = test::Run({"ssh-add", key}, env);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  fingerprint_ = test::Run({"ssh-keygen", "-lf", key + ".pub"}).out;
}

void SshdForwardFixture::SetUp() {
  SetUpFrontend();
  if (HasFatalFailure()) return;
  port_ = FreeLoopbackPort();
  frontend_only_port_ = FreeLoopbackPort();
  // The frontend's servers: one on the sandbox's port, one on a port only the frontend has.
  fs::create_directories(tmp_ / "front");
  WriteFile(tmp_ / "front/marker.txt", "frontend\n");
  front_ = std::make_unique<Daemon>(HttpServer(port_, tmp_ / "front"), tmp_ / "front.log");
  front_only_ = std::make_unique<Daemon>(HttpServer(frontend_only_port_, tmp_ / "front"), tmp_ / "front-only.log");
  fs::create_directories(fs::path(shared_) / "www");
  WriteFile(fs::path(shared_) / "www/marker.txt", "sandbox\n");
  StartSandbox();
  if (HasFatalFailure()) return;
  // Generous: python's start takes seconds on a loaded machine.
  ASSERT_TRUE(WaitFor([&] { return Get(port_).find("frontend") != std::string::npos; }, 30000));
  // The sandbox's server is up once a session inside sees it.
  ASSERT_TRUE(WaitFor([&] { return SandboxGet(port_).find("sandbox") != std::string::npos; }, 15000))
      << server_->log();
}

void SshdForwardFixture::StartSandbox() {
  // Its own network namespace, its own web server on port_ (and the services of a derived
  // fixture), then the agent.
  agent_.reset();
  SandboxOptions options;
  options.binds = {shared_};
  options.bwrap_extra = {"--unshare-net"};
  std::string server = "python3 -m http.server " + std::to_string(port_) + " --bind 127.0.0.1 --directory " +
                       ShellQuote(shared_ + "/www") + " >/dev/null 2>&1 & " + sandbox_services_;
  options.launcher = {"sh", "-c", server + " exec \"$@\"", "sh"};
  // A log of its own per start: "listening on" is this agent's.
  const std::string log = tmp_ / (sandbox_starts_++ == 0 ? "agent.log" : "agent-" + std::to_string(sandbox_starts_) + ".log");
  agent_ = std::make_unique<Daemon>(SandboxCommand(bridge_, options), log);
  ASSERT_TRUE(WaitFor([&] { return agent_->Log().find("listening on") != std::string::npos; }, 10000))
      << agent_->Log();
}

void SshdForwardFixture::TearDown() {
  server_.reset();
  if (agent_) agent_->Stop(SIGTERM, 5000);
}

std::string SshdForwardFixture::Get(int port, const std::vector<std::string>& curl_extra) {
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "10"};
  argv.insert(argv.end(), curl_extra.begin(), curl_extra.end());
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + "/marker.txt");
  return test::Run(argv).out;
}

std::string SshdForwardFixture::SandboxGet(int port) {
  return Ssh("python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:" + std::to_string(port) +
             "/marker.txt', timeout=5).read().decode())\"")
      .out;
}

RunResult SshdForwardFixture::Stdio(const std::string& target) {
  RunOptions in;
  in.stdin_data = "GET /marker.txt HTTP/1.0\r\n\r\n";
  in.timeout_seconds = 30;
  return server_->Ssh("sleep", key_.private_path, "", {"-W", target}, in);
}

std::vector<std::string> SshdForwardFixture::SshArgv(const std::vector<std::string>& options) const {
  std::vector<std::string> argv = {"ssh"};
  argv.insert(argv.end(), options.begin(), options.end());
  for (const auto& o : server_->ClientOptions(key_.private_path)) argv.push_back(o);
  argv.insert(argv.end(), {"-p", std::to_string(server_->port()), "sleep@127.0.0.1"});
  return argv;
}

}  // namespace allgo::test
