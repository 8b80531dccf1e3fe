#include "service/nodes.h"

#include <errno.h>
#include <sys/stat.h>

#include <chrono>

namespace allgo::gateway {

Status NodeSet::Create(const Config& config, NodeSet* out) {
  out->nodes_.clear();
  for (const DockerNode& n : config.docker.nodes) {
    engine::NodeOptions options;
    options.url = n.url;
    if (n.url.rfind("tcp://", 0) == 0) {
      options.tls_ca = config.docker.tls_ca;
      options.tls_cert = config.docker.tls_cert;
      options.tls_key = config.docker.tls_key;
    }
    options.api_timeout = std::chrono::seconds(config.docker.api_timeout);
    std::unique_ptr<engine::EngineClient> client;
    if (Status s = engine::EngineClient::Create(options, &client); !s.ok()) {
      return Status::Invalid(config.path + ": [docker] node = " + n.name + " " + n.url + ": " + s.message());
    }
    Node node{n.name, n.url, std::move(client)};
    out->nodes_.push_back(std::move(node));
  }
  if (out->nodes_.empty()) return Status::Invalid(config.path + ": [docker] has no node (node = NAME URL)");
  return Status::Ok();
}

Node* NodeSet::Find(const std::string& name) {
  for (Node& n : nodes_) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

std::string NodeSet::Names() const {
  std::string names;
  for (const Node& n : nodes_) names += (names.empty() ? "" : ", ") + n.name;
  return names;
}

Status CheckClientKeyFile(const Config& config, uid_t owner, const std::string& owner_name) {
  bool tls = false;
  for (const DockerNode& n : config.docker.nodes) tls = tls || n.url.rfind("tcp://", 0) == 0;
  if (!tls) return Status::Ok();
  const std::string& key = config.docker.tls_key;
  const std::string fix = "chown " + owner_name + " " + key + " && chmod 0400 " + key;
  struct stat st {};
  if (stat(key.c_str(), &st) != 0) return Status::FromErrno(config.path + ": [docker] tls_key " + key, errno);
  if (!S_ISREG(st.st_mode)) return Status::Invalid(config.path + ": [docker] tls_key " + key + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    return Status::Invalid(config.path + ": [docker] tls_key " + key +
                           " may be read or written by group or others (mode " +
                           std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                           std::to_string(st.st_mode & 7) + "); only the gateway user may read it: " + fix);
  }
  if (st.st_uid != owner) {
    return Status::Invalid(config.path + ": [docker] tls_key " + key + " is owned by uid " +
                           std::to_string(st.st_uid) + ", not by the gateway user " + owner_name + ": " + fix);
  }
  return Status::Ok();
}

}  // namespace allgo::gateway
