// Config parsing on top of inih. inih gives us sections, keys, values, comments and
// continuation lines; everything that makes a value valid is decided here, in one table.
#include "allgo/config.h"

#include <fcntl.h>
#include <ini.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string_view>

#include "allgo/directory.h"
#include "allgo/unique_fd.h"

namespace allgo {
namespace {

struct KeySpec;

struct ParseContext {
  // The known keys, built for this parse and destroyed with it: a process that loads its
  // config once (every allgo-shell of an idle session) does not keep the table's ~90 nodes
  // resident for its life (issue 20: PSS per idle session).
  const std::map<std::string, KeySpec>* table = nullptr;
  Config* config = nullptr;
  std::string origin;
  int line = 0;                 // line number of the line inih is handling
  bool continuation = false;    // that line is an indented continuation of the previous value
  bool too_long = false;
  const char* text = nullptr;   // ParseConfig input, consumed by StringReader
  size_t pos = 0;
  std::string error;            // first error, already formatted
  std::set<std::string> seen;   // section.key pairs given once already
};

// One input line per call, like fgets; tracks line numbers and turns overlong lines into an
// error: inih reads into a fixed buffer (INI_MAX_LINE, 200 in Debian's build) and would
// silently split a longer line in two.
char* StringReader(char* buf, int size, void* stream) {
  auto* ctx = static_cast<ParseContext*>(stream);
  if (ctx->too_long || ctx->text[ctx->pos] == '\0') {
    // inih frees its line buffer (heap, in Debian's build) without clearing it after this
    // last call: the lines it held may carry the password.
    explicit_bzero(buf, static_cast<size_t>(size));
    return nullptr;
  }
  const char* start = ctx->text + ctx->pos;
  const char* nl = std::strchr(start, '\n');
  size_t len = nl ? static_cast<size_t>(nl - start) + 1 : std::strlen(start);
  size_t content = (nl ? len - 1 : len);
  if (content > 0 && start[content - 1] == '\r') --content;
  ++ctx->line;
  if (content >= static_cast<size_t>(size) - 1) {
    ctx->too_long = true;
    explicit_bzero(buf, static_cast<size_t>(size));
    if (ctx->error.empty()) {
      ctx->error = ctx->origin + ":" + std::to_string(ctx->line) + ": line longer than " +
                   std::to_string(size - 2) +
                   " characters; split a long query over indented continuation lines";
    }
    return nullptr;
  }
  std::memcpy(buf, start, len);
  buf[len] = '\0';
  ctx->pos += len;
  ctx->continuation = (start[0] == ' ' || start[0] == '\t');
  return buf;
}

bool ParseUnsigned(const std::string& value, uint64_t min, uint64_t max, uint64_t* out) {
  if (value.empty() || !std::isdigit(static_cast<unsigned char>(value[0]))) return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

bool ParseBool(const std::string& value, bool* out) {
  if (value == "true" || value == "yes" || value == "on" || value == "1") {
    *out = true;
    return true;
  }
  if (value == "false" || value == "no" || value == "off" || value == "0") {
    *out = false;
    return true;
  }
  return false;
}

// A setter returns an empty string on success, else what is wrong with the value.
using Setter = std::function<std::string(Config&, const std::string&)>;

struct KeySpec {
  Setter set;
  bool repeatable = false;  // list keys; continuation lines are not allowed for them
  bool joins_continuations = false;  // query keys: indented lines continue the value
};

template <typename Section>
Setter Str(Section Config::*section, std::string Section::*field) {
  return [=](Config& c, const std::string& v) {
    (c.*section).*field = v;
    return std::string();
  };
}

template <typename Section>
Setter Path(Section Config::*section, std::string Section::*field, bool may_be_empty) {
  return [=](Config& c, const std::string& v) {
    if (v.empty() && may_be_empty) {
      (c.*section).*field = v;
      return std::string();
    }
    if (v.empty() || v[0] != '/') return std::string("must be an absolute path");
    (c.*section).*field = v;
    return std::string();
  };
}

template <typename Section, typename T>
Setter Uint(Section Config::*section, T Section::*field, uint64_t min, uint64_t max) {
  return [=](Config& c, const std::string& v) {
    uint64_t n = 0;
    if (!ParseUnsigned(v, min, max, &n)) {
      return "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    }
    (c.*section).*field = static_cast<T>(n);
    return std::string();
  };
}

template <typename Section>
Setter Bool(Section Config::*section, bool Section::*field) {
  return [=](Config& c, const std::string& v) {
    if (!ParseBool(v, &((c.*section).*field))) return std::string("must be true or false");
    return std::string();
  };
}

template <typename Section>
Setter Append(Section Config::*section, std::vector<std::string> Section::*field,
              std::function<std::string(const std::string&)> check) {
  return [=](Config& c, const std::string& v) {
    std::string problem = check(v);
    if (problem.empty()) ((c.*section).*field).push_back(v);
    return problem;
  };
}

std::string CheckHostPort(const std::string& v) {
  size_t colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0) return "must be HOST:PORT, e.g. 127.0.0.1:2222";
  std::string host = v.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') return "an IPv6 address must be [ADDR]:PORT";
  uint64_t port = 0;
  if (!ParseUnsigned(v.substr(colon + 1), 1, 65535, &port)) return "port must be 1 to 65535";
  return "";
}

std::string CheckCidr(const std::string& v) {
  size_t slash = v.find('/');
  std::string addr = v.substr(0, slash);
  if (addr.empty() || addr.find_first_not_of("0123456789abcdefABCDEF.:") != std::string::npos) {
    return "must be an address or ADDRESS/PREFIX, e.g. 127.0.0.0/8";
  }
  if (slash != std::string::npos) {
    uint64_t bits = 0;
    if (!ParseUnsigned(v.substr(slash + 1), 0, 128, &bits)) return "prefix must be 0 to 128";
  }
  return "";
}

template <typename Section>
Setter NonEmptyStr(Section Config::*section, std::string Section::*field) {
  return [=](Config& c, const std::string& v) {
    if (v.empty()) return std::string("must not be empty");
    (c.*section).*field = v;
    return std::string();
  };
}

// `NAME URL`: NAME as in DockerNode; URL unix:///ABSOLUTE/PATH or tcp://HOST:PORT.
std::string ParseDockerNode(const std::string& v, DockerNode* node) {
  const char* usage = "must be NAME URL, e.g. node1 tcp://docker1.example.org:2376 or local unix:///run/docker.sock";
  size_t space = v.find_first_of(" \t");
  if (space == std::string::npos) return usage;
  std::string name = v.substr(0, space);
  size_t url_start = v.find_first_not_of(" \t", space);
  if (url_start == std::string::npos) return usage;
  std::string url = v.substr(url_start);
  if (url.find_first_of(" \t") != std::string::npos) return usage;
  if (name.size() > 63 || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos ||
      !std::isalnum(static_cast<unsigned char>(name[0]))) {
    return "node name '" + name + "' must be lowercase letters, digits, '_', '.', '-' (at most 63, starting with a letter or digit)";
  }
  if (url.rfind("unix://", 0) == 0) {
    if (url.size() <= 7 || url[7] != '/') return "a unix URL must name an absolute path: unix:///run/docker.sock";
  } else if (url.rfind("tcp://", 0) == 0) {
    std::string problem = CheckHostPort(url.substr(6));
    if (!problem.empty()) return "tcp URL: " + problem;
  } else {
    return "URL '" + url + "' must start with unix:// or tcp:// (tcp is always TLS with a client certificate)";
  }
  node->name = name;
  node->url = url;
  return "";
}

// A container name template: literal characters of container names and the placeholders
// {docker_name} and {id}; at least one placeholder, else every webapp would share a container.
// The mapping must be one-to-one (docs/decisions.md): each placeholder at most once, and a
// {docker_name} followed by {id} needs a non-digit between them — docker_name may end in
// digits, so `mh-{docker_name}{id}` names webapps mhz3 (id 41) and mhz (id 341) both mh-mhz341.
// ({id} before {docker_name} is one-to-one: a docker_name starts with a letter or '_'.)
std::string CheckContainerTemplate(const std::string& v) {
  size_t name_at = std::string::npos, id_at = std::string::npos;
  for (size_t i = 0; i < v.size();) {
    if (v[i] == '{') {
      size_t close = v.find('}', i);
      std::string name = close == std::string::npos ? "" : v.substr(i + 1, close - i - 1);
      if (name != "docker_name" && name != "id") {
        return "unknown placeholder in '" + v + "': only {docker_name} and {id} exist";
      }
      size_t& at = name == "id" ? id_at : name_at;
      if (at != std::string::npos) return "{" + name + "} appears twice in '" + v + "'; give each placeholder once";
      at = i;
      i = close + 1;
    } else if (std::isalnum(static_cast<unsigned char>(v[i])) || v[i] == '_' || v[i] == '-') {
      ++i;
    } else {
      return "'" + std::string(1, v[i]) + "' cannot be part of a container name (letters, digits, '_', '-', placeholders)";
    }
  }
  if (name_at == std::string::npos && id_at == std::string::npos) {
    return "must contain {docker_name} or {id}, e.g. {docker_name} or allgo-{id}";
  }
  if (name_at != std::string::npos && id_at != std::string::npos && name_at < id_at) {
    const size_t between = name_at + std::strlen("{docker_name}");
    const std::string separator = v.substr(between, id_at - between);
    if (separator.find_first_not_of("0123456789") == std::string::npos) {
      return "'" + v + "' maps two webapps to one container: a docker_name may end in digits, so " +
             (separator.empty() ? "{docker_name}{id}" : "{docker_name}" + separator + "{id}") +
             " gives mhz3 (id 41) and mhz (id 341) the same name; put a non-digit between them, e.g. " +
             v.substr(0, between) + "-" + v.substr(id_at) + ", or use {id} first or alone";
    }
  }
  return "";
}

// [docker] webapp_label: a Docker label key (its value must be the webapp id); empty = off.
std::string CheckLabelKey(const std::string& v) {
  if (v.size() > 128 || v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") !=
                            std::string::npos) {
    return "must be a Docker label key (letters, digits, '.', '_', '-', '/', at most 128), e.g. allgo.webapp_id, "
           "or empty (no label check)";
  }
  return "";
}

std::string CheckQuery(const std::string& sql, int params) {
  size_t start = sql.find_first_not_of(" \t");
  if (start == std::string::npos || strncasecmp(sql.c_str() + start, "select", 6) != 0) {
    return "must be a single SELECT statement";
  }
  int count = 0;
  char quote = 0;
  for (char c : sql) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"' || c == '`') {
      quote = c;
    } else if (c == '?') {
      ++count;
    } else if (c == ';') {
      return "must be a single statement (no ';')";
    }
  }
  if (quote) return "has an unterminated quote";
  if (count != params) {
    return "must have exactly " + std::to_string(params) + " '?' parameter" +
           (params == 1 ? "" : "s") + ", found " + std::to_string(count);
  }
  return "";
}

// Query values may span indented continuation lines; they are joined here and checked as a
// whole in Validate().
Setter Query(std::string QueriesConfig::*field) {
  return [=](Config& c, const std::string& v) {
    std::string& q = c.queries.*field;
    q = q.empty() ? v : q + " " + v;
    return std::string();
  };
}

// An [sshd] algorithm list: syntax only here (allgo_common links no libssh); the names are
// checked against OpenSSH's and the linked libssh's by allgo-sshd (algorithm_policy.h). An
// alias and its key set the same list, so giving both is "given twice" too.
Setter Algorithms(AlgorithmSetting SshdConfig::*field, const char* key) {
  return [=](Config& c, const std::string& v) -> std::string {
    AlgorithmSetting& a = c.sshd.*field;
    if (!a.key.empty()) return "given twice (as " + a.key + " and " + key + ": they are the same list)";
    a.key = key;
    if (v.empty()) return "";  // the built-in default
    std::string names = v;
    if (!names.empty() && (names[0] == '+' || names[0] == '-' || names[0] == '^')) names.erase(0, 1);
    if (names.empty()) return "must be a comma-separated list of algorithm names";
    if (names.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.@,*?") != std::string::npos) {
      return "must be a comma-separated list of algorithm names (no spaces), optionally starting "
             "with + (append), - (remove) or ^ (prepend)";
    }
    if (names.front() == ',' || names.back() == ',' || names.find(",,") != std::string::npos) {
      return "has an empty name in the list";
    }
    a.value = v;
    return "";
  };
}

Setter Directions(ForwardDirections SshdConfig::*field) {
  return [=](Config& c, const std::string& v) -> std::string {
    if (v == "yes" || v == "all") {
      c.sshd.*field = ForwardDirections::kAll;
    } else if (v == "no") {
      c.sshd.*field = ForwardDirections::kNo;
    } else if (v == "local") {
      c.sshd.*field = ForwardDirections::kLocal;
    } else if (v == "remote") {
      c.sshd.*field = ForwardDirections::kRemote;
    } else {
      return "must be yes, no, local, remote or all (OpenSSH's values; yes = all)";
    }
    return "";
  };
}

Setter Permits(PermitList SshdConfig::*field, PermitKind kind) {
  return [=](Config& c, const std::string& v) { return AddPermitWords(v, kind, &(c.sshd.*field)); };
}

std::map<std::string, KeySpec> BuildTable() {
  using C = Config;
  return {
      {"mysql.socket", {Path(&C::mysql, &MysqlConfig::socket, true)}},
      {"mysql.host", {Str(&C::mysql, &MysqlConfig::host)}},
      {"mysql.port", {Uint(&C::mysql, &MysqlConfig::port, 1, 65535)}},
      {"mysql.database", {NonEmptyStr(&C::mysql, &MysqlConfig::database)}},
      {"mysql.user", {NonEmptyStr(&C::mysql, &MysqlConfig::user)}},
      {"mysql.password", {Str(&C::mysql, &MysqlConfig::password)}},
      {"mysql.password_file", {Path(&C::mysql, &MysqlConfig::password_file, true)}},
      {"mysql.connect_timeout", {Uint(&C::mysql, &MysqlConfig::connect_timeout, 1, 300)}},
      {"mysql.ssl_ca", {Path(&C::mysql, &MysqlConfig::ssl_ca, true)}},
      {"mysql.ssl_cert", {Path(&C::mysql, &MysqlConfig::ssl_cert, true)}},
      {"mysql.ssl_key", {Path(&C::mysql, &MysqlConfig::ssl_key, true)}},
      {"mysql.ssl_verify_server_cert", {Bool(&C::mysql, &MysqlConfig::ssl_verify_server_cert)}},
      {"nss.uid_offset", {Uint(&C::nss, &NssConfig::uid_offset, 0, 4000000000u)}},
      {"nss.min_uid", {Uint(&C::nss, &NssConfig::min_uid, 1, 4294967294u)}},
      {"nss.max_uid", {Uint(&C::nss, &NssConfig::max_uid, 1, 4294967294u)}},
      {"nss.gid", {Uint(&C::nss, &NssConfig::gid, 1, 4294967294u)}},
      {"nss.group_name", {NonEmptyStr(&C::nss, &NssConfig::group_name)}},
      {"nss.shell", {Path(&C::nss, &NssConfig::shell, false)}},
      {"nss.home", {Path(&C::nss, &NssConfig::home, false)}},
      {"nss.cache_ttl", {Uint(&C::nss, &NssConfig::cache_ttl, 0, 3600)}},
      {"authkeys.key_options",
       {[](Config& c, const std::string& v) -> std::string {
          KeyOptions parsed;
          Status st = ParseKeyOptions(v, &parsed);
          if (!st.ok()) return st.message();
          c.authkeys.key_options = v;
          c.authkeys.key_options_set = true;
          c.authkeys.sshd_options = parsed;
          c.authkeys.options = std::move(parsed);
          return "";
        }}},
      {"authkeys.allow_superusers", {Bool(&C::authkeys, &AuthkeysConfig::allow_superusers)}},
      {"sandbox.backend",
       {[](Config& c, const std::string& v) -> std::string {
          if (v == "bridge") {
            c.sandbox.backend = SandboxBackend::kBridge;
          } else if (v == "docker") {
            c.sandbox.backend = SandboxBackend::kDocker;
          } else {
            return "must be bridge (shared folders, this host) or docker (Engine API, [docker] nodes)";
          }
          return "";
        }}},
      {"sandbox.dir", {Path(&C::sandbox, &SandboxConfig::dir, false)}},
      {"sandbox.start_wait", {Uint(&C::sandbox, &SandboxConfig::start_wait, 0, 3600)}},
      {"docker.node",
       {[](Config& c, const std::string& v) -> std::string {
          DockerNode node;
          std::string problem = ParseDockerNode(v, &node);
          if (!problem.empty()) return problem;
          for (const DockerNode& other : c.docker.nodes) {
            if (other.name == node.name) return "node name '" + node.name + "' is given twice";
          }
          c.docker.nodes.push_back(std::move(node));
          return "";
        },
        true}},
      {"docker.tls_ca", {Path(&C::docker, &DockerConfig::tls_ca, true)}},
      {"docker.tls_cert", {Path(&C::docker, &DockerConfig::tls_cert, true)}},
      {"docker.tls_key", {Path(&C::docker, &DockerConfig::tls_key, true)}},
      {"docker.container",
       {[](Config& c, const std::string& v) -> std::string {
          std::string problem = CheckContainerTemplate(v);
          if (problem.empty()) c.docker.container = v;
          return problem;
        }}},
      {"docker.agent", {Path(&C::docker, &DockerConfig::agent, false)}},
      {"docker.gateway_socket", {Path(&C::docker, &DockerConfig::gateway_socket, false)}},
      {"docker.gateway_user", {NonEmptyStr(&C::docker, &DockerConfig::gateway_user)}},
      {"docker.api_timeout", {Uint(&C::docker, &DockerConfig::api_timeout, 1, 600)}},
      {"docker.max_sessions_per_owner", {Uint(&C::docker, &DockerConfig::max_sessions_per_owner, 1, 1000)}},
      {"docker.spares", {Uint(&C::docker, &DockerConfig::spares, 0, 10000)}},
      {"docker.spare_idle", {Uint(&C::docker, &DockerConfig::spare_idle, 10, 3000)}},
      {"docker.prewarm", {Bool(&C::docker, &DockerConfig::prewarm)}},
      {"docker.prewarm_every", {Uint(&C::docker, &DockerConfig::prewarm_every, 1, 3600)}},
      {"docker.webapp_label",
       {[](Config& c, const std::string& v) -> std::string {
          std::string problem = CheckLabelKey(v);
          if (problem.empty()) c.docker.webapp_label = v;
          return problem;
        }}},
      {"queries.sandbox_location", {Query(&QueriesConfig::sandbox_location), false, true}},
      {"queries.webapp_by_name", {Query(&QueriesConfig::webapp_by_name), false, true}},
      {"queries.webapp_by_id", {Query(&QueriesConfig::webapp_by_id), false, true}},
      {"queries.webapp_list", {Query(&QueriesConfig::webapp_list), false, true}},
      {"queries.webapp_keys", {Query(&QueriesConfig::webapp_keys), false, true}},
      {"sshd.listen", {Append(&C::sshd, &SshdConfig::listen, CheckHostPort), true}},
      {"sshd.host_key", {Append(&C::sshd, &SshdConfig::host_key,
                                [](const std::string& v) {
                                  return v.empty() || v[0] != '/' ? "must be an absolute path"
                                                                  : "";
                                }),
                         true}},
      {"sshd.sftp_server", {Path(&C::sshd, &SshdConfig::sftp_server, false)}},
      {"sshd.authorized_keys_command", {Str(&C::sshd, &SshdConfig::authorized_keys_command)}},
      {"sshd.privsep_user", {NonEmptyStr(&C::sshd, &SshdConfig::privsep_user)}},
      {"sshd.lookup_user", {NonEmptyStr(&C::sshd, &SshdConfig::lookup_user)}},
      {"sshd.metrics_user", {NonEmptyStr(&C::sshd, &SshdConfig::metrics_user)}},
      {"sshd.privsep_chroot", {Path(&C::sshd, &SshdConfig::privsep_chroot, false)}},
      {"sshd.login_grace_time", {Uint(&C::sshd, &SshdConfig::login_grace_time, 1, 3600)}},
      {"sshd.max_auth_tries", {Uint(&C::sshd, &SshdConfig::max_auth_tries, 1, 100)}},
      {"sshd.max_startups",
       {[](Config& c, const std::string& v) -> std::string {
          unsigned a = 0, b = 0, f = 0;
          char extra = 0;
          int n = std::sscanf(v.c_str(), "%u:%u:%u%c", &a, &b, &f, &extra);
          if (n == 1 && v.find_first_not_of("0123456789") == std::string::npos && a > 0) {
            c.sshd.max_startups_begin = c.sshd.max_startups_full = a;
            c.sshd.max_startups_rate = 100;
            return "";
          }
          if (n != 3 || a == 0 || b > 100 || f < a) {
            return "must be START:RATE:FULL with 0 < START <= FULL and RATE <= 100, "
                   "e.g. 32:30:1000";
          }
          c.sshd.max_startups_begin = a;
          c.sshd.max_startups_rate = b;
          c.sshd.max_startups_full = f;
          return "";
        }}},
      {"sshd.per_source_max_startups", {Uint(&C::sshd, &SshdConfig::per_source_max_startups, 1, 100000)}},
      {"sshd.version_timeout", {Uint(&C::sshd, &SshdConfig::version_timeout, 1, 3600)}},
      {"sshd.max_sessions", {Uint(&C::sshd, &SshdConfig::max_sessions, 1, 1000)}},
      {"sshd.idle_timeout", {Uint(&C::sshd, &SshdConfig::idle_timeout, 0, 604800)}},
      {"sshd.client_alive_interval", {Uint(&C::sshd, &SshdConfig::client_alive_interval, 0, 86400)}},
      {"sshd.client_alive_count_max", {Uint(&C::sshd, &SshdConfig::client_alive_count_max, 1, 1000)}},
      {"sshd.proxy_protocol",
       {[](Config& c, const std::string& v) -> std::string {
          if (v != "off" && v != "optional" && v != "required") {
            return "must be off, optional or required";
          }
          c.sshd.proxy_protocol = v;
          return "";
        }}},
      {"sshd.proxy_trusted", {Append(&C::sshd, &SshdConfig::proxy_trusted, CheckCidr), true}},
      {"sshd.metrics_listen",
       {[](Config& c, const std::string& v) -> std::string {
          if (!v.empty()) {
            std::string problem = CheckHostPort(v);
            if (!problem.empty()) return problem;
          }
          c.sshd.metrics_listen = v;
          return "";
        }}},
      {"sshd.audit_log", {Path(&C::sshd, &SshdConfig::audit_log, true)}},
      {"sshd.banner", {Path(&C::sshd, &SshdConfig::banner, true)}},
      {"sshd.log_level",
       {[](Config& c, const std::string& v) -> std::string {
          static const std::set<std::string> levels = {"trace", "debug", "info", "warn",
                                                       "error", "critical", "off"};
          if (!levels.count(v)) return "must be one of trace, debug, info, warn, error, critical, off";
          c.sshd.log_level = v;
          return "";
        }}},
      {"sshd.kex_algorithms", {Algorithms(&SshdConfig::kex_algorithms, "kex_algorithms")}},
      {"sshd.kex", {Algorithms(&SshdConfig::kex_algorithms, "kex")}},
      {"sshd.ciphers", {Algorithms(&SshdConfig::ciphers, "ciphers")}},
      {"sshd.macs", {Algorithms(&SshdConfig::macs, "macs")}},
      {"sshd.host_key_algorithms", {Algorithms(&SshdConfig::host_key_algorithms, "host_key_algorithms")}},
      {"sshd.hostkey_algorithms", {Algorithms(&SshdConfig::host_key_algorithms, "hostkey_algorithms")}},
      {"sshd.pubkey_accepted_algorithms",
       {Algorithms(&SshdConfig::pubkey_accepted_algorithms, "pubkey_accepted_algorithms")}},
      {"sshd.allow_tcp_forwarding", {Directions(&SshdConfig::allow_tcp_forwarding)}},
      {"sshd.allow_stream_local_forwarding", {Directions(&SshdConfig::allow_stream_local_forwarding)}},
      {"sshd.allow_agent_forwarding",
       {[](Config& c, const std::string& v) -> std::string {
          if (v != "yes" && v != "no") return "must be yes or no";
          c.sshd.allow_agent_forwarding = v == "yes";
          return "";
        }}},
      {"sshd.permit_open", {Permits(&SshdConfig::permit_open, PermitKind::kOpen), true}},
      {"sshd.permit_listen", {Permits(&SshdConfig::permit_listen, PermitKind::kListen), true}},
      {"sshd.gateway_ports",
       {[](Config& c, const std::string& v) -> std::string {
          if (v == "no") {
            c.sshd.gateway_ports = GatewayPorts::kNo;
          } else if (v == "yes") {
            c.sshd.gateway_ports = GatewayPorts::kYes;
          } else if (v == "clientspecified") {
            c.sshd.gateway_ports = GatewayPorts::kClientSpecified;
          } else {
            return "must be no, yes or clientspecified";
          }
          return "";
        }}},
      {"sshd.max_forwards", {Uint(&C::sshd, &SshdConfig::max_forwards, 1, 10000)}},
      {"sshd.max_listeners", {Uint(&C::sshd, &SshdConfig::max_listeners, 0, 1000)}},
  };
}

int Handler(void* user, const char* section, const char* name, const char* value) {
  auto* ctx = static_cast<ParseContext*>(user);
  std::string key = std::string(section) + "." + name;
  auto fail = [&](const std::string& problem) {
    if (ctx->error.empty()) {
      ctx->error = ctx->origin + ":" + std::to_string(ctx->line) + ": [" + section + "] " +
                   name + ": " + problem;
    }
    return 0;
  };
  const auto& table = *ctx->table;
  auto it = table.find(key);
  if (it == table.end()) {
    bool known_section = false;
    for (const auto& entry : table) {
      if (entry.first.compare(0, std::strlen(section) + 1, std::string(section) + ".") == 0) {
        known_section = true;
        break;
      }
    }
    if (!known_section) return fail("unknown section [" + std::string(section) + "]");
    return fail("unknown key");
  }
  const KeySpec& spec = it->second;
  if (ctx->continuation) {
    if (!spec.joins_continuations) return fail("unexpected indented line (only [queries] values may continue)");
  } else if (!spec.repeatable && !ctx->seen.insert(key).second) {
    return fail("given twice");
  }
  // Our own copy, wiped once stored: a value may be the password, and a freed copy would
  // outlive the parse in the memory of every process allgo-sshd forks.
  std::string copy = value;
  std::string problem = spec.set(*ctx->config, copy);
  WipeString(&copy);
  if (!problem.empty()) return fail(problem);
  ctx->config->lines.emplace(key, ctx->line);
  return 1;
}

// The first line, read with read(2) into a buffer wiped afterwards (stdio would leave a copy
// in its freed buffer).
Status ReadPasswordFile(const std::string& path, std::string* out) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Status::FromErrno("cannot read password_file " + path, errno);
  char buf[1024];
  ssize_t n;
  do {
    n = read(fd.get(), buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    explicit_bzero(buf, sizeof buf);
    return Status::FromErrno("cannot read password_file " + path, err);
  }
  size_t len = 0;
  while (len < static_cast<size_t>(n) && buf[len] != '\n' && buf[len] != '\r') ++len;
  out->assign(buf, len);
  explicit_bzero(buf, sizeof buf);
  if (len == 0) return Status::Invalid("password_file " + path + " is empty");
  return Status::Ok();
}

// The [mysql] TLS keys, after the whole file was read. Errors name the line of the key they
// are about. The files are opened here, so `--check` of every program reports a missing or
// unreadable one; only their PEM content waits for the first connection.
Status ValidateMysqlTls(const std::string& origin, PasswordFile password, Config* c) {
  MysqlConfig& m = c->mysql;
  auto at = [&](const std::string& key, const std::string& what) {
    auto line = c->lines.find("mysql." + key);
    std::string where = line == c->lines.end() ? origin : origin + ":" + std::to_string(line->second);
    return Status::Invalid(where + ": [mysql] " + key + ": " + what);
  };
  if (c->lines.count("mysql.ssl_verify_server_cert") == 0) m.ssl_verify_server_cert = !m.ssl_ca.empty();
  if (m.ssl_ca.empty()) {
    // Without a CA, a client certificate or a verification would trust any server.
    if (!m.ssl_cert.empty()) return at("ssl_cert", "needs ssl_ca (the CA that signed the server's certificate)");
    if (!m.ssl_key.empty()) return at("ssl_key", "needs ssl_ca (the CA that signed the server's certificate)");
    if (m.ssl_verify_server_cert) return at("ssl_verify_server_cert", "needs ssl_ca (the CA to verify against)");
    return Status::Ok();
  }
  if (m.host.empty()) return at("ssl_ca", "TLS needs a TCP server: set host (a unix socket never leaves this host)");
  if (m.ssl_cert.empty() != m.ssl_key.empty()) {
    return m.ssl_cert.empty() ? at("ssl_key", "needs ssl_cert (the client certificate it belongs to)")
                              : at("ssl_cert", "needs ssl_key (the private key of this certificate)");
  }
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"ssl_ca", &m.ssl_ca},
                           {"ssl_cert", &m.ssl_cert}, {"ssl_key", &m.ssl_key}}) {
    if (path->empty()) continue;
    UniqueFd fd(open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    struct stat st {};
    int err = !fd ? errno : fstat(fd.get(), &st) != 0 ? errno : 0;
    if (err == EACCES && password == PasswordFile::kIfReadable && path == &m.ssl_key) {
      // Like a root-only password_file: this unprivileged reader does without the database.
      m.password_error = "[mysql] ssl_key " + m.ssl_key + " is not readable by uid " + std::to_string(getuid());
      continue;
    }
    if (err != 0) return at(key, Status::FromErrno("cannot read " + *path, err).message());
    if (!S_ISREG(st.st_mode)) return at(key, *path + " is not a regular file");
  }
  return Status::Ok();
}

