// Handing back memory a long-lived process no longer uses, so that an idle session costs
// only what it holds (issue 20: PSS per idle session).
#pragma once

namespace allgo {

// Returns to the kernel what a finished setup phase left resident: the freed heap chunks
// malloc keeps (malloc_trim), and the stack pages that phase touched below the caller's frame
// (MADV_DONTNEED: they read back as zeroes, and the caller faults in again only the few it
// uses). Call it from a shallow frame once the setup's temporaries are destroyed; everything
// more than 8 KiB below that frame must be dead. Main thread only (the range is below its
// stack pointer in the main stack).
void ReleaseDeadMemory();

// Only the stack part of ReleaseDeadMemory, for a forked process whose heap pages are still
// shared with its parent: malloc_trim would write into them (consolidating free chunks) and
// copy more than it hands back.
void ReleaseDeadStack();

// For a process that forks children which then live long (allgo-sshd's listener): fills the
// holes of its heap (free chunks below the top, left by its own setup) with allocations that
// are never freed, so that a forked child's mallocs are served from fresh pages at the top
// instead of from those holes, each of which would copy a whole page shared with the parent
// (copy-on-write) for a few bytes. Only the chunks' headers are written; the holes' other
// pages stay untouched. Call once, after the setup, in the main thread with no other thread
// allocating. The holes the process makes later are its own to reuse (plugging them before
// every fork would make it grow without bound).
void PlugHeapHoles();

}  // namespace allgo
