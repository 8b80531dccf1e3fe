// How allgo-shell finds its webapp and reaches its sandbox's agent, shared by a session
// (shell_main.cc) and the carrier of forwards (streams_carrier.cc): the same uid rule, the
// same name, the same bridge folder checks (agent_client.h), the same wait for a sandbox that
// is starting, the same one-line messages.
#pragma once

#include <string>

#include "allgo/config.h"
#include "allgo/status.h"
#include "agent_client.h"

namespace allgo::bridge {

// The webapp this process serves: refused for root and for a uid outside [nss]
// min_uid..max_uid; the name from the bridge folder ($USER, proved by ownership) or getpwuid.
// The message is for the user.
Status ResolveWebapp(const Config& config, std::string* name);

// [sandbox] backend = bridge: connects to <sandbox dir>/<name>/agent.sock. When nothing
// answers, the database says why (allgo-shell-state); a sandbox that is starting is waited
// for up to [sandbox] start_wait (one "starting" line on stderr). The error is the one line
// the user sees ("the sandbox of 'W' is not running (state: idle); ..."); *signo is set when
// a signal from `signals` (a signalfd) ended the wait.
Status ConnectSandboxAgent(const Config& config, const std::string& name, int signals, AgentConnection* conn,
                           int* signo);

}  // namespace allgo::bridge
