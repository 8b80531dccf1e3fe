// A private Docker engine and allgo's kind of sandbox in it, for the tests, the demo and the
// benchmarks (docs/sandbox.md says what allgo's controller does; this does the same).
//
// The engine touches nothing of the host's: its own data-root, exec-root, pidfile, unix
// socket and containerd namespace in a temp folder, no bridge, no iptables, no forwarding,
// no masquerading, no userland proxy; every container runs with `--network none`. It is
// started once per binary (in the caller's mount namespace, so it sees the private
// SandboxesMount) and stopped at exit: gtest environment tear-down, atexit, and SIGTERM from
// its keeper (test::Daemon) when the test process dies; it is always stopped by its pid,
// never by name. Where Docker cannot run (no docker.io, not root, no overlay/cgroups in
// this kernel) Get() says why and the callers skip (ALLGO_REQUIRE_DOCKER), the bubblewrap
// tests still run.
//
// Images are built from Debian packages by scripts/sandbox-images (cached under
// /var/cache/allgo-ssh/images) and imported with `docker import`: no registry.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test_support.h"

namespace allgo::test {

class TestDocker {
 public:
  // The engine, started on first use; nullptr when Docker cannot run here, *why saying why.
  static TestDocker* Get(std::string* why);

  // `docker -H unix://SOCKET args...`.
  RunResult Docker(const std::vector<std::string>& args, const RunOptions& options = {}) const;
  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }  // its temp folder (data-root, socket, ...)

  // The "typical webapp" image: Debian 12 minbase with bash, coreutils, openssh-sftp-server,
  // rsync and git. Built (about 2 minutes, once per cache) and imported on first use.
  // "" and *why when it cannot be made (e.g. no Debian mirror reachable).
  std::string DebianImage(std::string* why);
  // The same with what developer tools run in a webapp: python3, python3-websockets,
  // jupyter-notebook, openssh-client (sshd_gateway_clients_test; about 5 minutes once).
  std::string DevtoolsImage(std::string* why);
  // The "any image" image: nothing but /bin/busybox (busybox-static) and its applets.
  std::string BusyboxImage(std::string* why);

  // The toolbox folder mounted read-only at kToolboxMount in every sandbox: it carries
  // allgo-sandbox-agent and, when the build has it, the static allgo-sftp-server. It lives in
  // the engine's temp folder (mode 0755 all the way), so it is reachable whatever folder the
  // build is in.
  const std::string& toolbox() const { return toolbox_; }
  static constexpr const char* kToolboxMount = "/.allgo";

  // Removes every container and stops the engine (by its pid), then removes its files.
  void Stop();
  // A node going down and coming back (issue 11's fault tests): StopEngine stops dockerd by
  // its pid (SIGTERM: it stops its containers first) and keeps its folder, images and
  // containers; StartEngine starts it again with the same arguments, and the containers run
  // with `--restart always` come back with it. "" or why not.
  void StopEngine();
  std::string StartEngine();
  bool engine_running() const;
  ~TestDocker();

  // A further engine of its own (another "node" of issue 11: own folders, containerd
  // namespace and unix socket), which also listens on tcp://127.0.0.1:tls.port with
  // --tlsverify (server certificate and key, clients must present a certificate signed by
  // tls.ca). Stopped by its destructor; nullptr and *why when it cannot start.
  struct TlsListener {
    int port = 0;
    std::string ca, cert, key;  // PEM files
  };
  static std::unique_ptr<TestDocker> StartNode(const TlsListener& tls, std::string* why);
  const std::string& tcp_url() const { return tcp_url_; }  // "" for the shared engine

 private:
  TestDocker() = default;
  std::string Start();  // "" or why not: makes the folder and the toolbox, then Launch()
  std::string Launch();  // starts dockerd on dir_ and waits until it answers
  std::vector<std::string> extra_args_;  // more dockerd arguments (StartNode's listener)
  std::string ns_suffix_;                // distinguishes a further engine's containerd namespace
  std::string tcp_url_;
  std::string Image(const std::string& kind, const std::string& tag, std::string* why);
  std::string dir_, socket_, toolbox_;
  std::unique_ptr<Daemon> dockerd_;
  std::map<std::string, std::string> images_;  // kind -> imported image name
};

