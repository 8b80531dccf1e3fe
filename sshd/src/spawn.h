// Starting a session process as the webapp (runs in the privileged monitor).
//
// OpenSSH's conventions: the login shell from the passwd entry runs `shell -c COMMAND` for
// exec, `shell -c <sftp_server>` for the sftp subsystem, and with argv[0] "-<basename>" for
// an interactive login shell. The environment is built from scratch: USER, LOGNAME, HOME,
// SHELL, PATH, SSH_CONNECTION, SSH_CLIENT, SSH_TTY and TERM (PTY), the client's accepted
// variables (LANG, LC_*, TERM), plus ALLGO_SSH_CONFIG and ALLGO_USER, and
// SSH_ORIGINAL_COMMAND under a forced command.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "allgo/identity.h"
#include "allgo/status.h"
#include "allgo/unique_fd.h"
#include "monitor_protocol.h"

namespace allgo::sshd {

// The account that authenticated: the webapp's own (built from its row, identity.h), plus
// the allgo user whose key matched.
struct Account : WebappAccount {
  std::string allgo_account;
};

// Both ends of the TCP connection, numeric.
struct ConnectionInfo {
  std::string client_ip;
  uint16_t client_port = 0;
  std::string server_ip;
  uint16_t server_port = 0;
  std::string Client() const { return client_ip + ":" + std::to_string(client_port); }
};

struct SpawnSettings {
  std::string config_path;  // ALLGO_SSH_CONFIG
  std::string sftp_server;
  // The key's command="..." option: exec, shell and subsystem all run `shell -c COMMAND`
  // instead, with SSH_ORIGINAL_COMMAND set to the client's command (exec), the subsystem's
  // command (sftp_server), or unset (shell) — as OpenSSH does.
  bool has_forced_command = false;
  std::string forced_command;
};

struct SpawnedSession {
  pid_t pid = -1;
  bool pty = false;
  UniqueFd master;  // PTY master (pty sessions)
  UniqueFd in, out, err;  // our ends of the child's stdin/stdout/stderr (pipe sessions)
};

// Forks the session process. Errors are returned before the fork where possible (unknown
// subsystem, PTY allocation); failures after the fork show up as the child's exit status
// with a message on its stderr, like OpenSSH.
Status SpawnSession(const Account& account, const ConnectionInfo& conn, const SpawnSettings& settings,
                    const SpawnRequest& request, SpawnedSession* out);

// The carrier of a connection's forwards (docs/architecture.md, "The carrier"): the login
// shell ([nss] shell, the installed allgo-shell) run as `allgo-shell --streams`, as the
// webapp, exactly like a session without a PTY (same checked privilege drop, same
// environment), stdin and stderr /dev/null, stdout one end of a SOCK_SEQPACKET socketpair
// whose other end is *sock. It answers one record there (carrier_protocol.h) and exits.
Status SpawnCarrier(const Account& account, const ConnectionInfo& conn, const SpawnSettings& settings, pid_t* pid,
                    UniqueFd* sock);

}  // namespace allgo::sshd
