// mmstore/containers/frozen_index.hpp
//
// FrozenIndex: the build-once hash index behind a read-only Mapping (DESIGN.md layer 6; layout in
// docs/format.md §8.4). Entries are sorted by (XXH3-64 of the key encoding, key, input order); a directory
// maps the top `bucket_bits` hash bits to the entry range of each bucket (about four entries). Entry e
// carries its key (exact maps: an 8-byte slot of low hash bits and key offset, so one cache line answers
// a bucket) or only its 64-bit hash (approximate maps). The values live elsewhere, in entry order.
//
//   FrozenIndex         a view over the index sections of an image: find(), key(), hash_bits(). Lookups never
//                       allocate; a corrupt directory or key offset throws FormatError(kCorrupt).
//   FrozenIndexWriter   streams the sections for entries arriving in hash order (the builder sorts).
//
// Thread safety: FrozenIndex is immutable (any number of threads); a writer is single-threaded. Pointers
// returned by key() point into the image and live as long as it does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "mmstore/internal/temp_file.hpp"

namespace mmstore::containers {

// Section ids of the index (the records image's section table, docs/format.md §8.1).
inline constexpr std::uint32_t kSectionIndexSlots = 2;    // u64 slot (exact), u32 hash (exact, wide) or u64 hash (approximate)
inline constexpr std::uint32_t kSectionKeyOffsets = 3;    // exact and wide: u64 key offset per entry
inline constexpr std::uint32_t kSectionKeyHeap = 4;       // exact: codec-encoded keys
inline constexpr std::uint32_t kSectionDirectory = 5;     // u64 first entry per bucket, plus the count

struct FrozenIndex {
    std::uint64_t count = 0;
    std::uint32_t bucket_bits = 0;
    bool approximate = false;
    bool wide_keys = false;             // key heap over 4 GiB: u32 hashes and separate u64 key offsets
    const char* slots = nullptr;
    const char* key_offsets = nullptr;  // wide only
    const char* key_heap = nullptr;
    std::uint64_t key_heap_len = 0;
    const char* directory = nullptr;    // (2^bucket_bits + 1) u64
    const std::string* path = nullptr;  // named in errors; may be null

    // [first, last) of the entries whose key encodes to `key` (approximate: whose hash equals its hash).
    std::pair<std::uint64_t, std::uint64_t> find(std::string_view key) const;
    // The key encoding of entry e (e < count); empty for approximate indexes.
    std::string_view key(std::uint64_t e) const;
    // The stored hash bits of entry e: all 64 (approximate) or the low 32.
    std::uint64_t hash_bits(std::uint64_t e) const noexcept;

    // About four entries per bucket: one cache line of slots to scan, 2 bytes of directory per entry.
    static std::uint32_t bucket_bits_for(std::uint64_t entries) noexcept;
};

class FrozenIndexWriter {
public:
    using Sections = std::vector<std::tuple<std::uint32_t, std::uint32_t, internal::TempFile*>>;

    // Temporary files are named `prefix` + "idx-*". `wide_keys` for key heaps that may exceed 4 GiB.
    FrozenIndexWriter(const std::string& prefix, unsigned mode, bool approximate, bool wide_keys,
                      std::uint32_t bucket_bits);
    // Entries in nondecreasing hash order; `key` is ignored for approximate indexes.
    void add(std::uint64_t hash, std::string_view key);
    std::uint64_t count() const noexcept { return n_; }
    // Completes the directory and lists (section id, element width, file) of every index section; the files
    // stay owned by the writer.
    void finish(Sections& out);

private:
    bool approximate_, wide_;
    std::uint32_t bits_;
    internal::TempFile slots_, key_offsets_, key_heap_, dir_;
    std::uint64_t next_bucket_ = 0, n_ = 0;
};

}  // namespace mmstore::containers
