#include "stdio_session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "agent.h"
#include "log.h"
#include "loop_helpers.h"
#include "spawn.h"
#include "stream_server.h"
#include "allgo/bridge/protocol.h"
#include "allgo/bridge/byte_queue.h"
#include "allgo/unique_fd.h"
#include "allgo/bridge/io.h"

namespace allgo::bridge {
namespace {

constexpr size_t kMaxToChild = 256 * 1024;   // stdin bytes waiting for the process
constexpr size_t kMaxToStream = 256 * 1024;  // encoded frames waiting for the client
constexpr int kDataPipeSize = 1 << 20;       // the process's stdin and stdout pipes
constexpr int kPtyDrainTimeoutMs = 2000;     // output after the shell exited (as agent.cc)
constexpr int kExitNoSession = 1;
constexpr int kExitClientGone = 255;

class StdioSession {
 public:
  explicit StdioSession(const StdioOptions& options) : options_(options) {}

  // After Run: whether the client speaks the stream mode, and the bytes it sent so far.
  bool HandedOver(std::string* initial) {
    if (handed_over_) *initial = std::move(stream_mode_);
    return handed_over_;
  }

  int Run() {
    PrepareAgentProcess();
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signals_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals_) {
      Fail(ErrnoText("signalfd", errno));
      return status_;
    }
    SetNonBlocking(options_.in, true);
    SetNonBlocking(options_.out, true);
    // Under an engine's exec both are pipes to the runtime's copier: bigger ones let it move
    // more per wake-up (best effort; not a pipe, or over the user's pipe quota: no change).
    fcntl(options_.in, F_SETPIPE_SZ, kDataPipeSize);
    fcntl(options_.out, F_SETPIPE_SZ, kDataPipeSize);
    deadline_ = NowMs() + options_.handshake_timeout_ms;
    while (status_ < 0) Step();
    return status_;
  }

 private:
  enum class State { kAwaitOpen, kStarting, kRunning, kExited };

  bool pty() const { return request_.pty; }
  bool OutputsDone() const { return out_eof_ && (pty() || err_eof_); }

  void Step() {
    if (state_ == State::kExited && exit_sent_ && OutputsDone() && to_stream_.empty()) {
      status_ = exit_.ShellStatus();
      Log(LogLevel::kInfo, "stdio session ended with %d", status_);
      return;
    }
    enum Role { kSignals, kIn, kOut, kReport, kChildIn, kChildOut, kChildErr };
    pollfd fds[7];
    for (pollfd& p : fds) p = pollfd{-1, 0, 0};
    fds[kSignals] = {signals_.get(), POLLIN, 0};
    if (!stream_eof_ && to_child_.size() < kMaxToChild) fds[kIn] = {options_.in, POLLIN, 0};
    if (!to_stream_.empty()) fds[kOut] = {options_.out, POLLOUT, 0};
    if (report_) fds[kReport] = {report_.get(), POLLIN, 0};
    if (child_in_ && !to_child_.empty()) fds[kChildIn] = {child_in_.get(), POLLOUT, 0};
    // Output only once `started` is queued: nothing of the process may precede it.
    bool room = to_stream_.size() < kMaxToStream && (state_ == State::kRunning || state_ == State::kExited);
    if (child_out_ && room) fds[kChildOut] = {child_out_.get(), POLLIN, 0};
    if (child_err_ && room) fds[kChildErr] = {child_err_.get(), POLLIN, 0};
    int timeout = -1;
    if (deadline_ >= 0) timeout = static_cast<int>(std::max<int64_t>(0, deadline_ - NowMs()));
    if (poll(fds, 7, timeout) < 0 && errno != EINTR) {
      Hangup(ErrnoText("poll", errno));
      return;
    }
    if (fds[kSignals].revents) DrainSignals();
    if (status_ >= 0) return;
    if (fds[kReport].revents) OnExecReport();
    if (status_ >= 0) return;
    if (fds[kIn].revents) ReadStream();
    if (status_ >= 0) return;
    WriteChild();
    if (fds[kChildOut].revents) ReadChild(&child_out_, Stream::kStdout, &out_eof_);
    if (fds[kChildErr].revents) ReadChild(&child_err_, Stream::kStderr, &err_eof_);
    CheckDeadline();
    if (status_ >= 0) return;
    if (state_ == State::kExited && !exit_sent_ && (!pty() || out_eof_)) SendExit();
    WriteStream();
  }

