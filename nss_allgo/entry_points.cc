// The glibc NSS entry points of service `allgo` — and nothing else.
//
// Each function is the C ABI face of a Module call (module.h): it runs inside a CallGuard
// (errno saved and restored, nested calls refused; SIGPIPE is handled where the module talks
// to the database), catches every exception, packs the record into the caller's buffer
// (pack.h) and sets *errnop last, only when there is an error to report. Return values stay
// within TRYAGAIN..RETURN. A cached getpwnam_r/getpwuid_r makes no system call on this path:
// the guard, the AT_SECURE check (read once) and the environment read are all user space.
//
// Status mapping (docs/nss.md):
//   found                           → NSS_STATUS_SUCCESS
//   unknown or invalid name/uid/row → NSS_STATUS_NOTFOUND (errno untouched)
//   caller's buffer too small       → NSS_STATUS_TRYAGAIN, *errnop = ERANGE
//   database unreachable            → NSS_STATUS_UNAVAIL,  *errnop = EAGAIN
//   config missing or invalid       → NSS_STATUS_UNAVAIL,  *errnop = ENOENT
//   nested call, other failure      → NSS_STATUS_UNAVAIL  (EIO / ENOMEM when known)
//   setuid/setgid caller (AT_SECURE) → NSS_STATUS_UNAVAIL,  *errnop = ENOENT, nothing else done
//   ALLGO_NSS_BYPASS set            → NSS_STATUS_NOTFOUND (identity.h: how our programs ask
//                                     what the *other* sources know; secure_getenv, so a
//                                     setuid program never sees it)
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include <cerrno>
#include <new>
#include <type_traits>

#include "allgo/identity.h"
#include "call_guard.h"
#include "module.h"
#include "pack.h"

#define ALLGO_NSS_EXPORT extern "C" __attribute__((visibility("default")))

namespace allgo::nss {
namespace {

// True in a secure-execution process: one that gained privileges when it was exec'd (setuid or
// setgid bit, file capabilities — su, sudo, passwd, chfn, newgrp...). Its environment was
// chosen by the unprivileged user who started it, and Connector/C obeys the environment with
// plain getenv(): LIBMYSQL_PLUGINS and MARIADB_PLUGIN_DIR make its very first initialisation
// dlopen() a library of that user's, MYSQL_UNIX_PORT and MYSQL_TCP_PORT move its defaults.
// No connection option can stop the plugin loading (it runs before any MYSQL handle exists),
// so in such a process the module never calls into Connector/C at all: every entry point
// answers UNAVAIL before the module's state even exists (docs/nss.md "Setuid programs").
// AT_SECURE cannot change for the life of the process image, so it is read once.
bool SecureExecution() {
  static const bool secure = getauxval(AT_SECURE) != 0;
  return secure;
}

// Runs `body` (returning a Result) the way every entry point must.
template <typename Body>
nss_status RunEntryPoint(int* errnop, Body&& body) noexcept {
  Result result{NSS_STATUS_UNAVAIL, 0};
  {
    CallGuard guard;
    if (guard.entered() && SecureExecution()) {
      result = Result::SecureExecution();
    } else if (guard.entered() && secure_getenv(allgo::kNssBypassVariable) != nullptr) {
      result = Result::NotFound();
    } else if (guard.entered()) {
      try {
        result = body();
      } catch (const std::bad_alloc&) {
        result = {NSS_STATUS_TRYAGAIN, ENOMEM};
      } catch (...) {
        result = {NSS_STATUS_UNAVAIL, EIO};
      }
    }
  }  // errno is the caller's again
  if (result.error != 0 && errnop != nullptr) *errnop = result.error;
  return result.status;
}

Result PackedPasswd(const Result& lookup, const PasswdRecord& record, const PasswdBuffer& out) {
  if (!lookup.found()) return lookup;
  return PackInto(record, out);
}

Result PackedGroup(const Result& lookup, const GroupRecord& record, struct group* grp,
                   char* buf, size_t buflen) {
  if (!lookup.found()) return lookup;
  return PackGroup(record, grp, buf, buflen) == PackResult::kOk ? Result::Found()
                                                                 : Result::Range();
}

}  // namespace
}  // namespace allgo::nss

