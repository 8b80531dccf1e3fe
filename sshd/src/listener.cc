#include "listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <tuple>

#include <spdlog/spdlog.h>

#include "child_process.h"
#include "allgo/memory.h"
#include "crypto_warmup.h"
#include "health_check.h"
#include "metrics_server.h"
#include "monitor.h"
#include "net_session.h"
#include "privsep.h"
#include "seccomp_filter.h"

namespace allgo::sshd {
namespace {

// epoll_event.data.u64: what the event is about (top byte) and which one (the rest).
constexpr uint64_t kTagMask = 0xffull << 56;
constexpr uint64_t kTagSignal = 1ull << 56;
constexpr uint64_t kTagListener = 2ull << 56;   // | index in listeners_
constexpr uint64_t kTagStartup = 3ull << 56;    // | pid of the connection
constexpr uint64_t kTagPending = 4ull << 56;    // | admission id

void Numeric(const sockaddr_storage& ss, std::string* ip, uint16_t* port) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *port = ntohs(a->sin6_port);
    std::string s = buf;
    if (s.rfind("::ffff:", 0) == 0 && s.find('.') != std::string::npos) {
      *ip = s.substr(7);
      return;
    }
  }
  *ip = buf;
}

}  // namespace

Status ReadBanner(const Config& config, std::string* out) {
  out->clear();
  const std::string& path = config.sshd.banner;
  if (path.empty()) return Status::Ok();
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Status::FromErrno(config.path + ": [sshd] banner = " + path, errno);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof(buf))) > 0) {
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > 64 * 1024) return Status::Invalid("[sshd] banner " + path + " is larger than 64 KiB");
  }
  if (n < 0) return Status::FromErrno("[sshd] banner = " + path, errno);
  return Status::Ok();
}

Status OpenListener(const std::string& spec, UniqueFd* out) {
  std::string host, port;
  if (!spec.empty() && spec[0] == '[') {
    auto close = spec.find("]:");
    if (close == std::string::npos) return Status::Invalid("listen = " + spec + ": expected [address]:port");
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    auto colon = spec.rfind(':');
    if (colon == std::string::npos) {
      port = spec;
    } else {
      host = spec.substr(0, colon);
      port = spec.substr(colon + 1);
    }
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Status::Invalid("listen = " + spec + ": " + gai_strerror(rc) + " (numeric address:port)");
  Status st = Status::Invalid("listen = " + spec + ": no address");
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd) {
      st = Status::FromErrno("listen = " + spec + ": socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      st = Status::FromErrno("listen = " + spec + ": bind", errno);
      continue;
    }
    // A burst of logins arrives faster than one accept loop turn: let the kernel hold them
    // (it caps this at net.core.somaxconn).
    if (listen(fd.get(), 1024) != 0) {
      st = Status::FromErrno("listen = " + spec + ": listen", errno);
      continue;
    }
    *out = std::move(fd);
    st = Status::Ok();
    break;
  }
  freeaddrinfo(res);
  return st;
}

Status EnsureFileLimit(const Config& config) {
  // Every pending connection is a socket in the listener, plus its startup pipes and a margin
  // for listening sockets, logs and the processes being forked.
  rlim_t need = static_cast<rlim_t>(config.sshd.max_startups_full) + config.sshd.max_startups_begin + 64;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return Status::FromErrno("getrlimit(RLIMIT_NOFILE)", errno);
  if (lim.rlim_cur >= need) return Status::Ok();
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
    return Status::Invalid(config.path + ": [sshd] max_startups full = " + std::to_string(config.sshd.max_startups_full) +
                           " needs " + std::to_string(need) + " open files, but the hard limit (RLIMIT_NOFILE) is " +
                           std::to_string(lim.rlim_max) + ": raise LimitNOFILE= in the systemd unit, or lower full");
  }
  lim.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return Status::FromErrno("setrlimit(RLIMIT_NOFILE)", errno);
  return Status::Ok();
}

Status Listener::ApplyOperations(const Config& config) {
  ProxyMode mode;
  Status st = ParseProxyMode(config.sshd.proxy_protocol, &mode);
  if (!st.ok()) return st;
  std::vector<Cidr> trusted;
  for (const std::string& range : config.sshd.proxy_trusted) {
    Cidr cidr;
    st = ParseCidr(range, &cidr);
    if (!st.ok()) return Status::Invalid(config.path + ": [sshd] proxy_trusted: " + st.message());
    trusted.push_back(cidr);
  }
  std::unique_ptr<AuditLog> audit;
  if (!config.sshd.audit_log.empty()) {
    st = AuditLog::Open(config.sshd.audit_log, &audit);
    if (!st.ok()) return Status::IoError(config.path + ": [sshd] " + st.message());
  }
  st = EnsureFileLimit(config);
  if (!st.ok()) return st;
  admission_->SetProxy(mode, std::move(trusted));
  admission_->SetLimits(AdmissionLimits::FromConfig(config.sshd));
  audit_ = std::move(audit);
  return Status::Ok();
}