// Cross-key rules and defaults, after the whole file was read.
Status Validate(const std::string& origin, PasswordFile password, Config* c) {
  auto bad = [&](const std::string& what) { return Status::Invalid(origin + ": " + what); };
  if (c->mysql.host.empty() && c->mysql.socket.empty()) c->mysql.socket = "/run/mysqld/mysqld.sock";
  if (!c->mysql.password.empty() && !c->mysql.password_file.empty()) {
    return bad("[mysql] password and password_file are both set; keep one");
  }
  if (!c->mysql.password_file.empty()) {
    Status s = ReadPasswordFile(c->mysql.password_file, &c->mysql.password);
    if (!s.ok() && password == PasswordFile::kIfReadable && s.code() == Status::Code::kPermission) {
      c->mysql.password_error = "[mysql] password_file " + c->mysql.password_file +
                                " is not readable by uid " + std::to_string(getuid());
    } else if (!s.ok()) {
      return bad("[mysql] password_file: " + s.message());
    }
  }
  Status tls = ValidateMysqlTls(origin, password, c);
  if (!tls.ok()) return tls;
  if (c->nss.min_uid > c->nss.max_uid) return bad("[nss] min_uid is greater than max_uid");
  if (c->nss.shell.empty()) c->nss.shell = ALLGO_DEFAULT_SHELL;
  if (c->sshd.listen.empty()) c->sshd.listen.push_back("127.0.0.1:2222");
  if (c->sshd.proxy_trusted.empty()) c->sshd.proxy_trusted.push_back("127.0.0.0/8");
  if (c->sshd.host_key.empty()) c->sshd.host_key.push_back("/etc/allgo/ssh_host_ed25519_key");
  const QueriesConfig& defaults = WebappDirectory::DefaultQueries();
  struct {
    const char* name;
    std::string QueriesConfig::*field;
    int params;
  } queries[] = {{"webapp_by_name", &QueriesConfig::webapp_by_name, 1},
                 {"webapp_by_id", &QueriesConfig::webapp_by_id, 1},
                 {"webapp_list", &QueriesConfig::webapp_list, 0},
                 {"webapp_keys", &QueriesConfig::webapp_keys, 1}};
  if (!c->queries.sandbox_location.empty()) {
    std::string problem = CheckQuery(c->queries.sandbox_location, 1);
    if (!problem.empty()) return bad("[queries] sandbox_location: " + problem);
  }
  if (c->sandbox.backend == SandboxBackend::kDocker) {
    if (c->docker.nodes.empty()) {
      return bad("[sandbox] backend = docker needs at least one [docker] node = NAME URL line");
    }
    bool tcp = std::any_of(c->docker.nodes.begin(), c->docker.nodes.end(),
                           [](const DockerNode& n) { return n.url.rfind("tcp://", 0) == 0; });
    if (tcp && (c->docker.tls_ca.empty() || c->docker.tls_cert.empty() || c->docker.tls_key.empty())) {
      return bad("[docker] a tcp:// node needs tls_ca, tls_cert and tls_key (the gateway's client certificate)");
    }
  }
  for (const auto& q : queries) {
    std::string& sql = c->queries.*(q.field);
    if (sql.empty()) {
      sql = defaults.*(q.field);
      continue;
    }
    std::string problem = CheckQuery(sql, q.params);
    if (!problem.empty()) return bad(std::string("[queries] ") + q.name + ": " + problem);
  }
  return Status::Ok();
}

}  // namespace

