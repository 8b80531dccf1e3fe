#include "test_docker.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace allgo::test {
namespace {

namespace fs = std::filesystem;

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string LastLines(const std::string& text, int n) {
  size_t at = text.size();
  while (n-- > 0 && at > 0) {
    at = text.rfind('\n', at - 1);
    if (at == std::string::npos) return text;
  }
  return text.substr(at + 1);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The docker CLI of docker.io (matches its engine); another one earlier in PATH may be older
// or newer than the engine.
std::string DockerCli() { return access("/usr/bin/docker", X_OK) == 0 ? "/usr/bin/docker" : "docker"; }

std::string Dockerd() {
  for (const char* p : {"/usr/sbin/dockerd", "/usr/bin/dockerd"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// A test binary killed outright (SIGKILL, abort) leaves its engine to its keeper (Daemon), which
// stops it, but nobody removes its folder (a few hundred MB of image layers). The next start
// removes the folders whose engine is gone: no live pid in dockerd.pid, nothing mounted under
// it, untouched for 10 minutes (so an engine still starting is never taken for a dead one).
void RemoveDeadEngineFolders() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/tmp", ec)) {
    std::string dir = entry.path().string();
    if (entry.path().filename().string().rfind("allgo-docker.", 0) != 0) continue;
    struct stat st;
    if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0) continue;
    if (time(nullptr) - st.st_mtime < 600) continue;
    std::string pid_text;
    std::ifstream(dir + "/dockerd.pid") >> pid_text;
    pid_t pid = pid_text.empty() ? -1 : static_cast<pid_t>(std::atol(pid_text.c_str()));
    if (pid > 0 && kill(pid, 0) == 0) continue;
    if (ReadFile("/proc/self/mountinfo").find(" " + dir + "/") != std::string::npos) continue;
    fs::remove_all(dir, ec);
  }
}

TestDocker* g_docker = nullptr;
std::string g_docker_why;
bool g_docker_tried = false;

class DockerTeardown : public ::testing::Environment {
 public:
  void TearDown() override {
    if (g_docker) g_docker->Stop();
  }
};

}  // namespace

TestDocker* TestDocker::Get(std::string* why) {
  if (!g_docker_tried) {
    g_docker_tried = true;
    auto* docker = new TestDocker();
    g_docker_why = docker->Start();
    if (g_docker_why.empty()) {
      g_docker = docker;
      ::testing::AddGlobalTestEnvironment(new DockerTeardown());
      atexit([] {
        delete g_docker;
        g_docker = nullptr;
      });
    } else {
      delete docker;
    }
  }
  if (!g_docker && why) *why = g_docker_why;
  return g_docker;
}

std::string TestDocker::Start() {
  if (geteuid() != 0) return "the private dockerd needs root (run the tests as root)";
  std::string dockerd = Dockerd();
  if (dockerd.empty()) return "dockerd is not installed (scripts/install-deps installs docker.io)";
  if (Run({"sh", "-c", "command -v " + DockerCli()}).exit_code != 0) {
    return "the docker client is not installed (docker.io)";
  }
  RemoveDeadEngineFolders();
  char tmpl[] = "/tmp/allgo-docker.XXXXXX";
  if (!mkdtemp(tmpl)) return "mkdtemp /tmp/allgo-docker.XXXXXX failed";
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);  // the toolbox inside must be reachable by the engine and containers
  socket_ = dir_ + "/docker.sock";
  toolbox_ = dir_ + "/toolbox";
  fs::create_directories(toolbox_);
  chmod(toolbox_.c_str(), 0755);
  std::error_code ec;
  fs::copy_file(Artifact("allgo-sandbox-agent"), toolbox_ + "/allgo-sandbox-agent", ec);
  if (ec) return "cannot copy allgo-sandbox-agent into the toolbox " + toolbox_ + ": " + ec.message();
  chmod((toolbox_ + "/allgo-sandbox-agent").c_str(), 0755);
  // The static sftp server the toolbox carries for images without one (scripts/build-sftp-server).
  if (std::string sftp_server = Artifact("allgo-sftp-server"); fs::exists(sftp_server)) {
    fs::copy_file(sftp_server, toolbox_ + "/allgo-sftp-server", ec);
    if (ec) return "cannot copy allgo-sftp-server into the toolbox " + toolbox_ + ": " + ec.message();
    chmod((toolbox_ + "/allgo-sftp-server").c_str(), 0755);
  }
  return Launch();
}

