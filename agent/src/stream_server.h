// The stream mode of the agent (docs/protocol.md "Version 3: streams"): one connection from
// the frontend carries every forward of one SSH connection, and the agent makes each of them
// a socket INSIDE the sandbox (its network namespace, its file system, its user): a TCP or
// unix connect for ssh -L/-D/-W, a listener for ssh -R, a private agent socket for ssh -A.
//
// One StreamServer serves one connection (an agent.sock connection handed to a forked child,
// or the agent's own stdin/stdout under --stdio) in a single-threaded poll() loop. Every fd is
// non-blocking and every buffer is bounded:
//   - bytes to a sandbox socket wait in that stream's queue, which never exceeds the window
//     the agent granted (256 KiB): more is a protocol error;
//   - a sandbox socket is read only while the client's window for it is open and less than
//     1 MiB of frames wait for the client, so a client that stops granting or reading stalls
//     the sandbox service (as a full socket would), and nothing grows;
//   - at most 256 streams and 64 listeners; a connect has 10 s.
// A protocol error gets one `error` frame and the end of the connection. When the connection
// ends, for whatever reason, every socket closes and every unix listener's file and agent
// socket folder is removed: nothing outlives it.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "allgo/bridge/byte_queue.h"
#include "allgo/bridge/protocol.h"
#include "allgo/unique_fd.h"

namespace allgo::bridge {

struct StreamServerOptions {
  int in = 0;   // frames from the client
  int out = 1;  // frames to the client (the same fd as `in` for a socket)
  // Bytes already read from `in` (the `hello` and whatever followed it), served first: the
  // caller that peeked at the version hands them over so that nothing is lost.
  std::string initial;
  std::string name = "streams";  // prefix of the log lines
  int connect_timeout_ms = 10000;
  uint32_t window = 256 * 1024;             // granted per stream (stream-accept / stream-open)
  std::string hosts_file = "/etc/hosts";
  std::string agent_socket_parent = "/tmp";  // where ssh -A's private folders go
};

// Whether the first frame buffered in `reader` (nothing consumed yet) is a version 3 `hello`:
// how agent.sock and --stdio tell a stream-mode client, whose bytes (reader.Unread()) then
// go to a StreamServer as StreamServerOptions::initial. False until enough has arrived.
bool StartsStreamMode(const FrameReader& reader);

class StreamServer {
 public:
  explicit StreamServer(StreamServerOptions options);
  ~StreamServer();
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  // Serves until the client closes the connection (0), a protocol error (1, after an
  // `error`), or SIGTERM/SIGINT/SIGHUP (0). Everything is cleaned up when it returns.
  int Run();

  static constexpr size_t kMaxStreams = 256;
  static constexpr size_t kMaxListeners = 64;
  static constexpr size_t kMaxQueuedOutput = 1024 * 1024;
  // Frames one read of a sandbox socket fills at most (per stream and poll round: one busy
  // stream cannot starve the others), and stream-data frames sent to a socket in one sendmsg.
  static constexpr size_t kReadFrames = 4;
  static constexpr size_t kBatchFrames = 8;

 private:
  struct Stream;
  struct Listener;

  void ReadInput();
  void ParseInput();
  void Handle(Message& message);
  void HandleData(uint32_t id, std::string_view bytes);
  void SendBatch();
  void HandleOpen(const StreamOpen& open);
  void HandleAccept(const StreamAccept& accept);
  void HandleRefuse(const StreamRefuse& refuse);
  void HandleWindow(const StreamWindow& window);
  void HandleEof(uint32_t id);
  void HandleClose(uint32_t id);
  void HandleListen(const Listen& listen);
  void HandleUnlisten(uint32_t id);

  void TryConnect(Stream& s);
  void OnConnectDone(Stream& s);
  void OnConnected(Stream& s);
  void Refuse(uint32_t id, RefuseReason reason, const std::string& text);
  void AcceptOn(Listener& l);
  void ReadSocket(Stream& s);
  void WriteSocket(Stream& s);
  void Consumed(Stream& s, size_t n);
  void MaybeFinish(Stream& s);
  void CloseStream(Stream& s, const char* why);
  void CheckDeadlines();
  int NextTimeoutMs() const;

  void Queue(const Message& message);
  void Flush();
  void Fail(const std::string& why);
  void End(const char* why);
  void DrainSignals();
  Stream* Find(uint32_t id);
  uint32_t NextAgentId();

  StreamServerOptions options_;
  UniqueFd signals_;
  FrameReader reader_{Mode::kStream};
  ByteQueue out_;
  // Consecutive stream-data frames of one stream from the current read (ParseInput).
  iovec batch_[kBatchFrames];
  size_t batch_count_ = 0;
  uint32_t batch_id_ = 0;
  bool hello_ = false;
  bool ended_ = false;
  int status_ = 0;
  uint32_t next_even_ = 2;
  uint64_t serial_ = 0;
  int64_t accept_paused_until_ = 0;
  std::map<uint32_t, std::unique_ptr<Stream>> streams_;
  std::map<uint32_t, std::unique_ptr<Listener>> listeners_;
};

}  // namespace allgo::bridge
