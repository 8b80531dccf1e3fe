#include "service/webapp_lookup.h"

namespace allgo::gateway {

WebappLookup::WebappLookup(const Config& config)
    : config_(config), connection_(config.mysql), directory_(config, &connection_) {}

Status WebappLookup::FindByUid(uid_t uid, Webapp* out) {
  std::lock_guard<std::mutex> lock(mu_);
  return directory_.FindByUid(uid, out);
}

Status WebappLookup::List(std::vector<Webapp>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  return directory_.List(out);
}

Status WebappLookup::SandboxLocation(const Webapp& webapp, std::string* node, std::string* container) {
  if (config_.queries.sandbox_location.empty()) return Status::NotFound("[queries] sandbox_location is not set");
  std::vector<SqlRow> rows;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = connection_.Query(config_.queries.sandbox_location, {uint64_t{webapp.id}}, 2, &rows);
    if (!s.ok()) return s;
  }
  if (rows.empty() || !rows[0][0] || !rows[0][1]) {
    return Status::NotFound("the database has no location for the sandbox of '" + webapp.docker_name + "'");
  }
  *node = *rows[0][0];
  *container = *rows[0][1];
  return Status::Ok();
}

std::string ContainerNameOf(const std::string& container_template, const Webapp& webapp) {
  std::string out;
  for (size_t i = 0; i < container_template.size();) {
    if (container_template.compare(i, 13, "{docker_name}") == 0) {
      out += webapp.docker_name;
      i += 13;
    } else if (container_template.compare(i, 4, "{id}") == 0) {
      out += std::to_string(webapp.id);
      i += 4;
    } else {
      out += container_template[i++];
    }
  }
  return out;
}

}  // namespace allgo::gateway