std::string TestDocker::Launch() {
  std::string dockerd = Dockerd();
  // The network rule: no bridge, no iptables/ip6tables, no forwarding, no masquerading, no
  // proxy; its own containerd namespace so `ctr` lists of other engines never mix with ours.
  std::string ns = "allgo-test-" + std::to_string(getpid()) + ns_suffix_;
  std::vector<std::string> argv = {dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false",
                                   "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false",
                                   "--data-root", dir_ + "/root", "--exec-root", dir_ + "/exec",
                                   "--pidfile", dir_ + "/dockerd.pid", "-H", "unix://" + socket_,
                                   "--containerd-namespace", ns, "--containerd-plugins-namespace", ns + "-p"};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  std::string log_path = dir_ + "/dockerd.log";
  bool restarting = dockerd_ != nullptr;  // StartEngine: keep the folder whatever happens
  // SIGTERM when the test process dies, not SIGKILL: dockerd then stops its containers and
  // its containerd.
  dockerd_ = std::make_unique<Daemon>(argv, log_path, std::map<std::string, std::string>{}, SIGTERM);
  bool up = WaitFor(
      [&] {
        return !dockerd_->Running() ||
               Docker({"info", "--format", "{{.ServerVersion}}"}, {.timeout_seconds = 10}).exit_code == 0;
      },
      30000);
  if (up && !dockerd_->Running()) {
    std::string log = LastLines(ReadFile(log_path), 3);
    if (!restarting) Stop();
    return "dockerd exited: " + log;
  }
  if (!up) {
    std::string log = LastLines(ReadFile(log_path), 3);
    if (restarting) {
      dockerd_->Stop(SIGTERM, 20000);
    } else {
      Stop();
    }
    return "dockerd did not answer within 30 s: " + log;
  }
  return "";
}