using allgo::nss::Module;
using allgo::nss::Position;
using allgo::nss::Result;
using allgo::nss::RunEntryPoint;

// ---- passwd ---------------------------------------------------------------------------------

ALLGO_NSS_EXPORT nss_status _nss_allgo_getpwnam_r(const char* name, struct passwd* pwd,
                                                  char* buf, size_t buflen,
                                                  int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] { return Module::Get().PasswdByName(name, {pwd, buf, buflen}); });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_getpwuid_r(uid_t uid, struct passwd* pwd, char* buf,
                                                  size_t buflen, int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] { return Module::Get().PasswdByUid(uid, {pwd, buf, buflen}); });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_setpwent(int /*stayopen*/) noexcept {
  return RunEntryPoint(nullptr, [] {
    Module::Get().RestartPasswdEnumeration();
    return Result::Found();
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_getpwent_r(struct passwd* pwd, char* buf, size_t buflen,
                                                  int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] {
    Module& module = Module::Get();
    allgo::nss::PasswdRecord record;
    Position at;
    const Result packed =
        allgo::nss::PackedPasswd(module.PeekPasswd(&record, &at), record, {pwd, buf, buflen});
    if (packed.found()) module.AdvancePasswd(at);  // ERANGE keeps the cursor on this entry
    return packed;
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_endpwent() noexcept {
  return RunEntryPoint(nullptr, [] {
    Module::Get().EndPasswdEnumeration();
    return Result::Found();
  });
}

// ---- group ----------------------------------------------------------------------------------

ALLGO_NSS_EXPORT nss_status _nss_allgo_getgrgid_r(gid_t gid, struct group* grp, char* buf,
                                                  size_t buflen, int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] {
    allgo::nss::GroupRecord record;
    const Result lookup = Module::Get().GroupByGid(gid, &record);
    return allgo::nss::PackedGroup(lookup, record, grp, buf, buflen);
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_getgrnam_r(const char* name, struct group* grp,
                                                  char* buf, size_t buflen,
                                                  int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] {
    allgo::nss::GroupRecord record;
    const Result lookup = Module::Get().GroupByName(name, &record);
    return allgo::nss::PackedGroup(lookup, record, grp, buf, buflen);
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_setgrent(int /*stayopen*/) noexcept {
  return RunEntryPoint(nullptr, [] {
    Module::Get().RestartGroupEnumeration();
    return Result::Found();
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_getgrent_r(struct group* grp, char* buf, size_t buflen,
                                                  int* errnop) noexcept {
  return RunEntryPoint(errnop, [&] {
    Module& module = Module::Get();
    allgo::nss::GroupRecord record;
    Position at;
    const Result packed =
        allgo::nss::PackedGroup(module.PeekGroup(&record, &at), record, grp, buf, buflen);
    if (packed.found()) module.AdvanceGroup(at);
    return packed;
  });
}

ALLGO_NSS_EXPORT nss_status _nss_allgo_endgrent() noexcept {
  return RunEntryPoint(nullptr, [] {
    Module::Get().RestartGroupEnumeration();
    return Result::Found();
  });
}

// Webapps have no supplementary groups (their primary gid is added by glibc itself). Having
// this function keeps glibc from emulating it with a full setgrent/getgrent enumeration.
ALLGO_NSS_EXPORT nss_status _nss_allgo_initgroups_dyn(const char* /*user*/, gid_t /*group*/,
                                                      long* /*start*/, long* /*size*/,
                                                      gid_t** /*groupsp*/, long /*limit*/,
                                                      int* /*errnop*/) noexcept {
  return NSS_STATUS_NOTFOUND;
}

// The signatures must be exactly glibc's (nss.h declares the types a module exports).
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getpwnam_r), nss_getpwnam_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getpwuid_r), nss_getpwuid_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_setpwent), nss_setpwent*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getpwent_r), nss_getpwent_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_endpwent), nss_endpwent*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getgrgid_r), nss_getgrgid_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getgrnam_r), nss_getgrnam_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_setgrent), nss_setgrent*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_getgrent_r), nss_getgrent_r*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_endgrent), nss_endgrent*>);
static_assert(std::is_convertible_v<decltype(&_nss_allgo_initgroups_dyn), nss_initgroups_dyn*>);