const char* DefaultConfigPath() { return ALLGO_DEFAULT_CONFIG; }

const char* ForwardDirectionsName(ForwardDirections d) {
  switch (d) {
    case ForwardDirections::kNo: return "no";
    case ForwardDirections::kLocal: return "local";
    case ForwardDirections::kRemote: return "remote";
    case ForwardDirections::kAll: return "yes";
  }
  return "?";
}

const char* GatewayPortsName(GatewayPorts g) {
  switch (g) {
    case GatewayPorts::kNo: return "no";
    case GatewayPorts::kYes: return "yes";
    case GatewayPorts::kClientSpecified: return "clientspecified";
  }
  return "?";
}

std::string ResolveConfigPath(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  const char* env = secure_getenv("ALLGO_SSH_CONFIG");
  if (env && *env) return env;
  return DefaultConfigPath();
}

Status ParseConfig(const std::string& text, const std::string& origin, Config* out, PasswordFile password) {
  Config config;
  // On every return, the local copy's secrets are wiped (after the move below only a short
  // password's inline bytes remain there).
  struct ScrubOnReturn {
    Config* config;
    ~ScrubOnReturn() { ScrubSecrets(config); }
  } scrub{&config};
  config.path = origin;
  const std::map<std::string, KeySpec> table = BuildTable();
  ParseContext ctx;
  ctx.table = &table;
  ctx.config = &config;
  ctx.origin = origin;
  ctx.text = text.c_str();
  if (text.find('\0') != std::string::npos) return Status::Invalid(origin + ": contains a NUL byte");
  int rc = ini_parse_stream(StringReader, &ctx, Handler, &ctx);
  if (!ctx.error.empty()) return Status::Invalid(ctx.error);
  if (rc > 0) {
    return Status::Invalid(origin + ":" + std::to_string(rc) +
                           ": syntax error (expected [section], key = value, or a comment)");
  }
  if (rc < 0) return Status::IoError(origin + ": cannot parse (out of memory)");
  Status s = Validate(origin, password, &config);
  if (!s.ok()) return s;
  ScrubSecrets(out);
  *out = std::move(config);
  return Status::Ok();
}

