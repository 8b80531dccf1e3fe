// allgo-sandbox-gateway: the front door of allgo-shell to sandboxes on Docker nodes
// ([sandbox] backend = docker; docs/gateway.md). It maps the caller's SO_PEERCRED uid to its
// webapp, starts `allgo-sandbox-agent --stdio` in the webapp's container through the Engine
// API and relays bytes. Runs in the foreground (systemd: conf/allgo-sandbox-gateway.service).
//
// Started as root, it binds its socket, then drops to [docker] gateway_user for good before
// it loads the Docker client key or reads a byte from any client. Started as gateway_user it
// does the same without the drop. Any other user is refused.
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "allgo/config.h"
#include "allgo/identity.h"
#include "allgo/logging.h"
#include "allgo/privileges.h"
#include "service/gateway_server.h"
#include "service/gateway_setup.h"
#include "service/gateway_socket.h"
#include "service/nodes.h"
#include "service/prewarmer.h"
#include "service/sandbox_locator.h"
#include "service/session_limits.h"
#include "service/spare_pool.h"
#include "service/webapp_lookup.h"

namespace allgo::gateway {
namespace {

// A spare's agent waits this long for its `open`: longer than any spare_idle, so the gateway
// (not the agent's own clock) decides when a spare ends; still bounded if the gateway dies.
constexpr int kSpareHandshakeTimeout = 3600;

int Fail(const std::string& line) {
  spdlog::critical("{}", line);
  return 1;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "allgo-sandbox-gateway: lets allgo-shell reach webapp sandboxes on Docker nodes "
      "([sandbox] backend = docker). It takes the caller's uid from the kernel, finds its "
      "webapp's container and runs allgo-sandbox-agent --stdio there through the Docker Engine API."};
  std::string config_option;
  bool check = false;
  std::string log_level = "info";
  app.set_version_flag("--version", std::string("allgo-sandbox-gateway ") + ALLGO_VERSION);
  app.add_option("--config", config_option, "config file (default: $ALLGO_SSH_CONFIG or " +
                                                std::string(DefaultConfigPath()) + ")");
  app.add_flag("--check", check, "check the config, the gateway user and the TLS files; print the nodes; exit");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off (default info)");
  CLI11_PARSE(app, argc, argv);

  if (Status s = SetupLogging({.program = "allgo-sandbox-gateway", .level = log_level}); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  // The gateway never needs a webapp from NSS (it asks the database), only system users: the
  // identity checks' lookups skip libnss_allgo, and setting it once, before any thread,
  // keeps them from changing the environment while other threads read it.
  setenv(kNssBypassVariable, "1", 1);
  // SIGTERM/SIGINT go to a signalfd; blocked before any thread, so every thread inherits it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  Config config;
  const std::string path = ResolveConfigPath(config_option);
  if (Status s = LoadConfig(path, &config); !s.ok()) return Fail(s.message());
  if (check) {
    std::string report;
    if (Status s = CheckForOperator(config, &report); !s.ok()) {
      std::cerr << s.message() << "\n";
      return 1;
    }
    std::cout << report;
    for (const std::string& warning : ConfigWarnings(config)) std::cerr << "warning: " << warning << "\n";
    return 0;
  }
  ServiceAccount user;
  if (Status s = CheckGatewayConfig(config, &user); !s.ok()) return Fail(s.message());
  for (const std::string& warning : ConfigWarnings(config)) spdlog::warn("{}", warning);
  const uid_t me = geteuid();
  if (me != 0 && me != user.uid) {
    return Fail("allgo-sandbox-gateway runs as root (it then drops to " + user.name + ") or as " + user.name +
                " itself, not as uid " + std::to_string(me) + " ([docker] gateway_user in " + path + ")");
  }
  UniqueFd listener;
  if (Status s = BindGatewaySocket(config.docker.gateway_socket, user.uid, user.gid, &listener); !s.ok()) {
    return Fail(s.message());
  }
  if (me == 0) {
    // For good, before the client key is loaded and before any client's byte. The user's
    // groups are kept: a unix:// node's docker.sock is reached through its group (docker).
    if (Status s = DropPrivileges(user.uid, user.gid, GroupsOf(user.name, user.gid)); !s.ok()) {
      return Fail("dropping to " + user.name + ": " + s.message());
    }
  }
  NodeSet nodes;
  if (Status s = NodeSet::Create(config, &nodes); !s.ok()) {
    return Fail(s.message() + (me == 0 ? " (loaded as " + user.name + ")" : ""));
  }
  UniqueFd signals(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) return Fail("signalfd failed");

  WebappLookup lookup(config);
  SandboxLocator locator(config, &nodes, &lookup);
  SessionLimits limits(config.docker.max_sessions_per_owner);
  // Declared before the server: its sessions (which use it) are all over before it closes.
  SparePool spares(AgentExecOptions(config, kSpareHandshakeTimeout),
                   SpareLimits{.max_total = config.docker.spares,
                               .max_idle = std::chrono::seconds(config.docker.spare_idle),
                               .wait_for_making = std::chrono::milliseconds(3000)});
  SessionContext context{&config, &lookup, &locator, &limits, config.docker.spares > 0 ? &spares : nullptr, -1};
  GatewayServer server(context, std::move(listener), config.docker.gateway_socket);
  spdlog::info("listening on {} as {} (uid {}); nodes: {}", config.docker.gateway_socket, user.name, geteuid(),
               nodes.Names());
  // After the spares it fills; stopped before them.
  std::unique_ptr<Prewarmer> prewarmer;
  if (config.docker.prewarm && config.docker.spares > 0) {
    spdlog::info("prewarm: a spare in every running container, a round every {} s", config.docker.prewarm_every);
    prewarmer = std::make_unique<Prewarmer>(config, &locator, &spares);
  }
  Status served = server.Serve(signals.get());
  if (prewarmer) prewarmer->Stop();
  if (!served.ok()) return Fail(served.message());
  spares.Shutdown();
  return 0;
}

}  // namespace
}  // namespace allgo::gateway

int main(int argc, char** argv) { return allgo::gateway::Main(argc, argv); }
