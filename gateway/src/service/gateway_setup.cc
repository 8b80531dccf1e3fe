#include "service/gateway_setup.h"

#include "service/nodes.h"

namespace allgo::gateway {

Status CheckGatewayConfig(const Config& config, ServiceAccount* gateway_user) {
  if (config.sandbox.backend != SandboxBackend::kDocker) {
    return Status::Invalid(config.path + ": [sandbox] backend is not docker: allgo-sandbox-gateway serves only "
                           "backend = docker (with backend = bridge it is not needed)");
  }
  if (config.docker.nodes.empty()) {
    return Status::Invalid(config.path + ": [docker] has no node (node = NAME unix:///path | tcp://HOST:PORT)");
  }
  Status s = ResolveServiceAccount(config, config.path + ": [docker] gateway_user = " + config.docker.gateway_user,
                                   config.docker.gateway_user, gateway_user);
  if (!s.ok()) return s;
  return CheckClientKeyFile(config, gateway_user->uid, gateway_user->name);
}

std::vector<std::string> ConfigWarnings(const Config& config) {
  std::vector<std::string> warnings;
  if (config.docker.nodes.size() > 1 && config.queries.sandbox_location.empty()) {
    warnings.push_back(config.path + ": [docker] has " + std::to_string(config.docker.nodes.size()) +
                       " nodes and [queries] sandbox_location is not set: any node can claim any webapp's sandbox "
                       "(two claims refuse the login; a claim by one compromised node alone gets it); set "
                       "sandbox_location so that the database says which node runs each sandbox (docs/security.md)");
  }
  return warnings;
}

Status CheckForOperator(const Config& config, std::string* out) {
  ServiceAccount user;
  if (Status s = CheckGatewayConfig(config, &user); !s.ok()) return s;
  NodeSet nodes;
  if (Status s = NodeSet::Create(config, &nodes); !s.ok()) return s;
  *out += config.path + ": OK; gateway_user " + user.name + " (uid " + std::to_string(user.uid) + "), socket " +
          config.docker.gateway_socket + ", api_timeout " + std::to_string(config.docker.api_timeout) + " s\n";
  *out += "spares " + std::to_string(config.docker.spares) + " (closed after " + std::to_string(config.docker.spare_idle) +
          " s unused), prewarm " +
          (!config.docker.prewarm    ? std::string("no")
           : config.docker.spares == 0 ? std::string("yes but spares = 0: none")
                                       : "yes (a round every " + std::to_string(config.docker.prewarm_every) + " s)") +
          "\n";
  *out += "container " + config.docker.container + ", webapp_label " +
          (config.docker.webapp_label.empty() ? std::string("off (recommended: allgo.webapp_id, docs/security.md)")
                                              : config.docker.webapp_label) +
          ", sandbox_location " + (config.queries.sandbox_location.empty() ? "not set" : "set") + "\n";
  for (const Node& n : nodes.nodes()) *out += "node " + n.name + " " + n.url + "\n";
  return Status::Ok();
}

}  // namespace allgo::gateway
