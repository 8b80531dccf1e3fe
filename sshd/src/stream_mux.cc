#include "stream_mux.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <variant>

namespace allgo::sshd {
namespace {

long long NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

constexpr size_t kMaxStreams = 256;

}  // namespace

StreamMux::StreamMux(UniqueFd sock, StreamMuxOwner* owner) : sock_(std::move(sock)), owner_(owner) {}

bool StreamMux::Fail(std::string why) {
  if (!broken_) error_ = std::move(why);
  broken_ = true;
  return false;
}

Status StreamMux::Handshake(int timeout_ms, const std::string& upgrade) {
  Send(bridge::Hello{});
  if (!WaitUntil([this] { return hello_; }, timeout_ms)) {
    if (error_.find("unsupported protocol version 3") != std::string::npos) {
      return Status::Unavailable("the agent in this sandbox is too old for forwarding (" + error_ + "); " + upgrade);
    }
    return Status::Unavailable(broken_ ? "the sandbox agent refused forwarding: " + error_
                                       : "the sandbox agent did not answer in time");
  }
  return Status::Ok();
}

uint32_t StreamMux::NewStreamId() {
  if (sinks_.size() >= kMaxStreams) return 0;
  // Odd ids are ours; skip any still in use after a wrap-around.
  for (size_t tries = 0; tries < kMaxStreams + 1; ++tries) {
    uint32_t id = next_id_;
    next_id_ += 2;
    if (next_id_ >= 0x7fffffff) next_id_ = 1;
    if (sinks_.count(id) == 0) return id;
  }
  return 0;
}

void StreamMux::Send(const bridge::Message& message) {
  if (broken_) return;
  out_.Append(bridge::EncodeFrame(message));
}

void StreamMux::SendData(uint32_t id, const char* data, size_t n) {
  if (broken_ || n == 0) return;
  char* at = out_.Grow(bridge::kStreamDataFrameHeader + n);
  bridge::PutStreamDataFrameHeader(at, id, n);
  std::memcpy(at + bridge::kStreamDataFrameHeader, data, n);
}

bool StreamMux::Flush() {
  while (!out_.empty() && !broken_) {
    ssize_t n = send(sock_.get(), out_.data(), out_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      return Fail(std::string("send: ") + strerror(errno));
    }
    out_.Consume(static_cast<size_t>(n));
  }
  return !broken_;
}

bool StreamMux::OnReadable() {
  if (broken_) return false;
  // Read at most what the reader takes (four frames); the rest waits in the kernel, which
  // is what pushes back on an agent that sends faster than the SSH side drains.
  size_t room = reader_.Room();
  if (room > 0) {
    char* at = reader_.Grow(room);
    ssize_t n = recv(sock_.get(), at, room, MSG_DONTWAIT);
    if (n < 0) {
      reader_.Shrink(room);
      if (errno != EAGAIN && errno != EINTR) return Fail(std::string("recv: ") + strerror(errno));
    } else if (n == 0) {
      reader_.Shrink(room);
      return Fail("the sandbox agent closed the connection");
    } else {
      reader_.Shrink(room - static_cast<size_t>(n));
    }
  }
  for (;;) {
    bridge::Message message;
    bridge::DataView view;
    std::string error;
    auto result = reader_.NextView(&message, &view, &error);
    if (result == bridge::FrameReader::Result::kNeedMore) return true;
    if (result == bridge::FrameReader::Result::kError) return Fail("protocol error from the agent: " + error);
    if (!view.bytes.empty()) {
      auto it = sinks_.find(view.id);
      // Data for a stream we already closed is dropped (docs/protocol.md); an id never
      // opened at all is a protocol error.
      // Data for a stream we already let go is dropped (docs/protocol.md): it may have been
      // on its way when our stream-close left. Nothing is kept for it.
      if (it == sinks_.end()) continue;
      if (!it->second->OnData(view.bytes)) {
        return Fail("protocol error from the agent: stream " + std::to_string(view.id) + " sent beyond its window");
      }
      continue;
    }
    if (!Dispatch(message)) return false;
  }
}

bool StreamMux::Dispatch(bridge::Message& message) {
  using namespace bridge;
  if (auto* hello = std::get_if<Hello>(&message)) {
    if (hello_) return Fail("protocol error from the agent: a second hello");
    hello_ = hello->version == kStreamProtocolVersion;
    return true;
  }
  if (auto* e = std::get_if<Error>(&message)) return Fail(e->text);
  if (!hello_) return Fail("protocol error from the agent: a message before hello");
  auto sink_of = [this](uint32_t id) -> StreamSink* {
    auto it = sinks_.find(id);
    return it == sinks_.end() ? nullptr : it->second;
  };
  if (auto* open = std::get_if<StreamOpen>(&message)) {
    if ((open->stream & 1) != 0) return Fail("protocol error from the agent: stream-open with a client id");
    if (sinks_.count(open->stream) != 0) return Fail("protocol error from the agent: stream id in use");
    owner_->OnIncoming(*open);  // the owner checks the listener and answers accept or refuse
    return !broken_;
  }
  if (auto* r = std::get_if<ListenResult>(&message)) {
    owner_->OnListenResult(*r);
    return !broken_;
  }
  uint32_t id = 0;
  std::visit(
      [&id](const auto& m) {
        if constexpr (requires { m.stream; }) {
          if constexpr (std::is_same_v<std::decay_t<decltype(m.stream)>, uint32_t>) id = m.stream;
        }
      },
      message);
  StreamSink* sink = sink_of(id);
  if (sink == nullptr) {
    // Answers and closes for a stream we already let go: nothing to do.
    if (id != 0) return true;
    return Fail(std::string("protocol error from the agent: unexpected message"));
  }
  if (auto* a = std::get_if<StreamAccept>(&message)) {
    sink->OnAccepted(a->window);
  } else if (auto* r = std::get_if<StreamRefuse>(&message)) {
    sink->OnRefused(r->reason, r->text);
  } else if (auto* d = std::get_if<StreamData>(&message)) {
    if (!sink->OnData(d->bytes)) return Fail("protocol error from the agent: stream sent beyond its window");
  } else if (auto* w = std::get_if<StreamWindow>(&message)) {
    sink->OnWindow(w->increment);
  } else if (std::holds_alternative<StreamEof>(message)) {
    sink->OnEof();
  } else if (std::holds_alternative<StreamClose>(message)) {
    sink->OnClose();
  } else {
    return Fail("protocol error from the agent: a message only a client sends");
  }
  return true;
}

bool StreamMux::WaitUntil(const std::function<bool()>& done, int timeout_ms) {
  long long deadline = NowMs() + timeout_ms;
  while (!done()) {
    if (!Flush()) return false;
    long long left = deadline - NowMs();
    if (left <= 0) return false;
    pollfd p{sock_.get(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    int rc = poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno != EINTR) return Fail(std::string("poll: ") + strerror(errno));
    if (rc > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && !OnReadable()) return false;
  }
  return true;
}

}  // namespace allgo::sshd
