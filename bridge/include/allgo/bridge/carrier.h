// The one answer of `allgo-shell --streams` (the carrier, docs/architecture.md) to the
// allgo-sshd monitor that started it, on its stdout (a unix SOCK_SEQPACKET socket): one
// record, either "ok" carrying exactly one descriptor (SCM_RIGHTS) — a socket connected, as
// the webapp, to its sandbox's agent (bridge) or to the sandbox gateway (docker), on which
// nothing was sent — or "error: TEXT" (one line for the user, no descriptor).
#pragma once

#include <cstddef>

namespace allgo::bridge {

inline constexpr char kCarrierOk[] = "ok";
inline constexpr char kCarrierErrorPrefix[] = "error: ";
inline constexpr size_t kMaxCarrierRecord = 1024;

}  // namespace allgo::bridge
