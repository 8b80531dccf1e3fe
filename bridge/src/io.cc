#include "allgo/bridge/io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <memory>

namespace allgo::bridge {

std::string ErrnoText(const std::string& context, int err) {
  return context + ": " + strerror(err);
}

namespace {

// An fd we inherited may be non-blocking (its other users decide): wait instead of failing.
bool WaitFor(int fd, short events) {
  pollfd p{fd, events, 0};
  while (poll(&p, 1, -1) < 0) {
    if (errno != EINTR) return false;
  }
  return true;
}

}  // namespace

bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && WaitFor(fd, POLLOUT)) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string SendMessage(int fd, const Message& message) {
  std::string frame = EncodeFrame(message);
  if (!WriteAll(fd, frame.data(), frame.size())) return ErrnoText("send", errno);
  return "";
}

namespace {
int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}
}  // namespace

std::string ReadMessage(int fd, FrameReader* reader, Message* out, int timeout_ms, bool* closed) {
  if (closed) *closed = false;
  int64_t deadline = timeout_ms < 0 ? -1 : NowMs() + timeout_ms;
  char buf[16 * 1024];
  for (;;) {
    std::string error;
    switch (reader->Next(out, &error)) {
      case FrameReader::Result::kMessage: return "";
      case FrameReader::Result::kError: return "protocol error: " + error;
      case FrameReader::Result::kNeedMore: break;
    }
    int wait = -1;
    if (deadline >= 0) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return "timed out";
      wait = static_cast<int>(left);
    }
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, wait);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoText("poll", errno);
    }
    if (r == 0) continue;  // re-check the deadline
    size_t want = std::min(sizeof buf, reader->Room());
    ssize_t n = recv(fd, buf, want, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoText("receive", errno);
    }
    if (n == 0) {
      if (reader->buffered() == 0 && closed) *closed = true;
      return reader->buffered() == 0 ? "connection closed" : "connection closed mid-message";
    }
    reader->Append(std::string_view(buf, static_cast<size_t>(n)));
  }
}

namespace {

mode_t FileType(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? (st.st_mode & S_IFMT) : 0;
}

// Copies with read/write through a bounded buffer (no pipe on either side, or splice refused).
std::string CopyLoop(int from, int to) {
  constexpr size_t kBuffer = 128 * 1024;
  std::unique_ptr<char[]> buf(new char[kBuffer]);
  for (;;) {
    ssize_t n = read(from, buf.get(), kBuffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && WaitFor(from, POLLIN)) continue;
      return ErrnoText("read", errno);
    }
    if (n == 0) return "";
    if (!WriteAll(to, buf.get(), static_cast<size_t>(n))) return ErrnoText("write", errno);
  }
}

}  // namespace

std::string Pump(int from, int to) {
  // Only between pipes and regular files. With a socket on either side, splice() can sleep
  // in the socket while holding the fifo's lock, and the command on the other end of the
  // fifo then blocks uninterruptibly (D state, deaf even to SIGKILL) until the socket moves:
  // out of a socket it waits for data (seen with sftp -D: a deadlock), into one it waits for
  // room. Sockets get the copy loop.
  mode_t from_type = FileType(from), to_type = FileType(to);
  bool plain_from = from_type == S_IFIFO || from_type == S_IFREG;
  bool plain_to = to_type == S_IFIFO || to_type == S_IFREG;
  if (plain_from && plain_to && (from_type == S_IFIFO || to_type == S_IFIFO)) {
    // splice() moves pages between a pipe and another fd inside the kernel: no copy through
    // user space. It fails with EINVAL for fd types it does not support (some ttys, files
    // opened with O_APPEND): fall back to the copy loop then, before any byte moved.
    constexpr size_t kChunk = 1 << 20;
    bool moved = false;
    for (;;) {
      ssize_t n = splice(from, nullptr, to, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_MORE);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          // One side is non-blocking: wait for the writer side if it is full, else the reader.
          pollfd out{to, POLLOUT, 0};
          bool writable = poll(&out, 1, 0) == 1 && (out.revents & POLLOUT);
          if (writable ? WaitFor(from, POLLIN) : WaitFor(to, POLLOUT)) continue;
        }
        if (!moved && (errno == EINVAL || errno == ENOSYS)) return CopyLoop(from, to);
        // splice cannot tell which side failed; EPIPE is always the writer's side.
        return ErrnoText(errno == EPIPE ? "write" : "splice", errno);
      }
      if (n == 0) return "";
      moved = true;
    }
  }
  return CopyLoop(from, to);
}

