#include "request.h"

#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <string_view>

#include "allgo/bridge/io.h"

extern char** environ;

namespace allgo::bridge {

Open BuildRequest(bool login_shell, const std::string& command, bool pty) {
  Open req;
  req.login_shell = login_shell;
  req.command = command;
  req.pty = pty;
  for (char** e = environ; e && *e && req.env.size() < kMaxEnv; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name(entry.substr(0, eq));
    std::string value(entry.substr(eq + 1));
    if (!IsForwardableEnv(name) || value.size() > kMaxEnvValue) continue;
    req.env.emplace_back(name, value);
  }
  if (pty) {
    const char* term = getenv("TERM");
    req.term = term ? term : "dumb";
    struct winsize ws{};
    if (ioctl(0, TIOCGWINSZ, &ws) == 0) {
      req.window = {ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel};
    }
    struct termios tio;
    if (tcgetattr(0, &tio) == 0) req.modes = EncodeTermModes(tio);
  }
  // A terminal name or size we cannot pass on is not worth refusing the session for.
  if (!Validate(Message(req)).empty()) {
    req.term = "dumb";
    req.window = {};
  }
  return req;
}

}  // namespace allgo::bridge
