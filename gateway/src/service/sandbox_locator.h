// Where a webapp's sandbox runs: the node and the container, checked running.
//
// The container name comes from [docker] container. The node comes from [queries]
// sandbox_location when it is set and has a row; otherwise every node is asked at once
// (InspectContainer in parallel, each bounded by api_timeout): the first running container
// found answers, so a node that hangs delays only the webapps it could hold (by one
// api_timeout, not one per node). A found running container is remembered for kCacheTtl (a
// login then costs no inspect); Forget drops it when an exec there failed. Failures are not
// remembered: a sandbox started a second later is found at once.
//
// Errors are for the user who typed `ssh web1@...`: one sentence naming the state and what
// to do (start the sandbox, tell the operators), nothing secret. The caller logs them too.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "allgo/config.h"
#include "allgo/model.h"
#include "allgo/status.h"
#include "service/nodes.h"
#include "service/webapp_lookup.h"

namespace allgo::gateway {

struct SandboxLocation {
  Node* node = nullptr;
  std::string container;
};

class SandboxLocator {
 public:
  static constexpr std::chrono::seconds kCacheTtl{10};
  static constexpr size_t kCachePruneAt = 4096;  // expired entries are dropped past this size

  SandboxLocator(const Config& config, NodeSet* nodes, WebappLookup* lookup)
      : config_(config), nodes_(nodes), lookup_(lookup) {}

  Status Locate(const Webapp& webapp, SandboxLocation* out);
  void Forget(uint32_t webapp_id);

 private:
  Status Inspect(const Webapp& webapp, Node* node, const std::string& container, SandboxLocation* out);
  Status AskEveryNode(const Webapp& webapp, const std::string& container, SandboxLocation* out);
  void Remember(uint32_t webapp_id, const SandboxLocation& location);

  struct Cached {
    SandboxLocation location;
    std::chrono::steady_clock::time_point until;
  };
  const Config& config_;
  NodeSet* nodes_;
  WebappLookup* lookup_;
  std::mutex mu_;
  std::map<uint32_t, Cached> cache_;  // guarded by mu_; webapp id → location
};

// "the sandbox of 'web1' is on node node2 (tcp://...), which does not answer: CAUSE; ...".
std::string NodeDownMessage(const Webapp& webapp, const Node& node, const std::string& cause);

}  // namespace allgo::gateway
