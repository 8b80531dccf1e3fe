#include "allgo/memory.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

namespace allgo {

void ReleaseDeadStack() {
  // kStackKept covers this frame and the madvise call itself. The range never reaches another
  // mapping: the kernel keeps mmap_base at least 128 MiB below the stack (RLIMIT_STACK,
  // clamped), and the part of the range below the stack's mapping is simply not mapped (Linux
  // applies the advice to the mapped part and reports ENOMEM, ignored here).
  constexpr uintptr_t kStackKept = 8 * 1024, kStackSpan = 512 * 1024;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  volatile char here = 0;
  uintptr_t top = (reinterpret_cast<uintptr_t>(&here) - kStackKept) & ~(page - 1);
  (void)madvise(reinterpret_cast<void*>(top - kStackSpan), kStackSpan, MADV_DONTNEED);
}

void ReleaseDeadMemory() {
  malloc_trim(0);
  ReleaseDeadStack();
}

void PlugHeapHoles() {
#if defined(__SANITIZE_ADDRESS__)
  return;  // not glibc's heap; and the kept chunks would be reported as leaks
#endif
  malloc_trim(0);  // consolidates the fast bins into ordinary free chunks, releases free pages
  // Sizes from large to small, then every small size class (the thread cache keeps up to 7
  // chunks per class of 16 bytes up to 1 KiB, which only a request of that class takes). For
  // each, take chunks until one comes from the top chunk: that one is freed (large sizes merge
  // back into the top) or kept (small ones would stay in the thread cache, near the top).
  auto top_start = [] {
    struct mallinfo2 mi = mallinfo2();
    return static_cast<char*>(sbrk(0)) - mi.keepcost;  // keepcost: the top chunk's size
  };
  auto plug = [&](size_t size) {
    for (int i = 0; i < 100000; ++i) {
      char* top = top_start();
      void* p = malloc(size);
      if (p == nullptr) return;
      if (static_cast<char*>(p) >= top) {
        if (size > 1024) free(p);
        return;
      }
    }
  };
  for (size_t size = 64 * 1024; size > 1024; size /= 2) plug(size);
  for (size_t size = 1024; size >= 16; size -= 16) plug(size);
}

}  // namespace allgo
