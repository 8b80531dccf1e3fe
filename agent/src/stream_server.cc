#include "stream_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "log.h"
#include "loop_helpers.h"
#include "resolve.h"
#include "allgo/bridge/io.h"

namespace allgo::bridge {
namespace {

// Grant back once this much reached the socket: a quarter of the default window, as the
// network child does (each grant is a frame to write and to parse on the other side).
constexpr uint32_t kWindowBatch = 64 * 1024;
constexpr int kAcceptsPerRound = 16;
constexpr int kFailFlushMs = 2000;            // to deliver the `error` to a slow client
constexpr int kAcceptPauseMs = 100;           // after EMFILE and the like
constexpr const char* kAgentSocketName = "agent.sock";
constexpr size_t kIdleQueueCapacity = 64 * 1024;  // kept by a stream whose queue drained

const char* KindName(StreamKind kind) {
  switch (kind) {
    case StreamKind::kTcp: return "tcp";
    case StreamKind::kUnix: return "unix";
    case StreamKind::kForwardedTcp: return "forwarded tcp";
    case StreamKind::kForwardedUnix: return "forwarded unix";
    case StreamKind::kAuthAgent: return "auth-agent";
  }
  return "?";
}

// The file system identity of what we bound, so that cleanup removes our socket and never
// whatever the sandbox put in its place since.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool valid = false;
};
FileId IdOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return {};
  return {st.st_dev, st.st_ino, true};
}

// bind() with the socket file created 0600 (umask is per process; the loop is single-threaded).
int BindPrivate(int fd, const SocketAddress& address) {
  mode_t old = umask(0177);
  int r = bind(fd, address.get(), address.length);
  int saved = errno;
  umask(old);
  errno = saved;
  return r;
}

}  // namespace

struct StreamServer::Stream {
  // kConnecting: a client-opened stream before its connect finished (no accept sent yet).
  // kAwaitAccept: an agent-opened stream before the client's accept (its socket is not read).
  // kOpen: data both ways. kClosed: we sent stream-close and wait for the client's.
  enum class State { kConnecting, kAwaitAccept, kOpen, kClosed };

  uint32_t id = 0;
  // Unique for the connection's life: a poll result is only applied to the stream it was
  // for, not to a new stream that reuses the id (or the fd number) in the same round.
  uint64_t serial = 0;
  StreamKind kind = StreamKind::kTcp;
  State state = State::kConnecting;
  UniqueFd fd;
  std::string target;  // for logs and refusals: "host port N", or the socket path

  std::vector<SocketAddress> candidates;  // kConnecting: addresses left to try
  size_t next_candidate = 0;
  std::string last_error;
  int64_t deadline = -1;

  // client → socket
  ByteQueue to_socket;       // never more than the window we granted
  uint32_t recv_window = 0;  // bytes the client may still send
  uint32_t unacked = 0;      // bytes that reached the socket, not yet granted back
  bool peer_eof = false;     // the client sent stream-eof
  bool shut_wr = false;      // ... and we passed it on (shutdown(SHUT_WR))
  // socket → client
  uint32_t send_window = 0;  // bytes we may still send
  bool sock_eof = false;     // the socket ended and we sent stream-eof
  uint64_t bytes_to_socket = 0, bytes_from_socket = 0;

  bool WantsRead(size_t queued) const {
    return state == State::kOpen && !sock_eof && send_window > 0 && queued < kMaxQueuedOutput;
  }
  bool WantsWrite() const { return state == State::kOpen && !to_socket.empty(); }
};

struct StreamServer::Listener {
  uint32_t id = 0;
  ListenKind kind = ListenKind::kTcp;
  std::string address;  // as the client asked (forwarded-tcp streams carry it back)
  uint32_t port = 0;    // the bound one
  UniqueFd fd;
  std::string path;     // unix and agent listeners: the socket file we made
  FileId file;
  std::string folder;   // agent listeners: the private folder holding it