std::string RandomHex16() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return "";
    }
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

void SetNonBlocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return;
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  fcntl(fd, F_SETFL, flags);
}

void SetCloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

namespace {

struct CharMode {
  uint8_t opcode;
  int index;
};
constexpr CharMode kCharModes[] = {
    {1, VINTR}, {2, VQUIT}, {3, VERASE}, {4, VKILL}, {5, VEOF}, {6, VEOL}, {7, VEOL2},
    {8, VSTART}, {9, VSTOP}, {10, VSUSP}, {12, VREPRINT}, {13, VWERASE}, {14, VLNEXT},
};

enum class Field { kIflag, kLflag, kOflag, kCflag };
struct FlagMode {
  uint8_t opcode;
  Field field;
  tcflag_t bit;
};
constexpr FlagMode kFlagModes[] = {
    {30, Field::kIflag, IGNPAR}, {31, Field::kIflag, PARMRK}, {32, Field::kIflag, INPCK},
    {33, Field::kIflag, ISTRIP}, {34, Field::kIflag, INLCR},  {35, Field::kIflag, IGNCR},
    {36, Field::kIflag, ICRNL},  {37, Field::kIflag, IUCLC},  {38, Field::kIflag, IXON},
    {39, Field::kIflag, IXANY},  {40, Field::kIflag, IXOFF},  {41, Field::kIflag, IMAXBEL},
    {42, Field::kIflag, IUTF8},  {50, Field::kLflag, ISIG},   {51, Field::kLflag, ICANON},
    {53, Field::kLflag, ECHO},   {54, Field::kLflag, ECHOE},  {55, Field::kLflag, ECHOK},
    {56, Field::kLflag, ECHONL}, {57, Field::kLflag, NOFLSH}, {58, Field::kLflag, TOSTOP},
    {59, Field::kLflag, IEXTEN}, {60, Field::kLflag, ECHOCTL}, {61, Field::kLflag, ECHOKE},
    {62, Field::kLflag, PENDIN}, {70, Field::kOflag, OPOST},  {71, Field::kOflag, OLCUC},
    {72, Field::kOflag, ONLCR},  {73, Field::kOflag, OCRNL},  {74, Field::kOflag, ONOCR},
    {75, Field::kOflag, ONLRET}, {90, Field::kCflag, CS7},    {91, Field::kCflag, CS8},
    {92, Field::kCflag, PARENB}, {93, Field::kCflag, PARODD},
};

tcflag_t* FieldOf(struct termios* tio, Field f) {
  switch (f) {
    case Field::kIflag: return &tio->c_iflag;
    case Field::kLflag: return &tio->c_lflag;
    case Field::kOflag: return &tio->c_oflag;
    case Field::kCflag: return &tio->c_cflag;
  }
  return &tio->c_iflag;
}

}  // namespace

std::vector<TermMode> EncodeTermModes(const struct termios& tio) {
  std::vector<TermMode> modes;
  for (const CharMode& m : kCharModes) modes.push_back({m.opcode, tio.c_cc[m.index]});
  struct termios copy = tio;
  for (const FlagMode& m : kFlagModes) {
    bool set = m.field == Field::kCflag && (m.bit == CS7 || m.bit == CS8)
                   ? (copy.c_cflag & CSIZE) == m.bit
                   : (*FieldOf(&copy, m.field) & m.bit) != 0;
    modes.push_back({m.opcode, set ? 1u : 0u});
  }
  return modes;
}

void ApplyTermModes(const std::vector<TermMode>& modes, struct termios* tio) {
  for (const TermMode& mode : modes) {
    for (const CharMode& m : kCharModes) {
      if (m.opcode == mode.opcode) tio->c_cc[m.index] = static_cast<cc_t>(mode.value);
    }
    for (const FlagMode& m : kFlagModes) {
      if (m.opcode != mode.opcode) continue;
      if (m.bit == CS7 || m.bit == CS8) {
        if (mode.value) tio->c_cflag = (tio->c_cflag & ~CSIZE) | m.bit;
        continue;
      }
      tcflag_t* field = FieldOf(tio, m.field);
      *field = mode.value ? (*field | m.bit) : (*field & ~m.bit);
    }
  }
}

}  // namespace allgo::bridge
