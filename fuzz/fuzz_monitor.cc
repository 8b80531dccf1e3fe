// Any bytes as a message from the (untrusted) network child to the root monitor: every
// decoder must reject or accept without crashing, and what it accepts must re-encode to the
// same bytes (no field silently dropped or reinterpreted).
#include <cstddef>
#include <cstdint>
#include <string>

#include "monitor_protocol.h"

namespace {
template <typename Message>
void Check(const std::string& payload) {
  Message m;
  if (allgo::sshd::Decode(payload, &m).ok() && allgo::sshd::Encode(m) != payload) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string payload(reinterpret_cast<const char*>(data), size);
  allgo::sshd::MsgType type;
  (void)allgo::sshd::PeekType(payload, &type);
  Check<allgo::sshd::KeyQuery>(payload);
  Check<allgo::sshd::KeyAnswer>(payload);
  Check<allgo::sshd::SpawnRequest>(payload);
  Check<allgo::sshd::SpawnResult>(payload);
  Check<allgo::sshd::SignalRequest>(payload);
  Check<allgo::sshd::ExitedNotice>(payload);
  Check<allgo::sshd::SessionEnd>(payload);
  Check<allgo::sshd::OpenStreams>(payload);
  Check<allgo::sshd::StreamsResult>(payload);
  return 0;
}
