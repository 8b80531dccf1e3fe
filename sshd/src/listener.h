// The listener: the long-lived root process. It only accepts: every connection is handed
// to a fresh process (fork), so a crash or hang in one connection never touches another.
//
//   listener (root) ── fork per connection ──▶ monitor (root) ── fork ──▶ network child
//                                                                        (privsep_user, chroot,
//                                                                         no_new_privs, libssh)
//
// Admission (admission.h) comes first: an accepted connection waits in the listener, with
// no process, until a max_startups slot is free; the listener peeks at its first bytes (PROXY
// header, SSH version line) without consuming them, to close slowloris and garbage early and
// to let clients that spoke first go first. Each running unauthenticated connection holds a
// pipe that its monitor closes on successful authentication (or exit): that frees its slot.
//
// Operations: PROXY protocol headers are recognised here and consumed in the connection's
// root process, before the network child exists, from proxy_trusted sources only; metrics live
// in shared memory, served by the metrics process (metrics_server.h), whose /healthz reads the
// verdict of the health child (health_check.h), both forked before the host keys are loaded;
// the audit log path is checked by the listener (at start and on SIGHUP) and written by the
// monitors, which open it per line so that a rotated file is replaced everywhere at once.
//
// Signals: SIGTERM/SIGINT stop accepting and let running sessions end (unauthenticated
// connections are dropped; a second SIGTERM ends everything); SIGHUP reloads the config
// and host keys for new connections.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"
#include "allgo/unique_fd.h"
#include "admission.h"
#include "audit_log.h"
#include "metrics.h"
#include "proxy_protocol.h"
#include "server_keys.h"
#include "service_users.h"

namespace allgo::sshd {

// Reads the [sshd] banner file (empty path → empty text); at most 64 KiB.
Status ReadBanner(const Config& config, std::string* out);

// Parses "host:port", "[v6]:port" or ":port" / "port" (all addresses); binds and listens.
Status OpenListener(const std::string& spec, UniqueFd* out);

// Raises the soft RLIMIT_NOFILE so that max_startups `full` pending sockets fit; an error
// naming the fix when the hard limit is too low.
Status EnsureFileLimit(const Config& config);

class Listener {
 public:
  Listener(std::string config_path, Config config);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Loads host keys, checks privsep, binds every listen address.
  Status Init();
  // Serves until stopped; returns the exit code.
  int Run();

 private:
  struct Child {
    UniqueFd startup;    // open while the connection is unauthenticated
    std::string source;  // its admission accounting (admission.h)
    bool silent = false;
  };
  // Forks the health child and the metrics process when [sshd] metrics_listen is set
  // (health_check.h, metrics_server.h); the shared Metrics either way.
  Status StartMetrics();
  void Accept(int listen_fd);
  // Forks the processes of an admitted connection.
  void Start(AdmittedConnection conn);
  void StartupEnded(pid_t pid);
  void HandleSignals(int* stopping);
  void Reload();
  // Audit log, PROXY settings and admission limits from `config` (at start and on SIGHUP).
  Status ApplyOperations(const Config& config);
  [[noreturn]] void RunConnection(AdmittedConnection conn, UniqueFd startup);

  std::string config_path_;
  Config config_;
  UniqueBind bind_;
  std::string banner_;  // contents of [sshd] banner
  ServiceUsers users_;
  std::vector<UniqueFd> listeners_;
  std::map<pid_t, Child> children_;
  UniqueFd sigfd_;
  UniqueFd epoll_;  // signals, listening sockets, startup pipes, pending connections
  std::unique_ptr<Admission> admission_;
  Metrics* metrics_ = nullptr;          // shared memory, inherited by every connection
  std::unique_ptr<AuditLog> audit_;     // [sshd] audit_log, re-checked on SIGHUP
  pid_t metrics_pid_ = -1;
  pid_t health_pid_ = -1;               // the /healthz database check (health_check.h)
};

}  // namespace allgo::sshd
