// src/containers/frozen_index.cpp -- FrozenIndex lookups and FrozenIndexWriter (mmstore/containers/frozen_index.hpp).
#include "mmstore/containers/frozen_index.hpp"

#include <cstring>

#include "mmstore/error.hpp"
#include "mmstore/internal/records_format.hpp"
#include "mmstore/storage/checksum.hpp"

namespace mmstore::containers {

using detail::load;

namespace {
[[noreturn]] void corrupt(const std::string* path, const std::string& what) {
    throw_format(ErrorCode::kCorrupt, path ? *path : "", what);
}
}  // namespace

std::uint32_t FrozenIndex::bucket_bits_for(std::uint64_t entries) noexcept {
    std::uint32_t bits = 0;
    while ((std::uint64_t{1} << bits) < entries / 4 && bits < 40) ++bits;
    return bits;
}

std::uint64_t FrozenIndex::hash_bits(std::uint64_t e) const noexcept {
    if (approximate) return load<std::uint64_t>(slots + e * 8);
    return wide_keys ? load<std::uint32_t>(slots + e * 4) : load<std::uint32_t>(slots + e * 8);
}

std::string_view FrozenIndex::key(std::uint64_t e) const {
    if (approximate) return {};
    const std::uint64_t off = wide_keys ? load<std::uint64_t>(key_offsets + e * 8) : load<std::uint64_t>(slots + e * 8) >> 32;
    if (off >= key_heap_len) corrupt(path, "corrupt key offset " + std::to_string(off));
    // Short str/bytes keys (the common case) are measured here, without the call into the codec.
    const auto t = static_cast<std::uint8_t>(key_heap[off]);
    if (t >= codec::tag::kShortStr && t < codec::tag::kShortBytes + 32) {
        const std::uint64_t len = 1 + (t & 31);
        if (len > key_heap_len - off) corrupt(path, "corrupt key at offset " + std::to_string(off));
        return {key_heap + off, static_cast<std::size_t>(len)};
    }
    std::size_t end;
    try {
        end = detail::value_end(key_heap, key_heap_len, off);
    } catch (const FormatError& ex) {
        corrupt(path, ex.message());
    }
    return {key_heap + off, end - off};
}

std::pair<std::uint64_t, std::uint64_t> FrozenIndex::find(std::string_view k) const {
    const std::uint64_t h = hash64(k.data(), k.size());
    const std::uint64_t b = bucket_bits ? h >> (64 - bucket_bits) : 0;
    const std::uint64_t lo = load<std::uint64_t>(directory + b * 8);
    const std::uint64_t hi = load<std::uint64_t>(directory + b * 8 + 8);
    if (lo > hi || hi > count) corrupt(path, "corrupt directory entry " + std::to_string(b));
    // Tried twice: prefetching the bucket's first value (and, before slots held the key offsets, the offset
    // array) right after the directory load. No gain stood out of this shared VM's noise, so it is not done.
    const auto lo32 = static_cast<std::uint32_t>(h);
    auto match = [&](std::uint64_t e) {
        if (approximate) return load<std::uint64_t>(slots + e * 8) == h;
        const std::uint32_t stored = wide_keys ? load<std::uint32_t>(slots + e * 4) : load<std::uint32_t>(slots + e * 8);
        return stored == lo32 && key(e) == k;
    };
    for (std::uint64_t e = lo; e < hi; ++e) {
        if (!match(e)) continue;
        std::uint64_t last = e + 1;
        while (last < hi && match(last)) ++last;  // equal keys are adjacent
        return {e, last};
    }
    return {0, 0};
}

FrozenIndexWriter::FrozenIndexWriter(const std::string& prefix, unsigned mode, bool approximate, bool wide_keys,
                                     std::uint32_t bucket_bits)
    : approximate_(approximate), wide_(wide_keys && !approximate), bits_(bucket_bits),
      slots_(prefix + "idx-slots", mode), key_offsets_(prefix + "idx-keyoffs", mode), key_heap_(prefix + "idx-keys", mode),
      dir_(prefix + "idx-dir", mode) {}

void FrozenIndexWriter::add(std::uint64_t h, std::string_view key) {
    const std::uint64_t b = bits_ ? h >> (64 - bits_) : 0;
    while (next_bucket_ <= b) {
        dir_.put(n_);
        ++next_bucket_;
    }
    if (approximate_) {
        slots_.put(h);
    } else {
        if (wide_) {
            slots_.put(static_cast<std::uint32_t>(h));
            key_offsets_.put(key_heap_.size());
        } else {
            slots_.put((key_heap_.size() << 32) | (h & 0xFFFFFFFFu));
        }
        key_heap_.append(key);
    }
    ++n_;
}

void FrozenIndexWriter::finish(Sections& out) {
    while (next_bucket_ <= (std::uint64_t{1} << bits_)) {
        dir_.put(n_);
        ++next_bucket_;
    }
    for (internal::TempFile* t : {&slots_, &key_offsets_, &key_heap_, &dir_}) t->flush();
    out.emplace_back(kSectionIndexSlots, approximate_ || !wide_ ? 8 : 4, &slots_);
    if (!approximate_) {
        if (wide_) out.emplace_back(kSectionKeyOffsets, 8, &key_offsets_);
        out.emplace_back(kSectionKeyHeap, 0, &key_heap_);
    }
    out.emplace_back(kSectionDirectory, 8, &dir_);
}

}  // namespace mmstore::containers