  // ---- the client's stream ----

  void ReadStream() {
    // Read straight into the frame reader; data frames then go to the process without
    // being copied into a message first (the bulk of an upload).
    ssize_t n = ReadFrames(options_.in, &reader_);
    const int error_number = errno;
    if (n < 0 && (error_number == EAGAIN || error_number == EINTR)) return;
    if (n > 0 && state_ == State::kAwaitOpen && StartsStreamMode(reader_)) {
      // A version 3 client (the gateway relaying a forwarding connection): ServeStdio hands
      // everything read so far to a StreamServer on the same fds.
      stream_mode_ = std::string(reader_.Unread());
      handed_over_ = true;
      status_ = 0;
      return;
    }
    if (n <= 0) {
      stream_eof_ = true;
      // Only the relay closing before the end; after the exit status there is nothing to hang up.
      if (state_ != State::kExited || !exit_sent_) Hangup(n == 0 ? "the client closed the stream" : strerror(error_number));
      return;
    }
    for (;;) {
      Message m;
      DataView data;
      std::string error;
      auto r = reader_.NextView(&m, &data, &error);
      if (r == FrameReader::Result::kNeedMore) return;
      if (r == FrameReader::Result::kError) return Fail("protocol error: " + error);
      if (!data.bytes.empty()) {
        HandleData(data);
      } else {
        Handle(m);
      }
      if (status_ >= 0) return;
    }
  }

  void HandleData(const DataView& data) {
    if (state_ == State::kAwaitOpen || data.stream != Stream::kStdin || stdin_eof_) {
      return Fail("unexpected message at this point of the session");
    }
    // Data after the process closed its stdin is dropped, as a pipe with no reader would.
    if (!child_in_ && state_ != State::kStarting) return;
    std::string_view bytes = data.bytes;
    if (child_in_ && to_child_.empty()) {  // the usual case: straight to the process
      ssize_t n = write(child_in_.get(), bytes.data(), bytes.size());
      if (n > 0) bytes.remove_prefix(static_cast<size_t>(n));
      // An error (EAGAIN, or EPIPE once the process closed its stdin) is WriteChild's to
      // handle: the bytes are queued and it tries again.
    }
    to_child_.Append(bytes);
  }

