// The relay of one session once the exec runs: bytes only, never parsed.
//
//   client → exec stdin, unchanged (the bridge protocol's frames, EOF included, are the
//            client's business and the agent's)
//   exec stdout → client, unchanged; exec stderr (the agent's log) → AgentLog, bounded: past
//            AgentLog's byte bound the relay ends the session, with one `error` frame to the
//            client when its stream stands at a frame boundary (it does unless the agent was
//            mid-frame), so allgo-shell prints why
//
// One thread, one poll() loop over the client socket, the exec stream and `stop`. Each side
// is written only when poll() says it can take bytes (the stream in chunks no bigger than
// what a writable socket always has room for: StreamChunkFor), and each direction holds at
// most kMaxPending bytes (the client is read while less waits for the exec, so the next
// write is ready as soon as the stream can take it): a side that stops reading stops the other direction, never the loop, so a slow or
// stuck client cannot block the agent's output and the reverse (the agent keeps its own flow
// control, docs/protocol.md "Stdio mode").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "allgo/bridge/byte_queue.h"

#include "allgo/engine_client.h"
#include "allgo/stdcopy.h"
#include "service/agent_log.h"

namespace allgo::gateway {

struct RelayOptions {
  size_t stream_chunk = 16 * 1024;  // bytes per ExecStream::Write: StreamChunkFor(the stream)
  std::chrono::milliseconds io_timeout{10000};  // one Write to a writable stream
  std::chrono::milliseconds drain_timeout{10000};  // output left for a client after the exec ended
};

struct RelayResult {
  uint64_t to_exec = 0;      // client bytes written to the exec's stdin
  uint64_t to_client = 0;    // exec stdout bytes written to the client
  uint64_t stderr_bytes = 0;
  bool agent_log_over = false;  // ended because the agent's log went past its bound
  std::string ended;         // how: "the exec ended", "the client closed", ...
};

// Prepares the exec stream's socket for the relay and says how many bytes one
// ExecStream::Write may carry so that it never waits on a socket poll() called writable.
// Whether a byte stream of frames (4-byte big-endian body length, then the body) stands at a
// frame boundary: only the lengths are read, never a body.
class FrameBoundary {
 public:
  void Advance(std::string_view bytes);
  bool at_boundary() const { return header_got_ == 0 && body_left_ == 0; }

 private:
  unsigned char header_[4] = {};
  size_t header_got_ = 0;
  uint64_t body_left_ = 0;
};

// A TCP socket is writable once a third of its send buffer is free; the kernel's initial
// 16 KiB (autotuned later) would allow only ~4 KiB. So TCP gets a fixed send buffer of
// kTcpSendBuffer (the kernel may cap it at net.core.wmem_max) and the chunk is a quarter of
// what the kernel granted, in whole 16 KiB TLS records, at most 64 KiB. A unix socket always
// has room for 32 KiB once writable.
size_t StreamChunkFor(int fd);

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
  enum class StreamRead { kOk, kEnded, kFailed, kAgentLogOver };
  StreamRead ReadStream(engine::StdcopyDemuxer* demux, RelayResult* r);
  bool WriteClient(RelayResult* r);
  void DrainToClient(RelayResult* r);
  void EndForAgentLog(RelayResult* r);

  int client_;
  engine::ExecStream* stream_;
  AgentLog* log_;
  int stop_;
  RelayOptions options_;
  bridge::ByteQueue to_stream_;  // client bytes not yet written to the exec
  bridge::ByteQueue to_client_;  // exec stdout not yet written to the client
  FrameBoundary to_client_frames_;  // of every byte queued for the client so far
  std::unique_ptr<char[]> chunk_;  // what one ReadAvailable brings, before the demuxer
  bool client_closed_ = false;  // the client sent EOF; to_stream_ is still being written
  bool maybe_more_ = true;  // the stream may hold bytes poll() cannot see (TLS buffers)
};

}  // namespace allgo::gateway
