// The listener: the long-lived root process. It only accepts: every connection is handed
// to a fresh process (fork), so a crash or hang in one connection never touches another.
//
//   listener (root) ── fork per connection ──▶ monitor (root) ── fork ──▶ network child
//                                                                        (privsep_user, chroot,
//                                                                         no_new_privs, libssh)
//
// max_startups (begin:rate:full) is enforced here, before anything else happens: the
// listener counts connections that have not authenticated yet (each one holds a pipe that
// its monitor closes on success) and drops new ones early and at random past `begin`, all
// of them past `full`, like OpenSSH's MaxStartups.
//
// Operations: PROXY protocol headers are read here (in the connection's root process, before
// the network child exists) from proxy_trusted sources only; metrics live in shared memory;
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
    UniqueFd startup;  // open while the connection is unauthenticated
  };
  void Accept(int listen_fd);
  bool ShouldDrop();
  void Reload();
  // Audit log and PROXY settings from config_ (at start and on SIGHUP).
  Status ApplyOperations(const Config& config);
  [[noreturn]] void RunConnection(UniqueFd client, UniqueFd startup);

  std::string config_path_;
  Config config_;
  UniqueBind bind_;
  std::string banner_;  // contents of [sshd] banner
  ServiceUsers users_;
  std::vector<UniqueFd> listeners_;
  std::map<pid_t, Child> children_;
  UniqueFd sigfd_;
  Metrics* metrics_ = nullptr;          // shared memory, inherited by every connection
  std::unique_ptr<AuditLog> audit_;     // [sshd] audit_log, re-checked on SIGHUP
  ProxyMode proxy_mode_ = ProxyMode::kOff;
  std::vector<Cidr> proxy_trusted_;
  pid_t metrics_pid_ = -1;
};

}  // namespace allgo::sshd
