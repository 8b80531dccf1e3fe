#include "service/refusals.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "allgo/bridge/protocol.h"

namespace allgo::gateway {

std::string RefusalFrame(const std::string& text) {
  std::string printable;
  for (char c : text) {
    if (printable.size() >= bridge::kMaxErrorText) break;
    printable += (c >= 0x20 && c <= 0x7e) ? c : '?';
  }
  return bridge::EncodeFrame(bridge::Message(bridge::Error{printable}));
}

bool LogBudget::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  LineBudget::Summary ended;
  const uint64_t before = budget_.total();
  const bool take = budget_.Take(LineBudget::Clock::now(), &ended);
  Write(ended, before);
  return take;
}

void LogBudget::Flush(bool now_too) {
  std::lock_guard<std::mutex> lock(mu_);
  Write(budget_.Flush(LineBudget::Clock::now(), now_too), budget_.total());
}

uint64_t LogBudget::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return budget_.total();
}

void LogBudget::Write(const LineBudget::Summary& summary, uint64_t total) const {
  if (summary.count == 0) return;
  spdlog::warn("{} more {} in the last {} s, not logged one by one (at most {} lines per {} s); {} since the start",
               summary.count, what_, std::chrono::duration_cast<std::chrono::seconds>(summary.span).count(),
               budget_.lines(), std::chrono::duration_cast<std::chrono::seconds>(budget_.window()).count(), total);
}

void Refusals::Refuse(UniqueFd client, const std::string& who, const std::string& text) {
  if (log_->Take()) spdlog::warn("{}: refused: {}", who, text);
  int flags = fcntl(client.get(), F_GETFL);
  if (flags >= 0) fcntl(client.get(), F_SETFL, flags | O_NONBLOCK);
  std::string frame = RefusalFrame(text);
  // Fits in a fresh socket's buffer; a client already gone just makes it fail.
  ssize_t ignored = send(client.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)ignored;
  shutdown(client.get(), SHUT_WR);
  if (lingering_.size() >= kMaxLingering) lingering_.pop_front();
  lingering_.push_back({std::move(client), std::chrono::steady_clock::now() + std::chrono::milliseconds(kLingerMs)});
}

int Refusals::Watch(std::vector<pollfd>* fds) {
  auto now = std::chrono::steady_clock::now();
  while (!lingering_.empty() && lingering_.front().until <= now) lingering_.pop_front();
  if (lingering_.empty()) return -1;
  for (const Lingering& l : lingering_) fds->push_back({l.fd.get(), POLLIN, 0});
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(lingering_.front().until - now).count();
  return static_cast<int>(left) + 1;
}

void Refusals::Serve(const pollfd* fds, size_t n) {
  char sink[4096];
  for (size_t i = 0, at = 0; i < n && at < lingering_.size(); ++i) {
    while (at < lingering_.size() && lingering_[at].fd.get() != fds[i].fd) ++at;
    if (at == lingering_.size()) break;
    bool ended = (fds[i].revents & (POLLERR | POLLNVAL)) != 0;
    if (!ended && (fds[i].revents & (POLLIN | POLLHUP))) {
      ssize_t got = recv(fds[i].fd, sink, sizeof sink, MSG_DONTWAIT);
      ended = got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR);
    }
    if (ended) {
      lingering_.erase(lingering_.begin() + static_cast<std::ptrdiff_t>(at));
    } else {
      ++at;
    }
  }
}

}  // namespace allgo::gateway
