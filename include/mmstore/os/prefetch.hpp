// mmstore/os/prefetch.hpp
//
// prefetch_for_write(p): starts fetching the cache line of p in a writable (exclusive) state, so that a
// later store to it does not wait for the line -- and, for a line another core wrote last, does not pay two
// transfers (one to read it shared, one more to own it). Used where a writer holding the store's lock will
// soon write lines another process wrote last: a transaction's commit lines and the entries it reads
// (docs/design.md, "Two processes: the misses, not the instructions").
//
// x86-64: PREFETCHW where the CPU has it (CPUID 0x80000001 ECX bit 8, checked once: older Intel CPUs
// lack it), else PREFETCHT0; elsewhere __builtin_prefetch(p, 1). A prefetch never faults.
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace mmstore::os {

#if defined(__x86_64__)
namespace detail {
inline bool has_prefetchw() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c & (1u << 8)) != 0;
}
inline const bool kHasPrefetchw = has_prefetchw();
}  // namespace detail

inline void prefetch_for_write(const void* p) noexcept {
    if (detail::kHasPrefetchw) [[likely]] {
        asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
    } else {
        __builtin_prefetch(p, 0);
    }
}
#else
inline void prefetch_for_write(const void* p) noexcept { __builtin_prefetch(p, 1); }
#endif

}  // namespace mmstore::os
