// allgo-authkeys: OpenSSH AuthorizedKeysCommand helper.
//
//   AuthorizedKeysCommand /usr/bin/allgo-authkeys %u %U
//   AuthorizedKeysCommandUser allgo-authkeys
//
// Prints one authorized_keys line per valid key of the accounts allowed to log in as the
// webapp USER, each prefixed with [authkeys] key_options. With UID (sshd's %U: the uid sshd
// got from NSS, possibly cached up to [nss] cache_ttl), the webapp row must still give that
// uid: two webapps whose names were swapped in between would otherwise let the owner of one
// in as the other's uid. A mismatch prints no key. sshd discards our stderr, so every
// message also goes to syslog (authpriv). Exit status: 0 with keys or with nothing for an
// unknown user; 1 when the answer is unknown (config or database problem) so sshd denies.
//
// Stock OpenSSH would forward from the frontend itself (its network reaches the database and
// the Docker API): the options printed must always turn forwarding off. key_options that do
// not are a config error here (--check says so too), whatever allgo-sshd makes of them.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <sys/types.h>

#include <cstdio>
#include <string>

#include "allgo/allowed_keys.h"
#include "allgo/config.h"
#include "allgo/database.h"
#include "allgo/directory.h"
#include "allgo/identity.h"
#include "allgo/key_options.h"
#include "allgo/logging.h"
#include "allgo/names.h"

namespace {

// sshd's %U: a decimal uid, nothing else.
bool ParseUid(const std::string& text, uid_t* out) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long long value = std::stoull(text);
  if (value > static_cast<uid_t>(-1)) return false;
  *out = static_cast<uid_t>(value);
  return true;
}

// The config, refused when its key_options would let OpenSSH forward.
allgo::Status LoadForOpenSsh(const std::string& path, allgo::Config* config) {
  allgo::Status s = allgo::LoadConfig(path, config);
  if (!s.ok()) return s;
  std::string problem = allgo::OpenSshForwardingProblem(config->authkeys.options);
  if (problem.empty()) return s;
  auto line = config->lines.find("authkeys.key_options");
  std::string where = path + (line == config->lines.end() ? "" : ":" + std::to_string(line->second));
  return allgo::Status::Invalid(where + ": [authkeys] key_options: \"" + config->authkeys.key_options + "\": " +
                                problem);
}

int Check(const std::string& config_flag) {
  std::string path = allgo::ResolveConfigPath(config_flag);
  allgo::Config config;
  allgo::Status s = LoadForOpenSsh(path, &config);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  std::printf("key_options = %s\n", config.authkeys.key_options.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%s: configuration OK\n", path.c_str());
  return 0;
}

int Run(const std::string& config_flag, const std::string& user, const std::string& uid_text) {
  uid_t sshd_uid = 0;
  if (!uid_text.empty() && !ParseUid(uid_text, &sshd_uid)) {
    spdlog::error("the uid argument '{}' is not a number (sshd's %U)", allgo::SanitizeForLog(uid_text, 32));
    return 1;
  }
  allgo::Config config;
  std::string path = allgo::ResolveConfigPath(config_flag);
  allgo::Status s = LoadForOpenSsh(path, &config);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  allgo::MysqlConnection connection(config.mysql);
  allgo::WebappDirectory directory(config, &connection);
  allgo::AllowedKeys allowed;
  s = allgo::LookupAllowedKeys(directory, user, &allowed);
  std::string safe_user = allgo::SanitizeForLog(user, 64);
  if (s.ok() && !uid_text.empty()) {
    const uid_t row_uid = allgo::AccountOf(config, allowed.webapp).uid;
    if (sshd_uid != row_uid) {
      // The name sshd resolved belongs to another uid now (a rename or a swap within
      // [nss] cache_ttl): printing its keys would let their owners in as sshd_uid.
      spdlog::error("no keys for '{}': sshd resolved it to uid {}, but webapp '{}' has uid {} in the database "
                    "(renamed since sshd's lookup?); refusing",
                    safe_user, sshd_uid, safe_user, row_uid);
      return 0;
    }
  }
  if (s.IsNotFound()) {
    // Also a webapp whose name or uid another account source owns (root, daemon, a local
    // user): it does not exist for allgo, so no key may log in as it (identity.h).
    spdlog::info("no keys for '{}': {}", safe_user, allgo::SanitizeForLog(s.message(), 200));
    return 0;
  }
  if (!s.ok()) {
    spdlog::error("cannot list keys for '{}': {}; check [mysql] in {}", safe_user, s.message(),
                  path);
    return 1;
  }
  for (const std::string& dropped : allowed.dropped) {
    spdlog::warn("webapp '{}': {}", safe_user, dropped);
  }
  // Built whole first: output is all or nothing.
  std::string out;
  for (const allgo::AllowedKey& k : allowed.keys) {
    if (k.key.had_options) {
      spdlog::info("webapp '{}': options pasted with key {} of user {} ignored", safe_user,
                   k.key.fingerprint, k.user_id);
    }
    out += allgo::FormatAuthorizedKeysLine(k.key, config.authkeys.key_options);
    out.push_back('\n');
  }
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
    spdlog::error("cannot write keys to stdout");
    return 1;
  }
  spdlog::info("webapp '{}': {} key(s) offered", safe_user, allowed.keys.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print the SSH keys allowed to log in as an allgo webapp "
               "(OpenSSH AuthorizedKeysCommand helper)."};
  app.set_version_flag("--version", std::string("allgo-authkeys ") + ALLGO_VERSION);
  std::string config_flag;
  std::string user;
  std::string log_level = "warn";
  app.add_option("--config", config_flag,
                 std::string("config file (default: $ALLGO_SSH_CONFIG, else ") +
                     allgo::DefaultConfigPath() + ")");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (default: warn)");
  bool check = false;
  app.add_flag("-t,--check", check, "validate the config for stock OpenSSH, print key_options, then exit 0 (ok) or 1");
  std::string uid;
  auto* user_option = app.add_option("USER", user, "webapp login name (sshd's %u)");
  app.add_option("UID", uid, "the uid sshd resolved USER to (sshd's %U): keys are printed only if the webapp "
                             "still has that uid");
  CLI11_PARSE(app, argc, argv);
  if (!check && user_option->count() == 0) {
    std::fprintf(stderr, "USER is required\n%s", app.help().c_str());
    return 2;
  }

  allgo::LogOptions log;
  log.program = "allgo-authkeys";
  log.level = log_level;
  log.to_syslog = true;
  allgo::Status s = allgo::SetupLogging(log);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return 2;
  }
  return check ? Check(config_flag) : Run(config_flag, user, uid);
}
