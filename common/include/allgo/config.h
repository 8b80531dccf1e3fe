// The one configuration file shared by every allgo-ssh component (DESIGN.md, "Configuration").
//
// INI syntax (parsed by inih): `[section]`, `key = value`, comments start with ';' or '#',
// and an inline comment is ' ;'. Keys marked "may repeat" accumulate; any other key given
// twice is an error, and so is an unknown section or key, a bad value, or a line longer than
// the 199 characters inih reads (split long queries over indented continuation lines). Every error names the file, the line and the key.
//
// Path resolution (ResolveConfigPath): an explicit --config PATH, else $ALLGO_SSH_CONFIG read
// with secure_getenv (setuid/setgid programs ignore it), else the built-in default
// (/etc/allgo/allgo-ssh.conf unless the build changed it).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "allgo/forward_permits.h"
#include "allgo/key_options.h"
#include "allgo/status.h"

namespace allgo {

struct MysqlConfig {
  std::string socket;        // unix socket; used when host is empty
  std::string host;          // TCP host (numeric addresses avoid a resolver round trip)
  unsigned port = 3306;
  std::string database = "allgo";
  std::string user = "ssh";
  std::string password;      // from `password` or the first line of `password_file`
  std::string password_file;
  // Set instead of failing when LoadConfig was asked for PasswordFile::kIfReadable and this
  // process may not read password_file or ssl_key (a root-only file, read by an unprivileged
  // helper): says why this process cannot use the database.
  std::string password_error;
  unsigned connect_timeout = 2;  // seconds; bounds connect, each read and each write
  // TLS to a server reached over TCP (`host`). ssl_ca set: TLS is required (no fallback to
  // clear text) and the server's certificate must be signed by this CA and, unless
  // ssl_verify_server_cert = false, name `host`. ssl_cert/ssl_key: a client certificate, both
  // or neither.
  std::string ssl_ca;
  std::string ssl_cert;
  std::string ssl_key;
  bool ssl_verify_server_cert = false;  // default: on when ssl_ca is set
};

struct NssConfig {
  uint32_t uid_offset = 2000;
  uint32_t min_uid = 2000;
  uint32_t max_uid = 59999;
  uint32_t gid = 65534;
  std::string group_name = "allgo";  // name of the gid's group entry served by the module
  std::string shell;                 // default: the installed allgo-shell
  std::string home = "/";
  unsigned cache_ttl = 5;            // seconds; 0 disables the in-process cache
};

struct AuthkeysConfig {
  // Printed by allgo-authkeys before every key (for OpenSSH); validated at load
  // (key_options.h): an option allgo-sshd cannot honour is a config error. Not set, it is
  // "restrict,pty" for OpenSSH (which must never forward from the frontend) and nothing for
  // allgo-sshd (forwarding into the sandbox per [sshd]); set, both apply it
  // (docs/decisions.md, "key_options and forwarding").
  std::string key_options = "restrict,pty";
  bool key_options_set = false;              // given in the file
  KeyOptions options = DefaultKeyOptions();  // key_options, parsed: what OpenSSH applies
  KeyOptions sshd_options;                   // what allgo-sshd applies before the key's own
  bool allow_superusers = false;
};

// How allgo-shell reaches a webapp's sandbox (DESIGN.md, "Sandbox backends").
enum class SandboxBackend {
  kBridge,  // the shared bridge folder <dir>/<docker_name>/ on this host
  kDocker,  // allgo-sandbox-gateway, through the Docker Engine API of [docker] nodes
};

struct SandboxConfig {
  SandboxBackend backend = SandboxBackend::kBridge;
  std::string dir = "/vol/cache/allgo-sandboxes";
  unsigned start_wait = 30;
};

// One `[docker] node = NAME URL` line.
struct DockerNode {
  std::string name;  // [a-z0-9][a-z0-9_.-]{0,62}: shown in messages, returned by sandbox_location
  std::string url;   // unix:///ABSOLUTE/PATH or tcp://HOST:PORT (always TLS)
};

// [docker]: only read by the gateway (and allgo-shell, for the socket) with backend = docker.
struct DockerConfig {
  std::vector<DockerNode> nodes;  // may repeat; names unique; at least one with backend = docker
  std::string tls_ca;             // required when a node is tcp://
  std::string tls_cert;
  std::string tls_key;
  // The container of a webapp: `{docker_name}` and `{id}` (webapps.id) are replaced; the
  // result must be a valid container name by docker_name's rule (checked per webapp).
  std::string container = "{docker_name}";
  std::string agent = "/.allgo/allgo-sandbox-agent";  // the static agent inside every container
  std::string gateway_socket = "/run/allgo-ssh/gateway.sock";
  std::string gateway_user = "allgo-gateway";
  unsigned api_timeout = 10;       // seconds, one Engine API call
  // Sessions the gateway runs at once for the webapps of one owner (users.id), all together:
  // one owner's few webapps cannot take every one of the gateway's sessions (docs/gateway.md
  // "Limits").
  unsigned max_sessions_per_owner = 256;
  // Warm spare execs (docs/gateway.md "Warm spares"): at most this many in all, one per
  // webapp (0: none, every login execs); each closed after spare_idle seconds unused.
  unsigned spares = 256;
  unsigned spare_idle = 300;
  // Prewarm (docs/gateway.md "Warm spares"): every prewarm_every seconds the gateway lists the
  // webapps and keeps a spare in each running container (within `spares`), so that a first
  // login is warm too. Off by default (docs/decisions.md).
  bool prewarm = false;
  unsigned prewarm_every = 60;
  // A label the allgo controller sets on each sandbox container, whose value must be the
  // webapp's id (e.g. allgo.webapp_id): the gateway reads it in the inspect answer and refuses
  // a container labelled for another webapp (or not labelled) before any exec. Empty: off.
  // Recommended (docs/security.md).
  std::string webapp_label;
};

// [queries]: the SQL the components run, overridable for databases with other column names.
// Each must be a single SELECT with exactly the documented number of '?' parameters and
// return the documented columns in order (docs/configuration.md). A query may continue on
// indented lines (inih's multi-line values), which are joined with a space.
struct QueriesConfig {
  // ? = docker_name → id, docker_name, name, owner user id, sandbox_state
  std::string webapp_by_name;
  // ? = webapps.id → same columns
  std::string webapp_by_id;
  // no parameter → same columns, every webapp, ordered by id
  std::string webapp_list;
  // ? = webapps.id → user id, email, is_active, is_superuser, is_owner, public_key; one row per
  // key of a user who may be allowed in (owner or superuser); the policy is applied in code.
  std::string webapp_keys;
  // Optional. ? = webapps.id → node name, container name of the webapp's sandbox (no row: not
  // known). Empty: the gateway asks every [docker] node and caches the answer briefly.
  std::string sandbox_location;
};

// One `[sshd]` algorithm list as written: the value and the key it was given under (an alias
// keeps its own name for messages; Config::lines has its line).
struct AlgorithmSetting {
  std::string value;
  std::string key;
};

// allow_tcp_forwarding / allow_stream_local_forwarding, OpenSSH's values (yes = all).
enum class ForwardDirections { kNo, kLocal, kRemote, kAll };
const char* ForwardDirectionsName(ForwardDirections d);
// gateway_ports: whether a -R listener inside the sandbox may bind a non-loopback address.
enum class GatewayPorts { kNo, kYes, kClientSpecified };
const char* GatewayPortsName(GatewayPorts g);

struct SshdConfig {
  std::vector<std::string> listen;      // may repeat; default 127.0.0.1:2222 when none given
  std::vector<std::string> host_key;    // may repeat
  std::string sftp_server = "/usr/lib/openssh/sftp-server";
  std::string authorized_keys_command;  // empty: keys looked up in-process
  // Each role its own dedicated system user (docs/security.md, "Users"): the network
  // children, the lookup child with its key helper, the metrics endpoint.
  std::string privsep_user = "allgo-sshd";
  std::string lookup_user = "allgo-authkeys";
  std::string metrics_user = "allgo-metrics";
  std::string privsep_chroot = "/run/allgo-sshd";
  unsigned login_grace_time = 30;
  unsigned max_auth_tries = 6;
  unsigned max_startups_begin = 32;     // max_startups = begin:rate:full (sshd/src/admission.h)
  unsigned max_startups_rate = 30;      // accepted for OpenSSH compatibility, not used
  unsigned max_startups_full = 1000;
  unsigned per_source_max_startups = 200;  // unauthenticated connections from one address
  unsigned version_timeout = 5;         // seconds for a client's SSH version line, once begun
  unsigned max_sessions = 10;
  unsigned idle_timeout = 0;
  unsigned client_alive_interval = 15;
  unsigned client_alive_count_max = 3;
  std::string proxy_protocol = "off";   // off | optional | required
  std::vector<std::string> proxy_trusted;  // may repeat; default 127.0.0.0/8 when none given
  std::string metrics_listen;
  std::string audit_log;
  std::string banner;
  std::string log_level = "info";       // trace|debug|info|warn|error|critical|off
  // Algorithm policy in OpenSSH's list syntax (NAME,... | +NAME,... | -PATTERN,... | ^NAME,...);
  // empty: the built-in defaults. Checked against the linked libssh by allgo-sshd
  // (sshd/src/algorithm_policy.h), which names the line from `lines`.
  AlgorithmSetting kex_algorithms;      // alias: kex
  AlgorithmSetting ciphers;
  AlgorithmSetting macs;
  AlgorithmSetting host_key_algorithms;  // alias: hostkey_algorithms
  AlgorithmSetting pubkey_accepted_algorithms;
  // Forwarding into the sandbox (docs/forwarding.md), OpenSSH's keys; each key's options
  // narrow it further (sshd/src/forward_policy.h).
  ForwardDirections allow_tcp_forwarding = ForwardDirections::kAll;
  ForwardDirections allow_stream_local_forwarding = ForwardDirections::kAll;
  bool allow_agent_forwarding = true;
  PermitList permit_open;    // may repeat; default any
  PermitList permit_listen;  // may repeat; default any
  GatewayPorts gateway_ports = GatewayPorts::kNo;
  unsigned max_forwards = 64;   // forwarded channels open at once, per connection
  unsigned max_listeners = 16;  // -R listeners, per connection
};

struct Config {
  std::string path;  // the file it was read from
  MysqlConfig mysql;
  NssConfig nss;
  AuthkeysConfig authkeys;
  SandboxConfig sandbox;
  DockerConfig docker;
  QueriesConfig queries;
  SshdConfig sshd;
  std::map<std::string, int> lines;  // "section.key" → the line it was given on (checks made later)
};

// The path to read: `explicit_path` if non-empty, else $ALLGO_SSH_CONFIG (secure_getenv),
// else the built-in default.
std::string ResolveConfigPath(const std::string& explicit_path);
const char* DefaultConfigPath();

// kRequired: an unreadable password_file (or ssl_key) is an error. kIfReadable: for
// unprivileged readers that can do without the database (allgo-shell): EACCES leaves the
// password empty and says why in mysql.password_error.
enum class PasswordFile { kRequired, kIfReadable };

// Reads and validates a config file. Missing file, unreadable password_file, unknown keys and
// bad values are errors naming "<file>:<line>: [section] key: problem". Every transient copy
// of the file's text and values is wiped before it is freed: only `out` holds the secrets.
Status LoadConfig(const std::string& path, Config* out, PasswordFile password = PasswordFile::kRequired);
// The same from text; `origin` names it in messages. password_file is still read from disk.
Status ParseConfig(const std::string& text, const std::string& origin, Config* out,
                   PasswordFile password = PasswordFile::kRequired);

// Overwrites a string's whole buffer (explicit_bzero, so the compiler keeps it) and empties it.
void WipeString(std::string* s);
// Wipes every [mysql] secret of `config` (the password). A process that forks a child which
// must not know them calls it in the child before anything else (the network child does,
// before its first network byte).
void ScrubSecrets(Config* config);

}  // namespace allgo