  Listener() = default;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  // The socket closes first, then its file goes (only if it is still ours), then the folder.
  ~Listener() {
    fd.reset();
    if (!path.empty() && file.valid) {
      FileId now = IdOf(path);
      if (now.valid && now.dev == file.dev && now.ino == file.ino) unlink(path.c_str());
    }
    if (!folder.empty() && rmdir(folder.c_str()) != 0) {
      Log(LogLevel::kWarn, "cannot remove the agent socket folder %s: %s", folder.c_str(), strerror(errno));
    }
  }
};

bool StartsStreamMode(const FrameReader& reader) {
#ifdef ALLGO_AGENT_WITHOUT_STREAMS
  // The test-only agent of versions 1 and 2 (agent/CMakeLists.txt): a `hello` is then decoded
  // as an `open` of version 3 and refused by its version, as by every agent before version 3.
  (void)reader;
  return false;
#endif
  std::string_view unread = reader.Unread();
  return unread.size() >= kFrameHeaderSize + 3 && PeekVersion(unread.substr(kFrameHeaderSize)) == kStreamProtocolVersion;
}

StreamServer::StreamServer(StreamServerOptions options) : options_(std::move(options)) {}
StreamServer::~StreamServer() = default;

int StreamServer::Run() {
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signals_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signals_) {
    Log(LogLevel::kError, "%s: signalfd: %s", options_.name.c_str(), strerror(errno));
    return 1;
  }
  SetNonBlocking(options_.in, true);
  SetNonBlocking(options_.out, true);
  Log(LogLevel::kInfo, "%s: stream mode (protocol version 3)", options_.name.c_str());
  // The caller read these before it knew the mode: they are the start of our input.
  reader_.Append(options_.initial);
  options_.initial.clear();
  ParseInput();

  enum class Role { kSignals, kIn, kOut, kStream, kListener };
  struct Entry {
    Role role;
    uint32_t id;      // stream or listener id
    uint64_t serial;  // streams: Stream::serial
  };
  std::vector<pollfd> fds;
  std::vector<Entry> roles;
  while (!ended_) {
    fds.clear();
    roles.clear();
    auto add = [&](int fd, short events, Role role, uint32_t id, uint64_t serial = 0) {
      if (fd < 0 || events == 0) return;
      fds.push_back(pollfd{fd, events, 0});
      roles.push_back(Entry{role, id, serial});
    };
    const bool room = out_.size() < kMaxQueuedOutput;
    add(signals_.get(), POLLIN, Role::kSignals, 0);
    if (room && reader_.Room() > 0) add(options_.in, POLLIN, Role::kIn, 0);
    if (!out_.empty()) add(options_.out, POLLOUT, Role::kOut, 0);
    for (auto& [id, s] : streams_) {
      short events = 0;
      if (s->state == Stream::State::kConnecting) events = POLLOUT;
      if (s->WantsRead(out_.size())) events |= POLLIN;
      if (s->WantsWrite()) events |= POLLOUT;
      add(s->fd.get(), events, Role::kStream, id, s->serial);
    }
    if (room && NowMs() >= accept_paused_until_) {
      for (auto& [id, l] : listeners_) add(l->fd.get(), POLLIN, Role::kListener, id);
    }
    int r = poll(fds.data(), fds.size(), NextTimeoutMs());
    if (r < 0 && errno != EINTR) {
      End("poll failed");
      break;
    }
    for (size_t i = 0; r > 0 && i < fds.size() && !ended_; ++i) {
      const short revents = fds[i].revents;
      if (revents == 0) continue;
      auto [role, id, serial] = roles[i];
      switch (role) {
        case Role::kSignals: DrainSignals(); break;
        case Role::kIn: ReadInput(); break;
        case Role::kOut: Flush(); break;
        case Role::kStream: {
          Stream* s = Find(id);
          if (s == nullptr || s->serial != serial || !s->fd) break;  // closed meanwhile
          if (s->state == Stream::State::kConnecting) {
            OnConnectDone(*s);
            break;
          }
          if ((revents & (POLLOUT | POLLHUP | POLLERR)) && s->WantsWrite()) WriteSocket(*s);
          s = Find(id);
          if (s != nullptr && (revents & (POLLIN | POLLHUP | POLLERR)) && s->WantsRead(out_.size())) ReadSocket(*s);
          break;
        }
        case Role::kListener: {
          auto it = listeners_.find(id);
          if (it != listeners_.end()) AcceptOn(*it->second);
          break;
        }
      }
    }
    if (ended_) break;
    CheckDeadlines();
    Flush();
  }
  streams_.clear();
  listeners_.clear();
  return status_;
}

