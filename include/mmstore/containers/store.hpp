// mmstore/containers/store.hpp
//
// Store: one opened store file -- its Region, its Arena, and the encoding of byte strings into 8-byte
// *words*, the unit every container slot holds (docs/format.md, "Words and records"):
//
//   inline word   top byte 0x80 | len (len 0..7); the bytes live in the word's low 7 bytes, so on a
//                 little-endian machine a word in the mapping *is* its data (zero-copy views).
//   record word   a 16-aligned arena offset (top byte 0) of a record {u32 len, u32 check, len bytes},
//                 check = low 32 bits of XXH3-64 of the bytes; the block is block_size(8 + len) long.
//   kTombWord     all ones: an erased entry.
//
// Views returned by view() point into the mapping and stay valid until the word's slot is overwritten or
// erased, or the store is closed. Thread safety: none (callers hold the store's write lock; reads of
// published words are safe for any number of readers).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "mmstore/alloc/arena.hpp"
#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/storage/region.hpp"

namespace mmstore::containers {

inline constexpr std::uint64_t kTombWord = ~std::uint64_t{0};
inline constexpr std::uint64_t kInlineFlag = std::uint64_t{0x80} << 56;
inline constexpr std::size_t kInlineMax = 7;

struct RecordHeader {
    std::uint32_t len;    // payload bytes
    std::uint32_t check;  // low 32 bits of XXH3-64 of the payload
};
static_assert(sizeof(RecordHeader) == 8);

inline bool is_inline(std::uint64_t w) noexcept { return (w >> 56) >= 0x80 && w != kTombWord; }
inline std::size_t inline_len(std::uint64_t w) noexcept { return static_cast<std::size_t>((w >> 56) & 0x7F); }

// Packs up to 7 bytes into a word without a variable-length memcpy call (two overlapping loads).
inline std::uint64_t make_inline(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::uint64_t w = 0;
    if (n >= 4) {
        std::uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + n - 4, 4);
        w = lo | (std::uint64_t{hi} << (8 * (n - 4)));
    } else if (n > 0) {
        w = p[0] | (std::uint64_t{p[n / 2]} << (8 * (n / 2))) | (std::uint64_t{p[n - 1]} << (8 * (n - 1)));
    }
    return w | kInlineFlag | (std::uint64_t{n} << 56);
}

struct StoreStats {
    std::uint64_t file_bytes = 0;       // size of the file in use
    std::uint64_t allocated_bytes = 0;  // blocks the filesystem has allocated (holes excluded)
    std::uint64_t arena_top = 0;        // end of the used arena
    std::uint64_t free_bytes = 0;       // bytes on the arena's free lists
};

class Store {
public:
    Store() = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    void open(const std::string& path, storage::StoreKind kind, const storage::OpenOptions& options);
    bool is_open() const noexcept { return region_.is_open(); }
    // Throws kClosed after close(), kForked when used in a child of the opening process.
    void check_open() const {
        if (!region_.is_open()) [[unlikely]] throw_closed();
        if (fork_gen_ != os::fork_generation()) [[unlikely]] throw_forked();
    }
    void check_writable() const {
        check_open();
        if (!region_.writable()) [[unlikely]] throw_readonly();
    }
    storage::Region& region() noexcept { return region_; }
    const storage::Region& region() const noexcept { return region_; }
    alloc::Arena& arena() noexcept { return arena_; }
    const std::string& path() const noexcept { return region_.path(); }
    bool durable() const noexcept { return durable_; }
    std::uint64_t root() const noexcept { return region_.live().root; }
    void publish_root(std::uint64_t off) noexcept { region_.live().root = off; }
    void bump_mutations() noexcept { ++region_.live().mutations; }
    std::uint64_t mutations() const noexcept { return region_.live().mutations; }

    // Writes `bytes` as a word (inline when <= 7 bytes, else a new record). Not yet reachable.
    std::uint64_t put(std::string_view bytes) {
        return bytes.size() <= kInlineMax ? make_inline(bytes) : put_record(bytes);
    }
    std::uint64_t put_record(std::string_view bytes);
    // Frees the record behind a record word; inline words need nothing.
    void release(std::uint64_t word) noexcept;
    // The bytes of a word held at `*slot` (inline words are viewed in place). Checks record bounds and
    // checksum, throwing FormatError; `slot` must point into the mapping or outlive the view.
    std::string_view view(const std::uint64_t* slot) const;
    // Cheap bounds-only view used by key comparison (a bad record compares unequal).
    std::string_view view_unchecked(const std::uint64_t* slot) const noexcept;
    // True when the word is inline or a record that passes bounds and checksum.
    bool word_ok(std::uint64_t word) const noexcept;
    // Arena block (offset, bytes) behind a record word, for reachability; false for inline words.
    bool word_block(std::uint64_t word, std::uint64_t& off, std::uint64_t& bytes) const noexcept;

    void after_mutation() {
        if (durable_) region_.sync();
    }
    void sync() {
        check_open();
        region_.sync();
    }
    void close() { region_.close(); }
    void abandon() noexcept { region_.abandon(); }
    StoreStats stats() const;

    [[noreturn]] void throw_corrupt(const std::string& what) const;

private:
    [[noreturn]] void throw_closed() const;
    [[noreturn]] void throw_forked() const;
    [[noreturn]] void throw_readonly() const;

    storage::Region region_;
    alloc::Arena arena_{&region_};
    std::uint64_t fork_gen_ = 0;
    bool durable_ = false;
    std::string closed_path_;
};

}  // namespace mmstore::containers
