#include "health_check.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "allgo/database.h"
#include "allgo/unique_fd.h"
#include "child_process.h"
#include "privsep.h"

namespace allgo::sshd {

std::unique_ptr<HealthBoard> HealthBoard::Create(const MysqlConfig& mysql) {
  void* p = mmap(nullptr, sizeof(Page), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  Page* page = new (p) Page{};
  page->checked_ms.store(0);
  page->healthy.store(0);
  long long stale = kIntervalMs + 3LL * mysql.connect_timeout * 1000 + 1000;
  return std::unique_ptr<HealthBoard>(new HealthBoard(page, stale));
}

HealthBoard::~HealthBoard() { munmap(page_, sizeof(Page)); }

void HealthBoard::Publish(bool healthy, long long now_ms) {
  // The verdict first, then its time: a reader that sees the new time sees the new verdict.
  page_->healthy.store(healthy ? 1 : 0, std::memory_order_relaxed);
  page_->checked_ms.store(now_ms, std::memory_order_release);
}

bool HealthBoard::Healthy(long long now_ms) const {
  long long checked = page_->checked_ms.load(std::memory_order_acquire);
  if (checked == 0 || now_ms - checked > stale_after_ms_) return false;
  return page_->healthy.load(std::memory_order_relaxed) == 1;
}

Status HealthBoard::MakeReadOnly() {
  if (mprotect(page_, sizeof(Page), PROT_READ) != 0) return Status::FromErrno("mprotect (health board)", errno);
  return Status::Ok();
}

namespace {

// SELECT 1 through one connection kept open (it reconnects after a loss). The error text
// (socket paths, server messages) is logged when it changes, never published.
class DatabaseProbe {
 public:
  explicit DatabaseProbe(const MysqlConfig& config) : connection_(config) {}
  bool Check() {
    std::vector<SqlRow> rows;
    Status st = connection_.Query("SELECT 1", {}, 1, &rows);
    if (!st.ok() && (healthy_ || st.message() != last_error_)) {
      spdlog::error("/healthz: the database check failed: {} (check [mysql])", st.ToString());
    } else if (st.ok() && !healthy_) {
      spdlog::info("/healthz: the database answers again");
    }
    healthy_ = st.ok();
    last_error_ = st.ok() ? "" : st.message();
    return healthy_;
  }

 private:
  MysqlConnection connection_;
  bool healthy_ = true;
  std::string last_error_;
};

void SleepUntil(long long deadline_ms) {
  for (long long left; (left = deadline_ms - MonotonicMs()) > 0;) {
    timespec ts{static_cast<time_t>(left / 1000), static_cast<long>(left % 1000) * 1000000};
    nanosleep(&ts, nullptr);
  }
}

// In the child. Never returns.
[[noreturn]] void RunHealthChild(const Config& config, HealthBoard* board, uid_t uid, gid_t gid, pid_t parent,
                                 UniqueFd ready) {
  ResetSignalsInChild();
  Status st = DropPrivileges(uid, gid, {gid});
  if (st.ok()) st = SetNoNewPrivs();
  // The credential change of the drop clears the parent-death signal: armed after it, then
  // the parent checked, in case it died before the signal was armed.
  if (st.ok() && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)) {
    st = Status::FromErrno("the health check process: PR_SET_PDEATHSIG", errno);
  }
  if (!st.ok()) {
    spdlog::error("the health check process ([sshd] lookup_user): {}", st.ToString());
    (void)!write(ready.get(), "E", 1);
    _exit(1);
  }
  DatabaseProbe probe(config.mysql);
  long long started = MonotonicMs();
  board->Publish(probe.Check(), MonotonicMs());
  (void)!write(ready.get(), "K", 1);
  ready.reset();
  for (;;) {
    SleepUntil(started + HealthBoard::kIntervalMs);  // start to start: at most one check per interval
    started = MonotonicMs();
    board->Publish(probe.Check(), MonotonicMs());
  }
}

}  // namespace

Status StartHealthChild(const Config& config, HealthBoard* board, uid_t uid, gid_t gid, pid_t* pid) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("health check: pipe", errno);
  UniqueFd ready_r(p[0]), ready_w(p[1]);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("health check: fork", errno);
  if (child == 0) {
    ready_r.reset();
    RunHealthChild(config, board, uid, gid, parent, std::move(ready_w));
  }
  ready_w.reset();
  char verdict = 0;
  ssize_t n;
  do {
    n = read(ready_r.get(), &verdict, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || verdict != 'K') {
    waitpid(child, nullptr, 0);
    return Status::Permission("the /healthz database check process did not start (see the log above; "
                              "[sshd] lookup_user must be a dedicated unprivileged user)");
  }
  *pid = child;
  return Status::Ok();
}

}  // namespace allgo::sshd