// ---- the client's connection ----

void StreamServer::ReadInput() {
  // Straight into the frame reader; stream-data then goes to its socket without a copy
  // into a message first (NextView).
  ssize_t n = ReadFrames(options_.in, &reader_);
  const int error_number = errno;
  if (n < 0 && (error_number == EAGAIN || error_number == EINTR)) return;
  if (n == 0) return End("the client closed the connection");
  if (n < 0) return End(strerror(error_number));
  ParseInput();
}

void StreamServer::ParseInput() {
  while (!ended_) {
    Message m;
    DataView data;
    std::string error;
    auto r = reader_.NextView(&m, &data, &error);
    if (r == FrameReader::Result::kNeedMore) break;
    if (r == FrameReader::Result::kError) return Fail("protocol error: " + error);
    if (!data.bytes.empty()) {
      if (!hello_) return Fail("protocol error: the first message must be hello");
      HandleData(data.id, data.bytes);
    } else {
      SendBatch();  // what came before this message reaches its socket first
      Handle(m);
    }
  }
  SendBatch();
}

void StreamServer::Handle(Message& m) {
  if (std::holds_alternative<Hello>(m)) {
    if (hello_) return Fail("protocol error: a second hello");
    hello_ = true;
    return Queue(Hello{kStreamProtocolVersion});
  }
  if (!hello_) return Fail("protocol error: the first message must be hello");
  if (auto* open = std::get_if<StreamOpen>(&m)) return HandleOpen(*open);
  if (auto* accept = std::get_if<StreamAccept>(&m)) return HandleAccept(*accept);
  if (auto* refuse = std::get_if<StreamRefuse>(&m)) return HandleRefuse(*refuse);
  if (auto* data = std::get_if<StreamData>(&m)) return HandleData(data->stream, data->bytes);
  if (auto* window = std::get_if<StreamWindow>(&m)) return HandleWindow(*window);
  if (auto* eof = std::get_if<StreamEof>(&m)) return HandleEof(eof->stream);
  if (auto* close = std::get_if<StreamClose>(&m)) return HandleClose(close->stream);
  if (auto* listen = std::get_if<Listen>(&m)) return HandleListen(*listen);
  if (auto* unlisten = std::get_if<Unlisten>(&m)) return HandleUnlisten(unlisten->listener);
  // error and listen-result go from the agent to the client only.
  Fail("protocol error: a client may not send this message");
}

void StreamServer::Queue(const Message& message) { out_.Append(EncodeFrame(message)); }

