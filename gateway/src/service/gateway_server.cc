#include "service/gateway_server.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <thread>

namespace allgo::gateway {

GatewayServer::GatewayServer(SessionContext context, UniqueFd listener, std::string socket_path)
    : ctx_(context), listener_(std::move(listener)), socket_path_(std::move(socket_path)),
      stop_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  ctx_.stop = stop_.get();
}

Status GatewayServer::Serve(int signals) {
  if (!stop_) return Status::FromErrno("eventfd", errno);
  uint64_t number = 0;
  for (;;) {
    pollfd p[2] = {{listener_.get(), POLLIN, 0}, {signals, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("poll", errno);
    }
    if (p[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        spdlog::info("signal {}: stopping", strsignal(static_cast<int>(info.ssi_signo)));
      }
      Shutdown();
      return Status::Ok();
    }
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) {
      // EMFILE and friends: the others keep being served; do not spin on a full table.
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        spdlog::error("accept: {}", strerror(errno));
        usleep(100 * 1000);
      }
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++running_;
    }
    std::thread([this, fd = client.release(), n = ++number]() mutable {
      Session(ctx_, UniqueFd(fd), n).Run();
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) idle_.notify_all();
    }).detach();
  }
}

void GatewayServer::Shutdown() {
  listener_.reset();
  if (unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove {}: {} (the next start replaces it)", socket_path_, strerror(errno));
  }
  uint64_t one = 1;
  ssize_t ignored = write(stop_.get(), &one, sizeof one);
  (void)ignored;
  std::unique_lock<std::mutex> lock(mu_);
  spdlog::info("closing {} session(s)", running_);
  idle_.wait(lock, [this] { return running_ == 0; });
  spdlog::info("stopped");
}

}  // namespace allgo::gateway
