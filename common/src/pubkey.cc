// Key parsing is delegated to libssh (ssh_pki_import_pubkey_base64); what is ours is the
// authorized_keys line grammar and the rules of what we accept.
#include "allgo/pubkey.h"

#include <libssh/libssh.h>
#include <openssl/evp.h>

#include <array>
#include <memory>
#include <vector>

namespace allgo {
namespace {

constexpr size_t kMaxLine = 16 * 1024;  // an RSA-16384 key is ~2.8 KB of base64
constexpr size_t kMaxComment = 200;

constexpr std::array<std::string_view, 7> kAcceptedTypes = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
};

bool IsAcceptedType(std::string_view t) {
  for (auto a : kAcceptedTypes) {
    if (a == t) return true;
  }
  return false;
}

// DSA keys and certificates are named like keys but refused; options never look like this.
bool LooksLikeKeyType(std::string_view t) {
  for (std::string_view prefix : {"ssh-", "ecdsa-", "sk-", "rsa-"}) {
    if (t.substr(0, prefix.size()) == prefix) {
      return t.find_first_of("=\",") == std::string_view::npos;
    }
  }
  return false;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Splits off the first whitespace-delimited token. With `quoted`, double-quoted parts may
// contain spaces, and \" inside them is the only escape, as in OpenSSH's options syntax.
bool NextToken(std::string_view* rest, std::string_view* token, bool quoted) {
  std::string_view s = *rest;
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  if (s.empty()) return false;
  size_t i = 0;
  bool in_quotes = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && in_quotes && c == '\\' && i + 1 < s.size() && s[i + 1] == '"') {
      ++i;
    } else if (quoted && c == '"') {
      in_quotes = !in_quotes;
    } else if (!in_quotes && IsSpace(c)) {
      break;
    }
  }
  if (in_quotes) return false;
  *token = s.substr(0, i);
  *rest = s.substr(i);
  return true;
}

bool IsBase64(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= s.size() - 2);
    if (!ok) return false;
  }
  return true;
}

struct KeyFree {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

uint32_t ReadU32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Modulus size of an RSA key, read from its wire blob (string type, mpint e, mpint n);
// libssh 0.10 exports neither the blob nor the size, so the canonical base64 is decoded here.
unsigned RsaBits(const std::string& canonical_b64) {
  std::vector<unsigned char> decoded(canonical_b64.size());
  int n_out = EVP_DecodeBlock(decoded.data(),
                              reinterpret_cast<const unsigned char*>(canonical_b64.data()),
                              static_cast<int>(canonical_b64.size()));
  if (n_out < 0) return 0;
  const unsigned char* p = decoded.data();
  size_t len = static_cast<size_t>(n_out);
  unsigned bits = 0;
  size_t off = 0;
  for (int field = 0; field < 3; ++field) {
    if (off + 4 > len) break;
    uint32_t n = ReadU32(p + off);
    off += 4;
    if (n > len - off) break;
    if (field == 2) {
      size_t i = 0;
      while (i < n && p[off + i] == 0) ++i;
      if (i < n) {
        unsigned top = p[off + i];
        unsigned top_bits = 0;
        while (top) {
          ++top_bits;
          top >>= 1;
        }
        bits = static_cast<unsigned>((n - i - 1) * 8 + top_bits);
      }
    }
    off += n;
  }
  return bits;
}

unsigned KeyBits(ssh_key key, const std::string& canonical_b64) {
  switch (ssh_key_type(key)) {
    case SSH_KEYTYPE_ED25519:
    case SSH_KEYTYPE_SK_ED25519:
    case SSH_KEYTYPE_ECDSA_P256:
    case SSH_KEYTYPE_SK_ECDSA:
      return 256;
    case SSH_KEYTYPE_ECDSA_P384:
      return 384;
    case SSH_KEYTYPE_ECDSA_P521:
      return 521;
    case SSH_KEYTYPE_RSA:
      return RsaBits(canonical_b64);
    default:
      return 0;
  }
}

std::string Sha256Fingerprint(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t hlen = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != 0) return "";
  char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
  ssh_clean_pubkey_hash(&hash);
  if (!text) return "";
  std::string out(text);
  ssh_string_free_char(text);
  return out;
}

std::string PrintableComment(std::string_view c) {
  c = Trim(c);
  if (c.size() > kMaxComment) return "";
  for (char ch : c) {
    if (ch < 0x20 || ch > 0x7e) return "";
  }
  return std::string(c);
}

}  // namespace

