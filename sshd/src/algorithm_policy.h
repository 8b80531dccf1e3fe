// The [sshd] algorithm policy: kex_algorithms, ciphers, macs, host_key_algorithms and
// pubkey_accepted_algorithms, in OpenSSH's names and list syntax (sshd_config(5)):
//   NAME,NAME   replaces the default list     +NAME,...   appends to the default list
//   -PATTERN,.. removes from the default list ^NAME,...   puts names before the default list
// where a name may be a pattern with * and ? (matched against the names the linked libssh
// implements). An unknown name, or a known one the linked libssh lacks (post-quantum kex on
// libssh 0.10), is an error naming the file, line, key and name.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "allgo/config.h"
#include "allgo/status.h"

namespace allgo::sshd {

enum class AlgorithmKind { kKex, kCipher, kMac, kHostKey, kPubkey };

// Every algorithm kind, in the order --check prints them.
const std::vector<AlgorithmKind>& AllAlgorithmKinds();
// The config key ("kex_algorithms") and a noun for messages ("key exchange algorithm").
const char* AlgorithmKey(AlgorithmKind kind);
const char* AlgorithmNoun(AlgorithmKind kind);
// The names OpenSSH (up to 10.x) knows for `kind`: anything else is a typo or not SSH.
const std::vector<std::string>& OpenSshAlgorithmNames(AlgorithmKind kind);
// The built-in default, strongest first, before dropping what the linked libssh lacks:
// post-quantum hybrids, then curve25519; no NIST ECDH, no SHA-1, no CBC, EtM MACs only.
const std::vector<std::string>& DefaultAlgorithmNames(AlgorithmKind kind);
// Whether the linked libssh implements `name` (asked from libssh itself, once per name).
bool LibsshImplements(AlgorithmKind kind, const std::string& name);
// The linked libssh's version ("0.12.2").
std::string LinkedLibsshVersion();

// OpenSSH's wildcard match: * any run, ? any one character.
bool AlgorithmPatternMatches(const std::string& pattern, const std::string& name);

// Assembles one list from `spec` (empty: the defaults). `defaults` and `known` are OpenSSH
// names; `implemented` says which ones can be used. On error returns the problem ("'foo' is
// not ..."), without file or key; the result never has duplicates and is never empty.
struct AlgorithmListInput {
  std::string spec;
  std::vector<std::string> defaults;
  std::vector<std::string> known;
  std::function<bool(const std::string&)> implemented;
  std::string noun = "algorithm";
  std::string implementation = "the linked libssh";
};
std::string AssembleAlgorithmList(const AlgorithmListInput& input, std::vector<std::string>* out);

// The effective lists, comma-joined, as handed to libssh.
struct AlgorithmPolicy {
  std::string kex_algorithms;
  std::string ciphers;
  std::string macs;
  std::string host_key_algorithms;
  std::string pubkey_accepted_algorithms;
  const std::string& Get(AlgorithmKind kind) const;
};

// Resolves every list of config.sshd; errors read "<file>:<line>: [sshd] <key>: <problem>".
Status ResolveAlgorithmPolicy(const Config& config, AlgorithmPolicy* out);

}  // namespace allgo::sshd
