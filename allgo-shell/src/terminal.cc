#include "terminal.h"

namespace allgo::bridge {

bool RawTerminal::Enter(int fd) {
  if (tcgetattr(fd, &saved_) != 0) return false;
  struct termios raw = saved_;
  cfmakeraw(&raw);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(fd, TCSADRAIN, &raw) != 0) return false;
  fd_ = fd;
  return true;
}

void RawTerminal::Restore() {
  if (fd_ < 0) return;
  tcsetattr(fd_, TCSADRAIN, &saved_);
  fd_ = -1;
}

}  // namespace allgo::bridge