  void Handle(Message& m) {
    bool started = state_ != State::kAwaitOpen;
    if (auto* open = std::get_if<Open>(&m); open && !started) {
      request_ = std::move(*open);
      return Start();
    }
    if (auto* eof = std::get_if<Eof>(&m); eof && started && eof->stream == Stream::kStdin && !stdin_eof_) {
      stdin_eof_ = true;  // closed once what is buffered reached the process (WriteChild)
      return;
    }
    if (auto* window = std::get_if<Window>(&m); window && started) {
      if (master_) {
        struct winsize ws{};
        ws.ws_row = window->size.rows;
        ws.ws_col = window->size.cols;
        ws.ws_xpixel = window->size.xpixel;
        ws.ws_ypixel = window->size.ypixel;
        ioctl(master_.get(), TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the foreground
      }
      return;
    }
    if (auto* sig = std::get_if<Signal>(&m); sig && started) {
      if (pid_ > 0 && !exited_) kill(-pid_, sig->signo);
      return;
    }
    Fail("unexpected message at this point of the session");
  }

  void Queue(const Message& m) { to_stream_.Append(EncodeFrame(m)); }

  void WriteStream() {
    while (!to_stream_.empty()) {
      ssize_t n = write(options_.out, to_stream_.data(), to_stream_.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) return Hangup(ErrnoText("write to the client", errno));
      to_stream_.Consume(static_cast<size_t>(n));
    }
  }

  // ---- the process ----

  void Start() {
    Log(LogLevel::kInfo, "stdio session: %s%s",
        request_.login_shell ? "a login shell" : ("a " + std::to_string(request_.command.size()) + "-byte command").c_str(),
        request_.pty ? " on a pty" : "");
    if (std::string missing = MissingTransferTool(request_); !missing.empty()) return Fail(missing);
    std::string error;
    Spawned spawned;
    if (pty()) {
      int master = -1;
      spawned = SpawnOnPty(request_, &master, &error);
      master_.reset(master);
      if (master_) {
        child_in_.reset(fcntl(master_.get(), F_DUPFD_CLOEXEC, 3));
        child_out_.reset(fcntl(master_.get(), F_DUPFD_CLOEXEC, 3));
      }
    } else {
      int in[2], out[2], err[2];
      if (pipe2(in, O_CLOEXEC) != 0) return Fail(ErrnoText("pipe", errno));
      UniqueFd in_r(in[0]), in_w(in[1]);
      if (pipe2(out, O_CLOEXEC) != 0) return Fail(ErrnoText("pipe", errno));
      UniqueFd out_r(out[0]), out_w(out[1]);
      if (pipe2(err, O_CLOEXEC) != 0) return Fail(ErrnoText("pipe", errno));
      UniqueFd err_r(err[0]), err_w(err[1]);
      // Bigger pipes mean fewer wake-ups per byte (best effort, as for the fifos).
      fcntl(in_w.get(), F_SETPIPE_SZ, kDataPipeSize);
      fcntl(out_r.get(), F_SETPIPE_SZ, kDataPipeSize);
      spawned = SpawnCommand(request_, in_r.get(), out_w.get(), err_w.get(), &error);
      // The process's ends close here: its exit is then EOF on ours.
      child_in_ = std::move(in_w);
      child_out_ = std::move(out_r);
      child_err_ = std::move(err_r);
      for (UniqueFd* fd : {&child_in_, &child_out_, &child_err_}) SetNonBlocking(fd->get(), true);
    }
    if (spawned.pid < 0) return Fail(error);
    pid_ = spawned.pid;
    report_.reset(spawned.report);
    program_ = spawned.program;
    state_ = State::kStarting;
    deadline_ = -1;
  }

  void OnExecReport() {
    Spawned spawned;
    spawned.pid = pid_;
    spawned.report = report_.get();
    spawned.program = program_;
    std::string error = ExecReport(spawned);
    report_.reset();
    if (!error.empty()) return Fail(error);
    Log(LogLevel::kInfo, "stdio session: started pid %d", pid_);
    Queue(Started{static_cast<uint32_t>(pid_)});
    state_ = exited_ ? State::kExited : State::kRunning;
    if (exited_ && pty()) deadline_ = NowMs() + kPtyDrainTimeoutMs;
  }

  void WriteChild() {
    if (!child_in_) return;
    while (!to_child_.empty()) {
      ssize_t n = write(child_in_.get(), to_child_.data(), to_child_.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) {  // the process closed its stdin: what it did not read is dropped
        to_child_.clear();
        if (!pty()) child_in_.reset();
        return;
      }
      to_child_.Consume(static_cast<size_t>(n));
    }
    // EOF for the process's stdin; on a pty the terminal stays (as in the socket mode).
    if (stdin_eof_ && !pty()) child_in_.reset();
  }

  void ReadChild(UniqueFd* fd, Stream stream, bool* eof) {
    while (to_stream_.size() < kMaxToStream) {
      // Read straight into the outgoing buffer behind a data frame header (no copy).
      char* at = to_stream_.Grow(kDataFrameHeader + kMaxData);
      ssize_t n = read(fd->get(), at + kDataFrameHeader, kMaxData);
      to_stream_.Shrink(kDataFrameHeader + kMaxData - (n > 0 ? kDataFrameHeader + static_cast<size_t>(n) : 0));
      if (n > 0) {
        PutDataFrameHeader(at, stream, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      // EOF, or EIO on a pty master once every slave fd closed.
      fd->reset();
      *eof = true;
      Queue(Eof{stream});
      return;
    }
  }

  void SendExit() {
    exit_sent_ = true;
    if (pty()) {  // the terminal goes with the shell, as in the socket mode (FinishPty)
      child_in_.reset();
      master_.reset();
    }
    Queue(exit_);
  }

  void CheckDeadline() {
    if (deadline_ < 0 || NowMs() < deadline_) return;
    deadline_ = -1;
    if (state_ == State::kAwaitOpen) return Fail("handshake timed out");
    if (state_ == State::kExited && pty() && !out_eof_) {
      // A background job still holds the terminal: end the output here.
      child_out_.reset();
      out_eof_ = true;
      Queue(Eof{Stream::kStdout});
    }
  }

  void DrainSignals() {
    signalfd_siginfo info;
    while (read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (info.ssi_signo == SIGCHLD) {
        ReapChildren();
      } else {
        Hangup("signal " + std::to_string(info.ssi_signo));
        return;
      }
    }
  }

  void ReapChildren() {
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      if (pid != pid_ || exited_) continue;
      exited_ = true;
      exit_ = WIFSIGNALED(status) ? Exit{true, static_cast<uint8_t>(WTERMSIG(status)), WCOREDUMP(status) != 0}
                                  : Exit{false, static_cast<uint8_t>(WEXITSTATUS(status)), false};
      Log(LogLevel::kInfo, "stdio session: pid %d ended with %s %d", pid, exit_.signaled ? "signal" : "status",
          exit_.code);
      // Before the exec is confirmed the client has not been told it started: OnExecReport
      // moves on to kExited.
      if (state_ == State::kRunning) {
        state_ = State::kExited;
        if (pty()) deadline_ = NowMs() + kPtyDrainTimeoutMs;
      }
    }
  }

  // The session cannot go on: one `error` for the client, then the end.
  void Fail(const std::string& why) {
    Log(LogLevel::kWarn, "stdio session: %s", why.c_str());
    std::string frame = EncodeFrame(Error{Printable(why)});
    SetNonBlocking(options_.out, false);
    WriteStream();  // what was queued before (e.g. `started`) comes first
    WriteAll(options_.out, frame.data(), frame.size());
    HangupProcess();
    status_ = kExitNoSession;
  }

  // The client went away (or we were told to stop): what a terminal hang-up does.
  void Hangup(const std::string& why) {
    Log(LogLevel::kInfo, "stdio session closed: %s", why.c_str());
    HangupProcess();
    status_ = kExitClientGone;
  }

  void HangupProcess() {
    if (pid_ > 0 && !exited_) {
      kill(-pid_, SIGHUP);
      kill(-pid_, SIGCONT);
    }
  }

  StdioOptions options_;
  UniqueFd signals_;
  FrameReader reader_{Mode::kStdio};
  State state_ = State::kAwaitOpen;
  int64_t deadline_ = -1;
  int status_ = -1;  // >= 0: the session is over, with this agent exit status
  Open request_;
  pid_t pid_ = -1;
  UniqueFd report_;
  std::string program_;
  bool exited_ = false;
  Exit exit_;
  bool exit_sent_ = false;
  UniqueFd master_, child_in_, child_out_, child_err_;
  ByteQueue to_child_, to_stream_;
  bool stream_eof_ = false, stdin_eof_ = false, out_eof_ = false, err_eof_ = false;
  bool handed_over_ = false;
  std::string stream_mode_;
};

}  // namespace

int ServeStdio(const StdioOptions& options) {
  std::string initial;
  {
    StdioSession session(options);
    int status = session.Run();
    if (!session.HandedOver(&initial)) return status;
  }
  StreamServerOptions streams;
  streams.in = options.in;
  streams.out = options.out;
  streams.initial = std::move(initial);
  streams.name = "stdio connection";
  return StreamServer(std::move(streams)).Run();
}

}  // namespace allgo::bridge
