// Where a webapp's sandbox runs: the node and the container, checked running.
//
// The container name comes from [docker] container. The node comes from [queries]
// sandbox_location when it is set and has a row (asked on every Locate); otherwise every node
// is asked at once (InspectContainer in parallel, each bounded by api_timeout): one node with
// a running container answers; two or more refuse the login and log it (a compromised node
// could otherwise take every webapp's sessions by answering first; docs/security.md). Once a
// running container is found the other nodes get kClaimGrace more to answer, so a node that
// hangs costs an uncached login kClaimGrace (or one api_timeout when no node has the
// container), not one api_timeout per node. With [docker] webapp_label set, a running container must
// carry that label with the webapp's id, or the login is refused before any exec.
//
// A found running container is remembered for kCacheTtl (a login then costs no inspect), for
// that webapp id AND that container name (and node): each use compares them with what the
// current row gives, so after a rename the old name's container (maybe another webapp's by
// now) is never used. Forget drops it when an exec there failed. Failures are not
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
  // After a node reports the running container, how long the other nodes may still answer
  // (and claim it too) before the login goes there. An engine answers an inspect in
  // milliseconds; this covers a loaded one.
  static constexpr std::chrono::milliseconds kClaimGrace{2000};

  SandboxLocator(const Config& config, NodeSet* nodes, WebappLookup* lookup)
      : config_(config), nodes_(nodes), lookup_(lookup) {}

  Status Locate(const Webapp& webapp, SandboxLocation* out);
  void Forget(uint32_t webapp_id);

 private:
  // The cached location when it is for this container (and node, when given) and fresh; an
  // entry for another container (the row changed) is dropped.
  bool FromCache(const Webapp& webapp, Node* node, const std::string& container, SandboxLocation* out);
  Status CheckLabel(const Webapp& webapp, const Node& node, const std::string& container,
                    const engine::ContainerInfo& info);
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
  std::map<uint32_t, Cached> cache_;  // guarded by mu_; webapp id → location (its container compared on use)
};

// "the sandbox of 'web1' is on node node2 (tcp://...), where the Engine API failed: CAUSE; ...".
std::string NodeDownMessage(const Webapp& webapp, const Node& node, const std::string& cause);

}  // namespace allgo::gateway