Status ParsePublicKeyLine(std::string_view line, PublicKey* out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // pasted with CRLF
  if (line.size() > kMaxLine) return Status::Invalid("key line longer than 16 KiB");
  for (char c : line) {
    if (c == '\0' || c == '\r' || c == '\n') return Status::Invalid("key line contains NUL, CR or LF");
  }
  std::string_view rest = Trim(line);
  std::string_view token;
  if (!NextToken(&rest, &token, false)) return Status::Invalid("empty key line");
  bool had_options = false;
  std::string_view options;
  if (LooksLikeKeyType(token) && !IsAcceptedType(token)) {
    return Status::Invalid("unsupported key type '" + std::string(token.substr(0, 60)) +
                           "' (use ssh-ed25519, ecdsa-sha2-* or ssh-rsa of 2048 bits or more)");
  }
  if (!IsAcceptedType(token)) {
    // Not a key type: OpenSSH would read it as options. We skip them (they are never printed)
    // and expect the key right after.
    rest = Trim(line);
    if (!NextToken(&rest, &token, true)) return Status::Invalid("unterminated quote in key options");
    had_options = true;
    options = token;
    if (!NextToken(&rest, &token, false)) return Status::Invalid("no key type found");
    if (!IsAcceptedType(token)) {
      return Status::Invalid("unsupported or unknown key type '" +
                             std::string(token.substr(0, 40)) + "'");
    }
  }
  std::string type(token);
  std::string_view b64;
  if (!NextToken(&rest, &b64, false)) return Status::Invalid(type + " key without key data");
  if (!IsBase64(b64)) return Status::Invalid(type + " key data is not valid base64");

  enum ssh_keytypes_e libssh_type = ssh_key_type_from_name(type.c_str());
  ssh_key raw = nullptr;
  std::string b64_str(b64);
  if (libssh_type == SSH_KEYTYPE_UNKNOWN ||
      ssh_pki_import_pubkey_base64(b64_str.c_str(), libssh_type, &raw) != SSH_OK || !raw) {
    return Status::Invalid(type + " key data does not decode to a " + type + " key");
  }
  KeyPtr key(raw);
  // The blob names its own type inside; re-encoding the parsed key reproduces the input only
  // when that inner name and every field match the declared type.
  char* canonical = nullptr;
  if (ssh_pki_export_pubkey_base64(key.get(), &canonical) != SSH_OK || !canonical) {
    return Status::Invalid(type + " key cannot be re-encoded");
  }
  std::string canonical_str(canonical);
  ssh_string_free_char(canonical);
  if (canonical_str != b64_str) {
    return Status::Invalid(type + " key data does not match its declared type");
  }
  unsigned bits = KeyBits(key.get(), canonical_str);
  if (libssh_type == SSH_KEYTYPE_RSA && bits < 2048) {
    return Status::Invalid("RSA key of " + std::to_string(bits) + " bits; at least 2048 required");
  }
  PublicKey k;
  k.type = type;
  k.base64 = std::move(canonical_str);
  k.comment = PrintableComment(rest);
  k.fingerprint = Sha256Fingerprint(key.get());
  k.bits = bits;
  k.had_options = had_options;
  k.options = std::string(options);
  *out = std::move(k);
  return Status::Ok();
}

ParsedKeyField ParsePublicKeyField(std::string_view field) {
  ParsedKeyField result;
  int line_no = 0;
  while (!field.empty()) {
    size_t nl = field.find('\n');
    std::string_view line = field.substr(0, nl);
    field = nl == std::string_view::npos ? std::string_view() : field.substr(nl + 1);
    ++line_no;
    std::string_view trimmed = Trim(line);
    if (!trimmed.empty() && trimmed.back() == '\r') trimmed = Trim(trimmed.substr(0, trimmed.size() - 1));
    if (trimmed.empty() || trimmed.front() == '#') continue;
    PublicKey key;
    Status s = ParsePublicKeyLine(trimmed, &key);
    if (s.ok()) {
      result.keys.push_back(std::move(key));
    } else {
      result.errors.push_back("line " + std::to_string(line_no) + ": " + s.message());
    }
  }
  return result;
}

std::string FormatAuthorizedKeysLine(const PublicKey& key, std::string_view options) {
  std::string line;
  if (!options.empty()) {
    line.append(options);
    line.push_back(' ');
  }
  line += key.type;
  line.push_back(' ');
  line += key.base64;
  if (!key.comment.empty()) {
    line.push_back(' ');
    line += key.comment;
  }
  return line;
}

}  // namespace allgo
