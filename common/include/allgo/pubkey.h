// OpenSSH public keys as users paste them into allgo (library allgo_keys, uses libssh).
//
// A pasted field may hold several lines; each non-empty line that is not a '#' comment must
// be `[options] type base64 [comment]`. Options are parsed past: they never reach an
// authorized_keys line we print (their text is kept in `options` for allgo-sshd, which honours
// them only in an authorized_keys_command's output). The base64 blob must decode to a key whose inner
// type is the declared type (checked by re-encoding the parsed key and comparing); RSA keys
// below 2048 bits, DSA keys, certificates and lines containing NUL or CR are rejected.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "allgo/status.h"

namespace allgo {

struct PublicKey {
  std::string type;         // e.g. "ssh-ed25519"
  std::string base64;       // canonical base64 of the key blob
  std::string comment;      // printable ASCII only, else empty
  std::string fingerprint;  // "SHA256:..." as ssh-keygen -l prints it
  unsigned bits = 0;        // key size in bits
  bool had_options = false; // the pasted line carried options (which were discarded)
  std::string options;      // their text, for an authorized_keys_command's output (key_options.h)
};

Status ParsePublicKeyLine(std::string_view line, PublicKey* out);

struct ParsedKeyField {
  std::vector<PublicKey> keys;
  std::vector<std::string> errors;  // one per rejected line: "line N: reason"
};
ParsedKeyField ParsePublicKeyField(std::string_view field);

// "<options> <type> <base64>[ <comment>]"; no options part when `options` is empty.
std::string FormatAuthorizedKeysLine(const PublicKey& key, std::string_view options);

}  // namespace allgo
