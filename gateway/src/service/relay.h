// The relay of one session once the exec runs: bytes only, never parsed.
//
//   client → exec stdin, unchanged (the bridge protocol's frames, EOF included, are the
//            client's business and the agent's)
//   exec stdout → client, unchanged; exec stderr (the agent's log) → AgentLog
//
// One thread, one poll() loop over the client socket, the exec stream and `stop`. Each side
// is written only when poll() says it can take bytes (the stream in chunks no bigger than
// what a writable socket always has room for), and each direction holds at most kMaxPending
// bytes: a side that stops reading stops the other direction, never the loop, so a slow or
// stuck client cannot block the agent's output and the reverse (the agent keeps its own flow
// control, docs/protocol.md "Stdio mode").
#pragma once

#include <cstdint>
#include <string>

#include "allgo/engine_client.h"
#include "allgo/stdcopy.h"
#include "service/agent_log.h"

namespace allgo::gateway {

struct RelayOptions {
  size_t stream_chunk = 16 * 1024;  // bytes per ExecStream::Write
  std::chrono::milliseconds io_timeout{10000};  // one Write to a writable stream
  std::chrono::milliseconds drain_timeout{10000};  // output left for a client after the exec ended
};

struct RelayResult {
  uint64_t to_exec = 0;      // client bytes written to the exec's stdin
  uint64_t to_client = 0;    // exec stdout bytes written to the client
  uint64_t stderr_bytes = 0;
  std::string ended;         // how: "the exec ended", "the client closed", ...
};

class Relay {
 public:
  static constexpr size_t kMaxPending = 256 * 1024;

  // `client` is a connected socket (made non-blocking here); `stop` an fd that becomes
  // readable when the gateway shuts down.
  Relay(int client, engine::ExecStream* stream, AgentLog* log, int stop, RelayOptions options)
      : client_(client), stream_(stream), log_(log), stop_(stop), options_(options) {}

  RelayResult Run();

 private:
  bool ReadClient(RelayResult* r);
  bool WriteStream(RelayResult* r);
  enum class StreamRead { kOk, kEnded, kFailed };
  StreamRead ReadStream(engine::StdcopyDemuxer* demux, RelayResult* r);
  bool WriteClient(RelayResult* r);
  void DrainToClient(RelayResult* r);

  int client_;
  engine::ExecStream* stream_;
  AgentLog* log_;
  int stop_;
  RelayOptions options_;
  std::string to_stream_;  // client bytes not yet written to the exec
  std::string to_client_;  // exec stdout not yet written to the client
  bool maybe_more_ = true;  // the stream may hold bytes poll() cannot see (TLS buffers)
};

}  // namespace allgo::gateway
