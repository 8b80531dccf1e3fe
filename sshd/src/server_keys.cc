#include "server_keys.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace allgo::sshd {

namespace {

std::string HowToMakeKey(const std::string& path) {
  return "create one with: ssh-keygen -t ed25519 -f " + path + " -N ''";
}

Status SetOption(ssh_bind bind, ssh_bind_options_e option, const std::string& value, const char* key) {
  if (ssh_bind_options_set(bind, option, value.c_str()) < 0) {
    return Status::Invalid(std::string("[sshd] ") + key + " = " + value + ": not supported by libssh (" +
                           ssh_get_error(bind) + ")");
  }
  return Status::Ok();
}

}  // namespace

Status MakeServerBind(const Config& config, UniqueBind* out, std::vector<std::string>* summary) {
  const SshdConfig& s = config.sshd;
  if (s.host_key.empty()) {
    return Status::Invalid(config.path + ": [sshd] has no host_key; " +
                           HowToMakeKey("/etc/allgo/ssh_host_ed25519_key") +
                           " and add `host_key = /etc/allgo/ssh_host_ed25519_key`");
  }
  UniqueBind bind(ssh_bind_new());
  if (!bind) return Status::IoError("ssh_bind_new failed");
  bool no = false;
  ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_PROCESS_CONFIG, &no);
  int verbosity = SSH_LOG_NOLOG;
  ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_LOG_VERBOSITY, &verbosity);

  for (const auto& path : s.host_key) {
    if (access(path.c_str(), R_OK) != 0) {
      return Status::FromErrno("host key " + path + " is not readable (" + HowToMakeKey(path) + ")", errno);
    }
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK || key == nullptr) {
      return Status::Invalid("host key " + path +
                             " is not an unencrypted OpenSSH private key (" + HowToMakeKey(path) + ")");
    }
    std::string type = ssh_key_type_to_char(ssh_key_type(key)) ? ssh_key_type_to_char(ssh_key_type(key)) : "?";
    unsigned char* hash = nullptr;
    size_t hlen = 0;
    std::string fp = "?";
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
      char* f = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
      if (f) {
        fp = f;
        ssh_string_free_char(f);
      }
      ssh_clean_pubkey_hash(&hash);
    }
    // The bind takes ownership of the key (one per type: a later key of a type replaces
    // an earlier one, so duplicates are rejected).
    if (ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_IMPORT_KEY, key) < 0) {
      ssh_key_free(key);
      return Status::Invalid("host key " + path + " (" + type + "): type not usable as a host key");
    }
    for (const auto& line : *summary) {
      if (line.rfind(type + " ", 0) == 0) {
        return Status::Invalid("host key " + path + ": a " + type + " host key was already given (" + line +
                               "); one key per type");
      }
    }
    summary->push_back(type + " " + path + " " + fp);
  }

  AlgorithmPolicy policy;
  Status st = ResolveAlgorithmPolicy(config, &policy);
  if (st.ok()) st = SetOption(bind.get(), SSH_BIND_OPTIONS_KEY_EXCHANGE, policy.kex_algorithms, "kex_algorithms");
  if (st.ok()) st = SetOption(bind.get(), SSH_BIND_OPTIONS_CIPHERS_C_S, policy.ciphers, "ciphers");
  if (st.ok()) st = SetOption(bind.get(), SSH_BIND_OPTIONS_CIPHERS_S_C, policy.ciphers, "ciphers");
  if (st.ok()) st = SetOption(bind.get(), SSH_BIND_OPTIONS_HMAC_C_S, policy.macs, "macs");
  if (st.ok()) st = SetOption(bind.get(), SSH_BIND_OPTIONS_HMAC_S_C, policy.macs, "macs");
  if (st.ok()) {
    st = SetOption(bind.get(), SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, policy.host_key_algorithms,
                   "host_key_algorithms");
  }
  if (st.ok()) {
    st = SetOption(bind.get(), SSH_BIND_OPTIONS_PUBKEY_ACCEPTED_KEY_TYPES, policy.pubkey_accepted_algorithms,
                   "pubkey_accepted_algorithms");
  }
  if (!st.ok()) return st;
  *out = std::move(bind);
  return Status::Ok();
}

}  // namespace allgo::sshd
