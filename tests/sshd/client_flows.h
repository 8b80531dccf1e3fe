// What other SSH clients and developer tools check of forwarding, written once for every
// sandbox backend (issue 19, "real clients; both backends"): sshd_forward_clients_test and
// sshd_devtools_test run them against the bridge backend (bubblewrap with its own network
// namespace), sshd_gateway_clients_test against the docker backend (allgo-sandbox-gateway into
// a `--network none` container). Each function is a list of Google Test assertions.
//
// The sandbox and the frontend both serve HTTP on `port` (the sandbox "sandbox\n", the
// frontend "frontend\n", marker.txt), and only the frontend serves on `frontend_only_port`:
// what a forward gets back tells where it landed.
#pragma once

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sshd_fixture.h"
#include "test_support.h"

namespace allgo::test {

struct ClientTarget {
  const SshdServer* server = nullptr;
  std::string key;         // the user's private key (OpenSSH format)
  std::string user;        // the webapp logged into
  std::string local_dir;   // the client side's scratch folder (logs, fifos, converted keys)
  std::string shared_dir;  // a folder the sandbox sees at the same path
  int port = 0, frontend_only_port = 0;
  // More to print with a failure (the servers' logs), read only then.
  std::function<std::string()> context = [] { return std::string(); };

  // ssh -T [extra] USER@host COMMAND with its stdin open as long as the returned client lives
  // (a fifo written through `feed`), as an editor keeps its connection.
  std::unique_ptr<Daemon> FedClient(const std::string& name, const std::vector<std::string>& extra,
                                    const std::string& command, std::ofstream* feed) const;
  // tests/sshd/clients/SCRIPT SSH_PORT KEY args... run with Debian's /usr/bin/python3.
  RunResult Python(const std::string& script, const std::vector<std::string>& args, int timeout_seconds = 90) const;
  // A command in a session of the sandbox.
  RunResult Ssh(const std::string& command) const;
  // A ControlMaster connection (ssh -M -N) with `forwards` (-L/-R options), ended by the Daemon;
  // Through() runs a command in a new session of it.
  std::unique_ptr<Daemon> Master(const std::vector<std::string>& forwards) const;
  RunResult Through(const std::string& command, int timeout_seconds = 90) const;
  std::string control() const { return local_dir + "/flows-cm.sock"; }
};

// tests/sshd/clients/NAME.
std::string ClientScript(const std::string& name);
// What curl gets from the frontend's 127.0.0.1:port/marker.txt ("" when nothing answers).
std::string GetMarker(int port);

// paramiko: a direct-tcpip channel reaches the sandbox's server on `port`; one to
// `frontend_only_port` is refused (no answer from the frontend), and audited.
void ExpectParamikoDirectTcpipLandsInTheSandbox(const ClientTarget& t);
// paramiko: tcpip-forward on port 0 gets a port allocated in the sandbox (nothing answers on it
// on the frontend); a session in the sandbox fetches from it and the connection comes back as
// forwarded-tcpip for that listener.
void ExpectParamikoTcpipForwardGetsItsPort(const ClientTarget& t);
// asyncssh: forward_local_port and create_connection both reach the sandbox's server.
void ExpectAsyncsshLocalForwardLandsInTheSandbox(const ClientTarget& t);
// asyncssh: a port-0 listener in the sandbox (not on the frontend's loopback) brings the
// sandbox's connection to the frontend's server on `port` ("frontend").
void ExpectAsyncsshRemoteForwardReachesTheClientSide(const ClientTarget& t);
// asyncssh with agent forwarding: `ssh-add -l` in the sandbox lists the key of the client's
// ssh-agent, through SSH_AUTH_SOCK in the sandbox's /tmp.
void ExpectAsyncsshAgentForwardingListsTheKey(const ClientTarget& t);
// plink -L with the host key pinned by its fingerprint reaches the sandbox's server, a plink -L
// to `frontend_only_port` gets nothing, and a wrong pin forwards nothing.
void ExpectPlinkLocalForwardWithAPinnedHostKey(const ClientTarget& t);

// VS Code Remote-SSH: `ssh -T -D PORT host bash`, a script on stdin that looks the machine over,
// installs and starts its server (HTTP + WebSocket echo, python3-websockets) on the sandbox's
// 127.0.0.1 at a random port and prints the port; HTTP and a WebSocket through the SOCKS port
// (names resolved in the sandbox); the frontend has no such server.
void ExpectVsCodeLikeFlowThroughSocks(const ClientTarget& t);
// Jupyter: Debian's jupyter-notebook started in the sandbox over ssh with `-L` to it (the
// frontend serving a decoy on the very port), a kernel made through the REST API runs
// `print(6*7)` sent on its WebSocket and answers 42; the runtime files are in the sandbox's
// home; the notebook server ends with the client.
void ExpectJupyterKernelRunsCodeThroughLocalForward(const ClientTarget& t);

// A sandbox service (tests/sshd/clients/faulty_service.py on the sandbox's faulty_port) answers
// `answer_size` bytes and closes while the client's side is still open (also after the client's
// own EOF): the client gets every byte, then the end; one that resets gets the client a prefix,
// then the end. Another forward of the connection (held open meanwhile), its sessions and a new
// forward carry on; the audit lines count every byte.
void ExpectServiceClosingMidStreamEndsOnlyItsForward(const ClientTarget& t, int faulty_port, int answer_size);

// "" or which of the Debian packages a test needs on the client side are missing, and how to
// get them.
std::string MissingPackages(const std::vector<std::pair<std::string, std::string>>& needed);
extern const std::pair<std::string, std::string> kWebsocketClient, kWebsocketServer, kJupyterNotebook;

}  // namespace allgo::test
