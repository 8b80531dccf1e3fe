#include "service/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>

#include <chrono>

#include "allgo/stdcopy.h"
#include "service/refusals.h"

namespace allgo::gateway {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kTcpSendBuffer = 1 << 20;
constexpr size_t kTlsRecord = 16 * 1024;
constexpr size_t kMaxStreamChunk = 64 * 1024;

}  // namespace

void FrameBoundary::Advance(std::string_view bytes) {
  while (!bytes.empty()) {
    if (body_left_ > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(body_left_, bytes.size()));
      body_left_ -= n;
      bytes.remove_prefix(n);
      continue;
    }
    header_[header_got_++] = static_cast<unsigned char>(bytes.front());
    bytes.remove_prefix(1);
    if (header_got_ == sizeof header_) {
      body_left_ = (uint64_t{header_[0]} << 24) | (uint64_t{header_[1]} << 16) | (uint64_t{header_[2]} << 8) | header_[3];
      header_got_ = 0;
    }
  }
}

size_t StreamChunkFor(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && addr.ss_family == AF_UNIX) return 32 * 1024;
  int size = kTcpSendBuffer;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);  // a cap below it is fine: read back
  size = 0;
  len = sizeof size;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) != 0 || size <= 0) return 4 * 1024;
  // getsockopt reports twice what is usable for data (the kernel's bookkeeping share).
  size_t quarter = static_cast<size_t>(size) / 2 / 4;
  if (quarter < kTlsRecord) return 4 * 1024;
  return std::min(kMaxStreamChunk, quarter / kTlsRecord * kTlsRecord);
}

RelayResult Relay::Run() {
  RelayResult r;
  int flags = fcntl(client_, F_GETFL);
  if (flags >= 0) fcntl(client_, F_SETFL, flags | O_NONBLOCK);
  engine::StdcopyDemuxer demux;
  for (;;) {
    // Client bytes are taken while less than kMaxPending wait: a read can then fill the next
    // stream write while the last one is in flight, and a stream that takes nothing stops
    // the reading (never the loop).
    const bool want_client_in = !client_closed_ && to_stream_.size() < kMaxPending;
    const bool want_stream_in = to_client_.size() < kMaxPending;
    // Bytes the TLS layer already holds are invisible to poll(): read them before waiting.
    const bool buffered = want_stream_in && maybe_more_;
    const short client_events = static_cast<short>((want_client_in ? POLLIN : 0) | (to_client_.empty() ? 0 : POLLOUT));
    const short stream_events = static_cast<short>((want_stream_in ? POLLIN : 0) | (to_stream_.empty() ? 0 : POLLOUT));
    // A side we want nothing from is left out: its POLLHUP would wake us in a loop.
    pollfd p[3] = {{client_events != 0 ? client_ : -1, client_events, 0},
                   {stream_events != 0 ? stream_->fd() : -1, stream_events, 0},
                   {stop_, POLLIN, 0}};
    if (poll(p, 3, buffered ? 0 : -1) < 0) {
      if (errno == EINTR) continue;
      r.ended = std::string("poll: ") + strerror(errno);
      return r;
    }
    if (p[2].revents & POLLIN) {
      r.ended = "the gateway is stopping";
      return r;
    }
    if (want_client_in && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!ReadClient(&r)) return r;
    } else if (p[0].revents & (POLLHUP | POLLERR)) {
      r.ended = "the client closed";  // with input still unsent: the session is over anyway
      return r;
    }
    if (!to_stream_.empty() && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      if (!WriteStream(&r)) return r;
    }
    if (want_stream_in && (maybe_more_ || (p[1].revents & (POLLIN | POLLHUP | POLLERR)))) {
      switch (ReadStream(&demux, &r)) {
        case StreamRead::kFailed: return r;
        case StreamRead::kAgentLogOver:
          EndForAgentLog(&r);
          return r;
        case StreamRead::kEnded:
          DrainToClient(&r);
          return r;
        case StreamRead::kOk: break;
      }
    }
    if (!to_client_.empty() && (p[0].revents & POLLOUT)) {
      if (!WriteClient(&r)) return r;
    }
  }
}

