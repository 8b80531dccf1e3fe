// RawTerminal: puts a terminal in raw mode for the life of the object and always restores it.
// In raw mode every key, Ctrl-C included, goes to the sandbox's pty, whose line discipline
// turns it into SIGINT for the sandbox process: the bridge itself never sees the signal.
#pragma once

#include <termios.h>

namespace allgo::bridge {

class RawTerminal {
 public:
  RawTerminal() = default;
  ~RawTerminal() { Restore(); }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  // False (and nothing changed) if fd is not a terminal.
  bool Enter(int fd);
  void Restore();

 private:
  int fd_ = -1;
  struct termios saved_ {};
};

}  // namespace allgo::bridge