// Certificates made with openssl for a TLS node and its clients, in `dir`: a CA, a server
// certificate for IP:127.0.0.1 (serverAuth) and a client certificate (clientAuth), both
// signed by the CA. `name` prefixes the files (two sets in one folder do not collide).
struct TestCertificates {
  std::string ca, ca_key, server_cert, server_key, client_cert, client_key;
};
// "" or why not.
std::string MakeTestCertificates(const std::string& dir, const std::string& name, TestCertificates* out);

// Skips the current test with "Docker cannot run here: <why>" when there is no engine;
// else declares `TestDocker& var`.
#define ALLGO_REQUIRE_DOCKER(var)                                              \
  std::string var##_why;                                                       \
  ::allgo::test::TestDocker* var##_ptr = ::allgo::test::TestDocker::Get(&var##_why); \
  if (!var##_ptr) GTEST_SKIP() << "Docker cannot run here: " << var##_why;     \
  ::allgo::test::TestDocker& var = *var##_ptr

// One webapp's sandbox as allgo's controller runs it (docs/sandbox.md).
struct DockerSandboxOptions {
  std::string name;        // the container name = the webapp's docker_name
  std::string image;
  std::string hostname;    // default: the name
  // <[sandbox] dir>/<docker_name>, owned by the webapp uid, mode 0755. Empty for a sandbox of
  // `[sandbox] backend = docker`: no bridge folder, and Start() starts no agent (the gateway
  // runs `allgo-sandbox-agent --stdio` per session through the exec API).
  std::string bridge_dir;
  uid_t allow_uid = 0;     // the webapp's uid on the frontend (agent --allow-uid)
  std::vector<std::string> binds;    // more folders shared read-write (same path inside)
  std::vector<std::string> command;  // the container's command; default `sleep infinity`
  std::vector<std::string> agent_args;  // more agent options
  std::vector<std::string> run_options;  // more `docker run` options (--restart always, ...)
  // A toolbox folder of the test's own to mount instead of the engine's (e.g. one holding an
  // older agent); it must be reachable by the engine (0755 all the way).
  std::string toolbox;
};

// The `docker run` arguments (after "docker") that start the container.
std::vector<std::string> DockerRunArgs(const DockerSandboxOptions& options, const std::string& toolbox);
// The `docker exec` arguments that start the agent inside, supervised: a /bin/sh loop restarts
// it a second after it exits (killed, crashed); its log goes to the container's stderr
// (`docker logs NAME`).
std::vector<std::string> AgentExecArgs(const DockerSandboxOptions& options);

class DockerSandbox {
 public:
  DockerSandbox(TestDocker& docker, DockerSandboxOptions options);
  ~DockerSandbox();  // docker rm -f
  DockerSandbox(const DockerSandbox&) = delete;
  DockerSandbox& operator=(const DockerSandbox&) = delete;

  // docker run, then the agent; "" once the agent listens on agent.sock (without a
  // bridge_dir: once the container runs), else why not.
  std::string Start();
  // What the controller does after a container (re)start: the agent again.
  std::string StartAgent();
  std::string StopContainer();  // docker stop -t 1
  std::string RestartContainer();  // docker restart, then the agent
  void Remove();  // docker rm -f (no error if absent)
  const DockerSandboxOptions& options() const { return options_; }
  std::string Logs() const;  // docker logs (the agent's log)

 private:
  std::string SocketId() const;  // agent.sock's inode, "" when absent
  std::string ExecAgent(const std::string& old_socket_id);  // docker exec, wait for a new socket
  std::string WaitForAgent(const std::string& old_socket_id);
  TestDocker& docker_;
  DockerSandboxOptions options_;
};

}  // namespace allgo::test
