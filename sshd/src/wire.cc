#include "wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace allgo::sshd {

void WireWriter::PutU32(uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) data_.push_back(static_cast<char>((v >> shift) & 0xff));
}

void WireWriter::PutString(std::string_view s) {
  PutU32(static_cast<uint32_t>(s.size()));
  data_.append(s);
}

bool WireReader::GetU8(uint8_t* v) {
  if (!ok_ || data_.size() - pos_ < 1) return ok_ = false;
  *v = static_cast<uint8_t>(data_[pos_++]);
  return true;
}

bool WireReader::GetU32(uint32_t* v) {
  if (!ok_ || data_.size() - pos_ < 4) return ok_ = false;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r = (r << 8) | static_cast<uint8_t>(data_[pos_++]);
  *v = r;
  return true;
}

bool WireReader::GetString(std::string* s, size_t max_len) {
  uint32_t len = 0;
  if (!GetU32(&len)) return false;
  if (len > max_len || data_.size() - pos_ < len) return ok_ = false;
  s->assign(data_.substr(pos_, len));
  pos_ += len;
  return true;
}

Status SendRecord(int sock, const std::string& payload, const std::vector<int>& fds) {
  if (payload.size() > kMaxMessage || fds.size() > kMaxFdsPerMessage) {
    return Status::Invalid("monitor message too large");
  }
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  if (!fds.empty()) {
    std::memset(control, 0, sizeof(control));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  while (true) {
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return Status::Ok();
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      pollfd p{sock, POLLOUT, 0};
      poll(&p, 1, 1000);
      continue;
    }
    return Status::FromErrno("monitor socket send", errno);
  }
}

Status ReceiveRecord(int sock, int timeout_ms, WireMessage* out, bool* closed) {
  *closed = false;
  out->payload.clear();
  out->fds.clear();
  if (timeout_ms != 0) {
    pollfd p{sock, POLLIN, 0};
    int r;
    do {
      r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return Status::FromErrno("monitor socket poll", errno);
    if (r == 0) return Status::Unavailable("monitor socket: timed out");
  }
  // Received into a buffer that is not zero-filled, then copied at its real size: resizing
  // the payload to 64 KiB would write 16 pages in every monitor and network child (each one a
  // private copy of the listener's heap), ~120 KiB per idle session for bytes never used.
  std::unique_ptr<char[]> buffer(new char[kMaxMessage + 1]);
  iovec iov{buffer.get(), kMaxMessage + 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    out->payload.clear();
    if (errno == EAGAIN) return Status::Unavailable("monitor socket: no message");
    return Status::FromErrno("monitor socket receive", errno);
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out->fds.emplace_back(fd);
    }
  }
  if (n == 0 && out->fds.empty()) {
    out->payload.clear();
    *closed = true;
    return Status::Ok();
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || static_cast<size_t>(n) > kMaxMessage ||
      out->fds.size() > kMaxFdsPerMessage) {
    out->payload.clear();
    out->fds.clear();
    return Status::Invalid("monitor message truncated or oversized");
  }
  out->payload.assign(buffer.get(), static_cast<size_t>(n));
  return Status::Ok();
}

}  // namespace allgo::sshd
