// Packing records into the caller's buffer, the way glibc's *_r interfaces demand.
//
// Every string of the result (and the gr_mem array) lives inside [buf, buf + buflen): the
// caller owns that memory, the module keeps no pointer to it. The needed size is computed
// first; when the buffer is too small nothing is written and kRange is returned, which the
// entry points turn into NSS_STATUS_TRYAGAIN with *errnop = ERANGE (glibc then retries with a
// bigger buffer). gr_mem is aligned for `char*` whatever the alignment of `buf`.
//
// Pure functions, no allocation, no system call: safe anywhere, unit-tested in isolation.
#pragma once

#include <grp.h>
#include <pwd.h>

#include <cstddef>

#include "records.h"

namespace allgo::nss {

enum class PackResult { kOk, kRange };

// Bytes PackPasswd needs: every string plus its terminating NUL.
size_t PasswdBufferSize(const PasswdRecord& record) noexcept;
PackResult PackPasswd(const PasswdRecord& record, struct passwd* out, char* buf,
                      size_t buflen) noexcept;

// Bytes PackGroup needs when the buffer starts at `buf` (the alignment padding of gr_mem
// depends on the address).
size_t GroupBufferSize(const GroupRecord& record, const char* buf) noexcept;
PackResult PackGroup(const GroupRecord& record, struct group* out, char* buf,
                     size_t buflen) noexcept;

}  // namespace allgo::nss