void StreamServer::Flush() {
  while (!out_.empty()) {
    ssize_t n = write(options_.out, out_.data(), out_.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return End(n == 0 ? "the client stopped reading" : strerror(errno));
    out_.Consume(static_cast<size_t>(n));
  }
}

// Protocol errors are fatal: the sockets go at once, the client gets what was queued and
// then the `error` (within kFailFlushMs: a client that does not read is not waited for).
void StreamServer::Fail(const std::string& why) {
  if (ended_) return;
  Log(LogLevel::kWarn, "%s: %s", options_.name.c_str(), why.c_str());
  streams_.clear();
  listeners_.clear();
  Queue(Error{Printable(why)});
  int64_t deadline = NowMs() + kFailFlushMs;
  while (!out_.empty() && !ended_) {
    int64_t left = deadline - NowMs();
    if (left <= 0) break;
    pollfd p{options_.out, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    Flush();
  }
  ended_ = true;
  status_ = 1;
}

void StreamServer::End(const char* why) {
  if (ended_) return;
  ended_ = true;
  Log(LogLevel::kInfo, "%s: closed (%s); %zu stream(s) and %zu listener(s) closed with it", options_.name.c_str(),
      why, streams_.size(), listeners_.size());
  streams_.clear();
  listeners_.clear();
}

void StreamServer::DrainSignals() {
  signalfd_siginfo info;
  while (read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    End(("signal " + std::to_string(info.ssi_signo)).c_str());
  }
}

StreamServer::Stream* StreamServer::Find(uint32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

uint32_t StreamServer::NextAgentId() {
  for (;;) {
    uint32_t id = next_even_;
    next_even_ += 2;
    if (next_even_ == 0) next_even_ = 2;  // wrapped: 0 is no id
    if (streams_.count(id) == 0) return id;
  }
}

// ---- messages about streams ----

void StreamServer::HandleOpen(const StreamOpen& open) {
  if (open.kind != StreamKind::kTcp && open.kind != StreamKind::kUnix) {
    return Fail(std::string("protocol error: stream-open: a ") + KindName(open.kind) + " stream is opened by the agent only");
  }
  if (streams_.count(open.stream) != 0) {
    return Fail("protocol error: stream-open: stream " + std::to_string(open.stream) + " is in use");
  }
  if (streams_.size() >= kMaxStreams) {
    return Refuse(open.stream, RefuseReason::kResourceShortage,
                  "too many streams on this connection (" + std::to_string(kMaxStreams) + ")");
  }
  auto owned = std::make_unique<Stream>();
  Stream& s = *owned;
  s.id = open.stream;
  s.serial = ++serial_;
  s.kind = open.kind;
  s.send_window = open.window;
  s.deadline = NowMs() + options_.connect_timeout_ms;
  streams_.emplace(s.id, std::move(owned));
  if (open.kind == StreamKind::kTcp) {
    s.target = open.host + " port " + std::to_string(open.port);
    std::string error = ResolveHost(open.host, static_cast<uint16_t>(open.port), &s.candidates,
                                    options_.hosts_file.c_str());
    if (!error.empty()) return Refuse(s.id, RefuseReason::kConnectFailed, error);
  } else {
    s.target = open.host;
    SocketAddress address;
    if (!UnixAddress(open.host, &address)) {
      return Refuse(s.id, RefuseReason::kConnectFailed, Printable("socket path too long: " + open.host));
    }
    s.candidates.push_back(address);
  }
  Log(LogLevel::kDebug, "%s: stream %u: %s to %s", options_.name.c_str(), s.id, KindName(s.kind),
      Printable(s.target).c_str());
  TryConnect(s);
}

// Tries the next address; the stream is refused (and gone) when none is left.
void StreamServer::TryConnect(Stream& s) {
  while (s.next_candidate < s.candidates.size()) {
    const SocketAddress& address = s.candidates[s.next_candidate++];
    UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      s.last_error = strerror(errno);
      continue;
    }
    // Connected, or on its way: either way the socket is the stream's now.
    if (connect(fd.get(), address.get(), address.length) == 0) {
      s.fd = std::move(fd);
      return OnConnected(s);
    }
    if (errno == EINPROGRESS) {
      s.fd = std::move(fd);
      return;
    }
    // EAGAIN here is a unix socket whose backlog is full.
    s.last_error = strerror(errno);
  }
  Refuse(s.id, RefuseReason::kConnectFailed, Printable("cannot connect to " + s.target + ": " + s.last_error));
}

void StreamServer::OnConnectDone(Stream& s) {
  // Only a finished connect (writable, or an error) has a meaningful SO_ERROR.
  pollfd p{s.fd.get(), POLLOUT, 0};
  if (poll(&p, 1, 0) <= 0) return;
  int error = 0;
  socklen_t len = sizeof error;
  if (getsockopt(s.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  if (error == EINPROGRESS) return;
  if (error == 0) return OnConnected(s);
  s.last_error = strerror(error);
  s.fd.reset();
  TryConnect(s);
}

void StreamServer::OnConnected(Stream& s) {
  if (s.kind == StreamKind::kTcp) {
    int one = 1;  // frames arrive already batched; interactive forwards want no delay
    setsockopt(s.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  s.state = Stream::State::kOpen;
  s.deadline = -1;
  s.candidates.clear();
  s.recv_window = options_.window;
  Queue(StreamAccept{s.id, options_.window});
}

void StreamServer::Refuse(uint32_t id, RefuseReason reason, const std::string& text) {
  Log(LogLevel::kInfo, "%s: stream %u refused: %s", options_.name.c_str(), id, text.c_str());
  streams_.erase(id);  // the id is free at once
  Queue(StreamRefuse{id, reason, text});
}

void StreamServer::HandleAccept(const StreamAccept& accept) {
  Stream* s = Find(accept.stream);
  if (s == nullptr || s->state != Stream::State::kAwaitAccept) {
    return Fail("protocol error: stream-accept for stream " + std::to_string(accept.stream) +
                ", which awaits no accept");
  }
  s->state = Stream::State::kOpen;
  s->send_window = accept.window;
}

void StreamServer::HandleRefuse(const StreamRefuse& refuse) {
  Stream* s = Find(refuse.stream);
  if (s == nullptr || (s->state != Stream::State::kAwaitAccept && s->state != Stream::State::kClosed)) {
    return Fail("protocol error: stream-refuse for stream " + std::to_string(refuse.stream) +
                ", which awaits no accept");
  }
  Log(LogLevel::kDebug, "%s: stream %u refused by the client: %s", options_.name.c_str(), s->id,
      Printable(refuse.text).c_str());
  streams_.erase(refuse.stream);  // closes the accepted socket
}

void StreamServer::HandleData(uint32_t id, std::string_view bytes) {
  Stream* s = Find(id);
  if (s == nullptr) return Fail("protocol error: stream-data for unknown stream " + std::to_string(id));
  if (s->state == Stream::State::kClosed) return;  // we closed it: dropped, as the spec says
  if (s->state != Stream::State::kOpen) {
    return Fail("protocol error: stream-data on stream " + std::to_string(id) + " before it was accepted");
  }
  if (s->peer_eof) return Fail("protocol error: stream-data on stream " + std::to_string(id) + " after its stream-eof");
  if (bytes.size() > s->recv_window) {
    return Fail("protocol error: stream-data beyond the window of stream " + std::to_string(id) + " (" +
                std::to_string(bytes.size()) + " bytes, window " + std::to_string(s->recv_window) + ")");
  }
  s->recv_window -= static_cast<uint32_t>(bytes.size());
  if (!s->to_socket.empty()) return s->to_socket.Append(bytes);  // behind what waits already
  // The usual case: straight to the socket, together with the stream's next frames of this
  // read (one sendmsg for up to kBatchFrames frames instead of one send per 32 KiB frame).
  if (batch_count_ > 0 && (batch_id_ != id || batch_count_ == kBatchFrames)) SendBatch();
  batch_id_ = id;
  batch_[batch_count_++] = iovec{const_cast<char*>(bytes.data()), bytes.size()};
}

// Sends the batched stream-data bytes (views into reader_, valid until its next Grow) to
// their socket in one sendmsg; what the socket does not take waits in the stream's queue.
void StreamServer::SendBatch() {
  if (batch_count_ == 0) return;
  const size_t count = std::exchange(batch_count_, 0);
  Stream* s = Find(batch_id_);
  if (s == nullptr || s->state != Stream::State::kOpen || !s->fd) return;  // ended meanwhile
  msghdr msg{};
  msg.msg_iov = batch_;
  msg.msg_iovlen = count;
  ssize_t n = sendmsg(s->fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EINTR) return CloseStream(*s, strerror(errno));
  size_t sent = n > 0 ? static_cast<size_t>(n) : 0;
  if (sent > 0) Consumed(*s, sent);
  for (size_t i = 0; i < count; ++i) {
    const size_t skip = std::min(sent, batch_[i].iov_len);
    sent -= skip;
    s->to_socket.Append(std::string_view(static_cast<const char*>(batch_[i].iov_base) + skip, batch_[i].iov_len - skip));
  }
}

void StreamServer::WriteSocket(Stream& s) {
  while (!s.to_socket.empty()) {
    ssize_t n = send(s.fd.get(), s.to_socket.data(), s.to_socket.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return CloseStream(s, strerror(errno));
    s.to_socket.Consume(static_cast<size_t>(n));
    Consumed(s, static_cast<size_t>(n));
  }
  // A burst grew the queue (up to a few times the window): an idle forward gives it back.
  if (s.to_socket.capacity() > kIdleQueueCapacity) s.to_socket = ByteQueue();
  if (s.peer_eof && !s.shut_wr) {
    shutdown(s.fd.get(), SHUT_WR);
    s.shut_wr = true;
    MaybeFinish(s);
  }
}

// Bytes reached the socket: the client may send that many more, told in batches.
void StreamServer::Consumed(Stream& s, size_t n) {
  s.bytes_to_socket += n;
  s.unacked += static_cast<uint32_t>(n);
  const uint32_t batch = std::min(kWindowBatch, std::max<uint32_t>(1, options_.window / 2));
  if (s.unacked >= batch && !s.peer_eof) {
    Queue(StreamWindow{s.id, s.unacked});
    s.recv_window += s.unacked;
    s.unacked = 0;
  }
}

void StreamServer::ReadSocket(Stream& s) {
  if (!s.WantsRead(out_.size())) return;
  // One read per stream and poll round, straight into the outgoing buffer: room for up to
  // kReadFrames stream-data frames is laid out (header, 32 KiB, header, 32 KiB, ...) and
  // the read scatters into their payloads (no copy, one syscall for 128 KiB); the headers
  // of the frames it reached are written afterwards and the rest is given back. Never more
  // than the client's window allows.
  const size_t want = std::min<size_t>(kReadFrames * kMaxData, s.send_window);
  const size_t frames = (want + kMaxData - 1) / kMaxData;
  char* at = out_.Grow(frames * kStreamDataFrameHeader + want);
  iovec iov[kReadFrames];
  for (size_t i = 0; i < frames; ++i) {
    iov[i] = iovec{at + i * (kStreamDataFrameHeader + kMaxData) + kStreamDataFrameHeader,
                   std::min(kMaxData, want - i * kMaxData)};
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = frames;
  ssize_t n = recvmsg(s.fd.get(), &msg, MSG_DONTWAIT);
  const int error_number = errno;
  size_t used = 0;  // bytes of `at` that hold whole frames
  for (size_t left = n > 0 ? static_cast<size_t>(n) : 0, i = 0; left > 0; ++i) {
    const size_t chunk = std::min(left, kMaxData);
    PutStreamDataFrameHeader(at + used, s.id, chunk);
    used += kStreamDataFrameHeader + chunk;
    left -= chunk;
  }
  out_.Shrink(frames * kStreamDataFrameHeader + want - used);
  if (n > 0) {
    s.send_window -= static_cast<uint32_t>(n);
    s.bytes_from_socket += static_cast<uint64_t>(n);
    return;
  }
  if (n < 0 && (error_number == EAGAIN || error_number == EINTR)) return;
  if (n < 0) return CloseStream(s, strerror(error_number));  // e.g. reset by the peer
  s.sock_eof = true;
  Queue(StreamEof{s.id});
  MaybeFinish(s);
}

void StreamServer::HandleWindow(const StreamWindow& window) {
  Stream* s = Find(window.stream);
  if (s == nullptr) return Fail("protocol error: stream-window for unknown stream " + std::to_string(window.stream));
  if (s->state == Stream::State::kClosed) return;
  if (uint64_t{s->send_window} + window.increment > kMaxStreamWindow) {
    return Fail("protocol error: stream-window: the window of stream " + std::to_string(window.stream) +
                " would pass 16 MiB");
  }
  s->send_window += window.increment;
}

void StreamServer::HandleEof(uint32_t id) {
  Stream* s = Find(id);
  if (s == nullptr) return Fail("protocol error: stream-eof for unknown stream " + std::to_string(id));
  if (s->state == Stream::State::kClosed) return;
  if (s->state != Stream::State::kOpen || s->peer_eof) {
    return Fail("protocol error: stream-eof on stream " + std::to_string(id) + " out of turn");
  }
  s->peer_eof = true;
  if (s->to_socket.empty()) WriteSocket(*s);  // passes the EOF on at once
}

// Both directions ended and everything reached the socket: the stream is done.
void StreamServer::MaybeFinish(Stream& s) {
  if (s.state == Stream::State::kOpen && s.sock_eof && s.shut_wr) CloseStream(s, "done");
}

void StreamServer::CloseStream(Stream& s, const char* why) {
  if (s.state == Stream::State::kClosed) return;
  Log(LogLevel::kDebug, "%s: stream %u closed (%s): %llu bytes in, %llu out", options_.name.c_str(), s.id, why,
      static_cast<unsigned long long>(s.bytes_to_socket), static_cast<unsigned long long>(s.bytes_from_socket));
  s.state = Stream::State::kClosed;
  s.fd.reset();
  s.to_socket = ByteQueue();  // its memory goes now, not when the client answers
  Queue(StreamClose{s.id});
}

void StreamServer::HandleClose(uint32_t id) {
  Stream* s = Find(id);
  if (s == nullptr) {
    // An odd id may have been refused while the client's close was on its way (a refusal
    // frees the id at once): nothing left to do. An even one is ours and never refused.
    if (id & 1) return;
    return Fail("protocol error: stream-close for unknown stream " + std::to_string(id));
  }
  if (s->state != Stream::State::kClosed) {
    Log(LogLevel::kDebug, "%s: stream %u closed by the client: %llu bytes in, %llu out", options_.name.c_str(), id,
        static_cast<unsigned long long>(s->bytes_to_socket), static_cast<unsigned long long>(s->bytes_from_socket));
    Queue(StreamClose{id});  // our answer: both sent it, the id is free
  }
  streams_.erase(id);
}

void StreamServer::CheckDeadlines() {
  const int64_t now = NowMs();
  if (accept_paused_until_ > 0 && now >= accept_paused_until_) accept_paused_until_ = 0;
  std::vector<uint32_t> late;
  for (auto& [id, s] : streams_) {
    if (s->state == Stream::State::kConnecting && s->deadline >= 0 && now >= s->deadline) late.push_back(id);
  }
  for (uint32_t id : late) {
    Stream* s = Find(id);
    Refuse(id, RefuseReason::kConnectFailed,
           Printable("cannot connect to " + s->target + ": timed out after " +
                     std::to_string(options_.connect_timeout_ms / 1000) + " s"));
  }
}

int StreamServer::NextTimeoutMs() const {
  int64_t next = accept_paused_until_ > 0 ? accept_paused_until_ : -1;
  for (const auto& [id, s] : streams_) {
    if (s->state == Stream::State::kConnecting && s->deadline >= 0 && (next < 0 || s->deadline < next)) {
      next = s->deadline;
    }
  }
  if (next < 0) return -1;
  return static_cast<int>(std::clamp<int64_t>(next - NowMs(), 0, 60000));
}

// ---- listeners ----

void StreamServer::HandleListen(const Listen& listen) {
  if (listeners_.count(listen.listener) != 0) {
    return Fail("protocol error: listen: listener " + std::to_string(listen.listener) + " is in use");
  }
  auto refuse = [&](const std::string& why) {
    Log(LogLevel::kInfo, "%s: listener %u refused: %s", options_.name.c_str(), listen.listener, why.c_str());
    Queue(ListenResult{listen.listener, false, 0, "", Printable(why)});
  };
  if (listeners_.size() >= kMaxListeners) {
    return refuse("too many listeners on this connection (" + std::to_string(kMaxListeners) + ")");
  }
  auto l = std::make_unique<Listener>();
  l->id = listen.listener;
  l->kind = listen.kind;
  l->address = listen.address;
  if (listen.kind == ListenKind::kTcp) {
    std::vector<SocketAddress> addresses;
    std::string error = ResolveHost(listen.address, static_cast<uint16_t>(listen.port), &addresses,
                                    options_.hosts_file.c_str());
    if (!error.empty()) return refuse(error);
    // The first address that binds (for "localhost": 127.0.0.1, as /etc/hosts lists it).
    for (const SocketAddress& address : addresses) {
      UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd) {
        error = strerror(errno);
        continue;
      }
      int one = 1;  // as sshd: a forward restarted at once finds its port free
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (address.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (bind(fd.get(), address.get(), address.length) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
        error = strerror(errno);
        continue;
      }
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
      std::string ignored;
      NumericHost(reinterpret_cast<sockaddr*>(&bound), &ignored, &l->port);
      l->fd = std::move(fd);
      break;
    }
    if (!l->fd) return refuse("cannot listen on " + listen.address + " port " + std::to_string(listen.port) + ": " + error);
  } else {
    if (listen.kind == ListenKind::kAuthAgent) {
      std::string tmpl = options_.agent_socket_parent + "/allgo-agent-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) return refuse(ErrnoText("cannot create a folder in " + options_.agent_socket_parent, errno));
      l->folder = tmpl;  // 0700 (mkdtemp), removed with the listener
      l->path = tmpl + "/" + kAgentSocketName;
    } else {
      l->path = listen.address;
      struct stat st;
      // Never replace what is there: a forward must not delete the sandbox's own files.
      if (lstat(l->path.c_str(), &st) == 0) return refuse(l->path + " exists");
    }
    SocketAddress address;
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!UnixAddress(l->path, &address)) return refuse("socket path too long: " + l->path);
    // (Until bind succeeded, l->file is unset: the destructor removes nothing of someone else.)
    if (!fd || BindPrivate(fd.get(), address) != 0) return refuse(ErrnoText("cannot listen on " + l->path, errno));
    l->file = IdOf(l->path);
    if (::listen(fd.get(), SOMAXCONN) != 0) return refuse(ErrnoText("listen on " + l->path, errno));
    l->fd = std::move(fd);
  }
  Log(LogLevel::kInfo, "%s: listener %u on %s", options_.name.c_str(), l->id,
      Printable(l->path.empty() ? l->address + " port " + std::to_string(l->port) : l->path).c_str());
  Queue(ListenResult{l->id, true, listen.kind == ListenKind::kTcp ? l->port : 0,
                     listen.kind == ListenKind::kTcp ? "" : l->path, ""});
  listeners_.emplace(l->id, std::move(l));
}

void StreamServer::HandleUnlisten(uint32_t id) {
  // An unknown id is harmless: a listen that failed, cancelled again at the end.
  if (listeners_.erase(id) != 0) Log(LogLevel::kInfo, "%s: listener %u closed", options_.name.c_str(), id);
}

void StreamServer::AcceptOn(Listener& l) {
  for (int i = 0; i < kAcceptsPerRound && out_.size() < kMaxQueuedOutput; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        Log(LogLevel::kWarn, "%s: accept: %s; pausing the listeners for %d ms", options_.name.c_str(),
            strerror(errno), kAcceptPauseMs);
        accept_paused_until_ = NowMs() + kAcceptPauseMs;
      }
      return;
    }
    UniqueFd sock(fd);
    if (streams_.size() >= kMaxStreams) {
      // Closed at once: the connecting program sees the end rather than a hang.
      Log(LogLevel::kWarn, "%s: listener %u: connection closed, %zu streams already", options_.name.c_str(), l.id,
          streams_.size());
      continue;
    }
    StreamOpen open;
    open.stream = NextAgentId();
    open.listener = l.id;
    open.window = options_.window;
    switch (l.kind) {
      case ListenKind::kTcp:
        open.kind = StreamKind::kForwardedTcp;
        open.host = l.address;
        open.port = l.port;
        NumericHost(reinterpret_cast<sockaddr*>(&peer), &open.origin_host, &open.origin_port);
        break;
      case ListenKind::kUnix:
        open.kind = StreamKind::kForwardedUnix;
        open.host = l.path;
        break;
      case ListenKind::kAuthAgent:
        open.kind = StreamKind::kAuthAgent;
        break;
    }
    auto s = std::make_unique<Stream>();
    s->id = open.stream;
    s->serial = ++serial_;
    s->kind = open.kind;
    s->state = Stream::State::kAwaitAccept;
    s->fd = std::move(sock);
    s->recv_window = options_.window;
    s->target = l.path.empty() ? open.origin_host + " port " + std::to_string(open.origin_port) : l.path;
    Log(LogLevel::kDebug, "%s: stream %u: %s from listener %u", options_.name.c_str(), s->id, KindName(s->kind), l.id);
    streams_.emplace(s->id, std::move(s));
    Queue(open);
  }
}

}  // namespace allgo::bridge
