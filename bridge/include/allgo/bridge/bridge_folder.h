// What is acceptable in a bridge folder, as allgo-sandbox-agent and allgo-shell both check it
// (library allgo_bridge_io; docs/bridge.md "What both sides accept"). One definition, so the
// two sides can never disagree about a folder one of them would serve and the other refuse.
//
// And how to open what is found there: by an O_PATH handle first (no side effect on whatever
// it is: a device node, a fifo someone else waits on), checked, then reopened through
// /proc/self/fd so the file opened is the very inode that was checked.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <string>

#include "allgo/unique_fd.h"

namespace allgo::bridge {

// Modes the agent creates a session with (its umask is 077); the client accepts nothing looser.
constexpr mode_t kSessionFolderMode = 0700;
constexpr mode_t kSessionPipeMode = 0600;

// "a directory", "a symlink", "a character device", ... for messages.
const char* FileKind(mode_t mode);

// Each returns "" when acceptable, else why not (naming `what`), for the user or the operator.
//
// <[sandbox] dir>/<webapp>: a directory owned by root or by the webapp's uid, writable by its
// owner only (a group- or world-writable folder, sticky or not, would let others plant or
// replace agent.sock and the session folders).
std::string BridgeFolderProblem(const struct stat& st, uid_t webapp_uid, const std::string& what);
// DIR/agent.sock: a socket owned by root or by the webapp's uid (the agent gives it to the
// webapp; an agent that runs as the webapp owns it anyway).
std::string AgentSocketProblem(const struct stat& st, uid_t webapp_uid, const std::string& what);
// DIR/s-<hex>, once handed over: a directory owned by the client, nothing for group or others.
std::string SessionFolderProblem(const struct stat& st, uid_t client_uid, const std::string& what);
// DIR/s-<hex>/{in,out,err}: a fifo owned by the client, nothing for group or others.
std::string SessionPipeProblem(const struct stat& st, uid_t client_uid, const std::string& what);
// A program of the toolbox (the read-only folder that carries the agent into every sandbox,
// e.g. allgo-sftp-server), before the agent runs it: a regular file (not a symlink) owned by
// root, executable, writable by nobody else (a file others could rewrite would run their code
// in every session that asks for it).
std::string ToolboxProgramProblem(const struct stat& st, const std::string& what);

// Opens dir/name for `flags` (O_RDONLY, O_WRONLY, O_RDWR, plus e.g. O_NONBLOCK) without
// opening anything that `check` refuses: the name is first taken with O_PATH | O_NOFOLLOW
// (a symlink is seen as one, never followed), `check` gets its fstat ("" = acceptable, else
// why not), and only then is the same inode opened through /proc/self/fd/N, always with
// O_NOCTTY | O_CLOEXEC. Without /proc (some containers), the name is opened again with
// O_NOFOLLOW and must still be the inode that was checked.
// On failure: an invalid fd, and *problem says why (check's text, or what failed with errno).
UniqueFd OpenChecked(int dir, const std::string& name, int flags,
                     const std::function<std::string(const struct stat&)>& check, std::string* problem);

// The path that reaches the file behind `fd` (an O_PATH handle works): "/proc/self/fd/N".
std::string ProcFdPath(int fd);

}  // namespace allgo::bridge
