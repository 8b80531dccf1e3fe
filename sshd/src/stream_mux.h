// The network child's end of one connection's forwards: a bridge protocol version 3 (stream
// mode) connection to the agent inside the webapp's sandbox (docs/protocol.md "Version 3:
// streams", docs/forwarding.md). Every forward of the SSH connection is one stream on it.
//
// The socket comes from the monitor (OpenStreams): it was connected by a process running as
// the webapp (the carrier, `allgo-shell --streams`), so the agent and the gateway see the
// webapp's uid; this process never connects anywhere itself (it cannot: seccomp).
//
// Threading and re-entrancy: single-threaded. Dispatch() only moves bytes into the stream
// sinks' buffers and changes their state; it never calls libssh, so it may run from inside a
// libssh callback (WaitForAnswer does, while a direct-tcpip open waits for the agent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "allgo/bridge/byte_queue.h"
#include "allgo/bridge/protocol.h"
#include "allgo/status.h"
#include "allgo/unique_fd.h"

namespace allgo::sshd {

// What one stream of the mux reports to (a ForwardChannel).
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // stream-accept (window: bytes we may send) or stream-refuse (text).
  virtual void OnAccepted(uint32_t window) = 0;
  virtual void OnRefused(bridge::RefuseReason reason, const std::string& text) = 0;
  // Bytes for the SSH side. False when they exceed the window we granted (protocol error).
  virtual bool OnData(std::string_view bytes) = 0;
  virtual void OnWindow(uint32_t increment) = 0;
  virtual void OnEof() = 0;
  virtual void OnClose() = 0;
};

// What the mux reports that concerns no existing stream: a connection arrived on one of our
// listeners (the agent opened a stream), or a listener's result.
class StreamMuxOwner {
 public:
  virtual ~StreamMuxOwner() = default;
  virtual void OnIncoming(const bridge::StreamOpen& open) = 0;
  virtual void OnListenResult(const bridge::ListenResult& result) = 0;
};

class StreamMux {
 public:
  // Bytes we grant the agent per stream, and queued output above which channels stop reading.
  static constexpr uint32_t kWindow = 256 * 1024;
  static constexpr size_t kMaxQueued = 1024 * 1024;

  StreamMux(UniqueFd sock, StreamMuxOwner* owner);
  StreamMux(const StreamMux&) = delete;
  StreamMux& operator=(const StreamMux&) = delete;

  int fd() const { return sock_.get(); }
  // Sends `hello` and waits (at most timeout_ms) for the agent's. An older agent's refusal
  // becomes "the agent in this sandbox is too old for forwarding (...); " + `upgrade` (what
  // the operator does about it, which depends on the sandbox backend).
  Status Handshake(int timeout_ms, const std::string& upgrade);

  // A new client-side stream id (odd), or 0 when 256 streams are open.
  uint32_t NewStreamId();
  void Attach(uint32_t id, StreamSink* sink) { sinks_[id] = sink; }
  void Detach(uint32_t id) { sinks_.erase(id); }
  size_t streams() const { return sinks_.size(); }

  void Send(const bridge::Message& message);
  // A stream-data frame without a copy through Message.
  void SendData(uint32_t id, const char* data, size_t n);
  bool Congested() const { return out_.size() >= kMaxQueued; }
  bool WantsWrite() const { return !out_.empty(); }

  // Reads what the socket has and dispatches every whole frame; false once the connection is
  // gone or broken (error() says why).
  bool OnReadable();
  // Writes queued output; false once the connection is gone.
  bool Flush();
  // Blocks (poll) until `done()` holds or timeout_ms passed, reading, dispatching and
  // flushing meanwhile. False on timeout or a broken connection.
  bool WaitUntil(const std::function<bool()>& done, int timeout_ms);

  // The owner found the agent breaking the protocol: the connection is done.
  void Break(std::string why) { Fail(std::move(why)); }
  bool broken() const { return broken_; }
  const std::string& error() const { return error_; }

 private:
  bool Dispatch(bridge::Message& message);
  bool Fail(std::string why);

  UniqueFd sock_;
  StreamMuxOwner* owner_;
  bridge::FrameReader reader_{bridge::Mode::kStream};
  bridge::ByteQueue out_;
  std::map<uint32_t, StreamSink*> sinks_;
  uint32_t next_id_ = 1;
  bool hello_ = false;
  bool broken_ = false;
  std::string error_;
};

}  // namespace allgo::sshd
