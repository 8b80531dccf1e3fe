// The HOME of a session inside the sandbox.
//
// Developer tools install themselves in the user's home: VS Code Remote-SSH in ~/.vscode-server,
// JetBrains Gateway in ~/.cache/JetBrains, Jupyter its runtime files in ~/.local/share/jupyter.
// The agent's own HOME (from the image's /etc/passwd through `docker exec`, "/" for a uid the
// image does not know, the read-only root of a bubblewrap sandbox) is often not writable by
// the uid that runs the sessions. Those sessions then get a private folder the agent makes
// INSIDE the sandbox, /tmp/allgo-home-<uid>: never anything on the frontend, one per uid (a
// sandbox serves one webapp), kept for the sandbox's life so a tool installed once stays.
//
// /tmp is shared with every uid of the sandbox, so the folder is trusted only when it is what
// the agent would have made: a real folder (a symlink is seen, never followed), owned by the
// session's uid, writable by nobody else, in a /tmp where nobody but root and that uid may
// remove or rename it (sticky, or writable by its owner only). Anything else planted under
// that name (a symlink to another user's folder, a folder another uid prepared with a tool
// binary inside) is refused: the session keeps the agent's HOME, and the agent says why in
// its log.
#pragma once

#include <sys/types.h>

#include <string>

namespace allgo::bridge {

// The HOME sessions get when `agent_home` (the agent's HOME, may be null) is not an absolute
// path to a folder this process may write: "/tmp/allgo-home-<euid>".
std::string PrivateHomePath(uid_t uid);

// `agent_home` when it is an absolute path to a folder this process may write and enter;
// else PrivateHomePath(geteuid()), made 0700 when missing and accepted only as described
// above; else `agent_home` ("" for null) with *refusal saying why the private folder was not used.
std::string SessionHome(const char* agent_home, std::string* refusal);

}  // namespace allgo::bridge
