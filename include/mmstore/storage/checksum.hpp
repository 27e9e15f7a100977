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

// Inputs of up to 16 bytes (most encoded keys) hash inline, with no call and no length dispatch beyond
// their own: a lookup spent a tenth of its instructions on the call (callgrind, bench/cpp).
inline std::uint64_t hash64(const void* data, std::size_t len) noexcept {
    if (len <= 16)
        return xxh3::detail::len_0to16(static_cast<const unsigned char*>(data), len, xxh3::detail::kDefaultSecret, 0);
    return xxh3::hash64(data, len);
}

using Hasher = xxh3::Hasher;

}  // namespace mmstore
