// allgo-sshd: the libssh-based SSH server of the allgo frontend (docs/architecture.md).
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "allgo/config.h"
#include "allgo/identity.h"
#include "allgo/logging.h"
#include "listener.h"
#include "privsep.h"
#include "server_keys.h"

#ifndef ALLGO_VERSION
#define ALLGO_VERSION "0.0.0"
#endif

namespace {

using allgo::Config;
using allgo::Status;

// Sandboxes write in their bridge folders: on the frontend nothing there may work as a device
// node, a setuid program or an executable (docs/install.md, section 5). A warning, not an
// error: the frontend works without it, and a missing folder is the controller's to create.
void WarnAboutSandboxMount(const Config& config) {
  struct statvfs vfs;
  if (statvfs(config.sandbox.dir.c_str(), &vfs) != 0) return;
  std::string missing;
  for (auto [flag, name] : {std::pair{ST_NOSUID, "nosuid"}, std::pair{ST_NODEV, "nodev"}, std::pair{ST_NOEXEC, "noexec"}}) {
    if ((vfs.f_flag & flag) == 0) missing += missing.empty() ? name : std::string(",") + name;
  }
  if (missing.empty()) return;
  std::fprintf(stderr,
               "allgo-sshd: warning: [sandbox] dir %s is not mounted %s; mount it nosuid,nodev,noexec "
               "(docs/install.md, section 5)\n",
               config.sandbox.dir.c_str(), missing.c_str());
}

// --check: like `sshd -t`, everything that can be validated without serving.
int Check(const Config& config) {
  allgo::sshd::UniqueBind bind;
  std::vector<std::string> summary;
  Status st = allgo::sshd::MakeServerBind(config, &bind, &summary);
  allgo::sshd::ServiceUsers users;
  if (st.ok()) st = allgo::sshd::ResolveServiceUsers(config, &users);
  if (st.ok() && access(config.sshd.privsep_chroot.c_str(), F_OK) == 0) {
    st = allgo::sshd::EnsurePrivsepChroot(config.sshd.privsep_chroot);
  }
  std::string banner;
  if (st.ok()) st = allgo::sshd::ReadBanner(config, &banner);
  if (st.ok() && !config.sshd.authorized_keys_command.empty() && config.sshd.authorized_keys_command[0] != '/') {
    st = Status::Invalid(config.path + ": [sshd] authorized_keys_command must start with an absolute path");
  }
  if (!st.ok()) {
    std::fprintf(stderr, "allgo-sshd: %s\n", st.ToString().c_str());
    return 1;
  }
  for (const auto& line : summary) std::fprintf(stderr, "host key %s\n", line.c_str());
  WarnAboutSandboxMount(config);
  // The effective algorithm lists, like `sshd -T` (stdout, one `key = list` per line).
  allgo::sshd::AlgorithmPolicy policy;
  if (!allgo::sshd::ResolveAlgorithmPolicy(config, &policy).ok()) return 1;  // MakeServerBind checked it
  std::printf("libssh = %s\n", allgo::sshd::LinkedLibsshVersion().c_str());
  for (auto kind : allgo::sshd::AllAlgorithmKinds()) {
    std::printf("%s = %s\n", allgo::sshd::AlgorithmKey(kind), policy.Get(kind).c_str());
  }
  // The forwarding policy before any key's options (docs/forwarding.md).
  const allgo::SshdConfig& sshd = config.sshd;
  std::printf("allow_tcp_forwarding = %s\n", allgo::ForwardDirectionsName(sshd.allow_tcp_forwarding));
  std::printf("allow_stream_local_forwarding = %s\n", allgo::ForwardDirectionsName(sshd.allow_stream_local_forwarding));
  std::printf("allow_agent_forwarding = %s\n", sshd.allow_agent_forwarding ? "yes" : "no");
  std::printf("permit_open = %s\n", allgo::FormatPermitList(sshd.permit_open).c_str());
  std::printf("permit_listen = %s\n", allgo::FormatPermitList(sshd.permit_listen).c_str());
  std::printf("gateway_ports = %s\n", allgo::GatewayPortsName(sshd.gateway_ports));
  std::printf("max_forwards = %u\nmax_listeners = %u\n", sshd.max_forwards, sshd.max_listeners);
  std::printf("key_options = %s\n", config.authkeys.key_options_set ? config.authkeys.key_options.c_str() : "(not set: none)");
  std::fflush(stdout);
  std::fprintf(stderr, "%s: configuration OK\n", config.path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // allgo-sshd reads webapps from the database itself, never through the allgo NSS module:
  // asked from here (say for a service user, were `allgo` listed before `files`), the module
  // would load the config and open a connection in the listener, and every network child
  // would inherit the password in both (issue 18). Sessions and the key helper get
  // environments of their own, without this variable.
  setenv(allgo::kNssBypassVariable, "1", 1);
  CLI::App app{"allgo-sshd: SSH server of the allgo frontend (publickey only; webapps as users)"};
  std::string config_flag;
  std::string log_level;
  bool check = false;
  app.add_option("-c,--config", config_flag, "config file (default: $ALLGO_SSH_CONFIG or " +
                                                  std::string(allgo::DefaultConfigPath()) + ")");
  app.add_flag("-t,--check", check, "validate the config and host keys, then exit 0 (ok) or 1");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (default: [sshd] log_level)");
  app.set_version_flag("-V,--version", std::string("allgo-sshd ") + ALLGO_VERSION);
  CLI11_PARSE(app, argc, argv);

  std::string path = allgo::ResolveConfigPath(config_flag);
  Config config;
  Status st = allgo::LoadConfig(path, &config);
  if (!st.ok()) {
    std::fprintf(stderr, "allgo-sshd: %s\n", st.ToString().c_str());
    return 1;
  }
  if (config.path.empty()) config.path = path;
  allgo::LogOptions log_options;
  log_options.program = "allgo-sshd";
  log_options.level = log_level.empty() ? config.sshd.log_level : log_level;
  st = allgo::SetupLogging(log_options);
  if (!st.ok()) {
    std::fprintf(stderr, "allgo-sshd: %s\n", st.ToString().c_str());
    return 1;
  }
  if (check) return Check(config);
  if (geteuid() != 0) {
    std::fprintf(stderr, "allgo-sshd: must run as root (it drops privileges per connection)\n");
    return 1;
  }
  allgo::sshd::Listener listener(path, std::move(config));
  allgo::ScrubSecrets(&config);  // the listener holds the one copy
  st = listener.Init();
  if (!st.ok()) {
    spdlog::critical("{}", st.ToString());
    return 1;
  }
  spdlog::info("allgo-sshd {} ready (config {})", ALLGO_VERSION, path);
  return listener.Run();
}
