#include "algorithm_policy.h"

#include <libssh/libssh.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

namespace allgo::sshd {

namespace {

using Names = std::vector<std::string>;

struct KindInfo {
  AlgorithmKind kind;
  const char* key;
  const char* noun;
  ssh_options_e probe;  // a session option libssh checks names of (ssh_keep_known_algos)
  Names openssh;
  Names defaults;
};

const std::vector<KindInfo>& Kinds() {
  static const std::vector<KindInfo> kinds = {
      {AlgorithmKind::kKex, "kex_algorithms", "key exchange algorithm", SSH_OPTIONS_KEY_EXCHANGE,
       {"mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256", "diffie-hellman-group-exchange-sha1",
        "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256",
        "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1"},
       // Post-quantum hybrids first (libssh >= 0.12), then curve25519, then the large
       // finite-field groups for clients without curve25519. Strict kex (Terrapin) and ext-info
       // are added by libssh itself.
       {"mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512"}},
      {AlgorithmKind::kCipher, "ciphers", "cipher", SSH_OPTIONS_CIPHERS_C_S,
       {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com", "aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"},
       {"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr",
        "aes192-ctr", "aes128-ctr"}},
      {AlgorithmKind::kMac, "macs", "MAC", SSH_OPTIONS_HMAC_C_S,
       {"umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "hmac-sha1-96-etm@openssh.com",
        "hmac-md5-etm@openssh.com", "hmac-md5-96-etm@openssh.com", "umac-64@openssh.com",
        "umac-128@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1", "hmac-sha1-96", "hmac-md5",
        "hmac-md5-96"},
       {"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"}},
      {AlgorithmKind::kHostKey, "host_key_algorithms", "host key algorithm", SSH_OPTIONS_HOSTKEYS,
       {"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "webauthn-sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256",
        "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com", "ssh-rsa",
        "ssh-rsa-cert-v01@openssh.com", "ssh-dss", "ssh-dss-cert-v01@openssh.com"},
       // Only the types of the loaded host keys are offered; ECDSA comes last.
       {"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521"}},
      {AlgorithmKind::kPubkey, "pubkey_accepted_algorithms", "public key algorithm",
       SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES,
       {},  // same names as host keys (filled below)
       // The users' own keys: no ssh-rsa (SHA-1) and no DSA.
       {"ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256"}},
  };
  return kinds;
}

const KindInfo& Info(AlgorithmKind kind) {
  for (const auto& k : Kinds()) {
    if (k.kind == kind) return k;
  }
  return Kinds().front();
}

std::string Join(const Names& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

Names Split(const std::string& list) {
  Names out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool IsPattern(const std::string& name) { return name.find_first_of("*?") != std::string::npos; }

void AddUnique(Names* list, const std::string& name) {
  if (std::find(list->begin(), list->end(), name) == list->end()) list->push_back(name);
}

struct SessionDeleter {
  void operator()(ssh_session s) const { ssh_free(s); }
};

}  // namespace

const std::vector<AlgorithmKind>& AllAlgorithmKinds() {
  static const std::vector<AlgorithmKind> kinds = {AlgorithmKind::kKex, AlgorithmKind::kCipher,
                                                   AlgorithmKind::kMac, AlgorithmKind::kHostKey,
                                                   AlgorithmKind::kPubkey};
  return kinds;
}

const char* AlgorithmKey(AlgorithmKind kind) { return Info(kind).key; }
const char* AlgorithmNoun(AlgorithmKind kind) { return Info(kind).noun; }

const std::vector<std::string>& OpenSshAlgorithmNames(AlgorithmKind kind) {
  if (kind == AlgorithmKind::kPubkey) return Info(AlgorithmKind::kHostKey).openssh;
  return Info(kind).openssh;
}

const std::vector<std::string>& DefaultAlgorithmNames(AlgorithmKind kind) { return Info(kind).defaults; }

bool LibsshImplements(AlgorithmKind kind, const std::string& name) {
  static std::mutex mutex;
  static std::map<std::pair<AlgorithmKind, std::string>, bool> known;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = known.find({kind, name});
  if (it != known.end()) return it->second;
  // libssh keeps the names it implements from an option's list and fails when none is left:
  // one name per try asks the library that is actually loaded, whatever headers we built with.
  std::unique_ptr<ssh_session_struct, SessionDeleter> session(ssh_new());
  bool ok = session && ssh_options_set(session.get(), Info(kind).probe, name.c_str()) == SSH_OK;
  known[{kind, name}] = ok;
  return ok;
}

std::string LinkedLibsshVersion() {
  const char* v = ssh_version(0);
  std::string s = v ? v : "?";
  // ssh_version() reports "0.12.2/openssl/zlib".
  return s.substr(0, s.find('/'));
}

bool AlgorithmPatternMatches(const std::string& pattern, const std::string& name) {
  // Iterative glob with backtracking to the last '*'.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string AssembleAlgorithmList(const AlgorithmListInput& in, std::vector<std::string>* out) {
  auto known = [&](const std::string& name) {
    return std::find(in.known.begin(), in.known.end(), name) != in.known.end();
  };
  Names usable;  // what patterns match against, in OpenSSH's order
  for (const auto& name : in.known) {
    if (in.implemented(name)) usable.push_back(name);
  }
  Names defaults;
  for (const auto& name : in.defaults) {
    if (in.implemented(name)) defaults.push_back(name);
  }
  if (in.spec.empty()) {
    *out = defaults;
    return "";
  }
  char op = in.spec[0];
  bool has_op = op == '+' || op == '-' || op == '^';
  Names items = Split(has_op ? in.spec.substr(1) : in.spec);
  for (const auto& item : items) {
    if (item.empty()) return "has an empty name in the list";
    if (item[0] == '!') return "'" + item + "': negated patterns are not allowed here";
    if (IsPattern(item)) continue;
    if (!known(item)) {
      return "'" + item + "' is not an OpenSSH " + in.noun + " name (known: " + Join(in.known) + ")";
    }
    // Removing a name the library lacks is harmless; asking for it is not.
    if (op != '-' && !in.implemented(item)) {
      return "'" + item + "' is not implemented by " + in.implementation + " (it has: " + Join(usable) + ")";
    }
  }
  Names result;
  auto add_matching = [&](const Names& patterns) {
    for (const auto& pattern : patterns) {
      for (const auto& name : usable) {
        if (AlgorithmPatternMatches(pattern, name)) AddUnique(&result, name);
      }
    }
  };
  if (op == '-') {
    for (const auto& name : defaults) {
      bool removed = std::any_of(items.begin(), items.end(),
                                 [&](const std::string& p) { return AlgorithmPatternMatches(p, name); });
      if (!removed) result.push_back(name);
    }
  } else if (op == '+') {
    result = defaults;
    add_matching(items);
  } else if (op == '^') {
    add_matching(items);
    for (const auto& name : defaults) AddUnique(&result, name);
  } else {
    add_matching(items);
  }
  if (result.empty()) return "'" + in.spec + "' leaves no " + in.noun + " to offer";
  *out = std::move(result);
  return "";
}

namespace {

template <typename Policy>
auto& FieldOf(Policy& policy, AlgorithmKind kind) {
  switch (kind) {
    case AlgorithmKind::kKex: return policy.kex_algorithms;
    case AlgorithmKind::kCipher: return policy.ciphers;
    case AlgorithmKind::kMac: return policy.macs;
    case AlgorithmKind::kHostKey: return policy.host_key_algorithms;
    case AlgorithmKind::kPubkey: return policy.pubkey_accepted_algorithms;
  }
  return policy.kex_algorithms;
}

}  // namespace

const std::string& AlgorithmPolicy::Get(AlgorithmKind kind) const { return FieldOf(*this, kind); }

Status ResolveAlgorithmPolicy(const Config& config, AlgorithmPolicy* out) {
  const SshdConfig& s = config.sshd;
  AlgorithmPolicy policy;
  for (AlgorithmKind kind : AllAlgorithmKinds()) {
    const AlgorithmSetting* setting = &FieldOf(s, kind);
    AlgorithmListInput input;
    input.spec = setting->value;
    input.defaults = DefaultAlgorithmNames(kind);
    input.known = OpenSshAlgorithmNames(kind);
    input.implemented = [kind](const std::string& name) { return LibsshImplements(kind, name); };
    input.noun = AlgorithmNoun(kind);
    input.implementation = "the linked libssh " + LinkedLibsshVersion();
    std::vector<std::string> names;
    std::string problem = AssembleAlgorithmList(input, &names);
    if (!problem.empty()) {
      std::string key = setting->key.empty() ? AlgorithmKey(kind) : setting->key;
      auto line = config.lines.find("sshd." + key);
      std::string where = config.path + (line == config.lines.end() ? "" : ":" + std::to_string(line->second));
      return Status::Invalid(where + ": [sshd] " + key + ": " + problem);
    }
    FieldOf(policy, kind) = Join(names);
  }
  *out = std::move(policy);
  return Status::Ok();
}

}  // namespace allgo::sshd
