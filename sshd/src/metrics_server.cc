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
class HealthCheck {
 public:
  explicit HealthCheck(const MysqlConfig& config) : connection_(config) {}
  Status Get() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    if (now - checked_ > std::chrono::seconds(2)) {
      std::vector<SqlRow> rows;
      last_ = connection_.Query("SELECT 1", {}, 1, &rows);
      checked_ = now;
    }
    return last_;
  }

 private:
  std::mutex mutex_;
  MysqlConnection connection_;
  Status last_;
  std::chrono::steady_clock::time_point checked_{};
};

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
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    httplib::Server server;
    char verdict = 'E';
    if (server.bind_to_port(host, port) && DropPrivileges(uid, gid, {gid}).ok() && SetNoNewPrivs().ok()) {
      verdict = 'K';
    }
    (void)!write(ready[1], &verdict, 1);
    close(ready[1]);
    if (verdict != 'K') _exit(1);
    HealthCheck health(config.mysql);
    server.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    server.Get("/healthz", [&health](const httplib::Request&, httplib::Response& res) {
      Status st = health.Get();
      if (st.ok()) {
        res.set_content("ok\n", "text/plain");
      } else {
        res.status = 503;
        res.set_content("database unavailable: " + st.message() + "\n", "text/plain");
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
