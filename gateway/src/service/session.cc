#include "service/session.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>

#include "allgo/bridge/protocol.h"
#include "allgo/engine_client.h"
#include "allgo/identity.h"
#include "io.h"
#include "service/agent_log.h"
#include "service/gateway_socket.h"
#include "service/relay.h"
#include "service/spare_pool.h"

namespace allgo::gateway {

namespace {

constexpr int kRefusalLingerMs = 2000;

std::string PrintableAscii(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (out.size() >= bridge::kMaxErrorText) break;
    out += (c >= 0x20 && c <= 0x7e) ? c : '?';
  }
  return out;
}

}  // namespace

engine::ExecOptions AgentExecOptions(const Config& config, int handshake_timeout_s) {
  engine::ExecOptions exec;
  exec.cmd = {config.docker.agent, "--stdio"};
  if (handshake_timeout_s > 0) {
    exec.cmd.push_back("--handshake-timeout");
    exec.cmd.push_back(std::to_string(handshake_timeout_s));
  }
  exec.attach_stdin = exec.attach_stdout = exec.attach_stderr = true;
  exec.tty = false;
  return exec;
}

void Session::Refuse(const std::string& text) {
  spdlog::warn("{}: refused: {}", tag_, text);
  std::string frame = bridge::EncodeFrame(bridge::Message(bridge::Error{PrintableAscii(text)}));
  // The client waits for an answer and the socket buffer is empty: this write does not block
  // for long; a client that is already gone just makes it fail.
  bridge::WriteAll(client_.get(), frame.data(), frame.size());
  // Closing now could beat the client's own `open` (it connects, then sends): its send would
  // fail (EPIPE) and it would report a broken connection instead of this line. So: our side
  // ends, and what the client still sends is read and dropped until it closes (it does once
  // it has read the error), for at most kRefusalLingerMs.
  shutdown(client_.get(), SHUT_WR);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRefusalLingerMs);
  char sink[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    pollfd p[2] = {{client_.get(), POLLIN, 0}, {ctx_.stop, POLLIN, 0}};
    int n = poll(p, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (p[1].revents & POLLIN)) return;
    if (read(client_.get(), sink, sizeof sink) <= 0) return;
  }
}

void Session::Run() {
  const auto started = std::chrono::steady_clock::now();
  PeerCredentials peer;
  tag_ = "session " + std::to_string(number_);
  if (Status s = PeerOf(client_.get(), &peer); !s.ok()) {
    spdlog::error("{}: {}", tag_, s.message());
    return;
  }
  tag_ += " uid " + std::to_string(peer.uid) + " pid " + std::to_string(peer.pid);
  const Config& config = *ctx_.config;
  if (!IsWebappUid(config.nss, peer.uid)) {
    return Refuse("uid " + std::to_string(peer.uid) + " is not a webapp (webapp uids are " +
                  std::to_string(config.nss.min_uid) + " to " + std::to_string(config.nss.max_uid) +
                  "); the sandbox gateway serves only allgo webapps");
  }
  bool total_full = false;
  SessionLimits::Slot slot = ctx_.limits->Acquire(peer.uid, &total_full);
  if (!slot) {
    return Refuse(total_full ? "the sandbox gateway is serving its maximum of " +
                                   std::to_string(SessionLimits::kMaxTotal) +
                                   " sessions; try again in a moment, or tell the allgo operators"
                             : "uid " + std::to_string(peer.uid) + " already has " +
                                   std::to_string(SessionLimits::kMaxPerUid) +
                                   " sessions open through the sandbox gateway (the limit); end some first");
  }
  Webapp webapp;
  if (Status s = ctx_.lookup->FindByUid(peer.uid, &webapp); !s.ok()) {
    if (s.IsNotFound()) {
      spdlog::info("{}: {}", tag_, s.message());
      return Refuse("uid " + std::to_string(peer.uid) + " is not a webapp");
    }
    spdlog::error("{}: the database: {}", tag_, s.message());
    return Refuse("the allgo database does not answer, so uid " + std::to_string(peer.uid) +
                  " cannot be matched to its webapp; tell the allgo operators");
  }
  tag_ += " webapp " + webapp.docker_name;

  const engine::ExecOptions exec = AgentExecOptions(config);
  SandboxLocation where;
  std::string exec_id, spare_note;
  std::unique_ptr<engine::ExecStream> stream;
  for (int attempt = 0;; ++attempt) {
    if (Status s = ctx_.locator->Locate(webapp, &where); !s.ok()) return Refuse(s.message());
    if (attempt == 0 && ctx_.spares != nullptr) {
      // Same webapp id (from this client's uid), same node and container, still alive.
      std::string why_not;
      if (std::unique_ptr<Spare> spare = ctx_.spares->Take(webapp.id, where, &why_not)) {
        auto age = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - spare->made);
        exec_id = spare->exec_id;
        stream = std::move(spare->stream);
        spare_note = " (a spare made " + std::to_string(age.count()) + " s ago)";
        break;
      }
      if (!why_not.empty()) spdlog::info("{}: {}; a fresh exec instead", tag_, why_not);
    }
    Status s = where.node->client->CreateExec(where.container, exec, &exec_id);
    if (s.ok()) s = where.node->client->StartExec(exec_id, false, &stream);
    if (s.ok()) break;
    // A cached location may be stale (container restarted, moved, removed): once more, fresh.
    ctx_.locator->Forget(webapp.id);
    if (ctx_.spares != nullptr) ctx_.spares->Drop(webapp.id);
    spdlog::warn("{}: exec on node {} container {} failed: {}", tag_, where.node->name, where.container, s.message());
    if (attempt == 0) continue;
    if (s.IsNotFound()) {
      return Refuse("the container " + where.container + " of '" + webapp.docker_name + "' on node " +
                    where.node->name + " is gone; start its sandbox from the allgo web interface");
    }
    return Refuse(NodeDownMessage(webapp, *where.node, s.message()));
  }
  spdlog::info("{}: node {} container {} exec {}{}", tag_, where.node->name, where.container, exec_id.substr(0, 12),
               spare_note);
  // The next login of this webapp finds its exec ready (made while this session runs).
  if (ctx_.spares != nullptr) ctx_.spares->Replenish(webapp.id, where, "webapp " + webapp.docker_name);

  AgentLog log(tag_);
  RelayOptions options;
  options.io_timeout = std::chrono::seconds(config.docker.api_timeout);
  options.stream_chunk = StreamChunkFor(stream->fd());
  RelayResult r = Relay(client_.get(), stream.get(), &log, ctx_.stop, options).Run();
  stream.reset();  // the agent sees its stdin end (if it had not): it hangs its command up
  client_.reset();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  spdlog::info("{}: end after {} ms: {}; {} bytes to the sandbox, {} to the client, {} of agent log", tag_,
               ms.count(), r.ended, r.to_exec, r.to_client, r.stderr_bytes);
}

}  // namespace allgo::gateway
