// The allgo data model as the frontend sees it (DESIGN.md, "The database").
#pragma once

#include <cstdint>
#include <string>

namespace allgo {

// One row of `webapps`, already known to be valid: a portable docker_name and an id whose
// uid lies inside [min_uid, max_uid]. Invalid rows never become a Webapp.
struct Webapp {
  uint32_t id = 0;
  std::string docker_name;    // the login name
  std::string display_name;   // webapps.name, raw (sanitise before putting it in gecos)
  uint32_t owner_id = 0;      // users.id of the owner
  std::string sandbox_state;  // idle|starting|running|stopping|error (free text from the DB)
};

// One key candidate returned by the `webapp_keys` query, before policy and parsing.
struct KeyRow {
  uint32_t user_id = 0;
  std::string email;
  bool is_active = false;
  bool is_superuser = false;
  bool is_owner = false;
  std::string public_key;  // the field as pasted: may hold several lines, options, garbage
};

}  // namespace allgo
