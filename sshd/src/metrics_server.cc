#include "metrics_server.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <httplib.h>
#include <mutex>
#include <spdlog/spdlog.h>

#include "allgo/database.h"

namespace allgo::sshd {
namespace {

// The database check behind /healthz, at most once every two seconds whatever the polling.
// Its error text (socket paths, server messages) goes to the log, never to the client.
class HealthCheck {
 public:
  explicit HealthCheck(const MysqlConfig& config) : connection_(config) {}
  bool Healthy() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    if (now - checked_ > std::chrono::seconds(2)) {
      std::vector<SqlRow> rows;
      Status st = connection_.Query("SELECT 1", {}, 1, &rows);
      checked_ = now;
      if (!st.ok() && (healthy_ || st.message() != last_error_)) {
        spdlog::error("/healthz: the database check failed: {} (check [mysql])", st.ToString());
      } else if (st.ok() && !healthy_) {
        spdlog::info("/healthz: the database answers again");
      }
      healthy_ = st.ok();
      last_error_ = st.ok() ? "" : st.message();
    }
    return healthy_;
  }

 private:
  std::mutex mutex_;
  MysqlConnection connection_;
  bool healthy_ = true;
  std::string last_error_;
  std::chrono::steady_clock::time_point checked_{};
};

// Limits of the HTTP side: the endpoint only answers small GETs, so anything with a body or
// another method is refused before a byte of body is read, and no client can hold a worker
// for long. (Request line and each header line are bounded to 8 KiB by the library build.)
constexpr size_t kMaxBody = 0;
constexpr time_t kIoTimeoutSeconds = 5;
constexpr size_t kWorkers = 2;

void ConfigureLimits(httplib::Server& server) {
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server.set_payload_max_length(kMaxBody);
  server.set_read_timeout(kIoTimeoutSeconds);
  server.set_write_timeout(kIoTimeoutSeconds);
  server.set_keep_alive_timeout(kIoTimeoutSeconds);
  server.set_keep_alive_max_count(16);
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    bool has_body = req.has_header("Transfer-Encoding") ||
                    (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
    } else if (has_body) {
      res.status = 413;
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    // The body (if any) is never read: end the connection rather than parse it as a request.
    res.set_header("Connection", "close");
    res.set_content(res.status == 405 ? "method not allowed\n" : "request body not accepted\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace

Status StartMetricsServer(const Config& config, Metrics* metrics, uid_t uid, gid_t gid, pid_t* pid) {
  const std::string& spec = config.sshd.metrics_listen;
  size_t colon = spec.rfind(':');
  std::string host = spec.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::stoi(spec.substr(colon + 1));
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return Status::FromErrno("metrics_listen: pipe", errno);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("metrics_listen: fork", errno);
  if (child == 0) {
    close(ready[0]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    httplib::Server server;
    char verdict = 'E';
    // The parent-death signal is cleared by the credential change of the drop, so it is set
    // after it; then the parent is checked, in case it died before the signal was armed.
    if (server.bind_to_port(host, port) && DropPrivileges(uid, gid, {gid}).ok() && SetNoNewPrivs().ok() &&
        prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && getppid() == parent) {
      verdict = 'K';
    }
    (void)!write(ready[1], &verdict, 1);
    close(ready[1]);
    if (verdict != 'K') _exit(1);
    ConfigureLimits(server);
    HealthCheck health(config.mysql);
    server.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    server.Get("/healthz", [&health](const httplib::Request&, httplib::Response& res) {
      if (health.Healthy()) {
        res.set_content("ok\n", "text/plain");
      } else {
        res.status = 503;
        res.set_content("database unavailable\n", "text/plain");
      }
    });
    server.listen_after_bind();
    _exit(0);
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
