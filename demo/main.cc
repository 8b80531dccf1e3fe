// allgo-demo: starts a complete allgo-ssh on this machine, prints what to try, and removes
// everything on Ctrl-C. Run it through scripts/demo (which installs and builds first).
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "test_docker.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace allgo::test;

namespace {

// The caller's own public key, made if there is none.
std::string CallerPublicKey(std::string* private_path) {
  const char* home = getenv("HOME");
  std::string ssh_dir = std::string(home && *home ? home : "/root") + "/.ssh";
  for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    std::string pub = ssh_dir + "/" + name + ".pub";
    if (access(pub.c_str(), R_OK) == 0 && access((ssh_dir + "/" + name).c_str(), R_OK) == 0) {
      *private_path = ssh_dir + "/" + name;
      return ReadFile(pub);
    }
  }
  fs::create_directories(ssh_dir);
  chmod(ssh_dir.c_str(), 0700);
  std::printf("demo: no SSH key found, making %s/id_ed25519\n", ssh_dir.c_str());
  KeyPair kp = MakeKeyPair(ssh_dir, "id_ed25519");
  *private_path = kp.private_path;
  return kp.public_line;
}

// What the sessions run must be reachable by the webapp's uid, wherever the clone is (root's
// home is mode 0700): a copy in the demo's own folder, mode 0755 all the way from /.
std::string ReachableCopy(const std::string& artifact, const std::string& dir) {
  fs::create_directories(dir);
  chmod(dir.c_str(), 0755);
  std::string copy = dir + "/" + fs::path(artifact).filename().string();
  fs::copy_file(artifact, copy, fs::copy_options::overwrite_existing);
  chmod(copy.c_str(), 0755);
  return copy;
}

int WaitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Start a complete throw-away allgo-ssh (MariaDB, NSS module, sandbox, allgo-sshd) "
               "and remove it on Ctrl-C."};
  app.set_version_flag("--version", std::string("allgo-demo ") + ALLGO_VERSION);
  int port = 2222;
  app.add_option("--port", port, "port of allgo-sshd on 127.0.0.1 (default 2222)");
  int metrics_port = 9122;
  app.add_option("--metrics-port", metrics_port, "port of the metrics endpoint on 127.0.0.1 (default 9122)");
  std::string sandbox_kind = "auto";
  app.add_option("--sandbox", sandbox_kind,
                 "auto (Docker when it can run here, else bubblewrap), docker or bwrap")
      ->check(CLI::IsMember({"auto", "docker", "bwrap"}));
  CLI11_PARSE(app, argc, argv);

  if (geteuid() != 0) {
    std::fprintf(stderr, "demo: run as root (it mounts a private namespace and starts servers)\n");
    return 1;
  }
  for (const char* bin : {"allgo-sshd", "allgo-shell", "allgo-sandbox-agent", "libnss_allgo.so.2"}) {
    if (access(Artifact(bin).c_str(), X_OK) != 0 && access(Artifact(bin).c_str(), R_OK) != 0) {
      std::fprintf(stderr, "demo: %s is not built; run scripts/demo\n", bin);
      return 1;
    }
  }
  // Signals are taken synchronously by WaitForSignal; children get the default dispositions.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  EnterPrivateNssNamespace();
  TempDir work("allgo-demo");
  chmod(work.path().c_str(), 0755);
  std::string shell = ReachableCopy(Artifact("allgo-shell"), work / "bin");
  std::printf("demo: private MariaDB starting (datadir under /tmp/allgo-mariadb-*)\n");
  TestDatabase& db = TestDatabase::Get();

  std::string key_path;
  std::string public_key = CallerPublicKey(&key_path);
  uint32_t owner = db.AddUser("demo@allgo.example");
  db.AddKey(owner, public_key);
  uint32_t webapp_id = db.AddWebapp("sleep", owner, "running", "Sleep (allgo demo webapp)");
  uid_t uid = 2000 + webapp_id;

  // [sandbox] dir mounted as docs/install.md says: nosuid,nodev,noexec.
  SandboxesMount sandboxes_mount(work / "sandboxes");
  const std::string& sandboxes = sandboxes_mount.path();
  std::string bridge = sandboxes + "/sleep";
  fs::create_directories(bridge);
  chown(bridge.c_str(), uid, 65534);
  chmod(bridge.c_str(), 0700);
  std::string host_key = work / "ssh_host_ed25519_key";
  RunResult keygen = Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key});
  if (keygen.exit_code != 0) {
    std::fprintf(stderr, "demo: ssh-keygen failed: %s\n", keygen.err.c_str());
    return 1;
  }
  std::string metrics = "127.0.0.1:" + std::to_string(metrics_port);
  WriteAllgoConfig(db.ConfigText(
      "[nss]\nshell = " + shell + "\n[sandbox]\ndir = " + sandboxes +
      "\n[sshd]\nlisten = 127.0.0.1:" + std::to_string(port) + "\nhost_key = " + host_key +
      "\nprivsep_chroot = " + (work / "empty") + "\naudit_log = " + (work / "audit.log") +
      "\nmetrics_listen = " + metrics + "\n"));

  // The webapp's sandbox: a Docker container as allgo runs it (docs/sandbox.md) when Docker
  // can run here, else bubblewrap (its own pid, ipc and uts namespaces, the host's files
  // read-only, a private /tmp); the bridge folder shared with the frontend either way.
  TestDocker* docker = nullptr;
  std::unique_ptr<DockerSandbox> container;
  std::unique_ptr<Daemon> bwrap;
  std::string sandbox_what;
  if (sandbox_kind != "bwrap") {
    std::string why;
    std::printf("demo: private Docker engine starting (no network, its own files in /tmp)\n");
    std::fflush(stdout);
    docker = TestDocker::Get(&why);
    std::string image;
    if (docker) {
      std::printf("demo: Docker engine in %s\n", docker->dir().c_str());
      std::printf("demo: Debian 12 image (built once with debootstrap, about 2 minutes; cached)\n");
      std::fflush(stdout);
      image = docker->DebianImage(&why);
    }
    if (!image.empty()) {
      container = std::make_unique<DockerSandbox>(
          *docker, DockerSandboxOptions{.name = "sleep", .image = image, .hostname = "sleep",
                                        .bridge_dir = bridge, .allow_uid = uid});
      why = container->Start();
      if (why.empty()) sandbox_what = "a Docker container (Debian 12 image " + image + ")";
    }
    if (sandbox_what.empty()) {
      container.reset();
      if (sandbox_kind == "docker") {
        std::fprintf(stderr, "demo: Docker cannot run here: %s\n", why.c_str());
        return 1;
      }
      std::printf("demo: Docker cannot run here (%s); using a bubblewrap sandbox instead\n", why.c_str());
    }
  }
  if (sandbox_what.empty()) {
    // Root runs the agent in bwrap, so the build's own copy is reachable.
    bwrap = std::make_unique<Daemon>(SandboxCommand(bridge, {.hostname = "sleep"}), work / "sandbox.log");
    for (int i = 0; i < 500 && access((bridge + "/agent.sock").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (access((bridge + "/agent.sock").c_str(), F_OK) != 0) {
      std::fprintf(stderr, "demo: the sandbox's agent did not start:\n%s\n", bwrap->Log().c_str());
      return 1;
    }
    sandbox_what = "a bubblewrap sandbox (the host's files read-only)";
  }
  // allgo-sshd logs to this terminal.
  Daemon sshd({Artifact("allgo-sshd"), "--config", AllgoConfigPath()}, "/dev/stderr");
  if (!WaitForTcpPort(port, 15000)) {
    std::fprintf(stderr, "demo: allgo-sshd did not start on port %d\n", port);
    return 1;
  }
  std::string opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i " + key_path;
  std::printf(
      "\n"
      "allgo-ssh demo is running. Webapp 'sleep' (uid %u) belongs to demo@allgo.example, whose\n"
      "key is %s.pub. Its sandbox is %s.\nTry, from this machine:\n\n"
      "  ssh -p %d %s sleep@127.0.0.1                 # a shell inside the sandbox\n"
      "  ssh -p %d %s sleep@127.0.0.1 'uname -n; id'  # a command\n"
      "  scp -P %d %s /etc/hostname sleep@127.0.0.1:/tmp/\n"
      "  sftp -P %d %s sleep@127.0.0.1\n"
      "  curl -s http://%s/metrics\n\n"
      "Audit log: %s. Press Ctrl-C to stop and remove everything.\n"
      "demo: ready\n",
      uid, key_path.c_str(), sandbox_what.c_str(), port, opts.c_str(), port, opts.c_str(), port, opts.c_str(), port,
      opts.c_str(), metrics.c_str(), (work / "audit.log").c_str());
  std::fflush(stdout);

  int sig = WaitForSignal();
  std::printf("\ndemo: got signal %d, stopping allgo-sshd, the sandbox and MariaDB\n", sig);
  sshd.Stop(SIGTERM, 5000);
  container.reset();  // docker rm -f
  if (docker) docker->Stop();  // the private engine, its images and its files
  if (bwrap) bwrap->Stop(SIGTERM, 5000);
  db.Stop();
  std::printf("demo: stopped; temporary files removed\n");
  return 0;
}
