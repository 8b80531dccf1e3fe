#include "pack.h"

#include <cstdint>
#include <cstring>
#include <limits>

namespace allgo::nss {
namespace {

// Adds b to *total, saturating: a saturated size never fits any buffer.
void AddSize(size_t* total, size_t b) noexcept {
  if (*total > std::numeric_limits<size_t>::max() - b) {
    *total = std::numeric_limits<size_t>::max();
  } else {
    *total += b;
  }
}

size_t StringSize(const std::string& s) noexcept {
  return s.size() == std::numeric_limits<size_t>::max() ? s.size() : s.size() + 1;
}

// Bytes to skip from `p` so that the next byte is aligned for T.
template <typename T>
size_t PaddingFor(const char* p) noexcept {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  return (alignof(T) - addr % alignof(T)) % alignof(T);
}

// Hands out consecutive pieces of a buffer whose total size was checked beforehand.
class BufferCursor {
 public:
  explicit BufferCursor(char* buf) noexcept : next_(buf) {}

  char* CopyString(const std::string& s) noexcept {
    char* dst = next_;
    if (!s.empty()) std::memcpy(dst, s.data(), s.size());
    dst[s.size()] = '\0';
    next_ += s.size() + 1;
    return dst;
  }

  char** TakePointerArray(size_t count) noexcept {
    next_ += PaddingFor<char*>(next_);
    auto** array = reinterpret_cast<char**>(next_);
    next_ += count * sizeof(char*);
    return array;
  }

 private:
  char* next_;
};

}  // namespace

size_t PasswdBufferSize(const PasswdRecord& record) noexcept {
  size_t total = 0;
  for (const std::string* s : {&record.name, &record.passwd, &record.gecos, &record.dir,
                               &record.shell}) {
    AddSize(&total, StringSize(*s));
  }
  return total;
}

PackResult PackPasswd(const PasswdRecord& record, struct passwd* out, char* buf,
                      size_t buflen) noexcept {
  if (out == nullptr || buf == nullptr || PasswdBufferSize(record) > buflen) {
    return PackResult::kRange;
  }
  BufferCursor cursor(buf);
  out->pw_name = cursor.CopyString(record.name);
  out->pw_passwd = cursor.CopyString(record.passwd);
  out->pw_uid = record.uid;
  out->pw_gid = record.gid;
  out->pw_gecos = cursor.CopyString(record.gecos);
  out->pw_dir = cursor.CopyString(record.dir);
  out->pw_shell = cursor.CopyString(record.shell);
  return PackResult::kOk;
}

size_t GroupBufferSize(const GroupRecord& record, const char* buf) noexcept {
  size_t total = PaddingFor<char*>(buf);
  const size_t pointers = record.members.size() + 1;  // NULL-terminated
  if (pointers == 0 || pointers > std::numeric_limits<size_t>::max() / sizeof(char*)) {
    return std::numeric_limits<size_t>::max();
  }
  AddSize(&total, pointers * sizeof(char*));
  AddSize(&total, StringSize(record.name));
  AddSize(&total, StringSize(record.passwd));
  for (const std::string& member : record.members) AddSize(&total, StringSize(member));
  return total;
}

PackResult PackGroup(const GroupRecord& record, struct group* out, char* buf,
                     size_t buflen) noexcept {
  if (out == nullptr || buf == nullptr || GroupBufferSize(record, buf) > buflen) {
    return PackResult::kRange;
  }
  // The pointer array goes first, where the alignment padding is known to be counted.
  BufferCursor cursor(buf);
  char** members = cursor.TakePointerArray(record.members.size() + 1);
  out->gr_name = cursor.CopyString(record.name);
  out->gr_passwd = cursor.CopyString(record.passwd);
  out->gr_gid = record.gid;
  for (size_t i = 0; i < record.members.size(); ++i) {
    members[i] = cursor.CopyString(record.members[i]);
  }
  members[record.members.size()] = nullptr;
  out->gr_mem = members;
  return PackResult::kOk;
}

}  // namespace allgo::nss
