#include "stdio_client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>

#include "allgo/bridge/io.h"
#include "session_common.h"
#include "terminal.h"

namespace allgo::bridge {
namespace {

// What the threads share. Held by shared_ptr: a thread abandoned on an early return (blocked
// in read(0)) may outlive RunStdioSession.
struct Shared {
  int stream = -1;
  int done = -1;  // eventfd: the reader thread finished (outcome set)
  std::mutex send_mu;  // one whole frame at a time on the stream
  bool Send(const Message& m) {
    std::string frame = EncodeFrame(m);
    return SendFrame(frame.data(), frame.size());
  }
  bool SendFrame(const char* frame, size_t size) {
    std::lock_guard<std::mutex> lock(send_mu);
    return WriteAll(stream, frame, size);
  }

  enum class Outcome { kNone, kDone, kRefused, kLost };
  std::mutex mu;
  Outcome outcome = Outcome::kNone;
  Exit exit;
  std::string why;
  void Finish(Outcome o, std::string reason = "") {
    {
      std::lock_guard<std::mutex> lock(mu);
      outcome = o;
      why = std::move(reason);
    }
    uint64_t one = 1;
    ssize_t ignored = write(done, &one, sizeof one);
    (void)ignored;
  }
};

// stdin → data(stdin) frames, then eof(stdin).
void SendInput(const std::shared_ptr<Shared>& shared) {
  // Read straight in behind a data frame header: no copy on the way to the stream.
  static char frame[kDataFrameHeader + kMaxData];  // one input thread per process
  char* buf = frame + kDataFrameHeader;
  for (;;) {
    ssize_t n = read(0, buf, kMaxData);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {  // a non-blocking stdin handed over by the parent
      pollfd p{0, POLLIN, 0};
      poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) break;
    PutDataFrameHeader(frame, Stream::kStdin, static_cast<size_t>(n));
    if (!shared->SendFrame(frame, kDataFrameHeader + static_cast<size_t>(n))) return;
  }
  shared->Send(Eof{Stream::kStdin});
}

// Frames from the agent → our stdout/stderr, until the exit status and the end of every output.
void ReceiveOutput(const std::shared_ptr<Shared>& shared, bool pty) {
  FrameReader reader(Mode::kStdio);
  bool started = false, have_exit = false, out_eof = false, err_eof = pty;
  bool out_broken = false, err_broken = false;  // our reader went away: the data is dropped
  for (;;) {
    Message m;
    DataView data;
    std::string error;
    auto r = reader.NextView(&m, &data, &error);
    if (r == FrameReader::Result::kError) return shared->Finish(Shared::Outcome::kLost, "protocol error: " + error);
    if (r == FrameReader::Result::kNeedMore) {
      // Straight into the reader, and data frames straight out of it (no copies).
      size_t want = reader.Room();
      char* at = reader.Grow(want);
      ssize_t n = read(shared->stream, at, want);
      const int error_number = errno;
      reader.Shrink(want - static_cast<size_t>(std::max<ssize_t>(n, 0)));
      if (n < 0 && error_number == EINTR) continue;
      if (n <= 0) {
        return shared->Finish(Shared::Outcome::kLost,
                              n == 0 ? "the connection closed" : strerror(error_number));
      }
      continue;
    }
    if (!data.bytes.empty()) {
      if (!started || data.stream == Stream::kStdin) {
        return shared->Finish(Shared::Outcome::kLost, "protocol error: unexpected message from the agent");
      }
      bool to_err = data.stream == Stream::kStderr;
      bool& broken = to_err ? err_broken : out_broken;
      if (!broken && !WriteAll(to_err ? 2 : 1, data.bytes.data(), data.bytes.size())) broken = true;
      continue;  // data never completes the session (the exit and EOFs do)
    }
    if (auto* e = std::get_if<Error>(&m)) {
      return shared->Finish(started ? Shared::Outcome::kLost : Shared::Outcome::kRefused, e->text);
    }
    if (std::holds_alternative<Started>(m) && !started) {
      started = true;
    } else if (auto* eof = std::get_if<Eof>(&m); eof && started && eof->stream != Stream::kStdin) {
      (eof->stream == Stream::kStderr ? err_eof : out_eof) = true;
    } else if (auto* x = std::get_if<Exit>(&m); x && started && !have_exit) {
      have_exit = true;
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->exit = *x;
    } else {
      return shared->Finish(Shared::Outcome::kLost, "protocol error: unexpected message from the agent");
    }
    // Like sshd: the session ends when the process exited and its output reached EOF.
    if (have_exit && out_eof && err_eof) return shared->Finish(Shared::Outcome::kDone);
  }
}

std::string GoneReason(int signo) {
  if (signo == SIGHUP) return "hung up";
  if (signo == SIGTERM) return "terminated";
  return "the reader of our output went away";
}

}  // namespace

int RunStdioSession(int stream, const Open& request, int signals, const std::string& name) {
  auto shared = std::make_shared<Shared>();
  shared->stream = stream;
  shared->done = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // never closed: see Shared
  if (shared->done < 0) {
    Say(ErrnoText("eventfd", errno));
    return kExitSetup;
  }
  RawTerminal terminal;
  if (request.pty) terminal.Enter(0);
  auto lost = [&](const std::string& why) {
    terminal.Restore();
    // The far end is the agent, or the sandbox gateway relaying it: either may have stopped
    // (a container removed, a node down, the gateway restarted), and we cannot tell which.
    Say("lost the connection to the sandbox of '" + name + "' (" + why +
        "); the sandbox agent or the gateway to it stopped, so the command's outcome is unknown");
    return kExitLostAgent;
  };
  if (!shared->Send(request)) return lost(ErrnoText("send", errno));
  std::thread(ReceiveOutput, shared, request.pty).detach();
  std::thread(SendInput, shared).detach();  // it may sit in read(0) forever

  int64_t leave_at = -1;  // set once our own client is gone
  int gone_signo = 0;
  auto client_gone = [&](int signo) {
    if (leave_at >= 0) return;
    leave_at = NowMs() + kHangupGraceMs;
    gone_signo = signo;
  };
  bool watch_stdout = true;
  for (;;) {
    int timeout = -1;
    if (leave_at >= 0) {
      int64_t left = leave_at - NowMs();
      if (left <= 0) break;
      timeout = static_cast<int>(left);
    }
    pollfd pfds[3] = {{signals, POLLIN, 0}, {shared->done, POLLIN, 0}, {watch_stdout ? 1 : -1, 0, 0}};
    if (poll(pfds, 3, timeout) < 0) {
      if (errno == EINTR) continue;
      return lost(ErrnoText("poll", errno));
    }
    if (pfds[2].revents != 0) {
      watch_stdout = false;
      if (pfds[2].revents & (POLLERR | POLLHUP)) client_gone(0);
    }
    if (pfds[1].revents & POLLIN) {
      std::lock_guard<std::mutex> lock(shared->mu);
      switch (shared->outcome) {
        case Shared::Outcome::kDone: return shared->exit.ShellStatus();
        case Shared::Outcome::kRefused:
          terminal.Restore();
          // The text is the agent's (it could not spawn) or the gateway's (no webapp, sandbox not
          // running, node down): both are sentences about this sandbox.
          Say("the session in the sandbox of '" + name + "' did not start: " + shared->why);
          return kExitSetup;
        case Shared::Outcome::kLost: return lost(shared->why);
        case Shared::Outcome::kNone: break;
      }
    }
    if (pfds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        int signo = static_cast<int>(info.ssi_signo);
        if (signo == SIGHUP || signo == SIGTERM) client_gone(signo);
        Message relay;
        if (signo == SIGWINCH) {
          struct winsize ws{};
          if (!request.pty || ioctl(0, TIOCGWINSZ, &ws) != 0) continue;
          relay = Window{{ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel}};
          if (!Validate(relay, Mode::kStdio).empty()) continue;
        } else {
          relay = Signal{static_cast<uint8_t>(signo)};
        }
        shared->Send(relay);  // a failure shows up as the end of the stream
      }
    }
  }
  // The client is gone and the grace period is over. Leaving closes the stream: the agent
  // hangs the command up (SIGHUP, SIGCONT).
  terminal.Restore();
  Say(GoneReason(gone_signo) + ": leaving the session in the sandbox of '" + name +
      "'; its command did not end within " + std::to_string(kHangupGraceMs / 1000) +
      " s and is hung up now (if it ignores SIGHUP, it keeps running there)");
  return 128 + (gone_signo != 0 ? gone_signo : SIGHUP);
}

}  // namespace allgo::bridge