Listener::Listener(std::string config_path, Config config)
    : config_path_(std::move(config_path)), config_(std::move(config)) {
  ScrubSecrets(&config);  // a short password is copied, not moved, out of the string object
}

Status Listener::StartMetrics() {
  metrics_ = Metrics::CreateShared();
  if (config_.sshd.metrics_listen.empty()) return Status::Ok();
  if (!metrics_) return Status::IoError("metrics: cannot map shared memory");
  // The board lives only in its two processes: unmapped here once both are forked, so no
  // connection inherits it.
  std::unique_ptr<HealthBoard> board = HealthBoard::Create(config_.mysql);
  if (!board) return Status::IoError("metrics: cannot map shared memory for /healthz");
  Status st = StartHealthChild(config_, board.get(), users_.lookup.uid, users_.lookup.gid, &health_pid_);
  if (!st.ok()) return st;
  st = StartMetricsServer(&config_, board.get(), metrics_, users_.metrics.uid, users_.metrics.gid, &metrics_pid_);
  if (!st.ok()) return st;
  spdlog::info("metrics on http://{}/metrics and /healthz", config_.sshd.metrics_listen);
  return Status::Ok();
}

Status Listener::Init() {
  Status st = ResolveServiceUsers(config_, &users_);
  if (!st.ok()) return st;
  // The metrics and health processes first, before the host keys are loaded: neither needs
  // them, and neither may inherit the audit log or a listening socket.
  st = StartMetrics();
  if (!st.ok()) return st;
  std::vector<std::string> summary;
  st = MakeServerBind(config_, &bind_, &summary);
  if (!st.ok()) return st;
  for (const auto& line : summary) spdlog::info("host key {}", line);
  WarmCryptoTables();  // before the first connection's fork: shared by every connection (crypto_warmup.h)
  st = ReadBanner(config_, &banner_);
  if (!st.ok()) return st;
  st = EnsurePrivsepChroot(config_.sshd.privsep_chroot);
  if (!st.ok()) return st;
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return Status::FromErrno("epoll_create1", errno);
  admission_ = std::make_unique<Admission>(epoll_.get(), kTagPending, metrics_);
  st = ApplyOperations(config_);
  if (!st.ok()) return st;
  if (audit_) spdlog::info("audit log {}", config_.sshd.audit_log);
  std::vector<std::string> specs = config_.sshd.listen;
  if (specs.empty()) specs.push_back("127.0.0.1:2222");
  for (const auto& spec : specs) {
    UniqueFd fd;
    st = OpenListener(spec, &fd);
    if (!st.ok()) return st;
    spdlog::info("listening on {}", spec);
    listeners_.push_back(std::move(fd));
  }
  return Status::Ok();
}

void Listener::Accept(int listen_fd) {
  // Drain the backlog a bounded number at a time, so signals and admissions keep their turn.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    UniqueFd client(accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    if (!client) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("accept: {}", std::strerror(errno));
      }
      return;
    }
    // Without TCP_NODELAY the small handshake packets meet the client's delayed ACK: ~40 ms
    // stalls, several per login.
    int one = 1;
    setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    admission_->Offer(std::move(client), peer, MonotonicMs());
  }
}

void Listener::Start(AdmittedConnection conn) {
  std::string source = conn.source;
  bool silent = conn.silent;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    spdlog::error("pipe2: {}", std::strerror(errno));
    admission_->Release(source, silent);
    return;
  }
  UniqueFd startup_r(p[0]), startup_w(p[1]);
  pid_t pid = fork();
  if (pid < 0) {
    spdlog::error("fork: {}", std::strerror(errno));
    admission_->Release(source, silent);
    return;
  }
  if (pid == 0) {
    startup_r.reset();
    epoll_.reset();  // shared with the listener: never touched from here
    admission_->CloseInChild();
    for (auto& l : listeners_) l.reset();
    for (auto& [cpid, child] : children_) child.startup.reset();
    sigfd_.reset();
    // The monitor keeps the write end; it closes it on successful authentication.
    RunConnection(std::move(conn), std::move(startup_w));
  }
  if (metrics_) metrics_->ConnectionOpened();
  epoll_event ev{};
  ev.events = EPOLLIN;  // EOF (POLLHUP) once the monitor closed its end
  ev.data.u64 = kTagStartup | static_cast<uint64_t>(pid);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, startup_r.get(), &ev) != 0) {
    spdlog::error("epoll_ctl (startup pipe): {}; the slot frees when the connection ends", std::strerror(errno));
  }
  Child& child = children_[pid];
  child.startup = std::move(startup_r);
  child.source = std::move(source);
  child.silent = silent;
}

