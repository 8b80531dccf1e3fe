#include "service/sandbox_locator.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "allgo/names.h"

namespace allgo::gateway {

namespace {

std::string NotRunning(const Webapp& webapp, const std::string& container, const Node& node,
                       const std::string& state) {
  return "the sandbox of '" + webapp.docker_name + "' is not running (container " + container + " on node " +
         node.name + ": " + state + "); start it from the allgo web interface";
}

}  // namespace

std::string NodeDownMessage(const Webapp& webapp, const Node& node, const std::string& cause) {
  return "the sandbox of '" + webapp.docker_name + "' is on node " + node.name + " (" + node.url +
         "), which does not answer: " + SanitizeForLog(cause, 400) +
         "; other webapps are not affected - tell the allgo operators";
}

Status SandboxLocator::Locate(const Webapp& webapp, SandboxLocation* out) {
  std::string container = ContainerNameOf(config_.docker.container, webapp);
  if (!engine::IsValidContainerName(container)) {
    return Status::Invalid("the container name '" + SanitizeForLog(container) + "' that [docker] container makes for '" +
                           webapp.docker_name + "' is not a valid name; tell the allgo operators");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(webapp.id);
    if (it != cache_.end() && it->second.until > std::chrono::steady_clock::now()) {
      *out = it->second.location;
      return Status::Ok();
    }
  }
  std::string node_name, db_container;
  Status known = lookup_->SandboxLocation(webapp, &node_name, &db_container);
  if (known.IsUnavailable()) {
    spdlog::error("sandbox_location for '{}': {}", webapp.docker_name, known.message());
    return Status::Unavailable("the allgo database does not answer, so the sandbox of '" + webapp.docker_name +
                               "' cannot be found; tell the allgo operators");
  }
  if (!known.ok() && !known.IsNotFound()) {
    spdlog::error("sandbox_location for '{}': {}", webapp.docker_name, known.message());
    return Status::Invalid("[queries] sandbox_location failed for '" + webapp.docker_name +
                           "'; tell the allgo operators");
  }
  Status s;
  if (known.ok()) {
    Node* node = nodes_->Find(node_name);
    if (node == nullptr) {
      return Status::Invalid("the database places the sandbox of '" + webapp.docker_name + "' on node '" +
                             SanitizeForLog(node_name) + "', which is not a [docker] node of this frontend (" +
                             nodes_->Names() + "); tell the allgo operators");
    }
    if (!engine::IsValidContainerName(db_container)) {
      return Status::Invalid("the database names the container of '" + webapp.docker_name + "' '" +
                             SanitizeForLog(db_container) + "', which is not a valid name; tell the allgo operators");
    }
    s = Inspect(webapp, node, db_container, out);
  } else {
    s = AskEveryNode(webapp, container, out);
  }
  if (s.ok()) Remember(webapp.id, *out);
  return s;
}

Status SandboxLocator::Inspect(const Webapp& webapp, Node* node, const std::string& container,
                               SandboxLocation* out) {
  engine::ContainerInfo info;
  Status s = node->client->InspectContainer(container, &info);
  if (s.IsNotFound()) {
    return Status::NotFound("no container " + container + " for '" + webapp.docker_name + "' on node " + node->name +
                            " (where the database places it); start its sandbox from the allgo web interface");
  }
  if (!s.ok()) return Status::Unavailable(NodeDownMessage(webapp, *node, s.message()));
  if (!info.running) return Status::Unavailable(NotRunning(webapp, container, *node, info.status));
  out->node = node;
  out->container = container;
  return Status::Ok();
}

Status SandboxLocator::AskEveryNode(const Webapp& webapp, const std::string& container, SandboxLocation* out) {
  struct Answer {
    bool done = false;
    Status status;
    engine::ContainerInfo info;
  };
  // Shared with the asking threads, which may outlive this call: a running container found on
  // one node answers the login at once, whatever a hanging node does (it costs its thread one
  // api_timeout, not the user).
  struct Board {
    std::mutex mu;
    std::condition_variable changed;
    std::vector<Answer> answers;
  };
  std::vector<Node>& nodes = nodes_->nodes();
  auto board = std::make_shared<Board>();
  board->answers.resize(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    try {
      std::thread([board, i, client = nodes[i].client, container] {
        Answer a;
        a.status = client->InspectContainer(container, &a.info);
        a.done = true;
        std::lock_guard<std::mutex> lock(board->mu);
        board->answers[i] = std::move(a);
        board->changed.notify_all();
      }).detach();
    } catch (const std::system_error& e) {
      // A task limit: that node counts as not answering (the login gets one line), never an abort.
      std::lock_guard<std::mutex> lock(board->mu);
      board->answers[i] = Answer{true, Status::Unavailable(std::string("no thread to ask it: ") + e.what()), {}};
    }
  }
  std::vector<Answer> answers;
  {
    std::unique_lock<std::mutex> lock(board->mu);
    board->changed.wait(lock, [&] {
      bool all = true;
      for (const Answer& a : board->answers) {
        if (a.done && a.status.ok() && a.info.running) return true;
        all = all && a.done;
      }
      return all;
    });
    answers = board->answers;
  }

  Node* running = nullptr;
  std::string stopped, down, down_cause;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Answer& a = answers[i];
    if (!a.done) continue;  // still asking, but a running container was found elsewhere
    if (a.status.ok() && a.info.running) {
      if (running == nullptr) {
        running = &nodes[i];
      } else {
        spdlog::warn("container {} of '{}' runs on nodes {} and {}; using {}", container, webapp.docker_name,
                     running->name, nodes[i].name, running->name);
      }
    } else if (a.status.ok() && stopped.empty()) {
      stopped = NotRunning(webapp, container, nodes[i], a.info.status);
    } else if (!a.status.ok() && !a.status.IsNotFound()) {
      down += (down.empty() ? "" : ", ") + nodes[i].name + " (" + nodes[i].url + ")";
      if (down_cause.empty()) down_cause = a.status.message();
    }
  }
  if (running != nullptr) {
    out->node = running;
    out->container = container;
    return Status::Ok();
  }
  if (!stopped.empty()) return Status::Unavailable(stopped);
  if (!down.empty()) {
    const bool several = down.find(", ") != std::string::npos;
    return Status::Unavailable("the sandbox of '" + webapp.docker_name + "' may be on node" + (several ? "s " : " ") +
                               down + (several ? ", which do not answer: " : ", which does not answer: ") +
                               SanitizeForLog(down_cause, 400) +
                               "; no other node has its container " + container +
                               "; other webapps are not affected - tell the allgo operators");
  }
  return Status::NotFound("no container " + container + " for '" + webapp.docker_name + "' on any node (" +
                          nodes_->Names() + "); start its sandbox from the allgo web interface");
}

void SandboxLocator::Remember(uint32_t webapp_id, const SandboxLocation& location) {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (cache_.size() >= kCachePruneAt) {  // one entry per webapp seen in the last kCacheTtl
    for (auto it = cache_.begin(); it != cache_.end();) it = it->second.until <= now ? cache_.erase(it) : std::next(it);
  }
  cache_[webapp_id] = Cached{location, now + kCacheTtl};
}

void SandboxLocator::Forget(uint32_t webapp_id) {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.erase(webapp_id);
}

}  // namespace allgo::gateway
