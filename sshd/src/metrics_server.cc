#include "metrics_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CivetServer.h>
#include <civetweb.h>

#include <memory>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include "child_process.h"

namespace allgo::sshd {
namespace {

// The HTTP side is prometheus-cpp's Exposer (civetweb). civetweb bounds what a client can
// send before any handler runs (the request line and headers together to 16 KiB, at most
// 64 headers), and it drops privileges itself (run_as_user) after binding and before it
// starts a thread, so no thread ever reads a request as root. This callback runs first for
// every request: GET only, no body (refused before a byte of it is read; civetweb closes
// the connection after each answer), /healthz answered here from the health child's latest
// verdict (health_check.h), /metrics left to the Exposer.
const HealthBoard* g_health = nullptr;  // the process serves one endpoint; set before it starts

int Reply(mg_connection* conn, int status, const char* reason, const std::string& body,
          const char* extra_headers = "") {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s"
            "Connection: close\r\n\r\n",
            status, reason, body.size(), extra_headers);
  mg_write(conn, body.data(), body.size());
  return status;
}

int BeginRequest(mg_connection* conn) {
  const mg_request_info* req = mg_get_request_info(conn);
  std::string method = req->request_method != nullptr ? req->request_method : "";
  std::string uri = req->local_uri != nullptr ? req->local_uri : "";
  if (method != "GET") return Reply(conn, 405, "Method Not Allowed", "method not allowed\n", "Allow: GET\r\n");
  if (req->content_length > 0 || mg_get_header(conn, "Transfer-Encoding") != nullptr) {
    return Reply(conn, 413, "Payload Too Large", "request body not accepted\n");
  }
  if (uri == "/healthz") {
    if (g_health->Healthy(MonotonicMs())) return Reply(conn, 200, "OK", "ok\n");
    return Reply(conn, 503, "Service Unavailable", "database unavailable\n");
  }
  if (uri != "/metrics") return Reply(conn, 404, "Not Found", "not found\n");
  return 0;
}

// civetweb's listening_ports syntax for [sshd] metrics_listen ("host:port", "[v6]:port",
// ":port").
std::string CivetPort(const std::string& spec) { return !spec.empty() && spec[0] == ':' ? spec.substr(1) : spec; }

// The privilege drop civetweb made (run_as_user), checked like our own.
Status CheckDropped(uid_t uid, gid_t gid) {
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) return Status::FromErrno("getresuid", errno);
  if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid) {
    return Status::Permission("the metrics process is not running as metrics_user");
  }
  gid_t groups[4];
  int n = getgroups(4, groups);
  if (n < 0 || n > 1 || (n == 1 && groups[0] != gid)) {
    return Status::Permission("the metrics process kept supplementary groups");
  }
  if (setuid(0) == 0 || setgid(0) == 0) return Status::Permission("the metrics process could regain root");
  return Status::Ok();
}

// Binds, drops to metrics_user and starts serving; false on any failure (logged).
std::unique_ptr<prometheus::Exposer> StartExposer(const Config& config, uid_t uid, gid_t gid) {
  // no_new_privs before the threads exist, so every thread has it.
  Status st = SetNoNewPrivs();
  if (!st.ok()) {
    spdlog::error("metrics: {}", st.ToString());
    return nullptr;
  }
  static CivetCallbacks callbacks;
  callbacks.begin_request = BeginRequest;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", CivetPort(config.sshd.metrics_listen), "run_as_user",
                                 config.sshd.metrics_user, "num_threads", "2", "request_timeout_ms", "5000",
                                 "max_request_size", "16384", "enable_keep_alive", "no"},
        &callbacks);
  } catch (const std::exception& e) {
    spdlog::error("metrics: cannot serve on {}: {}", config.sshd.metrics_listen, e.what());
    return nullptr;
  }
  st = CheckDropped(uid, gid);
  if (!st.ok()) {
    spdlog::error("metrics: {}", st.ToString());
    return nullptr;
  }
  return exposer;
}

}  // namespace

Status StartMetricsServer(Config* config_in_child, HealthBoard* health, Metrics* metrics, uid_t uid, gid_t gid,
                          pid_t* pid) {
  const Config& config = *config_in_child;
  const std::string& spec = config.sshd.metrics_listen;
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return Status::FromErrno("metrics_listen: pipe", errno);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("metrics_listen: fork", errno);
  if (child == 0) {
    // Least knowledge, before anything else: this process parses HTTP from the network, so
    // it forgets every [mysql] secret (LoadConfig left no other copy; the database check
    // is the health child's) and may only read the health verdict.
    ScrubSecrets(config_in_child);
    close(ready[0]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    Status readonly = health->MakeReadOnly();
    if (!readonly.ok()) {
      spdlog::error("metrics: {}", readonly.ToString());
      (void)!write(ready[1], "E", 1);
      _exit(1);
    }
    g_health = health;
    auto collectable = std::make_shared<MetricsCollectable>(metrics);
    std::unique_ptr<prometheus::Exposer> exposer = StartExposer(config, uid, gid);
    char verdict = 'E';
    // The parent-death signal is cleared by the credential change of the drop, so it is set
    // after it; then the parent is checked, in case it died before the signal was armed.
    if (exposer && prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && getppid() == parent) {
      exposer->RegisterCollectable(collectable);
      verdict = 'K';
    }
    (void)!write(ready[1], &verdict, 1);
    close(ready[1]);
    if (verdict != 'K') _exit(1);
    for (;;) pause();  // civetweb's threads serve; SIGTERM (or the listener's death) ends us
  }
  close(ready[1]);
  char verdict = 0;
  ssize_t n = read(ready[0], &verdict, 1);
  close(ready[0]);
  if (n != 1 || verdict != 'K') {
    return Status::IoError(config.path + ": [sshd] metrics_listen = " + spec +
                           ": cannot listen there (address in use, or not a local address?)");
  }
  *pid = child;
  return Status::Ok();
}

}  // namespace allgo::sshd