void Listener::StartupEnded(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end() || !it->second.startup) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.startup.get(), nullptr);
  it->second.startup.reset();
  admission_->Release(it->second.source, it->second.silent);
}

void Listener::RunConnection(AdmittedConnection conn, UniqueFd startup) {
  UniqueFd client = std::move(conn.fd);
  MonitorSettings ms;
  ms.config = &config_;
  ms.lookup_uid = users_.lookup.uid;
  ms.lookup_gid = users_.lookup.gid;
  ms.accepted_ms = conn.accepted_ms;
  sockaddr_storage ss = conn.peer;
  socklen_t len = sizeof(ss);
  Numeric(ss, &ms.conn.client_ip, &ms.conn.client_port);
  if (conn.has_proxy_header) {
    // The one place a root process consumes network bytes: the header admission already
    // saw complete (from a proxy_trusted source), through a bounded, fuzzed parser
    // (proxy_protocol.h), before the network child takes the socket.
    std::string tcp_peer = ms.conn.Client();
    ProxyHeader header;
    Status pst = ReadProxyHeader(client.get(), ProxyMode::kRequired, 1000, &header);
    if (!pst.ok()) {
      spdlog::warn("connection from {} refused: PROXY header: {}", tcp_peer, pst.ToString());
      _exit(1);
    }
    if (header.has_address) {
      ms.conn.client_ip = AddressToString(header.source);
      ms.conn.client_port = AddressPort(header.source);
      spdlog::info("connection from {} via proxy {}", ms.conn.Client(), tcp_peer);
    }
  }
  len = sizeof(ss);
  getsockname(client.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  Numeric(ss, &ms.conn.server_ip, &ms.conn.server_port);
  spdlog::info("connection from {} to {}:{}", ms.conn.Client(), ms.conn.server_ip, ms.conn.server_port);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    spdlog::error("socketpair: {}", std::strerror(errno));
    _exit(1);
  }
  UniqueFd mon_end(sv[0]), net_end(sv[1]);
  pid_t net = fork();
  if (net < 0) {
    spdlog::error("fork: {}", std::strerror(errno));
    _exit(1);
  }
  if (net == 0) {
    // Least knowledge: before its first network byte this process forgets every [mysql]
    // secret (LoadConfig left no other copy; docs/security.md "The network child").
    ScrubSecrets(&config_);
    mon_end.reset();
    startup.reset();
    audit_.reset();  // only the monitor writes the audit log
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_IGN);
    ssh_session session = ssh_new();
    if (session == nullptr || ssh_bind_accept_fd(bind_.get(), session, client.get()) != SSH_OK) {
      spdlog::error("connection from {}: cannot start the SSH session: {}", ms.conn.Client(),
                    session ? ssh_get_error(bind_.get()) : "out of memory");
      _exit(1);
    }
    client.release();  // owned by the session now
    bind_.reset();     // the session holds its own copies of the host keys
    // From here on this process parses network bytes: no root, no filesystem, no way back.
    Status st = EnterChroot(config_.sshd.privsep_chroot);
    if (st.ok()) st = DropPrivileges(users_.privsep.uid, users_.privsep.gid, {users_.privsep.gid});
    if (st.ok()) st = SetNoNewPrivs();
    if (st.ok()) st = InstallNetworkChildFilter();
    if (!st.ok()) {
      spdlog::error("connection from {}: privilege separation failed: {}", ms.conn.Client(), st.ToString());
      _exit(1);
    }
    NetSettings ns{&config_, ms.conn, banner_};
    int rc;
    {
      NetSession net_session(ns, session, std::move(net_end));
      rc = net_session.Run();
    }
    ssh_disconnect(session);
    ssh_free(session);
    _exit(rc);
  }
  net_end.reset();
  client.reset();
  bind_.reset();
  ms.metrics = metrics_;
  ms.audit = audit_.get();
  Monitor monitor(ms, std::move(mon_end), net, std::move(startup));
  int rc = monitor.Run();
  spdlog::info("connection from {} closed", ms.conn.Client());
  _exit(rc);
}

