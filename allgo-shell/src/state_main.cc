// allgo-shell-state: prints the sandbox state of the calling uid's webapp, from the database.
//
// allgo-shell runs this only when the sandbox agent does not answer (to tell "starting" from
// "stopped"). Keeping the database client here keeps libmariadb, and the libssl/libcrypto it
// loads, out of every idle login shell: their relocations alone cost each allgo-shell ~0.5 MiB
// of private memory (docs/decisions.md). It runs as the webapp, like allgo-shell.
//
// Output: the state and exit 0, or one line saying what failed and exit 1 (both on stdout,
// which allgo-shell reads).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "allgo/config.h"
#include "allgo/database.h"
#include "allgo/directory.h"

int main(int argc, char** argv) {
  CLI::App app{"allgo-shell-state: the sandbox state of this uid's webapp, for allgo-shell"};
  app.set_version_flag("--version", std::string("allgo-shell-state ") + ALLGO_VERSION);
  std::string config_path;
  app.add_option("--config", config_path, "config file (default: $ALLGO_SSH_CONFIG or " +
                                              std::string(allgo::DefaultConfigPath()) + ")");
  CLI11_PARSE(app, argc, argv);
  allgo::Config config;
  std::string path = allgo::ResolveConfigPath(config_path);
  if (allgo::Status s = allgo::LoadConfig(path, &config, allgo::PasswordFile::kIfReadable); !s.ok()) {
    std::printf("%s\n", s.ToString().c_str());
    return 1;
  }
  if (!config.mysql.password_error.empty()) {
    std::printf("the database is not readable from this session: %s\n", config.mysql.password_error.c_str());
    return 1;
  }
  allgo::MysqlConnection connection(config.mysql);
  allgo::WebappDirectory directory(config, &connection);
  allgo::Webapp webapp;
  if (allgo::Status s = directory.FindByUid(getuid(), &webapp); !s.ok()) {
    std::printf("%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("%s\n", webapp.sandbox_state.c_str());
  return 0;
}
