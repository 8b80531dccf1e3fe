#include "service/sandbox_locator.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
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
         "), where the Engine API failed: " + SanitizeForLog(cause, 400) +
         "; other webapps are not affected - tell the allgo operators";
}

Status SandboxLocator::Locate(const Webapp& webapp, SandboxLocation* out) {
  std::string container = ContainerNameOf(config_.docker.container, webapp);
  if (!engine::IsValidContainerName(container)) {
    return Status::Invalid("the container name '" + SanitizeForLog(container) + "' that [docker] container makes for '" +
                           webapp.docker_name + "' is not a valid name; tell the allgo operators");
  }
  // Where the current row places the sandbox, asked on every login (one prepared statement)
  // before the cache is looked at: a cached location is used only for that same container
  // (and node), never for what the row named a moment ago (a rename, issue 18).
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
  Node* node = nullptr;  // the database's node; nullptr: any node
  if (known.ok()) {
    node = nodes_->Find(node_name);
    if (node == nullptr) {
      return Status::Invalid("the database places the sandbox of '" + webapp.docker_name + "' on node '" +
                             SanitizeForLog(node_name) + "', which is not a [docker] node of this frontend (" +
                             nodes_->Names() + "); tell the allgo operators");
    }
    if (!engine::IsValidContainerName(db_container)) {
      return Status::Invalid("the database names the container of '" + webapp.docker_name + "' '" +
                             SanitizeForLog(db_container) + "', which is not a valid name; tell the allgo operators");
    }
    container = db_container;
  }
  if (FromCache(webapp, node, container, out)) return Status::Ok();
  Status s = node != nullptr ? Inspect(webapp, node, container, out) : AskEveryNode(webapp, container, out);
  if (s.ok()) Remember(webapp.id, *out);
  return s;
}

bool SandboxLocator::FromCache(const Webapp& webapp, Node* node, const std::string& container, SandboxLocation* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(webapp.id);
  if (it == cache_.end()) return false;
  const SandboxLocation& cached = it->second.location;
  if (cached.container != container || (node != nullptr && cached.node != node)) {
    spdlog::info("webapp {} (id {}): its row now gives container {}{}, not the cached {} on node {}: asking again",
                 webapp.docker_name, webapp.id, container, node != nullptr ? " on node " + node->name : "",
                 cached.container, cached.node->name);
    cache_.erase(it);
    return false;
  }
  if (it->second.until <= std::chrono::steady_clock::now()) return false;
  *out = cached;
  return true;
}

// Refused unless the container carries [docker] webapp_label = the webapp's id (when set).
Status SandboxLocator::CheckLabel(const Webapp& webapp, const Node& node, const std::string& container,
                                  const engine::ContainerInfo& info) {
  const std::string& label = config_.docker.webapp_label;
  if (label.empty()) return Status::Ok();
  auto it = info.labels.find(label);
  const std::string want = std::to_string(webapp.id);
  if (it != info.labels.end() && it->second == want) return Status::Ok();
  const std::string found = it == info.labels.end() ? "has no label " + label
                                                    : "is labelled " + label + "=" + SanitizeForLog(it->second, 64);
  spdlog::error("container {} on node {} {}, not {}={} (webapp '{}'): refused, no exec there", container, node.name,
                found, label, want, webapp.docker_name);
  return Status::Invalid("the container " + container + " on node " + node.name + " " + found + ", not " + label +
                         "=" + want + ": it is not the sandbox of '" + webapp.docker_name +
                         "'; tell the allgo operators");
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
  if (Status label = CheckLabel(webapp, *node, container, info); !label.ok()) return label;
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
  // Shared with the asking threads, which may outlive this call (a node that hangs keeps its
  // thread for one api_timeout).
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
    // Every node's answer, so that a login goes to a node only when no other node claims a
    // running container of that name too (issue 18); once one claim is in, the others get
    // kClaimGrace more, not a whole api_timeout (a node that is down would otherwise cost
    // every uncached login that long).
    std::unique_lock<std::mutex> lock(board->mu);
    std::optional<std::chrono::steady_clock::time_point> settle;
    for (;;) {
      bool all = true, claimed = false;
      for (const Answer& a : board->answers) {
        all = all && a.done;
        claimed = claimed || (a.done && a.status.ok() && a.info.running);
      }
      if (all) break;
      if (claimed && !settle) settle = std::chrono::steady_clock::now() + kClaimGrace;
      if (!settle) {
        board->changed.wait(lock);
      } else if (board->changed.wait_until(lock, *settle) == std::cv_status::timeout) {
        break;
      }
    }
    answers = board->answers;
  }

  std::vector<Node*> running;
  std::string stopped, down, down_cause;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Answer& a = answers[i];
    if (!a.done) continue;  // still asking after kClaimGrace: it claims nothing (yet)
    if (a.status.ok() && a.info.running) {
      running.push_back(&nodes[i]);
    } else if (a.status.ok() && stopped.empty()) {
      stopped = NotRunning(webapp, container, nodes[i], a.info.status);
    } else if (!a.status.ok() && !a.status.IsNotFound()) {
      down += (down.empty() ? "" : ", ") + nodes[i].name + " (" + nodes[i].url + ")";
      if (down_cause.empty()) down_cause = a.status.message();
    }
  }
  if (running.size() > 1) {
    std::string names;
    for (const Node* n : running) names += (names.empty() ? "" : ", ") + n->name;
    spdlog::error("container {} of '{}' (id {}) runs on nodes {}: login refused, the gateway cannot tell which is the "
                  "webapp's (a node may be compromised, or the sandbox was started twice); set [queries] "
                  "sandbox_location so that the database says where it runs (docs/security.md)",
                  container, webapp.docker_name, webapp.id, names);
    return Status::Unavailable("the sandbox of '" + webapp.docker_name + "' has a running container " + container +
                               " on more than one node (" + names +
                               "), so the gateway cannot tell which is its own and refuses the login; "
                               "tell the allgo operators");
  }
  if (running.size() == 1) {
    const size_t i = static_cast<size_t>(running[0] - nodes.data());
    if (Status label = CheckLabel(webapp, *running[0], container, answers[i].info); !label.ok()) return label;
    out->node = running[0];
    out->container = container;
    return Status::Ok();
  }
  if (!stopped.empty()) return Status::Unavailable(stopped);
  if (!down.empty()) {
    const bool several = down.find(", ") != std::string::npos;
    return Status::Unavailable("the sandbox of '" + webapp.docker_name + "' may be on node" + (several ? "s " : " ") +
                               down + ", where the Engine API failed: " +
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