void Listener::Reload() {
  Config fresh;
  Status st = LoadConfig(config_path_, &fresh);
  UniqueBind bind;
  std::vector<std::string> summary;
  if (st.ok()) st = MakeServerBind(fresh, &bind, &summary);
  std::string banner;
  if (st.ok()) st = ReadBanner(fresh, &banner);
  ServiceUsers users;
  if (st.ok()) st = ResolveServiceUsers(fresh, &users);
  if (st.ok()) st = EnsurePrivsepChroot(fresh.sshd.privsep_chroot);
  if (st.ok()) st = ApplyOperations(fresh);
  if (!st.ok()) {
    ScrubSecrets(&fresh);
    spdlog::error("SIGHUP: reload failed, keeping the running configuration: {}", st.ToString());
    return;
  }
  if (fresh.sshd.listen != config_.sshd.listen) {
    spdlog::warn("SIGHUP: listen addresses changed; they take effect after a restart");
  }
  if (fresh.sshd.metrics_listen != config_.sshd.metrics_listen) {
    spdlog::warn("SIGHUP: metrics_listen changed; it takes effect after a restart");
  }
  const MysqlConfig& a = fresh.mysql;
  const MysqlConfig& b = config_.mysql;
  if (health_pid_ > 0 && std::tie(a.socket, a.host, a.port, a.database, a.user, a.password, a.connect_timeout) !=
                             std::tie(b.socket, b.host, b.port, b.database, b.user, b.password, b.connect_timeout)) {
    // The health child was forked at start with the settings of then (health_check.h).
    spdlog::warn("SIGHUP: [mysql] changed; /healthz checks the database with the old settings until a restart");
  }
  ScrubSecrets(&config_);  // the move below would hand the old buffer to `fresh`, freed unwiped
  config_ = std::move(fresh);
  ScrubSecrets(&fresh);
  bind_ = std::move(bind);
  banner_ = std::move(banner);
  users_ = users;
  spdlog::info("SIGHUP: configuration reloaded from {} (applies to new connections)", config_path_);
}

void Listener::HandleSignals(int* stopping) {
  signalfd_siginfo si;
  while (read(sigfd_.get(), &si, sizeof(si)) == sizeof(si)) {
    if (si.ssi_signo == SIGHUP) {
      Reload();
    } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
      ++*stopping;
      if (*stopping == 1) {
        spdlog::info("stopping: no new connections; waiting for {} connection(s) to end", children_.size());
        for (auto& l : listeners_) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l.get(), nullptr);
        listeners_.clear();
        admission_->Clear();
        for (auto& [pid, child] : children_) {
          if (child.startup) kill(pid, SIGTERM);
        }
      } else {
        spdlog::info("stopping now: ending {} connection(s)", children_.size());
        for (auto& [pid, child] : children_) kill(pid, SIGTERM);
      }
    }
  }
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == metrics_pid_) {
      spdlog::error("the metrics endpoint process ended (status {}); metrics are off until a restart", status);
      metrics_pid_ = -1;
      continue;
    }
    if (pid == health_pid_) {
      spdlog::error("the /healthz database check process ended (status {}); /healthz answers 503 until a restart",
                    status);
      health_pid_ = -1;
      continue;
    }
    StartupEnded(pid);
    if (children_.erase(pid) && metrics_) metrics_->ConnectionClosed();
  }
}

int Listener::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sigfd_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    return 1;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagSignal;
  bool ok = epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sigfd_.get(), &ev) == 0;
  for (size_t i = 0; i < listeners_.size(); ++i) {
    ev.data.u64 = kTagListener | i;
    ok = ok && epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listeners_[i].get(), &ev) == 0;
  }
  if (!ok) {
    spdlog::critical("epoll_ctl: {}", std::strerror(errno));
    return 1;
  }
  int stopping = 0;
  int timeout = -1;
  std::vector<epoll_event> events(256);
  PlugHeapHoles();  // every connection process is forked from here on (allgo/memory.h)
  while (true) {
    int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::critical("epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64 & kTagMask, value = events[i].data.u64 & ~kTagMask;
      if (tag == kTagSignal) {
        HandleSignals(&stopping);
      } else if (tag == kTagStartup) {
        StartupEnded(static_cast<pid_t>(value));
      } else if (tag == kTagPending) {
        admission_->OnEvent(value, events[i].events);
      } else if (tag == kTagListener && stopping == 0 && value < listeners_.size()) {
        Accept(listeners_[value].get());
      }
    }
    if (stopping > 0 && children_.empty()) {
      if (metrics_pid_ > 0) kill(metrics_pid_, SIGTERM);
      if (health_pid_ > 0) kill(health_pid_, SIGTERM);
      break;
    }
    long long now = MonotonicMs();
    timeout = admission_->Expire(now);
    AdmittedConnection conn;
    while (stopping == 0 && admission_->Next(now, &conn)) Start(std::move(conn));
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace allgo::sshd
