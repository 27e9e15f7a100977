// python/bindings/hash.cpp -- mmstore's XXH3-64 (include/mmstore/storage/xxh3.hpp), exposed for tests and
// tools that need the hash the file format uses (header checksums, key hashes: docs/format.md).
//
//   _hash64(data: bytes, seed: int = 0) -> int   XXH3_64bits_withSeed(data, seed); seed 0 is the format's
//                                                hash. A seed outside 0..2**64-1 or data that is not bytes
//                                                raises TypeError.
#include "handles.hpp"
#include "mmstore/storage/xxh3.hpp"

namespace mmstore::py {

void bind_hash(nb::module_& m) {
    m.def(
        "_hash64",
        [](nb::bytes data, std::uint64_t seed) { return mmstore::xxh3::hash64(data.c_str(), data.size(), seed); },
        nb::arg("data"), nb::arg("seed") = 0,
        "XXH3-64 of data with seed (0: the hash of mmstore's file format).");
}

}  // namespace mmstore::py
