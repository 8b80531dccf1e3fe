// The [docker] nodes with their Engine API clients, by name.
//
// Built after the privilege drop: the TLS client key is loaded as the gateway user, so only a
// key that user can read works ("nothing but the gateway can read the client key").
// EngineClient calls open a connection each, so one client serves every session thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/engine_client.h"
#include "allgo/status.h"

namespace allgo::gateway {

struct Node {
  std::string name;
  std::string url;
  // Shared: a locator's question to a node that hangs may outlive the NodeSet (the gateway
  // stopping meanwhile); its thread holds the client until its api_timeout ends it.
  std::shared_ptr<engine::EngineClient> client;
};

class NodeSet {
 public:
  // EngineClient::Create for every node; the first failure names the node and its line.
  static Status Create(const Config& config, NodeSet* out);

  // nullptr when no node has that name.
  Node* Find(const std::string& name);
  std::vector<Node>& nodes() { return nodes_; }
  // "node1, node2": for messages.
  std::string Names() const;

 private:
  std::vector<Node> nodes_;
};

// The rule for the client key (docs/security.md): a regular file of `owner` (the gateway
// user), not readable or writable by group or others. Invalid saying how to fix it
// (chmod 0400, chown) otherwise; Ok when no node is tcp:// (no key needed).
Status CheckClientKeyFile(const Config& config, uid_t owner, const std::string& owner_name);

}  // namespace allgo::gateway
