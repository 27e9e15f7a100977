// mmstore/storage/checksum.hpp
//
// The one 64-bit hash of mmstore: XXH3-64 with seed 0 and the default secret, mmstore's own implementation
// (storage/xxh3.hpp, written from the published specification; no system library). It checksums headers
// and records and hashes encoded keys, so every process and language computes the same value
// (docs/format.md). Hasher hashes data given in pieces (equal to hash64 of their concatenation).
// Thread-safe (a Hasher: one thread at a time), allocation-free.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mmstore/storage/xxh3.hpp"

namespace mmstore {

inline std::uint64_t hash64(const void* data, std::size_t len) noexcept { return xxh3::hash64(data, len); }

using Hasher = xxh3::Hasher;

}  // namespace mmstore
