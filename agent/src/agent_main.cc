// allgo-sandbox-agent: serves allgo-shell sessions inside a sandbox (docs/bridge.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "agent.h"
#include "log.h"
#include "stdio_session.h"

#ifndef ALLGO_VERSION
#define ALLGO_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace allgo::bridge;
  CLI::App app{
      "allgo-sandbox-agent: runs inside an allgo sandbox and serves allgo-shell sessions on "
      "DIR/agent.sock (commands through /bin/sh -c, interactive login shells on a pty), and "
      "SSH forwards into the sandbox (protocol version 3)."};
  app.set_version_flag("--version", std::string("allgo-sandbox-agent ") + ALLGO_VERSION);
  AgentOptions options;
  std::string level = "info";
  long long allow_uid = -1;
  // --stdio serves one session on stdin/stdout and needs no bridge folder; otherwise the
  // folder is required (decided before parsing so CLI11 still names the missing option).
  bool stdio = false;
  for (int i = 1; i < argc; ++i) stdio = stdio || std::string(argv[i]) == "--stdio";
  auto* dir = app.add_option("--bridge-dir", options.bridge_dir,
                             "the sandbox's bridge folder (<[sandbox] dir>/<webapp>/ on the frontend)");
  if (!stdio) dir->required();
  app.add_flag("--stdio", stdio,
               "serve one session over stdin/stdout instead (the stdio mode of docs/protocol.md, for "
               "a relay with one byte stream such as a Docker exec), or the forwards of one SSH "
               "connection when the client speaks protocol version 3; logs go to stderr")
      ->excludes(dir);
  app.add_option("--allow-uid", allow_uid,
                 "the uid allowed to open sessions (root always may); default: the owner of DIR")
      ->check(CLI::Range(0LL, 4294967294LL));
  app.add_option("--max-sessions", options.max_sessions, "concurrent connections served")
      ->check(CLI::Range(1, 100000));
  int handshake_timeout = 10;
  app.add_option("--handshake-timeout", handshake_timeout,
                 "seconds a client has to complete the session handshake")
      ->check(CLI::Range(1, 3600));
  app.add_option("--log-level", level, "debug, info, warn or error");
  CLI11_PARSE(app, argc, argv);

  LogLevel parsed;
  if (!ParseLogLevel(level.c_str(), &parsed)) {
    std::fprintf(stderr, "allgo-sandbox-agent: --log-level: unknown level '%s' (debug, info, warn, error)\n",
                 level.c_str());
    return 2;
  }
  SetLogLevel(parsed);
  options.handshake_timeout_ms = handshake_timeout * 1000;
  if (allow_uid >= 0) {
    options.allow_uid_set = true;
    options.allow_uid = static_cast<uid_t>(allow_uid);
  }
  if (stdio) {
    StdioOptions stdio_options;
    stdio_options.handshake_timeout_ms = options.handshake_timeout_ms;
    return ServeStdio(stdio_options);
  }
  Agent agent;
  std::string error = agent.Start(options);
  if (!error.empty()) {
    Log(LogLevel::kError, "%s", error.c_str());
    return 1;
  }
  return agent.Run();
}
