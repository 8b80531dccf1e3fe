#include "service/gateway_server.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "allgo/identity.h"
#include "service/gateway_socket.h"

namespace allgo::gateway {

GatewayServer::GatewayServer(SessionContext context, UniqueFd listener, std::string socket_path)
    : ctx_(context), listener_(std::move(listener)), socket_path_(std::move(socket_path)),
      stop_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  ctx_.stop = stop_.get();
  ctx_.refusal_log = &refusal_log_;
}

Status GatewayServer::Serve(int signals) {
  if (!stop_) return Status::FromErrno("eventfd", errno);
  uint64_t number = 0;
  std::vector<pollfd> p;
  for (;;) {
    p.assign({{listener_.get(), POLLIN, 0}, {signals, POLLIN, 0}});
    const int timeout = refusals_.Watch(&p);
    if (poll(p.data(), p.size(), timeout) < 0) {
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
    refusals_.Serve(p.data() + 2, p.size() - 2);
    refusal_log_.Flush();
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
    Admit(std::move(client), ++number);
  }
}

void GatewayServer::Admit(UniqueFd client, uint64_t number) {
  PeerCredentials peer;
  if (Status s = PeerOf(client.get(), &peer); !s.ok()) {
    if (refusal_log_.Take()) spdlog::error("connection {}: {}", number, s.message());
    return;
  }
  const std::string who = "session " + std::to_string(number) + " uid " + std::to_string(peer.uid) + " pid " +
                          std::to_string(peer.pid);
  const Config& config = *ctx_.config;
  if (!IsWebappUid(config.nss, peer.uid)) {
    return refusals_.Refuse(std::move(client), who,
                            "uid " + std::to_string(peer.uid) + " is not a webapp (webapp uids are " +
                                std::to_string(config.nss.min_uid) + " to " + std::to_string(config.nss.max_uid) +
                                "); the sandbox gateway serves only allgo webapps");
  }
  bool total_full = false;
  SessionLimits::Slot slot = ctx_.limits->Acquire(peer.uid, &total_full);
  if (!slot) {
    return refusals_.Refuse(
        std::move(client), who,
        total_full ? "the sandbox gateway is serving its maximum of " + std::to_string(SessionLimits::kMaxTotal) +
                         " sessions; try again in a moment, or tell the allgo operators"
                   : "uid " + std::to_string(peer.uid) + " already has " + std::to_string(SessionLimits::kMaxPerUid) +
                         " sessions open through the sandbox gateway (the limit); end some first");
  }
  auto session = std::make_unique<Session>(ctx_, std::move(client), number, peer, std::move(slot));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++running_;
  }
  try {
    // The thread owns the session; if it cannot start, the session is still ours to refuse.
    std::thread([this, raw = session.get()] {
      std::unique_ptr<Session>(raw)->Run();
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) idle_.notify_all();
    }).detach();
    session.release();
  } catch (const std::system_error& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) idle_.notify_all();
    }
    refusals_.Refuse(session->TakeClient(), who,
                     std::string("the sandbox gateway cannot start a session now (no thread: ") + e.what() +
                         "); try again in a moment, or tell the allgo operators");
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