bool Relay::ReadClient(RelayResult* r) {
  const size_t want = std::min(kReadChunk, kMaxPending - to_stream_.size());
  char* at = to_stream_.Grow(want);
  ssize_t n = recv(client_, at, want, MSG_DONTWAIT);
  const int error = errno;
  to_stream_.Shrink(want - static_cast<size_t>(std::max<ssize_t>(n, 0)));
  if (n < 0 && (error == EINTR || error == EAGAIN)) return true;
  if (n == 0 && !to_stream_.empty()) {
    client_closed_ = true;  // what it sent before closing still goes to the exec, then the end
    return true;
  }
  if (n <= 0) {
    r->ended = n == 0 ? "the client closed" : std::string("the client's socket failed: ") + strerror(error);
    return false;
  }
  return true;
}

bool Relay::WriteStream(RelayResult* r) {
  size_t n = std::min(to_stream_.size(), options_.stream_chunk);
  Status s = stream_->Write(to_stream_.view().substr(0, n), options_.io_timeout);
  if (!s.ok()) {
    r->ended = "the exec stream broke: " + s.message();
    return false;
  }
  to_stream_.Consume(n);
  r->to_exec += n;
  if (client_closed_ && to_stream_.empty()) {
    r->ended = "the client closed";
    return false;
  }
  return true;
}

// Reads what the stream has now (until it would block or kMaxPending is queued), demuxed:
// stdout queued for the client, stderr to the agent log.
Relay::StreamRead Relay::ReadStream(engine::StdcopyDemuxer* demux, RelayResult* r) {
  if (!chunk_) chunk_ = std::make_unique<char[]>(kReadChunk);
  maybe_more_ = false;
  while (to_client_.size() < kMaxPending) {
    size_t got = 0;
    bool eof = false;
    Status s = stream_->ReadAvailable(chunk_.get(), kReadChunk, &got, &eof);
    if (!s.ok()) {
      r->ended = "the exec stream broke: " + s.message();
      return StreamRead::kFailed;
    }
    if (eof) {
      r->ended = "the exec ended";
      return StreamRead::kEnded;
    }
    if (got == 0) return StreamRead::kOk;  // nothing more now: poll()
    Status d = demux->Feed(std::string_view(chunk_.get(), got), [&](engine::StdStream stream, std::string_view bytes) {
      if (stream == engine::StdStream::kStdout) {
        to_client_.Append(bytes);
        to_client_frames_.Advance(bytes);
      } else {
        r->stderr_bytes += bytes.size();
        if (!log_->Feed(bytes)) r->agent_log_over = true;
      }
    });
    if (!d.ok()) {
      r->ended = "the exec stream is not a valid multiplexed stream: " + d.message();
      return StreamRead::kFailed;
    }
    if (r->agent_log_over) return StreamRead::kAgentLogOver;
  }
  maybe_more_ = true;  // stopped by the bound, not by an empty stream
  return StreamRead::kOk;
}

bool Relay::WriteClient(RelayResult* r) {
  ssize_t n = send(client_, to_client_.data(), to_client_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n < 0) {
    r->ended = std::string("the client's socket failed: ") + strerror(errno);
    return false;
  }
  to_client_.Consume(static_cast<size_t>(n));
  r->to_client += static_cast<uint64_t>(n);
  return true;
}

// The agent's log went past its bound: the session ends here. What the client was sent stays
// whole; when it stands between frames, one `error` frame says why (allgo-shell prints it).
void Relay::EndForAgentLog(RelayResult* r) {
  const std::string why = "the sandbox gateway ended the session: the sandbox agent's log (its stderr) went past " +
                          std::to_string(AgentLog::kBurstBytes >> 20) + " MiB at once or " +
                          std::to_string(AgentLog::kBytesPerSecond >> 10) +
                          " KiB/s after that; something in the sandbox writes to it without end";
  r->ended = why.substr(why.find(": ") + 2);
  if (to_client_frames_.at_boundary()) to_client_.Append(RefusalFrame(why));
  DrainToClient(r);
}

// The exec ended: what it wrote last still goes to a client that reads it, within a bound.
void Relay::DrainToClient(RelayResult* r) {
  auto deadline = std::chrono::steady_clock::now() + options_.drain_timeout;
  while (!to_client_.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r->ended += " (the client did not take its last output in time)";
      return;
    }
    pollfd p[2] = {{client_, POLLOUT, 0}, {stop_, POLLIN, 0}};
    if (poll(p, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) return;
    if (p[1].revents & POLLIN) return;
    if ((p[0].revents & POLLOUT) && !WriteClient(r)) return;
    if (p[0].revents & (POLLERR | POLLHUP)) return;
  }
}

}  // namespace allgo::gateway