RunResult TestDocker::Docker(const std::vector<std::string>& args, const RunOptions& options) const {
  std::vector<std::string> argv = {DockerCli(), "-H", "unix://" + socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o = options;
  o.env["DOCKER_CONFIG"] = dir_ + "/cli";  // never the user's ~/.docker
  return Run(argv, o);
}

std::string TestDocker::Image(const std::string& kind, const std::string& repo, std::string* why) {
  if (auto it = images_.find(kind); it != images_.end()) return it->second;
  RunResult built = Run({SourceDir() + "/scripts/sandbox-images", kind}, {.timeout_seconds = 900});
  std::string tar = Trim(built.out);
  if (built.exit_code != 0 || tar.empty()) {
    *why = "cannot build the " + kind + " image: " + Trim(built.err);
    return "";
  }
  // The tag is the cache key (the tarball's name), so an image always matches its recipe.
  std::string base = fs::path(tar).stem().string();
  std::string name = repo + ":" + base.substr(base.rfind('-') + 1);
  RunResult r = Docker({"import", tar, name}, {.timeout_seconds = 300});
  if (r.exit_code != 0) {
    *why = "docker import " + tar + " failed: " + Trim(r.err);
    return "";
  }
  images_[kind] = name;
  return name;
}

std::string TestDocker::DebianImage(std::string* why) { return Image("debian", "allgo-sandbox/debian12", why); }
std::string TestDocker::DevtoolsImage(std::string* why) {
  return Image("debian-devtools", "allgo-sandbox/debian12-devtools", why);
}
std::string TestDocker::BusyboxImage(std::string* why) { return Image("busybox", "allgo-sandbox/busybox", why); }

void TestDocker::Stop() {
  if (dockerd_ && dockerd_->Running()) {
    RunResult ids = Docker({"ps", "-aq"}, {.timeout_seconds = 20});
    std::vector<std::string> rm = {"rm", "-f"};
    std::istringstream lines(ids.out);
    for (std::string id; std::getline(lines, id);) {
      if (!id.empty()) rm.push_back(id);
    }
    if (rm.size() > 2) Docker(rm, {.timeout_seconds = 60});
  }
  // By its pid: another engineer's test may run its own dockerd.
  if (dockerd_) dockerd_->Stop(SIGTERM, 20000);
  dockerd_.reset();
  if (!dir_.empty()) {
    UnmountUnder(dir_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
}

TestDocker::~TestDocker() { Stop(); }

void TestDocker::StopEngine() {
  if (dockerd_ && dockerd_->Running()) dockerd_->Stop(SIGTERM, 30000);
}

std::string TestDocker::StartEngine() {
  if (dir_.empty()) return "the engine's folder is gone (Stop() was called)";
  if (engine_running()) return "";
  return Launch();
}

bool TestDocker::engine_running() const { return dockerd_ && dockerd_->Running(); }

std::unique_ptr<TestDocker> TestDocker::StartNode(const TlsListener& tls, std::string* why) {
  static int nodes = 0;
  std::unique_ptr<TestDocker> node(new TestDocker());
  node->ns_suffix_ = "-node" + std::to_string(++nodes);
  // Loopback only (the network rule); dockerd refuses a client without a certificate the CA
  // signed ("tls: bad certificate").
  node->tcp_url_ = "tcp://127.0.0.1:" + std::to_string(tls.port);
  node->extra_args_ = {"-H", node->tcp_url_, "--tlsverify", "--tlscacert", tls.ca,
                       "--tlscert", tls.cert, "--tlskey", tls.key};
  std::string error = node->Start();
  if (!error.empty()) {
    *why = error;
    return nullptr;
  }
  return node;
}

std::string MakeTestCertificates(const std::string& dir, const std::string& name, TestCertificates* out) {
  std::string p = dir + "/" + name + "-";
  *out = {p + "ca.pem", p + "ca-key.pem", p + "server.pem", p + "server-key.pem", p + "client.pem", p + "client-key.pem"};
  // EC keys: fast to make; every engine and OpenSSL accepts P-256.
  std::string newkey = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
  std::string sign = "openssl x509 -req -days 2 -CA " + Quote(out->ca) + " -CAkey " + Quote(out->ca_key) +
                     " -CAcreateserial -CAserial " + Quote(p + "ca.srl") + " ";
  std::string script =
      "set -e\n" + newkey + "-x509 -days 2 -subj /CN=allgo-test-ca-" + name + " -keyout " + Quote(out->ca_key) +
      " -out " + Quote(out->ca) + "\n" +
      newkey + "-subj /CN=127.0.0.1 -keyout " + Quote(out->server_key) + " -out " + Quote(p + "server.csr") + "\n" +
      "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > " + Quote(p + "server.ext") + "\n" +
      sign + "-in " + Quote(p + "server.csr") + " -extfile " + Quote(p + "server.ext") + " -out " +
      Quote(out->server_cert) + "\n" +
      newkey + "-subj /CN=allgo-sandbox-gateway -keyout " + Quote(out->client_key) + " -out " +
      Quote(p + "client.csr") + "\n" +
      "printf 'extendedKeyUsage=clientAuth\\n' > " + Quote(p + "client.ext") + "\n" +
      sign + "-in " + Quote(p + "client.csr") + " -extfile " + Quote(p + "client.ext") + " -out " +
      Quote(out->client_cert) + "\n";
  RunResult r = Sh(script);
  if (r.exit_code != 0) return "openssl could not make the test certificates: " + Trim(r.err);
  return "";
}

std::vector<std::string> DockerRunArgs(const DockerSandboxOptions& options, const std::string& toolbox) {
  std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", options.name,
                                   "--hostname", options.hostname.empty() ? options.name : options.hostname,
                                   "-v", toolbox + ":" + TestDocker::kToolboxMount + ":ro"};
  if (!options.bridge_dir.empty()) args.insert(args.end(), {"-v", options.bridge_dir + ":" + options.bridge_dir});
  args.insert(args.end(), options.run_options.begin(), options.run_options.end());
  for (const std::string& dir : options.binds) args.insert(args.end(), {"-v", dir + ":" + dir});
  args.push_back(options.image);
  if (options.command.empty()) {
    args.insert(args.end(), {"sleep", "infinity"});
  } else {
    args.insert(args.end(), options.command.begin(), options.command.end());
  }
  return args;
}

std::vector<std::string> AgentExecArgs(const DockerSandboxOptions& options) {
  std::string agent = std::string(TestDocker::kToolboxMount) + "/allgo-sandbox-agent --bridge-dir " +
                      Quote(options.bridge_dir) + " --allow-uid " + std::to_string(options.allow_uid);
  for (const std::string& a : options.agent_args) agent += " " + Quote(a);
  std::string script = "log=/dev/null; [ -w /proc/1/fd/2 ] && log=/proc/1/fd/2; "
                       "while :; do " + agent + " 2>>\"$log\"; sleep 1; done";
  return {"exec", "-d", options.name, "/bin/sh", "-c", script};
}

DockerSandbox::DockerSandbox(TestDocker& docker, DockerSandboxOptions options)
    : docker_(docker), options_(std::move(options)) {}

DockerSandbox::~DockerSandbox() { Remove(); }

std::string DockerSandbox::Start() {
  Remove();
  RunResult r = docker_.Docker(DockerRunArgs(options_, options_.toolbox.empty() ? docker_.toolbox() : options_.toolbox),
                               {.timeout_seconds = 60});
  if (r.exit_code != 0) return "docker run " + options_.name + " failed: " + Trim(r.err);
  if (options_.bridge_dir.empty()) return "";  // backend = docker: the gateway starts the agent
  return StartAgent();
}

std::string DockerSandbox::StartAgent() { return ExecAgent(SocketId()); }

std::string DockerSandbox::SocketId() const {
  struct stat st;
  std::string sock = options_.bridge_dir + "/agent.sock";
  return stat(sock.c_str(), &st) == 0 ? std::to_string(st.st_ino) : "";
}

std::string DockerSandbox::ExecAgent(const std::string& old_socket_id) {
  RunResult r = docker_.Docker(AgentExecArgs(options_), {.timeout_seconds = 60});
  if (r.exit_code != 0) return "docker exec (the agent) in " + options_.name + " failed: " + Trim(r.err);
  return WaitForAgent(old_socket_id);
}

// The agent binds a fresh agent.sock (a new inode) once it listens.
std::string DockerSandbox::WaitForAgent(const std::string& old_socket_id) {
  std::string sock = options_.bridge_dir + "/agent.sock";
  bool up = WaitFor(
      [&] {
        struct stat st;
        return stat(sock.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && std::to_string(st.st_ino) != old_socket_id;
      },
      15000);
  return up ? "" : "the agent in " + options_.name + " did not listen on " + sock + ": " + LastLines(Logs(), 3);
}

std::string DockerSandbox::StopContainer() {
  RunResult r = docker_.Docker({"stop", "-t", "1", options_.name}, {.timeout_seconds = 60});
  return r.exit_code == 0 ? "" : "docker stop " + options_.name + " failed: " + Trim(r.err);
}

std::string DockerSandbox::RestartContainer() {
  std::string old = SocketId();
  RunResult r = docker_.Docker({"restart", "-t", "1", options_.name}, {.timeout_seconds = 60});
  if (r.exit_code != 0) return "docker restart " + options_.name + " failed: " + Trim(r.err);
  return ExecAgent(old);
}

void DockerSandbox::Remove() { docker_.Docker({"rm", "-f", options_.name}, {.timeout_seconds = 60}); }

std::string DockerSandbox::Logs() const {
  RunResult r = docker_.Docker({"logs", options_.name}, {.timeout_seconds = 30});
  return r.out + r.err;
}

}  // namespace allgo::test
