#include "crypto_warmup.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

namespace allgo::sshd {
namespace {

template <typename T>
void Ignore(T*, void*) {}

}  // namespace

void WarmCryptoTables() {
  // One pass per operation kind libssh's key exchange, transport and host key signature use.
  EVP_CIPHER_do_all_provided(nullptr, Ignore<EVP_CIPHER>, nullptr);
  EVP_MD_do_all_provided(nullptr, Ignore<EVP_MD>, nullptr);
  EVP_MAC_do_all_provided(nullptr, Ignore<EVP_MAC>, nullptr);
  EVP_KDF_do_all_provided(nullptr, Ignore<EVP_KDF>, nullptr);
  EVP_KEYMGMT_do_all_provided(nullptr, Ignore<EVP_KEYMGMT>, nullptr);
  EVP_KEYEXCH_do_all_provided(nullptr, Ignore<EVP_KEYEXCH>, nullptr);
  EVP_SIGNATURE_do_all_provided(nullptr, Ignore<EVP_SIGNATURE>, nullptr);
  EVP_RAND_do_all_provided(nullptr, Ignore<EVP_RAND>, nullptr);
}

}  // namespace allgo::sshd
