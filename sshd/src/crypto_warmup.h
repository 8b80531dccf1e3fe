// Builds libcrypto's algorithm tables once in the listener, before any connection is forked.
//
// OpenSSL 3 constructs its method stores lazily: the first fetch of a cipher, digest, MAC,
// KDF, key manager, key exchange or signature builds the table of *every* algorithm of that
// kind the default provider offers (a few hundred heap objects). Left to the network child,
// each connection would build its own tables on its first key exchange, ~200 KiB of private
// heap per session that stays for the session's life. Built here, the children read the
// listener's copy (copy-on-write pages they only share).
//
// Nothing secret is created: no key, no random generator instance (each process still seeds
// its own generator on first use), only the algorithm descriptions.
#pragma once

namespace allgo::sshd {

void WarmCryptoTables();

}  // namespace allgo::sshd
