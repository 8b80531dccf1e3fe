// One forwarded SSH channel ⇄ one stream of the StreamMux (docs/forwarding.md).
//
//   direct      direct-tcpip (ssh -L, -D, -W) or direct-streamlocal@openssh.com (ssh -L
//               PORT:/path.sock) from the client: the stream was opened and accepted by the
//               agent before the channel was (NetSession::OnMessage).
//   forwarded   a connection to a listener inside the sandbox (-R port or -R /path.sock) or
//               to the session's agent socket (-A): the agent opened the stream; we open the
//               channel to the client (forwarded-tcpip / forwarded-streamlocal@openssh.com /
//               auth-agent@openssh.com) and accept or refuse the stream.
//
// Flow control both ways, nothing unbounded: bytes from the client are read from libssh only
// while the agent's window for the stream is open and the mux is not congested (so the
// client's SSH window closes behind them); bytes from the agent are accepted up to the window
// we granted (StreamMux::kWindow) and granted again only as the client's SSH window takes them.
#pragma once

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "allgo/bridge/byte_queue.h"
#include "allgo/bridge/protocol.h"
#include "monitor_protocol.h"
#include "stream_mux.h"

namespace allgo::sshd {

// What ended a forward and what it moved: one log line (and audit line) per forward.
struct ForwardRecord {
  ForwardKindCode kind = ForwardKindCode::kDirectTcpip;  // named by ForwardKindName
  std::string target;  // host:port, the listener's address:port, a socket path, or the agent socket
  std::string origin;  // the originator, as reported
  uint64_t bytes_in = 0;   // client → sandbox
  uint64_t bytes_out = 0;  // sandbox → client
  double seconds = 0;
  std::string result;  // "closed", "refused: ...", "error: ..."
};

class ForwardChannel : public StreamSink {
 public:
  enum class Kind { kDirect, kDirectUnix, kForwardedTcp, kForwardedUnix, kAuthAgent };

  // A direct stream (kDirect, kDirectUnix): the stream-open is sent by the caller right
  // after; the channel is attached (Connect) once the agent accepted the stream, which also
  // delivers the bytes the sandbox service may have sent before that.
  ForwardChannel(StreamMux* mux, ssh_session session, Kind kind, uint32_t id, std::string target, std::string origin);
  // A stream the agent opened: the channel to the client is opened by Pump.
  ForwardChannel(StreamMux* mux, ssh_session session, const bridge::StreamOpen& open, Kind kind);
  ~ForwardChannel() override;
  ForwardChannel(const ForwardChannel&) = delete;
  ForwardChannel& operator=(const ForwardChannel&) = delete;

  uint32_t id() const { return id_; }
  bool done() const { return done_; }
  // Direct streams: the agent's answer arrived (accepted() or refused, with result()).
  bool answered() const { return accepted_ || agent_closed_; }
  bool accepted() const { return accepted_; }
  // Direct streams: the client's channel, once the agent accepted.
  void Connect(ssh_channel channel) { channel_ = channel; }
  // Moves data and advances the state machine; `buffer` is scratch space of kMaxData bytes.
  // Returns true when it moved any byte (the idle clock).
  bool Pump(char* buffer);
  // Ends it from our side (connection closing).
  void Abort(const char* why);
  const ForwardRecord& record() const { return record_; }

  // StreamSink
  void OnAccepted(uint32_t window) override;
  void OnRefused(bridge::RefuseReason reason, const std::string& text) override;
  bool OnData(std::string_view bytes) override;
  void OnWindow(uint32_t increment) override;
  void OnEof() override { agent_eof_ = true; }
  void OnClose() override { agent_closed_ = true; }

 private:
  bool direct() const { return kind_ == Kind::kDirect || kind_ == Kind::kDirectUnix; }
  void OpenToClient();
  int OpenChannel();
  bool ClientToAgent(char* buffer);
  bool AgentToClient();
  void Finish(const std::string& result);
  void SendClose();
  // The result of a forward whose channel read or write failed.
  std::string ChannelErrorResult() const;

  StreamMux* mux_;
  ssh_session session_;
  ssh_channel channel_ = nullptr;
  uint32_t id_;
  Kind kind_;
  bridge::StreamOpen incoming_;  // forwarded: what the agent asked for
  bool accepted_ = false;        // direct: the agent connected the stream
  bool opening_ = false;         // forwarded: the channel to the client is not open yet
  uint32_t send_window_ = 0;     // bytes the agent still accepts on this stream
  uint32_t granted_unused_ = 0;  // bytes the agent may still send us (what we granted)
  uint32_t consumed_ = 0;        // bytes handed to the client since the last stream-window
  bridge::ByteQueue pending_;    // from the agent, not yet taken by the client's window
  bool agent_eof_ = false, agent_closed_ = false;
  bool client_eof_sent_ = false;  // we sent the channel EOF to the client
  bool stream_eof_sent_ = false;  // we sent stream-eof to the agent
  bool close_sent_ = false;
  bool done_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  ForwardRecord record_;
};

}  // namespace allgo::sshd