// read(2) into a buffer sized from fstat (a pipe or /dev/stdin grows it), every buffer wiped
// before it is freed: no stdio buffer and no reallocation leaves a stray copy of the password.
Status LoadConfig(const std::string& path, Config* out, PasswordFile password) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    int err = errno;
    Status s = Status::FromErrno("cannot read config " + path, err);
    if (err == ENOENT) {
      return Status::NotFound(s.message() +
                              " (copy conf/allgo-ssh.conf there, or pass --config PATH)");
    }
    return s;
  }
  constexpr size_t kMaxSize = 1u << 20;
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno("cannot read config " + path, errno);
  std::string text(std::max<size_t>(static_cast<size_t>(st.st_size) + 1, 4096), '\0');
  size_t used = 0;
  while (true) {
    if (used == text.size()) {
      if (used > kMaxSize) break;  // refused below
      std::string bigger(2 * text.size(), '\0');
      std::memcpy(bigger.data(), text.data(), used);
      WipeString(&text);
      text.swap(bigger);
    }
    ssize_t n = read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      WipeString(&text);
      return Status::IoError("cannot read config " + path);
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > kMaxSize) {
    WipeString(&text);
    return Status::Invalid(path + ": larger than 1 MiB; is this really the config file?");
  }
  text.resize(used);
  Status s = ParseConfig(text, path, out, password);
  WipeString(&text);
  return s;
}

void WipeString(std::string* s) {
  explicit_bzero(s->data(), s->capacity());
  s->clear();
}

void ScrubSecrets(Config* config) { WipeString(&config->mysql.password); }

}  // namespace allgo
