// mmstore/storage/checksum.hpp
//
// The one 64-bit hash of mmstore: XXH3-64 with seed 0 (system libxxhash). It checksums headers and records
// and hashes encoded keys, so every process and language computes the same value (docs/format.md).
// Thread-safe, allocation-free.
#pragma once

#include <cstddef>
#include <cstdint>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace mmstore {

inline std::uint64_t hash64(const void* data, std::size_t len) noexcept { return XXH3_64bits(data, len); }

}  // namespace mmstore
